//! The `record`, `replay`, `import` and `lint` commands: argument types (clap)
//! and what each command does. `main.rs` only dispatches here.

use anyhow::anyhow;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use crate::replay::engine::{replay_cassette, ReplayOptions, ReplayReport, ReplayVerdict};
use crate::replay::record::{RecordOptions, Recorder};
use crate::replay::{load_any, Cassette, SourceFormat};

/// A cassette file as loaded (or why it did not load).
type Loaded = anyhow::Result<(Cassette, SourceFormat)>;

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Base URL of the provider to forward to, e.g. `https://api.openai.com` (a path prefix is kept).
    #[arg(long)]
    pub upstream: String,
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Cassette file to write; rewritten after every finished interaction, secrets redacted.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Cassettes (postmortem, VCR.py YAML, HAR, WireMock mappings) or directories of them.
    #[arg(required = true)]
    pub cassettes: Vec<PathBuf>,
    /// Rewrite each cassette with the gateway's current behaviour (postmortem cassettes only).
    #[arg(long)]
    pub update: bool,
    /// Report recorded interactions the gateway never requested as warnings instead of failures.
    #[arg(long)]
    pub allow_unused: bool,
    /// How many cassettes replay at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Client requests in flight per cassette; 1 keeps recording order (needed when identical requests got different answers).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Print only failing cassettes and the summary.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A VCR.py cassette, a HAR 1.2 file or WireMock stub mappings.
    pub input: PathBuf,
    /// Where to write the postmortem cassette (secrets redacted).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Files or directories to check (default: fixtures/ scenarios/ snapshots/).
    pub paths: Vec<PathBuf>,
}

/// `postmortem record`: runs the proxy until Ctrl-C.
pub async fn record(args: RecordArgs) -> ExitCode {
    let opts = RecordOptions { upstream: args.upstream.clone(), listen: args.listen.clone(), out: args.out.clone() };
    let recorder = match Recorder::start(opts).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    // A line scripts can wait for.
    println!(
        "postmortem record: listening on {}, forwarding to {}, writing {} (Ctrl-C to stop)",
        recorder.url(),
        args.upstream.trim_end_matches('/'),
        args.out.display()
    );
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("error: cannot wait for Ctrl-C: {e}");
    }
    match recorder.finish().await {
        Ok(c) => {
            let redacted: u64 = c.metadata.redactions.values().sum();
            println!(
                "recorded {} interaction(s) to {} ({redacted} value(s) redacted)",
                c.interactions.len(),
                args.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `postmortem import`.
pub fn import(args: ImportArgs) -> ExitCode {
    let (c, format) = match load_any(&args.input) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    // An input with nothing to import (`[]`, a HAR without entries) is an
    // error, not an empty cassette that would replay as a pass.
    if c.interactions.is_empty() {
        eprintln!("error: {}: no interactions to import ({format:?})", args.input.display());
        return ExitCode::from(2);
    }
    if let Err(e) = c.save(&args.out) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    println!(
        "imported {} interaction(s) ({format:?}, provider {}) to {}; redacted: {:?}",
        c.interactions.len(),
        c.metadata.provider,
        args.out.display(),
        c.metadata.redactions
    );
    ExitCode::SUCCESS
}

/// `postmortem lint`.
pub fn lint(args: LintArgs) -> ExitCode {
    let paths: Vec<PathBuf> = if args.paths.is_empty() {
        super::lint::DEFAULT_PATHS.iter().map(PathBuf::from).filter(|p| p.exists()).collect()
    } else {
        args.paths
    };
    match super::lint::lint_paths(&paths) {
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Ok((findings, files)) => {
            for f in &findings {
                println!("{f}");
            }
            println!("lint: {files} file(s) checked, {} finding(s)", findings.len());
            if findings.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Cassette files under the given paths (directories are walked).
fn discover(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    crate::scenario::model::discover_files(paths, &["yaml", "yml", "json", "har"])
}

/// `postmortem replay`.
pub async fn replay(args: ReplayArgs) -> ExitCode {
    let started = Instant::now();
    let files = match discover(&args.cassettes) {
        Ok(f) if !f.is_empty() => f,
        Ok(_) => {
            eprintln!("error: no cassette files found");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut loaded: Vec<(PathBuf, Loaded)> = Vec::new();
    for f in files {
        let c = load_any(&f).map_err(anyhow::Error::from);
        loaded.push((f, c));
    }
    let total: usize = loaded.iter().filter_map(|(_, c)| c.as_ref().ok()).map(|(c, _)| c.interactions.len()).sum();
    // Only worth a bar for long replays, and only on a terminal.
    let bar = (std::io::stderr().is_terminal() && total >= 50).then(|| {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} interactions {per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let opts = ReplayOptions {
        update: args.update,
        allow_unused: args.allow_unused,
        concurrency: args.concurrency.max(1),
        progress: bar.clone(),
        ..ReplayOptions::default()
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(args.jobs.max(1)));
    let mut tasks = Vec::new();
    for (file, c) in loaded {
        let sem = sem.clone();
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let name = file.display().to_string();
            let outcome = match c {
                Err(e) => Err(e),
                Ok((cassette, format)) => {
                    let report = replay_cassette(&cassette, &name, &opts).await;
                    finish_update(&file, format, report, &opts).await
                }
            };
            (name, outcome)
        }));
    }
    let (mut passed, mut failed, mut not_replayable, mut errors, mut replayed) = (0, 0, 0, 0, 0);
    for t in tasks {
        let (name, outcome) = match t.await {
            Ok(x) => x,
            Err(e) => ("?".to_string(), Err(anyhow!("replay task panicked: {e}"))),
        };
        match outcome {
            Err(e) => {
                errors += 1;
                let line = format!("== {name} (ERROR: {e:#})");
                print_line(&bar, &line);
            }
            Ok((report, note)) => {
                replayed += report.replayed();
                match report.verdict {
                    ReplayVerdict::Passed => passed += 1,
                    ReplayVerdict::Failed => failed += 1,
                    ReplayVerdict::NotReplayable => not_replayable += 1,
                }
                if !args.quiet || report.failed() {
                    print_line(&bar, report.render().trim_end());
                }
                if let Some(n) = note {
                    print_line(&bar, &n);
                }
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    println!(
        "replay: {passed} passed, {failed} failed, {not_replayable} not replayable, {errors} error(s); {replayed} interaction(s) replayed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    if failed > 0 || errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_line(bar: &Option<indicatif::ProgressBar>, text: &str) {
    match bar {
        Some(b) => b.suspend(|| println!("{text}")),
        None => println!("{text}"),
    }
}

/// With `--update`: writes the updated cassette and replays it again, so
/// the verdict says whether the cassette now matches.
async fn finish_update(
    file: &Path,
    format: SourceFormat,
    report: ReplayReport,
    opts: &ReplayOptions,
) -> anyhow::Result<(ReplayReport, Option<String>)> {
    let Some(updated) = report.updated.clone() else { return Ok((report, None)) };
    if format != SourceFormat::Postmortem {
        return Ok((
            report,
            Some(format!(
                "   not updated: {} is a {format:?} file; convert it with `postmortem import {} --out NEW.yaml` first",
                file.display(),
                file.display()
            )),
        ));
    }
    updated.save(file)?;
    let opts = ReplayOptions { update: false, progress: None, ..opts.clone() };
    let again = replay_cassette(&updated, &file.display().to_string(), &opts).await;
    let note = format!("   updated {} (replayed again: {:?})", file.display(), again.verdict);
    Ok((again, Some(note)))
}
