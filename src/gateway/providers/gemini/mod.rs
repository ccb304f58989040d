//! Gemini on Google AI Studio (`gemini/` models, the Generative Language
//! API): `POST {base}/v1beta/models/{model}:generateContent`, streamed as
//! `:streamGenerateContent?alt=sse`, the key in `x-goog-api-key`.
//!
//! Gemini speaks its own API, so this module stands behind OpenAI's Chat
//! Completions: the proxy hands it an OpenAI chat body, [`translate`] turns it
//! into a `GenerateContentRequest`, and its answers and streams come back in
//! OpenAI's form (`ProviderApi::openai_answer`, `openai_stream`). Anthropic
//! Messages clients reach it through the Messages ⇄ Chat bridge, as they
//! reach every other provider that does not speak Messages.

pub mod translate;

use super::{
    path_segment, AnswerContext, Call, Endpoint, EndpointError, EndpointInput, Operation, Provider, ProviderApi,
    StreamTranslator, UpstreamRequest,
};
use crate::gateway::error::ApiError;
use serde_json::Value;

/// Google AI Studio when a deployment sets no `api_base`.
pub(crate) const GEMINI_BASE: &str = "https://generativelanguage.googleapis.com";

/// The variable LiteLLM reads a Gemini key from when the deployment sets no
/// `api_key`.
pub(crate) const GEMINI_KEY_ENV: &str = "GEMINI_API_KEY";

/// Google's own name for the same key, which LiteLLM reads too: the
/// fallback when GEMINI_API_KEY is not set.
pub(crate) const GOOGLE_KEY_ENV: &str = "GOOGLE_API_KEY";

/// Whether a base URL ends in `/models/{name}`: the URL of one model.
fn names_a_model(base: &str) -> bool {
    base.rsplit_once("/models/").is_some_and(|(_, name)| !name.is_empty() && !name.contains(['/', '?', '#']))
}

/// Gemini (Google AI Studio).
pub struct Gemini;

impl ProviderApi for Gemini {
    fn endpoint(&self, input: &EndpointInput<'_>) -> Result<Endpoint, EndpointError> {
        let base = input.api_base().unwrap_or_else(|| GEMINI_BASE.to_string());
        let mut ep = Endpoint::new(input.provider, base.clone());
        // The API's root (`https://generativelanguage.googleapis.com`, a
        // proxy's prefix) gets `/v1beta/models/`; LiteLLM's readings of
        // `api_base` are taken too, so its configs work as written: a root
        // that ends in the API version (`…/v1beta`, LiteLLM from 1.96) gets
        // `/models/`, and one that already names a model's URL
        // (`…/models/gemini-2.5-flash`, earlier LiteLLM) is used as it is,
        // the method appended. `request` tells that one apart by the
        // missing trailing slash.
        let version = matches!(base.rsplit('/').next(), Some("v1" | "v1beta" | "v1alpha")) && base.contains("://");
        ep.url = if names_a_model(&base) {
            base.clone()
        } else if version {
            format!("{base}/models/")
        } else {
            format!("{base}/v1beta/models/")
        };
        // The key goes in a header, never in the URL (`?key=` is what
        // Google's samples show, and URLs are logged).
        let key = input
            .api_key()
            .or_else(|| [GEMINI_KEY_ENV, GOOGLE_KEY_ENV].iter().find_map(|v| (input.env)(v).filter(|k| !k.is_empty())));
        match key {
            Some(k) => ep.with_header("x-goog-api-key", k, "api_key"),
            None => Ok(ep),
        }
    }

    fn request(&self, ep: &Endpoint, call: Call<'_>) -> Result<UpstreamRequest, ApiError> {
        if call.op != Operation::OpenAi("chat/completions") {
            return Err(ApiError::BadRequest(format!("{} serves chat completions only", Provider::Gemini)));
        }
        // One path segment, whatever the name holds: a model name can never
        // reach another method (`../files`, `x:countTokens`) of the API.
        let model = path_segment(call.upstream_model)?;
        let at = if ep.url.ends_with('/') { format!("{}{model}", ep.url) } else { ep.url.clone() };
        let url =
            if call.stream { format!("{at}:streamGenerateContent?alt=sse") } else { format!("{at}:generateContent") };
        let body = translate::chat_to_gemini(&Value::Object(call.body.into_map()))
            .map_err(|e| ApiError::BadRequest(format!("gemini: {e}")))?;
        UpstreamRequest::json(ep, url, &body)
    }

    fn serves(&self, op: Operation, _upstream_model: &str) -> bool {
        op == Operation::OpenAi("chat/completions")
    }

    fn supported_params(
        &self,
        _provider: Provider,
        endpoint: super::params::Endpoint,
        _upstream_model: &str,
    ) -> Vec<&'static str> {
        super::params::gemini(endpoint)
    }

    fn translates_openai_answer(&self, _op: Operation) -> bool {
        true
    }

    fn openai_answer(&self, _op: Operation, answer: Value, cx: &AnswerContext<'_>) -> Result<Value, ApiError> {
        translate::gemini_to_chat(&answer, cx).map_err(|e| ApiError::BadGateway(format!("gemini: {e}")))
    }

    fn openai_stream(&self, _op: Operation, cx: &AnswerContext<'_>) -> Option<Box<dyn StreamTranslator>> {
        Some(Box::new(translate::ChunkTranslator::new(cx)))
    }
}
