//! The command-line front end: every command of the binary, parsed by
//! `main.rs` with clap. `serve` and `run` (and `contracts`) here; `record`,
//! `replay` and `import` in [`replay`]; `lint` in [`lint`]; `bench` in [`bench`](mod@bench). The commands only
//! parse, call the engines and print: running scenarios is
//! `scenario::runner`, replaying cassettes `replay::engine`.

pub mod bench;
pub mod lint;
pub mod replay;
pub mod soak;

use crate::gateway::{Config, GatewayBuilder, KnownBugs};
use crate::scenario::runner::run_all;
use crate::scenario::{model, report, RunOptions};
use crate::target::{TargetKind, TargetSpec};
use clap::{Args, ValueEnum};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub async fn serve(config: &Path, host: &str, port: u16) -> ExitCode {
    let loaded = match Config::load(config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let default_db = crate::gateway::store::DatabaseLocation::File(crate::gateway::store::default_path_for(config));
    let gw = match GatewayBuilder::new(loaded.config).default_database(default_db).build().await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {}: {e}", config.display());
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind((host, port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot bind {host}:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(address = %addr, root_path = %gw.root_path, models = gw.router.model_names().len(), database = %gw.store.location().describe(), "postmortem gateway listening");
    // A line the harness and scripts can wait for.
    println!("postmortem listening on http://{addr}{}", gw.root_path);
    match crate::gateway::server::serve(gw, listener).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: server stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Junit,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario files or directories (default: scenarios/).
    pub paths: Vec<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also run every incident scenario with its bug put back; it must fail.
    #[arg(long)]
    pub prove: bool,
    /// Only scenarios whose file path contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// How many scenarios run at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Project root for `file:` paths in scenarios (default: current directory).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Target mode: run the scenarios black-box against another gateway,
    /// started per scenario by this shell command. `{config}` becomes the
    /// path of the scenario's LiteLLM-format config.yaml and `{port}` a free
    /// port, e.g. `litellm --config {config} --port {port}`.
    #[arg(long, conflicts_with = "target_url")]
    pub target_cmd: Option<String>,
    /// Target mode against a gateway that is already running (scenarios that
    /// need their own config are reported as not applicable).
    #[arg(long)]
    pub target_url: Option<String>,
    /// What the target is: `postmortem` enables checks that use our admin API.
    #[arg(long, value_enum, default_value_t = TargetKind::Other)]
    pub target_kind: TargetKind,
    /// How long a target may take to start answering HTTP, in seconds.
    #[arg(long, default_value_t = 120)]
    pub target_startup_timeout: u64,
    /// Run only the conformance suite (scenarios/conformance/): a quick
    /// check of a new gateway against every contract.
    #[arg(long, conflicts_with = "paths")]
    pub contracts_only: bool,
    /// Differential run: also run every scenario against this baseline
    /// gateway (same placeholders as --target-cmd), compare every exchange
    /// and report what changed. Only regressions fail the run.
    #[arg(long, conflicts_with = "baseline_target_url")]
    pub baseline_target_cmd: Option<String>,
    /// Differential run against a baseline that is already running.
    #[arg(long)]
    pub baseline_target_url: Option<String>,
}

impl RunArgs {
    fn baseline(&self) -> Option<TargetSpec> {
        let startup_timeout = std::time::Duration::from_secs(self.target_startup_timeout);
        match (&self.baseline_target_cmd, &self.baseline_target_url) {
            (Some(command), _) => {
                Some(TargetSpec::Command { command: command.clone(), startup_timeout, kind: self.target_kind })
            }
            (None, Some(url)) => Some(TargetSpec::Url { url: url.clone(), kind: self.target_kind }),
            (None, None) => None,
        }
    }

    fn target(&self) -> TargetSpec {
        if let Some(command) = &self.target_cmd {
            TargetSpec::Command {
                command: command.clone(),
                startup_timeout: std::time::Duration::from_secs(self.target_startup_timeout),
                kind: self.target_kind,
            }
        } else if let Some(url) = &self.target_url {
            TargetSpec::Url { url: url.clone(), kind: self.target_kind }
        } else {
            TargetSpec::InProcess
        }
    }
}

/// `postmortem contracts`: every contract the harness checks, by family.
pub fn list_contracts() -> ExitCode {
    let mut family = None;
    for c in crate::contracts::CONTRACTS {
        if family != Some(c.family) {
            family = Some(c.family);
            println!("\n{:?}", c.family);
        }
        println!("  {:<36} {}", c.name, c.statement);
    }
    ExitCode::SUCCESS
}

pub async fn run(args: RunArgs) -> ExitCode {
    // Interrupted (Ctrl-C, a CI timeout's SIGTERM): stop the target
    // gateways this run started before going, or they outlive it.
    tokio::spawn(async {
        let code = interrupted().await;
        crate::target::stop_all_targets();
        crate::services::stop_all();
        eprintln!("postmortem: interrupted; stopped the target gateways and services");
        std::process::exit(code);
    });
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("."));
    let paths = if args.contracts_only {
        vec![root.join("scenarios").join("conformance")]
    } else if args.paths.is_empty() {
        vec![root.join("scenarios")]
    } else {
        args.paths.clone()
    };
    let mut files = match model::discover(&paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(filter) = &args.filter {
        files.retain(|f| f.display().to_string().contains(filter.as_str()));
    }
    if files.is_empty() {
        eprintln!(
            "error: no scenario files found in {}",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
        return ExitCode::from(2);
    }
    let progress = args.format == Format::Text && std::io::stderr().is_terminal();
    let target = args.target();
    if args.prove && !matches!(target, TargetSpec::InProcess) {
        eprintln!("error: --prove puts bugs back into our own gateway and runs in-process only; drop --target-*");
        return ExitCode::from(2);
    }
    let opts = RunOptions { project_root: root.clone(), bugs: KnownBugs::default(), target, force_black_box: false };
    // A separate gateway per scenario is heavy (LiteLLM takes seconds to start):
    // run fewer at once.
    let jobs = if matches!(opts.target, TargetSpec::InProcess) { args.jobs } else { args.jobs.min(2) };
    if let Some(baseline) = args.baseline() {
        if args.prove {
            eprintln!("error: --prove and a differential run do not mix; run them separately");
            return ExitCode::from(2);
        }
        return differential(&args, &files, opts, baseline, jobs, progress).await;
    }
    let r = run_all(&files, &opts, args.prove, jobs, progress).await;
    match args.format {
        Format::Text => print!("{}", report::text(&r.outcomes, &r.proofs, r.wall_ms)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report::json(&r.outcomes, &r.proofs, r.wall_ms)).unwrap_or_default()
        ),
        Format::Junit => print!("{}", report::junit(&r.outcomes, &r.proofs, r.wall_ms)),
    }
    let failed = r.outcomes.iter().any(|o| matches!(o.verdict, crate::scenario::Verdict::Failed));
    let unproven = r.proofs.iter().any(|p| !p.proven);
    if failed || unproven {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The label of a target in reports.
fn target_label(t: &TargetSpec) -> String {
    match t {
        TargetSpec::InProcess => "postmortem (in-process)".into(),
        TargetSpec::Command { command, .. } => command.clone(),
        TargetSpec::Url { url, .. } => url.clone(),
    }
}

/// Runs the scenarios against the baseline, then the candidate, and
/// reports the candidate's results with what changed.
async fn differential(
    args: &RunArgs,
    files: &[PathBuf],
    candidate: RunOptions,
    baseline: TargetSpec,
    jobs: usize,
    progress: bool,
) -> ExitCode {
    let base_opts = RunOptions { target: baseline, ..candidate.clone() };
    let jobs_for = |o: &RunOptions| if matches!(o.target, TargetSpec::InProcess) { jobs } else { jobs.min(2) };
    let old = run_all(files, &base_opts, false, jobs_for(&base_opts), progress).await;
    let new = run_all(files, &candidate, false, jobs_for(&candidate), progress).await;
    let d = crate::scenario::differential::compare(&old.outcomes, &new.outcomes);
    let (from, to) = (target_label(&base_opts.target), target_label(&candidate.target));
    match args.format {
        Format::Text => {
            print!("{}", report::text(&new.outcomes, &[], new.wall_ms));
            print!("{}", crate::scenario::differential::text(&d, &from, &to));
        }
        Format::Json => {
            let mut j = report::json(&new.outcomes, &[], new.wall_ms);
            j["baseline"] = report::json(&old.outcomes, &[], old.wall_ms);
            j["differential"] = serde_json::to_value(&d).unwrap_or_default();
            println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
        }
        Format::Junit => print!("{}", report::junit(&new.outcomes, &[], new.wall_ms)),
    }
    if d.regressions.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Waits for SIGINT or SIGTERM; returns the shell's exit status for it.
async fn interrupted() -> i32 {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
        },
        // No handler could be installed: never fire.
        _ => std::future::pending().await,
    }
}
