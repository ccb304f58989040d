//! The request path, as stages: admit (authenticate, parse once, validate,
//! authorize, route), fallback and retry over the routes, the upstream call
//! through the provider's module, the answer (whole or streamed) and its
//! price.
//!
//! - `admit`: the front half every entry point shares, ending in
//!   `admit::Admitted` (the caller, the parsed body, the routes).
//! - `cached`: the response cache, between admission and the routes.
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
mod cached;
mod call;
mod fallback;
mod handles;
mod openai;
pub(crate) mod pricing;
mod stream;

use crate::gateway::activity::{Attribution, Who};
pub(crate) use anthropic::anthropic_error;
pub use anthropic::{count_tokens, messages};

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

/// An admitted request's answer: labelled, and attributed to its model and
/// caller for the activity charts (`activity`, recorded by `metrics::track`).
fn answered(resp: axum::response::Response, a: &admit::Admitted) -> axum::response::Response {
    let mut resp = labelled(resp, &a.model);
    let who = Who::of(&a.caller);
    resp.extensions_mut().insert(Attribution { known_model: true, who });
    resp
}

/// A refused request's answer: labelled with the model its body names,
/// which gets an activity series of its own only if the caller was
/// authenticated and the gateway serves the name (so nobody can put names
/// on the public charts by sending requests: with a catch-all `*` every
/// name is served), and attributed to the caller when it was authenticated.
fn refused(
    gw: &crate::gateway::state::Gateway,
    resp: axum::response::Response,
    raw: &[u8],
    caller: Option<&crate::gateway::auth::Caller>,
) -> axum::response::Response {
    let model = model_of(raw);
    let known_model = caller.is_some() && serves(gw, &model);
    let mut resp = labelled(resp, &model);
    resp.extensions_mut().insert(Attribution { known_model, who: caller.and_then(Who::of) });
    resp
}

/// Whether `model` names a group (or an alias of one) this gateway routes,
/// available or not. Asked only of refused requests.
fn serves(gw: &crate::gateway::state::Gateway, model: &str) -> bool {
    if model.is_empty() {
        return false;
    }
    let group = gw.fallbacks.alias(model).unwrap_or(model);
    !gw.router.resolve(group, &gw.catalog.current()).is_empty() || !gw.router.unavailable_for(group).is_empty()
}
pub use openai::{chat_completions, completions, embeddings, responses};
pub(crate) use openai::{delete_response, retrieve_response};
