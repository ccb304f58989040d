//! The admin and information routes: health, the model lists, reloads,
//! client-cache stats, virtual keys and the spend log.
//!
//! Who may call is said by the handler's arguments, not by a preamble:
//! [`Caller`] (any authenticated caller), [`Admin`] (the master key, or an
//! open gateway that allows unauthenticated admin) and [`AdminObject`] (an
//! admin call's JSON object body, read within the body limit).

use super::read_body;
use crate::gateway::auth::{authenticate, require_admin, Caller};
use crate::gateway::error::ApiError;
use crate::gateway::redis_link::RedisStatus;
use crate::gateway::shared_limits::Reloadable;
use crate::gateway::state::{unix, Gateway};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

type Gw = State<Arc<Gateway>>;

impl FromRequestParts<Arc<Gateway>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &Arc<Gateway>) -> Result<Self, Self::Rejection> {
        authenticate(gw, &parts.headers)
    }
}

/// An admin caller: the master key, or an open gateway that allows
/// unauthenticated admin.
pub(super) struct Admin;

impl FromRequestParts<Arc<Gateway>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &Arc<Gateway>) -> Result<Self, Self::Rejection> {
        require_admin(gw, &parts.headers).map(|_| Admin)
    }
}

/// An admin call's JSON object body (an empty body is `{}`): the caller is
/// checked before a byte of the body is read.
pub(super) struct AdminObject(Map<String, Value>);

impl FromRequest<Arc<Gateway>> for AdminObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, gw: &Arc<Gateway>) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        require_admin(gw, &parts.headers)?;
        let raw = read_body(gw, &parts.headers, body).await?;
        let raw = if raw.is_empty() { Bytes::from_static(b"{}") } else { raw };
        match serde_json::from_slice::<Value>(&raw) {
            Ok(Value::Object(m)) => Ok(AdminObject(m)),
            Ok(other) => Err(ApiError::BadRequest(format!("expected a JSON object, got {other}"))),
            Err(e) => Err(ApiError::BadRequest(format!("the body is not JSON: {e}"))),
        }
    }
}

pub(super) async fn liveness() -> Json<Value> {
    Json(json!({"status": "alive"}))
}

pub(crate) fn health_value(gw: &Gateway) -> Value {
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
    let redis = gw.shared_limits.as_ref().map_or_else(RedisStatus::not_configured, |s| s.status());
    let response_cache = gw.response_cache.as_ref().map(|c| c.stats());
    // Redis down: limits are per instance, so N instances let N× through;
    // the cache's Redis down: nothing is cached, every request is paid for.
    let cache_down = response_cache.as_ref().and_then(|c| c.redis.as_ref()).is_some_and(|r| !r.connected);
    let degraded = catalog.stale || beta.stale || (redis.configured && !redis.connected) || cache_down;
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
        // `null` when responses are not cached.
        "response_cache": response_cache,
        "auth": {
            "open": crate::gateway::auth::is_open(gw),
            "admin_open": crate::gateway::auth::is_open(gw) && gw.config.general_settings.allow_unauthenticated_admin,
        },
        "storage": {
            "backend": gw.store.backend(),
            "durable": gw.store.location().is_durable(),
            "shared": gw.store.is_shared(),
            "location": gw.store.location().describe(),
            "spend_rows_queued": gw.spend.len(),
        },
        "redis": redis,
        "known_bugs_enabled": gw.bugs.any(),
    })
}

/// Liveness and readiness for anyone; where each deployment points only for
/// an admin (the master key, or a gateway with no auth configured).
pub(super) async fn health(State(gw): Gw, headers: HeaderMap) -> Json<Value> {
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
        for at in ["/redis", "/response_cache/redis"] {
            if let Some(r) = v.pointer_mut(at).and_then(Value::as_object_mut) {
                r.remove("address");
            }
        }
    }
    Json(v)
}

/// `GET /v1/models/{id}`: one model the caller may use, in OpenAI's shape,
/// or OpenAI's 404 (also for a model the caller's key may not use: its
/// existence is not the caller's business).
pub(super) async fn model_retrieve(
    State(gw): Gw,
    axum::extract::Path(id): axum::extract::Path<String>,
    caller: Caller,
) -> Response {
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

pub(super) async fn models(State(gw): Gw, caller: Caller) -> Response {
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
pub(super) async fn model_info(State(gw): Gw, caller: Caller) -> Response {
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
                crate::gateway::proxy::pricing::pricing_names(p, &d.upstream_model, d.model_info.as_ref())
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
                    // What calls to it are charged: a deployment's own rates
                    // where it sets them, the map's otherwise (as pricing does).
                    "input_cost_per_token": d.params.input_cost_per_token.or(entry.and_then(|e| e.input_cost_per_token)),
                    "output_cost_per_token": d.params.output_cost_per_token.or(entry.and_then(|e| e.output_cost_per_token)),
                    "max_tokens": entry.and_then(|e| e.max_tokens),
                    "max_input_tokens": entry.and_then(|e| e.max_input_tokens),
                    "max_output_tokens": entry.and_then(|e| e.max_output_tokens),
                },
            })
        })
        .collect();
    Json(json!({"data": data})).into_response()
}

pub(super) async fn cost_map_status(State(gw): Gw) -> Json<Value> {
    Json(serde_json::to_value(gw.catalog.status()).unwrap_or_default())
}

pub(super) async fn reload_cost_map(State(gw): Gw, _: Admin) -> Response {
    let result = gw.reload_cost_map().await;
    // Whatever this instance made of it: each instance fetches and
    // validates the map from its own source.
    if let Some(shared) = gw.shared_limits.as_ref().filter(|_| !gw.bugs.no_reload_broadcast) {
        shared.publish_reload(Reloadable::CostMap).await;
    }
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn reload_beta(State(gw): Gw, _: Admin) -> Response {
    let result = gw.reload_beta_policy().await;
    // Each instance fetches and validates the policy from its own source.
    if let Some(shared) = gw.shared_limits.as_ref().filter(|_| !gw.bugs.no_reload_broadcast) {
        shared.publish_reload(Reloadable::BetaPolicy).await;
    }
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn cache_stats(State(gw): Gw, _: Admin) -> Response {
    Json(serde_json::to_value(gw.clients.stats()).unwrap_or_default()).into_response()
}

pub(super) async fn key_generate(State(gw): Gw, AdminObject(body): AdminObject) -> Response {
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
    mut body: Map<String, Value>,
    change: KeyChange,
    path_key: Option<String>,
) -> Response {
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

pub(super) async fn key_update(State(gw): Gw, AdminObject(body): AdminObject) -> Response {
    key_change(gw, body, KeyChange::Update, None).await
}

pub(super) async fn key_block(State(gw): Gw, AdminObject(body): AdminObject) -> Response {
    key_change(gw, body, KeyChange::Block(true), None).await
}

pub(super) async fn key_unblock(State(gw): Gw, AdminObject(body): AdminObject) -> Response {
    key_change(gw, body, KeyChange::Block(false), None).await
}

pub(super) async fn key_regenerate(State(gw): Gw, AdminObject(body): AdminObject) -> Response {
    key_change(gw, body, KeyChange::Regenerate, None).await
}

/// LiteLLM's `/key/{key}/regenerate`.
pub(super) async fn key_regenerate_path(
    State(gw): Gw,
    axum::extract::Path(key): axum::extract::Path<String>,
    AdminObject(body): AdminObject,
) -> Response {
    key_change(gw, body, KeyChange::Regenerate, Some(key)).await
}

pub(super) async fn key_info(State(gw): Gw, caller: Caller, Query(q): Query<HashMap<String, String>>) -> Response {
    // A virtual key may read its own info; the master key any key's.
    let record = match (q.get("key"), &caller) {
        (Some(k), c) if c.is_admin() => gw.keys.authenticate(k),
        (None, Caller::Key(k)) => Some(k.clone()),
        (Some(k), Caller::Key(own)) => gw.keys.authenticate(k).filter(|r| Arc::ptr_eq(r, own)),
        _ => None,
    };
    match record {
        Some(r) => {
            // The fleet's spend when Redis shares it.
            if let Some(s) = &gw.shared_limits {
                s.refresh_spend(&r).await;
            }
            Json(json!({"info": r.info()})).into_response()
        }
        None => ApiError::NotFound("key not found".into()).into_response(),
    }
}

pub(super) async fn key_delete(State(gw): Gw, AdminObject(body): AdminObject) -> Response {
    #[derive(serde::Deserialize)]
    struct Del {
        keys: Vec<String>,
    }
    let del: Del = match serde_json::from_value(Value::Object(body)) {
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

pub(super) async fn key_list(State(gw): Gw, _: Admin) -> Response {
    Json(json!({"keys": gw.keys.list()})).into_response()
}

/// `GET /spend/logs?api_key=...&limit=N`: the newest spend-log rows (admin).
/// Rows still waiting for the next batch write are written first, so the
/// answer includes every priced request so far.
pub(super) async fn spend_logs(State(gw): Gw, _: Admin, Query(q): Query<HashMap<String, String>>) -> Response {
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=10_000).contains(&n) => n,
        Some(_) => return ApiError::BadRequest("limit must be a whole number from 1 to 10000".into()).into_response(),
    };
    let hash = match q.get("api_key").or_else(|| q.get("key")) {
        None => None,
        Some(k) => match gw.lookup_key(k).await {
            Some(r) => Some(r.key_hash()),
            None => return ApiError::NotFound("key not found".into()).into_response(),
        },
    };
    if let Err(e) = gw.flush_spend().await {
        tracing::error!(error = %e, "spend flush before /spend/logs failed");
        return ApiError::Internal("the spend log could not be written".into()).into_response();
    }
    match gw.store.spend_log(hash.as_deref(), limit).await {
        Ok(rows) => Json(json!({"data": rows})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reading the spend log failed");
            ApiError::Internal("the spend log could not be read".into()).into_response()
        }
    }
}

fn mask(k: &str) -> String {
    let tail: String = k.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("sk-...{tail}")
}
