//! `--prove`: each incident scenario must pass against the gateway as it
//! is, and fail — at a step marked `checks_incident` — with the incident's
//! bug put back. A scenario that passes either way proves nothing.

use super::engine::{run_scenario, Outcome, RunOptions};
use super::model::Scenario;
use crate::gateway::KnownBugs;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Proof {
    pub incident: String,
    pub scenario: String,
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

pub async fn prove(scenario: &Scenario, file: &Path, opts: &RunOptions) -> Option<(Proof, Outcome)> {
    let incident = scenario.incident.as_ref()?;
    let fixed = run_scenario(scenario, file, opts).await;
    let bugs = KnownBugs::default().with(&incident.bug).unwrap_or_default();
    let broken_opts = RunOptions { bugs, ..opts.clone() };
    let broken = run_scenario(scenario, file, &broken_opts).await;
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
            "with the bug put back it fails at a step not marked checks_incident ({})",
            broken.failure.as_ref().map(|f| f.step.clone()).unwrap_or_default()
        ))
    } else {
        None
    };
    let proof = Proof {
        incident: incident.id.clone(),
        scenario: scenario.name.clone(),
        file: file.display().to_string(),
        bug: incident.bug.clone(),
        passes_when_fixed,
        fails_when_broken,
        failing_step: broken.failure.as_ref().map(|f| f.step.clone()),
        evidence: broken.failure.as_ref().map(|f| f.message.clone()),
        proven: passes_when_fixed && fails_when_broken,
        problem,
    };
    Some((proof, fixed))
}
