//! The one seam between scenarios and the gateway under test.
//!
//! A scenario talks to the gateway over HTTP in every mode. What differs is
//! what else the harness can do: the in-process gateway has a manual clock,
//! internal stats and known-bad variants; a separate process (target mode)
//! has only its HTTP surface and its output. Steps ask for a capability; the
//! engine picks the scenario's black-box steps, or reports it not applicable,
//! when the target lacks one.

use crate::gateway::clock::ManualClock;
use crate::gateway::upstream::ClientKey;
use crate::gateway::{Config, Gateway, GatewayBuilder, KnownBugs};
use anyhow::anyhow;
use axum::extract::{Request, State};
use axum::middleware::Next;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tracing::instrument::WithSubscriber;

/// What a gateway under test offers the harness beyond HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// The gateway's clock can be moved by the harness.
    ManualClock,
    /// The harness can read the gateway's internal stats and poke its client cache.
    InternalStats,
    /// The gateway serves postmortem's own admin API (cost-map status,
    /// `keys:` in its config). Our gateway has it in any mode; another
    /// gateway only when the target is declared `--target-kind postmortem`.
    PostmortemApi,
    /// The harness reads what the gateway logged: a process target's
    /// stdout and stderr, or what the in-process gateway logged while it
    /// started. A gateway already running (`--target-url`) lacks it.
    GatewayOutput,
}

impl Capability {
    /// The name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Capability::ManualClock => "manual_clock",
            Capability::InternalStats => "internal_stats",
            Capability::PostmortemApi => "postmortem_api",
            Capability::GatewayOutput => "gateway_output",
        }
    }
}

/// Which gateway the scenarios run against.
#[derive(Debug, Clone, Default)]
pub enum TargetSpec {
    /// Our gateway, built in this process for each scenario.
    #[default]
    InProcess,
    /// A separate gateway process started per scenario: `command` with
    /// `{config}` and `{port}` substituted, run by `sh -c`.
    Command { command: String, startup_timeout: Duration, kind: TargetKind },
    /// A gateway that is already running; its config cannot be changed.
    Url { url: String, kind: TargetKind },
}

/// What kind of gateway a target is, for the capabilities only our own
/// gateway has (its admin API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TargetKind {
    /// Our own `postmortem serve`.
    Postmortem,
    /// LiteLLM or any other OpenAI-compatible gateway.
    #[default]
    Other,
}

pub enum GatewayUnderTest {
    InProcess(InProcess),
    Process(Box<TargetProcess>),
}

pub struct InProcess {
    pub gateway: Arc<Gateway>,
    clock: Arc<ManualClock>,
    base_url: String,
    server: tokio::task::JoinHandle<()>,
    /// Asks the server to stop accepting and finish what is in flight.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// What a restart builds again from.
    config: Box<Config>,
    bugs: KnownBugs,
    /// When, on the manual clock, the periodic spend write and database
    /// sync (`proxy_batch_write_at`) is next due: `advance` runs it, as the
    /// spend writer of a served gateway does on real time.
    next_sync: Mutex<Duration>,
    /// What the gateway logged: while it was built, while it handled each
    /// request, and in the tasks the harness runs on it (`advance`). A
    /// scoped subscriber, so parallel scenarios each see their own lines.
    output: Output,
    log: tracing::Dispatch,
}

/// Lines a gateway printed, newest last, at most [`OUTPUT_LINES_KEPT`].
type Output = Arc<Mutex<VecDeque<String>>>;

impl InProcess {
    /// Runs the periodic spend write and database sync if the manual clock
    /// has passed its time (a served gateway's spend writer runs it every
    /// `proxy_batch_write_at` seconds of real time).
    async fn run_due_sync(&self) {
        use crate::gateway::clock::Clock;
        let now = self.clock.now();
        {
            let mut next = self.next_sync.lock();
            if now < *next {
                return;
            }
            *next = now + self.gateway.spend_flush_interval();
        }
        let log = self.log.clone();
        if let Err(e) = self.gateway.sync_store().with_subscriber(log.clone()).await {
            tracing::dispatcher::with_default(&log, || {
                tracing::error!(error = %e, "spend write or database sync failed; the rows stay queued");
            });
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A gateway in another process, reached over HTTP.
pub struct TargetProcess {
    base_url: String,
    root_path: String,
    kind: TargetKind,
    child: Option<tokio::process::Child>,
    output: Output,
    command: String,
    /// What a restart runs again: the command before `{port}` is filled,
    /// the config file, the environment and the start-up bound.
    template: String,
    config_path: PathBuf,
    env: BTreeMap<String, String>,
    startup_timeout: Duration,
    /// Holds the config (and, for our gateway, `postmortem.db` beside it);
    /// shared by the instances of a fleet.
    _dir: Option<Arc<tempfile::TempDir>>,
}

/// How a gateway under test is stopped before it starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Graceful: requests in flight finish, queued spend is written
    /// (in-process: the served gateway's shutdown path; a process: SIGTERM).
    Graceful,
    /// A crash: nothing is written (in-process: the gateway is dropped; a
    /// process: SIGKILL to its group).
    Kill,
}

const OUTPUT_LINES_KEPT: usize = 2000;

/// How long a `restart` gives a process after SIGTERM to finish what is in
/// flight and write its spend before it gets SIGKILL (longer than
/// [`STOP_GRACE`]: here the graceful stop is what the scenario checks).
const RESTART_GRACE: Duration = Duration::from_secs(10);

/// The process groups of the targets running now. A harness stopped by a
/// signal runs no destructors, so `stop_all_targets` (called from the
/// signal handler of `postmortem run`) stops what `Drop` would have.
static RUNNING: std::sync::Mutex<std::collections::BTreeSet<u32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Set (under [`RUNNING`]'s lock) once `stop_all_targets` has run: no target
/// starts after it, or it would outlive the run that is going.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How long a target's process group has to stop after SIGTERM before it
/// gets SIGKILL. A graceful shutdown can wait forever for a connection
/// that never finishes (uvicorn does, with a fault scenario's stalled
/// upstream): LiteLLM processes were seen running an hour after their
/// scenario, each eating a fifth of a core and slowing every later one.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Sends `signal` to a process group. `--` matters: without it `kill` may
/// read `-PID` as an option, and a pid that parses as -1 would signal every
/// process. True when the signal was delivered (with `0`: the group lives).
fn signal_group(pid: u32, signal: &str) -> bool {
    pid > 1
        && std::process::Command::new("kill")
            .args(["-s", signal, "--", &format!("-{pid}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Stops a target's whole process group (gateways fork workers): SIGTERM,
/// then SIGKILL after [`STOP_GRACE`] for whatever is left, from a thread of
/// its own so that `Drop` does not wait.
pub(crate) fn stop_group(pid: u32) {
    if signal_group(pid, "TERM") {
        std::thread::spawn(move || {
            std::thread::sleep(STOP_GRACE);
            if signal_group(pid, "0") {
                signal_group(pid, "KILL");
            }
        });
    }
}

/// Stops every target process still running (for a harness that is being
/// interrupted, which will not wait for `stop_group`'s threads): SIGTERM,
/// at most 3 s for them to go, then SIGKILL. None outlives the
/// run that started it.
pub(crate) fn stop_all_targets() {
    let groups = {
        let mut running = RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        STOPPING.store(true, std::sync::atomic::Ordering::Release);
        std::mem::take(&mut *running)
    };
    let groups: Vec<u32> = groups.into_iter().filter(|pid| signal_group(*pid, "TERM")).collect();
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline && groups.iter().any(|pid| signal_group(*pid, "0")) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in groups {
        signal_group(pid, "KILL");
    }
}

impl Drop for TargetProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            if let Some(pid) = child.id() {
                RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&pid);
                stop_group(pid);
            }
            let _ = child.start_kill();
        }
    }
}

impl TargetSpec {
    /// Whether gateways of this target have `cap`, before one is started.
    pub fn has(&self, cap: Capability) -> bool {
        match self {
            TargetSpec::InProcess => true,
            TargetSpec::Command { kind, .. } => process_has(*kind, true, cap),
            TargetSpec::Url { kind, .. } => process_has(*kind, false, cap),
        }
    }
}

/// What a gateway in another process offers the harness.
fn process_has(kind: TargetKind, output_captured: bool, cap: Capability) -> bool {
    match cap {
        Capability::ManualClock | Capability::InternalStats => false,
        Capability::PostmortemApi => kind == TargetKind::Postmortem,
        Capability::GatewayOutput => output_captured,
    }
}

impl GatewayUnderTest {
    /// Builds our gateway from `config` with a manual clock (and `bugs` put
    /// back, for proofs) and serves it on 127.0.0.1:0.
    pub async fn in_process(config: Config, bugs: KnownBugs) -> anyhow::Result<GatewayUnderTest> {
        Self::in_process_on(config, bugs, ManualClock::shared()).await.map(GatewayUnderTest::InProcess)
    }

    /// [`GatewayUnderTest::in_process`] on a given manual clock (a restart
    /// keeps its gateway's time).
    async fn in_process_on(mut config: Config, bugs: KnownBugs, clock: Arc<ManualClock>) -> anyhow::Result<InProcess> {
        let original = config.clone();
        // A `DATABASE_URL` in the environment of whoever runs the harness
        // (set for another project) must not send a scenario's keys and
        // spend to that database: an in-process gateway under test reads
        // it only from its own config (`database_url`, or the scenario's
        // `environment_variables`). An empty value is no database. The same
        // for Redis: parallel scenarios on someone's Redis would share (and
        // spend) each other's rate windows.
        for var in ["DATABASE_URL", "REDIS_URL", "REDIS_HOST"] {
            config.environment_variables.entry(var.into()).or_default();
        }
        let output = Output::default();
        let log = tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .with_writer(LineSink(output.clone()))
                .finish(),
        );
        let gateway = GatewayBuilder::new(config)
            .clock(clock.clone())
            .known_bugs(bugs)
            .build()
            .with_subscriber(log.clone())
            .await
            .map_err(|e| anyhow!("gateway did not start: {e}"))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        // Every request's handler logs into this gateway's output, as a
        // separate process's would.
        let app = crate::gateway::server::app(gateway.clone()).layer(axum::middleware::from_fn_with_state(
            log.clone(),
            |State(log): State<tracing::Dispatch>, req: Request, next: Next| next.run(req).with_subscriber(log),
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        use crate::gateway::clock::Clock;
        let next_sync = clock.now() + gateway.spend_flush_interval();
        Ok(InProcess {
            gateway,
            clock,
            base_url: format!("http://{addr}"),
            server,
            stop: Some(stop),
            config: Box::new(original),
            bugs,
            next_sync: Mutex::new(next_sync),
            output,
            log,
        })
    }

    /// Stops the gateway (`how`) and starts it again on the same config and
    /// data: in-process a new gateway on the same manual clock, a process
    /// the same command on a new port. Every wait is bounded.
    pub async fn restart(&mut self, how: Stop) -> anyhow::Result<()> {
        match self {
            GatewayUnderTest::InProcess(p) => {
                if how == Stop::Graceful {
                    if let Some(stop) = p.stop.take() {
                        let _ = stop.send(());
                    }
                    let server = &mut p.server;
                    if tokio::time::timeout(crate::gateway::server::SHUTDOWN_GRACE, server).await.is_err() {
                        return Err(anyhow!("the in-process gateway did not stop within the shutdown grace"));
                    }
                    crate::gateway::server::write_out(&p.gateway).with_subscriber(p.log.clone()).await;
                }
                p.server.abort();
                let next = Self::in_process_on((*p.config).clone(), p.bugs, p.clock.clone()).await?;
                // Its lines follow the old gateway's, as a process's would.
                {
                    let (mut old, mut new) = (p.output.lock(), next.output.lock());
                    for line in old.drain(..).rev() {
                        new.push_front(line);
                    }
                    let excess = new.len().saturating_sub(OUTPUT_LINES_KEPT);
                    new.drain(..excess);
                }
                *p = next;
                Ok(())
            }
            GatewayUnderTest::Process(p) => p.restart(how).await,
        }
    }

    /// Starts `command` with the scenario's config written to a
    /// LiteLLM-format `config.yaml` and waits (bounded) until it answers
    /// HTTP. The file goes into `dir` when given, which the instances of a
    /// fleet share (with our gateway, so do they the `postmortem.db` beside
    /// it), else into a temporary directory of its own.
    pub async fn start_command(
        dir: Option<Arc<tempfile::TempDir>>,
        command: &str,
        config_yaml: &str,
        env: &BTreeMap<String, String>,
        root_path: &str,
        kind: TargetKind,
        startup_timeout: Duration,
    ) -> anyhow::Result<GatewayUnderTest> {
        let dir = match dir {
            Some(d) => d,
            None => Arc::new(tempfile::tempdir().map_err(|e| anyhow!("temp dir: {e}"))?),
        };
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config_yaml).map_err(|e| anyhow!("writing {}: {e}", config_path.display()))?;
        let mut target = TargetProcess {
            base_url: String::new(),
            root_path: root_path.to_string(),
            kind,
            child: None,
            output: Output::default(),
            command: String::new(),
            template: command.to_string(),
            config_path,
            env: env.clone(),
            startup_timeout,
            _dir: Some(dir),
        };
        target.spawn().await?;
        Ok(GatewayUnderTest::Process(Box::new(target)))
    }
}

impl TargetProcess {
    /// Runs the command on a port chosen now and waits until it answers.
    async fn spawn(&mut self) -> anyhow::Result<()> {
        let port = free_port()?;
        let cmd = self
            .template
            .replace("{config}", &self.config_path.display().to_string())
            .replace("{port}", &port.to_string());
        let cwd = self.config_path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c")
            .arg(&cmd)
            .envs(&self.env)
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // Started and registered under one lock: an interruption that
        // stops every target (another thread) either sees this one or comes
        // before it, and then none starts.
        let mut child = {
            let mut running = RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if STOPPING.load(std::sync::atomic::Ordering::Acquire) {
                return Err(anyhow!("the run is being interrupted: no target starts"));
            }
            let child = c.spawn().map_err(|e| anyhow!("cannot start `{cmd}`: {e}"))?;
            if let Some(pid) = child.id() {
                running.insert(pid);
            }
            child
        };
        if let Some(out) = child.stdout.take() {
            tokio::spawn(keep_lines(out, self.output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(keep_lines(err, self.output.clone()));
        }
        self.base_url = format!("http://127.0.0.1:{port}");
        self.child = Some(child);
        self.command = cmd;
        self.wait_ready(self.startup_timeout).await
    }

    /// Stops the process group (SIGTERM, or SIGKILL for [`Stop::Kill`]),
    /// waits for the leader to exit (bounded: SIGKILL after
    /// [`RESTART_GRACE`]), then runs the command again.
    async fn restart(&mut self, how: Stop) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Err(anyhow!("a gateway the harness did not start cannot be restarted"));
        };
        if let Some(pid) = child.id() {
            signal_group(pid, if how == Stop::Kill { "KILL" } else { "TERM" });
            if tokio::time::timeout(RESTART_GRACE, child.wait()).await.is_err() {
                signal_group(pid, "KILL");
            }
            RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&pid);
        }
        let _ = child.start_kill();
        tokio::time::timeout(STOP_GRACE, child.wait())
            .await
            .map_err(|_| anyhow!("target `{}` did not exit after SIGKILL", self.command))?
            .map_err(|e| anyhow!("waiting for target `{}`: {e}", self.command))?;
        self.spawn().await
    }
}

impl GatewayUnderTest {
    /// A gateway that is already running at `url`.
    pub(crate) fn external(url: &str, kind: TargetKind) -> GatewayUnderTest {
        GatewayUnderTest::Process(Box::new(TargetProcess {
            base_url: url.trim_end_matches('/').to_string(),
            root_path: String::new(),
            kind,
            child: None,
            output: Arc::default(),
            command: url.to_string(),
            template: String::new(),
            config_path: PathBuf::new(),
            env: BTreeMap::new(),
            startup_timeout: Duration::ZERO,
            _dir: None,
        }))
    }

    /// The process group of a gateway this harness started (its leader's
    /// pid), for reading what it costs.
    pub fn pid(&self) -> Option<u32> {
        match self {
            GatewayUnderTest::InProcess(_) => None,
            GatewayUnderTest::Process(p) => p.child.as_ref().and_then(tokio::process::Child::id),
        }
    }

    pub(crate) fn base_url(&self) -> &str {
        match self {
            GatewayUnderTest::InProcess(p) => &p.base_url,
            GatewayUnderTest::Process(p) => &p.base_url,
        }
    }

    pub(crate) fn root_path(&self) -> String {
        match self {
            GatewayUnderTest::InProcess(p) => p.gateway.root_path.clone(),
            GatewayUnderTest::Process(p) => p.root_path.clone(),
        }
    }

    pub fn has(&self, cap: Capability) -> bool {
        match self {
            GatewayUnderTest::InProcess(_) => true,
            GatewayUnderTest::Process(p) => process_has(p.kind, p.child.is_some(), cap),
        }
    }

    pub async fn advance(&self, by: Duration) -> anyhow::Result<()> {
        match self {
            GatewayUnderTest::InProcess(p) => {
                p.clock.advance(by);
                // Expired clients leave the cache on the next access in
                // production; the harness sweeps now so stats are current.
                p.gateway.clients.evict_expired();
                p.gateway.run_due_tasks().with_subscriber(p.log.clone()).await;
                p.run_due_sync().await;
                Ok(())
            }
            GatewayUnderTest::Process(_) => Err(anyhow!("a separate gateway process has no manual clock")),
        }
    }

    /// The gateway's status document (what `/health` shows).
    pub async fn status(&self) -> anyhow::Result<Value> {
        match self {
            GatewayUnderTest::InProcess(p) => Ok(crate::gateway::server::health_value(&p.gateway)),
            GatewayUnderTest::Process(_) => Err(anyhow!("internal stats are only available in-process")),
        }
    }

    /// Puts `count` distinct clients into the client cache and lets go of
    /// them, pushing older entries out by capacity.
    pub(crate) fn fill_client_cache(&self, count: usize) -> anyhow::Result<()> {
        match self {
            GatewayUnderTest::InProcess(p) => {
                for i in 0..count {
                    let key =
                        ClientKey::new("filler", &format!("http://filler-{i}.invalid"), "", Duration::from_secs(1));
                    p.gateway.client(key)?;
                }
                Ok(())
            }
            GatewayUnderTest::Process(_) => {
                Err(anyhow!("the client cache of a separate process cannot be filled directly"))
            }
        }
    }

    /// The last lines a separate process printed, for error reports (an
    /// in-process gateway's start-up lines are not news to anyone).
    pub(crate) fn output_tail(&self, n: usize) -> String {
        match self {
            GatewayUnderTest::InProcess(_) => String::new(),
            GatewayUnderTest::Process(p) => tail(&p.output, n),
        }
    }

    /// Whether a process target has exited (an in-process gateway or an
    /// external URL never has, as far as the harness can tell).
    pub(crate) fn has_exited(&mut self) -> bool {
        match self {
            GatewayUnderTest::Process(p) => p.child.as_mut().is_some_and(|c| !matches!(c.try_wait(), Ok(None))),
            GatewayUnderTest::InProcess(_) => false,
        }
    }

    /// Whether more output lines may still arrive (a running process).
    pub(crate) fn output_is_live(&self) -> bool {
        matches!(self, GatewayUnderTest::Process(p) if p.child.is_some())
    }

    /// The gateway's output lines so far (see [`Capability::GatewayOutput`]).
    pub(crate) fn output_lines(&self) -> Vec<String> {
        let output = match self {
            GatewayUnderTest::InProcess(p) => &p.output,
            GatewayUnderTest::Process(p) => &p.output,
        };
        output.lock().iter().cloned().collect()
    }
}

/// The last `n` lines, each clipped to [`TAIL_LINE_CHARS`]: a report's
/// evidence, where one logged 70 MB body must not become a 70 MB report
/// (the contracts still read the whole lines).
fn tail(output: &Output, n: usize) -> String {
    let o = output.lock();
    let skip = o.len().saturating_sub(n);
    o.iter().skip(skip).map(|l| clip_line(l)).collect::<Vec<_>>().join("\n")
}

const TAIL_LINE_CHARS: usize = 2000;

fn clip_line(line: &str) -> String {
    match line.char_indices().nth(TAIL_LINE_CHARS) {
        Some((cut, _)) => format!("{}… ({} more bytes)", &line[..cut], line.len() - cut),
        None => line.to_string(),
    }
}

fn push_line(output: &Output, line: String) {
    let mut o = output.lock();
    if o.len() == OUTPUT_LINES_KEPT {
        o.pop_front();
    }
    o.push_back(line);
}

/// A `tracing` writer that appends each formatted event to an [`Output`].
/// The fmt layer makes one writer per event and drops it after the event.
struct LineSink(Output);

struct LineWriter {
    output: Output,
    buf: Vec<u8>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineSink {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter { output: self.0.clone(), buf: Vec::new() }
    }
}

impl std::io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        for line in String::from_utf8_lossy(&self.buf).lines() {
            push_line(&self.output, line.to_string());
        }
    }
}

impl TargetProcess {
    fn tail(&self, n: usize) -> String {
        tail(&self.output, n)
    }

    /// Polls until the target answers any HTTP response. Bounded: a target
    /// that exits, never listens or speaks something else is an error naming
    /// the command and its last output.
    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let probe = format!("{}{}/health/liveliness", self.base_url, self.root_path);
        let mut last_error = String::new();
        while started.elapsed() < timeout {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    // Let the pipe readers catch the last lines it printed.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return Err(anyhow!(
                        "target `{}` exited with {status} before answering; last output:\n{}",
                        self.command,
                        self.tail(30)
                    ));
                }
            }
            match http.get(&probe).send().await {
                Ok(_) => return Ok(()),
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(anyhow!(
            "target `{}` did not answer HTTP at {} within {}s (last error: {last_error}); last output:\n{}",
            self.command,
            self.base_url,
            timeout.as_secs(),
            self.tail(30)
        ))
    }
}

/// A port for a target process to listen on. A target must be told its
/// port, so there is a gap between choosing it and the target binding it;
/// a port from the kernel's ephemeral range (where every mock's port 0
/// lands) could be handed to a mock in that gap, and the target's traffic
/// would then reach the mock. So the port comes from below the ephemeral
/// range (Linux's default starts at 32768), checked free when chosen.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    use rand::Rng;
    let low = ephemeral_low().unwrap_or(32768).clamp(2048, 65535);
    let (from, to) = if low > 12000 { (10000u16, low as u16) } else { (60000u16, 65000u16) };
    let mut rng = rand::thread_rng();
    let mut last = String::new();
    for _ in 0..200 {
        let port = rng.gen_range(from..to);
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(_) => return Ok(port),
            Err(e) => last = e.to_string(),
        }
    }
    Err(anyhow!("no free port between {from} and {to}: {last}"))
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_low() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Keeps the last lines a pipe carries, for error reports and log checks.
async fn keep_lines(pipe: impl tokio::io::AsyncRead + Unpin, output: Output) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        push_line(&output, line);
    }
}

#[cfg(test)]
mod tail_tests {
    use super::*;

    #[test]
    fn report_tails_clip_long_lines() {
        let output: Output = Default::default();
        push_line(&output, "short".into());
        push_line(&output, "é".repeat(5000));
        let t = tail(&output, 10);
        assert!(t.starts_with("short\n"), "{t:.20}");
        assert!(t.ends_with(&format!("… ({} more bytes)", 3000 * 2)), "{}", &t[t.len() - 40..]);
        assert!(t.chars().count() < 2100);
    }
}
