//! Claude on Anthropic's own API, and the Chat Completions ⇄ Messages
//! translation ([`translate`]) that every Claude platform shares.
//!
//! Anthropic takes the Messages body as the client wrote it, with the model
//! in the body, the key in `x-api-key`, the API version in
//! `anthropic-version` and beta flags in `anthropic-beta`.

pub mod translate;

pub use translate::*;

use super::{join_url, Call, Endpoint, EndpointError, EndpointInput, Operation, ProviderApi, UpstreamRequest};
use crate::gateway::beta::{BetaTarget, Placement};
use crate::gateway::error::ApiError;
use serde_json::Value;

/// Anthropic's API when a deployment sets no `api_base`.
pub(crate) const ANTHROPIC_BASE: &str = "https://api.anthropic.com";

/// The `anthropic-version` sent when the client sent none.
pub(crate) const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Anthropic's API.
pub struct Anthropic;

/// The Messages URL under a base URL: the base as given when it already
/// names the endpoint or the version, else `{base}/v1/messages`.
pub(super) fn messages_url(base: &str) -> String {
    if base.ends_with("/v1/messages") {
        base.to_string()
    } else if base.ends_with("/v1") {
        join_url(base, "messages")
    } else {
        join_url(base, "v1/messages")
    }
}

/// `"stream": true` for a stream, and no `stream` key otherwise (absent is
/// the API's default).
pub(super) fn set_stream(body: &mut super::body::Body<'_>, stream: bool) {
    if stream {
        body.set("stream", Value::Bool(true));
    } else {
        body.remove("stream");
    }
}

/// A Messages-API call on an endpoint that takes Anthropic's own request
/// (Anthropic, Azure AI): the model in the body, the version and the beta
/// flags in headers, `count_tokens` next to `messages`.
pub(super) fn messages_request(ep: &Endpoint, call: Call<'_>) -> Result<UpstreamRequest, ApiError> {
    let url = match call.op {
        Operation::Messages => ep.url.clone(),
        Operation::CountTokens => format!("{}/count_tokens", ep.url),
        Operation::OpenAi(_) => {
            return Err(ApiError::Internal(format!("{} is called in the Messages format here", ep.provider)))
        }
    };
    let mut body = call.body;
    body.set("model", Value::String(call.upstream_model.to_string()));
    set_stream(&mut body, call.stream);
    let mut req = UpstreamRequest::json(ep, url, &body)?;
    req.header("anthropic-version", call.anthropic_version.unwrap_or(ANTHROPIC_VERSION))?;
    if let Some(b) = crate::gateway::beta::header_value(call.betas) {
        req.header("anthropic-beta", &b)?;
    }
    Ok(req)
}

impl ProviderApi for Anthropic {
    fn endpoint(&self, input: &EndpointInput<'_>) -> Result<Endpoint, EndpointError> {
        let base = input.api_base().unwrap_or_else(|| ANTHROPIC_BASE.to_string());
        let mut ep = Endpoint::new(input.provider, base.clone());
        ep.url = messages_url(&base);
        match input.api_key() {
            Some(k) => ep.with_header("x-api-key", k, "api_key"),
            None => Ok(ep),
        }
    }

    fn request(&self, ep: &Endpoint, call: Call<'_>) -> Result<UpstreamRequest, ApiError> {
        messages_request(ep, call)
    }

    fn speaks_messages(&self, _upstream_model: &str) -> bool {
        true
    }

    fn serves(&self, op: Operation, _upstream_model: &str) -> bool {
        matches!(op, Operation::Messages | Operation::CountTokens)
    }

    fn betas(&self) -> Option<(BetaTarget, Placement)> {
        Some((BetaTarget::Anthropic, Placement::Header))
    }
}
