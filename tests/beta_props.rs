//! Properties of the anthropic-beta policy (incident: Claude Code's beta flags
//! forwarded to Bedrock/Vertex/Azure, which answer HTTP 400 "invalid beta flag").
//!
//! Whatever a client sends, a non-Anthropic provider must only ever see flags
//! from its allowlist, de-duplicated and sorted, and no header at all when
//! nothing is left.

use std::collections::BTreeSet;

use postmortem::gateway::beta::{header_value, BetaPolicy, BetaTarget, FilteredBetas, Placement};
use proptest::prelude::*;

fn policy() -> BetaPolicy {
    BetaPolicy::bundled()
}

/// The header placement, as Anthropic, Azure AI and Vertex AI take the flags.
fn filter(p: &BetaPolicy, target: BetaTarget, values: &[&str]) -> FilteredBetas {
    p.filter_for(target, Placement::Header, values)
}

/// The provider-side flags `target` accepts in `placement`, read from the
/// policy file as plain JSON (the oracle does not go through the code it
/// checks): every non-null value of the target's column and, for the header,
/// of its `_header_only` column.
fn allowlist_for(target: BetaTarget, placement: Placement) -> BTreeSet<String> {
    let file: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/litellm/anthropic_beta_headers_config.json"))
            .expect("the bundled policy is JSON");
    let mut columns = vec![target.as_config_key().to_string()];
    if placement == Placement::Header {
        columns.push(format!("{}_header_only", target.as_config_key()));
    }
    columns
        .iter()
        .filter_map(|c| file.get(c).and_then(serde_json::Value::as_object))
        .flat_map(|c| c.values().filter_map(|v| v.as_str().map(String::from)))
        .collect()
}

fn allowlist(target: BetaTarget) -> BTreeSet<String> {
    allowlist_for(target, Placement::Header)
}

/// Every flag any column of the bundled policy knows, plus provider-side names.
fn known_flags() -> Vec<String> {
    let mut all = BTreeSet::new();
    for t in BetaTarget::ALL {
        all.extend(allowlist(t));
    }
    // Incoming names that some column maps to null or renames.
    all.extend(
        [
            "advanced-tool-use-2025-11-20",
            "mcp-servers-2025-12-04",
            "bash_20250124",
            "text_editor_20241022",
            "structured-output-2024-03-01",
            "oauth-2025-04-20",
            "prompt-caching-scope-2026-01-05",
            "claude-code-20250219",
            "tool-examples-2025-10-29",
        ]
        .map(String::from),
    );
    all.into_iter().collect()
}

/// One flag: known, unknown, or junk.
fn flag() -> impl Strategy<Value = String> {
    let known = known_flags();
    prop_oneof![
        4 => proptest::sample::select(known),
        2 => "[a-z]{1,8}-[0-9]{4}-[0-9]{2}-[0-9]{2}",
        1 => "[ -~]{0,12}",
        1 => Just(String::new()),
    ]
}

/// A raw header value: flags joined by commas with odd spacing.
fn header_text() -> impl Strategy<Value = String> {
    prop::collection::vec((flag(), "[ \t]{0,2}", "[ \t]{0,2}", prop::bool::ANY), 0..8).prop_map(|items| {
        let mut s = String::new();
        for (i, (f, pre, post, double_comma)) in items.into_iter().enumerate() {
            if i > 0 {
                s.push(',');
                if double_comma {
                    s.push(',');
                }
            }
            s.push_str(&pre);
            s.push_str(&f);
            s.push_str(&post);
        }
        s
    })
}

fn non_anthropic() -> impl Strategy<Value = BetaTarget> {
    proptest::sample::select(BetaTarget::ALL.into_iter().filter(|t| *t != BetaTarget::Anthropic).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn non_anthropic_targets_only_see_allowlisted_flags(
        values in prop::collection::vec(header_text(), 0..4),
        target in non_anthropic(),
        body in prop::bool::ANY,
    ) {
        let p = policy();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let placement = if body { Placement::Body } else { Placement::Header };
        let out = p.filter_for(target, placement, &refs);
        let allow = allowlist_for(target, placement);

        for k in &out.kept {
            prop_assert!(allow.contains(k), "{k} reached {target} but is not allowed");
        }
        // Sorted and without duplicates.
        prop_assert!(out.kept.windows(2).all(|w| w[0] < w[1]), "{:?}", out.kept);
        prop_assert!(out.dropped.windows(2).all(|w| w[0] < w[1]), "{:?}", out.dropped);
        // Header present iff something is kept, and it is exactly the kept list.
        match header_value(&out.kept) {
            None => prop_assert!(out.kept.is_empty()),
            Some(h) => {
                prop_assert!(!h.is_empty());
                prop_assert_eq!(h.split(',').collect::<Vec<_>>(), out.kept.clone());
                prop_assert!(!h.contains(' '));
            }
        }
        // Every incoming flag is accounted for: kept (possibly renamed) or dropped.
        let incoming: BTreeSet<&str> =
            refs.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|f| !f.is_empty()).collect();
        for f in &incoming {
            let d = out.dropped.iter().any(|x| x == f);
            let single = p.filter_for(target, placement, &[f]);
            prop_assert!(d || !single.kept.is_empty(), "{f} neither kept nor dropped");
        }
    }

    #[test]
    fn filtering_is_idempotent_and_order_insensitive(
        values in prop::collection::vec(header_text(), 0..4),
        target in non_anthropic(),
    ) {
        let p = policy();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let once = filter(&p, target, &refs);
        let mut rev = refs.clone();
        rev.reverse();
        prop_assert_eq!(&filter(&p, target, &rev).kept, &once.kept);
        // Filtering the provider's own allowlist keeps it (only renames that
        // are themselves allowlisted, e.g. tool-search-tool on bedrock).
        if let Some(h) = header_value(&once.kept) {
            let again = filter(&p, target, &[h.as_str()]);
            for k in &again.kept {
                prop_assert!(allowlist(target).contains(k));
            }
        }
    }

    #[test]
    fn anthropic_forwards_unknown_tokens(
        name in "[a-z]{3,10}-20[3-9][0-9]-[0-9]{2}-[0-9]{2}",
    ) {
        let p = policy();
        let out = filter(&p, BetaTarget::Anthropic, &[&format!(" {name} ,,{name}")]);
        prop_assert_eq!(out.kept, vec![name]);
    }
}

#[test]
fn bedrock_example_from_the_incident() {
    let out = filter(
        &policy(),
        BetaTarget::Bedrock,
        &["advanced-tool-use-2025-11-20,computer-use-2025-01-24,unknown-header"],
    );
    assert_eq!(header_value(&out.kept).as_deref(), Some("computer-use-2025-01-24,tool-search-tool-2025-10-19"));
    // advanced-tool-use is renamed for Bedrock, not dropped.
    assert_eq!(out.dropped, vec!["unknown-header".to_string()]);
}

#[test]
fn bedrock_converse_example_from_litellm_docs() {
    let out = filter(
        &policy(),
        BetaTarget::BedrockConverse,
        &["advanced-tool-use-2025-11-20,computer-use-2025-01-24,unknown-header"],
    );
    assert_eq!(header_value(&out.kept).as_deref(), Some("computer-use-2025-01-24"));
}

#[test]
fn claude_code_typical_header_per_target() {
    // A header shaped like Claude Code's: several values, spacing, a duplicate.
    let values = [
        "claude-code-20250219, oauth-2025-04-20,interleaved-thinking-2025-05-14",
        "fine-grained-tool-streaming-2025-05-14 ,prompt-caching-scope-2026-01-05,,oauth-2025-04-20",
    ];
    let p = policy();
    let h = |t| header_value(&filter(&p, t, &values).kept);
    assert_eq!(
        h(BetaTarget::Anthropic).as_deref(),
        Some(
            "claude-code-20250219,fine-grained-tool-streaming-2025-05-14,\
             interleaved-thinking-2025-05-14,oauth-2025-04-20,prompt-caching-scope-2026-01-05"
        )
    );
    assert_eq!(h(BetaTarget::Bedrock).as_deref(), Some("fine-grained-tool-streaming-2025-05-14"));
    assert_eq!(h(BetaTarget::BedrockConverse).as_deref(), Some("fine-grained-tool-streaming-2025-05-14"));
    assert_eq!(h(BetaTarget::VertexAi).as_deref(), Some("interleaved-thinking-2025-05-14"));
    assert_eq!(
        h(BetaTarget::AzureAi).as_deref(),
        Some("interleaved-thinking-2025-05-14,prompt-caching-scope-2026-01-05")
    );
    assert_eq!(
        h(BetaTarget::Databricks).as_deref(),
        Some("fine-grained-tool-streaming-2025-05-14,interleaved-thinking-2025-05-14")
    );
}

#[test]
fn only_unsupported_flags_remove_the_header() {
    let p = policy();
    for t in BetaTarget::ALL {
        let out = filter(&p, t, &["mcp-servers-2025-12-04, bash_20250124 ,,"]);
        assert_eq!(header_value(&out.kept), None, "{t}");
        assert_eq!(out.kept, Vec::<String>::new());
    }
}
