//! Reports: readable text, a JSON summary, JUnit XML.

use super::engine::{ContractViolation, IncidentVerdict, Outcome, Verdict};
use super::prove::Proof;
use serde_json::json;

pub fn text(outcomes: &[Outcome], proofs: &[Proof], wall_ms: u128) -> String {
    let mut out = String::new();
    for o in outcomes {
        let (mark, extra) = match o.verdict {
            Verdict::Passed => ("PASS", String::new()),
            Verdict::Failed => ("FAIL", String::new()),
            Verdict::NotApplicable => ("N/A ", format!(" ({})", o.not_applicable.clone().unwrap_or_default())),
            Verdict::Inconclusive => {
                ("INC ", format!(" (inconclusive: {})", o.inconclusive.clone().unwrap_or_default()))
            }
        };
        let shared = if o.reused_target { " (same gateway process as the scenario before)" } else { "" };
        out.push_str(&format!("{mark}  {:<58} {:>6} ms  {}{extra}{shared}\n", o.name, o.duration_ms, o.file));
        for s in &o.skipped_steps {
            out.push_str(&format!("      skipped {s}\n"));
        }
        if let Some(f) = &o.failure {
            // A harness problem says nothing about the gateway: said so.
            let whose = if f.harness { " (a harness problem, not a verdict on the gateway)" } else { "" };
            out.push_str(&format!("      at {}{whose}\n", f.step));
            for line in f.message.lines() {
                out.push_str(&format!("      | {line}\n"));
            }
            if let Some(tail) = &o.target_output {
                out.push_str("      target output (last lines):\n");
                for line in tail.lines() {
                    out.push_str(&format!("      > {line}\n"));
                }
            }
        }
        for v in &o.violations {
            out.push_str(&format!("      contract {} broken at {}\n      | {}\n", v.contract, v.step, v.detail));
        }
    }
    let groups = by_contract(outcomes);
    if !groups.is_empty() {
        out.push_str("\nContracts broken:\n");
        for (name, hits) in &groups {
            let statement = crate::contracts::contract(name).map(|c| c.statement).unwrap_or("");
            out.push_str(&format!("{name} ({} exchange(s)): {statement}\n", hits.len()));
            for (o, v) in hits.iter().take(5) {
                out.push_str(&format!("  {} at {}: {}\n", o.name, v.step, v.detail));
                for line in &v.evidence {
                    let line: String = line.chars().take(300).collect();
                    out.push_str(&format!("      {line}\n"));
                }
            }
            if hits.len() > 5 {
                out.push_str(&format!("  … and {} more\n", hits.len() - 5));
            }
        }
    }
    if proofs.is_empty() && outcomes.iter().any(|o| o.incident_verdict.is_some()) {
        out.push_str("\nIncident verdicts:\n");
        for o in outcomes {
            let Some(v) = o.incident_verdict else { continue };
            let word = match v {
                IncidentVerdict::Clean => "clean",
                IncidentVerdict::Caught => "CAUGHT",
                IncidentVerdict::NotApplicable => "not applicable",
                IncidentVerdict::Inconclusive => "inconclusive",
            };
            let why = match v {
                IncidentVerdict::NotApplicable => o.not_applicable.clone().unwrap_or_default(),
                IncidentVerdict::Caught | IncidentVerdict::Inconclusive => o
                    .failure
                    .as_ref()
                    .map(|f| format!("{}: {}", f.step, f.message.lines().next().unwrap_or("")))
                    .unwrap_or_default(),
                IncidentVerdict::Clean => format!("({})", o.variant),
            };
            let why: String = why.chars().take(200).collect();
            out.push_str(&format!("{:<24} {:<15} {:<46} {}\n", o.incident.as_deref().unwrap_or(""), word, o.name, why));
        }
    }
    if !proofs.is_empty() {
        out.push_str("\nIncident proofs (passes as is, fails with its bug put back):\n");
        out.push_str(&format!(
            "{:<24} {:<48} {:<9} {:<7} {:<7} {}\n",
            "incident", "scenario", "variant", "fixed", "broken", "failing step"
        ));
        for p in proofs {
            out.push_str(&format!(
                "{:<24} {:<48} {:<9} {:<7} {:<7} {}\n",
                p.incident,
                p.scenario,
                if p.variant == "steps" { "in-proc" } else { "black-box" },
                if p.passes_when_fixed { "pass" } else { "FAIL" },
                if p.fails_when_broken { "fails" } else { "PASSES" },
                p.failing_step.clone().unwrap_or_else(|| "-".into())
            ));
            if let Some(problem) = &p.problem {
                out.push_str(&format!("    NOT PROVEN: {problem}\n"));
            } else if let Some(ev) = &p.evidence {
                let first = ev.lines().next().unwrap_or("");
                let first: String = first.chars().take(160).collect();
                out.push_str(&format!("    evidence: {first}\n"));
            }
        }
    }
    let (passed, failed, na, inconclusive) = counts(outcomes);
    let unproven = proofs.iter().filter(|p| !p.proven).count();
    let checked: usize = outcomes.iter().map(|o| o.exchanges_checked).sum();
    let broken: usize = groups.iter().map(|(_, h)| h.len()).sum();
    out.push_str(&format!(
        "\n{checked} exchanges checked against {} contracts: {broken} violation(s) of {} contract(s)",
        crate::contracts::CONTRACTS.len(),
        groups.len()
    ));
    out.push_str(&format!(
        "\n{} scenarios: {passed} passed, {failed} failed, {na} not applicable{}{} in {:.2}s\n",
        outcomes.len(),
        if inconclusive > 0 { format!(", {inconclusive} inconclusive") } else { String::new() },
        if proofs.is_empty() {
            String::new()
        } else {
            format!("; {} incidents proven, {unproven} not proven", proofs.len() - unproven)
        },
        wall_ms as f64 / 1000.0
    ));
    out
}

/// Violations grouped by contract name, in name order.
fn by_contract(outcomes: &[Outcome]) -> Vec<(&'static str, Vec<(&Outcome, &ContractViolation)>)> {
    let mut groups: std::collections::BTreeMap<&'static str, Vec<(&Outcome, &ContractViolation)>> = Default::default();
    for o in outcomes {
        for v in &o.violations {
            groups.entry(v.contract).or_default().push((o, v));
        }
    }
    groups.into_iter().collect()
}

/// Passed, failed, not applicable, inconclusive.
fn counts(outcomes: &[Outcome]) -> (usize, usize, usize, usize) {
    let count = |f: fn(&Verdict) -> bool| outcomes.iter().filter(|o| f(&o.verdict)).count();
    (
        count(|v| matches!(v, Verdict::Passed)),
        count(|v| matches!(v, Verdict::Failed)),
        count(|v| matches!(v, Verdict::NotApplicable)),
        count(|v| matches!(v, Verdict::Inconclusive)),
    )
}

pub fn json(outcomes: &[Outcome], proofs: &[Proof], wall_ms: u128) -> serde_json::Value {
    let (passed, failed, na, inconclusive) = counts(outcomes);
    let incidents: Vec<serde_json::Value> = if proofs.is_empty() {
        outcomes
            .iter()
            .filter(|o| o.incident_verdict.is_some())
            .map(|o| {
                json!({
                    "id": o.incident,
                    "scenario": o.name,
                    "file": o.file,
                    "verdict": o.incident_verdict,
                    "variant": o.variant,
                    "reason": o.not_applicable,
                    "evidence": o.failure.as_ref().map(|f| json!({"step": f.step, "message": f.message, "target_output": o.target_output})),
                })
            })
            .collect()
    } else {
        proofs.iter().map(|p| serde_json::to_value(p).unwrap_or_default()).collect()
    };
    json!({
        "total": outcomes.len(),
        "passed": passed,
        "failed": failed,
        "not_applicable": na,
        "inconclusive": inconclusive,
        "wall_ms": wall_ms,
        "scenarios": outcomes,
        "incidents": incidents,
        "contracts": by_contract(outcomes)
            .into_iter()
            .map(|(name, hits)| json!({
                "contract": name,
                "statement": crate::contracts::contract(name).map(|c| c.statement),
                "violations": hits.iter().map(|(o, v)| json!({"scenario": o.name, "file": o.file, "step": v.step, "detail": v.detail, "evidence": v.evidence})).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>(),
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub(crate) fn junit(outcomes: &[Outcome], proofs: &[Proof], wall_ms: u128) -> String {
    let (_, failed, na, inconclusive) = counts(outcomes);
    let na = na + inconclusive;
    let unproven = proofs.iter().filter(|p| !p.proven).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites tests=\"{}\" failures=\"{}\" time=\"{:.3}\">\n",
        outcomes.len() + proofs.len(),
        failed + unproven,
        wall_ms as f64 / 1000.0
    ));
    x.push_str(&format!(
        "<testsuite name=\"scenarios\" tests=\"{}\" failures=\"{failed}\" skipped=\"{na}\">\n",
        outcomes.len()
    ));
    for o in outcomes {
        x.push_str(&format!(
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
            xml_escape(&o.file),
            xml_escape(&o.name),
            o.duration_ms as f64 / 1000.0
        ));
        match (&o.verdict, &o.failure) {
            (Verdict::Failed, Some(f)) => x.push_str(&format!(
                "<failure message=\"{}\">{}</failure>",
                xml_escape(&f.step),
                xml_escape(&f.message)
            )),
            (Verdict::Failed, None) => {
                let names: Vec<&str> = o.violations.iter().map(|v| v.contract).collect();
                let text: Vec<String> =
                    o.violations.iter().map(|v| format!("{} at {}: {}", v.contract, v.step, v.detail)).collect();
                x.push_str(&format!(
                    "<failure message=\"contracts broken: {}\">{}</failure>",
                    xml_escape(&names.join(", ")),
                    xml_escape(&text.join("\n"))
                ))
            }
            (Verdict::NotApplicable | Verdict::Inconclusive, _) => x.push_str(&format!(
                "<skipped message=\"{}\"/>",
                xml_escape(o.not_applicable.as_deref().or(o.inconclusive.as_deref()).unwrap_or(""))
            )),
            _ => {}
        }
        x.push_str("</testcase>\n");
    }
    x.push_str("</testsuite>\n");
    if !proofs.is_empty() {
        x.push_str(&format!(
            "<testsuite name=\"incident-proofs\" tests=\"{}\" failures=\"{unproven}\">\n",
            proofs.len()
        ));
        for p in proofs {
            x.push_str(&format!("  <testcase classname=\"incidents\" name=\"{}\">", xml_escape(&p.incident)));
            if let Some(problem) = &p.problem {
                x.push_str(&format!("<failure message=\"not proven\">{}</failure>", xml_escape(problem)));
            }
            x.push_str("</testcase>\n");
        }
        x.push_str("</testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}
