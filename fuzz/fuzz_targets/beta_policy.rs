//! LiteLLM's beta-flag policy file and incoming `anthropic-beta` values: a
//! policy or an error; filtering never panics and never keeps a malformed flag.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postmortem::gateway::beta::{BetaPolicy, BetaTarget, Placement};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (policy_text, header) = text.split_once('\u{0}').unwrap_or((text, text));
    let policy = BetaPolicy::from_json(policy_text, "fuzz").unwrap_or_else(|_| BetaPolicy::bundled());
    for t in BetaTarget::ALL {
        for placement in [Placement::Header, Placement::Body] {
            let out = policy.filter_for(t, placement, &[header]);
            for flag in &out.kept {
                assert!(!flag.contains(',') && !flag.trim().is_empty(), "kept a malformed flag {flag:?}");
            }
        }
    }
});
