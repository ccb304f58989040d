//! The request path, as stages: admit (authenticate, parse once, validate,
//! authorize, route), fallback and retry over the routes, the upstream call
//! through the provider's module, the answer (whole or streamed) and its
//! price.
//!
//! - `admit`: the front half every entry point shares, ending in
//!   `admit::Admitted` (the caller, the parsed body, the routes).
//! - `fallback`: tries routes in order, then the fallback groups.
//! - `call`: one upstream call via `providers::ProviderApi`.
//! - `stream`: SSE answers, their error events and the stream meter.
//! - `handles`: Responses API ids that name the deployment that stored them.
//! - `pricing`: usage, cost, the spend log and the cost headers.
//! - `openai`: the OpenAI entry points (chat, embeddings, completions,
//!   Responses); `anthropic`: `/v1/messages` and `count_tokens`, and chat
//!   on Claude.
//!
//! No stage matches on a provider: what differs per provider is its module's.

mod admit;
mod anthropic;
mod call;
mod fallback;
mod handles;
mod openai;
pub(crate) mod pricing;
mod stream;

pub use anthropic::{anthropic_error, count_tokens, messages};

/// The `model` a body names, for labelling an answer the front half refused
/// (only on that path: admitted requests carry it already).
fn model_of(raw: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Named {
        model: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Named>(raw).ok().and_then(|n| n.model?.as_str().map(str::to_string)).unwrap_or_default()
}

/// The answer, labelled with the model the client asked for (the request
/// metrics' `requested_model`, recorded by `metrics::track`).
fn labelled(mut resp: axum::response::Response, model: &str) -> axum::response::Response {
    resp.extensions_mut().insert(crate::gateway::metrics::RequestedModel(model.to_string()));
    resp
}
pub use openai::{chat_completions, completions, delete_response, embeddings, responses, retrieve_response};
