//! Anthropic's Messages API, direct and on Azure AI Foundry.

use std::collections::BTreeSet;

use super::super::errors;
use super::super::ids::IdGen;
use super::super::journal::RecordedRequest;
use super::super::route::Route;
use super::super::wire::Buffered;
use super::super::MockKind;
use super::claude_body::{self, Surface};
use super::{has, has_bearer, json_error_text, non_empty_header, parse_object, unknown_betas};

/// The text Anthropic's backend sends for beta flags it does not serve
/// (seen from Vertex and Foundry; Anthropic direct accepts unknown flags).
pub(crate) fn unexpected_betas_message(flags: &[String]) -> String {
    let list: Vec<String> = flags.iter().map(|f| format!("`{f}`")).collect();
    format!(
        "Unexpected value(s) {} for the `anthropic-beta` header. Please consult our documentation at docs.anthropic.com or try again without the header.",
        list.join(", ")
    )
}

pub(super) fn check(
    kind: MockKind,
    allow: Option<&BTreeSet<String>>,
    req: &RecordedRequest,
    route: &Route,
    ids: &IdGen,
) -> Option<Buffered> {
    let invalid = |message: &str| errors::anthropic(400, "invalid_request_error", message, &ids.anthropic_request_id());

    if kind == MockKind::AzureAi {
        // Foundry accepts its key as `x-api-key` or `api-key`, or an Entra ID
        // bearer token; its gateway rejects anything else before Claude sees it.
        if !non_empty_header(req, "x-api-key") && !non_empty_header(req, "api-key") && !has_bearer(req) {
            return Some(errors::azure(401, "401", errors::AZURE_ACCESS_DENIED));
        }
    } else if !non_empty_header(req, "x-api-key") {
        return Some(errors::anthropic(
            401,
            "authentication_error",
            "x-api-key header is required",
            &ids.anthropic_request_id(),
        ));
    }

    let required: &[&str] = match route {
        Route::Messages => &["model", "messages", "max_tokens"],
        Route::CountTokens => &["model", "messages"],
        _ => return None,
    };
    if !non_empty_header(req, "anthropic-version") {
        return Some(invalid("anthropic-version: header is required"));
    }
    if kind == MockKind::AzureAi {
        if let Some(allow) = allow {
            let unknown = unknown_betas(allow, req.beta_header_flags());
            if !unknown.is_empty() {
                return Some(invalid(&unexpected_betas_message(&unknown)));
            }
        }
    }
    let obj = match parse_object(req) {
        Ok(Some(obj)) => obj,
        Ok(None) => return Some(invalid("The request body is not valid JSON: expected an object")),
        Err(e) => {
            return Some(invalid(&format!("The request body is not valid JSON: {}", json_error_text(&req.body, &e))))
        }
    };
    // Anthropic reports the first problem only.
    for key in required {
        if !has(obj, key) {
            return Some(invalid(&format!("{key}: Field required")));
        }
    }
    let surface = if matches!(route, Route::CountTokens) { Surface::CountTokens } else { Surface::Messages };
    claude_body::problem(obj, surface, &req.beta_header_flags()).map(|p| invalid(&p))
}
