//! The tests' handle on the servers the harness starts
//! (`postmortem::services`): the same launcher, failing the test
//! with the launcher's message (what to install, the server's log) where
//! the harness returns an error.

#![allow(dead_code)]

pub use postmortem::services::Postgres;

/// A port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    postmortem::services::free_port().unwrap_or_else(|e| panic!("{e:#}"))
}

/// A fresh Postgres server, stopped when dropped.
pub fn postgres() -> Postgres {
    Postgres::start().unwrap_or_else(|e| panic!("{e:#}"))
}

/// The harness's Redis launcher, failing the test with its message.
pub struct Redis(postmortem::services::Redis);

impl Redis {
    pub fn start() -> Redis {
        Self::start_with_password(None)
    }

    /// With `requirepass`: clients must authenticate.
    pub fn start_with_password(password: Option<&str>) -> Redis {
        Redis(postmortem::services::Redis::start_with_password(password).unwrap_or_else(|e| panic!("{e:#}")))
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    /// Kills the server (its data is gone: nothing is saved).
    pub fn stop(&mut self) {
        self.0.stop().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A new server on the same port (empty), as after a restart.
    pub fn restart(&mut self) {
        self.0.start_again().unwrap_or_else(|e| panic!("{e:#}"))
    }
}

impl std::ops::Deref for Redis {
    type Target = postmortem::services::Redis;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
