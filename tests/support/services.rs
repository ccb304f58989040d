//! The tests' handle on the servers the harness starts
//! (`postmortem::scenario::services`): the same launcher, failing the test
//! with the launcher's message (what to install, the server's log) where
//! the harness returns an error.

#![allow(dead_code)]

pub use postmortem::scenario::services::Postgres;

/// A port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    postmortem::scenario::services::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh Postgres server, stopped when dropped.
pub fn postgres() -> Postgres {
    Postgres::start().unwrap_or_else(|e| panic!("{e}"))
}
