//! The HTTP surface: the route table, mounted under the server root path.
//!
//! The root path is applied in exactly one place (`app`), by nesting the
//! whole route table under it; pages build their links from the same value,
//! so no route or link can "drop out" of the prefix on its own. The model
//! routes read their body within the limit here and hand it to `proxy`; the
//! admin routes are in `admin`, the accept loop in `listen`.

mod admin;
mod listen;

pub(crate) use admin::health_value;
pub(crate) use listen::write_out;
pub(crate) use listen::SHUTDOWN_GRACE;
pub use listen::{serve, serve_until, serve_with, ServeLimits};

use crate::gateway::error::ApiError;
use crate::gateway::state::Gateway;
use crate::gateway::{proxy, ui};
use admin::*;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::sync::Arc;

type Gw = State<Arc<Gateway>>;

/// Reads the body up to the configured limit; over it, a 413 in OpenAI's shape.
pub(super) async fn read_body(gw: &Gateway, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
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

/// A model route's body, read within the limit before the proxy sees it;
/// a refusal (413, a body that broke off) in the error shape of the API the
/// route speaks (`S`), so each SDK raises its own typed error.
pub(super) struct LimitedBody<S>(Bytes, std::marker::PhantomData<S>);

/// The error shape of a route's API.
pub(super) trait ErrorShape {
    fn render(e: ApiError) -> Response;
}

/// OpenAI's `{"error": {...}}`.
pub(super) struct OpenAiShape;

impl ErrorShape for OpenAiShape {
    fn render(e: ApiError) -> Response {
        e.into_response()
    }
}

/// Anthropic's `{"type": "error", "error": {...}}`.
pub(super) struct AnthropicShape;

impl ErrorShape for AnthropicShape {
    fn render(e: ApiError) -> Response {
        proxy::anthropic_error(e)
    }
}

impl<S: ErrorShape> axum::extract::FromRequest<Arc<Gateway>> for LimitedBody<S> {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, gw: &Arc<Gateway>) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        match read_body(gw, &parts.headers, body).await {
            Ok(raw) => Ok(LimitedBody(raw, std::marker::PhantomData)),
            Err(e) => Err(S::render(e)),
        }
    }
}

type OpenAiBody = LimitedBody<OpenAiShape>;
type MessagesBody = LimitedBody<AnthropicShape>;

/// A model route's handler: the body its extractor read within the limit,
/// then the proxy's entry point.
macro_rules! model_route {
    ($name:ident, $target:path, $body:ty) => {
        async fn $name(State(gw): Gw, headers: HeaderMap, body: $body) -> Response {
            $target(gw, headers, body.0).await
        }
    };
}

model_route!(chat, proxy::chat_completions, OpenAiBody);
model_route!(completions, proxy::completions, OpenAiBody);
model_route!(responses, proxy::responses, OpenAiBody);
model_route!(embeddings, proxy::embeddings, OpenAiBody);
model_route!(messages, proxy::messages, MessagesBody);
model_route!(count_tokens, proxy::count_tokens, MessagesBody);

/// An Azure-style call: the body's `model` becomes the path's deployment
/// (what the `AzureOpenAI` client addresses), then the usual handler runs.
/// `api-version` is accepted and not needed: the gateway speaks one API.
macro_rules! azure_handler {
    ($name:ident, $target:path) => {
        async fn $name(
            State(gw): Gw,
            axum::extract::Path(deployment): axum::extract::Path<String>,
            headers: HeaderMap,
            body: OpenAiBody,
        ) -> Response {
            $target(gw, headers, with_model(body.0, &deployment)).await
        }
    };
}

/// `GET /v1/responses/{id}`: a stored Response, from the deployment that made it.
async fn response_retrieve(
    State(gw): Gw,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    proxy::retrieve_response(gw, headers, id).await
}

/// `DELETE /v1/responses/{id}`: at the deployment that stored it.
async fn response_delete(
    State(gw): Gw,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    proxy::delete_response(gw, headers, id).await
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
        .route("/v1/responses/{id}", get(response_retrieve).delete(response_delete))
        .route("/responses/{id}", get(response_retrieve).delete(response_delete))
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
        .route("/metrics", get(crate::gateway::metrics::page))
        .route("/openapi.json", get(ui::openapi))
        .route("/docs", get(ui::docs))
        .route("/ui", get(ui::page))
        .route("/ui/", get(ui::page))
        .route("/ui/activity", get(ui::activity))
        .route("/ui/assets/{file}", get(ui::asset))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(gw.clone(), crate::gateway::auth::adopt_shared_keys))
        .layer(axum::middleware::from_fn_with_state(gw.clone(), crate::gateway::metrics::track))
        // Outermost, so the server span covers the whole request.
        .layer(axum::middleware::from_fn_with_state(gw.clone(), crate::gateway::otel::layer))
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

pub(super) async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::NotFound(format!("no route for {}", uri.path())).into_response()
}
