//! Differential runs, for the upgrade question: "what changes if we move
//! from the gateway we run (the baseline) to the next one?" Every scenario
//! runs against both; each behaviour that differs is classified:
//! - a **regression**: a contract the baseline kept and the candidate breaks
//!   at the same step, or a step the baseline passed and the candidate fails;
//! - **fixed**: the other way round;
//! - **neutral**: what the client got or a provider received differs at a
//!   step (compared as data, ids and timestamps ignored, with the replay
//!   engine's diff), but no contract or expectation changed its verdict.
//!
//! Only regressions fail the run.

use super::engine::{Outcome, Verdict};
use crate::replay::diff::{json_diff, response_json_diff, Difference};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;

/// One behaviour that changed between the baseline and the candidate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    pub scenario: String,
    pub step: String,
    /// The contract involved, for contract changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
    pub what: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Differential {
    pub regressions: Vec<Change>,
    pub fixed: Vec<Change>,
    pub neutral: Vec<Change>,
    /// Scenarios that ran on only one side, or were inconclusive or not
    /// applicable on either: nothing to compare.
    pub not_compared: Vec<String>,
}

fn violations(o: &Outcome) -> BTreeSet<(String, String, String)> {
    o.violations.iter().map(|v| (v.contract.to_string(), v.step.clone(), v.detail.clone())).collect()
}

/// Contract + step, without the detail (values differ between gateways).
fn broken(o: &Outcome) -> BTreeSet<(String, String)> {
    o.violations.iter().map(|v| (v.contract.to_string(), v.step.clone())).collect()
}

fn comparable(o: &Outcome) -> bool {
    matches!(o.verdict, Verdict::Passed | Verdict::Failed)
}

/// Compares two runs of the same scenario files, matched by file.
pub fn compare(baseline: &[Outcome], candidate: &[Outcome]) -> Differential {
    let mut d = Differential::default();
    for new in candidate {
        let Some(old) = baseline.iter().find(|o| o.file == new.file) else {
            d.not_compared.push(format!("{} (only in the candidate run)", new.name));
            continue;
        };
        if !comparable(old) || !comparable(new) {
            d.not_compared.push(format!("{} ({:?} → {:?})", new.name, old.verdict, new.verdict));
            continue;
        }
        let change = |step: &str, contract: Option<&str>, what: String| Change {
            scenario: new.name.clone(),
            step: step.to_string(),
            contract: contract.map(str::to_string),
            what,
        };
        let (old_broken, new_broken) = (broken(old), broken(new));
        for v in violations(new) {
            if !old_broken.contains(&(v.0.clone(), v.1.clone())) {
                d.regressions.push(change(&v.1, Some(&v.0), format!("newly broken: {}", v.2)));
            }
        }
        for v in violations(old) {
            if !new_broken.contains(&(v.0.clone(), v.1.clone())) {
                d.fixed.push(change(&v.1, Some(&v.0), format!("no longer broken: {}", v.2)));
            }
        }
        match (&old.failure, &new.failure) {
            (None, Some(f)) => d.regressions.push(change(&f.step, None, format!("fails now: {}", f.message))),
            (Some(f), None) => d.fixed.push(change(&f.step, None, format!("passes now (failed with: {})", f.message))),
            (Some(a), Some(b)) if a.step_index != b.step_index => {
                let (earlier, what) = if b.step_index < a.step_index {
                    (&mut d.regressions, format!("fails earlier now: {}", b.message))
                } else {
                    (&mut d.fixed, format!("fails later now: {}", b.message))
                };
                earlier.push(change(&b.step, None, what));
            }
            _ => {}
        }
        for (step, what) in transcript_changes(&old.transcript, &new.transcript) {
            d.neutral.push(change(&step, None, what));
        }
    }
    d
}

/// Differences between two transcripts, entry by entry (same step index).
fn transcript_changes(old: &[Value], new: &[Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for n in new {
        let step = n.get("step").and_then(Value::as_u64);
        let Some(o) = old.iter().find(|o| o.get("step").and_then(Value::as_u64) == step) else { continue };
        let label = format!("steps[{}]", step.unwrap_or_default());
        let mut diffs: Vec<Difference> = Vec::new();
        let (o, n) = (without_ports(o), without_ports(n));
        response_json_diff(&o["response"], &n["response"], "response", &mut diffs);
        json_diff(&o["upstream"], &n["upstream"], "upstream", &mut diffs);
        for diff in diffs.iter().take(5) {
            // The diff speaks of a recording; here the baseline is one.
            let text = diff.to_string().replace("in the recording", "in the baseline");
            out.push((label.clone(), text));
        }
        if diffs.len() > 5 {
            out.push((label.clone(), format!("… and {} more differences", diffs.len() - 5)));
        }
    }
    out
}

/// Each run starts its mocks on ports of its own: `127.0.0.1:PORT` in any
/// string is the same place on both sides.
fn without_ports(v: &Value) -> Value {
    static PORT: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = PORT.get_or_init(|| regex::Regex::new(r"(127\.0\.0\.1|localhost):\d+").expect("a valid pattern"));
    match v {
        Value::String(s) => Value::String(re.replace_all(s, "$1:PORT").into_owned()),
        Value::Array(a) => Value::Array(a.iter().map(without_ports).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), without_ports(x))).collect()),
        other => other.clone(),
    }
}

/// The text report's section.
pub fn text(d: &Differential, baseline: &str, candidate: &str) -> String {
    let mut out = format!("\nDifferential run: baseline `{baseline}` → candidate `{candidate}`\n");
    for (title, changes) in
        [("Regressions (fail the run)", &d.regressions), ("Fixed", &d.fixed), ("Neutral changes", &d.neutral)]
    {
        out.push_str(&format!("{title}: {}\n", changes.len()));
        for c in changes.iter().take(40) {
            let contract = c.contract.as_deref().map(|x| format!(" [{x}]")).unwrap_or_default();
            let what: String = c.what.chars().take(240).collect();
            out.push_str(&format!("  {} at {}{contract}: {what}\n", c.scenario, c.step));
        }
        if changes.len() > 40 {
            out.push_str(&format!("  … and {} more\n", changes.len() - 40));
        }
    }
    if !d.not_compared.is_empty() {
        out.push_str(&format!("Not compared: {}\n", d.not_compared.join("; ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::engine::{ContractViolation, StepFailure};
    use serde_json::json;

    fn outcome(violations: &[(&'static str, &str)], failure: Option<(usize, &str)>, transcript: Vec<Value>) -> Outcome {
        Outcome {
            verdict: if violations.is_empty() && failure.is_none() { Verdict::Passed } else { Verdict::Failed },
            failure: failure.map(|(i, m)| StepFailure {
                step_index: i,
                step: format!("steps[{i}]"),
                checks_incident: false,
                harness: false,
                message: m.into(),
            }),
            violations: violations
                .iter()
                .map(|(c, step)| ContractViolation {
                    contract: c,
                    step: step.to_string(),
                    detail: "d".into(),
                    evidence: vec![],
                })
                .collect(),
            exchanges_checked: 1,
            transcript,
            ..Outcome::new("s", "s.yaml")
        }
    }

    #[test]
    fn new_violations_are_regressions_gone_ones_are_fixed_and_other_differences_neutral() {
        let t = |text: &str, port: u16| {
            vec![
                json!({"step": 0, "upstream": [], "response": {"status": 200, "body": {"text": text, "url": format!("http://127.0.0.1:{port}/v1")}}}),
            ]
        };
        let old = outcome(&[("stream.framing", "steps[1]")], None, t("a", 1000));
        let new = outcome(&[("fidelity.usage", "steps[2]")], None, t("b", 2000));
        let d = compare(&[old], &[new]);
        assert_eq!(d.regressions.len(), 1, "{d:?}");
        assert_eq!(d.regressions[0].contract.as_deref(), Some("fidelity.usage"));
        assert_eq!(d.fixed.len(), 1);
        assert_eq!(d.fixed[0].contract.as_deref(), Some("stream.framing"));
        // The text differs; the mock's port does not count.
        assert_eq!(d.neutral.len(), 1, "{:?}", d.neutral);
        assert!(d.neutral[0].what.contains("text"));
    }

    #[test]
    fn a_step_that_starts_failing_is_a_regression_and_the_same_failure_is_no_change() {
        let same = compare(&[outcome(&[], Some((2, "x")), vec![])], &[outcome(&[], Some((2, "y")), vec![])]);
        assert!(same.regressions.is_empty() && same.fixed.is_empty());
        let worse = compare(&[outcome(&[], None, vec![])], &[outcome(&[], Some((1, "boom")), vec![])]);
        assert_eq!(worse.regressions.len(), 1);
        let earlier = compare(&[outcome(&[], Some((3, "x")), vec![])], &[outcome(&[], Some((1, "y")), vec![])]);
        assert_eq!(earlier.regressions.len(), 1);
    }
}
