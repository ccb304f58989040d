//! Real servers that tests start themselves (Postgres, Redis): each listens on 127.0.0.1 at an ephemeral port,
//! keeps its data in a temporary directory, runs as an unprivileged user
//! when the tests run as root (database servers refuse root), waits for
//! nothing without a bound, and is stopped when dropped. Missing server
//! binaries fail the test with what to install: a test that silently
//! skipped would pass on a machine that checks nothing.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 a moment ago: bound, then released. A server
/// that loses the race to it fails to start, and the launcher tries again.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// Whom a server runs as: `None` when the tests are not root (run as
/// ourselves), else an existing unprivileged account.
#[derive(Debug, Clone)]
pub struct ServiceUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).stderr(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// `None` unless running as root; then the first of `candidates` that
/// exists (e.g. `postgres`, then `nobody`).
pub fn service_user(candidates: &[&str]) -> Option<ServiceUser> {
    if id(&["-u"]) != Some(0) {
        return None;
    }
    let user = candidates.iter().find_map(|name| {
        Some(ServiceUser { name: name.to_string(), uid: id(&["-u", name])?, gid: id(&["-g", name])? })
    });
    Some(user.unwrap_or_else(|| {
        panic!("running as root and none of the accounts {candidates:?} exists to run the server as; create one (useradd -r postgres)")
    }))
}

/// `program` run as `user` (through `setpriv`, util-linux: no PAM, no
/// shell), or as ourselves; its working directory is `cwd`, which the
/// user can enter.
pub fn command_as(user: Option<&ServiceUser>, program: &Path, cwd: &Path) -> Command {
    let mut c = match user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={}", u.uid)).arg(format!("--regid={}", u.gid)).arg("--clear-groups").arg(program);
            c
        }
        None => Command::new(program),
    };
    c.current_dir(cwd).stdin(Stdio::null());
    c
}

/// Runs `cmd` to its end within `limit` (polling its exit, killing it past
/// the limit). Output goes to `log`, which the error quotes.
pub fn run_bounded(cmd: &mut Command, limit: Duration, log: &Path, what: &str) -> Result<(), String> {
    let file = std::fs::File::create(log).map_err(|e| format!("{what}: log {}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| format!("{what}: {e}"))?;
    let mut child = cmd.stdout(file).stderr(err).spawn().map_err(|e| format!("{what}: cannot run {cmd:?}: {e}"))?;
    let started = Instant::now();
    let tail = || std::fs::read_to_string(log).unwrap_or_default().chars().rev().take(2000).collect::<Vec<_>>();
    let tail = || tail().into_iter().rev().collect::<String>();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(format!("{what} failed ({st}):\n{}", tail())),
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {} s:\n{}", limit.as_secs(), tail()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// A temporary directory the service user owns (so the server can write
/// its data and socket there); removed on drop.
pub fn scratch_dir(user: Option<&ServiceUser>) -> tempfile::TempDir {
    let builder = tempfile::Builder::new().prefix("pm-svc-").clone();
    // Another user must reach it: under /tmp, not a $TMPDIR that may sit in
    // root's home (and a short path keeps a Unix socket's name in bounds).
    let dir = match user {
        Some(_) => builder.tempdir_in("/tmp"),
        None => builder.tempdir(),
    }
    .expect("temporary directory");
    if let Some(u) = user {
        std::os::unix::fs::chown(dir.path(), Some(u.uid), Some(u.gid)).expect("chown the scratch directory");
    }
    dir
}

// ---------------------------------------------------------------------------
// Postgres
// ---------------------------------------------------------------------------

/// Where Debian puts the server: the newest `/usr/lib/postgresql/*/bin`
/// with an `initdb` in it.
pub fn postgres_bin() -> PathBuf {
    postgres_bin_in(Path::new("/usr/lib/postgresql"))
}

/// [`postgres_bin`] under another root (for testing its failure).
pub fn postgres_bin_in(root: &Path) -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found (no {}/*/bin/initdb): install them \
             (Debian: apt-get install -y postgresql; .ci/run does) to run the Postgres storage tests",
            root.display()
        ),
    }
}

/// A throwaway Postgres server: `initdb` into a temporary directory, trust
/// auth for user `postgres`, listening on 127.0.0.1 only (and a socket in
/// the same directory). Stopped (immediately: its data is thrown away) on drop.
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    user: Option<ServiceUser>,
    dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = postgres_bin();
        let user = service_user(&["postgres", "nobody"]);
        let dir = scratch_dir(user.as_ref());
        let data = dir.path().join("data");
        let u = user.as_ref();
        let mut initdb = command_as(u, &bin.join("initdb"), dir.path());
        initdb.arg("-D").arg(&data).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        if let Err(e) = run_bounded(&mut initdb, Duration::from_secs(120), &dir.path().join("initdb.out"), "initdb") {
            panic!("{e}");
        }
        // The port may be taken between our release and the server's bind:
        // try a few.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut start = command_as(u, &bin.join("pg_ctl"), dir.path());
            start.arg("-D").arg(&data).arg("-l").arg(dir.path().join("server.log")).args(["-w", "-t", "60", "-o"]).arg(
                format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
                    dir.path().display()
                ),
            );
            start.arg("start");
            match run_bounded(&mut start, Duration::from_secs(90), &dir.path().join("pg_ctl.out"), "pg_ctl start") {
                Ok(()) => return Postgres { port, bin, data, user, dir },
                Err(e) => {
                    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                    last = format!("{e}\nserver log:\n{log}");
                }
            }
        }
        panic!("Postgres did not start: {last}");
    }

    /// A URL for the gateway, with the default `sslmode` (`prefer`: the
    /// server offers no TLS, so the connection is plain).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The same database with a password in the URL (trust auth ignores
    /// it): for checking that no output shows it.
    pub fn url_with_password(&self, password: &str) -> String {
        format!("postgres://postgres:{password}@127.0.0.1:{}/postgres?sslmode=disable", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = command_as(self.user.as_ref(), &self.bin.join("pg_ctl"), self.dir.path());
        stop.arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "-t", "20", "stop"]);
        if let Err(e) =
            run_bounded(&mut stop, Duration::from_secs(30), &self.dir.path().join("stop.out"), "pg_ctl stop")
        {
            eprintln!("{e}");
        }
    }
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
        let user = service_user(&["redis", "nobody"]);
        let dir = scratch_dir(user.as_ref());
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
