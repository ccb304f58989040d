//! Proof through our own gateway: each known-bad switch puts back a
//! regression real gateways shipped, and the conformance suite must report
//! the contract it breaks (and pass without it).

use postmortem::gateway::KnownBugs;
use postmortem::scenario::{run_scenario, RunOptions, Scenario};
use std::path::Path;

const PROOFS: &[(&str, &str, &str)] = &[
    ("retry_client_errors", "errors-and-retries.yaml", "errors.client-error-not-retried"),
    ("drop_upstream_retry_after", "errors-and-retries.yaml", "errors.retry-after"),
    ("estimate_prompt_tokens", "openai-family.yaml", "fidelity.usage"),
    ("done_after_broken_stream", "broken-upstreams.yaml", "stream.no-false-completion"),
    ("loosen_forced_tool_choice", "anthropic-family.yaml", "fidelity.request"),
    ("estimate_count_tokens", "anthropic-family.yaml", "fidelity.usage"),
    ("unpinned_response_handles", "responses-conversations.yaml", "fidelity.response-handle"),
    ("cache_reads_at_input_rate", "accounting.yaml", "accounting.response-cost"),
];

#[tokio::test]
async fn each_known_bad_switch_is_caught_by_its_contract() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failures = Vec::new();
    for (bug, file, contract) in PROOFS {
        let path = root.join("scenarios/conformance").join(file);
        let scenario = Scenario::load(&path).expect("scenario loads");
        let mut opts = RunOptions::in_process(root.to_path_buf());
        let fixed = run_scenario(&scenario, &path, &opts).await;
        if !fixed.passed() {
            failures.push(format!("{file} fails without `{bug}`: {:?} {:?}", fixed.failure, fixed.violations));
        }
        opts.bugs = KnownBugs::default().with(bug).expect("a known bug");
        let broken = run_scenario(&scenario, &path, &opts).await;
        let names: Vec<&str> = broken.violations.iter().map(|v| v.contract).collect();
        if !names.contains(contract) {
            failures.push(format!(
                "{file} with `{bug}`: expected {contract}, got {names:?} (failure: {:?})",
                broken.failure
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
