//! Real servers the harness starts for a scenario (`services:`) and tests
//! start for themselves (Postgres, Redis): each listens on 127.0.0.1 at a
//! port chosen free, keeps its data in a temporary directory, runs as an
//! unprivileged user when the harness runs as root (database servers refuse
//! root), waits for nothing without a bound, and is stopped when dropped
//! (on failure and panic too). A missing server binary is an error naming
//! what to install: a scenario that silently skipped would pass having
//! checked nothing.

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 a moment ago, from below the kernel's ephemeral
/// range (as a target process's port is, in `target`), so a
/// mock binding port 0 cannot take it before the server binds it.
pub fn free_port() -> Result<u16> {
    crate::target::free_port().map_err(|e| anyhow!(e))
}

/// Whom a server runs as: `None` when the harness is not root (run as
/// ourselves), else an existing unprivileged account.
#[derive(Debug, Clone)]
pub(crate) struct ServiceUser {
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

/// `Ok(None)` unless running as root; then the first of `candidates` that
/// exists (e.g. `postgres`, then `nobody`).
pub(crate) fn service_user(candidates: &[&str]) -> Result<Option<ServiceUser>> {
    if id(&["-u"]) != Some(0) {
        return Ok(None);
    }
    candidates
        .iter()
        .find_map(|name| {
            Some(ServiceUser { name: name.to_string(), uid: id(&["-u", name])?, gid: id(&["-g", name])? })
        })
        .map(Some)
        .ok_or_else(|| {
            anyhow!(
                "running as root and none of the accounts {candidates:?} exists to run the server as; create one (useradd -r postgres)"
            )
        })
}

/// `program` run as `user` (through `setpriv`, util-linux: no PAM, no
/// shell), or as ourselves; its working directory is `cwd`, which the
/// user can enter.
pub(crate) fn command_as(user: Option<&ServiceUser>, program: &Path, cwd: &Path) -> Command {
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
pub(crate) fn run_bounded(cmd: &mut Command, limit: Duration, log: &Path, what: &str) -> Result<()> {
    let file = std::fs::File::create(log).with_context(|| format!("{what}: log {}", log.display()))?;
    let err = file.try_clone().with_context(|| what.to_string())?;
    let mut child = cmd.stdout(file).stderr(err).spawn().with_context(|| format!("{what}: cannot run {cmd:?}"))?;
    let started = Instant::now();
    let tail = || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let skip = text.chars().count().saturating_sub(2000);
        text.chars().skip(skip).collect::<String>()
    };
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(anyhow!("{what} failed ({st}):\n{}", tail())),
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(anyhow!("{what} did not finish within {} s:\n{}", limit.as_secs(), tail()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(anyhow!("{what}: {e}")),
        }
    }
}

/// A temporary directory the service user owns (so the server can write
/// its data and socket there); removed on drop.
pub(crate) fn scratch_dir(user: Option<&ServiceUser>) -> Result<tempfile::TempDir> {
    let builder = tempfile::Builder::new().prefix("pm-svc-").clone();
    // Another user must reach it: under /tmp, not a $TMPDIR that may sit in
    // root's home (and a short path keeps a Unix socket's name in bounds).
    let dir = match user {
        Some(_) => builder.tempdir_in("/tmp"),
        None => builder.tempdir(),
    }
    .context("temporary directory")?;
    if let Some(u) = user {
        std::os::unix::fs::chown(dir.path(), Some(u.uid), Some(u.gid))
            .with_context(|| format!("chown {} to {}", dir.path().display(), u.name))?;
    }
    Ok(dir)
}

// ---------------------------------------------------------------------------
// Postgres
// ---------------------------------------------------------------------------

/// The directory named by `POSTMORTEM_POSTGRES_BIN` (a server installed
/// elsewhere), else where Debian puts the server: the newest
/// `/usr/lib/postgresql/*/bin` with an `initdb` in it.
pub(crate) fn postgres_bin() -> Result<PathBuf> {
    match std::env::var_os("POSTMORTEM_POSTGRES_BIN") {
        Some(dir) if Path::new(&dir).join("initdb").is_file() => Ok(PathBuf::from(dir)),
        Some(dir) => Err(anyhow!(
            "PostgreSQL server binaries not found: POSTMORTEM_POSTGRES_BIN={} has no initdb; install them \
             (Debian: apt-get install -y postgresql) or point it at their directory",
            Path::new(&dir).display()
        )),
        None => postgres_bin_in(Path::new("/usr/lib/postgresql")),
    }
}

/// `postgres_bin` under another root (for testing its failure).
pub fn postgres_bin_in(root: &Path) -> Result<PathBuf> {
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
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        anyhow!(
            "PostgreSQL server binaries not found (no {}/*/bin/initdb): install them \
             (Debian: apt-get install -y postgresql; .ci/run does)",
            root.display()
        )
    })
}

/// A throwaway Postgres server: `initdb` into a temporary directory, trust
/// auth for user `postgres`, listening on 127.0.0.1 only (and a socket in
/// the same directory). [`Postgres::stop`] and [`Postgres::start_again`]
/// stop it and start it on the same data and port; dropped, it is stopped
/// at once (its data is thrown away).
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    user: Option<ServiceUser>,
    running: bool,
    dir: tempfile::TempDir,
}

/// The data directories of the Postgres servers running now. A harness
/// stopped by a signal runs no destructors, so [`stop_all`] (called from
/// the signal handler of `postmortem run`) stops what `Drop` would have.
static RUNNING: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn running() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<PathBuf>> {
    RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Stops every service still running (immediate shutdown: SIGQUIT to each
/// server named in its `postmaster.pid`), for a harness being interrupted.
pub(crate) fn stop_all() {
    for pid in std::mem::take(&mut *redis_running()) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    for data in std::mem::take(&mut *running()) {
        let pid = std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
        if let Some(pid) = pid.filter(|p| *p > 1) {
            let _ = Command::new("kill")
                .args(["-s", "QUIT", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// How long `initdb` may take (a loaded 2-core machine: seconds).
const INITDB_LIMIT: Duration = Duration::from_secs(120);
/// How long `pg_ctl start` may take, and its own wait inside that.
const PG_START_LIMIT: Duration = Duration::from_secs(90);
const PG_STOP_LIMIT: Duration = Duration::from_secs(30);

impl Postgres {
    pub fn start() -> Result<Postgres> {
        let bin = postgres_bin()?;
        let user = service_user(&["postgres", "nobody"])?;
        let dir = scratch_dir(user.as_ref())?;
        let data = dir.path().join("data");
        let mut initdb = command_as(user.as_ref(), &bin.join("initdb"), dir.path());
        initdb.arg("-D").arg(&data).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        run_bounded(&mut initdb, INITDB_LIMIT, &dir.path().join("initdb.out"), "initdb")?;
        let mut pg = Postgres { port: 0, bin, data, user, running: false, dir };
        // The port may be taken between our check and the server's bind:
        // try a few.
        let mut last = anyhow!("no attempt");
        for _ in 0..3 {
            pg.port = free_port()?;
            match pg.start_again() {
                Ok(()) => return Ok(pg),
                Err(e) => last = e,
            }
        }
        Err(last.context("Postgres did not start"))
    }

    /// Starts the stopped server again, on the same data directory and port.
    pub fn start_again(&mut self) -> Result<()> {
        if self.running {
            bail!("the Postgres service is already running");
        }
        let mut start = command_as(self.user.as_ref(), &self.bin.join("pg_ctl"), self.dir.path());
        start
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
                self.port,
                self.dir.path().display()
            ))
            .arg("start");
        match run_bounded(&mut start, PG_START_LIMIT, &self.dir.path().join("pg_ctl.out"), "pg_ctl start") {
            Ok(()) => {
                self.running = true;
                running().insert(self.data.clone());
                Ok(())
            }
            Err(e) => {
                let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                Err(anyhow!("{e}\nserver log:\n{log}"))
            }
        }
    }

    /// Stops the server (`-m fast`: connections are closed, the data is
    /// kept for [`Postgres::start_again`]).
    pub fn stop(&mut self) -> Result<()> {
        if !self.running {
            bail!("the Postgres service is not running");
        }
        self.pg_stop("fast")?;
        self.running = false;
        running().remove(&self.data);
        Ok(())
    }

    fn pg_stop(&self, mode: &str) -> Result<()> {
        let mut stop = command_as(self.user.as_ref(), &self.bin.join("pg_ctl"), self.dir.path());
        stop.arg("-D").arg(&self.data).args(["-m", mode, "-w", "-t", "20", "stop"]);
        run_bounded(&mut stop, PG_STOP_LIMIT, &self.dir.path().join("stop.out"), "pg_ctl stop")
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
        if self.running {
            if let Err(e) = self.pg_stop("immediate") {
                tracing::warn!("{e:#}");
            }
            running().remove(&self.data);
        }
    }
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

/// The Redis servers running now, by process id: [`stop_all`] kills them
/// when a harness is interrupted (a signal runs no destructors).
static REDIS_RUNNING: std::sync::Mutex<std::collections::BTreeSet<u32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn redis_running() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u32>> {
    REDIS_RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long a Redis server may take to answer its first PING.
const REDIS_START_LIMIT: Duration = Duration::from_secs(10);

/// `redis-server` on the `PATH`, or what to install.
pub(crate) fn redis_bin() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("redis-server")).find(|p| p.is_file()).ok_or_else(|| {
        anyhow!(
            "redis-server not found on the PATH: install it (Debian: apt-get install -y redis-server; .ci/run does)"
        )
    })
}

/// A throwaway Redis server on 127.0.0.1, its directory temporary.
/// [`Redis::stop`] and [`Redis::start_again`] take it away and bring it
/// back on the same port: by default empty (no snapshots, no append-only
/// file: a Redis that lost its memory), or, started with
/// `Redis::start_appendonly`, with its data (an append-only file synced
/// on every write, as a Redis run for durability). Killed when dropped.
pub struct Redis {
    pub port: u16,
    password: Option<String>,
    appendonly: bool,
    bin: PathBuf,
    user: Option<ServiceUser>,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Redis {
    pub fn start() -> Result<Redis> {
        Self::start_with(None, false)
    }

    /// Keeping its data through [`Redis::stop`] and [`Redis::start_again`].
    pub(crate) fn start_appendonly() -> Result<Redis> {
        Self::start_with(None, true)
    }

    /// With `requirepass`: clients must authenticate.
    pub fn start_with_password(password: Option<&str>) -> Result<Redis> {
        Self::start_with(password, false)
    }

    fn start_with(password: Option<&str>, appendonly: bool) -> Result<Redis> {
        let bin = redis_bin()?;
        // Redis runs as root without complaint; the convention is kept anyway.
        let user = service_user(&["redis", "nobody"])?;
        let dir = scratch_dir(user.as_ref())?;
        let mut r = Redis { port: 0, password: password.map(str::to_string), appendonly, bin, user, dir, child: None };
        // The port may be taken between our check and the server's bind.
        let mut last = anyhow!("no attempt");
        for _ in 0..3 {
            r.port = free_port()?;
            match r.spawn() {
                Ok(()) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last.context("Redis did not start"))
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// `redis://[:password@]127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Kills the server (its data is gone unless it keeps an append-only file).
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            bail!("the Redis service is not running");
        };
        redis_running().remove(&c.id());
        let _ = c.kill();
        c.wait().map(drop).context("redis-server did not exit")
    }

    /// A new server on the same port (empty, or with its append-only file's
    /// data), as after a restart. The old
    /// socket may linger a moment: bounded retries.
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("the Redis service is already running");
        }
        let mut last = anyhow!("no attempt");
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last.context(format!("Redis did not start again on port {}", self.port)))
    }

    /// Starts the server and waits (bounded) until it answers PING.
    fn spawn(&mut self) -> Result<()> {
        let log = self.dir.path().join("redis.log");
        let out = std::fs::File::create(&log).with_context(|| format!("log {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = command_as(self.user.as_ref(), &self.bin, self.dir.path());
        cmd.arg("--port").arg(self.port.to_string()).args(["--bind", "127.0.0.1", "--save", ""]);
        // `always`: every write is on disk before Redis answers it, so a
        // kill loses nothing.
        match self.appendonly {
            true => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
            false => cmd.args(["--appendonly", "no"]),
        };
        cmd.arg("--dir").arg(self.dir.path()).args(["--daemonize", "no", "--protected-mode", "yes"]);
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let mut child = cmd.stdout(out).stderr(err).spawn().with_context(|| format!("cannot run {cmd:?}"))?;
        let started = Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Err(anyhow!(
                    "redis-server exited ({st}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            if self.answers_ping() {
                redis_running().insert(child.id());
                self.child = Some(child);
                return Ok(());
            }
            if started.elapsed() > REDIS_START_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(anyhow!(
                    "no PONG within {} s:\n{}",
                    REDIS_START_LIMIT.as_secs(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
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
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        let mut got = String::new();
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
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

/// A service a scenario stages.
pub(crate) enum Service {
    Postgres(Postgres),
    Redis(Redis),
}

impl Service {
    pub(crate) fn url(&self) -> String {
        match self {
            Service::Postgres(s) => s.url(),
            Service::Redis(s) => s.url(),
        }
    }

    pub(crate) fn stop(&mut self) -> Result<()> {
        match self {
            Service::Postgres(s) => s.stop(),
            Service::Redis(s) => s.stop(),
        }
    }

    pub(crate) fn start_again(&mut self) -> Result<()> {
        match self {
            Service::Postgres(s) => s.start_again(),
            Service::Redis(s) => s.start_again(),
        }
    }
}
