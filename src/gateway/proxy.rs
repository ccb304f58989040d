//! The request path: parse, route, authorize, call the upstream, answer.
//!
//! One function per entry point (`chat_completions`, `embeddings`,
//! `messages`); they share the front half (`admit`) and the retry loop
//! (`with_fallbacks`). Provider-specific wire formats live in `providers`.

use crate::gateway::auth::{authenticate, Caller};
use crate::gateway::beta::Placement;
use crate::gateway::catalog::Usage;
use crate::gateway::error::{json_type, upstream_message, ApiError};
use crate::gateway::keys::KeyError;
use crate::gateway::providers::params::{build_upstream_params, Endpoint};
use crate::gateway::providers::{anthropic, bedrock, join_url, path_segment, Provider};
use crate::gateway::rate::{Exceeded, RATE_WINDOW};
use crate::gateway::reliability;
use crate::gateway::routing::Route;
use crate::gateway::sse::{self, SseParser};
use crate::gateway::state::Gateway;
use crate::gateway::upstream::ClientKey;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// What every entry point knows after the front half.
struct Admitted {
    caller: Caller,
    body: Map<String, Value>,
    model: String,
    /// The model group serving it: `model`, or what its alias stands for.
    group: String,
    routes: Vec<Route>,
    stream: bool,
}

fn parse_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => {
            Err(ApiError::BadRequest(format!("request body must be a JSON object, got {}", json_type(&other))))
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "request body is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

fn require_field<'a>(m: &'a Map<String, Value>, field: &str, want: &str) -> Result<&'a Value, ApiError> {
    let v = m.get(field).ok_or_else(|| ApiError::BadRequest(format!("missing required field `{field}`")))?;
    let ok = match want {
        "a string" => v.is_string(),
        "an array" => v.is_array(),
        "a string or an array" => v.is_string() || v.is_array(),
        _ => true,
    };
    if ok {
        Ok(v)
    } else {
        Err(ApiError::BadRequest(format!("field `{field}` must be {want}, got {}", json_type(v))))
    }
}

fn admit(gw: &Gateway, headers: &HeaderMap, raw: &Bytes, shape: &[(&str, &str)]) -> Result<Admitted, ApiError> {
    let caller = authenticate(gw, headers)?;
    let body = parse_object(raw)?;
    for (field, want) in shape {
        require_field(&body, field, want)?;
    }
    let model = body.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::BadRequest(format!("field `stream` must be a boolean, got {}", json_type(other))))
        }
    };
    let catalog = gw.catalog.current();
    let group = gw.fallbacks.alias(&model).unwrap_or(&model).to_string();
    if let Caller::Key(k) = &caller {
        // A key granted the alias or the group it stands for may call it.
        if !k.access().allows(&model, &catalog) && !k.access().allows(&group, &catalog) {
            return Err(ApiError::Forbidden(k.access().denial_message(&model)));
        }
        k.check_budget().map_err(|e| ApiError::BudgetExceeded(e.to_string()))?;
        k.check_and_record_request(gw.clock.now()).map_err(|e| {
            let retry_after_secs = match &e {
                KeyError::RateLimited { retry_after, .. } => Some(whole_secs(*retry_after)),
                _ => Some(RATE_WINDOW.as_secs()),
            };
            ApiError::RateLimited { message: e.to_string(), retry_after_secs }
        })?;
    }
    let routes = gw.router.resolve(&group, &catalog);
    if routes.is_empty() {
        let unavailable = gw.router.unavailable_for(&group);
        if !unavailable.is_empty() {
            let reasons: Vec<String> = unavailable
                .iter()
                .map(|d| format!("{}: {}", d.id, d.unavailable.as_deref().unwrap_or("unavailable")))
                .collect();
            return Err(ApiError::DeploymentUnavailable(format!(
                "model `{model}` has no available deployment ({})",
                reasons.join("; ")
            )));
        }
        return Err(ApiError::ModelNotFound(format!(
            "model `{model}` is not served by this gateway (no model_list entry or wildcard matches it). Served: {}",
            gw.router.model_names().join(", ")
        )));
    }
    Ok(Admitted { caller, body, model, group, routes, stream })
}

fn is_retryable(e: &ApiError) -> bool {
    match e {
        ApiError::BadGateway(_) | ApiError::GatewayTimeout(_) => true,
        ApiError::Upstream { status, .. } => *status == 429 || *status >= 500,
        _ => false,
    }
}

/// Whole seconds, rounded up, at least 1 (for `Retry-After`).
fn whole_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// Tries the routes in order until one answers; a retryable failure moves on
/// to the next deployment. A deployment at its own rpm/tpm is skipped without
/// counting as an attempt; when every one is, the client gets a 429 that
/// says so, with the soonest `Retry-After`.
async fn with_fallbacks<F, Fut>(gw: &Gateway, routes: &[Route], attempt: &mut F) -> Result<Response, ApiError>
where
    F: FnMut(Route) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let num_retries = gw.config.router_settings.num_retries.or(gw.config.litellm_settings.num_retries);
    let max_attempts = num_retries.map(|n| n as usize + 1).unwrap_or(routes.len()).max(1);
    let now = gw.clock.now();
    let mut last = None;
    let mut limited: Option<(&str, Exceeded)> = None;
    let mut cooling: Option<Duration> = None;
    let mut attempts = 0;
    // A group of one deployment is never cooled down (LiteLLM's rule too):
    // there is nothing to send its requests to instead.
    let cooldowns = gw.cooldowns.enabled && routes.len() > 1;
    for route in routes {
        if attempts == max_attempts {
            break;
        }
        if cooldowns {
            if let Some(left) = route.deployment.health.cooling(now) {
                tracing::debug!(deployment = %route.deployment.id, "deployment cooling down; skipped");
                cooling = Some(cooling.map_or(left, |c| c.min(left)));
                continue;
            }
        }
        if let Err(e) = route.deployment.limits.check_and_record(now) {
            tracing::debug!(deployment = %route.deployment.id, limit = %e.kind, "deployment at its limit; skipped");
            if limited.is_none_or(|(_, soonest)| soonest.retry_after > e.retry_after) {
                limited = Some((&route.deployment.id, e));
            }
            continue;
        }
        attempts += 1;
        let mut result = attempt(route.clone()).await;
        if gw.bugs.retry_client_errors {
            // The known-bad variant: a client error is retried in place.
            for _ in 1..max_attempts {
                match &result {
                    Err(ApiError::Upstream { status, .. }) if (400..500).contains(status) => {
                        result = attempt(route.clone()).await
                    }
                    _ => break,
                }
            }
        }
        match result {
            Ok(r) => return Ok(r),
            Err(e) if is_retryable(&e) => {
                tracing::warn!(deployment = %route.deployment.id, error = %e, "deployment failed; trying the next one");
                if cooldowns && route.deployment.health.record_failure(now, &gw.cooldowns) {
                    tracing::warn!(deployment = %route.deployment.id, secs = gw.cooldowns.cooldown.as_secs_f64(), "deployment cooled down");
                }
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = last {
        return Err(e);
    }
    if let (Some(left), None, Some(first)) = (cooling, limited.as_ref(), routes.first()) {
        return Err(ApiError::RateLimited {
            message: format!(
                "no deployment of `{}` is available: each is cooling down after repeated failures; retry after {}s",
                first.deployment.model_name,
                whole_secs(left)
            ),
            retry_after_secs: Some(whole_secs(left)),
        });
    }
    match (limited, routes.first()) {
        (Some((id, e)), Some(first)) => Err(ApiError::RateLimited {
            message: format!(
                "no deployment of `{}` is available: each is over its {} limit (soonest free: `{id}`, {} of {} {} \
                 used in the last 60 s); retry after {}s",
                first.deployment.model_name,
                e.kind.short(),
                e.current,
                e.limit,
                e.kind,
                whole_secs(e.retry_after)
            ),
            retry_after_secs: Some(whole_secs(e.retry_after)),
        }),
        _ => Err(ApiError::Internal("no deployment was tried".into())),
    }
}

/// The headers LiteLLM puts on every answer, which clients and dashboards
/// read: a call id, the deployment that answered, and the key's spend so far.
fn with_call_headers(mut resp: Response, caller: &Caller) -> Response {
    // An identifier, not a secret: the thread's generator, no system call per request.
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut id);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&hex::encode(id)) {
        h.insert("x-litellm-call-id", v);
    }
    if let Some(dep) = h.get("x-postmortem-deployment").cloned() {
        h.insert("x-litellm-model-id", dep);
    }
    if let Caller::Key(k) = caller {
        if let Ok(v) = HeaderValue::from_str(&format!("{:.10}", k.spend())) {
            h.insert("x-litellm-key-spend", v);
        }
    }
    resp
}

/// [`with_fallbacks`] over the requested group, then, when its failure is
/// one a fallback list is for, over each fallback group in order (see
/// `reliability`). A key reaches only fallback groups it may use.
async fn with_group_fallbacks<F, Fut>(gw: &Gateway, a: &Admitted, mut attempt: F) -> Result<Response, ApiError>
where
    F: FnMut(Route) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let err = match with_fallbacks(gw, &a.routes, &mut attempt).await {
        Ok(r) => return Ok(with_call_headers(r, &a.caller)),
        Err(e) => e,
    };
    let Some(kind) = reliability::classify(&err) else { return Err(err) };
    let chain = gw.fallbacks.chain(&a.group, kind);
    if chain.is_empty() {
        return Err(err);
    }
    let catalog = gw.catalog.current();
    let mut last = err;
    for group in chain {
        if let Caller::Key(k) = &a.caller {
            if !k.access().allows(group, &catalog) {
                tracing::info!(group = %group, "fallback group skipped: the key may not use it");
                continue;
            }
        }
        let routes = gw.router.resolve(group, &catalog);
        if routes.is_empty() {
            tracing::warn!(group = %group, "fallback group has no available deployment");
            continue;
        }
        tracing::info!(from = %a.group, to = %group, ?kind, "falling back");
        match with_fallbacks(gw, &routes, &mut attempt).await {
            Ok(r) => return Ok(with_call_headers(r, &a.caller)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A stream's bound, to its headers and between its chunks: the
/// deployment's `stream_timeout`, else its `timeout`, else the default (as
/// LiteLLM, where `stream_timeout` stands in for `timeout` on streams).
fn stream_bound(route: &Route) -> Duration {
    route.deployment.stream_timeout.or(route.deployment.timeout).unwrap_or(crate::gateway::upstream::DEFAULT_TIMEOUT)
}

/// How long the upstream call may take before it is a 504 (and the next
/// deployment is tried): never unbounded.
fn upstream_bound(route: &Route, stream: bool) -> crate::gateway::upstream::Bound {
    use crate::gateway::upstream::{Bound, DEFAULT_TIMEOUT};
    if stream {
        Bound::Headers(stream_bound(route))
    } else {
        Bound::Whole(route.deployment.timeout.unwrap_or(DEFAULT_TIMEOUT))
    }
}

fn deployment_api_key(route: &Route) -> Option<String> {
    route.deployment.params.api_key.clone()
}

/// A Bedrock deployment's region: the config's, else `AWS_REGION` /
/// `AWS_DEFAULT_REGION` as the config sees them, else us-east-1 (boto3's
/// fallback, which LiteLLM inherits).
fn bedrock_region(config: &crate::gateway::Config, route: &Route) -> String {
    bedrock::resolve_region_with(route.deployment.params.aws_region_name.as_deref(), |n| config.env_var(n))
        .unwrap_or_else(|_| bedrock::DEFAULT_REGION.to_string())
}

fn base_url(config: &crate::gateway::Config, route: &Route) -> Result<String, ApiError> {
    let p = &route.deployment.params;
    if let Some(b) = &p.api_base {
        return Ok(b.trim_end_matches('/').to_string());
    }
    Ok(match route.provider {
        Provider::Openai => "https://api.openai.com/v1".into(),
        Provider::Anthropic => "https://api.anthropic.com".into(),
        Provider::Bedrock => match &p.aws_bedrock_runtime_endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => bedrock::default_endpoint(&bedrock_region(config, route)),
        },
        Provider::VertexAi => {
            let loc = p.vertex_location.as_deref().unwrap_or("us-east5");
            format!("https://{loc}-aiplatform.googleapis.com")
        }
        Provider::Compat(c) if c.default_base().is_some() => c.default_base().unwrap_or_default().to_string(),
        Provider::Azure | Provider::HostedVllm | Provider::AzureAi | Provider::Compat(_) => {
            return Err(ApiError::BadRequest(format!(
                "deployment `{}` ({}) has no api_base",
                route.deployment.id, route.provider
            )))
        }
    })
}

fn client_for(
    gw: &Gateway,
    route: &Route,
    base: &str,
) -> Result<crate::gateway::client_cache::Lease<crate::gateway::upstream::UpstreamClient>, ApiError> {
    let key = ClientKey::new(
        route.provider.as_str(),
        base,
        &route.deployment.credential_fingerprint,
        route.deployment.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
    );
    gw.client(key)
}

/// The known-bad variant of usage: the prompt counted by the gateway, 4
/// characters a token, in place of the provider's count.
fn estimate_prompt_tokens(v: &mut Value, client_body: &Map<String, Value>) {
    let chars = client_body.get("messages").map(|m| m.to_string().chars().count()).unwrap_or(0) as u64;
    let estimate = chars.div_ceil(4);
    if let Some(u) = v.get_mut("usage").and_then(Value::as_object_mut) {
        let completion = u.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
        u.insert("prompt_tokens".into(), json!(estimate));
        u.insert("total_tokens".into(), json!(estimate + completion));
    }
}

/// Turns a non-2xx upstream response into an error that keeps its status
/// and message.
async fn upstream_error(provider: Provider, resp: reqwest::Response, drop_retry_after: bool) -> ApiError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|_| !drop_retry_after);
    let body = crate::gateway::upstream::read_prefix(resp, crate::gateway::upstream::MAX_ERROR_BYTES).await;
    let (message, error_type) = upstream_message(&body);
    ApiError::Upstream {
        status,
        message: format!("{provider} error ({status}): {message}"),
        provider: provider.to_string(),
        error_type,
        retry_after,
    }
}

fn sse_response(stream: impl futures::Stream<Item = Result<Bytes, ApiError>> + Send + 'static) -> Response {
    let body = Body::from_stream(stream.map(|r| r.map_err(std::io::Error::other)));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("text/event-stream"));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}

fn sse_error_event(e: &ApiError) -> Bytes {
    Bytes::from(format!("data: {}\n\n", e.body()))
}

/// The error event of a pass-through stream in its API's own form: the
/// Responses API names its events and puts `type: error` in the data
/// ("Streaming responses", `error` event); Chat Completions and text
/// completions carry an `error` object.
fn stream_error_event(endpoint: Endpoint, e: &ApiError) -> Bytes {
    if endpoint != Endpoint::Responses {
        return sse_error_event(e);
    }
    let body = e.body();
    let error = &body["error"];
    let data = json!({"type": "error", "code": error["code"], "message": error["message"], "param": error["param"]});
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

/// The `loosen_forced_tool_choice` known bug (harness proofs only): a
/// forced tool becomes "any tool", as a translation that maps every
/// non-string `tool_choice` to `any` would.
fn loosen_forced_tool_choice(body: &mut Map<String, Value>) {
    if let Some(tc) = body.get_mut("tool_choice").and_then(Value::as_object_mut) {
        if tc.get("type").and_then(Value::as_str) == Some("tool") {
            tc.insert("type".into(), json!("any"));
            tc.remove("name");
        }
    }
}

/// The cost-map names a deployment is priced under, best first:
/// `provider/model`, `model`, then `model_info.base_model` (for deployments
/// whose upstream name the map does not know, e.g. an Azure deployment name).
pub(crate) fn pricing_names(provider: Provider, upstream_model: &str, model_info: Option<&Value>) -> Vec<String> {
    let base_model = model_info.and_then(|m| m.get("base_model")).and_then(Value::as_str).unwrap_or_default();
    [format!("{provider}/{upstream_model}"), upstream_model.to_string(), base_model.to_string()]
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect()
}

/// Prices a call and charges the key. Returns the header value, or None when
/// the model has no price (never a silent 0).
fn charge(gw: &Gateway, caller: &Caller, route: &Route, usage: &Usage) -> Option<f64> {
    // Tokens count against rate limits whether or not the model is priced.
    let tokens = usage.input_tokens + usage.output_tokens + usage.cache_read_tokens + usage.cache_creation_tokens;
    let now = gw.clock.now();
    route.deployment.limits.record_tokens(now, tokens);
    if let Caller::Key(k) = caller {
        k.record_tokens(now, tokens);
    }
    let catalog = gw.catalog.current();
    let candidates = pricing_names(route.provider, &route.upstream_model, route.deployment.model_info.as_ref());
    let cost = candidates.iter().find_map(|c| catalog.cost(c, usage))?;
    let total = cost.total();
    if let Caller::Key(k) = caller {
        k.add_spend(total);
    }
    let row = crate::gateway::store::SpendRow {
        at: crate::gateway::state::unix(gw.clock.wall()),
        key_hash: match caller {
            Caller::Key(k) => Some(k.key_hash()),
            _ => None,
        },
        model: route.deployment.model_name.clone(),
        upstream_model: format!("{}/{}", route.provider, route.upstream_model),
        cost_usd: total,
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
    };
    gw.record_spend(row);
    Some(total)
}

/// Prices a stream from the usage the provider streamed: the OpenAI usage
/// chunk (`stream_options.include_usage`), or Anthropic's `message_start` +
/// `message_delta` counts. Charged once, when the stream is done with (its
/// end, an error, or the client leaving): tokens read are spent either way.
/// A stream whose provider sent no usage is charged nothing and logged.
struct StreamMeter {
    gw: Arc<Gateway>,
    caller: Caller,
    route: Route,
    openai: Option<SseParser>,
    anthropic: anthropic::AnthropicUsage,
    usage: Option<Usage>,
}

impl StreamMeter {
    /// For a stream passed through as bytes: the meter parses them itself.
    fn reading_bytes(gw: &Arc<Gateway>, caller: &Caller, route: &Route) -> Self {
        StreamMeter::new(gw, caller, route, Some(SseParser::new()))
    }

    /// For a stream the gateway parses anyway: it hands the meter each event.
    fn fed(gw: &Arc<Gateway>, caller: &Caller, route: &Route) -> Self {
        StreamMeter::new(gw, caller, route, None)
    }

    fn new(gw: &Arc<Gateway>, caller: &Caller, route: &Route, openai: Option<SseParser>) -> Self {
        StreamMeter {
            gw: Arc::clone(gw),
            caller: caller.clone(),
            route: route.clone(),
            openai,
            anthropic: anthropic::AnthropicUsage::default(),
            usage: None,
        }
    }

    /// OpenAI chunks as forwarded (complete events).
    fn observe_bytes(&mut self, bytes: &[u8]) {
        let Some(parser) = self.openai.as_mut() else { return };
        let Ok(events) = parser.feed(bytes) else { return };
        for ev in events {
            // Cheap test first: most chunks carry no usage.
            if !ev.data.contains("\"usage\"") {
                continue;
            }
            if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
                self.observe_chunk(&v);
            }
        }
    }

    /// An OpenAI chunk someone already parsed (the usage chunk has `usage`).
    fn observe_chunk(&mut self, chunk: &Value) {
        let responses_final = chunk.pointer("/response/usage").is_some_and(Value::is_object);
        if chunk.get("usage").is_some_and(Value::is_object) || responses_final {
            self.usage = Some(openai_usage(chunk));
        }
    }

    /// An Anthropic event (`message_start`, `message_delta` carry usage).
    fn observe_event(&mut self, ty: &str, data: &Value) {
        let usage = match ty {
            "message_start" => data.get("message").and_then(|m| m.get("usage")),
            "message_delta" => data.get("usage"),
            _ => None,
        };
        if let Some(u) = usage.filter(|u| u.is_object()) {
            self.anthropic.update(u);
            let a = &self.anthropic;
            self.usage = Some(Usage {
                input_tokens: a.input_tokens,
                output_tokens: a.output_tokens,
                cache_read_tokens: a.cache_read_tokens,
                cache_creation_tokens: a.cache_creation_tokens,
            });
        }
    }
}

impl Drop for StreamMeter {
    fn drop(&mut self) {
        match self.usage.take() {
            Some(u) => {
                if charge(&self.gw, &self.caller, &self.route, &u).is_none() {
                    tracing::debug!(deployment = %self.route.deployment.id, "streamed call is unpriced: the cost map has no price");
                }
            }
            None => tracing::info!(
                deployment = %self.route.deployment.id,
                "stream ended without usage from the provider: not charged (ask for stream_options.include_usage)"
            ),
        }
    }
}

/// The provider's rate-limit headers, passed on to the client as sent
/// (OpenAI's `x-ratelimit-*`, Anthropic's `anthropic-ratelimit-*`), so a
/// client can pace itself as it would against the provider.
fn passed_on(headers: &reqwest::header::HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k.starts_with("x-ratelimit-") || k.starts_with("anthropic-ratelimit-")
        })
        .filter_map(|(k, v)| {
            Some((HeaderName::from_bytes(k.as_str().as_bytes()).ok()?, HeaderValue::from_bytes(v.as_bytes()).ok()?))
        })
        .collect()
}

/// Stream headers: the cost is not known until the stream ends, so it goes
/// to the key's spend and the spend log then, not into a header.
fn with_stream_headers(mut resp: Response, route: &Route, upstream: &[(HeaderName, HeaderValue)]) -> Response {
    let h = resp.headers_mut();
    for (k, v) in upstream {
        h.insert(k.clone(), v.clone());
    }
    h.insert("x-postmortem-cost-status", HeaderValue::from_static("priced-when-stream-ends"));
    if let Ok(v) = HeaderValue::from_str(&route.deployment.id) {
        h.insert("x-postmortem-deployment", v);
    }
    resp
}

fn with_cost_headers(
    mut resp: Response,
    cost: Option<f64>,
    route: &Route,
    upstream: &[(HeaderName, HeaderValue)],
) -> Response {
    let h = resp.headers_mut();
    for (k, v) in upstream {
        h.insert(k.clone(), v.clone());
    }
    match cost {
        Some(c) => {
            if let Ok(v) = HeaderValue::from_str(&format!("{c:.10}")) {
                h.insert("x-litellm-response-cost", v.clone());
                h.insert("x-postmortem-response-cost", v);
            }
        }
        None => {
            h.insert("x-postmortem-cost-status", HeaderValue::from_static("unpriced"));
        }
    }
    if let Ok(v) = HeaderValue::from_str(&route.deployment.id) {
        h.insert("x-postmortem-deployment", v);
    }
    resp
}

/// Usage in OpenAI's spellings: Chat Completions' (`prompt_tokens`), or the
/// Responses API's (`input_tokens`), at the top or, in a Responses stream's
/// final event, inside its `response`.
fn openai_usage(v: &Value) -> Usage {
    let u = v.get("usage").filter(|u| u.is_object()).or_else(|| v.pointer("/response/usage"));
    let g = |p: &str| u.and_then(|u| u.pointer(p)).and_then(Value::as_u64);
    let prompt = g("/prompt_tokens").or_else(|| g("/input_tokens")).unwrap_or(0);
    let cached =
        g("/prompt_tokens_details/cached_tokens").or_else(|| g("/input_tokens_details/cached_tokens")).unwrap_or(0);
    Usage {
        input_tokens: prompt.saturating_sub(cached),
        output_tokens: g("/completion_tokens").or_else(|| g("/output_tokens")).unwrap_or(0),
        cache_read_tokens: cached,
        cache_creation_tokens: 0,
    }
}

fn anthropic_usage(v: &Value) -> Usage {
    let u = anthropic::usage_from_messages(v);
    Usage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cache_read_tokens: u.cache_read_tokens,
        cache_creation_tokens: u.cache_creation_tokens,
    }
}

// ---------------------------------------------------------------- OpenAI wire

/// A streaming answer that is not the provider's event stream (an HTML
/// error page, a JSON body) is a failed call, found before the client has a
/// byte, so the next deployment can still be tried.
fn expect_event_stream(resp: &reqwest::Response, provider: Provider) -> Result<(), ApiError> {
    let wanted = if provider == Provider::Bedrock { "application/vnd.amazon.eventstream" } else { "text/event-stream" };
    let media = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if media.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(wanted) {
        Ok(())
    } else {
        Err(ApiError::BadGateway(format!(
            "{provider} answered a streaming request with `{media}`, not an event stream"
        )))
    }
}

/// An upstream URL and the auth headers that go with it.
type Target = (String, Vec<(&'static str, String)>);

/// URL and auth headers for an OpenAI-format call.
fn openai_target(route: &Route, base: &str, path: &str) -> Result<Target, ApiError> {
    let key = deployment_api_key(route);
    Ok(match route.provider {
        Provider::Azure => {
            let version = route.deployment.params.api_version.clone().unwrap_or_else(|| "2024-10-21".into());
            let deployment = path_segment(&route.upstream_model).map_err(ApiError::BadRequest)?;
            let url = format!("{}/openai/deployments/{}/{}?api-version={}", base, deployment, path, version);
            (url, key.map(|k| vec![("api-key", k)]).unwrap_or_default())
        }
        _ => (join_url(base, path), key.map(|k| vec![("authorization", format!("Bearer {k}"))]).unwrap_or_default()),
    })
}

/// Sends an OpenAI-wire request: a failed answer is the upstream's error,
/// and a stream that is not an event stream fails before the client has a byte.
async fn openai_send(
    gw: &Gateway,
    route: &Route,
    base: &str,
    path: &str,
    body: &Map<String, Value>,
    stream: bool,
) -> Result<(reqwest::Response, crate::gateway::client_cache::Lease<crate::gateway::upstream::UpstreamClient>), ApiError>
{
    let (url, auth) = openai_target(route, base, path)?;
    let client = client_for(gw, route, base)?;
    let mut req = client.http.post(&url).json(body);
    for (k, v) in auth {
        req = req.header(k, v);
    }
    let resp = client.send(req, upstream_bound(route, stream)).await?;
    if !resp.status().is_success() {
        return Err(upstream_error(route.provider, resp, gw.bugs.drop_upstream_retry_after).await);
    }
    if stream {
        expect_event_stream(&resp, route.provider)?;
    }
    Ok((resp, client))
}

async fn openai_call(
    gw: &Arc<Gateway>,
    a: &Admitted,
    route: Route,
    endpoint: Endpoint,
    path: &str,
) -> Result<Response, ApiError> {
    let base = base_url(&gw.config, &route)?;
    let drop_unsupported = route.deployment.params.drop_params.unwrap_or(gw.drop_params);
    let mut body = build_upstream_params(
        &a.body,
        route.provider,
        endpoint,
        &route.upstream_model,
        drop_unsupported,
        gw.bugs.null_optional_params,
    )?;
    if route.provider == Provider::Azure {
        body.remove("model");
    } else {
        body.insert("model".into(), Value::String(route.upstream_model.clone()));
    }
    let (resp, client) = openai_send(gw, &route, &base, path, &body, a.stream).await?;
    let limits = passed_on(resp.headers());
    if a.stream {
        // Pass the upstream's SSE through event by event; the lease moves
        // into the stream so the client lives until the stream ends.
        let idle = Some(stream_bound(&route));
        let inner = client.guard_stream(resp.bytes_stream(), idle, client.clone());
        let done_after_broken = gw.bugs.done_after_broken_stream;
        let mut meter = StreamMeter::reading_bytes(gw, &a.caller, &route);
        let s = async_stream::stream! {
            futures::pin_mut!(inner);
            // Bytes after the last complete event: held back until the
            // event completes, so a stream that breaks mid-event never
            // hands the client half an event glued to the error event.
            let mut pending: Vec<u8> = Vec::new();
            loop {
                match inner.next().await {
                    Some(Ok(b)) => {
                        pending.extend_from_slice(&b);
                        if let Some(end) = sse::last_event_end(&pending) {
                            let rest = pending.split_off(end);
                            let ready = std::mem::replace(&mut pending, rest);
                            meter.observe_bytes(&ready);
                            yield Ok(Bytes::from(ready));
                        }
                    }
                    Some(Err(_)) if done_after_broken => { yield Ok(Bytes::from_static(b"data: [DONE]\n\n")); break; }
                    Some(Err(e)) => { yield Ok(stream_error_event(endpoint, &e)); break; }
                    None => {
                        if !pending.iter().all(u8::is_ascii_whitespace) {
                            let e = ApiError::BadGateway(format!("{} ended its stream in the middle of an event", route.provider));
                            yield Ok(stream_error_event(endpoint, &e));
                        }
                        break;
                    }
                }
            }
            drop(meter);
        };
        return Ok(with_stream_headers(sse_response(s), &route, &limits));
    }
    let status = resp.status().as_u16();
    let mut v = read_json(resp, route.provider).await?;
    if gw.bugs.estimate_prompt_tokens {
        estimate_prompt_tokens(&mut v, &a.body);
    }
    let cost = charge(gw, &a.caller, &route, &openai_usage(&v));
    let resp = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(v)).into_response();
    Ok(with_cost_headers(resp, cost, &route, &limits))
}

pub async fn embeddings(gw: Arc<Gateway>, headers: HeaderMap, raw: Bytes) -> Response {
    openai_only(gw, headers, raw, ("input", Endpoint::Embeddings, "embeddings")).await
}

/// Legacy text completions: passed through to OpenAI-family deployments.
pub async fn completions(gw: Arc<Gateway>, headers: HeaderMap, raw: Bytes) -> Response {
    openai_only(gw, headers, raw, ("prompt", Endpoint::Completions, "completions")).await
}

/// OpenAI's Responses API: passed through to deployments that speak it
/// (OpenAI, vLLM, the OpenAI-compatible providers). Azure serves it under
/// another path and Anthropic-family models do not speak it: both get a 400
/// naming the provider. `input` is optional (a stored prompt or
/// `previous_response_id` may stand for it) but typed when present.
pub async fn responses(gw: Arc<Gateway>, headers: HeaderMap, raw: Bytes) -> Response {
    let a = match admit(&gw, &headers, &raw, &[("model", "a string")]) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    if let Some(input) = a.body.get("input").filter(|v| !v.is_null()) {
        if !(input.is_string() || input.is_array()) {
            let e = format!("field `input` must be a string or an array, got {}", json_type(input));
            return ApiError::BadRequest(e).into_response();
        }
    }
    let result = with_group_fallbacks(&gw, &a, |route| {
        let gw = &gw;
        let a = &a;
        async move {
            if route.provider.speaks_messages(&route.upstream_model) || route.provider == Provider::Azure {
                return Err(ApiError::BadRequest(format!(
                    "{} deployments are not served on /v1/responses",
                    route.provider
                )));
            }
            openai_call(gw, a, route, Endpoint::Responses, "responses").await
        }
    })
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// An endpoint only the OpenAI family serves: `(the required input field,
/// the endpoint, its path)`. Anthropic-family deployments get a 400 naming it.
async fn openai_only(
    gw: Arc<Gateway>,
    headers: HeaderMap,
    raw: Bytes,
    (input, endpoint, path): (&str, Endpoint, &'static str),
) -> Response {
    let a = match admit(&gw, &headers, &raw, &[("model", "a string"), (input, "a string or an array")]) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let result = with_group_fallbacks(&gw, &a, |route| {
        let gw = &gw;
        let a = &a;
        async move {
            if route.provider.speaks_messages(&route.upstream_model) {
                return Err(ApiError::BadRequest(format!("{} does not serve /v1/{path}", route.provider)));
            }
            openai_call(gw, a, route, endpoint, path).await
        }
    })
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn chat_completions(gw: Arc<Gateway>, headers: HeaderMap, raw: Bytes) -> Response {
    let a = match admit(&gw, &headers, &raw, &[("model", "a string"), ("messages", "an array")]) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let result = with_group_fallbacks(&gw, &a, |route| {
        let gw = &gw;
        let a = &a;
        let headers = &headers;
        async move {
            if route.provider.speaks_messages(&route.upstream_model) {
                anthropic_chat(gw, a, route, headers).await
            } else {
                openai_call(gw, a, route, Endpoint::Chat, "chat/completions").await
            }
        }
    })
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

// ---------------------------------------------------------- Anthropic family

/// The incoming `anthropic-beta` header values, filtered by the policy for
/// this provider (or, with the incident's bug put back, all of them).
fn betas_for(gw: &Gateway, route: &Route, headers: &HeaderMap) -> Vec<String> {
    let incoming: Vec<&str> = headers.get_all("anthropic-beta").iter().filter_map(|v| v.to_str().ok()).collect();
    if gw.bugs.forward_all_betas {
        let mut all: Vec<String> = incoming
            .iter()
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        all.dedup();
        return all;
    }
    let Some(target) = route.provider.beta_target() else { return Vec::new() };
    // Bedrock InvokeModel takes the flags in the body; the others in the header.
    let placement = if route.provider == Provider::Bedrock { Placement::Body } else { Placement::Header };
    gw.beta.load().filter_for(target, placement, &incoming).kept
}

struct AnthropicRequest {
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Builds the upstream call for a Messages-format body on any of the four
/// Claude platforms.
fn anthropic_request(
    config: &crate::gateway::Config,
    route: &Route,
    base: &str,
    mut body: Map<String, Value>,
    betas: &[String],
    stream: bool,
    client_version: Option<&str>,
) -> Result<AnthropicRequest, ApiError> {
    let version = client_version.unwrap_or(ANTHROPIC_VERSION).to_string();
    let beta_header = crate::gateway::beta::header_value(betas);
    let key = deployment_api_key(route);
    let mut headers: Vec<(String, String)> = vec![("content-type".into(), "application/json".into())];
    let url;
    match route.provider {
        Provider::Anthropic | Provider::AzureAi => {
            body.insert("model".into(), Value::String(route.upstream_model.clone()));
            url = if base.ends_with("/v1/messages") {
                base.to_string()
            } else if base.ends_with("/v1") {
                join_url(base, "messages")
            } else if route.provider == Provider::AzureAi && !base.ends_with("/anthropic") {
                join_url(base, "anthropic/v1/messages")
            } else {
                join_url(base, "v1/messages")
            };
            if let Some(k) = key {
                headers.push(("x-api-key".into(), k));
            }
            headers.push(("anthropic-version".into(), version));
            if let Some(b) = beta_header {
                headers.push(("anthropic-beta".into(), b));
            }
        }
        Provider::VertexAi => {
            let p = &route.deployment.params;
            let project = p.vertex_project.clone().ok_or_else(|| {
                ApiError::BadRequest(format!("deployment `{}` (vertex_ai) needs vertex_project", route.deployment.id))
            })?;
            let location = p.vertex_location.clone().unwrap_or_else(|| "us-east5".into());
            body.remove("model");
            body.insert("anthropic_version".into(), json!("vertex-2023-10-16"));
            let verb = if stream { "streamRawPredict" } else { "rawPredict" };
            let model = path_segment(&route.upstream_model).map_err(ApiError::BadRequest)?;
            url =
                format!("{base}/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{model}:{verb}");
            if let Some(k) = key {
                headers.push(("authorization".into(), format!("Bearer {k}")));
            }
            if let Some(b) = beta_header {
                headers.push(("anthropic-beta".into(), b));
            }
        }
        Provider::Bedrock => {
            let v = bedrock::to_bedrock_body(&Value::Object(body), betas);
            let bytes = serde_json::to_vec(&v).map_err(|e| ApiError::Internal(e.to_string()))?;
            let url = bedrock::invoke_url(base, &route.upstream_model, stream).map_err(ApiError::BadRequest)?;
            let p = &route.deployment.params;
            let env = |name: &str| config.env_var(name);
            let creds = bedrock::AwsCredentials::resolve_with(
                p.aws_access_key_id.as_deref(),
                p.aws_secret_access_key.as_deref(),
                p.aws_session_token.as_deref(),
                env,
            )
            .map_err(|e| ApiError::BadRequest(format!("deployment `{}`: {e}", route.deployment.id)))?;
            let region = bedrock_region(config, route);
            let mut hm = http::HeaderMap::new();
            hm.insert("content-type", HeaderValue::from_static("application/json"));
            let accept = if stream { "application/vnd.amazon.eventstream" } else { "application/json" };
            hm.insert("accept", HeaderValue::from_static(accept));
            let signed =
                bedrock::sign("POST", &url, &hm, &bytes, &creds, &region, "bedrock", std::time::SystemTime::now())
                    .map_err(|e| ApiError::Internal(format!("SigV4 signing failed: {e}")))?;
            headers.push(("accept".into(), accept.into()));
            headers.extend(signed);
            return Ok(AnthropicRequest { url, headers, body: bytes });
        }
        _ => return Err(ApiError::Internal(format!("{} is not an Anthropic-family provider", route.provider))),
    }
    if stream {
        body.insert("stream".into(), Value::Bool(true));
    } else {
        body.remove("stream");
    }
    let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(AnthropicRequest { url, headers, body: bytes })
}

/// Sends an Anthropic-family request; returns the raw response (2xx only).
async fn anthropic_send(
    gw: &Gateway,
    route: &Route,
    base: &str,
    req: AnthropicRequest,
    stream: bool,
) -> Result<(reqwest::Response, crate::gateway::client_cache::Lease<crate::gateway::upstream::UpstreamClient>), ApiError>
{
    let client = client_for(gw, route, base)?;
    let mut rb = client.http.post(&req.url).body(req.body);
    for (k, v) in &req.headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let resp = client.send(rb, upstream_bound(route, stream)).await?;
    if !resp.status().is_success() {
        return Err(upstream_error(route.provider, resp, gw.bugs.drop_upstream_retry_after).await);
    }
    if stream {
        expect_event_stream(&resp, route.provider)?;
    }
    Ok((resp, client))
}

/// A stream of Anthropic events (type, data) from the provider's native
/// stream format: SSE for most, AWS event stream frames for Bedrock.
fn anthropic_events(
    route: &Route,
    resp: reqwest::Response,
    client: crate::gateway::client_cache::Lease<crate::gateway::upstream::UpstreamClient>,
) -> impl futures::Stream<Item = Result<(String, Value), ApiError>> + Send + 'static {
    let is_bedrock = route.provider == Provider::Bedrock;
    let idle = Some(stream_bound(route));
    let inner = client.guard_stream(resp.bytes_stream(), idle, client.clone());
    drop(client);
    async_stream::stream! {
        futures::pin_mut!(inner);
        let mut sse = SseParser::new();
        let mut frames = bedrock::EventStreamDecoder::new();
        while let Some(chunk) = inner.next().await {
            let chunk = match chunk { Ok(c) => c, Err(e) => { yield Err(e); return; } };
            if is_bedrock {
                match frames.feed(&chunk) {
                    Ok(events) => for ev in events {
                        if let bedrock::BedrockStreamEvent::Anthropic(ev) = ev {
                            let ty = ev.get("type").and_then(Value::as_str).unwrap_or("").to_string();
                            yield Ok((ty, ev));
                        }
                    },
                    Err(e) => { yield Err(ApiError::BadGateway(format!("bedrock event stream: {e}"))); return; }
                }
            } else {
                let events = match sse.feed(&chunk) {
                    Ok(evs) => evs,
                    Err(e) => { yield Err(ApiError::BadGateway(format!("upstream stream: {e}"))); return; }
                };
                for ev in events {
                    if ev.data.trim().is_empty() { continue; }
                    match serde_json::from_str::<Value>(&ev.data) {
                        Ok(v) => {
                            let ty = ev.event.clone().or_else(|| v.get("type").and_then(Value::as_str).map(str::to_string)).unwrap_or_default();
                            yield Ok((ty, v));
                        }
                        Err(e) => { yield Err(ApiError::BadGateway(format!("{}: stream event is not JSON: {e}", "anthropic"))); return; }
                    }
                }
            }
        }
    }
}

async fn anthropic_chat(
    gw: &Arc<Gateway>,
    a: &Admitted,
    route: Route,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let base = base_url(&gw.config, &route)?;
    let drop_unsupported = route.deployment.params.drop_params.unwrap_or(gw.drop_params);
    let params = build_upstream_params(
        &a.body,
        route.provider,
        Endpoint::Chat,
        &route.upstream_model,
        drop_unsupported,
        gw.bugs.null_optional_params,
    )?;
    let translated = anthropic::chat_to_messages(&Value::Object(params), &route.upstream_model)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut body = translated.as_object().cloned().unwrap_or_default();
    if gw.bugs.loosen_forced_tool_choice {
        loosen_forced_tool_choice(&mut body);
    }
    let betas = betas_for(gw, &route, headers);
    let req = anthropic_request(&gw.config, &route, &base, body, &betas, a.stream, None)?;
    let (resp, client) = anthropic_send(gw, &route, &base, req, a.stream).await?;
    let limits = passed_on(resp.headers());
    if a.stream {
        let events = anthropic_events(&route, resp, client);
        let model = a.model.clone();
        let include_usage =
            a.body.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
        let mut meter = StreamMeter::fed(gw, &a.caller, &route);
        let s = async_stream::stream! {
            let mut tr = anthropic::StreamTranslator::new(&model, "").with_usage_chunk(include_usage);
            futures::pin_mut!(events);
            while let Some(ev) = events.next().await {
                if let Ok((ty, data)) = &ev {
                    meter.observe_event(ty, data);
                }
                match ev {
                    Ok((ty, data)) => match tr.on_event(&ty, &data) {
                        Ok(chunks) => for c in chunks { yield Ok(Bytes::from(format!("data: {c}\n\n"))); },
                        Err(e) => { yield Ok(sse_error_event(&ApiError::BadGateway(e.to_string()))); return; }
                    },
                    Err(e) => { yield Ok(sse_error_event(&e)); return; }
                }
            }
            yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
            drop(meter);
        };
        return Ok(with_stream_headers(sse_response(s), &route, &limits));
    }
    let v = read_json(resp, route.provider).await?;
    let cost = charge(gw, &a.caller, &route, &anthropic_usage(&v));
    let out = anthropic::messages_to_chat(&v, &a.model).map_err(|e| ApiError::BadGateway(e.to_string()))?;
    drop(client);
    Ok(with_cost_headers(axum::Json(out).into_response(), cost, &route, &limits))
}

/// The two Anthropic-native calls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Native {
    Messages,
    CountTokens,
}

/// `POST /v1/messages`: Anthropic-native in, Anthropic-native out.
pub async fn messages(gw: Arc<Gateway>, headers: HeaderMap, raw: Bytes) -> Response {
    native(gw, headers, raw, Native::Messages).await
}

/// `POST /v1/messages/count_tokens`: Anthropic and Azure AI serve it next to
/// messages; Bedrock and Vertex AI have no such endpoint here, which is a
/// clear 400, not a guess.
pub async fn count_tokens(gw: Arc<Gateway>, headers: HeaderMap, raw: Bytes) -> Response {
    native(gw, headers, raw, Native::CountTokens).await
}

async fn native(gw: Arc<Gateway>, headers: HeaderMap, raw: Bytes, call: Native) -> Response {
    let a = match admit(&gw, &headers, &raw, &[("model", "a string"), ("messages", "an array")]) {
        Ok(a) => a,
        Err(e) => return anthropic_error(e),
    };
    let client_version = headers.get("anthropic-version").and_then(|v| v.to_str().ok()).map(str::to_string);
    let result = with_group_fallbacks(&gw, &a, |route| {
        let gw = &gw;
        let a = &a;
        let headers = &headers;
        let client_version = client_version.clone();
        async move {
            if !route.provider.speaks_messages(&route.upstream_model) {
                if call == Native::CountTokens {
                    return Err(ApiError::BadRequest(format!(
                        "model `{}` routes to {}, which has no count_tokens endpoint",
                        a.model, route.provider
                    )));
                }
                return messages_via_chat(gw, a, route).await;
            }
            if call == Native::CountTokens && !matches!(route.provider, Provider::Anthropic | Provider::AzureAi) {
                return Err(ApiError::BadRequest(format!(
                    "model `{}` routes to {}, which has no count_tokens endpoint",
                    a.model, route.provider
                )));
            }
            let stream = a.stream && call == Native::Messages;
            let base = base_url(&gw.config, &route)?;
            let mut body = a.body.clone();
            body.retain(|_, v| !v.is_null());
            let betas = betas_for(gw, &route, headers);
            let mut req = anthropic_request(&gw.config, &route, &base, body, &betas, stream, client_version.as_deref())?;
            if call == Native::CountTokens {
                req.url = format!("{}/count_tokens", req.url.trim_end_matches('/'));
            }
            let (resp, client) = anthropic_send(gw, &route, &base, req, stream).await?;
            let limits = passed_on(resp.headers());
            if stream {
                let events = anthropic_events(&route, resp, client);
                let mut meter = StreamMeter::fed(gw, &a.caller, &route);
                let s = async_stream::stream! {
                    futures::pin_mut!(events);
                    while let Some(ev) = events.next().await {
                        if let Ok((ty, data)) = &ev {
                            meter.observe_event(ty, data);
                        }
                        match ev {
                            Ok((ty, data)) => yield Ok(Bytes::from(format!("event: {ty}\ndata: {data}\n\n"))),
                            Err(e) => {
                                let err = json!({"type": "error", "error": {"type": "api_error", "message": e.to_string()}});
                                yield Ok(Bytes::from(format!("event: error\ndata: {err}\n\n")));
                                return;
                            }
                        }
                    }
                    drop(meter);
                };
                return Ok(with_stream_headers(sse_response(s), &route, &limits));
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| crate::gateway::upstream::transport_error(&e, route.provider.as_str()))?;
            drop(client);
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::BadGateway(format!("{} returned a body that is not JSON: {e}", route.provider))
            })?;
            if call == Native::CountTokens {
                return Ok(axum::Json(v).into_response());
            }
            let cost = charge(gw, &a.caller, &route, &anthropic_usage(&v));
            Ok(with_cost_headers(axum::Json(v).into_response(), cost, &route, &limits))
        }
    })
    .await;
    result.unwrap_or_else(anthropic_error)
}

/// A buffered upstream answer (capped at `MAX_ANSWER_BYTES`) as JSON.
async fn read_json(resp: reqwest::Response, provider: Provider) -> Result<Value, ApiError> {
    let bytes =
        crate::gateway::upstream::read_capped(resp, crate::gateway::upstream::MAX_ANSWER_BYTES, provider.as_str())
            .await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadGateway(format!("{provider} returned a body that is not JSON: {e}")))
}

/// `/v1/messages` on an OpenAI-family deployment: the request translated to
/// Chat Completions, the answer (or stream) back to Messages
/// (`providers::messages_bridge`).
async fn messages_via_chat(gw: &Arc<Gateway>, a: &Admitted, route: Route) -> Result<Response, ApiError> {
    use crate::gateway::providers::messages_bridge as bridge;
    let base = base_url(&gw.config, &route)?;
    let mut body = bridge::messages_to_chat_request(&a.body, &route.upstream_model)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if route.provider == Provider::Azure {
        body.remove("model");
    }
    let (resp, client) = openai_send(gw, &route, &base, "chat/completions", &body, a.stream).await?;
    let limits = passed_on(resp.headers());
    if a.stream {
        let idle = Some(stream_bound(&route));
        let inner = client.guard_stream(resp.bytes_stream(), idle, client.clone());
        let model = a.model.clone();
        let provider = route.provider;
        let mut meter = StreamMeter::fed(gw, &a.caller, &route);
        let s = async_stream::stream! {
            futures::pin_mut!(inner);
            let mut sse = SseParser::new();
            let mut tr = bridge::ChunkTranslator::new(&model);
            let event = |name: &str, data: &Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
            let error = |message: String| {
                let err = json!({"type": "error", "error": {"type": "api_error", "message": message}});
                Bytes::from(format!("event: error\ndata: {err}\n\n"))
            };
            loop {
                match inner.next().await {
                    Some(Ok(b)) => {
                        let events = match sse.feed(&b) {
                            Ok(evs) => evs,
                            Err(e) => { yield Ok(error(format!("{provider} stream: {e}"))); break; }
                        };
                        for ev in events {
                            let data = ev.data.trim();
                            if data == "[DONE]" { tr.on_done(); continue; }
                            if data.is_empty() { continue; }
                            match serde_json::from_str::<Value>(data) {
                                Ok(v) if v.get("error").is_some() => {
                                    yield Ok(error(upstream_message(data.as_bytes()).0));
                                    return;
                                }
                                Ok(v) => {
                                    meter.observe_chunk(&v);
                                    for (name, d) in tr.on_chunk(&v) { yield Ok(event(name, &d)); }
                                }
                                Err(e) => { yield Ok(error(format!("{provider}: stream chunk is not JSON: {e}"))); return; }
                            }
                        }
                    }
                    Some(Err(e)) => { yield Ok(error(e.to_string())); return; }
                    None => break,
                }
            }
            // A provider stream that ended without saying it was complete
            // (no finish reason, no `[DONE]`) was cut: say so, never a
            // clean `message_stop`.
            if tr.complete() {
                for (name, d) in tr.finish() { yield Ok(event(name, &d)); }
            } else {
                yield Ok(error(format!("{provider} ended its stream before it was complete")));
            }
            drop(meter);
        };
        return Ok(with_stream_headers(sse_response(s), &route, &limits));
    }
    let v = read_json(resp, route.provider).await?;
    let cost = charge(gw, &a.caller, &route, &openai_usage(&v));
    let out = bridge::chat_to_messages_response(&v, &a.model).map_err(|e| ApiError::BadGateway(e.to_string()))?;
    Ok(with_cost_headers(axum::Json(out).into_response(), cost, &route, &limits))
}

/// Errors on the Anthropic-native route use Anthropic's error shape, so the
/// Anthropic SDK raises its typed exceptions.
pub fn anthropic_error(e: ApiError) -> Response {
    let status = e.status();
    // Anthropic's error types by status (its "Errors" page).
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    let mut resp = (status, axum::Json(json!({"type": "error", "error": {"type": kind, "message": e.to_string()}})))
        .into_response();
    e.add_headers(&mut resp);
    resp
}
