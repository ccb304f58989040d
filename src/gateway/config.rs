//! The gateway's configuration: a compatible subset of LiteLLM's `config.yaml`,
//! so teams can bring the file they already have.
//!
//! Parsing is typed (serde) for precise errors: a type error names the file,
//! the field path and the line. Keys we do not know are not errors (LiteLLM
//! configs carry many settings we do not implement) but each one produces a
//! warning naming it, so nothing is silently ignored.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

use crate::gateway::redis_link::RedisTarget;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{file}: {field}: {message}")]
    Field { file: String, field: String, message: String },
    /// Everything wrong with the file, each with its line where it can be
    /// found: a user fixes them in one pass, not one start-up at a time.
    #[error("{file}: {} errors:\n{}", .errors.len(), .errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Many { file: String, errors: Vec<String> },
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Config {
    #[serde(default)]
    pub model_list: Vec<ModelDeployment>,
    #[serde(default)]
    pub general_settings: GeneralSettings,
    #[serde(default)]
    pub router_settings: RouterSettings,
    #[serde(default)]
    pub litellm_settings: LitellmSettings,
    /// Set into the process environment before `os.environ/` references
    /// are resolved (LiteLLM's `environment_variables`), laid over the
    /// process environment; see `Config::env_var`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "yaml11::string_map")]
    pub environment_variables: BTreeMap<String, String>,
    /// Named credentials deployments refer to with
    /// `litellm_params.litellm_credential_name` (LiteLLM's `credential_list`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_list: Vec<Credential>,
    /// Virtual keys declared in the file (our extension; LiteLLM keeps keys
    /// in its database).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<ConfigKey>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ModelDeployment {
    pub model_name: String,
    /// Missing in a few real configs: the deployment is then unavailable.
    #[serde(default)]
    pub litellm_params: LitellmParams,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_info: Option<serde_json::Value>,
    /// LiteLLM also reads `rpm`/`tpm` written beside `litellm_params`.
    #[serde(default, skip_serializing, deserialize_with = "yaml11::opt_u64")]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing, deserialize_with = "yaml11::opt_u64")]
    pub tpm: Option<u64>,
    /// Why this deployment cannot serve (set while loading, never read from
    /// the file): it is kept, shown in `/health` and `/ui`, and requests to
    /// it get this reason instead of the whole file being refused.
    #[serde(skip)]
    pub unavailable: Option<String>,
}

/// One `credential_list` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Credential {
    pub credential_name: String,
    /// Any `litellm_params` credential field: `api_key`, `api_base`,
    /// `api_version`, `aws_*`, `vertex_*`. Values may be `os.environ/NAME`.
    #[serde(default)]
    pub credential_values: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_info: Option<serde_json::Value>,
}

/// Per-deployment parameters. Every field is optional except `model`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LitellmParams {
    /// `provider/name`, e.g. `openai/gpt-4o`, `anthropic/*`, `*`; or a bare
    /// name the cost map knows (`gpt-4o`), whose provider it says.
    #[serde(default)]
    pub model: String,
    /// A `credential_list` entry whose values fill the credential fields
    /// this deployment leaves unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub litellm_credential_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Total request timeout, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_f64")]
    pub timeout: Option<f64>,
    /// Timeout while waiting for stream data, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_f64")]
    pub stream_timeout: Option<f64>,
    /// TCP connect timeout, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_f64")]
    pub connect_timeout: Option<f64>,
    /// The deployment's own price per input token, USD (LiteLLM's custom
    /// pricing): it replaces the cost map's input rate for its calls.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_f64")]
    pub input_cost_per_token: Option<f64>,
    /// The deployment's own price per output token, USD.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_f64")]
    pub output_cost_per_token: Option<f64>,
    /// The deployment's own price per cached input token read, USD (any
    /// pricing key of the cost map may be set on a deployment, LiteLLM
    /// documents; these are the per-token ones the gateway prices).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_f64")]
    pub cache_read_input_token_cost: Option<f64>,
    /// The deployment's own price per input token written to the cache, USD.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_f64")]
    pub cache_creation_input_token_cost: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_u64")]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_u64")]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret_access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_session_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_region_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_bedrock_runtime_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertex_project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertex_location: Option<String>,
    /// Google credentials for Vertex AI: the JSON of an `authorized_user` or
    /// `service_account` credentials file, or the file's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertex_credentials: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_params: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct GeneralSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key: Option<String>,
    /// Path prefix every route is served under, e.g. `/llmproxy` or
    /// `/api/v1/gateway`. The env `SERVER_ROOT_PATH` is used when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_root_path: Option<String>,
    /// Request body limit in MiB (LiteLLM's name). Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_size_mb: Option<f64>,
    /// Path or URL of the model cost map. The env `LITELLM_MODEL_COST_MAP_URL`
    /// is used when unset; the bundled copy when neither is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_cost_map: Option<String>,
    /// Re-fetch the cost map every N seconds (off when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_cost_map_reload_interval_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_cost_map_min_models: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_cost_map_max_shrink_ratio: Option<f64>,
    /// Provider client cache size (default 200). Kept in general_settings,
    /// not router_settings, because LiteLLM passes router_settings to its
    /// Router as keyword arguments and would refuse unknown ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cache_capacity: Option<usize>,
    /// Provider client cache TTL in seconds (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cache_ttl_secs: Option<u64>,
    /// Path or URL of the anthropic-beta policy (LiteLLM's
    /// `anthropic_beta_headers_config.json` format). The env
    /// `LITELLM_ANTHROPIC_BETA_HEADERS_URL` is used when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anthropic_beta_headers: Option<String>,
    /// The embedded SQLite database for run-time keys, spend and the spend
    /// log: a path, or `:memory:`. `serve` defaults to `postmortem.db` beside
    /// the config file; a gateway built in-process defaults to `:memory:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_path: Option<String>,
    /// Postgres for fleets: `postgres://user:password@host:port/db` (LiteLLM's
    /// name; `DATABASE_URL` when unset). Every instance on the same URL
    /// shares keys, spend and the spend log. Wins over `database_path`. No
    /// TLS yet: `sslmode` other than `disable`/`prefer` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Seconds between spend writes (LiteLLM's name; default 10). A crash
    /// loses at most this much spend; a graceful shutdown loses none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_batch_write_at: Option<u64>,
    /// With no master key the gateway serves anyone, but its admin routes
    /// (keys, reloads, cache stats, spend logs) stay refused unless this is
    /// `true`. Ignored when a master key is set.
    #[serde(default)]
    pub allow_unauthenticated_admin: bool,
    /// Seconds a client may take to send a request's headers, and a
    /// kept-alive connection may wait for its next request (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_read_timeout_secs: Option<f64>,
    /// Connections served at once (default 10,000); more are closed as
    /// they arrive, so idle ones cannot exhaust the file descriptors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// The most a client's request headers may hold, KiB (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_size_kb: Option<usize>,
    /// The most a buffered upstream answer may hold, MiB (default 64);
    /// a larger one is a 502.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_upstream_response_mb: Option<f64>,
    /// Seconds a pooled upstream connection may idle before it is closed
    /// (default 90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_idle_timeout_secs: Option<f64>,
    /// Idle upstream connections kept per host (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_max_idle_per_host: Option<usize>,
    /// The longest a stream may last, seconds (default 3600): past it the
    /// stream ends with an error event and its upstream connection closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_duration_secs: Option<f64>,
}

/// Declares a settings struct with LiteLLM's fallback, alias and cooldown
/// settings appended: `router_settings` and `litellm_settings` both take them
/// (real configs use both). A macro and not `#[serde(flatten)]`: flattening
/// would hide unknown keys from the warnings.
macro_rules! with_reliability_settings {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        $vis struct $name {
            $($fields)*
    /// `[{group: [fallback groups…]}]`, tried in order after the group's own
    /// deployments fail in a way a retry may fix (connection, timeout, 429,
    /// 5xx). A flat list of names is taken as `default_fallbacks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallbacks: Option<serde_json::Value>,
    /// Tried when a group's answer is a context-window error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window_fallbacks: Option<serde_json::Value>,
    /// Tried when a group's answer is a content-policy refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_policy_fallbacks: Option<serde_json::Value>,
    /// Fallback groups for every group without its own `fallbacks` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_fallbacks: Option<Vec<String>>,
    /// `alias: group` or `alias: {model: group, hidden: true}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_group_alias: Option<BTreeMap<String, serde_json::Value>>,
    /// Failures in a minute a deployment may have before it is cooled down
    /// (LiteLLM's default 3). Groups of one deployment are never cooled.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_u64")]
    pub allowed_fails: Option<u64>,
    /// Seconds a cooled-down deployment sits out (LiteLLM's default 5).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_f64")]
    pub cooldown_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_cooldowns: Option<bool>,
        }
    };
}

with_reliability_settings! {
    /// The fallback, alias and cooldown settings in force ([`Config::reliability`]).
    #[derive(Debug, Clone, Default, Deserialize, Serialize)]
    pub struct Reliability {}
}

with_reliability_settings! {
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RouterSettings {
    /// Deployments of a model are tried round robin, skipping any at its
    /// `rpm`/`tpm`. That is LiteLLM's `simple-shuffle` (without rpm weights)
    /// and `usage-based-routing(-v2)` with pre-call checks; other strategies
    /// warn and get the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_strategy: Option<String>,
    /// LiteLLM's switch for skipping deployments over their limits before
    /// the call. postmortem always does; the setting is accepted so a
    /// LiteLLM config that sets it loads without a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_pre_call_checks: Option<bool>,
    /// LiteLLM's opt-in routing checks. `responses_api_deployment_check`
    /// (a Responses follow-up goes to the deployment that stored the
    /// Response) is always on here: the id a client gets names its
    /// deployment. The affinity checks are not implemented and warn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional_pre_call_checks: Option<Vec<String>>,
    /// Extra attempts after a retryable failure (connection error, 429,
    /// 5xx): the next deployments of the model, then the group again, so a
    /// deployment may be retried in place after a backoff. Default: each
    /// deployment once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    /// Retries per kind of failure, in place of `num_retries` for that kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// LiteLLM's least wait, seconds, before a deployment is retried in
    /// place (default 0: the backoff alone).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_f64")]
    pub retry_after: Option<f64>,
    /// Default total timeout, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_f64")]
    pub timeout: Option<f64>,
    /// Redis for the counters instances share (`gateway::shared_limits`):
    /// virtual keys' rpm/tpm windows. `REDIS_HOST` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_host: Option<String>,
    /// A number or a string (`os.environ/REDIS_PORT`); `REDIS_PORT`, then
    /// 6379, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_port: Option<serde_json::Value>,
    /// `REDIS_PASSWORD` when absent. Never logged or shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_password: Option<String>,
    /// `redis://[:password@]host:port[/db]`, in place of the three above
    /// (`REDIS_URL` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
}
}

with_reliability_settings! {
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LitellmSettings {
    /// Drop params a provider does not support instead of answering 400.
    #[serde(default)]
    pub drop_params: bool,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_f64")]
    pub request_timeout: Option<f64>,
    /// As `router_settings.num_retries` (which wins when both are set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    /// LiteLLM's logging integrations by name. `otel` turns on the
    /// OpenTelemetry traces (`gateway::otel`); `prometheus` is always on
    /// (`/metrics`); any other name starts with a warning.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub callbacks: Vec<String>,
    /// As `callbacks`, for successful calls only in LiteLLM; `otel` here
    /// traces every call, as `callbacks` does.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub success_callback: Vec<String>,
    /// As `success_callback`, for failed calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub failure_callback: Vec<String>,
    /// LiteLLM's response caching: `true` turns it on, as `cache_params`
    /// says (`gateway::response_cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    /// How responses are cached; read only with `cache: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_params: Option<CacheParams>,
}
}

/// `litellm_settings.cache_params`, LiteLLM's names. `type: local` (in
/// memory, the default here) and `type: redis` (one Redis server, shared by
/// every instance on it) are implemented.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct CacheParams {
    /// `local` (default), `redis`, or one of LiteLLM's other stores (`s3`,
    /// `qdrant-semantic`…), which start with a warning and cache nothing.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `type: redis`: the server's host. With it, `port` (else `REDIS_PORT`,
    /// else 6379) and `password` (else `REDIS_PASSWORD`) name the Redis;
    /// without it, the shared rate limits' Redis does
    /// (`Config::cache_redis_target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// A number or a string (`os.environ/REDIS_PORT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<serde_json::Value>,
    /// Never logged, shown or serialized.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// Seconds an answer is kept (default 600, LiteLLM's in-memory default).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_f64")]
    pub ttl: Option<f64>,
    /// LiteLLM's in-memory TTL, which wins over `ttl` for `type: local`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_f64")]
    pub default_in_memory_ttl: Option<f64>,
    /// A prefix of every cache key (`namespace:hash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// LiteLLM's call types to cache (`acompletion`, `atext_completion`,
    /// `aembedding`, `aresponses`…); absent: all of them; `[]`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_call_types: Option<Vec<String>>,
    /// `default_on` (default) or `default_off`: only requests that say
    /// `cache: {use-cache: true}` are cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The other stores' settings (`s3_bucket_name`, `sentinel_nodes`,
    /// `similarity_threshold`…): kept so that one warning names the store,
    /// not one per setting of a store that is not implemented. Never
    /// serialized: they may hold a store's credentials.
    #[serde(flatten, default, skip_serializing)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Where cached answers are kept, of the stores this gateway implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStore {
    /// In this instance's memory (`type: local`).
    Local,
    /// In one Redis server, shared by every instance on it (`type: redis`).
    Redis,
}

/// LiteLLM's `type: redis` settings for more than one server (Sentinel,
/// Cluster): not implemented, so such a cache caches nothing rather than
/// guess a server.
const REDIS_TOPOLOGY_SETTINGS: [&str; 5] =
    ["service_name", "sentinel_nodes", "sentinel_password", "startup_nodes", "redis_startup_nodes"];

impl CacheParams {
    /// The store these settings ask for, `None` for one not implemented.
    pub fn store(&self) -> Option<CacheStore> {
        match self.kind.as_deref().unwrap_or("local") {
            "local" => Some(CacheStore::Local),
            "redis" if self.redis_topology().is_none() => Some(CacheStore::Redis),
            _ => None,
        }
    }

    /// The first Sentinel or Cluster setting given, if any.
    fn redis_topology(&self) -> Option<&'static str> {
        REDIS_TOPOLOGY_SETTINGS.into_iter().find(|k| self.other.contains_key(*k))
    }
}

impl LitellmSettings {
    /// The callbacks in force, each with the setting it came from (so a
    /// warning can name it).
    pub(crate) fn all_callbacks(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.callbacks
            .iter()
            .map(|c| ("callbacks", c.as_str()))
            .chain(self.success_callback.iter().map(|c| ("success_callback", c.as_str())))
            .chain(self.failure_callback.iter().map(|c| ("failure_callback", c.as_str())))
    }
}

/// A list of names, or one name alone (`callbacks: otel`), as LiteLLM
/// takes either.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// LiteLLM's `router_settings.retry_policy`: how many more deployments to
/// try after each kind of failure. Client errors (bad request,
/// authentication, content policy) are never retried, whatever it says: the
/// provider would refuse the same request again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RetryPolicy {
    #[serde(rename = "TimeoutErrorRetries", default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    #[serde(rename = "RateLimitErrorRetries", default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(rename = "InternalServerErrorRetries", default, skip_serializing_if = "Option::is_none")]
    pub internal_server: Option<u32>,
    #[serde(rename = "BadRequestErrorRetries", default, skip_serializing_if = "Option::is_none")]
    pub bad_request: Option<u32>,
    #[serde(rename = "AuthenticationErrorRetries", default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<u32>,
    #[serde(rename = "ContentPolicyViolationErrorRetries", default, skip_serializing_if = "Option::is_none")]
    pub content_policy: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ConfigKey {
    pub key: String,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "yaml11::opt_f64")]
    pub max_budget: Option<f64>,
    /// Also accepted as `rpm_limit` (LiteLLM's name, as `/key/generate` takes it).
    #[serde(
        default,
        alias = "rpm_limit",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "yaml11::opt_u64"
    )]
    pub rpm: Option<u64>,
    /// Also accepted as `tpm_limit`.
    #[serde(
        default,
        alias = "tpm_limit",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "yaml11::opt_u64"
    )]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// A deployment's `litellm_credential_name` that no `credential_list` entry
/// has (the deployment is unavailable with this as the reason).
#[derive(Debug, Clone, PartialEq, Error)]
#[error("litellm_credential_name `{name}` is not in credential_list")]
pub(crate) struct UnknownCredential {
    pub name: String,
}

/// Fills the credential fields a deployment leaves unset from the
/// `credential_list` entry it names.
fn apply_credential(p: &mut LitellmParams, credentials: &[Credential]) -> Result<(), UnknownCredential> {
    let Some(name) = p.litellm_credential_name.as_deref() else {
        return Ok(());
    };
    let Some(c) = credentials.iter().find(|c| c.credential_name == name) else {
        return Err(UnknownCredential { name: name.to_string() });
    };
    for (k, v) in &c.credential_values {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        let slot = match k.as_str() {
            "api_key" => &mut p.api_key,
            "api_base" => &mut p.api_base,
            "api_version" => &mut p.api_version,
            "aws_access_key_id" => &mut p.aws_access_key_id,
            "aws_secret_access_key" => &mut p.aws_secret_access_key,
            "aws_session_token" => &mut p.aws_session_token,
            "aws_region_name" => &mut p.aws_region_name,
            "aws_bedrock_runtime_endpoint" => &mut p.aws_bedrock_runtime_endpoint,
            "vertex_project" => &mut p.vertex_project,
            "vertex_location" => &mut p.vertex_location,
            "vertex_credentials" => &mut p.vertex_credentials,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(text);
        }
    }
    Ok(())
}

/// YAML 1.1 forms that LiteLLM's PyYAML reads and a YAML 1.2 parser does
/// not: `20_000` is a number there, a string here.
mod yaml11 {
    use serde::de::{self, Deserializer, Visitor};
    use serde::Deserialize;
    use std::collections::BTreeMap;
    use std::fmt;

    /// `20_000` → `20000`; `None` unless the text is digits with `_`
    /// separators and at most one `.` (YAML 1.1's int and float forms).
    fn digits(s: &str) -> Option<String> {
        let t = s.trim();
        let ok = t.bytes().next().is_some_and(|b| b.is_ascii_digit())
            && t.bytes().all(|b| b.is_ascii_digit() || b == b'_' || b == b'.')
            && t.bytes().filter(|b| *b == b'.').count() <= 1;
        ok.then(|| t.replace('_', ""))
    }

    /// A visitor, not an untagged enum: errors then point at the value itself
    /// (field path and line), as every other type error in the file does.
    struct Num {
        whole: bool,
    }

    impl<'de> Visitor<'de> for Num {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(if self.whole { "a whole number (e.g. 20000 or 20_000)" } else { "a number" })
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            if self.whole && v < 0 {
                return Err(E::invalid_value(de::Unexpected::Signed(v), &self));
            }
            Ok(Some(v as f64))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if self.whole && (v < 0.0 || v.fract() != 0.0) {
                return Err(E::invalid_value(de::Unexpected::Float(v), &self));
            }
            Ok(Some(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let parsed = digits(v).and_then(|t| t.parse::<f64>().ok());
            match parsed {
                Some(n) if !self.whole || n.fract() == 0.0 => Ok(Some(n)),
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }
    }

    pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(d.deserialize_option(Num { whole: true })?.map(|f| f as u64))
    }

    pub(crate) fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_option(Num { whole: false })
    }

    /// `NAME: value` pairs; a `NAME:` with no value is left out (LiteLLM
    /// would set the text "None").
    pub(crate) fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
        let raw = BTreeMap::<String, Option<serde_json::Value>>::deserialize(d)?;
        Ok(raw
            .into_iter()
            .filter_map(|(k, v)| match v? {
                serde_json::Value::String(s) => Some((k, s)),
                serde_json::Value::Null => None,
                other => Some((k, other.to_string())),
            })
            .collect())
    }
}

/// A parsed config plus the warnings it produced.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        Self::parse(&text, &file)
    }

    /// Parses YAML text; `file` is used in messages only.
    pub fn parse(text: &str, file: &str) -> Result<LoadedConfig, ConfigError> {
        let mut unknown = Vec::new();
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let mut config: Config = match serde_ignored::deserialize(de, |path| unknown.push(path.to_string())) {
            Ok(c) => c,
            Err(e) => return Err(all_type_errors(text, file, e)),
        };
        let mut warnings: Vec<String> =
            unknown.into_iter().map(|k| format!("{file}: unknown key `{k}` is ignored")).collect();
        for (i, d) in config.model_list.iter_mut().enumerate() {
            if d.litellm_params.model.trim().is_empty() {
                d.unavailable = Some("no `litellm_params.model`: nothing says where to send its requests".into());
                warnings.push(format!(
                    "{file}: model_list[{i}] ({}): no `litellm_params.model`; the deployment is unavailable",
                    d.model_name
                ));
            }
            let p = &mut d.litellm_params;
            p.rpm = p.rpm.or(d.rpm);
            p.tpm = p.tpm.or(d.tpm);
        }
        config.validate(file, &mut warnings).map_err(|e| with_lines(text, e))?;
        Ok(LoadedConfig { config, warnings })
    }

    fn validate(&self, file: &str, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
        // Every check runs; the errors are returned together.
        let errors = std::cell::RefCell::new(Vec::<(String, String)>::new());
        let field_err = |field: String, message: String| {
            errors.borrow_mut().push((field, message));
        };
        for check in self.router_settings.optional_pre_call_checks.iter().flatten() {
            if check != "responses_api_deployment_check" {
                warnings.push(format!(
                    "{file}: router_settings.optional_pre_call_checks: `{check}` is not implemented and is ignored \
                     (responses_api_deployment_check is always on)"
                ));
            }
        }
        if let Some(p) = &self.router_settings.retry_policy {
            for (name, n) in [
                ("BadRequestErrorRetries", p.bad_request),
                ("AuthenticationErrorRetries", p.authentication),
                ("ContentPolicyViolationErrorRetries", p.content_policy),
            ] {
                if n.is_some_and(|n| n > 0) {
                    warnings.push(format!(
                        "{file}: router_settings.retry_policy.{name} is ignored: a request the provider refused is \
                         never sent again (it would be refused again)"
                    ));
                }
            }
        }
        for (i, d) in self.model_list.iter().enumerate() {
            if d.model_name.trim().is_empty() {
                field_err(format!("model_list[{i}].model_name"), "must not be empty".into());
            }
            for (name, v) in [
                ("timeout", d.litellm_params.timeout),
                ("stream_timeout", d.litellm_params.stream_timeout),
                ("connect_timeout", d.litellm_params.connect_timeout),
            ] {
                if let Some(v) = v {
                    if !(v.is_finite() && v > 0.0) {
                        field_err(
                            format!("model_list[{i}].litellm_params.{name}"),
                            format!("must be a positive number of seconds, got {v}"),
                        );
                    }
                }
            }
            let own = [
                ("input_cost_per_token", d.litellm_params.input_cost_per_token),
                ("output_cost_per_token", d.litellm_params.output_cost_per_token),
                ("cache_read_input_token_cost", d.litellm_params.cache_read_input_token_cost),
                ("cache_creation_input_token_cost", d.litellm_params.cache_creation_input_token_cost),
            ];
            for (name, v) in own {
                if let Some(v) = v.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                    field_err(
                        format!("model_list[{i}].litellm_params.{name}"),
                        format!("must be a price in USD per token, 0 or more, got {v}"),
                    );
                }
            }
        }
        if let Some(p) = &self.general_settings.server_root_path {
            if let Err(m) = normalize_root_path(p) {
                field_err("general_settings.server_root_path".into(), m.to_string());
            }
        }
        if let Some(t) = self.general_settings.header_read_timeout_secs {
            if !(t.is_finite() && t > 0.0 && t <= 3600.0) {
                field_err(
                    "general_settings.header_read_timeout_secs".into(),
                    format!("must be a number of seconds above 0 and at most 3600, got {t}"),
                );
            }
        }
        if self.general_settings.max_connections == Some(0) {
            field_err("general_settings.max_connections".into(), "must be at least 1".into());
        }
        if let Some(kb) = self.general_settings.max_header_size_kb {
            if !(8..=1024).contains(&kb) {
                field_err(
                    "general_settings.max_header_size_kb".into(),
                    format!("must be from 8 to 1024 (KiB), got {kb}"),
                );
            }
        }
        if let Some(mb) = self.general_settings.max_upstream_response_mb {
            if !(mb.is_finite() && mb > 0.0 && mb <= 4096.0) {
                field_err(
                    "general_settings.max_upstream_response_mb".into(),
                    format!("must be a number of MiB above 0 and at most 4096, got {mb}"),
                );
            }
        }
        if let Some(t) = self.router_settings.retry_after {
            if !(t.is_finite() && (0.0..=60.0).contains(&t)) {
                field_err(
                    "router_settings.retry_after".into(),
                    format!("must be a number of seconds from 0 to 60, got {t}"),
                );
            }
        }
        if let Some(t) = self.general_settings.max_stream_duration_secs {
            if !(t.is_finite() && t > 0.0 && t <= 86_400.0) {
                field_err(
                    "general_settings.max_stream_duration_secs".into(),
                    format!("must be a number of seconds above 0 and at most 86400, got {t}"),
                );
            }
        }
        if let Some(t) = self.general_settings.upstream_idle_timeout_secs {
            if !(t.is_finite() && t > 0.0 && t <= 3600.0) {
                field_err(
                    "general_settings.upstream_idle_timeout_secs".into(),
                    format!("must be a number of seconds above 0 and at most 3600, got {t}"),
                );
            }
        }
        if let Some(mb) = self.general_settings.max_request_size_mb {
            if !(mb.is_finite() && mb > 0.0) {
                field_err(
                    "general_settings.max_request_size_mb".into(),
                    format!("must be a positive number, got {mb}"),
                );
            }
        }
        if let Some(r) = self.general_settings.model_cost_map_max_shrink_ratio {
            if !(0.0..=1.0).contains(&r) {
                field_err(
                    "general_settings.model_cost_map_max_shrink_ratio".into(),
                    format!("must be between 0 and 1, got {r}"),
                );
            }
        }
        if let Some(s) = &self.router_settings.routing_strategy {
            if !matches!(s.as_str(), "simple-shuffle" | "usage-based-routing" | "usage-based-routing-v2") {
                warnings.push(format!(
                    "{file}: router_settings.routing_strategy `{s}` is not implemented; using round robin \
                     over the deployments under their rpm/tpm"
                ));
            }
        }
        for (field, name) in self.litellm_settings.all_callbacks() {
            if !matches!(name, "otel" | "prometheus") {
                warnings.push(format!(
                    "{file}: litellm_settings.{field} `{name}` is not implemented; only `otel` (OpenTelemetry \
                     traces) is, and `prometheus` (`/metrics`) is always on"
                ));
            }
        }
        if let Err((field, message)) = self.validate_cache(file, warnings) {
            field_err(field, message);
        }
        for (i, k) in self.keys.iter().enumerate() {
            if k.key.len() < 8 {
                field_err(format!("keys[{i}].key"), "must be at least 8 characters".into());
            }
        }
        let errors = errors.into_inner();
        match errors.len() {
            0 => Ok(()),
            1 => {
                let (field, message) = errors.into_iter().next().unwrap_or_default();
                Err(ConfigError::Field { file: file.to_string(), field, message })
            }
            _ => Err(ConfigError::Many {
                file: file.to_string(),
                errors: errors.into_iter().map(|(field, message)| format!("{field}: {message}")).collect(),
            }),
        }
    }

    /// `litellm_settings.cache`/`cache_params`: a value that cannot work is an
    /// error; what is not implemented (another store, a call type that is
    /// not cached here) is a warning, and such a store caches nothing.
    fn validate_cache(&self, file: &str, warnings: &mut Vec<String>) -> Result<(), (String, String)> {
        let l = &self.litellm_settings;
        let Some(p) = &l.cache_params else { return Ok(()) };
        if l.cache != Some(true) {
            warnings.push(format!(
                "{file}: litellm_settings.cache_params is ignored: responses are cached only with \
                 litellm_settings.cache: true"
            ));
            return Ok(());
        }
        let kind = p.kind.as_deref().unwrap_or("local");
        let Some(store) = p.store() else {
            warnings.push(match p.redis_topology() {
                Some(setting) => format!(
                    "{file}: litellm_settings.cache_params.type `{kind}` is not implemented over Redis Sentinel or \
                     Cluster (`{setting}`); responses are not cached (`type: redis` takes one server: `host`, \
                     `port`, `password`)"
                ),
                None => format!(
                    "{file}: litellm_settings.cache_params.type `{kind}` is not implemented; responses are not \
                     cached (only `type: local`, in memory, and `type: redis` are)"
                ),
            });
            return Ok(());
        };
        for (name, v) in [("ttl", p.ttl), ("default_in_memory_ttl", p.default_in_memory_ttl)] {
            if let Some(v) =
                v.filter(|v| !(v.is_finite() && *v > 0.0 && *v <= crate::gateway::response_cache::MAX_TTL_SECS))
            {
                return Err((
                    format!("litellm_settings.cache_params.{name}"),
                    format!(
                        "must be a number of seconds above 0 and at most {}, got {v}",
                        crate::gateway::response_cache::MAX_TTL_SECS
                    ),
                ));
            }
        }
        if let Some(m) = p.mode.as_deref().filter(|m| !matches!(*m, "default_on" | "default_off")) {
            return Err((
                "litellm_settings.cache_params.mode".into(),
                format!("must be `default_on` or `default_off`, got `{m}`"),
            ));
        }
        for name in p.supported_call_types.iter().flatten() {
            if crate::gateway::response_cache::CallType::from_litellm(name).is_none() {
                warnings.push(format!(
                    "{file}: litellm_settings.cache_params.supported_call_types: `{name}` is not cached by this \
                     gateway (only chat completions, text completions, embeddings and the Responses API are)"
                ));
            }
        }
        let (ignored_by, ignored): (&str, Vec<&str>) = match store {
            CacheStore::Local => (
                "the in-memory cache (`type: local`)",
                [("host", p.host.is_some()), ("port", p.port.is_some()), ("password", p.password.is_some())]
                    .into_iter()
                    .filter_map(|(name, set)| set.then_some(name))
                    .collect(),
            ),
            // LiteLLM's Redis cache reads `ttl` alone; `default_in_memory_ttl`
            // is for its in-memory layers.
            CacheStore::Redis => (
                "the Redis cache (`type: redis`)",
                p.default_in_memory_ttl.is_some().then_some("default_in_memory_ttl").into_iter().collect(),
            ),
        };
        for name in ignored.into_iter().chain(p.other.keys().map(String::as_str)) {
            warnings.push(format!("{file}: litellm_settings.cache_params.{name} is ignored by {ignored_by}"));
        }
        Ok(())
    }

    /// Resolves `os.environ/NAME` references in every secret-bearing field.
    /// A missing variable is an error naming the field and the variable.
    pub fn resolve_env(&mut self, file: &str) -> Result<(), ConfigError> {
        let overlay = self.environment_variables.clone();
        let env = |name: &str| overlay.get(name).cloned().or_else(|| std::env::var(name).ok());
        let resolve = |field: String, v: &mut Option<String>| -> Result<(), ConfigError> {
            if let Some(s) = v.as_deref() {
                if let Some(name) = s.strip_prefix("os.environ/") {
                    match env(name) {
                        Some(val) => *v = Some(val),
                        None => {
                            return Err(ConfigError::Field {
                                file: file.to_string(),
                                field,
                                message: format!("environment variable `{name}` is not set"),
                            })
                        }
                    }
                }
            }
            Ok(())
        };
        let credentials = self.credential_list.clone();
        for (i, d) in self.model_list.iter_mut().enumerate() {
            if let Err(reason) = apply_credential(&mut d.litellm_params, &credentials) {
                d.unavailable.get_or_insert(reason.to_string());
            }
            let p = &mut d.litellm_params;
            let f = |n: &str| format!("model_list[{i}].litellm_params.{n}");
            // A variable missing for one deployment makes that deployment
            // unavailable (with the reason), not the whole file: LiteLLM
            // starts too, and fails those calls.
            let fields: [(&str, &mut Option<String>); 11] = [
                ("api_base", &mut p.api_base),
                ("api_key", &mut p.api_key),
                ("api_version", &mut p.api_version),
                ("aws_access_key_id", &mut p.aws_access_key_id),
                ("aws_secret_access_key", &mut p.aws_secret_access_key),
                ("aws_session_token", &mut p.aws_session_token),
                ("aws_region_name", &mut p.aws_region_name),
                ("aws_bedrock_runtime_endpoint", &mut p.aws_bedrock_runtime_endpoint),
                ("vertex_project", &mut p.vertex_project),
                ("vertex_location", &mut p.vertex_location),
                ("vertex_credentials", &mut p.vertex_credentials),
            ];
            for (name, v) in fields {
                if let Err(e) = resolve(f(name), v) {
                    let reason = match e {
                        ConfigError::Field { field, message, .. } => format!("{field}: {message}"),
                        other => other.to_string(),
                    };
                    // Never leave an unresolved reference to be sent as a credential.
                    *v = None;
                    d.unavailable.get_or_insert(reason);
                }
            }
        }
        let g = &mut self.general_settings;
        resolve("general_settings.master_key".into(), &mut g.master_key)?;
        // LiteLLM's Docker images take the master key from the environment.
        if g.master_key.is_none() {
            g.master_key = env("LITELLM_MASTER_KEY");
        }
        // An empty master key would match an empty `Authorization:` header
        // and make every caller an admin: refuse to start instead.
        if g.master_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(ConfigError::Field {
                file: file.to_string(),
                field: "general_settings.master_key".into(),
                message: "is empty; set a non-empty key or remove the setting".into(),
            });
        }
        resolve("general_settings.model_cost_map".into(), &mut g.model_cost_map)?;
        resolve("general_settings.anthropic_beta_headers".into(), &mut g.anthropic_beta_headers)?;
        resolve("general_settings.database_path".into(), &mut g.database_path)?;
        resolve("general_settings.database_url".into(), &mut g.database_url)?;
        // LiteLLM's proxy takes its database from the environment too.
        if g.database_url.is_none() {
            g.database_url = env("DATABASE_URL").filter(|u| !u.trim().is_empty());
        }
        for (i, k) in self.keys.iter_mut().enumerate() {
            let mut v = Some(k.key.clone());
            resolve(format!("keys[{i}].key"), &mut v)?;
            k.key = v.unwrap_or_default();
        }
        // A Redis port is a number, or a string that may name a variable.
        let resolve_port = |field: &str, port: &mut Option<serde_json::Value>| -> Result<(), ConfigError> {
            if let Some(serde_json::Value::String(s)) = port {
                let mut v = Some(s.clone());
                resolve(field.into(), &mut v)?;
                *port = v.map(serde_json::Value::String);
            }
            Ok(())
        };
        let r = &mut self.router_settings;
        resolve("router_settings.redis_host".into(), &mut r.redis_host)?;
        resolve("router_settings.redis_password".into(), &mut r.redis_password)?;
        resolve("router_settings.redis_url".into(), &mut r.redis_url)?;
        resolve_port("router_settings.redis_port", &mut r.redis_port)?;
        if let Some(c) = self.litellm_settings.cache_params.as_mut() {
            resolve("litellm_settings.cache_params.host".into(), &mut c.host)?;
            resolve("litellm_settings.cache_params.password".into(), &mut c.password)?;
            resolve_port("litellm_settings.cache_params.port", &mut c.port)?;
        }
        Ok(())
    }

    /// Where Redis is, if anywhere: `router_settings.redis_url`, else
    /// `redis_host` (with `redis_port`, `redis_password`), else the same
    /// from `REDIS_URL`, `REDIS_HOST`, `REDIS_PORT`, `REDIS_PASSWORD`. Run
    /// after [`Config::resolve_env`]. A setting that cannot be used refuses
    /// the start, naming the field (never the password).
    pub(crate) fn redis_target(&self, file: &str) -> Result<Option<RedisTarget>, ConfigError> {
        let r = &self.router_settings;
        let parts = |host_field, host: &str| {
            self.redis_parts(
                (host_field, host),
                ("router_settings.redis_port", &r.redis_port),
                r.redis_password.as_deref(),
            )
        };
        let target = if let Some(url) = &r.redis_url {
            Some(RedisTarget::from_url("router_settings.redis_url", url))
        } else if let Some(host) = &r.redis_host {
            Some(parts("router_settings.redis_host", host))
        } else if let Some(url) = self.redis_env("REDIS_URL") {
            Some(RedisTarget::from_url("REDIS_URL", &url))
        } else {
            self.redis_env("REDIS_HOST").map(|host| parts("REDIS_HOST", &host))
        };
        target.transpose().map_err(|e| e.into_config_error(file))
    }

    /// Where `litellm_settings.cache_params.type: redis` keeps its answers,
    /// `None` when the cache is not on Redis: `cache_params.host` with its
    /// `port` and `password` (else `REDIS_PORT`, `REDIS_PASSWORD`, as LiteLLM
    /// reads them; a `port` or `password` without `host` takes `REDIS_HOST`),
    /// else the Redis of [`Config::redis_target`]. Run after
    /// [`Config::resolve_env`]. No Redis anywhere, or a setting that cannot
    /// be used, refuses the start naming the setting (never the password).
    pub(crate) fn cache_redis_target(&self, file: &str) -> Result<Option<RedisTarget>, ConfigError> {
        let l = &self.litellm_settings;
        let Some(p) = l.cache_params.as_ref().filter(|p| l.cache == Some(true) && p.store() == Some(CacheStore::Redis))
        else {
            return Ok(None);
        };
        const HOST: &str = "litellm_settings.cache_params.host";
        let own = p.host.is_some() || p.port.is_some() || p.password.is_some();
        let host = match &p.host {
            Some(h) => Some((HOST, h.clone())),
            None if own => self.redis_env("REDIS_HOST").map(|h| ("REDIS_HOST", h)),
            None => None,
        };
        let target = match host {
            Some((field, host)) => Some(
                self.redis_parts(
                    (field, &host),
                    ("litellm_settings.cache_params.port", &p.port),
                    p.password.as_deref(),
                )
                .map_err(|e| e.into_config_error(file))?,
            ),
            None if own => {
                return Err(ConfigError::Field {
                    file: file.to_string(),
                    field: HOST.into(),
                    message: "is not set (nor REDIS_HOST): cache_params.port and password need a host".into(),
                })
            }
            None => self.redis_target(file)?,
        };
        target.map(Some).ok_or_else(|| ConfigError::Field {
            file: file.to_string(),
            field: "litellm_settings.cache_params.type".into(),
            message: "`redis` needs a Redis: set cache_params.host (with port and password), \
                      router_settings.redis_url or redis_host, or REDIS_URL or REDIS_HOST"
                .into(),
        })
    }

    /// A Redis variable, if set and not blank.
    fn redis_env(&self, name: &str) -> Option<String> {
        self.env_var(name).filter(|v| !v.trim().is_empty())
    }

    /// A Redis given as host, port and password (LiteLLM's settings): the
    /// port is the setting's (a number or a string), else `REDIS_PORT`, else
    /// 6379; the password the setting's, else `REDIS_PASSWORD`.
    fn redis_parts(
        &self,
        (host_field, host): (&'static str, &str),
        (port_field, port): (&'static str, &Option<serde_json::Value>),
        password: Option<&str>,
    ) -> Result<RedisTarget, crate::gateway::redis_link::RedisConfigError> {
        let port = match port {
            Some(serde_json::Value::String(s)) => Some((port_field, s.clone())),
            Some(serde_json::Value::Null) | None => self.redis_env("REDIS_PORT").map(|p| ("REDIS_PORT", p)),
            Some(other) => Some((port_field, other.to_string())),
        };
        let password = password.map(str::to_string).or_else(|| self.redis_env("REDIS_PASSWORD"));
        RedisTarget::from_parts(host_field, host, port.as_ref().map(|(f, p)| (*f, p.as_str())), password.as_deref())
    }

    /// An environment variable as this config sees it: its own
    /// `environment_variables` laid over the process environment (as
    /// LiteLLM's, which sets them into `os.environ` at start-up). The process
    /// environment is never written: gateways built in one process (the
    /// harness runs many in parallel) must not see each other's variables.
    pub(crate) fn env_var(&self, name: &str) -> Option<String> {
        self.environment_variables.get(name).cloned().or_else(|| std::env::var(name).ok())
    }

    /// The fallback, alias and cooldown settings in force: `router_settings`
    /// where it sets one, else `litellm_settings`.
    pub fn reliability(&self) -> Reliability {
        let (r, l) = (&self.router_settings, &self.litellm_settings);
        Reliability {
            fallbacks: r.fallbacks.clone().or_else(|| l.fallbacks.clone()),
            context_window_fallbacks: r.context_window_fallbacks.clone().or_else(|| l.context_window_fallbacks.clone()),
            content_policy_fallbacks: r.content_policy_fallbacks.clone().or_else(|| l.content_policy_fallbacks.clone()),
            default_fallbacks: r.default_fallbacks.clone().or_else(|| l.default_fallbacks.clone()),
            model_group_alias: r.model_group_alias.clone().or_else(|| l.model_group_alias.clone()),
            allowed_fails: r.allowed_fails.or(l.allowed_fails),
            cooldown_time: r.cooldown_time.or(l.cooldown_time),
            disable_cooldowns: r.disable_cooldowns.or(l.disable_cooldowns),
        }
    }

    /// The root path in force: the config's, else the env `SERVER_ROOT_PATH`.
    pub(crate) fn root_path(&self) -> Result<String, ConfigError> {
        let raw = match &self.general_settings.server_root_path {
            Some(p) => p.clone(),
            None => self.env_var("SERVER_ROOT_PATH").unwrap_or_default(),
        };
        normalize_root_path(&raw).map_err(|e| ConfigError::Field {
            file: "SERVER_ROOT_PATH".into(),
            field: "server_root_path".into(),
            message: e.to_string(),
        })
    }

    pub(crate) fn max_body_bytes(&self) -> usize {
        let mb = self.general_settings.max_request_size_mb.unwrap_or(10.0);
        (mb * 1024.0 * 1024.0) as usize
    }
}

/// A server root path that cannot be a URL path prefix.
#[derive(Debug, Clone, PartialEq, Error)]
pub(crate) enum RootPathError {
    /// Whitespace, `?`, `#`, `*`, `{` or `}`.
    #[error("`{raw}` is not a valid path prefix")]
    Characters { raw: String },
    #[error("`{raw}` has an empty or relative segment")]
    Segment { raw: String },
}

/// `""`, `"/"` -> `""`; `"llmproxy/"` -> `"/llmproxy"`; rejects characters
/// that cannot be a path.
pub(crate) fn normalize_root_path(raw: &str) -> Result<String, RootPathError> {
    let trimmed = raw.trim().trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed.chars().any(|c| c.is_whitespace() || c == '?' || c == '#' || c == '*' || c == '{' || c == '}') {
        return Err(RootPathError::Characters { raw: raw.to_string() });
    }
    if trimmed.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(RootPathError::Segment { raw: raw.to_string() });
    }
    Ok(format!("/{trimmed}"))
}

pub fn secs(v: Option<f64>) -> Option<Duration> {
    v.map(Duration::from_secs_f64)
}

/// Puts the line of each field into a validation error.
fn with_lines(text: &str, e: ConfigError) -> ConfigError {
    match e {
        ConfigError::Field { file, field, message } => match line_of(text, &field) {
            Some(n) => ConfigError::Field { file, field: format!("line {n}: {field}"), message },
            None => ConfigError::Field { file, field, message },
        },
        ConfigError::Many { file, errors } => ConfigError::Many {
            file,
            errors: errors
                .into_iter()
                .map(|e| match e.split_once(": ").and_then(|(f, _)| line_of(text, f)) {
                    Some(n) => format!("line {n}: {e}"),
                    None => e,
                })
                .collect(),
        },
        other => other,
    }
}

/// Every type error in the file, not just the first serde meets: the
/// first comes with its line; then each `model_list` entry and each other
/// top-level section is read on its own, and its errors get the line found
/// by [`line_of`]. A file that is not YAML at all has one error.
fn all_type_errors(text: &str, file: &str, first: serde_yaml_ng::Error) -> ConfigError {
    let invalid = |message: String| ConfigError::Invalid { file: file.to_string(), message };
    let Ok(serde_yaml_ng::Value::Mapping(doc)) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) else {
        return invalid(first.to_string());
    };
    // `path: message` of a serde_yaml_ng error, without its location.
    let split = |e: &serde_yaml_ng::Error| {
        let m = e.to_string();
        let m = m.split(" at line ").next().unwrap_or(&m).to_string();
        match m.split_once(": ") {
            Some((path, rest)) if !path.contains(' ') => (path.to_string(), rest.to_string()),
            _ => (String::new(), m),
        }
    };
    let mut found: Vec<(String, String)> = Vec::new();
    let mut check = |doc: serde_yaml_ng::Mapping, rename: &dyn Fn(String) -> String| {
        let Ok(sub) = serde_yaml_ng::to_string(&doc) else { return };
        if let Err(e) = serde_yaml_ng::from_str::<Config>(&sub) {
            let (path, message) = split(&e);
            let path = rename(path);
            if !found.iter().any(|(p, _)| *p == path) {
                found.push((path, message));
            }
        }
    };
    for (key, value) in &doc {
        let Some(name) = key.as_str() else { continue };
        match (name, value) {
            ("model_list", serde_yaml_ng::Value::Sequence(entries)) => {
                for (i, entry) in entries.iter().enumerate() {
                    let mut one = serde_yaml_ng::Mapping::new();
                    one.insert(key.clone(), serde_yaml_ng::Value::Sequence(vec![entry.clone()]));
                    check(one, &|p| p.replacen("model_list[0]", &format!("model_list[{i}]"), 1));
                }
            }
            _ => {
                let mut one = serde_yaml_ng::Mapping::new();
                one.insert(key.clone(), value.clone());
                check(one, &|p| p);
            }
        }
    }
    if found.len() <= 1 {
        return invalid(first.to_string());
    }
    let errors = found
        .into_iter()
        .map(|(path, message)| match line_of(text, &path) {
            Some(line) => format!("line {line}: {path}: {message}"),
            None if path.is_empty() => message,
            None => format!("{path}: {message}"),
        })
        .collect();
    ConfigError::Many { file: file.to_string(), errors }
}

/// The line (1-based) where a path such as `model_list[2].litellm_params.rpm`
/// is written, in block or flow style: keys are looked for under their
/// parent's lines, `[i]` is the i-th `- ` item; a key inside a one-line flow
/// mapping is on that line.
fn line_of(text: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let (mut from, mut to, mut parent) = (0usize, lines.len(), None::<usize>);
    let mut at = None;
    for seg in path.split('.') {
        let (key, index) = match seg.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if !key.is_empty() {
            let i = (from..to).find(|&i| {
                let l = lines[i];
                let t = l.trim_start().trim_start_matches("- ");
                (parent.is_none_or(|p| indent(l) > p) && t.starts_with(&format!("{key}:")))
                    || (at == Some(i) && l.contains(&format!("{key}:")))
            })?;
            if at == Some(i) {
                // In a flow mapping on the line found so far.
                continue;
            }
            at = Some(i);
            let own = indent(lines[i]);
            to = (i + 1..to).find(|&j| !lines[j].trim().is_empty() && indent(lines[j]) <= own).unwrap_or(to);
            from = i;
            parent = Some(own);
        }
        if let Some(n) = index {
            let items: Vec<usize> = (from + 1..to).filter(|&i| lines[i].trim_start().starts_with("- ")).collect();
            let item_indent = items.iter().map(|&i| indent(lines[i])).min()?;
            let mine: Vec<usize> = items.into_iter().filter(|&i| indent(lines[i]) == item_indent).collect();
            let i = *mine.get(n)?;
            to = mine.get(n + 1).copied().unwrap_or(to);
            from = i;
            at = Some(i);
            parent = Some(item_indent);
        }
    }
    at.map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_of_a_file_is_reported_at_once_with_its_line() {
        let types = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/gpt-4o, rpm: lots}\n  - model_name: b\n    litellm_params:\n      model: openai/gpt-4o\n      tpm: some\nrouter_settings:\n  num_retries: many\n";
        let e = Config::parse(types, "c.yaml").unwrap_err().to_string();
        assert!(e.starts_with("c.yaml: 3 errors:"), "{e}");
        for want in [
            "line 3: model_list[0].litellm_params.rpm:",
            "line 7: model_list[1].litellm_params.tpm:",
            "line 9: router_settings.num_retries:",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
        let values = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/gpt-4o, timeout: 0}\n  - model_name: \"\"\n    litellm_params: {model: openai/gpt-4o}\ngeneral_settings:\n  max_connections: 0\n";
        let e = Config::parse(values, "c.yaml").unwrap_err().to_string();
        for want in [
            "line 3: model_list[0].litellm_params.timeout: must be a positive number",
            "line 4: model_list[1].model_name: must not be empty",
            "line 7: general_settings.max_connections: must be at least 1",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
        // One error alone keeps serde's own line and column.
        let one = Config::parse(
            "model_list:\n  - model_name: a\n    litellm_params: {model: openai/x, rpm: lots}\n",
            "c.yaml",
        );
        assert!(one.unwrap_err().to_string().contains("at line 3 column"));
    }

    #[test]
    fn a_path_is_found_in_block_and_flow_style() {
        let text = "general_settings:\n  master_key: x\nmodel_list:\n  - model_name: a\n    litellm_params: {model: m, rpm: 1}\n  - model_name: b\n    litellm_params:\n      model: m\n      rpm: 2\n";
        assert_eq!(line_of(text, "general_settings.master_key"), Some(2));
        assert_eq!(line_of(text, "model_list[0].litellm_params.rpm"), Some(5));
        assert_eq!(line_of(text, "model_list[1].model_name"), Some(6));
        assert_eq!(line_of(text, "model_list[1].litellm_params.rpm"), Some(9));
        assert_eq!(line_of(text, "model_list[2].model_name"), None);
        assert_eq!(line_of(text, "router_settings.num_retries"), None);
    }

    #[test]
    fn parses_litellm_style_config_and_warns_on_unknown_keys() {
        let text = r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: sk-test
      rpm: 10
      surprise: 1
general_settings:
  master_key: sk-master-1234
  database_connection_pool_limit: 10
litellm_settings:
  drop_params: true
"#;
        let loaded = Config::parse(text, "c.yaml").unwrap();
        assert_eq!(loaded.config.model_list[0].litellm_params.rpm, Some(10));
        assert!(loaded.config.litellm_settings.drop_params);
        let w = loaded.warnings.join("\n");
        assert!(w.contains("model_list.0.litellm_params.surprise"), "{w}");
        assert!(w.contains("general_settings.database_connection_pool_limit"), "{w}");
    }

    #[test]
    fn routing_strategies_that_are_not_round_robin_with_limits_warn() {
        let config = |strategy: &str| {
            format!("model_list: []\nrouter_settings: {{routing_strategy: {strategy}, enable_pre_call_checks: true}}\n")
        };
        for known in ["simple-shuffle", "usage-based-routing", "usage-based-routing-v2"] {
            assert!(Config::parse(&config(known), "c.yaml").unwrap().warnings.is_empty(), "{known}");
        }
        let w = Config::parse(&config("latency-based-routing"), "c.yaml").unwrap().warnings.join("\n");
        assert!(w.contains("`latency-based-routing` is not implemented"), "{w}");
    }

    #[test]
    fn type_errors_name_file_field_and_line() {
        let text = "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n      rpm: lots\n";
        let err = Config::parse(text, "bad.yaml").unwrap_err().to_string();
        assert!(err.contains("bad.yaml"), "{err}");
        assert!(err.contains("rpm"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn a_bare_model_name_parses_and_a_missing_model_is_unavailable() {
        let text = "model_list:\n  - model_name: a\n    litellm_params:\n      model: gpt-4o\n  - model_name: b\n";
        let loaded = Config::parse(text, "c.yaml").unwrap();
        assert_eq!(loaded.config.model_list[0].litellm_params.model, "gpt-4o");
        assert!(loaded.config.model_list[0].unavailable.is_none());
        assert!(loaded.config.model_list[1]
            .unavailable
            .as_deref()
            .unwrap_or_default()
            .contains("litellm_params.model"));
        assert!(loaded.warnings.iter().any(|w| w.contains("model_list[1]")), "{:?}", loaded.warnings);
    }

    #[test]
    fn unknown_keys_beside_the_fallback_settings_still_warn() {
        let text = "router_settings: {fallbacks: [{a: [b]}], bogus_one: 1}\nlitellm_settings: {bogus_two: 2, cooldown_time: 1}\n";
        let w = Config::parse(text, "c.yaml").unwrap().warnings;
        assert!(w.iter().any(|w| w.contains("router_settings.bogus_one")), "{w:?}");
        assert!(w.iter().any(|w| w.contains("litellm_settings.bogus_two")), "{w:?}");
        assert_eq!(w.len(), 2, "{w:?}");
    }

    #[test]
    fn retry_policy_reads_litellms_names_and_says_which_kinds_never_retry() {
        let text = "router_settings:\n  retry_policy: {RateLimitErrorRetries: 3, InternalServerErrorRetries: 1, BadRequestErrorRetries: 2}\n";
        let loaded = Config::parse(text, "c.yaml").unwrap();
        let p = loaded.config.router_settings.retry_policy.unwrap();
        assert_eq!((p.rate_limit, p.internal_server, p.timeout), (Some(3), Some(1), None));
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("BadRequestErrorRetries is ignored"), "{:?}", loaded.warnings);
    }

    #[test]
    fn retry_after_is_a_wait_of_zero_to_sixty_seconds() {
        let ok = Config::parse("router_settings: {retry_after: 1.5}\n", "c.yaml").unwrap();
        assert_eq!(ok.config.router_settings.retry_after, Some(1.5));
        for bad in ["-1", "61", ".nan"] {
            let e = Config::parse(&format!("router_settings: {{retry_after: {bad}}}\n"), "c.yaml").unwrap_err();
            assert!(e.to_string().contains("router_settings.retry_after"), "{bad}: {e}");
        }
    }

    #[test]
    fn yaml_1_1_numbers_are_numbers_and_bad_ones_name_their_line() {
        let text = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, tpm: 20_000, rpm: '1_000', timeout: 2_5.5}\n";
        let p = &Config::parse(text, "c.yaml").unwrap().config.model_list[0].litellm_params;
        assert_eq!((p.tpm, p.rpm, p.timeout), (Some(20_000), Some(1_000), Some(25.5)));
        for bad in ["tpm: 1.5", "tpm: -3", "tpm: 2_000x", "timeout: soon"] {
            let text =
                format!("model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n      {bad}\n");
            let err = Config::parse(&text, "c.yaml").unwrap_err().to_string();
            assert!(err.contains("line 5") && err.contains(bad.split(':').next().unwrap()), "{bad}: {err}");
        }
    }

    #[test]
    fn the_example_config_parses_without_warnings() {
        let text = include_str!("../../fixtures/config.example.yaml");
        let loaded = Config::parse(text, "fixtures/config.example.yaml").unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.config.model_list.len(), 6);
        assert_eq!(loaded.config.keys[0].models, vec!["anthropic/*", "gpt-4o"]);
    }

    #[test]
    fn root_paths_normalize() {
        assert_eq!(normalize_root_path("").unwrap(), "");
        assert_eq!(normalize_root_path("/").unwrap(), "");
        assert_eq!(normalize_root_path("llmproxy/").unwrap(), "/llmproxy");
        assert_eq!(normalize_root_path("/api/v1/gateway").unwrap(), "/api/v1/gateway");
        assert!(normalize_root_path("/a//b").is_err());
        assert!(normalize_root_path("/a/../b").is_err());
    }

    #[test]
    fn env_indirection_resolves_and_reports_missing() {
        let text = "environment_variables: {PM_TEST_KEY_1: secret-value}\nmodel_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n      api_key: os.environ/PM_TEST_KEY_1\n  - model_name: b\n    litellm_params:\n      model: openai/b\n      api_key: os.environ/PM_TEST_MISSING_9\n";
        let mut c = Config::parse(text, "c.yaml").unwrap().config;
        c.resolve_env("c.yaml").expect("a deployment's missing variable does not refuse the file");
        let why = c.model_list[1].unavailable.clone().unwrap_or_default();
        assert!(why.contains("model_list[1].litellm_params.api_key"), "{why}");
        assert!(why.contains("PM_TEST_MISSING_9"), "{why}");
        assert_eq!(c.model_list[1].litellm_params.api_key, None, "never the unresolved reference");
        assert_eq!(c.model_list[0].litellm_params.api_key.as_deref(), Some("secret-value"));
        // In general_settings it still refuses: a master key must not fail open.
        let text = "general_settings: {master_key: os.environ/PM_TEST_MISSING_9}\n";
        let mut c = Config::parse(text, "c.yaml").unwrap().config;
        assert!(c.resolve_env("c.yaml").unwrap_err().to_string().contains("PM_TEST_MISSING_9"));
    }

    #[test]
    fn the_database_url_comes_from_the_setting_a_reference_or_database_url() {
        let resolved = |text: &str| {
            let mut c = Config::parse(text, "c.yaml").unwrap().config;
            c.resolve_env("c.yaml").map(|()| c.general_settings.database_url)
        };
        let url = "postgres://u:p@h/db";
        let overlay = format!("environment_variables: {{DATABASE_URL: '{url}', PM_TEST_DB_9: '{url}x'}}\n");
        assert_eq!(resolved(&overlay).unwrap().as_deref(), Some(url), "DATABASE_URL when the setting is absent");
        let reference = format!("{overlay}general_settings: {{database_url: os.environ/PM_TEST_DB_9}}\n");
        assert_eq!(resolved(&reference).unwrap(), Some(format!("{url}x")), "the setting wins");
        let missing = "general_settings: {database_url: os.environ/PM_TEST_MISSING_9}\n";
        assert!(resolved(missing).unwrap_err().to_string().contains("general_settings.database_url"));
        assert!(
            Config::parse("general_settings: {database_url: 'postgres://h/db'}\n", "c.yaml")
                .unwrap()
                .warnings
                .is_empty(),
            "database_url is implemented: no warning"
        );
    }
}
