//! `postmortem bench` (the load test for any gateway, `crate::bench`) and
//! the hidden `bench-upstream` it starts as a process of its own.

use crate::bench::{self, BenchOptions, BenchTarget, Report};
use crate::target::TargetKind;
use anyhow::anyhow;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The gateway to load, started per bench with the bench's config:
    /// `{config}` becomes its path and `{port}` a free port (default: this
    /// binary's `serve`), e.g. `litellm --config {config} --port {port}`.
    /// Give it several times to load several gateways side by side in one
    /// run (arms `target`, `target-2`, …): two builds, or two gateways.
    #[arg(long, conflicts_with = "target_url")]
    pub target_cmd: Vec<String>,
    /// A gateway already running on 127.0.0.1 whose config routes `--model`
    /// to the bench upstream (start it with `--upstream-port`).
    #[arg(long)]
    pub target_url: Option<String>,
    /// Concurrencies to load at, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub concurrency: Vec<usize>,
    /// Seconds per run (1 to 600).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Requests per run at most.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_requests: u64,
    /// Rounds: each arm is run this many times, interleaved with the others
    /// (the spread between rounds is the noise that baselines are judged by).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// What to load: `plain`, `stream` or `both`.
    #[arg(long, default_value = "both", value_parser = ["plain", "stream", "both"])]
    pub mode: String,
    /// Leave out the nginx floor.
    #[arg(long)]
    pub no_floor: bool,
    /// Microseconds between a streamed answer's chunks at the upstream.
    #[arg(long, default_value_t = 2000)]
    pub chunk_gap_us: u64,
    /// Model name the requests ask for.
    #[arg(long, default_value = "gpt-4o")]
    pub model: String,
    /// Send the requests with a virtual key of the bench's config (rpm/tpm
    /// limits and a budget far above the load) instead of the master key,
    /// so each request takes the key's rate checks and its spend.
    #[arg(long)]
    pub virtual_key: bool,
    /// Start a throwaway redis-server on 127.0.0.1 and load each target
    /// twice in the same run: as configured, and on that Redis
    /// (`router_settings.redis_url`, arm `NAME+redis`). Not with --target-url.
    #[arg(long, conflicts_with = "target_url")]
    pub redis: bool,
    #[command(flatten)]
    pub reach: Reach,
    /// Save this run as a baseline of this machine.
    #[arg(long)]
    pub save_baseline: Option<String>,
    /// Compare with a saved baseline; exit 1 on a regression beyond the noise.
    #[arg(long)]
    pub baseline: Option<String>,
    /// Where baselines live (default: $XDG_CACHE_HOME or ~/.cache, /postmortem/bench).
    #[arg(long)]
    pub baseline_dir: Option<PathBuf>,
}

/// The options `bench` and `soak` share: the upstream's port, the
/// target's key, its start-up bound, the output format.
#[derive(Args, Debug)]
pub struct Reach {
    /// Port of the bench upstream (0: a free one).
    #[arg(long, default_value_t = 0)]
    pub upstream_port: u16,
    /// Bearer key for the target (default: the master key of the config the
    /// command writes); `soak` needs the master key, for its key churn.
    #[arg(long, env = "POSTMORTEM_BENCH_KEY")]
    pub key: Option<String>,
    /// Seconds a started target may take to answer.
    #[arg(long, default_value_t = 120)]
    pub startup_timeout: u64,
    /// `text` (tables) or `json`.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}

/// Our own gateway as a target: this executable's `serve`.
pub(crate) fn our_gateway(exe: &std::path::Path) -> BenchTarget {
    BenchTarget::Command {
        command: format!("'{}' serve --config {{config}} --port {{port}}", exe.display()),
        kind: TargetKind::Postmortem,
    }
}

/// `postmortem bench-upstream`: the fast upstream, for `bench` to start.
#[derive(Args, Debug)]
pub struct UpstreamArgs {
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    #[arg(long, default_value_t = 2000)]
    pub chunk_gap_us: u64,
    /// Obey the soak's fault markers in request bodies.
    #[arg(long)]
    pub faults: bool,
}

pub async fn upstream(args: UpstreamArgs) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot bind 127.0.0.1:{}: {e}", args.port);
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        println!("bench upstream listening on http://{addr}");
    }
    let up = bench::upstream::Upstream { chunk_gap: Duration::from_micros(args.chunk_gap_us), faults: args.faults };
    match bench::upstream::serve(listener, up).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn baseline_dir(args: &BenchArgs) -> PathBuf {
    if let Some(d) = &args.baseline_dir {
        return d.clone();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("postmortem").join("bench")
}

fn baseline_path(args: &BenchArgs, name: &str) -> anyhow::Result<PathBuf> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || name.starts_with('.')
    {
        return Err(anyhow!("baseline name `{name}`: use letters, digits, `-`, `_` and `.`"));
    }
    Ok(baseline_dir(args).join(format!("{name}.json")))
}

fn options(args: &BenchArgs) -> anyhow::Result<BenchOptions> {
    if !(1.0..=600.0).contains(&args.duration) {
        return Err(anyhow!("--duration must be between 1 and 600 seconds, got {}", args.duration));
    }
    if args.concurrency.is_empty() || args.concurrency.iter().any(|c| !(1..=4096).contains(c)) {
        return Err(anyhow!("--concurrency: each value between 1 and 4096"));
    }
    if !(1..=20).contains(&args.rounds) {
        return Err(anyhow!("--rounds must be between 1 and 20"));
    }
    let exe = std::env::current_exe().map_err(|e| anyhow!("cannot find this executable: {e}"))?;
    let targets = match (args.target_cmd.as_slice(), &args.target_url) {
        (_, Some(url)) => {
            bench::loopback_authority(url)?;
            if args.reach.upstream_port == 0 {
                return Err(anyhow!(
                    "--target-url needs --upstream-port: the running gateway's config must route \
                     --model to http://127.0.0.1:PORT/v1"
                ));
            }
            vec![BenchTarget::Url(url.clone())]
        }
        ([], None) => vec![our_gateway(&exe)],
        (cmds, None) => {
            cmds.iter().map(|c| BenchTarget::Command { command: c.clone(), kind: TargetKind::Other }).collect()
        }
    };
    Ok(BenchOptions {
        targets,
        concurrency: args.concurrency.clone(),
        duration: Duration::from_secs_f64(args.duration),
        max_requests: args.max_requests.max(1),
        rounds: args.rounds,
        stream: args.mode != "plain",
        plain: args.mode != "stream",
        floor: !args.no_floor,
        upstream_port: args.reach.upstream_port,
        chunk_gap: Duration::from_micros(args.chunk_gap_us),
        model: args.model.clone(),
        key: args.reach.key.clone(),
        startup_timeout: Duration::from_secs(args.reach.startup_timeout.max(1)),
        exe,
        virtual_key: args.virtual_key,
        redis: args.redis,
    })
}

pub async fn bench(args: BenchArgs) -> ExitCode {
    let o = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let baseline = match args.baseline.as_deref().map(|n| baseline_path(&args, n)).transpose() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let base: Option<Report> = match &baseline {
        None => None,
        Some(p) => match std::fs::read(p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("error: baseline {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
    };
    let arms =
        o.targets.len() * (1 + usize::from(o.redis)) + 1 + usize::from(o.floor && bench::floor::find_nginx().is_some());
    let bar = indicatif::ProgressBar::new(bench::planned_runs(&o, arms));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} runs, {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |line: String| {
        bar.inc(1);
        bar.set_message(line);
    };
    let report = match bench::run(&o, &progress).await {
        Ok(r) => r,
        Err(e) => {
            bar.abandon();
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    bar.finish_and_clear();
    let (regressions, lines) = base.as_ref().map(|b| bench::compare(b, &report)).unwrap_or_default();
    if args.reach.format == "json" {
        let out = serde_json::json!({"report": report, "baseline": args.baseline, "comparison": lines, "regressions": regressions});
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print!("{}", report.render());
        if let Some(name) = &args.baseline {
            println!("\nagainst baseline `{name}`:");
            for l in &lines {
                println!("  {l}");
            }
        }
    }
    if let Some(name) = &args.save_baseline {
        let saved = baseline_path(&args, name).and_then(|p| {
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).map_err(|e| anyhow!("{}: {e}", d.display()))?;
            }
            let json = serde_json::to_vec_pretty(&report)?;
            std::fs::write(&p, json).map_err(|e| anyhow!("{}: {e}", p.display()))?;
            Ok(p)
        });
        match saved {
            Ok(p) => eprintln!("baseline `{name}` saved to {}", p.display()),
            Err(e) => {
                eprintln!("error: saving baseline: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if regressions.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("{} regression(s) against the baseline", regressions.len());
        ExitCode::FAILURE
    }
}
