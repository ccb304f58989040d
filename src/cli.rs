//! The command-line front end: `serve` and `run`.

use crate::gateway::{Config, GatewayBuilder, KnownBugs};
use crate::scenario::engine::{run_group, sharing_key};
use crate::scenario::prove::{prove, Proof};
use crate::scenario::{model, report, run_scenario, Outcome, RunOptions, Scenario};
use crate::target::{TargetKind, TargetSpec};
use clap::{Args, ValueEnum};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub async fn serve(config: &Path, host: &str, port: u16) -> ExitCode {
    let loaded = match Config::load(config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
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

pub struct RunResult {
    pub outcomes: Vec<Outcome>,
    pub proofs: Vec<Proof>,
    pub wall_ms: u128,
}

/// Loads and runs scenarios in parallel. Load errors become failed outcomes
/// naming the file and line. With `--target-cmd`, scenarios with the same
/// config share one gateway process (run one after another on it), and the
/// groups run in parallel; otherwise every scenario is a group of its own.
pub async fn run_all(
    files: &[PathBuf],
    opts: &RunOptions,
    prove_incidents: bool,
    jobs: usize,
    progress: bool,
) -> RunResult {
    let started = Instant::now();
    let bar = if progress {
        let b = indicatif::ProgressBar::new(files.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let share = matches!(opts.target, TargetSpec::Command { .. }) && !prove_incidents;
    let mut outcomes: Vec<Option<Outcome>> = vec![None; files.len()];
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, f) in files.iter().enumerate() {
        let s = match Scenario::load(f) {
            Ok(s) => s,
            Err(e) => {
                outcomes[i] = Some(load_failure(f, e.to_string()));
                continue;
            }
        };
        let mut new_group = || {
            groups.push(Group::default());
            groups.len() - 1
        };
        let g = match share.then(|| sharing_key(&s, &opts.project_root)).flatten() {
            Some(key) => *group_of.entry(key).or_insert_with(new_group),
            None => new_group(),
        };
        groups[g].positions.push(i);
        groups[g].members.push((s, f.clone()));
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut tasks = Vec::new();
    for Group { positions, members } in groups {
        let sem = sem.clone();
        let opts = opts.clone();
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let mut results: Vec<(Outcome, Vec<Proof>)> = Vec::new();
            if prove_incidents {
                // Proofs build their own in-process gateways: no sharing.
                for (s, f) in &members {
                    let proved = if s.incident.is_some() { prove(s, f, &opts).await } else { None };
                    results.push(match proved {
                        Some((p, o)) => (o, p),
                        None => (run_scenario(s, f, &opts).await, Vec::new()),
                    });
                }
            } else {
                results.extend(run_group(&members, &opts).await.into_iter().map(|o| (o, Vec::new())));
            }
            if let Some(b) = &bar {
                for (o, _) in &results {
                    b.inc(1);
                    b.set_message(o.name.clone());
                }
            }
            positions.into_iter().zip(results).map(|(i, (o, p))| (i, o, p)).collect::<Vec<_>>()
        }));
    }
    let mut proofs = Vec::new();
    let mut lost = String::from("scenario was not run");
    for t in tasks {
        match t.await {
            Ok(results) => {
                for (i, o, p) in results {
                    outcomes[i] = Some(o);
                    proofs.extend(p);
                }
            }
            Err(e) => lost = format!("scenario task panicked: {e}"),
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let outcomes =
        outcomes.into_iter().zip(files).map(|(o, f)| o.unwrap_or_else(|| load_failure(f, lost.clone()))).collect();
    RunResult { outcomes, proofs, wall_ms: started.elapsed().as_millis() }
}

/// Scenarios that run one after another (on one gateway process in target
/// mode), with their positions in the file list.
#[derive(Default)]
struct Group {
    positions: Vec<usize>,
    members: Vec<(Scenario, PathBuf)>,
}

fn load_failure(file: &Path, message: String) -> Outcome {
    let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Outcome {
        verdict: crate::scenario::Verdict::Failed,
        failure: Some(crate::scenario::engine::StepFailure {
            step_index: 0,
            step: "load".into(),
            checks_incident: false,
            message,
        }),
        ..Outcome::new(&name, &file.display().to_string())
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
        eprintln!("postmortem: interrupted; stopped the target gateways");
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
            eprintln!("error: {e}");
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
