//! `anthropic-beta` filtering for a realistic Claude Code request, per
//! target: what the proxy does for every Anthropic-family request
//! (`proxy::call::betas_for` -> `BetaPolicy::filter_for`).
//!
//! The header has 10 flags over two header lines, as Claude Code sends
//! them: known ones the targets treat differently, one the policy maps to
//! another name on some targets, and two the policy has never heard of
//! (Anthropic keeps those, every other target drops them). Placement
//! follows the proxy: the body for Bedrock InvokeModel, the header
//! elsewhere.
//!
//! Run: `cargo bench --bench beta_filter -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use postmortem::gateway::beta::{BetaPolicy, BetaTarget, Placement};

/// Two `anthropic-beta` header lines, 10 flags in all.
const HEADER_LINES: [&str; 2] = [
    "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
    "context-management-2025-06-27, prompt-caching-scope-2026-01-05,effort-2025-11-24,advanced-tool-use-2025-11-20,\
     unreleased-feature-2026-12-01,internal-eval-2027-01-01",
];

fn placement(target: BetaTarget) -> Placement {
    if target == BetaTarget::Bedrock {
        Placement::Body
    } else {
        Placement::Header
    }
}

fn beta_filter(c: &mut Criterion) {
    let policy = BetaPolicy::bundled();
    let flags = postmortem::gateway::beta::split_flags(&HEADER_LINES).count();
    assert_eq!(flags, 10, "the header must carry 10 flags");
    let anthropic = policy.filter_for(BetaTarget::Anthropic, Placement::Header, &HEADER_LINES);
    assert!(anthropic.kept.iter().any(|f| f == "unreleased-feature-2026-12-01"), "unknown flags reach Anthropic");

    let mut group = c.benchmark_group("beta_filter");
    for target in BetaTarget::ALL {
        let out = policy.filter_for(target, placement(target), &HEADER_LINES);
        eprintln!("{target}: keeps {}, drops {}", out.kept.len(), out.dropped.len());
        group.bench_with_input(BenchmarkId::from_parameter(target), &target, |b, &target| {
            b.iter(|| policy.filter_for(target, placement(target), black_box(&HEADER_LINES)))
        });
    }
    group.finish();
}

criterion_group!(benches, beta_filter);
criterion_main!(benches);
