//! `/ui` (a small admin page with its own assets), `/docs` (renders the
//! OpenAPI document) and `/openapi.json`.
//!
//! Every link is built from the gateway's root path, the same value the
//! routes are mounted under, so pages and routes cannot disagree.

use crate::gateway::state::Gateway;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

const APP_JS: &str = include_str!("ui_assets/app.js");
const APP_CSS: &str = include_str!("ui_assets/app.css");
const DOCS_JS: &str = include_str!("ui_assets/docs.js");

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub async fn page(State(gw): State<Arc<Gateway>>) -> Html<String> {
    let root = escape(&gw.root_path);
    let banner = if crate::gateway::auth::is_open(&gw) {
        let admin = if gw.config.general_settings.allow_unauthenticated_admin {
            "Its admin routes (keys, reloads) are open to anyone too."
        } else {
            "Its admin routes are closed until a master key is set."
        };
        format!(
            r#"<p class="warning" id="open-banner"><strong>This gateway is open:</strong> it has no master key, so anyone who can reach it may call its models. {admin} Set <code>general_settings.master_key</code> or <code>LITELLM_MASTER_KEY</code>.</p>"#
        )
    } else {
        String::new()
    };
    Html(format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>postmortem gateway</title>
<link rel="stylesheet" href="{root}/ui/assets/app.css">
<script defer src="{root}/ui/assets/app.js"></script>
</head>
<body data-root="{root}">
<header><h1>postmortem gateway</h1>
<nav><a href="{root}/ui">Overview</a> · <a href="{root}/docs">API docs</a> · <a href="{root}/openapi.json">OpenAPI</a> · <a href="{root}/health">Health</a></nav>
</header>
<main>
{banner}
<section><h2>Status</h2><div id="status">loading…</div></section>
<section><h2>Last hour by model</h2><div id="activity-models" class="charts">loading…</div></section>
<section><h2>Models</h2><ul id="models"></ul></section>
<section><h2>Deployments</h2><table id="deployments"><thead><tr><th>id</th><th>model_name</th><th>provider</th><th>model</th><th>api_base</th><th>status</th></tr></thead><tbody></tbody></table></section>
<p class="warning" id="stale-banner" hidden></p>
<section><h2>Cost map</h2><table id="cost-map" class="facts"><tbody></tbody></table></section>
<section><h2>Client cache</h2><table id="client-cache" class="facts"><tbody></tbody></table></section>
<section><h2>Redis</h2><table id="redis" class="facts"><tbody></tbody></table></section>
<section><h2>Keys and spend</h2>
<p><label>Master key <input id="master-key" type="password" autocomplete="off"></label> <button id="load-keys">Load keys</button></p>
<table id="keys"><thead><tr><th>key</th><th>alias</th><th>models</th><th>spend</th><th>max budget</th></tr></thead><tbody></tbody></table>
<h3>Last hour by key</h3><div id="activity-keys" class="charts"><p class="muted">Enter the master key and click Load keys.</p></div></section>
</main>
</body>
</html>
"#
    ))
}

/// `GET /ui/activity`: the last hour per model (open, as `/metrics` is:
/// it shows per-model spend too) and, for the master key only, per key
/// (masked, with aliases). A caller that presents a credential which is not
/// the master key is refused, so a mistyped key on the page says so; an
/// anonymous caller gets the models and no `keys` member at all.
pub async fn activity(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let presented = crate::gateway::auth::presented_key(&headers).is_some_and(|k| !k.is_empty());
    let show_keys = match crate::gateway::auth::require_admin(&gw, &headers) {
        Ok(_) => true,
        Err(e) if presented => return e.into_response(),
        Err(_) => false,
    };
    let current: crate::gateway::activity::KeyLookup = &|hash| gw.keys.get(hash);
    let body = gw.activity.report(show_keys.then_some(current));
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, ty) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "docs.js" => (DOCS_JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    ([(header::CONTENT_TYPE, ty), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

pub async fn docs(State(gw): State<Arc<Gateway>>) -> Html<String> {
    let root = escape(&gw.root_path);
    Html(format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>postmortem API docs</title>
<link rel="stylesheet" href="{root}/ui/assets/app.css">
<script defer src="{root}/ui/assets/docs.js"></script></head>
<body data-root="{root}" data-openapi="{root}/openapi.json">
<header><h1>postmortem API</h1><nav><a href="{root}/ui">Admin UI</a> · <a href="{root}/openapi.json">openapi.json</a></nav></header>
<main id="docs">loading…</main>
</body></html>
"#
    ))
}

fn op(summary: &str, auth: bool) -> Value {
    let mut o = json!({"summary": summary, "responses": {"200": {"description": "OK"}, "default": {"description": "OpenAI-style error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}});
    if auth {
        o["security"] = json!([{"bearer": []}]);
    }
    o
}

pub(crate) fn openapi_document(root_path: &str) -> Value {
    let server = if root_path.is_empty() { "/".to_string() } else { root_path.to_string() };
    json!({
        "openapi": "3.1.0",
        "info": {"title": "postmortem gateway", "version": env!("CARGO_PKG_VERSION"),
                 "description": "An OpenAI- and Anthropic-compatible LLM gateway."},
        "servers": [{"url": server}],
        "paths": {
            "/v1/chat/completions": {"post": op("Chat completion (OpenAI format), streaming with `stream: true`", true)},
            "/chat/completions": {"post": op("Alias of /v1/chat/completions", true)},
            "/v1/completions": {"post": op("Legacy text completions (OpenAI-family deployments)", true)},
            "/v1/responses": {"post": op("OpenAI Responses API (OpenAI-family deployments), streaming with `stream: true`", true)},
            "/v1/embeddings": {"post": op("Embeddings (OpenAI format)", true)},
            "/embeddings": {"post": op("Alias of /v1/embeddings", true)},
            "/v1/messages": {"post": op("Anthropic Messages API", true)},
            "/v1/messages/count_tokens": {"post": op("Anthropic token counting (Anthropic, Azure AI)", true)},
            "/v1/models": {"get": op("Models this key can use", true)},
            "/v1/model/info": {"get": op("Deployments this key can use, with their cost-map prices", true)},
            "/health": {"get": op("Liveness and readiness details", false)},
            "/metrics": {"get": op("Prometheus metrics (LiteLLM's names): requests, latency, tokens, spend, state", false)},
            "/model_cost_map/status": {"get": op("Cost map status: source, loaded at, stale and why", false)},
            "/reload/model_cost_map": {"post": op("Re-fetch and validate the cost map (master key)", true)},
            "/reload/anthropic_beta_headers": {"post": op("Re-fetch the anthropic-beta policy (master key)", true)},
            "/client_cache/stats": {"get": op("Provider client cache statistics (master key)", true)},
            "/key/generate": {"post": op("Create a virtual key (master key)", true)},
            "/key/info": {"get": op("A key's models, spend and budget", true)},
            "/key/delete": {"post": op("Delete virtual keys (master key)", true)},
            "/key/list": {"get": op("List virtual keys, masked (master key)", true)},
            "/ui": {"get": op("Admin page", false)},
            "/ui/activity": {"get": op("The last hour per minute: requests, errors, latency and spend per model (open); per key too with the master key", false)},
            "/docs": {"get": op("This documentation", false)}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "string"}}}}}}
        }
    })
}

pub async fn openapi(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    Json(openapi_document(&gw.root_path))
}
