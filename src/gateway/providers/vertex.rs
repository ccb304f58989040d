//! Claude on Google Vertex AI (`rawPredict` / `streamRawPredict`).
//!
//! The Messages body goes out without `model` (it is in the URL) and with
//! `anthropic_version: "vertex-2023-10-16"` in the body; the project and
//! location are in the URL; the credential is a bearer token: an access
//! token minted from the deployment's Google credentials (`google_auth`), or
//! one the config gives as `api_key`.

use super::google_auth::TokenSource;
use super::{path_segment, Call, Endpoint, EndpointError, EndpointInput, Operation, ProviderApi, UpstreamRequest};
use crate::gateway::beta::{BetaTarget, Placement};
use crate::gateway::error::ApiError;
use serde_json::json;

/// The `anthropic_version` Vertex AI requires in the body.
pub(crate) const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// Where a deployment with no `vertex_location` is served (LiteLLM's default
/// for Claude).
pub(crate) const DEFAULT_LOCATION: &str = "us-east5";

/// Vertex AI.
pub struct VertexAi;

impl ProviderApi for VertexAi {
    fn endpoint(&self, input: &EndpointInput<'_>) -> Result<Endpoint, EndpointError> {
        let p = input.params;
        let project = p.vertex_project.as_deref().filter(|s| !s.is_empty());
        let project = project.ok_or_else(|| EndpointError::MissingVertexProject { model: p.model.clone() })?;
        let location = p.vertex_location.as_deref().filter(|s| !s.is_empty()).unwrap_or(DEFAULT_LOCATION);
        let (project, location) = (path_segment(project)?, path_segment(location)?);
        let base = input.api_base().unwrap_or_else(|| format!("https://{location}-aiplatform.googleapis.com"));
        let mut ep = Endpoint::new(input.provider, base.clone());
        ep.url = format!("{base}/v1/projects/{project}/locations/{location}/publishers/anthropic/models/");
        // Google credentials as LiteLLM takes them: `vertex_credentials` (the
        // JSON or a file's path), else the file GOOGLE_APPLICATION_CREDENTIALS
        // names; or an access token of the user's own as `api_key`.
        let credentials = p.vertex_credentials.clone().filter(|c| !c.trim().is_empty()).or_else(|| {
            if input.api_key().is_some() {
                None
            } else {
                (input.env)("GOOGLE_APPLICATION_CREDENTIALS")
            }
        });
        if let Some(c) = credentials {
            ep.google = Some(std::sync::Arc::new(TokenSource::from_config(&c)?));
            return Ok(ep);
        }
        match input.api_key() {
            Some(k) => ep.with_header("authorization", format!("Bearer {k}"), "api_key"),
            None => Ok(ep),
        }
    }

    fn request(&self, ep: &Endpoint, call: Call<'_>) -> Result<UpstreamRequest, ApiError> {
        if call.op != Operation::Messages {
            return Err(ApiError::Internal("vertex_ai is called with Messages only".into()));
        }
        let model = path_segment(call.upstream_model)?;
        let verb = if call.stream { "streamRawPredict" } else { "rawPredict" };
        let mut body = call.body;
        body.remove("model");
        body.set("anthropic_version", json!(VERTEX_ANTHROPIC_VERSION));
        super::anthropic::set_stream(&mut body, call.stream);
        let mut req = UpstreamRequest::json(ep, format!("{}{model}:{verb}", ep.url), &body)?;
        if let Some(b) = crate::gateway::beta::header_value(call.betas) {
            req.header("anthropic-beta", &b)?;
        }
        Ok(req)
    }

    fn speaks_messages(&self, _upstream_model: &str) -> bool {
        true
    }

    fn betas(&self) -> Option<(BetaTarget, Placement)> {
        Some((BetaTarget::VertexAi, Placement::Header))
    }
}
