//! Running many scenarios: load each (a load error is a failed outcome
//! naming the file and line), group those that share one gateway process in
//! target mode, run the groups in parallel within `jobs`, and keep the
//! outcomes in the order of the files.

use crate::scenario::engine::{run_group, sharing_key};
use crate::scenario::prove::{prove, Proof};
use crate::scenario::{run_scenario, Outcome, RunOptions, Scenario};
use crate::target::TargetSpec;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

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

pub(crate) fn load_failure(file: &Path, message: String) -> Outcome {
    let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Outcome {
        verdict: crate::scenario::Verdict::Failed,
        failure: Some(crate::scenario::engine::StepFailure {
            step_index: 0,
            step: "load".into(),
            checks_incident: false,
            harness: false,
            message,
        }),
        ..Outcome::new(&name, &file.display().to_string())
    }
}
