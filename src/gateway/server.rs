//! The HTTP surface: every route, mounted under the server root path.
//!
//! The root path is applied in exactly one place (`app`), by nesting the
//! whole route table under it; pages build their links from the same value,
//! so no route or link can "drop out" of the prefix on its own.

use crate::gateway::auth::{authenticate, require_admin, Caller};
use crate::gateway::error::ApiError;
use crate::gateway::state::{unix, Gateway};
use crate::gateway::{proxy, ui};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

type Gw = State<Arc<Gateway>>;

/// Reads the body up to the configured limit; over it, a 413 in OpenAI's shape.
async fn read_body(gw: &Gateway, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let limit = gw.max_body_bytes;
    let declared = headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let mut body = body;
    if let Some(len) = declared.filter(|len| *len > limit) {
        drain(body).await;
        return Err(ApiError::PayloadTooLarge { size: len, limit });
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(ApiError::BadRequest("the request body broke off".into())) };
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                let size = buf.len() + data.len();
                drain(body).await;
                return Err(ApiError::PayloadTooLarge { size, limit });
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(Bytes::from(buf))
}

/// Reads what is left of a refused body, bounded in bytes and time, so a
/// client that sends the whole body before it reads (Python's `http.client`,
/// `urllib`) gets the 413 instead of a broken pipe.
async fn drain(body: Body) {
    use http_body_util::BodyExt;
    const DRAIN_BYTES: usize = 64 * 1024 * 1024;
    const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);
    let mut body = body;
    let mut read = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map(|d| d.len()).unwrap_or(0);
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// A model route's handler: the body read within the limit (a refusal in
/// the route's own error shape: `$error`), then the proxy.
macro_rules! body_handler {
    ($name:ident, $target:path, $error:path) => {
        async fn $name(State(gw): Gw, headers: HeaderMap, body: Body) -> Response {
            match read_body(&gw, &headers, body).await {
                Ok(raw) => $target(gw, headers, raw).await,
                Err(e) => $error(e),
            }
        }
    };
}

body_handler!(chat, proxy::chat_completions, IntoResponse::into_response);
body_handler!(completions, proxy::completions, IntoResponse::into_response);
body_handler!(responses, proxy::responses, IntoResponse::into_response);
body_handler!(embeddings, proxy::embeddings, IntoResponse::into_response);
// Anthropic's clients get Anthropic's error shape, a 413 included.
body_handler!(messages, proxy::messages, proxy::anthropic_error);
body_handler!(count_tokens, proxy::count_tokens, proxy::anthropic_error);

/// An Azure-style call: the body's `model` becomes the path's deployment
/// (what the `AzureOpenAI` client addresses), then the usual handler runs.
/// `api-version` is accepted and not needed: the gateway speaks one API.
macro_rules! azure_handler {
    ($name:ident, $target:path) => {
        async fn $name(
            State(gw): Gw,
            axum::extract::Path(deployment): axum::extract::Path<String>,
            headers: HeaderMap,
            body: Body,
        ) -> Response {
            match read_body(&gw, &headers, body).await {
                Ok(raw) => $target(gw, headers, with_model(raw, &deployment)).await,
                Err(e) => e.into_response(),
            }
        }
    };
}

azure_handler!(azure_chat, proxy::chat_completions);
azure_handler!(azure_embeddings, proxy::embeddings);
azure_handler!(azure_completions, proxy::completions);

/// The JSON object `raw` with `model` set; anything else unchanged, for the
/// handler to refuse with its usual error.
fn with_model(raw: Bytes, model: &str) -> Bytes {
    match serde_json::from_slice::<Value>(&raw) {
        Ok(Value::Object(mut m)) => {
            m.insert("model".into(), Value::String(model.to_string()));
            Bytes::from(Value::Object(m).to_string())
        }
        _ => raw,
    }
}

/// The route table without any prefix.
fn routes(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/embeddings", post(embeddings))
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .route("/v1/responses", post(responses))
        .route("/responses", post(responses))
        // Azure OpenAI's own paths, so the `AzureOpenAI` SDK client works:
        // the deployment in the path is the model group.
        .route("/openai/deployments/{deployment}/chat/completions", post(azure_chat))
        .route("/openai/deployments/{deployment}/embeddings", post(azure_embeddings))
        .route("/openai/deployments/{deployment}/completions", post(azure_completions))
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/v1/models/{*id}", get(model_retrieve))
        .route("/models/{*id}", get(model_retrieve))
        .route("/v1/model/info", get(model_info))
        .route("/model/info", get(model_info))
        .route("/health", get(health))
        .route("/health/liveliness", get(liveness))
        .route("/health/readiness", get(health))
        .route("/model_cost_map/status", get(cost_map_status))
        .route("/reload/model_cost_map", post(reload_cost_map))
        .route("/reload/anthropic_beta_headers", post(reload_beta))
        .route("/client_cache/stats", get(cache_stats))
        .route("/key/generate", post(key_generate))
        .route("/key/info", get(key_info))
        .route("/key/delete", post(key_delete))
        .route("/key/list", get(key_list))
        .route("/key/update", post(key_update))
        .route("/key/block", post(key_block))
        .route("/key/unblock", post(key_unblock))
        .route("/key/regenerate", post(key_regenerate))
        .route("/key/{key}/regenerate", post(key_regenerate_path))
        .route("/spend/logs", get(spend_logs))
        .route("/openapi.json", get(ui::openapi))
        .route("/docs", get(ui::docs))
        .route("/ui", get(ui::page))
        .route("/ui/", get(ui::page))
        .route("/ui/assets/{file}", get(ui::asset))
        .fallback(not_found)
        .with_state(gw)
}

/// The application: routes under the root path.
pub fn app(gw: Arc<Gateway>) -> Router {
    let root = gw.root_path.clone();
    if root.is_empty() || gw.bugs.drop_root_path {
        // With the incident's bug put back, the routes are mounted at `/`
        // even though pages and the OpenAPI document still carry the prefix.
        return routes(gw);
    }
    Router::new().nest(&root, routes(gw)).fallback(not_found)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::NotFound(format!("no route for {}", uri.path())).into_response()
}

async fn liveness() -> Json<Value> {
    Json(json!({"status": "alive"}))
}

pub fn health_value(gw: &Gateway) -> Value {
    let catalog = gw.catalog.status();
    let beta = gw.beta_status.lock().clone();
    let deployments: Vec<Value> = gw
        .router
        .deployments()
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "model_name": d.model_name,
                "provider": d.provider.map(|p| p.as_str()).unwrap_or("*"),
                "model": d.params.model,
                "api_base": d.params.api_base,
                "available": d.unavailable.is_none(),
                "unavailable_reason": d.unavailable,
            })
        })
        .collect();
    let degraded = catalog.stale || beta.stale;
    json!({
        "status": if degraded { "degraded" } else { "healthy" },
        "ready": true,
        "root_path": gw.root_path,
        "started_at_unix": unix(gw.started_at),
        "models": gw.router.model_names(),
        "deployments": deployments,
        "model_cost_map": catalog,
        "anthropic_beta_policy": beta,
        "client_cache": gw.clients.stats(),
        "auth": {
            "open": crate::gateway::auth::is_open(gw),
            "admin_open": crate::gateway::auth::is_open(gw) && gw.config.general_settings.allow_unauthenticated_admin,
        },
        "storage": {
            "backend": "sqlite",
            "durable": *gw.store.location() != crate::gateway::store::DatabaseLocation::Memory,
            "location": gw.store.location().describe(),
            "spend_rows_queued": gw.spend.len(),
        },
        "known_bugs_enabled": gw.bugs.any(),
    })
}

/// Liveness and readiness for anyone; where each deployment points only for
/// an admin (the master key, or a gateway with no auth configured).
async fn health(State(gw): Gw, headers: HeaderMap) -> Json<Value> {
    let mut v = health_value(&gw);
    let admin = authenticate(&gw, &headers).is_ok_and(|c| c.is_admin());
    if !admin {
        if let Some(ds) = v.get_mut("deployments").and_then(Value::as_array_mut) {
            for d in ds.iter_mut().filter_map(Value::as_object_mut) {
                d.remove("api_base");
            }
        }
        // Where the files are is the operator's business.
        if let Some(st) = v.get_mut("storage").and_then(Value::as_object_mut) {
            st.remove("location");
        }
    }
    Json(v)
}

/// `GET /v1/models/{id}`: one model the caller may use, in OpenAI's shape,
/// or OpenAI's 404 (also for a model the caller's key may not use: its
/// existence is not the caller's business).
async fn model_retrieve(
    State(gw): Gw,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let caller = match authenticate(&gw, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let catalog = gw.catalog.current();
    let known = gw.router.model_names().contains(&id)
        || gw.fallbacks.visible_aliases().any(|a| a == id)
        || !gw.router.resolve(&id, &catalog).is_empty();
    let allowed = match &caller {
        Caller::Key(k) => allows_name_or_pattern(k, &id, &catalog),
        _ => true,
    };
    if !known || !allowed {
        return ApiError::ModelNotFound(format!("The model `{id}` does not exist or you do not have access to it."))
            .into_response();
    }
    Json(json!({"id": id, "object": "model", "created": unix(gw.started_at), "owned_by": "postmortem"})).into_response()
}

async fn models(State(gw): Gw, headers: HeaderMap) -> Response {
    let caller = match authenticate(&gw, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let catalog = gw.catalog.current();
    let created = unix(gw.started_at);
    let mut names = gw.router.model_names();
    names.extend(gw.fallbacks.visible_aliases().map(str::to_string));
    names.sort();
    names.dedup();
    let data: Vec<Value> = names
        .into_iter()
        .filter(|m| match &caller {
            Caller::Key(k) => allows_name_or_pattern(k, m, &catalog),
            _ => true,
        })
        .map(|m| json!({"id": m, "object": "model", "created": created, "owned_by": "postmortem"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// Whether a key may use a model name, or (for a wildcard deployment such
/// as `anthropic/*`) some model the pattern routes. A pattern is probed with
/// a name no real model has, in its place: a key for `anthropic/*` sees
/// `anthropic/*`, never `openai/*` or `*`.
fn allows_name_or_pattern(
    key: &crate::gateway::keys::KeyRecord,
    name: &str,
    catalog: &crate::gateway::catalog::Catalog,
) -> bool {
    match name.strip_suffix('*') {
        Some(prefix) => key.access().allows(&format!("{prefix}\u{1}probe"), catalog),
        None => key.access().allows(name, catalog),
    }
}

/// LiteLLM's `/model/info`: each deployment the caller may use, with what
/// the cost map in use says about it (prices are `null` when the map has no
/// entry: unpriced, never a silent 0). Credentials are never shown.
async fn model_info(State(gw): Gw, headers: HeaderMap) -> Response {
    let caller = match authenticate(&gw, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let catalog = gw.catalog.current();
    let data: Vec<Value> = gw
        .router
        .deployments()
        .into_iter()
        .filter(|d| match &caller {
            Caller::Key(k) => allows_name_or_pattern(k, &d.model_name, &catalog),
            _ => true,
        })
        .map(|d| {
            let priced = d.provider.and_then(|p| {
                crate::gateway::proxy::pricing_names(p, &d.upstream_model, d.model_info.as_ref())
                    .into_iter()
                    .find_map(|name| catalog.canonical_name(&name).map(str::to_string))
            });
            let entry = priced.as_deref().and_then(|n| catalog.model(n));
            let model = match d.provider {
                Some(p) => format!("{p}/{}", d.upstream_model),
                None => d.upstream_model.clone(),
            };
            json!({
                "model_name": d.model_name,
                "litellm_params": {"model": model},
                "model_info": {
                    "id": d.id,
                    "key": priced,
                    "mode": entry.and_then(|e| e.mode.clone()),
                    "litellm_provider": entry.and_then(|e| e.litellm_provider.clone()),
                    "input_cost_per_token": entry.and_then(|e| e.input_cost_per_token),
                    "output_cost_per_token": entry.and_then(|e| e.output_cost_per_token),
                    "max_tokens": entry.and_then(|e| e.max_tokens),
                    "max_input_tokens": entry.and_then(|e| e.max_input_tokens),
                    "max_output_tokens": entry.and_then(|e| e.max_output_tokens),
                },
            })
        })
        .collect();
    Json(json!({"data": data})).into_response()
}

async fn cost_map_status(State(gw): Gw) -> Json<Value> {
    Json(serde_json::to_value(gw.catalog.status()).unwrap_or_default())
}

async fn reload_cost_map(State(gw): Gw, headers: HeaderMap) -> Response {
    if let Err(e) = require_admin(&gw, &headers) {
        return e.into_response();
    }
    match gw.reload_cost_map().await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn reload_beta(State(gw): Gw, headers: HeaderMap) -> Response {
    if let Err(e) = require_admin(&gw, &headers) {
        return e.into_response();
    }
    match gw.reload_beta_policy().await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn cache_stats(State(gw): Gw, headers: HeaderMap) -> Response {
    if let Err(e) = require_admin(&gw, &headers) {
        return e.into_response();
    }
    Json(serde_json::to_value(gw.clients.stats()).unwrap_or_default()).into_response()
}

/// An admin call's JSON object body (an empty body is `{}`), or the answer
/// that refuses it.
async fn admin_object(
    gw: &Gateway,
    headers: &HeaderMap,
    body: Body,
) -> Result<serde_json::Map<String, Value>, Response> {
    require_admin(gw, headers).map_err(IntoResponse::into_response)?;
    let raw = read_body(gw, headers, body).await.map_err(IntoResponse::into_response)?;
    let raw = if raw.is_empty() { Bytes::from_static(b"{}") } else { raw };
    match serde_json::from_slice::<Value>(&raw) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::BadRequest(format!("expected a JSON object, got {other}")).into_response()),
        Err(e) => Err(ApiError::BadRequest(format!("the body is not JSON: {e}")).into_response()),
    }
}

async fn key_generate(State(gw): Gw, headers: HeaderMap, body: Body) -> Response {
    let body = match admin_object(&gw, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match gw.generate_key(body).await {
        Ok((secret, info)) => {
            let mut v = serde_json::to_value(info).unwrap_or_default();
            v["key"] = json!(secret);
            Json(v).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// What `/key/update`, `/key/block`, `/key/unblock` and `/key/regenerate`
/// do to the key their body names (`{"key": "sk-…" or its hash, …}`).
enum KeyChange {
    /// Set the other fields of the body.
    Update,
    Block(bool),
    /// A new secret: the body's `new_key`, or a generated one.
    Regenerate,
}

async fn key_change(
    gw: Arc<Gateway>,
    headers: HeaderMap,
    body: Body,
    change: KeyChange,
    path_key: Option<String>,
) -> Response {
    let mut body = match admin_object(&gw, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let key = match path_key.or_else(|| body.remove("key").and_then(|k| k.as_str().map(str::to_string))) {
        Some(k) => k,
        None => return ApiError::BadRequest("missing `key`: the key (or its hash) to change".into()).into_response(),
    };
    let (patch, new_secret) = match change {
        KeyChange::Update => (body, None),
        KeyChange::Block(b) => (serde_json::Map::from_iter([("blocked".to_string(), json!(b))]), None),
        KeyChange::Regenerate => {
            let secret = body.remove("new_key").and_then(|k| k.as_str().map(str::to_string));
            (body, Some(secret.unwrap_or_else(crate::gateway::keys::new_secret)))
        }
    };
    let regenerated = new_secret.clone();
    match gw.change_key(&key, patch, new_secret).await {
        Ok(info) => {
            let mut v = serde_json::to_value(info).unwrap_or_default();
            if let Some(secret) = regenerated {
                v["key"] = json!(secret);
            }
            Json(v).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn key_update(State(gw): Gw, headers: HeaderMap, body: Body) -> Response {
    key_change(gw, headers, body, KeyChange::Update, None).await
}

async fn key_block(State(gw): Gw, headers: HeaderMap, body: Body) -> Response {
    key_change(gw, headers, body, KeyChange::Block(true), None).await
}

async fn key_unblock(State(gw): Gw, headers: HeaderMap, body: Body) -> Response {
    key_change(gw, headers, body, KeyChange::Block(false), None).await
}

async fn key_regenerate(State(gw): Gw, headers: HeaderMap, body: Body) -> Response {
    key_change(gw, headers, body, KeyChange::Regenerate, None).await
}

/// LiteLLM's `/key/{key}/regenerate`.
async fn key_regenerate_path(
    State(gw): Gw,
    axum::extract::Path(key): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    key_change(gw, headers, body, KeyChange::Regenerate, Some(key)).await
}

async fn key_info(State(gw): Gw, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let caller = match authenticate(&gw, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    // A virtual key may read its own info; the master key any key's.
    let record = match (q.get("key"), &caller) {
        (Some(k), c) if c.is_admin() => gw.keys.authenticate(k),
        (None, Caller::Key(k)) => Some(k.clone()),
        (Some(k), Caller::Key(own)) => gw.keys.authenticate(k).filter(|r| Arc::ptr_eq(r, own)),
        _ => None,
    };
    match record {
        Some(r) => Json(json!({"info": r.info()})).into_response(),
        None => ApiError::NotFound("key not found".into()).into_response(),
    }
}

async fn key_delete(State(gw): Gw, headers: HeaderMap, body: Body) -> Response {
    if let Err(e) = require_admin(&gw, &headers) {
        return e.into_response();
    }
    let raw = match read_body(&gw, &headers, body).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    #[derive(serde::Deserialize)]
    struct Del {
        keys: Vec<String>,
    }
    let del: Del = match serde_json::from_slice(&raw) {
        Ok(d) => d,
        Err(e) => return ApiError::BadRequest(format!("expected {{\"keys\": [..]}}: {e}")).into_response(),
    };
    let mut deleted = Vec::new();
    for k in &del.keys {
        match gw.delete_key(k).await {
            Ok(true) => deleted.push(mask(k)),
            Ok(false) => {}
            Err(e) => return e.into_response(),
        }
    }
    Json(json!({"deleted_keys": deleted})).into_response()
}

async fn key_list(State(gw): Gw, headers: HeaderMap) -> Response {
    if let Err(e) = require_admin(&gw, &headers) {
        return e.into_response();
    }
    Json(json!({"keys": gw.keys.list()})).into_response()
}

/// `GET /spend/logs?api_key=...&limit=N`: the newest spend-log rows (admin).
/// Rows still waiting for the next batch write are written first, so the
/// answer includes every priced request so far.
async fn spend_logs(State(gw): Gw, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(e) = require_admin(&gw, &headers) {
        return e.into_response();
    }
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=10_000).contains(&n) => n,
        Some(_) => return ApiError::BadRequest("limit must be a whole number from 1 to 10000".into()).into_response(),
    };
    let hash = match q.get("api_key").or_else(|| q.get("key")) {
        None => None,
        Some(k) => match gw.keys.get(k) {
            Some(r) => Some(r.key_hash()),
            None => return ApiError::NotFound("key not found".into()).into_response(),
        },
    };
    if let Err(e) = gw.flush_spend().await {
        tracing::error!(error = %e, "spend flush before /spend/logs failed");
        return ApiError::Internal("the spend log could not be written".into()).into_response();
    }
    let store = Arc::clone(&gw.store);
    match tokio::task::spawn_blocking(move || store.spend_log(hash.as_deref(), limit)).await {
        Ok(Ok(rows)) => Json(json!({"data": rows})).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading the spend log failed");
            ApiError::Internal("the spend log could not be read".into()).into_response()
        }
        Err(e) => ApiError::Internal(format!("reading the spend log failed: {e}")).into_response(),
    }
}

fn mask(k: &str) -> String {
    let tail: String = k.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("sk-...{tail}")
}

/// How long a graceful shutdown waits for requests in flight (a long stream
/// included) before it stops anyway and writes the spend.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a client may take to send a request's headers, and how long a
/// kept-alive connection may wait for its next request (hyper applies the
/// header-read timeout to both).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Connections served at once; more are closed as they arrive, so a flood
/// of idle connections cannot exhaust the process's file descriptors.
pub const MAX_CONNECTIONS: usize = 10_000;

/// The pause after a failed `accept` (out of file descriptors).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Serves until SIGTERM or SIGINT; then stops accepting, lets requests in
/// flight finish (at most [`SHUTDOWN_GRACE`]) and writes the queued spend.
pub async fn serve(gw: Arc<Gateway>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_until(gw, listener, stop_signal()).await
}

/// Limits on the connections a served gateway accepts.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// How long a client may take to send a request's headers, and a
    /// kept-alive connection may idle before its next request.
    pub header_read_timeout: std::time::Duration,
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits { header_read_timeout: HEADER_READ_TIMEOUT, max_connections: MAX_CONNECTIONS }
    }
}

/// [`serve`] with the stop condition given (tests pass a channel).
pub async fn serve_until(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(gw, listener, stop, ServeLimits::default()).await
}

/// [`serve_until`] with the connection limits given.
pub async fn serve_with(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    limits: ServeLimits,
) -> std::io::Result<()> {
    spawn_periodic_tasks(gw.clone());
    spawn_spend_writer(gw.clone());
    let (stopped_tx, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = stopped_tx.send(true);
    });
    // Our own accept loop rather than `axum::serve`: that sets hyper no
    // timer, so a client that trickles its headers (or idles between
    // requests) holds its connection and a file descriptor forever.
    let mut http = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    http.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    http.http2().timer(hyper_util::rt::TokioTimer::new());
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let router = app(gw.clone());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors, most likely: wait a moment for
                // connections to close instead of spinning on accept.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(limit = limits.max_connections, "connection limit reached; closing a new connection");
            continue;
        };
        // Streamed chunks must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let conn = http.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tcp), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    let result = tokio::select! {
        () = graceful.shutdown() => Ok(()),
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!(grace_secs = SHUTDOWN_GRACE.as_secs(), "requests still in flight after the shutdown grace; stopping anyway");
            Ok(())
        }
    };
    match gw.flush_spend().await {
        Ok(r) => tracing::info!(written = r.written, "spend written at shutdown"),
        Err(e) => tracing::error!(error = %e, pending = gw.spend.len(), "spend could not be written at shutdown"),
    }
    result
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("stop signal received; finishing requests in flight");
}

/// Writes queued spend every `proxy_batch_write_at` seconds while the
/// gateway lives.
fn spawn_spend_writer(gw: Arc<Gateway>) {
    let every = gw.spend_flush_interval();
    let weak = Arc::downgrade(&gw);
    drop(gw);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(gw) = weak.upgrade() else { break };
            if let Err(e) = gw.flush_spend().await {
                tracing::error!(error = %e, pending = gw.spend.len(), "spend write failed; the rows stay queued");
            }
        }
    });
}

/// In production the periodic reload runs on a real ticker; the harness
/// calls `run_due_tasks` after moving its manual clock instead.
pub fn spawn_periodic_tasks(gw: Arc<Gateway>) {
    if gw.config.general_settings.model_cost_map_reload_interval_secs.is_none() {
        return;
    }
    let weak = Arc::downgrade(&gw);
    drop(gw);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            match weak.upgrade() {
                Some(gw) => gw.run_due_tasks().await,
                None => break,
            }
        }
    });
}
