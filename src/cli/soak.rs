//! `postmortem soak`: the bounded soak (`crate::bench::soak`) with its
//! options, progress bar and exit status.
//!
//! Why a subcommand of its own and not `bench --soak`: `bench` measures
//! arms (direct, floor, targets) in interleaved rounds and reports medians
//! against a baseline; a soak runs one target once, checks every answer and
//! ends in a verdict. As a mode of `bench` it would have to ignore most of
//! bench's options (rounds, floor, baselines, modes, several targets) and
//! bend its report; as its own command it shares what is worth sharing —
//! the upstream, the target seam, the load's connections, `/proc` — through
//! `crate::bench`, and keeps options that mean what they say.

use super::bench::{our_gateway, Reach};
use crate::bench::faults::Mix;
use crate::bench::soak::{self, SoakOptions};
use crate::bench::{self, BenchTarget, MASTER_KEY};
use crate::target::TargetKind;
use anyhow::anyhow;
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// The gateway to soak, started with the soak's config: `{config}`
    /// becomes its path and `{port}` a free port (default: this binary's
    /// `serve`).
    #[arg(long, conflicts_with = "target_url")]
    pub target_cmd: Option<String>,
    /// A gateway already running on 127.0.0.1 with the config that
    /// `--print-config` prints (start it with `--upstream-port`); needs
    /// `--key`, its master key. RSS is sampled only with `--target-pid`.
    #[arg(long)]
    pub target_url: Option<String>,
    /// With `--target-url`: the gateway's process (group) id, to sample its RSS.
    #[arg(long, requires = "target_url")]
    pub target_pid: Option<u32>,
    /// Requests to send (1 to 100,000,000).
    #[arg(long, default_value_t = 1_000_000)]
    pub requests: u64,
    /// Requests in flight (1 to 1024), one keep-alive connection each.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Share of requests that stream (0 to 1).
    #[arg(long, default_value_t = 0.5)]
    pub stream_fraction: f64,
    /// Share of requests with an upstream fault (0 to 1), spread evenly over
    /// 500, 503, 429, reset, cut and malformed.
    #[arg(long, default_value_t = 0.10)]
    pub fault_fraction: f64,
    /// Seed of the request plan: the same seed gives each request number the
    /// same mode, fault and model.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Deployments in the config, each with its own api_base and key (so its
    /// own cached client).
    #[arg(long, default_value_t = 64)]
    pub deployments: usize,
    /// The gateway's client cache capacity (`client_cache_capacity`); half
    /// of it takes the hot deployments.
    #[arg(long, default_value_t = 8)]
    pub cache_capacity: usize,
    /// Share of requests sent to any deployment rather than a hot one: each
    /// such request may miss the cache and evict a client.
    #[arg(long, default_value_t = 0.02)]
    pub cold_share: f64,
    /// Milliseconds between two key-churn cycles (generate, use, delete, refused).
    #[arg(long, default_value_t = 100)]
    pub key_churn_interval_ms: u64,
    /// Seconds the whole run may take (1 to 86,400); requests not answered
    /// by then fail the run as a hang.
    #[arg(long, default_value_t = 1800)]
    pub time_limit: u64,
    /// Seconds one request may take (1 to 600), its whole body included.
    #[arg(long, default_value_t = 30)]
    pub request_timeout: u64,
    /// MiB the target's RSS may grow (last window's maximum over the first's).
    #[arg(long, default_value_t = 20.0)]
    pub rss_bound_mib: f64,
    /// Microseconds between a streamed answer's chunks at the upstream.
    #[arg(long, default_value_t = 500)]
    pub chunk_gap_us: u64,
    #[command(flatten)]
    pub reach: Reach,
    /// Print the config a `--target-url` gateway must run with (for
    /// `--upstream-port` and `--deployments`, `--cache-capacity`) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Start the upstream without faults, so faulted requests get 200s: the
    /// soak must then fail (its own proof).
    #[arg(long, hide = true)]
    pub self_test_unfaulted_upstream: bool,
}

fn fraction(name: &str, v: f64) -> anyhow::Result<f64> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(anyhow!("--{name} must be between 0 and 1, got {v}"))
    }
}

fn options(args: &SoakArgs) -> anyhow::Result<SoakOptions> {
    if !(1..=100_000_000).contains(&args.requests) {
        return Err(anyhow!("--requests must be between 1 and 100,000,000, got {}", args.requests));
    }
    if !(1..=1024).contains(&args.concurrency) {
        return Err(anyhow!("--concurrency must be between 1 and 1024, got {}", args.concurrency));
    }
    if !(1..=10_000).contains(&args.deployments) || !(1..=10_000).contains(&args.cache_capacity) {
        return Err(anyhow!("--deployments and --cache-capacity must be between 1 and 10,000"));
    }
    if !(1..=86_400).contains(&args.time_limit) {
        return Err(anyhow!("--time-limit must be between 1 and 86,400 seconds, got {}", args.time_limit));
    }
    if !(1..=600).contains(&args.request_timeout) {
        return Err(anyhow!("--request-timeout must be between 1 and 600 seconds, got {}", args.request_timeout));
    }
    if !(args.rss_bound_mib.is_finite() && args.rss_bound_mib >= 0.0) {
        return Err(anyhow!("--rss-bound-mib must be a number of MiB ≥ 0, got {}", args.rss_bound_mib));
    }
    if args.key_churn_interval_ms > 60_000 || args.chunk_gap_us > 1_000_000 {
        return Err(anyhow!("--key-churn-interval-ms is at most 60,000 and --chunk-gap-us at most 1,000,000"));
    }
    let mix = Mix {
        seed: args.seed,
        stream_fraction: fraction("stream-fraction", args.stream_fraction)?,
        fault_fraction: fraction("fault-fraction", args.fault_fraction)?,
        deployments: args.deployments,
        hot: (args.cache_capacity / 2).clamp(1, args.deployments),
        cold_share: fraction("cold-share", args.cold_share)?,
    };
    let exe = std::env::current_exe().map_err(|e| anyhow!("cannot find this executable: {e}"))?;
    let target = match (&args.target_cmd, &args.target_url) {
        (_, Some(url)) => {
            bench::loopback_authority(url)?;
            if args.reach.upstream_port == 0 || args.reach.key.is_none() {
                return Err(anyhow!(
                    "--target-url needs --upstream-port (its config must be what --print-config prints) \
                     and --key (its master key, for the key churn)"
                ));
            }
            BenchTarget::Url(url.clone())
        }
        (Some(c), None) => BenchTarget::Command { command: c.clone(), kind: TargetKind::Other },
        (None, None) => our_gateway(&exe),
    };
    Ok(SoakOptions {
        target,
        target_pid: args.target_pid,
        requests: args.requests,
        concurrency: args.concurrency,
        mix,
        cache_capacity: args.cache_capacity,
        key_churn_interval: Duration::from_millis(args.key_churn_interval_ms),
        time_limit: Duration::from_secs(args.time_limit),
        request_timeout: Duration::from_secs(args.request_timeout),
        rss_bound_kib: (args.rss_bound_mib * 1024.0).round() as u64,
        chunk_gap: Duration::from_micros(args.chunk_gap_us),
        upstream_port: args.reach.upstream_port,
        key: args.reach.key.clone(),
        startup_timeout: Duration::from_secs(args.reach.startup_timeout.max(1)),
        exe,
        upstream_faults: !args.self_test_unfaulted_upstream,
    })
}

/// Exit status: 0 when the soak passed, 1 when a check failed or the run
/// could not be set up, 2 for bad options.
pub async fn soak(args: SoakArgs) -> ExitCode {
    let o = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        let port = if args.reach.upstream_port == 0 { 4010 } else { args.reach.upstream_port };
        print!("{}", soak::soak_config(&format!("127.0.0.1:{port}"), o.mix.deployments, o.cache_capacity));
        // On stderr, so stdout stays the config alone.
        eprintln!("note: this config's master key is {MASTER_KEY}: give the soak `--key {MASTER_KEY}` (or your own master key if you change it)");
        return ExitCode::SUCCESS;
    }
    let bar = indicatif::ProgressBar::new(o.requests);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} requests, {elapsed} ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |done: u64| bar.set_position(done);
    let report = match soak::run(&o, &progress).await {
        Ok(r) => r,
        Err(e) => {
            bar.abandon();
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    bar.finish_and_clear();
    if args.reach.format == "json" {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: the report cannot be written as JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report.render());
    }
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
