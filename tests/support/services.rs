//! The tests' handle on the servers the harness starts
//! (`postmortem::scenario::services`): the same launcher, failing the test
//! with the launcher's message (what to install, the server's log) where
//! the harness returns an error. Redis, which no scenario starts yet, has
//! its launcher here, on the harness's helpers (127.0.0.1, an ephemeral
//! port, a temporary directory, an unprivileged user when run as root,
//! bounded waits, stopped on drop).

#![allow(dead_code)]

pub use postmortem::scenario::services::Postgres;
use postmortem::scenario::services::{command_as, scratch_dir, service_user, ServiceUser};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    postmortem::scenario::services::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh Postgres server, stopped when dropped.
pub fn postgres() -> Postgres {
    Postgres::start().unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

/// `redis-server` on the `PATH`, or a panic saying what to install.
pub fn redis_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("redis-server")).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "redis-server not found on the PATH: install it (Debian: apt-get install -y redis-server; \
             .ci/run does) to run the shared rate-limit tests"
        )
    })
}

/// A throwaway Redis server on 127.0.0.1: no snapshots, no append-only
/// file, its directory temporary. [`Redis::stop`] and [`Redis::restart`]
/// (same port, empty data) let a test take it away mid-run; killed on drop.
pub struct Redis {
    pub port: u16,
    password: Option<String>,
    bin: PathBuf,
    user: Option<ServiceUser>,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_with_password(None)
    }

    /// With `requirepass`: clients must authenticate.
    pub fn start_with_password(password: Option<&str>) -> Redis {
        let bin = redis_bin();
        // Redis runs as root without complaint; the convention is kept anyway.
        let user = service_user(&["redis", "nobody"]).unwrap_or_else(|e| panic!("{e}"));
        let dir = scratch_dir(user.as_ref()).unwrap_or_else(|e| panic!("{e}"));
        let mut r = Redis { port: 0, password: password.map(str::to_string), bin, user, dir, child: None };
        // The port may be taken between our release and the server's bind:
        // try a few.
        let mut last = String::new();
        for _ in 0..3 {
            r.port = free_port();
            match r.spawn() {
                Ok(()) => return r,
                Err(e) => last = e,
            }
        }
        panic!("Redis did not start: {last}");
    }

    /// `redis://[:password@]127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Kills the server (its data is gone: nothing is saved).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new server on the same port (empty), as after a restart.
    pub fn restart(&mut self) {
        self.stop();
        let mut last = String::new();
        // The old socket may linger a moment; bounded retries.
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("Redis did not restart on port {}: {last}", self.port);
    }

    /// Starts the server and waits (at most 10 s) until it answers PING.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("redis.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("log {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = command_as(self.user.as_ref(), &self.bin, self.dir.path());
        cmd.arg("--port").arg(self.port.to_string()).args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        cmd.arg("--dir").arg(self.dir.path()).args(["--daemonize", "no", "--protected-mode", "yes"]);
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let mut child = cmd.stdout(out).stderr(err).spawn().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        let started = Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!(
                    "redis-server exited ({st}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            if self.answers_ping() {
                self.child = Some(child);
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no PONG within 10 s:\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut req = String::new();
        if let Some(p) = &self.password {
            req.push_str(&format!("AUTH {p}\r\n"));
        }
        req.push_str("PING\r\n");
        let mut buf = [0u8; 64];
        let mut got = String::new();
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        while !got.contains("PONG") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        true
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
