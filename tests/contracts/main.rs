//! Proof that each contract can fail: recorded-style exchanges that break
//! one contract each are fed to the checker, which must name exactly that
//! contract; a clean twin of each must pass. One file per contract family;
//! the last test requires every contract the checker knows to have a
//! violating case here.

mod accounting;
mod common;
mod errors;
mod fidelity;
mod gemini;
mod proofs;
mod resources;
mod responses;
mod schema;
mod security;
mod streaming;

use common::Case;
use postmortem::contracts::{check, CONTRACTS};

fn all_cases() -> Vec<Case> {
    [
        schema::cases(),
        streaming::cases(),
        fidelity::cases(),
        gemini::cases(),
        errors::cases(),
        security::cases(),
        responses::cases(),
        responses::passthrough_cases(),
        responses::bridged_cases(),
        resources::cases(),
        accounting::cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[test]
fn each_case_reports_exactly_its_contract() {
    let mut failures = Vec::new();
    for case in all_cases() {
        let found = check(&case.exchange, &case.setup);
        let names: Vec<&str> = found.iter().map(|v| v.contract).collect();
        let ok = match case.expect {
            None => names.is_empty(),
            Some(want) => names.contains(&want) && names.iter().all(|n| *n == want || case.also.contains(n)),
        };
        if !ok {
            failures.push(format!("{}: expected {:?}, got {:#?}", case.name, case.expect, found));
        }
    }
    assert!(failures.is_empty(), "{} case(s) wrong:\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn every_contract_has_a_violating_case() {
    let cases = all_cases();
    let missing: Vec<&str> = CONTRACTS
        .iter()
        .map(|c| c.name)
        // Checked outside single exchanges, each by its own test below.
        .filter(|name| {
            ![
                "security.no-secret-in-output",
                "resources.abandoned-upstream-closed",
                "stream.incremental",
                // Spans exchanges: responses::handles_* feed it sequences.
                "fidelity.response-handle",
            ]
            .contains(name)
        })
        .filter(|name| !cases.iter().any(|c| c.expect == Some(*name)))
        .collect();
    assert!(missing.is_empty(), "contracts without a violating case: {missing:?}");
}

#[test]
fn secrets_in_the_gateway_output_are_reported() {
    let setup = common::setup();
    let clean = vec!["listening on 127.0.0.1:4000".to_string()];
    assert!(postmortem::contracts::check_output(&clean, &setup).is_empty());
    let leaked = vec!["ok".to_string(), format!("calling upstream with key {}", common::OPENAI_KEY)];
    let found = postmortem::contracts::check_output(&leaked, &setup);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].contract, "security.no-secret-in-output");
    assert!(found[0].detail.contains("line 2") && !found[0].detail.contains(common::OPENAI_KEY), "{}", found[0].detail);
}

#[test]
fn contract_names_are_unique_and_stated() {
    let mut names: Vec<&str> = CONTRACTS.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), CONTRACTS.len());
    for c in CONTRACTS {
        assert!(c.name.contains('.') && !c.statement.is_empty(), "{}", c.name);
    }
}

#[test]
fn an_abandoned_stream_left_open_upstream_is_reported() {
    use postmortem::mocks::AnswerEnd;
    let mut call =
        common::to_openai(common::chat_body(), common::answer(200, "text/event-stream", b"data: {}\n\n".to_vec()));
    let waited = postmortem::contracts::ABANDON_BOUND;
    call.answer.end = AnswerEnd::InProgress;
    let v = postmortem::contracts::check_abandoned(&call, waited).expect("a stream still open is a violation");
    assert_eq!(v.contract, "resources.abandoned-upstream-closed");
    for closed in [AnswerEnd::PeerClosed, AnswerEnd::Complete] {
        call.answer.end = closed;
        assert_eq!(postmortem::contracts::check_abandoned(&call, waited), None, "{closed:?}");
    }
}

#[test]
fn a_stream_held_back_is_reported() {
    let v = postmortem::contracts::check_incremental(1, 3).expect("fewer events than sent is a violation");
    assert_eq!(v.contract, "stream.incremental");
    assert_eq!(postmortem::contracts::check_incremental(3, 3), None);
    assert_eq!(postmortem::contracts::check_incremental(5, 3), None);
}

#[test]
fn a_refused_request_sent_three_times_is_one_violation() {
    // Reports count exchanges: the repeats of one refused request are one
    // retry defect, not one per repeat.
    let case = errors::cases().into_iter().find(|c| c.name == "a 400 retried").expect("the case exists");
    let found = check(&case.exchange, &case.setup);
    let retried: Vec<_> = found.iter().filter(|v| v.contract == "errors.client-error-not-retried").collect();
    assert_eq!(retried.len(), 1, "{found:#?}");
    assert!(retried[0].detail.contains("2 more time(s)"), "{:?}", retried[0].detail);
}
