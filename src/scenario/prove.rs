//! `--prove`: each incident scenario must pass against the gateway as it
//! is, and fail — at a step marked `checks_incident` — with the incident's
//! bug put back. A scenario that passes either way proves nothing.
//!
//! A scenario's black-box steps (what target mode runs against other
//! gateways) are proven the same way, in-process, so a black-box variant
//! that could not catch the bug never goes unnoticed.

use super::engine::{run_scenario, Outcome, RunOptions};
use super::model::Scenario;
use crate::gateway::KnownBugs;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Proof {
    /// The incident id (named `id` like target-mode verdicts).
    #[serde(rename = "id")]
    pub incident: String,
    pub scenario: String,
    /// `steps` or `black_box_steps`.
    pub variant: &'static str,
    pub file: String,
    pub bug: String,
    pub passes_when_fixed: bool,
    pub fails_when_broken: bool,
    /// The step the broken gateway failed at, and why.
    pub failing_step: Option<String>,
    pub evidence: Option<String>,
    pub proven: bool,
    /// Why it is not proven, when it is not.
    pub problem: Option<String>,
}

/// Proves every variant of an incident scenario. Returns the proofs and the
/// outcome of the main steps on the fixed gateway (for the report).
pub async fn prove(scenario: &Scenario, file: &Path, opts: &RunOptions) -> Option<(Vec<Proof>, Outcome)> {
    let incident = scenario.incident.as_ref()?;
    let bugs = KnownBugs::default().with(&incident.bug).unwrap_or_default();
    let mut proofs = Vec::new();
    let mut main_outcome = None;
    let variants: &[bool] = if scenario.black_box_steps.is_some() { &[false, true] } else { &[false] };
    for &black_box in variants {
        let fixed_opts = RunOptions { force_black_box: black_box, bugs: KnownBugs::default(), ..opts.clone() };
        let fixed = run_scenario(scenario, file, &fixed_opts).await;
        let broken = run_scenario(scenario, file, &RunOptions { bugs, ..fixed_opts.clone() }).await;
        proofs.push(judge(incident.id.clone(), incident.bug.clone(), scenario, file, &fixed, &broken));
        if !black_box {
            main_outcome = Some(fixed);
        }
    }
    main_outcome.map(|o| (proofs, o))
}

fn judge(id: String, bug: String, scenario: &Scenario, file: &Path, fixed: &Outcome, broken: &Outcome) -> Proof {
    let passes_when_fixed = fixed.passed();
    let failed_at_check = broken.failure.as_ref().map(|f| f.checks_incident).unwrap_or(false);
    let fails_when_broken = !broken.passed() && failed_at_check;
    let problem = if !passes_when_fixed {
        Some(format!(
            "fails on the fixed gateway: {}",
            fixed.failure.as_ref().map(|f| format!("{}: {}", f.step, f.message)).unwrap_or_default()
        ))
    } else if broken.passed() {
        Some("passes with the bug put back: the scenario does not catch it".into())
    } else if !failed_at_check {
        Some(format!(
            "with the bug put back it fails at a step not marked checks_incident ({}: {})",
            broken.failure.as_ref().map(|f| f.step.clone()).unwrap_or_default(),
            broken.failure.as_ref().map(|f| f.message.clone()).unwrap_or_default()
        ))
    } else {
        None
    };
    Proof {
        incident: id,
        scenario: scenario.name.clone(),
        variant: fixed.variant,
        file: file.display().to_string(),
        bug,
        passes_when_fixed,
        fails_when_broken,
        failing_step: broken.failure.as_ref().map(|f| f.step.clone()),
        evidence: broken.failure.as_ref().map(|f| f.message.clone()),
        proven: passes_when_fixed && fails_when_broken,
        problem,
    }
}
