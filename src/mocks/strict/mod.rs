//! Strict profiles: for each kind, the checks the real provider makes before
//! it answers, and the exact error it returns when one fails. A `None`
//! means the request is acceptable.
//!
//! Checks run in the provider's order: authentication, then routing
//! (api-version), then headers, then the JSON body.

mod anthropic;
mod bedrock;
pub mod betas;
mod claude_body;
mod gemini;
mod openai;
mod openai_body;
mod pyrepr;
mod vertex;
mod vllm;

use std::collections::BTreeSet;

use super::ids::IdGen;
use super::journal::RecordedRequest;
use super::route::Route;
use super::wire::Buffered;
use super::{MockKind, MockOptions};

/// The rejection the provider would send, or `None` to let it through.
pub(crate) fn check(kind: MockKind, opts: &MockOptions, req: &RecordedRequest, ids: &IdGen) -> Option<Buffered> {
    if !opts.strict {
        return None;
    }
    let route = Route::classify(kind, req);
    match kind {
        MockKind::Openai | MockKind::Azure => openai::check(kind, req, &route),
        MockKind::HostedVllm => vllm::check(req, &route),
        MockKind::Anthropic | MockKind::AzureAi => {
            anthropic::check(kind, opts.beta_allowlist.as_ref(), req, &route, ids)
        }
        MockKind::Bedrock => bedrock::check(opts.beta_allowlist.as_ref(), req, &route, ids),
        MockKind::VertexAi => vertex::check(opts.beta_allowlist.as_ref(), req, &route, ids),
        MockKind::Gemini => gemini::check(req, &route),
    }
}

/// The body as a JSON object, or the `serde_json` error when it is not JSON.
/// `Ok(None)` when the body is JSON but not an object.
pub(crate) fn parse_object(
    req: &RecordedRequest,
) -> Result<Option<&serde_json::Map<String, serde_json::Value>>, serde_json::Error> {
    match &req.json {
        Some(v) => Ok(v.as_object()),
        None => match serde_json::from_slice::<serde_json::Value>(&req.body) {
            // Unreachable in practice: `json` is set whenever the body parses.
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        },
    }
}

/// Present and not `null`.
pub(crate) fn has(obj: &serde_json::Map<String, serde_json::Value>, key: &str) -> bool {
    obj.get(key).is_some_and(|v| !v.is_null())
}

/// Beta flags (from the `anthropic-beta` header and an optional body list)
/// that are not in the allowlist, in order, without repeats.
pub(crate) fn unknown_betas(allow: &BTreeSet<String>, flags: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in flags {
        if !allow.contains(&f) && !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// Items of a body `anthropic_beta` list (strings only).
pub(crate) fn body_betas(req: &RecordedRequest) -> Vec<String> {
    req.json_field("anthropic_beta")
        .and_then(|v| v.as_array())
        .map(|items| items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// `Bearer <token>` with a non-empty token.
pub(crate) fn has_bearer(req: &RecordedRequest) -> bool {
    req.header("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .is_some_and(|t| !t.trim().is_empty())
}

pub(crate) fn non_empty_header(req: &RecordedRequest, name: &str) -> bool {
    req.header(name).is_some_and(|v| !v.trim().is_empty())
}

/// Python's `json` wording for where a parse failed: `line L column C (char N)`.
pub(crate) fn json_error_text(body: &[u8], e: &serde_json::Error) -> String {
    let full = e.to_string();
    let what = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => full.as_str(),
    };
    let (line, column) = (e.line().max(1), e.column());
    let text = String::from_utf8_lossy(body);
    let line_start: usize = text.split('\n').take(line - 1).map(|l| l.chars().count() + 1).sum();
    let char_offset = line_start + column.saturating_sub(1);
    format!("{what}: line {line} column {column} (char {char_offset})")
}
