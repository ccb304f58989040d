//! One client exchange as the contract checks see it: what the client sent
//! and got, and every upstream call the mocks saw for it, with what each
//! mock answered. Built by the scenario engine (in-process and target mode
//! alike) and by the tests under `tests/contracts/`, which write violating
//! exchanges by hand.

use crate::mocks::{MockAnswer, MockKind, RecordedRequest};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What the client sent.
#[derive(Debug, Clone, Default)]
pub struct ClientRequest {
    pub method: String,
    /// The path as sent, with the gateway's root path removed.
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ClientRequest {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The gateway credential the client presented, if any.
    pub(crate) fn presented_key(&self) -> Option<&str> {
        if let Some(v) = self.header("authorization") {
            let v = v.trim();
            let token = v.split_once(' ').map(|(_, t)| t.trim()).unwrap_or(v);
            return (!token.is_empty()).then_some(token);
        }
        ["x-api-key", "api-key"].iter().find_map(|h| self.header(h).map(str::trim).filter(|v| !v.is_empty()))
    }

    /// Whether the client asked for a stream (`"stream": true`).
    pub(crate) fn wants_stream(&self) -> bool {
        self.json().and_then(|b| b.get("stream").and_then(Value::as_bool)).unwrap_or(false)
    }
}

/// What the client got.
#[derive(Debug, Clone, Default)]
pub struct ClientResponse {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was read to its end without a transport error.
    pub complete: bool,
    /// From sending the request to the body's end, where it was measured.
    pub elapsed: Option<std::time::Duration>,
}

impl ClientResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The media type of `content-type`, lower-case, without parameters.
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(media_type)
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `text/event-stream; charset=utf-8` -> `text/event-stream`.
pub fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// One request a mock received while the client's request was in flight,
/// and what the mock answered.
#[derive(Debug, Clone)]
pub struct UpstreamCall {
    /// The scenario's name for the mock.
    pub provider: String,
    pub kind: MockKind,
    pub request: RecordedRequest,
    pub answer: MockAnswer,
}

/// Whether the upstream calls belong to this exchange alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Attribution {
    /// The exchange ran alone: every upstream call listed is its own.
    #[default]
    Exact,
    /// Other exchanges ran at the same time; the upstream calls cannot be
    /// told apart, and checks that need them are skipped.
    Shared,
}

/// A client exchange and the upstream calls behind it.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub request: ClientRequest,
    pub response: ClientResponse,
    pub upstream: Vec<UpstreamCall>,
    pub attribution: Attribution,
    /// Where the gateway tried to go other than the mocks while the request
    /// was in flight (target mode's egress sentinel; empty in-process).
    pub egress: Vec<crate::mocks::egress::EgressAttempt>,
}

impl Exchange {
    /// The upstream calls that carry the client's request: every model API
    /// call is a POST. A gateway's own lookups on the side (LiteLLM asks a
    /// provider's `GET /v1/models` while it serves) are seen by the security
    /// checks, but are no attempt at the client's request.
    pub(crate) fn model_calls(&self) -> impl DoubleEndedIterator<Item = &UpstreamCall> {
        self.upstream.iter().filter(|c| c.request.is_model_call())
    }

    /// The last attempt at the client's request: the one its answer came from.
    pub(crate) fn last_model_call(&self) -> Option<&UpstreamCall> {
        self.model_calls().next_back()
    }
}

/// The entry point a client request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Messages,
    CountTokens,
    Models,
    /// `GET /v1/models/{model}`.
    Model,
    /// Key administration (`/key/...`).
    KeyAdmin,
    Other,
}

impl Endpoint {
    /// Classifies a path (root path removed; query string ignored).
    pub(crate) fn of(path: &str) -> Endpoint {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let path = path.trim_end_matches('/');
        let bare = path.strip_prefix("/v1").unwrap_or(path);
        match bare {
            "/chat/completions" => Endpoint::ChatCompletions,
            "/completions" => Endpoint::Completions,
            "/embeddings" => Endpoint::Embeddings,
            "/responses" => Endpoint::Responses,
            "/messages" => Endpoint::Messages,
            "/messages/count_tokens" => Endpoint::CountTokens,
            "/models" => Endpoint::Models,
            p if p.starts_with("/models/") && p.len() > "/models/".len() => Endpoint::Model,
            p if p.starts_with("/openai/deployments/") && p.ends_with("/chat/completions") => Endpoint::ChatCompletions,
            p if p.starts_with("/openai/deployments/") && p.ends_with("/embeddings") => Endpoint::Embeddings,
            p if p.starts_with("/key/") => Endpoint::KeyAdmin,
            _ => Endpoint::Other,
        }
    }

    /// Routes that call a model, and so a provider.
    pub(crate) fn calls_a_model(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions
                | Endpoint::Completions
                | Endpoint::Embeddings
                | Endpoint::Responses
                | Endpoint::Messages
                | Endpoint::CountTokens
        )
    }

    /// Whether the client speaks Anthropic's API here.
    pub(crate) fn is_anthropic(self) -> bool {
        matches!(self, Endpoint::Messages | Endpoint::CountTokens)
    }
}

/// A secret the gateway under test was configured with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Secret {
    /// Where it came from (`model_list[0].litellm_params.api_key`); shown
    /// in reports instead of the value.
    pub label: String,
    pub value: String,
}

/// What the checks know of the gateway's configuration, read from the
/// LiteLLM-format config the gateway under test was started with (never
/// from our gateway's own types: the same facts hold for any gateway).
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Every configured secret: provider credentials, the master key,
    /// configured virtual keys.
    pub secrets: Vec<Secret>,
    /// Per mock provider name: the credentials of the deployments that
    /// point at it (api keys, AWS access key ids).
    pub credentials: BTreeMap<String, BTreeSet<String>>,
    /// The gateway refuses unauthenticated callers (a master key is set).
    pub auth_required: bool,
    /// Mocks no deployment points at (sentinels): they must never be called.
    pub sentinels: BTreeSet<String>,
    /// Mocks that a deployment without any credential points at: a gateway
    /// may send such a deployment a placeholder (LiteLLM sends
    /// `fake-api-key`), so what they receive is not judged.
    pub keyless: BTreeSet<String>,
    /// Per model name, the `timeout` (seconds) every one of its deployments
    /// sets (the largest), for the timeout contract; absent when any
    /// deployment of it sets none.
    pub timeouts: BTreeMap<String, f64>,
    /// The hosts the config's deployments name (`api_base`, the Bedrock
    /// runtime endpoint), lower-case.
    pub configured_hosts: BTreeSet<String>,
    /// Model names every deployment of which is on Anthropic's own API
    /// (`anthropic/…`) at a mock: their provider counts tokens exactly
    /// (`count_tokens`), so a count for them must be the provider's.
    pub exact_counts: BTreeSet<String>,
    /// The model cost map the gateway was given, when the harness knows it
    /// (set by the caller: the config names a map by URL or path).
    pub prices: Option<std::sync::Arc<super::Prices>>,
    /// Per model name, the rates each of its deployments sets itself
    /// (`litellm_params.input_cost_per_token`, `output_cost_per_token`;
    /// `None` for a deployment priced from the map).
    pub custom_rates: BTreeMap<String, Vec<Option<super::OwnRates>>>,
    /// Per model name, its deployments' `model_info.base_model` (the name
    /// the cost map knows an Azure deployment by).
    pub base_models: BTreeMap<String, Vec<String>>,
}

/// The host of a URL, lower-case (`https://x.example.com:8443/v1` -> `x.example.com`).
fn url_host(url: &str) -> Option<String> {
    let host = reqwest::Url::parse(url).ok()?.host_str()?.trim_matches(['[', ']']).to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Shows a secret's label and a short prefix, never the value.
pub fn masked(secret: &Secret) -> String {
    let prefix: String = secret.value.chars().take(4).collect();
    format!("{} ({prefix}…)", secret.label)
}

impl Setup {
    /// Reads a LiteLLM-format config (as JSON) and the scenario's mock URLs
    /// (`name -> base URL`). `env` resolves `os.environ/NAME` references.
    pub fn from_config(config: &Value, mocks: &BTreeMap<String, String>, env: &BTreeMap<String, String>) -> Setup {
        let resolve = |v: &Value| -> Option<String> {
            let s = v.as_str()?;
            match s.strip_prefix("os.environ/") {
                Some(name) => env.get(name).cloned(),
                None => Some(s.to_string()),
            }
            .filter(|s| !s.is_empty())
        };
        let mut setup = Setup::default();
        let mut pointed_at = BTreeSet::new();
        // model name -> whether each of its deployments is Anthropic's API at a mock
        let mut counts: BTreeMap<String, bool> = BTreeMap::new();
        // model name -> the largest timeout of its deployments, None once one has none
        let mut timeouts: BTreeMap<String, Option<f64>> = BTreeMap::new();
        if let Some(list) = config.get("model_list").and_then(Value::as_array) {
            for (i, entry) in list.iter().enumerate() {
                let Some(p) = entry.get("litellm_params") else { continue };
                let base = p
                    .get("api_base")
                    .or_else(|| p.get("aws_bedrock_runtime_endpoint"))
                    .and_then(resolve)
                    .unwrap_or_default();
                if let Some(host) = url_host(&base) {
                    setup.configured_hosts.insert(host);
                }
                let owner = mocks.iter().find(|(_, url)| !url.is_empty() && base.starts_with(url.as_str()));
                if let Some((name, _)) = owner {
                    pointed_at.insert(name.clone());
                }
                if let Some(group) = entry.get("model_name").and_then(Value::as_str) {
                    let rate = |k: &str| p.get(k).and_then(Value::as_f64).filter(|r| r.is_finite() && *r >= 0.0);
                    let own = super::OwnRates {
                        input: rate("input_cost_per_token"),
                        output: rate("output_cost_per_token"),
                        cache_read: rate("cache_read_input_token_cost"),
                        cache_write: rate("cache_creation_input_token_cost"),
                    };
                    let any = [own.input, own.output, own.cache_read, own.cache_write].iter().any(Option::is_some);
                    let own = any.then_some(own);
                    setup.custom_rates.entry(group.to_string()).or_default().push(own);
                    if let Some(base) = entry.pointer("/model_info/base_model").and_then(Value::as_str) {
                        setup.base_models.entry(group.to_string()).or_default().push(base.to_string());
                    }
                    let anthropic = p.get("model").and_then(Value::as_str).is_some_and(|m| m.starts_with("anthropic/"));
                    let exact = anthropic && owner.is_some() && !group.contains('*');
                    *counts.entry(group.to_string()).or_insert(true) &= exact;
                    let timeout = p.get("timeout").and_then(Value::as_f64).filter(|t| *t > 0.0);
                    let slot = timeouts.entry(group.to_string()).or_insert(timeout);
                    *slot = match (*slot, timeout) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                }
                // A Gemini deployment without `api_key` sends the key of
                // GEMINI_API_KEY or GOOGLE_API_KEY (LiteLLM reads both; the
                // config's `environment_variables`, else the gateway's
                // environment): either is that deployment's credential.
                let gemini = p.get("model").and_then(Value::as_str).is_some_and(|m| m.starts_with("gemini/"));
                let keyless_gemini = gemini && p.get("api_key").and_then(resolve).is_none();
                let mut has_env_key = false;
                for var in ["GEMINI_API_KEY", "GOOGLE_API_KEY"].into_iter().filter(|_| keyless_gemini) {
                    let key = config
                        .pointer(&format!("/environment_variables/{var}"))
                        .and_then(resolve)
                        .or_else(|| env.get(var).cloned())
                        .filter(|k| !k.is_empty());
                    let Some(key) = key else { continue };
                    has_env_key = true;
                    setup.secrets.push(Secret { label: var.into(), value: key.clone() });
                    if let Some((name, _)) = owner {
                        setup.credentials.entry(name.clone()).or_default().insert(key);
                    }
                }
                let has_credential = has_env_key
                    || ["api_key", "aws_access_key_id"].iter().any(|f| p.get(*f).and_then(resolve).is_some());
                if let (Some((name, _)), false) = (owner, has_credential) {
                    setup.keyless.insert(name.clone());
                }
                // Google credentials: the access tokens they mint are not
                // configured (so the deployment counts as keyless above), but
                // their secrets are, and belong to the deployment's host.
                let google =
                    p.get("vertex_credentials").and_then(resolve).and_then(|c| serde_json::from_str::<Value>(&c).ok());
                for field in ["client_secret", "refresh_token", "private_key"] {
                    let Some(value) = google.as_ref().and_then(|g| g.get(field)).and_then(Value::as_str) else {
                        continue;
                    };
                    setup.secrets.push(Secret {
                        label: format!("model_list[{i}].litellm_params.vertex_credentials.{field}"),
                        value: value.to_string(),
                    });
                    if let Some((name, _)) = owner {
                        setup.credentials.entry(name.clone()).or_default().insert(value.to_string());
                    }
                }
                for field in ["api_key", "aws_secret_access_key", "aws_session_token", "aws_access_key_id"] {
                    let Some(value) = p.get(field).and_then(resolve) else { continue };
                    if field != "aws_access_key_id" {
                        setup.secrets.push(Secret {
                            label: format!("model_list[{i}].litellm_params.{field}"),
                            value: value.clone(),
                        });
                    }
                    if matches!(field, "api_key" | "aws_access_key_id") {
                        if let Some((name, _)) = owner {
                            setup.credentials.entry(name.clone()).or_default().insert(value);
                        }
                    }
                }
            }
        }
        let master = config
            .pointer("/general_settings/master_key")
            .and_then(resolve)
            .or_else(|| env.get("LITELLM_MASTER_KEY").cloned().filter(|s| !s.is_empty()));
        if let Some(m) = master {
            setup.auth_required = true;
            setup.secrets.push(Secret { label: "general_settings.master_key".into(), value: m });
        }
        if let Some(keys) = config.get("keys").and_then(Value::as_array) {
            for (i, k) in keys.iter().enumerate() {
                if let Some(v) = k.get("key").and_then(resolve) {
                    setup.secrets.push(Secret { label: format!("keys[{i}].key"), value: v });
                }
            }
        }
        // Values too short to be told apart from ordinary text would make
        // every response "contain a secret".
        setup.secrets.retain(|s| s.value.len() >= 8);
        setup.secrets.sort();
        setup.secrets.dedup();
        setup.sentinels = mocks.keys().filter(|m| !pointed_at.contains(*m)).cloned().collect();
        setup.exact_counts = counts.into_iter().filter(|(_, exact)| *exact).map(|(m, _)| m).collect();
        setup.timeouts = timeouts.into_iter().filter_map(|(m, t)| Some((m, t?))).collect();
        setup
    }
}
