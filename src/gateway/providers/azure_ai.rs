//! Azure AI Foundry: many model families behind one resource. Claude models
//! speak Anthropic's Messages API under `{base}/anthropic/v1/messages` (with
//! `count_tokens` next to it); the others speak OpenAI's wire format at the
//! base URL with a `Bearer` key.

use super::anthropic::{messages_request, messages_url};
use super::{join_url, Call, Endpoint, EndpointError, EndpointInput, Operation, ProviderApi, UpstreamRequest};
use crate::gateway::beta::{BetaTarget, Placement};
use crate::gateway::error::ApiError;
use serde_json::Value;

/// Azure AI.
pub struct AzureAi;

impl ProviderApi for AzureAi {
    fn endpoint(&self, input: &EndpointInput<'_>) -> Result<Endpoint, EndpointError> {
        let base = input.require_api_base()?;
        let mut ep = Endpoint::new(input.provider, base.clone());
        ep.url = if base.ends_with("/v1/messages") || base.ends_with("/v1") || base.ends_with("/anthropic") {
            messages_url(&base)
        } else {
            join_url(&base, "anthropic/v1/messages")
        };
        match input.api_key() {
            Some(k) => ep.with_header("x-api-key", k, "api_key"),
            None => Ok(ep),
        }
    }

    fn request(&self, ep: &Endpoint, call: Call<'_>) -> Result<UpstreamRequest, ApiError> {
        let Operation::OpenAi(path) = call.op else { return messages_request(ep, call) };
        // The OpenAI-wire families take the same key as a bearer token.
        let mut body = call.body;
        body.set("model", Value::String(call.upstream_model.to_string()));
        let mut req = UpstreamRequest::json(ep, join_url(&ep.base, path), &body)?;
        req.headers.retain(|(k, _)| k.as_str() != "x-api-key");
        if let Some((_, key)) = ep.headers.iter().find(|(k, _)| k.as_str() == "x-api-key") {
            let mut bearer = axum::http::HeaderValue::from_bytes(&[b"Bearer ".as_slice(), key.as_bytes()].concat())
                .map_err(|_| ApiError::Internal("api_key is not a valid header value".into()))?;
            bearer.set_sensitive(true);
            req.headers.push((axum::http::header::AUTHORIZATION, bearer));
        }
        Ok(req)
    }

    fn speaks_messages(&self, upstream_model: &str) -> bool {
        upstream_model.to_ascii_lowercase().contains("claude")
    }

    fn serves(&self, op: Operation, upstream_model: &str) -> bool {
        match op {
            Operation::OpenAi(_) => !self.speaks_messages(upstream_model),
            Operation::Messages | Operation::CountTokens => self.speaks_messages(upstream_model),
        }
    }

    fn betas(&self) -> Option<(BetaTarget, Placement)> {
        Some((BetaTarget::AzureAi, Placement::Header))
    }
}
