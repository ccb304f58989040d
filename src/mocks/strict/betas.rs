//! Each platform's accepted `anthropic-beta` flags: the mock's own data.
//!
//! Why a copy and not the gateway's beta table: a mock is an oracle. If it
//! read the gateway's policy, a wrong entry in that policy would change the
//! oracle with it and no scenario could notice (the mutation run showed this:
//! flipping the gateway's lookup survived every scenario). These lists were
//! taken once, by hand, from the flags each platform was documented to accept
//! in LiteLLM's `anthropic_beta_headers_config.json` of release 1.109.1
//! (`fixtures/litellm/`, MIT), and are now maintained here on their own: when
//! a platform starts accepting a flag, add it here *and* to the gateway's
//! policy, and the incident-5 scenarios check that the two agree.

use std::collections::BTreeSet;

use crate::mocks::MockKind;

const BEDROCK: &[&str] = &[
    "compact-2026-01-12",
    "computer-use-2025-01-24",
    "computer-use-2025-11-24",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "dangerous-tool-use-2026-09-03",
    "effort-2025-11-24",
    "fine-grained-tool-streaming-2025-05-14",
    "mid-conversation-output-config-2026-07-01",
    "mid-conversation-tool-changes-2026-07-01",
    "thinking-binding-controls-2026-08-01",
    "thinking-display-updates-2026-08-18",
    "tool-search-tool-2025-10-19",
];

const VERTEX_AI: &[&str] = &[
    "compact-2026-01-12",
    "computer-use-2025-01-24",
    "computer-use-2025-11-24",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "dangerous-tool-use-2026-09-03",
    "interleaved-thinking-2025-05-14",
    "mid-conversation-tool-changes-2026-07-01",
    "per-turn-control-2026-07-01",
    "thinking-binding-controls-2026-08-01",
    "thinking-display-updates-2026-08-18",
    "tool-search-tool-2025-10-19",
    "web-search-2025-03-05",
];

/// Flags Vertex AI accepts only in the `anthropic-beta` header, never in the
/// body's `anthropic_beta` list.
const VERTEX_AI_HEADER_ONLY: &[&str] = &["compact-2026-09-04", "inline-tools-2026-09-15"];

const AZURE_AI: &[&str] = &[
    "advanced-tool-use-2025-11-20",
    "code-execution-2025-08-25",
    "compact-2026-09-04",
    "computer-use-2025-01-24",
    "computer-use-2025-11-24",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "dangerous-tool-use-2026-09-03",
    "effort-2025-11-24",
    "files-api-2025-04-14",
    "interleaved-thinking-2025-05-14",
    "mcp-client-2025-04-04",
    "mcp-client-2025-11-20",
    "mid-conversation-tool-changes-2026-07-01",
    "per-turn-control-2026-07-01",
    "prompt-caching-scope-2026-01-05",
    "skills-2025-10-02",
    "structured-outputs-2025-11-13",
    "thinking-binding-controls-2026-08-01",
    "thinking-display-updates-2026-08-18",
    "web-fetch-2025-09-10",
    "web-search-2025-03-05",
];

/// Every flag the platform accepts in some placement, or `None` for a platform
/// that does not check flags (Anthropic itself ignores unknown ones).
pub fn accepted(kind: MockKind) -> Option<BTreeSet<String>> {
    let lists: &[&[&str]] = match kind {
        MockKind::Bedrock => &[BEDROCK],
        MockKind::VertexAi => &[VERTEX_AI, VERTEX_AI_HEADER_ONLY],
        MockKind::AzureAi => &[AZURE_AI],
        _ => return None,
    };
    Some(lists.iter().flat_map(|l| l.iter()).map(|s| s.to_string()).collect())
}

/// Flags the platform takes only as a header: in the body they are rejected.
pub(crate) fn header_only(kind: MockKind) -> &'static [&'static str] {
    match kind {
        MockKind::VertexAi => VERTEX_AI_HEADER_ONLY,
        _ => &[],
    }
}
