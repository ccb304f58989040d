//! `postmortem bench`: the load test as a product command, for any gateway.
//!
//! One invocation starts a fast upstream ([`upstream`], a process of its
//! own), a plain nginx reverse proxy in front of it as the floor ([`floor`],
//! when nginx is installed) and the gateway under test (ours by default,
//! `--target-cmd` or `--target-url` for another, through the same seam as
//! target mode), then loads each in turn with the same requests
//! ([`load`]): direct to the upstream, through the floor, through the
//! target; non-streaming and streaming; at each concurrency asked for;
//! several rounds, the arms interleaved so the machine's noise falls on all
//! of them alike. It reports latency (p50/p90/p99), what each arm adds to
//! direct, throughput ratios, CPU per request of each process and the
//! target's memory, all read from `/proc` (`procs`), and whether other
//! processes used the CPU during a run (such a run is redone once, then
//! marked).
//!
//! Every run is bounded in time and requests; everything listens and is
//! reached on 127.0.0.1 only.
//!
//! Architecture invariant: nothing here imports `crate::gateway`. Our
//! gateway is benchmarked as the process users run (`postmortem serve`),
//! like any other target.

use anyhow::anyhow;
pub mod faults;
pub mod floor;
pub mod load;
pub(crate) mod procs;
pub mod soak;
pub mod upstream;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::target::{free_port, GatewayUnderTest, TargetKind};

/// The gateway under test.
#[derive(Debug, Clone)]
pub enum BenchTarget {
    /// A command with `{config}` and `{port}`, started with the bench's
    /// config (ours: `postmortem serve --config {config} --port {port}`).
    Command { command: String, kind: TargetKind },
    /// A gateway already running on 127.0.0.1, configured by its owner to
    /// route `model` to the bench upstream (`--upstream-port`).
    Url(String),
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// One or more gateways; several are loaded side by side in the same
    /// run (arms `target`, `target-2`, …): the fair way to compare two
    /// builds or two gateways on a noisy machine.
    pub targets: Vec<BenchTarget>,
    pub concurrency: Vec<usize>,
    pub duration: Duration,
    pub max_requests: u64,
    pub rounds: usize,
    pub stream: bool,
    pub plain: bool,
    pub floor: bool,
    pub upstream_port: u16,
    pub chunk_gap: Duration,
    pub model: String,
    pub key: Option<String>,
    pub startup_timeout: Duration,
    /// The executable that serves the upstream (`bench-upstream`).
    pub exe: std::path::PathBuf,
    /// Load with [`VIRTUAL_KEY`] (a key with rpm/tpm limits and a budget,
    /// so each request takes the key's checks and its spend) instead of the
    /// master key.
    pub virtual_key: bool,
    /// Start a Redis and load each started target twice: as configured,
    /// and with `router_settings.redis_url` (arm `NAME+redis`).
    pub redis: bool,
}

/// The master key of the config the bench writes for a target it starts.
pub const MASTER_KEY: &str = "sk-bench-master-key-0001";
/// The virtual key of that config (`--virtual-key`): limits far above any
/// load, so it is never refused, but checked and charged on every request.
pub const VIRTUAL_KEY: &str = "sk-bench-virtual-key-0001";
const UPSTREAM_KEY: &str = "bench-upstream-key";

/// One measured run of one arm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub arm: String,
    pub mode: String,
    pub concurrency: usize,
    pub round: usize,
    pub requests: u64,
    pub per_second: f64,
    pub p50_us: u32,
    pub p90_us: u32,
    pub p99_us: u32,
    /// Streams: time to the first event, and the gap between events (p50).
    pub first_event_p50_us: Option<u32>,
    pub gap_p50_us: Option<u32>,
    pub errors: u64,
    pub non_2xx: u64,
    /// CPU per request of the arm's own process (direct: the upstream).
    pub cpu_us_per_request: Option<f64>,
    pub upstream_cpu_us_per_request: f64,
    /// CPU per request of the Redis server the bench started (`--redis`),
    /// on the arms that use it: part of what the Redis setup costs, not a
    /// disturbance.
    #[serde(default)]
    pub redis_cpu_us_per_request: Option<f64>,
    /// CPU that processes outside the bench used during the run, as a
    /// share of one core.
    pub other_cpu_share: f64,
    pub disturbed: bool,
    pub first_error: Option<String>,
}

/// The medians of an arm over the rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub arm: String,
    pub mode: String,
    pub concurrency: usize,
    pub per_second: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub first_event_p50_us: Option<f64>,
    pub gap_p50_us: Option<f64>,
    pub cpu_us_per_request: Option<f64>,
    #[serde(default)]
    pub redis_cpu_us_per_request: Option<f64>,
    pub errors: u64,
    /// (max − min) / median of throughput over the rounds: the noise.
    pub spread: f64,
}

/// A gateway under test and its memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetInfo {
    /// Its arm: `target`, `target-2`, …
    pub arm: String,
    pub command: String,
    pub idle_rss_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub date: String,
    pub cores: usize,
    pub targets: Vec<TargetInfo>,
    pub floor: Option<String>,
    pub duration_s: f64,
    pub rounds: usize,
    pub samples: Vec<Sample>,
    pub summaries: Vec<Summary>,
}

/// A process the bench started, stopped with its whole group on drop.
pub(crate) struct Spawned {
    child: tokio::process::Child,
    _dir: Option<tempfile::TempDir>,
}

impl Spawned {
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            crate::target::stop_group(pid);
        }
        let _ = self.child.start_kill();
    }
}

fn spawn(program: &std::path::Path, args: &[String], dir: Option<tempfile::TempDir>) -> anyhow::Result<Spawned> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow!("cannot start {}: {e}", program.display()))?;
    Ok(Spawned { child, _dir: dir })
}

/// Waits (bounded) until something accepts connections on `addr`.
async fn wait_listening(addr: &str, within: Duration, what: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(anyhow!("{what} did not listen on {addr} within {within:?}"))
}

/// `host:port` of a URL on the loopback interface, or why not.
pub(crate) fn loopback_authority(url: &str) -> anyhow::Result<String> {
    let u = reqwest::Url::parse(url).map_err(|e| anyhow!("{url}: {e}"))?;
    let host = u.host_str().unwrap_or_default();
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        return Err(anyhow!("{url}: the bench only talks to 127.0.0.1 (got host `{host}`)"));
    }
    let port = u.port_or_known_default().ok_or_else(|| anyhow!("{url}: no port"))?;
    Ok(format!("127.0.0.1:{port}"))
}

/// The request every arm gets: a realistic small chat completion.
fn body(model: &str, stream: bool) -> Bytes {
    chat_body(model, stream, "")
}

/// The bench's chat completion with `note` (no quotes or backslashes: it
/// is not escaped) appended to the user's message: the soak's fault marker.
pub(crate) fn chat_body(model: &str, stream: bool, note: &str) -> Bytes {
    let stream = if stream { r#","stream":true"# } else { "" };
    Bytes::from(format!(
        r#"{{"model":"{model}","messages":[{{"role":"system","content":"You are a concise assistant for a CI dashboard."}},{{"role":"user","content":"Summarize the last build: 214 tests, 0 failures, 3 skipped, 41 s.{note}"}}],"temperature":0.2,"max_tokens":256{stream}}}"#
    ))
}

/// Starts the bench upstream (`bench-upstream`, this executable) in a
/// process of its own, so its CPU is its own; waits until it listens.
/// Returns the process and its `host:port`.
pub(crate) async fn start_upstream(
    exe: &std::path::Path,
    port: u16,
    chunk_gap: Duration,
    faults: bool,
) -> anyhow::Result<(Spawned, String)> {
    let port = if port == 0 { free_port()? } else { port };
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["bench-upstream".into(), "--port".into(), port.to_string()];
    args.extend(["--chunk-gap-us".into(), chunk_gap.as_micros().to_string()]);
    if faults {
        args.push("--faults".into());
    }
    let upstream = spawn(exe, &args, None)?;
    wait_listening(&addr, Duration::from_secs(10), "the bench upstream").await?;
    Ok((upstream, addr))
}

/// Starts a gateway command with `config` (RUST_LOG=warn: a load's worth of
/// info lines would cost the gateway CPU); returns it and its `host:port`.
pub(crate) async fn start_target(
    command: &str,
    kind: TargetKind,
    config: &str,
    startup_timeout: Duration,
) -> anyhow::Result<(GatewayUnderTest, String)> {
    let env: BTreeMap<String, String> = [("RUST_LOG".to_string(), "warn".to_string())].into();
    let g = GatewayUnderTest::start_command(None, command, config, &env, "", kind, startup_timeout).await?;
    let authority = loopback_authority(g.base_url())?;
    Ok((g, authority))
}

/// The LiteLLM-format config a started target gets: one deployment of
/// `model` on the bench upstream, the master key, [`VIRTUAL_KEY`], and
/// Redis when `redis_url` is given.
pub(crate) fn target_config(upstream: &str, model: &str, redis_url: Option<&str>) -> String {
    let mut yaml = format!(
        "model_list:\n  - model_name: {model}\n    litellm_params: {{model: openai/gpt-4o, api_base: \"http://{upstream}/v1\", api_key: {UPSTREAM_KEY}}}\n\
         general_settings: {{master_key: {MASTER_KEY}}}\n\
         keys:\n  - {{key: {VIRTUAL_KEY}, models: [{model}], rpm_limit: 1000000000, tpm_limit: 1000000000000, max_budget: 1000000000}}\n"
    );
    if let Some(url) = redis_url {
        yaml.push_str(&format!("router_settings: {{redis_url: \"{url}\"}}\n"));
    }
    yaml
}

struct Arm {
    name: String,
    authority: String,
    key: String,
    /// The process group whose CPU is the arm's.
    group: Option<u32>,
}

/// Called after each run with a line saying what finished.
pub(crate) type Progress<'a> = &'a (dyn Fn(String) + Sync);

/// How many runs [`run`] makes (for a progress bar).
pub(crate) fn planned_runs(o: &BenchOptions, arms: usize) -> u64 {
    let modes = usize::from(o.plain) + usize::from(o.stream);
    (modes * o.concurrency.len() * o.rounds * arms) as u64
}

/// Runs the whole bench.
pub async fn run(o: &BenchOptions, progress: Progress<'_>) -> anyhow::Result<Report> {
    let ticks = procs::clock_ticks();
    let (upstream, up_addr) = start_upstream(&o.exe, o.upstream_port, o.chunk_gap, false).await?;

    let mut floor_proc = None;
    let mut floor_name = None;
    let mut floor_addr = None;
    if o.floor {
        if let Some(nginx) = floor::find_nginx() {
            let dir = tempfile::tempdir()?;
            let port = free_port()?;
            let conf = dir.path().join("nginx.conf");
            std::fs::write(&conf, floor::config(dir.path(), port, &up_addr))?;
            let args = vec![
                "-p".to_string(),
                dir.path().display().to_string(),
                "-c".into(),
                conf.display().to_string(),
                "-e".into(),
                dir.path().join("error.log").display().to_string(),
            ];
            let p = spawn(&nginx, &args, Some(dir))?;
            let addr = format!("127.0.0.1:{port}");
            wait_listening(&addr, Duration::from_secs(10), "nginx").await?;
            floor_name = Some(format!("nginx ({})", nginx.display()));
            floor_addr = Some(addr);
            floor_proc = Some(p);
        }
    }

    let mut arms = vec![Arm {
        name: "direct".into(),
        authority: up_addr.clone(),
        key: UPSTREAM_KEY.into(),
        group: upstream.pid(),
    }];
    if let Some(addr) = &floor_addr {
        arms.push(Arm {
            name: "floor".into(),
            authority: addr.clone(),
            key: UPSTREAM_KEY.into(),
            group: floor_proc.as_ref().and_then(Spawned::pid),
        });
    }
    // A throwaway Redis for the `+redis` arms, on 127.0.0.1, gone at the end.
    let redis = match o.redis {
        true => Some(
            tokio::task::spawn_blocking(crate::services::Redis::start).await?.map_err(|e| anyhow!("--redis: {e:#}"))?,
        ),
        false => None,
    };
    let redis_url = redis.as_ref().map(crate::services::Redis::url);
    let redis_pid = redis.as_ref().and_then(crate::services::Redis::pid);
    // Each target process lives until the runs end.
    let mut started = Vec::new();
    let mut targets = Vec::new();
    let default_key = if o.virtual_key { VIRTUAL_KEY } else { MASTER_KEY };
    for (i, t) in o.targets.iter().enumerate() {
        let name = if i == 0 { "target".to_string() } else { format!("target-{}", i + 1) };
        let variants: Vec<(String, Option<&str>)> = match redis_url.as_deref() {
            Some(url) => vec![(name.clone(), None), (format!("{name}+redis"), Some(url))],
            None => vec![(name, None)],
        };
        for (arm, redis_url) in variants {
            let (group, command, authority) = match t {
                BenchTarget::Command { command, kind } => {
                    let config = target_config(&up_addr, &o.model, redis_url);
                    let (g, authority) = start_target(command, *kind, &config, o.startup_timeout)
                        .await
                        .map_err(|e| anyhow!("{arm}: {e}"))?;
                    let group = g.pid();
                    started.push(g);
                    (group, command.clone(), authority)
                }
                BenchTarget::Url(url) => (None, url.clone(), loopback_authority(url)?),
            };
            let key = o.key.clone().unwrap_or_else(|| default_key.to_string());
            arms.push(Arm { name: arm.clone(), authority, key, group });
            targets.push(TargetInfo { arm, command, idle_rss_kib: None, rss_after_kib: None });
        }
    }
    let group_of = |arm: &str| arms.iter().find(|a| a.name == arm).and_then(|a| a.group);

    // One request through each arm before anything is measured: a broken
    // setup is an error, not a table of failures.
    for arm in &arms {
        let r = load::run(&spec(o, arm, 1, false, Duration::from_secs(10), 1)).await;
        if r.requests() != 1 {
            return Err(anyhow!(
                "{} ({}) did not answer a chat completion with 200: {}",
                arm.name,
                arm.authority,
                r.first_error.unwrap_or_else(|| format!("{} non-2xx answer(s)", r.non_2xx))
            ));
        }
    }
    // Let the target settle after start-up, then read its idle memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for t in &mut targets {
        t.idle_rss_kib = group_of(&t.arm).map(procs::group_rss_kib);
    }

    let groups: Vec<u32> = arms.iter().filter_map(|a| a.group).collect();
    let mut samples = Vec::new();
    let modes: Vec<bool> = [(o.plain, false), (o.stream, true)].into_iter().filter(|m| m.0).map(|m| m.1).collect();
    for &stream in &modes {
        for &c in &o.concurrency {
            // Warm-up: connections, caches, the allocator's pools.
            for arm in &arms {
                load::run(&spec(o, arm, c, stream, Duration::from_millis(500), o.max_requests)).await;
            }
            for round in 0..o.rounds {
                // Each round starts at another arm: on two cores the arm run
                // right after another measured lower more often than the
                // noise explains (BENCHMARKS.md, ninth run), so no arm keeps
                // one place in the order.
                for arm in rotated(&arms, round) {
                    let mut s = measure(o, arm, c, stream, round, &groups, upstream.pid(), redis_pid, ticks).await;
                    if s.disturbed {
                        // Once more; a second disturbed run is kept, marked.
                        s = measure(o, arm, c, stream, round, &groups, upstream.pid(), redis_pid, ticks).await;
                    }
                    progress(format!(
                        "{} {} c={c} round {}: {:.0} req/s{}",
                        s.mode,
                        s.arm,
                        round + 1,
                        s.per_second,
                        if s.disturbed { " (disturbed)" } else { "" }
                    ));
                    samples.push(s);
                }
            }
        }
    }
    for t in &mut targets {
        t.rss_after_kib = group_of(&t.arm).map(procs::group_rss_kib);
    }
    drop(started);
    drop(redis);
    drop(floor_proc);
    drop(upstream);
    let summaries = summarize(&samples);
    Ok(Report {
        date: crate::replay::cassette::rfc3339(std::time::SystemTime::now()),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        targets,
        floor: floor_name,
        duration_s: o.duration.as_secs_f64(),
        rounds: o.rounds,
        samples,
        summaries,
    })
}

fn spec(o: &BenchOptions, arm: &Arm, c: usize, stream: bool, duration: Duration, max: u64) -> load::LoadSpec {
    load::LoadSpec {
        authority: arm.authority.clone(),
        path: "/v1/chat/completions".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("authorization".into(), format!("Bearer {}", arm.key)),
        ],
        body: body(&o.model, stream),
        concurrency: c,
        duration,
        max_requests: max,
        stream,
        request_timeout: Duration::from_secs(10),
    }
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    o: &BenchOptions,
    arm: &Arm,
    c: usize,
    stream: bool,
    round: usize,
    groups: &[u32],
    upstream: Option<u32>,
    redis: Option<u32>,
    ticks: u64,
) -> Sample {
    let cpu = |g: Option<u32>| g.map(procs::group_cpu_ticks).unwrap_or(0);
    let ours = |groups: &[u32]| groups.iter().map(|g| procs::group_cpu_ticks(*g)).sum::<u64>();
    let me = std::process::id();
    // The Redis server is the bench's child, in the bench's process group:
    // counted by its own id.
    let redis_ticks = || redis.map(procs::cpu_ticks).unwrap_or(0);
    let (arm0, up0, ours0, me0, redis0, (busy0, _)) =
        (cpu(arm.group), cpu(upstream), ours(groups), procs::cpu_ticks(me), redis_ticks(), procs::machine_ticks());
    let r = load::run(&spec(o, arm, c, stream, o.duration, o.max_requests)).await;
    let (arm1, up1, ours1, me1, redis1, (busy1, _)) =
        (cpu(arm.group), cpu(upstream), ours(groups), procs::cpu_ticks(me), redis_ticks(), procs::machine_ticks());
    let per_req = |t: u64| procs::ticks_to_duration(t, ticks).as_secs_f64() * 1e6 / r.requests().max(1) as f64;
    let redis_used = redis1.saturating_sub(redis0);
    let other =
        busy1.saturating_sub(busy0).saturating_sub((ours1 - ours0.min(ours1)) + (me1 - me0.min(me1)) + redis_used);
    let other_cpu_share = procs::ticks_to_duration(other, ticks).as_secs_f64() / r.elapsed.as_secs_f64().max(1e-9);
    let q = |xs: &[u32], p: f64| load::quantile(xs, p).unwrap_or(0);
    Sample {
        arm: arm.name.clone(),
        mode: if stream { "stream" } else { "plain" }.into(),
        concurrency: c,
        round,
        requests: r.requests(),
        per_second: r.per_second(),
        p50_us: q(&r.latency_us, 0.5),
        p90_us: q(&r.latency_us, 0.9),
        p99_us: q(&r.latency_us, 0.99),
        first_event_p50_us: load::quantile(&r.ttft_us, 0.5),
        gap_p50_us: load::quantile(&r.gap_us, 0.5),
        errors: r.errors,
        non_2xx: r.non_2xx,
        cpu_us_per_request: arm.group.map(|_| per_req(arm1.saturating_sub(arm0))),
        upstream_cpu_us_per_request: per_req(up1.saturating_sub(up0)),
        redis_cpu_us_per_request: (redis.is_some() && arm.name.ends_with("+redis")).then(|| per_req(redis_used)),
        other_cpu_share,
        // More than a fifth of a core used by others (the kernel's own
        // network work is counted against the processes that cause it).
        disturbed: other_cpu_share > DISTURBED_SHARE,
        first_error: r.first_error,
    }
}

/// `items` starting at `round` (modulo their number), in their order.
fn rotated<T>(items: &[T], round: usize) -> impl Iterator<Item = &T> {
    let start = if items.is_empty() { 0 } else { round % items.len() };
    items[start..].iter().chain(&items[..start])
}

/// Above this share of one core used by other processes, a run is
/// disturbed.
pub(crate) const DISTURBED_SHARE: f64 = 0.2;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

fn summarize(samples: &[Sample]) -> Vec<Summary> {
    let mut keys: Vec<(String, usize, String)> = Vec::new();
    for s in samples {
        let k = (s.mode.clone(), s.concurrency, s.arm.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(mode, c, arm)| {
            let of: Vec<&Sample> =
                samples.iter().filter(|s| s.mode == mode && s.concurrency == c && s.arm == arm).collect();
            let m = |f: &dyn Fn(&Sample) -> f64| median(of.iter().map(|s| f(s)).collect());
            let opt = |f: &dyn Fn(&Sample) -> Option<f64>| {
                let xs: Vec<f64> = of.iter().filter_map(|s| f(s)).collect();
                (!xs.is_empty()).then(|| median(xs))
            };
            let rps: Vec<f64> = of.iter().map(|s| s.per_second).collect();
            let med = median(rps.clone());
            let spread = if med > 0.0 {
                (rps.iter().cloned().fold(f64::MIN, f64::max) - rps.iter().cloned().fold(f64::MAX, f64::min)) / med
            } else {
                0.0
            };
            Summary {
                per_second: med,
                p50_us: m(&|s| f64::from(s.p50_us)),
                p90_us: m(&|s| f64::from(s.p90_us)),
                p99_us: m(&|s| f64::from(s.p99_us)),
                first_event_p50_us: opt(&|s| s.first_event_p50_us.map(f64::from)),
                gap_p50_us: opt(&|s| s.gap_p50_us.map(f64::from)),
                cpu_us_per_request: opt(&|s| s.cpu_us_per_request),
                redis_cpu_us_per_request: opt(&|s| s.redis_cpu_us_per_request),
                errors: of.iter().map(|s| s.errors + s.non_2xx).sum(),
                spread,
                arm,
                mode,
                concurrency: c,
            }
        })
        .collect()
}

impl Report {
    pub fn summary(&self, mode: &str, c: usize, arm: &str) -> Option<&Summary> {
        self.summaries.iter().find(|s| s.mode == mode && s.concurrency == c && s.arm == arm)
    }

    /// Markdown tables: per mode and concurrency, each arm with what it
    /// adds to direct; then the target against the floor.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bench {} on {} cores: {}, floor {}, {} s per run, {} round(s)",
            self.date,
            self.cores,
            self.targets.iter().map(|t| format!("{} `{}`", t.arm, t.command)).collect::<Vec<_>>().join(", "),
            self.floor.as_deref().unwrap_or("none (--no-floor, or nginx is not installed: apt-get install nginx)"),
            self.duration_s,
            self.rounds
        );
        let mut groups: Vec<(String, usize)> = Vec::new();
        for s in &self.summaries {
            if !groups.contains(&(s.mode.clone(), s.concurrency)) {
                groups.push((s.mode.clone(), s.concurrency));
            }
        }
        for (mode, c) in &groups {
            let _ = writeln!(out, "\n{mode}, concurrency {c}:\n");
            let stream = mode == "stream";
            let _ = writeln!(
                out,
                "| arm | req/s | ×direct | p50 | p90 | p99 | added p50 | CPU/req |{} errors | noise |",
                if stream { " first event p50 | added | event gap p50 | added |" } else { "" }
            );
            let _ = writeln!(
                out,
                "|---|---|---|---|---|---|---|---|{}---|---|",
                if stream { "---|---|---|---|" } else { "" }
            );
            let direct = self.summary(mode, *c, "direct");
            for s in self.summaries.iter().filter(|s| &s.mode == mode && s.concurrency == *c) {
                let ratio = direct.map_or(0.0, |d| s.per_second / d.per_second.max(1e-9));
                let added = direct.map_or(0.0, |d| s.p50_us - d.p50_us);
                let mut cpu = s.cpu_us_per_request.map_or("–".into(), |c| format!("{c:.1} µs"));
                if let Some(r) = s.redis_cpu_us_per_request {
                    cpu.push_str(&format!(" + {r:.1} µs Redis"));
                }
                let mut streamed = String::new();
                if stream {
                    let f = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0} µs"));
                    let d = |v: Option<f64>, dv: Option<f64>| match (v, dv) {
                        (Some(v), Some(dv)) => format!("{:.0} µs", v - dv),
                        _ => "–".into(),
                    };
                    let _ = write!(
                        streamed,
                        " {} | {} | {} | {} |",
                        f(s.first_event_p50_us),
                        d(s.first_event_p50_us, direct.and_then(|d| d.first_event_p50_us)),
                        f(s.gap_p50_us),
                        d(s.gap_p50_us, direct.and_then(|d| d.gap_p50_us)),
                    );
                }
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {:.2} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {cpu} |{streamed} {} | ±{:.0}% |",
                    s.arm,
                    s.per_second,
                    ratio,
                    s.p50_us,
                    s.p90_us,
                    s.p99_us,
                    added,
                    s.errors,
                    s.spread * 50.0
                );
            }
            for (t, f, d) in self
                .targets
                .iter()
                .filter_map(|t| Some((self.summary(mode, *c, &t.arm)?, self.summary(mode, *c, "floor")?, direct?)))
            {
                let cpu = match (t.cpu_us_per_request, f.cpu_us_per_request) {
                    (Some(t), Some(f)) if f > 0.0 => format!("{:.1}×", t / f),
                    _ => "–".into(),
                };
                let (ta, fa) = (t.p50_us - d.p50_us, f.p50_us - d.p50_us);
                let _ = writeln!(
                    out,
                    "\n{} against the floor: CPU per request {cpu}, throughput {:.2}×, added p50 {}",
                    t.arm,
                    t.per_second / f.per_second.max(1e-9),
                    if fa > 0.0 { format!("{:.1}×", ta / fa) } else { format!("{ta:.0} µs vs {fa:.0} µs") }
                );
            }
        }
        for (t, idle, after) in self.targets.iter().filter_map(|t| Some((t, t.idle_rss_kib?, t.rss_after_kib))) {
            let _ = writeln!(
                out,
                "\n{} memory: {:.1} MiB idle, {} after the runs",
                t.arm,
                idle as f64 / 1024.0,
                after.map_or("–".into(), |a| format!("{:.1} MiB", a as f64 / 1024.0))
            );
        }
        let disturbed = self.samples.iter().filter(|s| s.disturbed).count();
        if disturbed > 0 {
            let _ = writeln!(
                out,
                "\n{disturbed} run(s) were disturbed: other processes used more than {:.0}% of a core during them, twice in a row",
                DISTURBED_SHARE * 100.0
            );
        }
        out
    }
}

/// A change beyond the noise between a baseline and this run.
#[derive(Debug, Clone, Serialize)]
pub struct Regression {
    pub what: String,
    pub baseline: f64,
    pub now: f64,
    pub threshold: f64,
}

/// Compares the target's figures with a baseline of the same machine: its
/// throughput relative to direct (lower is worse), the p50 it adds and its
/// CPU per request (higher is worse). The threshold for each is twice the
/// larger of the two runs' throughput noise, and at least 5%.
pub fn compare(base: &Report, now: &Report) -> (Vec<Regression>, Vec<String>) {
    let mut regressions = Vec::new();
    let mut lines = Vec::new();
    for t in now.summaries.iter().filter(|s| s.arm == "target") {
        let (mode, c) = (t.mode.as_str(), t.concurrency);
        let (Some(bt), Some(d), Some(bd)) =
            (base.summary(mode, c, "target"), now.summary(mode, c, "direct"), base.summary(mode, c, "direct"))
        else {
            continue;
        };
        let threshold = (2.0 * t.spread.max(bt.spread)).max(0.05);
        let mut check = |what: String, b: f64, n: f64, higher_is_worse: bool| {
            let change = if b.abs() > 1e-9 { (n - b) / b.abs() } else { 0.0 };
            let worse = if higher_is_worse { change > threshold } else { -change > threshold };
            lines.push(format!(
                "{what}: {b:.2} → {n:.2} ({:+.1}%, threshold ±{:.1}%){}",
                change * 100.0,
                threshold * 100.0,
                if worse { "  REGRESSION" } else { "" }
            ));
            if worse {
                regressions.push(Regression { what, baseline: b, now: n, threshold });
            }
        };
        check(
            format!("{mode} c={c} throughput ×direct"),
            bt.per_second / bd.per_second.max(1e-9),
            t.per_second / d.per_second.max(1e-9),
            false,
        );
        check(format!("{mode} c={c} added p50 µs"), bt.p50_us - bd.p50_us, t.p50_us - d.p50_us, true);
        if let (Some(b), Some(n)) = (bt.cpu_us_per_request, t.cpu_us_per_request) {
            check(format!("{mode} c={c} CPU µs/request"), b, n, true);
        }
    }
    (regressions, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_round_starts_at_another_arm() {
        let arms = ["direct", "floor", "target"];
        let order = |round| rotated(&arms, round).copied().collect::<Vec<_>>();
        assert_eq!(order(0), ["direct", "floor", "target"]);
        assert_eq!(order(1), ["floor", "target", "direct"]);
        assert_eq!(order(2), ["target", "direct", "floor"]);
        assert_eq!(order(3), order(0));
        assert_eq!(rotated::<u8>(&[], 5).count(), 0);
    }

    fn summary(arm: &str, rps: f64, p50: f64, cpu: f64, spread: f64) -> Summary {
        Summary {
            arm: arm.into(),
            mode: "plain".into(),
            concurrency: 32,
            per_second: rps,
            p50_us: p50,
            p90_us: p50,
            p99_us: p50,
            first_event_p50_us: None,
            gap_p50_us: None,
            cpu_us_per_request: Some(cpu),
            redis_cpu_us_per_request: None,
            errors: 0,
            spread,
        }
    }

    fn report(summaries: Vec<Summary>) -> Report {
        Report {
            date: "2026-12-07".into(),
            cores: 2,
            targets: Vec::new(),
            floor: None,
            duration_s: 1.0,
            rounds: 3,
            samples: Vec::new(),
            summaries,
        }
    }

    #[test]
    fn a_change_within_the_noise_is_not_a_regression_and_one_beyond_it_is() {
        let base =
            report(vec![summary("direct", 10000.0, 100.0, 20.0, 0.02), summary("target", 5000.0, 300.0, 80.0, 0.02)]);
        let same =
            report(vec![summary("direct", 10100.0, 100.0, 20.0, 0.03), summary("target", 5000.0, 305.0, 81.0, 0.03)]);
        assert!(compare(&base, &same).0.is_empty(), "{:?}", compare(&base, &same).1);
        let slower =
            report(vec![summary("direct", 10000.0, 100.0, 20.0, 0.02), summary("target", 3500.0, 450.0, 120.0, 0.02)]);
        let (regressions, _) = compare(&base, &slower);
        let what: Vec<&str> = regressions.iter().map(|r| r.what.as_str()).collect();
        assert_eq!(what, ["plain c=32 throughput ×direct", "plain c=32 added p50 µs", "plain c=32 CPU µs/request"]);
    }

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert_eq!(loopback_authority("http://127.0.0.1:4000").unwrap(), "127.0.0.1:4000");
        assert_eq!(loopback_authority("http://localhost:8080/").unwrap(), "127.0.0.1:8080");
        assert!(loopback_authority("http://10.0.0.2:4000").is_err());
        assert!(loopback_authority("https://api.openai.com").is_err());
    }

    #[test]
    fn medians_and_bodies() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let b: serde_json::Value = serde_json::from_slice(&body("gpt-4o", true)).unwrap();
        assert_eq!(b["stream"], true);
        assert!(target_config("127.0.0.1:9", "gpt-4o", None).contains("api_base: \"http://127.0.0.1:9/v1\""));
        let with_redis = target_config("127.0.0.1:9", "gpt-4o", Some("redis://127.0.0.1:7/0"));
        assert!(with_redis.contains("router_settings: {redis_url: \"redis://127.0.0.1:7/0\"}"), "{with_redis}");
    }
}
