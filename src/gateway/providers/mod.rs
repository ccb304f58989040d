//! Upstream providers: one module each, behind one trait ([`ProviderApi`]).
//!
//! A provider module owns everything specific to its service: where a
//! deployment's calls go and with which credentials (resolved once, when the
//! config is loaded, into an [`Endpoint`]), how a call's URL, headers and
//! body are shaped, what media type its streams have and how its
//! Anthropic-family events are decoded. The proxy never matches on a
//! provider: it asks the registry ([`api`]) for the module.
//!
//! - `openai_compat`: openai, hosted_vllm and the OpenAI-compatible family
//!   ([`Compat`]: groq, together_ai, mistral, ollama, …), and azure (its own
//!   URL layout and `api-key` header).
//! - [`anthropic`]: Anthropic's API, and the Chat Completions ⇄ Messages
//!   translation every Claude platform shares.
//! - [`bedrock`], [`vertex`], [`azure_ai`]: Claude on AWS, Google and Azure.
//! - [`gemini`]: Gemini on Google AI Studio, its own API behind OpenAI's Chat
//!   Completions (`ProviderApi::openai_answer`, `openai_stream`).
//! - [`params`]: which OpenAI parameters each provider accepts;
//!   `messages_bridge`: `/v1/messages` clients on OpenAI-wire deployments.
//!
//! Adding a provider: see ARCHITECTURE.md, "Adding a provider".

pub mod anthropic;
pub mod azure_ai;
pub mod bedrock;
pub mod body;
pub mod gemini;
pub(crate) mod google_auth;
pub(crate) mod messages_bridge;
pub(crate) mod openai_compat;
pub mod params;
pub mod vertex;

use crate::gateway::beta::{BetaTarget, Placement};
use crate::gateway::error::ApiError;
use axum::http::{HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::Value;
use std::time::SystemTime;

/// The providers this gateway can call. Parsed from the `provider/` prefix of
/// a deployment's `litellm_params.model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Openai,
    Azure,
    HostedVllm,
    Anthropic,
    Bedrock,
    VertexAi,
    AzureAi,
    /// Gemini on Google AI Studio (the Generative Language API).
    Gemini,
    /// A provider LiteLLM knows by prefix that speaks OpenAI's API at its own
    /// base URL with its own key variable.
    Compat(Compat),
}

/// The OpenAI-compatible providers: prefix, default base URL (none where
/// the user must say), and the environment variable LiteLLM reads the key from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Compat {
    Groq,
    TogetherAi,
    FireworksAi,
    Deepseek,
    Mistral,
    Openrouter,
    Xai,
    Perplexity,
    Ollama,
    OllamaChat,
    LmStudio,
    Cerebras,
    NvidiaNim,
    OpenaiCompatible,
    CustomOpenai,
}

/// `(variant, prefix, default base URL, key variable)`: one row a provider.
const COMPAT: &[(Compat, &str, Option<&str>, Option<&str>)] = &[
    (Compat::Groq, "groq", Some("https://api.groq.com/openai/v1"), Some("GROQ_API_KEY")),
    (Compat::TogetherAi, "together_ai", Some("https://api.together.xyz/v1"), Some("TOGETHERAI_API_KEY")),
    (Compat::FireworksAi, "fireworks_ai", Some("https://api.fireworks.ai/inference/v1"), Some("FIREWORKS_AI_API_KEY")),
    (Compat::Deepseek, "deepseek", Some("https://api.deepseek.com/v1"), Some("DEEPSEEK_API_KEY")),
    (Compat::Mistral, "mistral", Some("https://api.mistral.ai/v1"), Some("MISTRAL_API_KEY")),
    (Compat::Openrouter, "openrouter", Some("https://openrouter.ai/api/v1"), Some("OPENROUTER_API_KEY")),
    (Compat::Xai, "xai", Some("https://api.x.ai/v1"), Some("XAI_API_KEY")),
    (Compat::Perplexity, "perplexity", Some("https://api.perplexity.ai"), Some("PERPLEXITYAI_API_KEY")),
    (Compat::Ollama, "ollama", Some("http://localhost:11434/v1"), None),
    (Compat::OllamaChat, "ollama_chat", Some("http://localhost:11434/v1"), None),
    (Compat::LmStudio, "lm_studio", Some("http://localhost:1234/v1"), Some("LM_STUDIO_API_KEY")),
    (Compat::Cerebras, "cerebras", Some("https://api.cerebras.ai/v1"), Some("CEREBRAS_API_KEY")),
    (Compat::NvidiaNim, "nvidia_nim", Some("https://integrate.api.nvidia.com/v1"), Some("NVIDIA_NIM_API_KEY")),
    (Compat::OpenaiCompatible, "openai_compatible", None, None),
    (Compat::CustomOpenai, "custom_openai", None, None),
];

impl Compat {
    fn row(self) -> &'static (Compat, &'static str, Option<&'static str>, Option<&'static str>) {
        // Every variant has a row (checked by a test); the first row is a
        // harmless stand-in that keeps this total.
        COMPAT.iter().find(|r| r.0 == self).unwrap_or(&COMPAT[0])
    }

    pub fn prefix(self) -> &'static str {
        self.row().1
    }

    /// Where requests go when the deployment sets no `api_base`.
    pub(crate) fn default_base(self) -> Option<&'static str> {
        self.row().2
    }

    /// The environment variable the key comes from when the deployment sets
    /// no `api_key`.
    pub(crate) fn key_env(self) -> Option<&'static str> {
        self.row().3
    }
}

impl Provider {
    pub const ALL: [Provider; 8] = [
        Provider::Openai,
        Provider::Azure,
        Provider::HostedVllm,
        Provider::Anthropic,
        Provider::Bedrock,
        Provider::VertexAi,
        Provider::AzureAi,
        Provider::Gemini,
    ];

    pub fn parse(prefix: &str) -> Option<Provider> {
        if let Some(r) = COMPAT.iter().find(|r| r.1 == prefix) {
            return Some(Provider::Compat(r.0));
        }
        Some(match prefix {
            "openai" => Provider::Openai,
            "azure" => Provider::Azure,
            "hosted_vllm" => Provider::HostedVllm,
            "anthropic" => Provider::Anthropic,
            "bedrock" => Provider::Bedrock,
            "vertex_ai" => Provider::VertexAi,
            "azure_ai" => Provider::AzureAi,
            "gemini" => Provider::Gemini,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Azure => "azure",
            Provider::HostedVllm => "hosted_vllm",
            Provider::Anthropic => "anthropic",
            Provider::Bedrock => "bedrock",
            Provider::VertexAi => "vertex_ai",
            Provider::AzureAi => "azure_ai",
            Provider::Gemini => "gemini",
            Provider::Compat(c) => c.prefix(),
        }
    }

    /// Every provider, the OpenAI-compatible family included.
    pub fn every() -> Vec<Provider> {
        Provider::ALL.iter().copied().chain(COMPAT.iter().map(|r| Provider::Compat(r.0))).collect()
    }

    /// Every prefix this gateway knows, for messages.
    pub fn known_prefixes() -> Vec<&'static str> {
        Provider::ALL.iter().map(|p| p.as_str()).chain(COMPAT.iter().map(|r| r.1)).collect()
    }

    /// The provider a cost-map `litellm_provider` value names, for a bare
    /// model name. Vertex AI and Bedrock entries count only where this
    /// gateway speaks the model's API there (Claude).
    pub(crate) fn from_litellm_provider(litellm_provider: &str, model: &str) -> Option<Provider> {
        match litellm_provider {
            "openai" => Some(Provider::Openai),
            "azure" => Some(Provider::Azure),
            "anthropic" => Some(Provider::Anthropic),
            "bedrock" if model.contains("anthropic.") => Some(Provider::Bedrock),
            "vertex_ai-anthropic_models" => Some(Provider::VertexAi),
            "azure_ai" => Some(Provider::AzureAi),
            "gemini" => Some(Provider::Gemini),
            other => Provider::parse(other).filter(|p| matches!(p, Provider::Compat(_))),
        }
    }

    /// Whether chat requests go out in Anthropic's Messages format (the
    /// provider module says).
    pub(crate) fn speaks_messages(self, upstream_model: &str) -> bool {
        api(self).speaks_messages(upstream_model)
    }

    /// The module that calls this provider.
    pub fn api(self) -> &'static dyn ProviderApi {
        api(self)
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// ------------------------------------------------------------ the trait

/// Why a deployment's endpoint cannot be resolved at config load: the
/// deployment is loaded as unavailable with this as the reason. Each names
/// the setting (never a credential's value).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EndpointError {
    /// A provider without a default base URL and none configured.
    #[error("`{model}` needs `litellm_params.api_base`")]
    MissingApiBase { model: String },
    /// Vertex AI without `vertex_project`.
    #[error("`{model}` (vertex_ai) needs `vertex_project`")]
    MissingVertexProject { model: String },
    /// A credential (`setting`) an HTTP header cannot carry.
    #[error("{setting} contains characters an HTTP header cannot carry")]
    NotAHeader { setting: &'static str },
    /// A name that goes into the URL as one path segment.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// Bedrock's credentials or region.
    #[error(transparent)]
    Bedrock(#[from] bedrock::BedrockError),
    /// Vertex AI's Google credentials (`vertex_credentials`).
    #[error(transparent)]
    Google(#[from] google_auth::CredentialsError),
}

/// A name that cannot be one URL path segment.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{name}` is not a valid model name")]
pub struct SegmentError {
    pub name: String,
}

impl From<SegmentError> for ApiError {
    fn from(e: SegmentError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

/// The registry: the module for each provider. Adding a provider adds one
/// line here (and its module, its strict mock and its conformance steps).
pub fn api(p: Provider) -> &'static dyn ProviderApi {
    match p {
        Provider::Openai | Provider::HostedVllm | Provider::Compat(_) => &openai_compat::OpenAiCompat,
        Provider::Azure => &openai_compat::Azure,
        Provider::Anthropic => &anthropic::Anthropic,
        Provider::Bedrock => &bedrock::Bedrock,
        Provider::VertexAi => &vertex::VertexAi,
        Provider::AzureAi => &azure_ai::AzureAi,
        Provider::Gemini => &gemini::Gemini,
    }
}

/// What a deployment's endpoint is resolved from, once, at config load.
pub struct EndpointInput<'a> {
    pub provider: Provider,
    pub params: &'a crate::gateway::config::LitellmParams,
    /// The deployment's view of the environment (`Config::env_var`: the
    /// config's `environment_variables` over the process environment).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl EndpointInput<'_> {
    /// `api_base` without its trailing slash, if set.
    pub fn api_base(&self) -> Option<String> {
        self.params.api_base.as_deref().map(|b| b.trim_end_matches('/').to_string()).filter(|b| !b.is_empty())
    }

    /// `api_base`, or an error naming the deployment's model.
    pub(crate) fn require_api_base(&self) -> Result<String, EndpointError> {
        self.api_base().ok_or_else(|| EndpointError::MissingApiBase { model: self.params.model.clone() })
    }

    /// The configured `api_key`, if not empty.
    pub fn api_key(&self) -> Option<String> {
        self.params.api_key.clone().filter(|k| !k.is_empty())
    }
}

/// Where and how one deployment is called, resolved once when the config is
/// loaded (URLs, regions, credentials, api versions), never per request.
/// `Debug` does not print credentials.
#[derive(Clone)]
pub struct Endpoint {
    pub provider: Provider,
    /// What every call's URL starts with; the provider module knows what
    /// follows (a path, a model segment and a verb…).
    pub url: String,
    /// Appended after the rest of the URL (Azure's `?api-version=…`).
    pub suffix: String,
    /// Sent with every call: the credential header, marked sensitive.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Request signing (Bedrock's SigV4), when the credential is not a header.
    pub signing: Option<bedrock::Signing>,
    /// Google credentials (Vertex AI's `vertex_credentials`): each call
    /// carries an access token from this source.
    pub google: Option<std::sync::Arc<google_auth::TokenSource>>,
    /// The base URL the client cache keys its pools by.
    pub base: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("provider", &self.provider)
            .field("url", &self.url)
            .field("suffix", &self.suffix)
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("signing", &self.signing.as_ref().map(|s| &s.region))
            .field("google", &self.google)
            .finish()
    }
}

impl Endpoint {
    /// An endpoint whose calls start at `url` (also the pool's base).
    pub fn new(provider: Provider, url: String) -> Self {
        Endpoint {
            provider,
            base: url.clone(),
            url,
            suffix: String::new(),
            headers: Vec::new(),
            signing: None,
            google: None,
        }
    }

    /// Adds a header every call carries; a credential is marked sensitive
    /// (never logged by the HTTP stack). A value that is not a valid header
    /// is a configuration error.
    pub(crate) fn with_header(
        mut self,
        name: &'static str,
        value: String,
        what: &'static str,
    ) -> Result<Self, EndpointError> {
        let mut v = HeaderValue::from_str(&value).map_err(|_| EndpointError::NotAHeader { setting: what })?;
        v.set_sensitive(true);
        self.headers.push((HeaderName::from_static(name), v));
        Ok(self)
    }
}

/// What one upstream call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// An OpenAI-wire call to `path` (`chat/completions`, `embeddings`,
    /// `completions`, `responses`).
    OpenAi(&'static str),
    /// Anthropic Messages (create).
    Messages,
    /// Anthropic's `messages/count_tokens`.
    CountTokens,
}

/// One upstream call, as the proxy hands it to a provider module.
pub struct Call<'a> {
    pub op: Operation,
    /// The model name upstream (wildcard substituted).
    pub upstream_model: &'a str,
    /// The body in the operation's wire format (OpenAI or Messages); the
    /// module adds, moves or removes what its service wants (the model, the
    /// stream flag, its API version). A view over the client's body where no
    /// translation came before ([`body::Body`]).
    pub body: body::Body<'a>,
    pub stream: bool,
    /// `anthropic-beta` flags already filtered for this provider.
    pub betas: &'a [String],
    /// The client's `anthropic-version`, passed on where the service takes one.
    pub anthropic_version: Option<&'a str>,
    /// The injectable clock's wall time (request signing).
    pub now: SystemTime,
}

/// An upstream HTTP request, ready to send (always a POST).
pub struct UpstreamRequest {
    /// POST for every call but a read of a stored resource.
    pub method: http::Method,
    pub url: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
}

impl UpstreamRequest {
    /// A JSON request to `url` with the endpoint's headers.
    pub fn json(ep: &Endpoint, url: String, body: &impl serde::Serialize) -> Result<Self, ApiError> {
        let body = serde_json::to_vec(body).map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut headers = Vec::with_capacity(ep.headers.len() + 3);
        headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
        headers.extend(ep.headers.iter().cloned());
        Ok(UpstreamRequest { method: http::Method::POST, url, headers, body })
    }

    /// A GET of `url` with the endpoint's headers (a stored resource).
    pub fn get(ep: &Endpoint, url: String) -> Self {
        UpstreamRequest { method: http::Method::GET, url, headers: ep.headers.clone(), body: Vec::new() }
    }

    pub fn header(&mut self, name: &'static str, value: &str) -> Result<(), ApiError> {
        let v = HeaderValue::from_str(value)
            .map_err(|_| ApiError::BadRequest(format!("`{name}` contains characters an HTTP header cannot carry")))?;
        self.headers.push((HeaderName::from_static(name), v));
        Ok(())
    }
}

/// Decodes an Anthropic-family provider's stream body into Anthropic events
/// `(type, data)`: SSE for most, AWS event-stream frames for Bedrock.
pub trait EventDecoder: Send {
    /// Appends the events `chunk` completes to `out`; on an error, the
    /// events decoded before it are in `out` (the client gets them first).
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<(String, Value)>) -> Result<(), ApiError>;

    /// At the end of the body: an error still pending (a failure in the
    /// last frame), or a body that stopped inside a frame.
    fn finish(&mut self) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Anthropic events carried as SSE (Anthropic, Vertex AI, Azure AI).
#[derive(Default)]
pub(crate) struct SseEvents(crate::gateway::sse::SseParser);

impl EventDecoder for SseEvents {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<(String, Value)>) -> Result<(), ApiError> {
        let events = self.0.feed(chunk).map_err(|e| ApiError::BadGateway(format!("upstream stream: {e}")))?;
        for ev in events {
            if ev.data.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&ev.data)
                .map_err(|e| ApiError::BadGateway(format!("anthropic: stream event is not JSON: {e}")))?;
            let ty = ev.event.or_else(|| v.get("type").and_then(Value::as_str).map(str::to_string)).unwrap_or_default();
            out.push((ty, v));
        }
        Ok(())
    }
}

/// What translating an answer into OpenAI's form needs from the call.
pub struct AnswerContext<'a> {
    /// The model name upstream (the answer's `model` when it names none).
    pub upstream_model: &'a str,
    /// The gateway clock's wall time, in seconds (`created`).
    pub created: u64,
    /// The request asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Turns a provider's own stream format into Chat Completions SSE, for a
/// provider that speaks its own API behind OpenAI's (Gemini).
pub trait StreamTranslator: Send {
    /// Appends the OpenAI events (`data: {chunk}` and a blank line) that
    /// `chunk` completes to `out`; on an error (a failure the provider
    /// reported, a malformed event), what came before it is in `out`.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError>;

    /// At the end of the body: the closing events (the usage chunk when
    /// asked, `data: [DONE]`), or an error when the provider's stream ended
    /// before its answer was complete (never a clean end then).
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError>;

    /// The usage the provider reported so far, as OpenAI's usage object,
    /// whether or not the client asked for the usage chunk: the stream is
    /// charged from it.
    fn usage(&self) -> Option<Value>;
}

/// One provider's module: everything the proxy needs to call it.
pub trait ProviderApi: Send + Sync {
    /// Resolves a deployment's endpoint once, at config load. `Err` says why
    /// the deployment cannot serve (it is loaded as unavailable with that
    /// reason).
    fn endpoint(&self, input: &EndpointInput<'_>) -> Result<Endpoint, EndpointError>;

    /// Shapes one call: URL, headers, body.
    fn request(&self, ep: &Endpoint, call: Call<'_>) -> Result<UpstreamRequest, ApiError>;

    /// Shapes the read of a Response this provider stored
    /// (`GET /v1/responses/{id}`); `None` where it stores none.
    fn retrieve_response(&self, _ep: &Endpoint, _id: &str) -> Option<UpstreamRequest> {
        None
    }

    /// Whether chat requests to `upstream_model` go out in Anthropic's
    /// Messages format rather than OpenAI's.
    fn speaks_messages(&self, _upstream_model: &str) -> bool {
        false
    }

    /// Whether this provider serves `op` for `upstream_model` (an entry
    /// point it lacks is a clear 400, never a guess).
    fn serves(&self, op: Operation, upstream_model: &str) -> bool {
        match op {
            Operation::OpenAi(_) => !self.speaks_messages(upstream_model),
            Operation::Messages => self.speaks_messages(upstream_model),
            Operation::CountTokens => false,
        }
    }

    /// The media type of its streams.
    fn stream_media_type(&self) -> &'static str {
        "text/event-stream"
    }

    /// Its column in the beta policy and where the flags go, if it takes
    /// `anthropic-beta` flags at all.
    fn betas(&self) -> Option<(BetaTarget, Placement)> {
        None
    }

    /// The decoder for its Anthropic-family streams.
    fn events(&self) -> Box<dyn EventDecoder> {
        Box::new(SseEvents::default())
    }

    /// The OpenAI request parameters it accepts on `endpoint` (the others
    /// are refused, or dropped with `drop_params`): OpenAI's own, or what the
    /// Messages translation carries, unless the module knows better.
    fn supported_params(
        &self,
        _provider: Provider,
        endpoint: params::Endpoint,
        upstream_model: &str,
    ) -> Vec<&'static str> {
        params::standard(endpoint, self.speaks_messages(upstream_model))
    }

    /// Its buffered answer to an OpenAI-wire call (`op`), as OpenAI's
    /// answer: as sent by a provider that speaks OpenAI's API; translated by
    /// one that speaks its own behind it.
    fn openai_answer(&self, _op: Operation, answer: Value, _cx: &AnswerContext<'_>) -> Result<Value, ApiError> {
        Ok(answer)
    }

    /// Whether [`ProviderApi::openai_answer`] changes the answer: a provider
    /// that overrides it says so here, and the proxy then parses the answer
    /// into a tree for it; otherwise the answer's bytes reach the client as
    /// sent, read only for what pricing needs. (A test holds the two in step
    /// for every provider.)
    fn translates_openai_answer(&self, _op: Operation) -> bool {
        false
    }

    /// For a provider that speaks its own stream format behind OpenAI's: a
    /// translator of its stream into Chat Completions SSE. `None` (OpenAI's
    /// own wire): the stream is passed through as sent.
    fn openai_stream(&self, _op: Operation, _cx: &AnswerContext<'_>) -> Option<Box<dyn StreamTranslator>> {
        None
    }
}

/// Joins a base URL and a path without doubling or dropping slashes.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

/// A model or deployment name as one URL path segment: every byte but RFC
/// 3986's unreserved characters percent-encoded, so a name can never add
/// segments, a query or a fragment to the upstream URL. `.` and `..` are
/// refused: URL parsers treat them as dot segments even when encoded.
pub(crate) fn path_segment(name: &str) -> Result<String, SegmentError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(SegmentError { name: name.to_string() });
    }
    Ok(percent_encode(name))
}

/// Every byte but RFC 3986's unreserved characters percent-encoded: the
/// result can add no segment, query parameter or fragment to a URL.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod endpoint_tests {
    //! Each module's endpoint (resolved once) and the calls it shapes on it.
    use super::*;
    use crate::gateway::config::LitellmParams;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    fn params(yaml: &str) -> LitellmParams {
        serde_yaml_ng::from_str(yaml).expect("params parse")
    }

    fn endpoint(provider: Provider, yaml: &str, env: &[(&str, &str)]) -> Result<Endpoint, EndpointError> {
        let p = params(yaml);
        let env = |n: &str| env.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string());
        api(provider).endpoint(&EndpointInput { provider, params: &p, env: &env })
    }

    fn call<'a>(op: Operation, model: &'a str, stream: bool, betas: &'a [String]) -> Call<'a> {
        let body = json!({"model": "client-name", "messages": [], "max_tokens": 5});
        Call {
            op,
            upstream_model: model,
            body: body::Body::owned(body.as_object().cloned().unwrap_or_default()),
            stream,
            betas,
            anthropic_version: None,
            now: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }

    fn header<'a>(r: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(k, _)| k.as_str() == name).and_then(|(_, v)| v.to_str().ok())
    }

    fn body(r: &UpstreamRequest) -> Value {
        serde_json::from_slice(&r.body).expect("json body")
    }

    #[test]
    fn openai_wire_providers_put_the_model_in_the_body_and_the_key_in_a_bearer_header() {
        let ep = endpoint(Provider::Openai, "model: openai/gpt-4o\napi_key: sk-cfg", &[]).unwrap();
        let r = api(Provider::Openai)
            .request(&ep, call(Operation::OpenAi("chat/completions"), "gpt-4o", false, &[]))
            .unwrap();
        assert_eq!(r.url, "https://api.openai.com/v1/chat/completions");
        assert_eq!(header(&r, "authorization"), Some("Bearer sk-cfg"));
        assert_eq!(body(&r)["model"], "gpt-4o");
        assert!(r.headers.iter().find(|(k, _)| k == "authorization").is_some_and(|(_, v)| v.is_sensitive()));

        // An OpenAI-compatible provider: its default base, its key variable.
        let groq = Provider::Compat(Compat::Groq);
        let ep = endpoint(groq, "model: groq/llama3", &[("GROQ_API_KEY", "gsk-env")]).unwrap();
        let r = api(groq).request(&ep, call(Operation::OpenAi("embeddings"), "llama3", false, &[])).unwrap();
        assert_eq!(r.url, "https://api.groq.com/openai/v1/embeddings");
        assert_eq!(header(&r, "authorization"), Some("Bearer gsk-env"));

        for (p, yaml) in [
            (Provider::HostedVllm, "model: hosted_vllm/m"),
            (Provider::Azure, "model: azure/m"),
            (Provider::AzureAi, "model: azure_ai/m"),
            (Provider::Compat(Compat::CustomOpenai), "model: custom_openai/m"),
        ] {
            let err = endpoint(p, yaml, &[]).unwrap_err().to_string();
            assert!(err.contains("api_base"), "{p}: {err}");
        }
    }

    #[test]
    fn azure_takes_the_deployment_in_the_path_and_the_version_in_the_query() {
        let yaml = "model: azure/prod\napi_base: https://r.openai.azure.com/\napi_key: az-key\napi_version: 2025-01-01-preview";
        let ep = endpoint(Provider::Azure, yaml, &[]).unwrap();
        let r =
            api(Provider::Azure).request(&ep, call(Operation::OpenAi("embeddings"), "prod/../x", false, &[])).unwrap();
        assert_eq!(
            r.url,
            "https://r.openai.azure.com/openai/deployments/prod%2F..%2Fx/embeddings?api-version=2025-01-01-preview"
        );
        assert_eq!(header(&r, "api-key"), Some("az-key"));
        assert!(body(&r).get("model").is_none());
        assert!(api(Provider::Azure).serves(Operation::OpenAi("chat/completions"), "prod"));
        // The Responses API is the resource's, the deployment goes in `model`.
        let r = api(Provider::Azure).request(&ep, call(Operation::OpenAi("responses"), "prod", false, &[])).unwrap();
        assert_eq!(r.url, "https://r.openai.azure.com/openai/v1/responses");
        assert_eq!(body(&r)["model"], "prod");
        let read = api(Provider::Azure).retrieve_response(&ep, "resp_1").unwrap();
        assert_eq!(
            (read.method, read.url.as_str()),
            (http::Method::GET, "https://r.openai.azure.com/openai/v1/responses/resp_1")
        );
    }

    #[test]
    fn anthropic_and_azure_ai_take_messages_with_version_and_betas_in_headers() {
        let ep = endpoint(Provider::Anthropic, "model: anthropic/claude\napi_key: ak", &[]).unwrap();
        let betas = vec!["a-1".to_string(), "b-2".to_string()];
        let r = api(Provider::Anthropic).request(&ep, call(Operation::CountTokens, "claude-x", false, &betas)).unwrap();
        assert_eq!(r.url, "https://api.anthropic.com/v1/messages/count_tokens");
        assert_eq!(header(&r, "x-api-key"), Some("ak"));
        assert_eq!(header(&r, "anthropic-version"), Some("2023-06-01"));
        assert_eq!(header(&r, "anthropic-beta"), Some("a-1,b-2"));
        assert_eq!(body(&r)["model"], "claude-x");

        let yaml = "model: azure_ai/claude-sonnet\napi_base: https://x.services.ai.azure.com\napi_key: zk";
        let ep = endpoint(Provider::AzureAi, yaml, &[]).unwrap();
        let az = api(Provider::AzureAi);
        assert!(az.speaks_messages("claude-sonnet") && !az.speaks_messages("mistral-large"));
        let r = az.request(&ep, call(Operation::Messages, "claude-sonnet", true, &[])).unwrap();
        assert_eq!(r.url, "https://x.services.ai.azure.com/anthropic/v1/messages");
        assert_eq!(body(&r)["stream"], true);
        let r = az.request(&ep, call(Operation::OpenAi("chat/completions"), "mistral-large", false, &[])).unwrap();
        assert_eq!(r.url, "https://x.services.ai.azure.com/chat/completions");
        assert_eq!(header(&r, "authorization"), Some("Bearer zk"));
        assert_eq!(header(&r, "x-api-key"), None, "one credential header, in the family's form");
    }

    #[test]
    fn vertex_needs_a_project_and_puts_model_and_verb_in_the_path() {
        let err = endpoint(Provider::VertexAi, "model: vertex_ai/claude", &[]).unwrap_err().to_string();
        assert!(err.contains("vertex_project"), "{err}");
        let ep =
            endpoint(Provider::VertexAi, "model: vertex_ai/claude\nvertex_project: p1\napi_key: tok", &[]).unwrap();
        let r = api(Provider::VertexAi).request(&ep, call(Operation::Messages, "claude@2024", true, &[])).unwrap();
        assert_eq!(
            r.url,
            "https://us-east5-aiplatform.googleapis.com/v1/projects/p1/locations/us-east5/publishers/anthropic/models/claude%402024:streamRawPredict"
        );
        let b = body(&r);
        assert_eq!(b["anthropic_version"], "vertex-2023-10-16");
        assert!(b.get("model").is_none());
        assert_eq!(header(&r, "authorization"), Some("Bearer tok"));
        assert!(!api(Provider::VertexAi).serves(Operation::CountTokens, "claude"));
    }

    #[test]
    fn bedrock_resolves_region_and_credentials_at_load_and_signs_at_the_clocks_time() {
        let err = endpoint(Provider::Bedrock, "model: bedrock/anthropic.claude", &[]).unwrap_err().to_string();
        assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
        let env =
            [("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"), ("AWS_SECRET_ACCESS_KEY", "secret"), ("AWS_REGION", "eu-west-3")];
        let ep = endpoint(Provider::Bedrock, "model: bedrock/anthropic.claude", &env).unwrap();
        assert_eq!(ep.url, "https://bedrock-runtime.eu-west-3.amazonaws.com");
        assert!(!format!("{ep:?}").contains("secret"), "Debug never prints a credential");
        let betas = vec!["flag-1".to_string()];
        let r = api(Provider::Bedrock)
            .request(&ep, call(Operation::Messages, "anthropic.claude-v2:0", false, &betas))
            .unwrap();
        assert_eq!(r.url, "https://bedrock-runtime.eu-west-3.amazonaws.com/model/anthropic.claude-v2%3A0/invoke");
        assert_eq!(header(&r, "x-amz-date"), Some("20231114T221320Z"), "the call's time, not the system's");
        assert!(header(&r, "authorization").is_some_and(|a| a.contains("/eu-west-3/bedrock/")));
        let b = body(&r);
        assert_eq!(b["anthropic_beta"], json!(["flag-1"]));
        assert!(b.get("model").is_none());
        assert_eq!(api(Provider::Bedrock).stream_media_type(), "application/vnd.amazon.eventstream");
    }

    #[test]
    fn gemini_puts_the_model_and_method_in_the_path_and_the_key_in_a_header() {
        let ep =
            endpoint(Provider::Gemini, "model: gemini/gemini-2.5-flash", &[("GEMINI_API_KEY", "AIza-env")]).unwrap();
        let g = api(Provider::Gemini);
        let sent = json!({"model": "client-name", "messages": [{"role": "user", "content": "hi"}]});
        let mut c = call(Operation::OpenAi("chat/completions"), "gemini-2.5-flash", false, &[]);
        c.body = body::Body::owned(sent.as_object().cloned().unwrap_or_default());
        let r = g.request(&ep, c).unwrap();
        assert_eq!(r.url, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent");
        assert_eq!(header(&r, "x-goog-api-key"), Some("AIza-env"));
        assert!(r.headers.iter().find(|(k, _)| k == "x-goog-api-key").is_some_and(|(_, v)| v.is_sensitive()));
        assert_eq!(body(&r), json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}));

        // The configured key over the variable; a stream asks for SSE; a
        // model name stays one segment, so it cannot reach another method.
        let yaml = "model: gemini/x\napi_base: http://127.0.0.1:9/\napi_key: AIza-cfg";
        let ep = endpoint(Provider::Gemini, yaml, &[("GEMINI_API_KEY", "AIza-env")]).unwrap();
        let mut c = call(Operation::OpenAi("chat/completions"), "../files/x:delete?key=1", true, &[]);
        c.body = body::Body::owned(json!({"messages": []}).as_object().cloned().unwrap_or_default());
        let r = g.request(&ep, c).unwrap();
        assert_eq!(
            r.url,
            "http://127.0.0.1:9/v1beta/models/..%2Ffiles%2Fx%3Adelete%3Fkey%3D1:streamGenerateContent?alt=sse"
        );
        assert_eq!(header(&r, "x-goog-api-key"), Some("AIza-cfg"));
        // LiteLLM's readings of api_base: the root with the API version
        // (from 1.96), or the model's own URL (before).
        for base in ["https://gw.example/g/v1beta/", "https://gw.example/g/v1beta/models/gemini-2.5-flash"] {
            let ep = endpoint(Provider::Gemini, &format!("model: gemini/gemini-2.5-flash\napi_base: {base}"), &[]);
            let mut c = call(Operation::OpenAi("chat/completions"), "gemini-2.5-flash", false, &[]);
            c.body = body::Body::owned(json!({"messages": []}).as_object().cloned().unwrap_or_default());
            let r = g.request(&ep.unwrap(), c).unwrap();
            assert_eq!(r.url, "https://gw.example/g/v1beta/models/gemini-2.5-flash:generateContent", "{base}");
        }
        let ep = endpoint(Provider::Gemini, "model: gemini/x", &[("GOOGLE_API_KEY", "AIza-google")]).unwrap();
        assert_eq!(
            ep.headers.iter().find(|(k, _)| k == "x-goog-api-key").and_then(|(_, v)| v.to_str().ok()),
            Some("AIza-google")
        );
        assert!(!g.serves(Operation::OpenAi("embeddings"), "x") && !g.serves(Operation::Messages, "x"));
        assert!(g.serves(Operation::OpenAi("chat/completions"), "x") && !g.speaks_messages("x"));
        assert_eq!(Provider::parse("gemini"), Some(Provider::Gemini));
        assert_eq!(Provider::from_litellm_provider("gemini", "gemini-2.5-flash"), Some(Provider::Gemini));
    }

    #[test]
    fn a_credential_a_header_cannot_carry_is_a_configuration_error() {
        let err = endpoint(Provider::Openai, "model: openai/gpt-4o\napi_key: \"sk\\nx\"", &[]).unwrap_err().to_string();
        assert!(err.contains("api_key") && !err.contains("sk"), "{err}");
    }
}

#[cfg(test)]
mod tests {
    use super::{path_segment, Compat, Provider, COMPAT};

    #[test]
    fn every_compatible_provider_has_one_row_and_parses_back() {
        for (i, r) in COMPAT.iter().enumerate() {
            assert_eq!(COMPAT.iter().position(|o| o.0 == r.0), Some(i), "one row for {:?}", r.0);
            assert_eq!(Provider::parse(r.1), Some(Provider::Compat(r.0)));
            assert_eq!(Provider::Compat(r.0).as_str(), r.1);
        }
        assert_eq!(Compat::Groq.key_env(), Some("GROQ_API_KEY"));
        assert_eq!(Provider::from_litellm_provider("groq", "llama3-8b-8192"), Some(Provider::Compat(Compat::Groq)));
        assert_eq!(Provider::from_litellm_provider("openai", "gpt-4o"), Some(Provider::Openai));
        assert_eq!(Provider::from_litellm_provider("vertex_ai-language-models", "gemini-pro"), None);
    }

    #[test]
    fn a_model_name_stays_one_path_segment() {
        assert_eq!(path_segment("gpt-4o_mini.v1~x").unwrap(), "gpt-4o_mini.v1~x");
        assert!(super::Compat::CustomOpenai.prefix() == "custom_openai");
        assert_eq!(path_segment("claude@20240620").unwrap(), "claude%4020240620");
        assert_eq!(path_segment("../../../admin?x=1#").unwrap(), "..%2F..%2F..%2Fadmin%3Fx%3D1%23");
        assert_eq!(path_segment("%2e%2e").unwrap(), "%252e%252e");
        for bad in ["", ".", ".."] {
            assert!(path_segment(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod verbatim_tests {
    use super::*;
    use serde_json::json;

    /// A provider whose OpenAI-wire answers the proxy passes through as
    /// bytes must not change them: `translates_openai_answer` and
    /// `openai_answer` agree, for every registered provider and call.
    #[test]
    fn a_provider_that_says_it_passes_answers_through_does() {
        let answer = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m-upstream",
            "system_fingerprint": "fp_1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop", "logprobs": null}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        });
        let cx = AnswerContext { upstream_model: "m-upstream", created: 9, include_usage: false };
        for p in Provider::ALL {
            for path in ["chat/completions", "completions", "embeddings"] {
                let op = Operation::OpenAi(path);
                if !p.api().translates_openai_answer(op) {
                    let out = p.api().openai_answer(op, answer.clone(), &cx).ok();
                    assert_eq!(out.as_ref(), Some(&answer), "{p} {path}: changes the answer it says it passes through");
                }
            }
        }
    }
}
