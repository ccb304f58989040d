//! `postmortem soak`: a long, bounded run that must end with no unexpected
//! error, no hang, and the gateway's memory flat.
//!
//! It reuses the bench's machinery: the bench upstream (started with
//! `--faults`, so it obeys the fault marker each request carries), the
//! target seam (`--target-cmd` / `--target-url`, started with
//! `super::start_target`), the load generator's keep-alive connections
//! ([`super::load`]) and `/proc` readings (`super::procs`). What it adds:
//!
//! - **Mixed requests** drawn from a seed ([`faults::Mix`]): streamed or not,
//!   with or without an upstream fault (500, 503, 429 with Retry-After, a
//!   connection closed before an answer, an answer cut off, malformed
//!   JSON), each checked by the oracle ([`faults::check`]).
//! - **Client-cache churn**: the config has many deployments, each with its
//!   own `api_base` and key (so its own cached client), and a small
//!   `client_cache_capacity`; a share of requests goes to cold deployments,
//!   so clients are evicted and rebuilt throughout the run. Not every
//!   request: each new client opens new upstream connections, and a million
//!   of them would run the machine out of ephemeral ports (TIME_WAIT).
//! - **Key churn**: beside the load, a task generates a virtual key, uses
//!   it, deletes it and checks that the deleted key gets a 401.
//! - **RSS every second** of the target's process group, and a verdict
//!   (`rss_verdict`).
//! - **Retry accounting**: the config sets `num_retries: 0` and gives each
//!   model one deployment, and the upstream's per-kind call counts must
//!   equal what was sent, so a gateway that retried a fault away (or lost a
//!   call) fails the run instead of hiding it.
//!
//! Every wait is bounded: each request by `request_timeout`, the whole run
//! by `time_limit` (requests not sent by then make the run fail as a hang).

use anyhow::anyhow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use super::faults::{self, Fault, Mix, Outcome, Unexpected};
use super::{load, procs, BenchTarget, MASTER_KEY};

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub target: BenchTarget,
    /// The process (group) whose memory is sampled when the target is a
    /// URL; a started target's is known.
    pub target_pid: Option<u32>,
    pub requests: u64,
    pub concurrency: usize,
    pub mix: Mix,
    pub cache_capacity: usize,
    /// The pause between two key-churn cycles.
    pub key_churn_interval: Duration,
    pub time_limit: Duration,
    pub request_timeout: Duration,
    /// RSS may grow this much (last window's max over the first's).
    pub rss_bound_kib: u64,
    pub chunk_gap: Duration,
    pub upstream_port: u16,
    /// The target's master key (default: the one of the config the soak writes).
    pub key: Option<String>,
    pub startup_timeout: Duration,
    /// The executable that serves the upstream (`bench-upstream`).
    pub exe: std::path::PathBuf,
    /// Off only to prove the soak fails: the upstream then ignores fault
    /// markers, so every faulted request gets a 200 it must not get.
    pub upstream_faults: bool,
}

/// Live key requests per key-churn cycle, before the key is deleted.
const LIVE_REQUESTS_PER_KEY: usize = 4;
/// Unexpected errors kept in the report as examples.
const EXAMPLES_KEPT: usize = 20;
/// The largest body a soak answer may have (ours are a few KiB).
const MAX_BODY: usize = 1 << 20;

/// The LiteLLM-format config a started target gets: `deployments` models
/// `soak-N`, each its own deployment with its own `api_base` path and key
/// (its own cached client), a small client cache, and no retries.
pub(crate) fn soak_config(upstream: &str, deployments: usize, cache_capacity: usize) -> String {
    let mut out = String::from("model_list:\n");
    for i in 0..deployments {
        out.push_str(&format!(
            "  - model_name: soak-{i}\n    litellm_params: {{model: openai/gpt-4o, api_base: \"http://{upstream}/d{i}/v1\", api_key: soak-upstream-key-{i}}}\n"
        ));
    }
    out.push_str(&format!(
        "general_settings: {{master_key: {MASTER_KEY}, client_cache_capacity: {cache_capacity}}}\n\
         router_settings: {{num_retries: 0}}\n"
    ));
    out
}

/// Requests of one fault kind and mode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KindTally {
    pub fault: String,
    pub stream: bool,
    pub expected: String,
    pub sent: u64,
    pub as_expected: u64,
    pub unexpected: u64,
}

/// The key-churn side task's counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyChurn {
    pub keys_generated: u64,
    pub keys_deleted: u64,
    /// Requests with a live key, and those answered as they must be.
    pub live_requests: u64,
    pub live_ok: u64,
    /// Requests with a deleted key, and those answered 401.
    pub deleted_requests: u64,
    pub deleted_401: u64,
    pub unexpected: u64,
}

/// One RSS reading.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct RssSample {
    /// Seconds since the load started.
    pub t_s: f64,
    pub rss_kib: u64,
    /// Requests answered by then.
    pub done: u64,
}

/// Whether memory stayed flat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RssVerdict {
    pub samples: usize,
    /// Samples per comparison window.
    pub window: usize,
    pub first_window_max_kib: u64,
    pub last_window_max_kib: u64,
    pub bound_kib: u64,
    pub min_kib: u64,
    pub max_kib: u64,
    pub first_kib: u64,
    pub last_kib: u64,
    /// Least-squares slope over the whole run, KiB per minute (for the
    /// reader; the verdict is the window rule).
    pub slope_kib_per_min: f64,
    /// `None`: not judged (no samples, or fewer than three).
    pub flat: Option<bool>,
    pub rule: String,
}

/// The window rule: RSS is flat when the largest sample of the last window
/// is at most the largest of the first window plus `bound_kib`. A window is
/// 60 samples (a minute at one a second), or a third of the samples when
/// the run is shorter than three minutes. Maxima, not means: the first
/// window holds the warm-up (pools, caches filling), which the rule
/// forgives, and a leak shows in the last window's peak as well as in its
/// mean. With a 20 MiB bound over a million requests, a leak of 21 bytes
/// per request is caught.
pub(crate) fn rss_verdict(samples: &[RssSample], bound_kib: u64) -> RssVerdict {
    let n = samples.len();
    let window = if n >= 180 { 60 } else { n / 3 };
    let rss: Vec<u64> = samples.iter().map(|s| s.rss_kib).collect();
    let max_of = |xs: &[u64]| xs.iter().copied().max().unwrap_or(0);
    let (first_max, last_max) = if window > 0 { (max_of(&rss[..window]), max_of(&rss[n - window..])) } else { (0, 0) };
    RssVerdict {
        samples: n,
        window,
        first_window_max_kib: first_max,
        last_window_max_kib: last_max,
        bound_kib,
        min_kib: rss.iter().copied().min().unwrap_or(0),
        max_kib: max_of(&rss),
        first_kib: rss.first().copied().unwrap_or(0),
        last_kib: rss.last().copied().unwrap_or(0),
        slope_kib_per_min: slope_per_min(samples),
        flat: (window > 0).then(|| last_max <= first_max.saturating_add(bound_kib)),
        rule: format!(
            "max RSS of the last {window} sample(s) ≤ max of the first {window} + {:.1} MiB (window: 60 samples, a third of them for runs under 180)",
            bound_kib as f64 / 1024.0
        ),
    }
}

fn slope_per_min(samples: &[RssSample]) -> f64 {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return 0.0;
    }
    let mt = samples.iter().map(|s| s.t_s).sum::<f64>() / n;
    let mr = samples.iter().map(|s| s.rss_kib as f64).sum::<f64>() / n;
    let cov: f64 = samples.iter().map(|s| (s.t_s - mt) * (s.rss_kib as f64 - mr)).sum();
    let var: f64 = samples.iter().map(|s| (s.t_s - mt).powi(2)).sum();
    if var > 0.0 {
        cov / var * 60.0
    } else {
        0.0
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakReport {
    pub date: String,
    pub cores: usize,
    pub target: String,
    pub seed: u64,
    pub requests_planned: u64,
    pub requests_sent: u64,
    pub concurrency: usize,
    pub stream_fraction: f64,
    pub fault_fraction: f64,
    pub deployments: usize,
    pub cache_capacity: usize,
    pub elapsed_s: f64,
    pub per_second: f64,
    /// Every planned request was sent and answered before the time limit.
    pub finished: bool,
    pub time_limit_s: f64,
    pub request_timeout_s: f64,
    pub by_kind: Vec<KindTally>,
    pub unexpected: u64,
    pub unexpected_by_kind: BTreeMap<String, u64>,
    pub unexpected_examples: Vec<String>,
    pub latency_p50_us: BTreeMap<String, u32>,
    pub latency_p99_us: BTreeMap<String, u32>,
    pub key_churn: KeyChurn,
    /// The upstream's calls per fault kind, and what the soak expected.
    pub upstream_calls: BTreeMap<String, u64>,
    pub upstream_calls_expected: BTreeMap<String, u64>,
    /// `/client_cache/stats` after the run (our gateway; other targets may
    /// not have it).
    pub client_cache: Option<serde_json::Value>,
    pub idle_rss_kib: Option<u64>,
    pub rss: Vec<RssSample>,
    pub rss_verdict: Option<RssVerdict>,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
}

/// What the workers and the side tasks share.
struct Ctx {
    authority: String,
    master_key: String,
    mix: Mix,
    total: u64,
    next: AtomicU64,
    done: AtomicU64,
    deadline: tokio::time::Instant,
    request_timeout: Duration,
}

/// One worker's counts, merged at the end.
#[derive(Default)]
struct Tally {
    kinds: BTreeMap<(Fault, bool), (u64, u64)>,
    unexpected: BTreeMap<String, u64>,
    examples: Vec<String>,
    latency: BTreeMap<bool, Vec<u32>>,
}

impl Tally {
    /// Counts an unexpected error (`label` names the request, built only
    /// for the examples kept). True when there was none.
    fn record<L: std::fmt::Display>(&mut self, label: impl FnOnce() -> L, result: Result<(), Unexpected>) -> bool {
        match result {
            Ok(()) => true,
            Err(u) => {
                *self.unexpected.entry(u.kind.to_string()).or_default() += 1;
                if self.examples.len() < EXAMPLES_KEPT {
                    self.examples.push(format!("{}: {}: {}", label(), u.kind, u.detail));
                }
                false
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        for (k, (sent, ok)) in other.kinds {
            let e = self.kinds.entry(k).or_default();
            e.0 += sent;
            e.1 += ok;
        }
        for (k, v) in other.unexpected {
            *self.unexpected.entry(k).or_default() += v;
        }
        let room = EXAMPLES_KEPT.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
        for (k, v) in other.latency {
            self.latency.entry(k).or_default().extend(v);
        }
    }
}

/// One exchange, its body read to the end (at most [`MAX_BODY`]), within
/// `timeout`. `conn` is dropped when the connection cannot be reused.
async fn exchange(
    conn: &mut Option<load::Conn>,
    authority: &str,
    (method, path): (&str, &str),
    key: &str,
    body: Bytes,
    timeout: Duration,
) -> (Outcome, Duration) {
    let started = std::time::Instant::now();
    let headers = [
        ("content-type".to_string(), "application/json".to_string()),
        ("authorization".to_string(), format!("Bearer {key}")),
    ];
    let run = async {
        if conn.as_ref().is_some_and(|c| c.is_closed()) {
            *conn = None;
        }
        let c = match conn {
            Some(c) => c,
            None => conn.insert(load::connect(authority).await.map_err(|e| Outcome::Transport(format!("{e:#}")))?),
        };
        let (resp, _) = load::send(c, authority, method, path, &headers, body)
            .await
            .map_err(|e| Outcome::Transport(format!("{e:#}")))?;
        let status = resp.status().as_u16();
        let retry_after = resp.headers().contains_key(http::header::RETRY_AFTER);
        let mut body = resp.into_body();
        let mut got = Vec::new();
        let mut broken = false;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        got.extend_from_slice(d);
                    }
                    if got.len() > MAX_BODY {
                        broken = true;
                        break;
                    }
                }
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        Ok::<_, Outcome>(Outcome::Answer { status, retry_after, body: Bytes::from(got), broken })
    };
    let outcome = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(o)) => o,
        Ok(Err(o)) => o,
        Err(_) => Outcome::Timeout,
    };
    if !matches!(outcome, Outcome::Answer { broken: false, .. }) {
        *conn = None;
    }
    (outcome, started.elapsed())
}

/// A chat completion through the target.
async fn chat(ctx: &Ctx, conn: &mut Option<load::Conn>, key: &str, body: Bytes) -> (Outcome, Duration) {
    exchange(conn, &ctx.authority, ("POST", "/v1/chat/completions"), key, body, ctx.request_timeout).await
}

fn request_body(plan: faults::Plan) -> Bytes {
    let note = match plan.fault {
        Fault::None => String::new(),
        f => format!(" {}", f.marker()),
    };
    super::chat_body(&format!("soak-{}", plan.deployment), plan.stream, &note)
}

/// A load worker: takes request numbers until the plan or the time runs out.
async fn worker(ctx: Arc<Ctx>) -> Tally {
    let mut t = Tally::default();
    let mut conn = None;
    while tokio::time::Instant::now() < ctx.deadline {
        let n = ctx.next.fetch_add(1, Ordering::Relaxed);
        if n >= ctx.total {
            break;
        }
        let plan = ctx.mix.plan(n);
        let (got, took) = chat(&ctx, &mut conn, &ctx.master_key, request_body(plan)).await;
        let ok = t.record(
            || format!("request {n} ({}, {})", if plan.stream { "stream" } else { "plain" }, plan.fault.name()),
            faults::check(plan.fault, plan.stream, &got),
        );
        let e = t.kinds.entry((plan.fault, plan.stream)).or_default();
        e.0 += 1;
        e.1 += u64::from(ok);
        if ok && plan.fault == Fault::None {
            t.latency.entry(plan.stream).or_default().push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        }
        ctx.done.fetch_add(1, Ordering::Relaxed);
    }
    t
}

/// An admin call with the master key; its JSON answer when it is a 200.
async fn admin(
    ctx: &Ctx,
    conn: &mut Option<load::Conn>,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let (got, _) = exchange(
        conn,
        &ctx.authority,
        ("POST", path),
        &ctx.master_key,
        Bytes::from(body.to_string()),
        ctx.request_timeout,
    )
    .await;
    match got {
        Outcome::Answer { status: 200, body, broken: false, .. } => {
            serde_json::from_slice(&body).map_err(|e| anyhow!("{path}: answer is not JSON: {e}"))
        }
        Outcome::Answer { status, body, .. } => {
            Err(anyhow!("{path}: {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])))
        }
        Outcome::Timeout => Err(anyhow!("{path}: no answer within {:?}", ctx.request_timeout)),
        Outcome::Transport(e) => Err(anyhow!("{path}: {e}")),
    }
}

/// The key-churn side task: generate a key, use it, delete it, check that
/// it is refused; again after `interval`, until `stop` (at least once).
async fn churn_keys(
    ctx: &Ctx,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    t: &mut Tally,
) -> KeyChurn {
    let mut k = KeyChurn::default();
    let mut conn = None;
    for cycle in 0u64.. {
        let fail = |t: &mut Tally, k: &mut KeyChurn, what: String| {
            k.unexpected += 1;
            t.record(|| "key churn", Err(Unexpected { kind: "key-churn", detail: what }));
        };
        let generated =
            admin(ctx, &mut conn, "/key/generate", serde_json::json!({"key_alias": format!("soak-churn-{cycle}")}))
                .await
                .and_then(|v| {
                    v["key"].as_str().map(str::to_string).ok_or_else(|| anyhow!("/key/generate: no `key` in {v}"))
                });
        match generated {
            Err(e) => fail(t, &mut k, format!("{e:#}")),
            Ok(key) => {
                k.keys_generated += 1;
                for i in 0..LIVE_REQUESTS_PER_KEY {
                    let stream = i % 2 == 1;
                    let plan = faults::Plan {
                        stream,
                        fault: Fault::None,
                        deployment: (cycle as usize + i) % ctx.mix.hot.max(1),
                    };
                    let (got, _) = chat(ctx, &mut conn, &key, request_body(plan)).await;
                    k.live_requests += 1;
                    if t.record(|| "live key", faults::check(Fault::None, stream, &got)) {
                        k.live_ok += 1;
                    } else {
                        k.unexpected += 1;
                    }
                }
                match admin(ctx, &mut conn, "/key/delete", serde_json::json!({"keys": [key]})).await {
                    Ok(v) if v["deleted_keys"].as_array().is_some_and(|d| d.len() == 1) => k.keys_deleted += 1,
                    Ok(v) => fail(t, &mut k, format!("/key/delete did not delete the key: {v}")),
                    Err(e) => fail(t, &mut k, format!("{e:#}")),
                }
                let plan = faults::Plan { stream: false, fault: Fault::None, deployment: 0 };
                let (got, _) = chat(ctx, &mut conn, &key, request_body(plan)).await;
                k.deleted_requests += 1;
                if t.record(|| "deleted key", faults::check_status(401, &got)) {
                    k.deleted_401 += 1;
                } else {
                    k.unexpected += 1;
                }
            }
        }
        if *stop.borrow() || tokio::time::Instant::now() >= ctx.deadline {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
    k
}

/// RSS of `pid`'s process group every second until `stop`.
async fn sample_rss(
    ctx: &Ctx,
    pid: Option<u32>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<RssSample> {
    let started = tokio::time::Instant::now();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Vec::new();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        let done = ctx.done.load(Ordering::Relaxed);
        progress(done);
        if let Some(pid) = pid {
            out.push(RssSample { t_s: started.elapsed().as_secs_f64(), rss_kib: procs::group_rss_kib(pid), done });
        }
    }
    out
}

/// A GET with the master key; the JSON answer of a 200, else `None`.
async fn get_json(authority: &str, path: &str, key: &str, timeout: Duration) -> Option<serde_json::Value> {
    let mut conn = None;
    match exchange(&mut conn, authority, ("GET", path), key, Bytes::new(), timeout).await.0 {
        Outcome::Answer { status: 200, body, broken: false, .. } => serde_json::from_slice(&body).ok(),
        _ => None,
    }
}

/// Runs the soak; `progress` gets the number of requests answered, every
/// second.
pub async fn run(o: &SoakOptions, progress: &(dyn Fn(u64) + Sync)) -> anyhow::Result<SoakReport> {
    let (upstream, up_addr) = super::start_upstream(&o.exe, o.upstream_port, o.chunk_gap, o.upstream_faults).await?;
    let (started, authority, target, pid) = match &o.target {
        BenchTarget::Command { command, kind } => {
            let config = soak_config(&up_addr, o.mix.deployments, o.cache_capacity);
            let (g, authority) = super::start_target(command, *kind, &config, o.startup_timeout).await?;
            let pid = g.pid();
            (Some(g), authority, command.clone(), pid)
        }
        BenchTarget::Url(url) => (None, super::loopback_authority(url)?, url.clone(), o.target_pid),
    };
    let master_key = o.key.clone().unwrap_or_else(|| MASTER_KEY.to_string());
    let ctx = Arc::new(Ctx {
        authority: authority.clone(),
        master_key: master_key.clone(),
        mix: o.mix,
        total: o.requests,
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        deadline: tokio::time::Instant::now() + o.time_limit,
        request_timeout: o.request_timeout,
    });
    // One plain request to each hot deployment before anything is counted:
    // a broken setup is an error, not a million unexpected answers.
    let mut setup_calls = 0;
    let mut conn = None;
    for d in 0..o.mix.hot.max(1) {
        let plan = faults::Plan { stream: false, fault: Fault::None, deployment: d };
        let (got, _) = chat(&ctx, &mut conn, &master_key, request_body(plan)).await;
        setup_calls += 1;
        if let Err(u) = faults::check(Fault::None, false, &got) {
            return Err(anyhow!("{target} ({authority}) did not answer soak-{d} as it must: {}: {}", u.kind, u.detail));
        }
    }
    drop(conn);
    let idle_rss_kib = pid.map(procs::group_rss_kib);

    let began = std::time::Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..o.concurrency.max(1) {
        workers.spawn(worker(ctx.clone()));
    }
    let load = async {
        let mut all = Tally::default();
        while let Some(w) = workers.join_next().await {
            match w {
                Ok(t) => all.merge(t),
                Err(e) => {
                    all.record(
                        || "worker",
                        Err(Unexpected { kind: "worker", detail: format!("a load worker died: {e}") }),
                    );
                }
            }
        }
        let elapsed = began.elapsed();
        let _ = stop_tx.send(true);
        (all, elapsed)
    };
    let mut churn_tally = Tally::default();
    let ((mut tally, elapsed), key_churn, rss) = tokio::join!(
        load,
        churn_keys(&ctx, o.key_churn_interval, stop_rx.clone(), &mut churn_tally),
        sample_rss(&ctx, pid, stop_rx, progress),
    );
    tally.merge(churn_tally);

    // After the run: the gateway still answers, and what the upstream saw.
    let mut failures = Vec::new();
    let plan = faults::Plan { stream: true, fault: Fault::None, deployment: 0 };
    let (got, _) = chat(&ctx, &mut None, &master_key, request_body(plan)).await;
    setup_calls += 1;
    if let Err(u) = faults::check(Fault::None, true, &got) {
        failures.push(format!("the gateway did not answer a request after the run: {}: {}", u.kind, u.detail));
    }
    let client_cache = get_json(&authority, "/client_cache/stats", &master_key, o.request_timeout).await;
    let up_stats = get_json(&up_addr, "/stats", "", o.request_timeout).await;
    drop(started);
    drop(upstream);

    let sent = ctx.next.load(Ordering::Relaxed).min(o.requests);
    let done = ctx.done.load(Ordering::Relaxed);
    let finished = done == o.requests;
    if !finished {
        failures.push(format!(
            "hang: {done} of {} requests answered within the time limit of {:?}",
            o.requests, o.time_limit
        ));
    }
    let unexpected: u64 = tally.unexpected.values().sum();
    if unexpected > 0 {
        failures.push(format!("{unexpected} unexpected error(s): {:?}", tally.unexpected));
    }
    if key_churn.keys_deleted == 0 || key_churn.deleted_401 == 0 {
        failures.push("key churn did not complete a cycle (generate, use, delete, refused)".into());
    }
    // What the upstream must have seen: every request sent (the master key
    // and live keys reach it), each once.
    let mut expected_calls: BTreeMap<String, u64> = BTreeMap::new();
    for ((fault, _), (n, _)) in &tally.kinds {
        *expected_calls.entry(fault.name().to_string()).or_default() += n;
    }
    *expected_calls.entry(Fault::None.name().to_string()).or_default() += setup_calls + key_churn.live_requests;
    let upstream_calls: BTreeMap<String, u64> = up_stats
        .as_ref()
        .and_then(|v| v["calls"].as_object())
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).filter(|(_, v)| *v > 0).collect())
        .unwrap_or_default();
    if up_stats.is_none() {
        failures.push("the bench upstream did not answer GET /stats".into());
    } else if upstream_calls != expected_calls {
        failures.push(format!(
            "the upstream saw {upstream_calls:?} calls for {expected_calls:?} requests sent: the gateway retried or lost calls, which hides faults"
        ));
    }
    if let Some(cache) = &client_cache {
        let evictions = cache["evictions_capacity"].as_u64().unwrap_or(0);
        if evictions == 0 && o.mix.deployments > o.cache_capacity && o.mix.cold_share > 0.0 {
            failures.push(format!("the client cache never evicted a client: no churn was exercised ({cache})"));
        }
    }
    let rss_verdict = pid.map(|_| rss_verdict(&rss, o.rss_bound_kib));
    if let Some(v) = &rss_verdict {
        if v.flat == Some(false) {
            failures.push(format!(
                "RSS grew: {:.1} MiB at most in the last {} samples against {:.1} MiB in the first (bound +{:.1} MiB)",
                v.last_window_max_kib as f64 / 1024.0,
                v.window,
                v.first_window_max_kib as f64 / 1024.0,
                v.bound_kib as f64 / 1024.0
            ));
        }
    }

    let by_kind = tally
        .kinds
        .iter()
        .map(|((fault, stream), (n, ok))| KindTally {
            fault: fault.name().to_string(),
            stream: *stream,
            expected: fault.expected(*stream).to_string(),
            sent: *n,
            as_expected: *ok,
            unexpected: n - ok,
        })
        .collect();
    let mode = |stream: bool| if stream { "stream" } else { "plain" }.to_string();
    let mut p50 = BTreeMap::new();
    let mut p99 = BTreeMap::new();
    for (stream, mut xs) in std::mem::take(&mut tally.latency) {
        xs.sort_unstable();
        if let (Some(a), Some(b)) = (load::quantile(&xs, 0.5), load::quantile(&xs, 0.99)) {
            p50.insert(mode(stream), a);
            p99.insert(mode(stream), b);
        }
    }
    Ok(SoakReport {
        date: crate::replay::cassette::rfc3339(std::time::SystemTime::now()),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        target,
        seed: o.mix.seed,
        requests_planned: o.requests,
        requests_sent: sent,
        concurrency: o.concurrency,
        stream_fraction: o.mix.stream_fraction,
        fault_fraction: o.mix.fault_fraction,
        deployments: o.mix.deployments,
        cache_capacity: o.cache_capacity,
        elapsed_s: elapsed.as_secs_f64(),
        per_second: done as f64 / elapsed.as_secs_f64().max(1e-9),
        finished,
        time_limit_s: o.time_limit.as_secs_f64(),
        request_timeout_s: o.request_timeout.as_secs_f64(),
        by_kind,
        unexpected,
        unexpected_by_kind: tally.unexpected,
        unexpected_examples: tally.examples,
        latency_p50_us: p50,
        latency_p99_us: p99,
        key_churn,
        upstream_calls,
        upstream_calls_expected: expected_calls,
        client_cache,
        idle_rss_kib,
        rss,
        rss_verdict,
        failures,
    })
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl SoakReport {
    /// The report as text: the run, a table per fault kind and mode, key
    /// churn, the upstream's calls, the client cache, the RSS table (every
    /// 10th sample and the last) and the verdict.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "soak {} on {} cores: target `{}`, seed {}, {} requests at concurrency {}, {:.0}% streamed, {:.0}% faulted, {} deployments over a client cache of {}",
            self.date,
            self.cores,
            self.target,
            self.seed,
            self.requests_planned,
            self.concurrency,
            self.stream_fraction * 100.0,
            self.fault_fraction * 100.0,
            self.deployments,
            self.cache_capacity
        );
        let _ = writeln!(
            out,
            "\n{} requests answered in {:.1} s ({:.0} req/s); time limit {:.0} s, request bound {:.0} s{}",
            self.by_kind.iter().map(|k| k.sent).sum::<u64>(),
            self.elapsed_s,
            self.per_second,
            self.time_limit_s,
            self.request_timeout_s,
            if self.finished { "" } else { ": NOT FINISHED" }
        );
        for (mode, p50) in &self.latency_p50_us {
            let p99 = self.latency_p99_us.get(mode).copied().unwrap_or(0);
            let _ = writeln!(out, "{mode} requests without a fault: p50 {p50} µs, p99 {p99} µs");
        }
        let _ = writeln!(out, "\n| fault | mode | client must get | sent | as expected | unexpected |");
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for k in &self.by_kind {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                k.fault,
                if k.stream { "stream" } else { "plain" },
                k.expected,
                k.sent,
                k.as_expected,
                k.unexpected
            );
        }
        let c = &self.key_churn;
        let _ = writeln!(
            out,
            "\nkey churn: {} keys generated, {} deleted; {} requests with live keys ({} ok), {} with deleted keys ({} answered 401)",
            c.keys_generated, c.keys_deleted, c.live_requests, c.live_ok, c.deleted_requests, c.deleted_401
        );
        let _ = writeln!(
            out,
            "upstream calls by fault: {:?} (expected {:?}: each request once, no retry)",
            self.upstream_calls, self.upstream_calls_expected
        );
        match &self.client_cache {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "client cache: {} hits, {} misses, {} evicted for capacity, {} evicted while in use, {} shutdowns",
                    s["hits"], s["misses"], s["evictions_capacity"], s["evicted_while_in_use"], s["shutdowns"]
                );
            }
            None => {
                let _ = writeln!(out, "client cache: no stats (the target has no /client_cache/stats)");
            }
        }
        let _ = writeln!(out, "unexpected errors: {}", self.unexpected);
        for e in &self.unexpected_examples {
            let _ = writeln!(out, "  {e}");
        }
        match &self.rss_verdict {
            None => {
                let _ = writeln!(out, "\nRSS: not measured (a --target-url target without --target-pid)");
            }
            Some(v) => {
                let _ = writeln!(
                    out,
                    "\nRSS of the target's process group, sampled every second (idle before the load: {}):\n",
                    self.idle_rss_kib.map_or("–".into(), mib)
                );
                let _ = writeln!(out, "| t (s) | requests answered | RSS |");
                let _ = writeln!(out, "|---|---|---|");
                let last = self.rss.len().saturating_sub(1);
                for (i, s) in self.rss.iter().enumerate().filter(|(i, _)| i % 10 == 0 || *i == last) {
                    let _ = writeln!(
                        out,
                        "| {:.0}{} | {} | {} |",
                        s.t_s,
                        if i == last { " (last)" } else { "" },
                        s.done,
                        mib(s.rss_kib)
                    );
                }
                let _ = writeln!(
                    out,
                    "\n{} samples: min {}, max {}, first {}, last {}; slope {:+.2} MiB/min",
                    v.samples,
                    mib(v.min_kib),
                    mib(v.max_kib),
                    mib(v.first_kib),
                    mib(v.last_kib),
                    v.slope_kib_per_min / 1024.0
                );
                let verdict = match v.flat {
                    Some(true) => "flat",
                    Some(false) => "GREW",
                    None => "not judged (fewer than 3 samples)",
                };
                let _ = writeln!(
                    out,
                    "RSS {verdict}: first-window max {}, last-window max {}; rule: {}",
                    mib(v.first_window_max_kib),
                    mib(v.last_window_max_kib),
                    v.rule
                );
            }
        }
        if self.failures.is_empty() {
            let _ = writeln!(out, "\nPASS: no unexpected error, no hang, RSS within its bound");
        } else {
            let _ = writeln!(out, "\nFAIL:");
            for f in &self.failures {
                let _ = writeln!(out, "  {f}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(rss: impl Fn(usize) -> u64, n: usize) -> Vec<RssSample> {
        (0..n).map(|i| RssSample { t_s: i as f64, rss_kib: rss(i), done: i as u64 * 1000 }).collect()
    }

    #[test]
    fn flat_memory_passes_and_warm_up_is_forgiven() {
        // Warm-up to 44 MiB in the first seconds, then flat with noise.
        let v = rss_verdict(
            &series(|i| if i < 5 { 38_000 + i as u64 * 1200 } else { 44_000 + (i as u64 * 37) % 900 }, 600),
            20 * 1024,
        );
        assert_eq!(v.flat, Some(true), "{v:?}");
        assert_eq!(v.window, 60);
        assert!(v.slope_kib_per_min.abs() < 200.0, "{v:?}");
    }

    #[test]
    fn growing_memory_fails_the_verdict() {
        // 40 KiB a second: 23 MiB over ten minutes, past a 20 MiB bound.
        let v = rss_verdict(&series(|i| 40_000 + i as u64 * 40, 600), 20 * 1024);
        assert_eq!(v.flat, Some(false), "{v:?}");
        assert!(v.slope_kib_per_min > 2000.0);
        // A short run: thirds of the samples.
        let v = rss_verdict(&series(|i| 40_000 + i as u64 * 10_000, 9), 20 * 1024);
        assert_eq!((v.window, v.flat), (3, Some(false)));
    }

    #[test]
    fn too_few_samples_are_not_judged() {
        assert_eq!(rss_verdict(&series(|_| 1, 2), 1).flat, None);
        assert_eq!(rss_verdict(&[], 1).flat, None);
    }

    #[test]
    fn the_config_gives_each_deployment_its_own_client_and_no_retries() {
        let c = soak_config("127.0.0.1:9", 3, 2);
        assert!(
            c.contains("model_name: soak-2")
                && c.contains("api_base: \"http://127.0.0.1:9/d2/v1\", api_key: soak-upstream-key-2")
        );
        assert!(c.contains("client_cache_capacity: 2") && c.contains("num_retries: 0"));
    }
}
