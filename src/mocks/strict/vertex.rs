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

    if matches!(route, Route::GoogleToken) {
        return google_token(req);
    }
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

/// Google's OAuth 2.0 token endpoint: a form-encoded body with either a
/// refresh token (`authorized_user` credentials: `client_id`,
/// `client_secret`, `refresh_token`) or a signed JWT (service accounts:
/// `urn:ietf:params:oauth:grant-type:jwt-bearer` and a three-part
/// `assertion`, verified against the account the mock knows,
/// `google_account.rs`). Errors in RFC 6749's shape, as Google sends them.
/// A refresh token is not checked against anything (Google's user
/// accounts are not modelled), only its presence.
fn google_token(req: &RecordedRequest) -> Option<Buffered> {
    let oauth = |error: &str, description: &str| {
        Buffered::json(400, &serde_json::json!({"error": error, "error_description": description}))
    };
    let form_type = req.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Some(oauth("invalid_request", "Invalid Content-Type: expected application/x-www-form-urlencoded"));
    }
    let form = form_fields(&req.body);
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    match field("grant_type") {
        None => Some(oauth("unsupported_grant_type", "Invalid grant_type: ")),
        Some("refresh_token") => {
            for k in ["client_id", "client_secret", "refresh_token"] {
                if field(k).is_none() {
                    return Some(oauth("invalid_request", &format!("Missing required parameter: {k}")));
                }
            }
            None
        }
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            match super::super::google_account::assertion_problem(field("assertion").unwrap_or_default()) {
                None => None,
                Some("invalid_client") => Some(Buffered::json(
                    401,
                    &serde_json::json!({"error": "invalid_client", "error_description": "The OAuth client was not found."}),
                )),
                Some(why) => Some(oauth("invalid_grant", why)),
            }
        }
        Some(other) => Some(oauth("unsupported_grant_type", &format!("Invalid grant_type: {other}"))),
    }
}

/// `application/x-www-form-urlencoded` pairs, decoded (`+` is a space).
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    let decode = |s: &str| super::super::journal::percent_decode(&s.replace('+', " "));
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}
