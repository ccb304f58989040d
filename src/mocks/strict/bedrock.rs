//! Bedrock runtime with Claude: InvokeModel with Anthropic bodies, and
//! Converse (`converse.rs`). AWS checks the SigV4 shape (not the signature:
//! the mock has no secret) on every path; for InvokeModel Bedrock validates
//! the body against the model's JSON schema, then Claude rejects beta flags
//! it does not serve (incident 5).

mod converse;

use std::collections::BTreeSet;

use super::super::errors;
use super::super::ids::IdGen;
use super::super::journal::RecordedRequest;
use super::super::route::Route;
use super::super::wire::Buffered;
use super::claude_body::{self, Surface};
use super::{body_betas, parse_object, unknown_betas};

pub(crate) const BEDROCK_VERSION: &str = "bedrock-2023-05-31";
pub(crate) const INVALID_BETA: &str = "The model returned the following errors: invalid beta flag";
const MALFORMED: &str = "Malformed input request, please reformat your input and try again.";
const REQUIRED: &[&str] = &["anthropic_version", "max_tokens", "messages"];
/// Keys Bedrock's Claude schema refuses; the model and streaming are chosen by the URL.
const EXTRANEOUS: &[&str] = &["model", "stream"];

pub(super) fn check(
    allow: Option<&BTreeSet<String>>,
    req: &RecordedRequest,
    route: &Route,
    ids: &IdGen,
) -> Option<Buffered> {
    if let Err((exception, message)) = sigv4_shape(req) {
        return Some(errors::bedrock(403, exception, &message, ids));
    }
    match route {
        Route::BedrockInvoke { .. } => {}
        Route::BedrockConverse { .. } => return converse::check(allow, req, ids),
        _ => return None,
    }
    let validation = |message: &str| errors::bedrock(400, "ValidationException", message, ids);
    let obj = match parse_object(req) {
        Ok(Some(obj)) => obj,
        Ok(None) | Err(_) => return Some(validation(MALFORMED)),
    };
    let mut violations = Vec::new();
    for key in REQUIRED {
        if !obj.contains_key(*key) {
            violations.push(format!("#: required key [{key}] not found"));
        }
    }
    for key in EXTRANEOUS.iter().copied().chain(claude_body::unknown_members(obj, Surface::Bedrock)) {
        if obj.contains_key(key) {
            violations.push(format!("#: extraneous key [{key}] is not permitted"));
        }
    }
    if let Some(v) = obj.get("anthropic_version") {
        if v.as_str() != Some(BEDROCK_VERSION) {
            violations.push(format!("#/anthropic_version: {} is not a valid enum value", short(v)));
        }
    }
    if let Some(v) = obj.get("anthropic_beta") {
        let all_strings = v.as_array().is_some_and(|items| items.iter().all(|i| i.is_string()));
        if !all_strings {
            violations.push(format!("#/anthropic_beta: expected type: JSONArray, found: {}", json_type(v)));
        }
    }
    if !violations.is_empty() {
        return Some(validation(&format!(
            "Malformed input request: {}, please reformat your input and try again.",
            violations.concat()
        )));
    }
    if let Some(allow) = allow {
        let flags = body_betas(req).into_iter().chain(req.beta_header_flags());
        if !unknown_betas(allow, flags).is_empty() {
            return Some(validation(INVALID_BETA));
        }
    }
    // Past Bedrock's schema, Claude checks the body as it does everywhere.
    let betas: Vec<String> = body_betas(req).into_iter().chain(req.beta_header_flags()).collect();
    claude_body::problem(obj, Surface::Bedrock, &betas).map(|p| validation(&p))
}

fn short(v: &serde_json::Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "Null",
        serde_json::Value::Bool(_) => "Boolean",
        serde_json::Value::Number(_) => "Number",
        serde_json::Value::String(_) => "String",
        serde_json::Value::Array(_) => "JSONArray",
        serde_json::Value::Object(_) => "JSONObject",
    }
}

/// `AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/bedrock/aws4_request,
/// SignedHeaders=host;x-amz-date, Signature=<64 hex>` plus `x-amz-date`.
/// Errors are (exception type, AWS message). Messages never echo the
/// header, which carries the access key id.
fn sigv4_shape(req: &RecordedRequest) -> Result<(), (&'static str, String)> {
    let Some(auth) = req.header("authorization") else {
        return Err(("MissingAuthenticationTokenException", "Missing Authentication Token".into()));
    };
    let incomplete = "IncompleteSignatureException";
    let params = auth.strip_prefix("AWS4-HMAC-SHA256").map(str::trim_start);
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in params.unwrap_or_default().split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for (name, value) in [("Credential", credential), ("Signature", signature), ("SignedHeaders", signed_headers)] {
        if blank(value) {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    let amz_date = req.header("x-amz-date").filter(|d| !d.is_empty());
    if amz_date.is_none() && req.header("date").is_none() {
        missing.push("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into());
    }
    if params.is_none() || !missing.is_empty() {
        if missing.is_empty() {
            missing.push("Authorization header requires 'Credential' parameter.".into());
        }
        return Err((incomplete, missing.join(" ")));
    }
    let Some(amz_date) = amz_date else {
        return Err((
            incomplete,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into(),
        ));
    };
    if !is_basic_iso8601(amz_date) {
        return Err((
            incomplete,
            "Date must be in ISO-8601 'basic format'. See http://en.wikipedia.org/wiki/ISO_8601".into(),
        ));
    }
    let scope: Vec<&str> = credential.unwrap_or_default().split('/').collect();
    if scope.len() != 5 {
        return Err((
            incomplete,
            format!("Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got {} elements.", scope.len()),
        ));
    }
    if scope[3] != "bedrock" {
        return Err((
            "InvalidSignatureException",
            "Credential should be scoped to correct service: 'bedrock'. ".into(),
        ));
    }
    if scope[4] != "aws4_request" {
        return Err((
            "InvalidSignatureException",
            format!("Credential should be scoped with a valid terminator: 'aws4_request', not '{}'. ", scope[4]),
        ));
    }
    if amz_date.get(..8) != Some(scope[1]) {
        return Err((
            "InvalidSignatureException",
            format!("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'", scope[1], &amz_date[..8]),
        ));
    }
    let headers: Vec<&str> = signed_headers.unwrap_or_default().split(';').collect();
    let sig = signature.unwrap_or_default();
    let sig_ok = sig.len() == 64 && sig.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !headers.contains(&"host") || !sig_ok {
        return Err((
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into(),
        ));
    }
    Ok(())
}

/// `YYYYMMDD'T'HHMMSS'Z'`.
fn is_basic_iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..15].iter().all(u8::is_ascii_digit)
}

fn blank(v: Option<&str>) -> bool {
    v.is_none_or(str::is_empty)
}
