//! The OpenAI wire format: OpenAI itself, vLLM (`hosted_vllm`), the
//! OpenAI-compatible providers LiteLLM knows by prefix ([`Compat`](super::Compat)), and
//! Azure OpenAI, which speaks the same bodies under its own URL layout
//! (`/openai/deployments/{deployment}/{path}?api-version=…`) and `api-key`
//! header.
//!
//! Request shaping is small: the upstream model name goes into the body
//! (Azure takes it from the URL instead); everything else was decided by
//! `params` before the call reaches here.

use super::{
    path_segment, Call, Endpoint, EndpointError, EndpointInput, Operation, Provider, ProviderApi, UpstreamRequest,
};
use crate::gateway::error::ApiError;
use serde_json::Value;

/// OpenAI's own base URL.
pub(crate) const OPENAI_BASE: &str = "https://api.openai.com/v1";

/// Azure OpenAI's `api-version` when the deployment sets none (the latest GA
/// version this gateway is tested against).
pub(crate) const AZURE_API_VERSION: &str = "2024-10-21";

/// openai, hosted_vllm and the [`Compat`](super::Compat) family: `Bearer`
/// auth, the path joined to the base URL.
pub(crate) struct OpenAiCompat;

impl ProviderApi for OpenAiCompat {
    fn endpoint(&self, input: &EndpointInput<'_>) -> Result<Endpoint, EndpointError> {
        let (base, key) = match input.provider {
            Provider::Openai => (input.api_base().unwrap_or_else(|| OPENAI_BASE.to_string()), input.api_key()),
            Provider::Compat(c) => {
                let base = match (input.api_base(), c.default_base()) {
                    (Some(b), _) => b,
                    (None, Some(d)) => d.to_string(),
                    (None, None) => input.require_api_base()?,
                };
                // LiteLLM reads each provider's key from its own variable.
                let key =
                    input.api_key().or_else(|| c.key_env().and_then(|n| (input.env)(n)).filter(|k| !k.is_empty()));
                (base, key)
            }
            _ => (input.require_api_base()?, input.api_key()),
        };
        let ep = Endpoint::new(input.provider, base);
        match key {
            Some(k) => ep.with_header("authorization", format!("Bearer {k}"), "api_key"),
            None => Ok(ep),
        }
    }

    fn supported_params(
        &self,
        provider: Provider,
        endpoint: super::params::Endpoint,
        _upstream_model: &str,
    ) -> Vec<&'static str> {
        match provider {
            Provider::HostedVllm => super::params::vllm(endpoint),
            _ => super::params::standard(endpoint, false),
        }
    }

    fn request(&self, ep: &Endpoint, call: Call<'_>) -> Result<UpstreamRequest, ApiError> {
        let Operation::OpenAi(path) = call.op else {
            return Err(ApiError::Internal(format!("{} speaks only the OpenAI wire format", ep.provider)));
        };
        let mut body = call.body;
        body.set("model", Value::String(call.upstream_model.to_string()));
        UpstreamRequest::json(ep, super::join_url(&ep.url, path), &body)
    }

    fn retrieve_response(&self, ep: &Endpoint, id: &str) -> Option<UpstreamRequest> {
        let id = path_segment(id).ok()?;
        Some(UpstreamRequest::get(ep, super::join_url(&ep.url, &format!("responses/{id}"))))
    }
}

/// Azure OpenAI.
pub(crate) struct Azure;

impl ProviderApi for Azure {
    fn endpoint(&self, input: &EndpointInput<'_>) -> Result<Endpoint, EndpointError> {
        let base = input.require_api_base()?;
        let version = input.params.api_version.clone().filter(|v| !v.is_empty());
        let version = version.unwrap_or_else(|| AZURE_API_VERSION.to_string());
        let mut ep = Endpoint::new(Provider::Azure, base.clone());
        ep.url = format!("{base}/openai/deployments/");
        ep.suffix = format!("?api-version={}", super::percent_encode(&version));
        match input.api_key() {
            Some(k) => ep.with_header("api-key", k, "api_key"),
            None => Ok(ep),
        }
    }

    fn request(&self, ep: &Endpoint, call: Call<'_>) -> Result<UpstreamRequest, ApiError> {
        let Operation::OpenAi(path) = call.op else {
            return Err(ApiError::Internal("azure speaks only the OpenAI wire format".into()));
        };
        let mut body = call.body;
        if path == "responses" {
            // Azure serves the Responses API once per resource, not per
            // deployment (`/openai/v1/responses`, its v1 API, which takes no
            // api-version); the deployment is named by `model`.
            body.set("model", Value::String(call.upstream_model.to_string()));
            return UpstreamRequest::json(ep, format!("{}/openai/v1/responses", ep.base), &body);
        }
        let deployment = path_segment(call.upstream_model)?;
        let url = format!("{}{deployment}/{path}{}", ep.url, ep.suffix);
        body.remove("model");
        UpstreamRequest::json(ep, url, &body)
    }

    fn retrieve_response(&self, ep: &Endpoint, id: &str) -> Option<UpstreamRequest> {
        let id = path_segment(id).ok()?;
        Some(UpstreamRequest::get(ep, format!("{}/openai/v1/responses/{id}", ep.base)))
    }
}
