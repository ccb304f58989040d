//! Claude on Vertex AI. Google's front end checks the OAuth token (Google
//! error envelope); the Claude backend checks the body and the beta header
//! (Anthropic error envelope with a `req_vrtx_` request id).

use std::collections::BTreeSet;

use super::super::errors;
use super::super::ids::IdGen;
use super::super::journal::RecordedRequest;
use super::super::route::Route;
use super::super::wire::Buffered;
use super::super::MockKind;
use super::anthropic::unexpected_betas_message;
use super::claude_body::{self, Surface};
use super::{body_betas, has, has_bearer, json_error_text, parse_object, unknown_betas};

pub(crate) const VERTEX_VERSION: &str = "vertex-2023-10-16";

const UNAUTHENTICATED: &str = "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";

pub(super) fn check(
    allow: Option<&BTreeSet<String>>,
    req: &RecordedRequest,
    route: &Route,
    ids: &IdGen,
) -> Option<Buffered> {
    let invalid = |message: &str| errors::anthropic(400, "invalid_request_error", message, &ids.vertex_request_id());

    if !has_bearer(req) {
        return Some(errors::google(401, UNAUTHENTICATED, "UNAUTHENTICATED"));
    }
    let predict = match route {
        Route::VertexPredict { .. } => true,
        Route::VertexCountTokens => false,
        _ => return None,
    };
    if let Some(allow) = allow {
        // A header-only flag in the body is as unknown as an invented one.
        let header_only = super::betas::header_only(MockKind::VertexAi);
        let in_body = body_betas(req);
        let misplaced = in_body.iter().filter(|f| header_only.contains(&f.as_str())).cloned();
        let mut unknown = unknown_betas(allow, req.beta_header_flags().into_iter().chain(in_body.iter().cloned()));
        let extra: Vec<String> = misplaced.filter(|f| !unknown.contains(f)).collect();
        unknown.extend(extra);
        if !unknown.is_empty() {
            return Some(invalid(&unexpected_betas_message(&unknown)));
        }
    }
    let obj = match parse_object(req) {
        Ok(Some(obj)) => obj,
        Ok(None) => return Some(invalid("The request body is not valid JSON: expected an object")),
        Err(e) => {
            return Some(invalid(&format!("The request body is not valid JSON: {}", json_error_text(&req.body, &e))))
        }
    };
    if predict {
        match obj.get("anthropic_version") {
            None | Some(serde_json::Value::Null) => return Some(invalid("anthropic_version: Field required")),
            Some(v) if v.as_str() != Some(VERTEX_VERSION) => {
                return Some(invalid(&format!("anthropic_version: Input should be '{VERTEX_VERSION}'")))
            }
            Some(_) => {}
        }
        // The model is in the URL; Vertex refuses it in the body.
        if obj.contains_key("model") {
            return Some(invalid("model: Extra inputs are not permitted"));
        }
        for key in ["messages", "max_tokens"] {
            if !has(obj, key) {
                return Some(invalid(&format!("{key}: Field required")));
            }
        }
    } else {
        for key in ["model", "messages"] {
            if !has(obj, key) {
                return Some(invalid(&format!("{key}: Field required")));
            }
        }
    }
    let surface = if predict { Surface::Vertex } else { Surface::VertexCount };
    let betas: Vec<String> = req.beta_header_flags().into_iter().chain(body_betas(req)).collect();
    claude_body::problem(obj, surface, &betas).map(|p| invalid(&p))
}
