//! `fidelity.response-handle`: a Response's `id` is a handle. The client
//! sends it back as `previous_response_id` ("the unique ID of the previous
//! response to the model. Use this to create multi-turn conversations"),
//! and only the provider account that stored the Response can resolve it. A
//! gateway may hand out ids of its own (the identity contract exempts
//! them), but a handle it gave must reach the provider that made the
//! Response, as that provider's id.
//!
//! A handle read back or deleted with `GET`/`DELETE /v1/responses/{id}`
//! goes to the provider that stored it, as its own id.
//!
//! This contract spans exchanges: [`Handles`] remembers, per scenario, which
//! mock and which provider id stand behind each Response id a client got.
//! A gateway that rebuilds the conversation itself and sends no
//! `previous_response_id` upstream is not judged here (the request
//! fidelity contract sees what it sends).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{violation, Attribution, Endpoint, Exchange, Violation};

/// The Response ids clients got so far, each with the mock that answered
/// and the id that mock issued.
#[derive(Debug, Clone, Default)]
pub struct Handles {
    issued: BTreeMap<String, (String, String)>,
}

impl Handles {
    /// Checks the exchange against the handles seen before it, then learns
    /// the ones it hands out.
    pub fn check(&mut self, x: &Exchange) -> Vec<Violation> {
        let mut out = Vec::new();
        if x.attribution != Attribution::Exact {
            return out;
        }
        if let Some(handle) = retrieved_id(x) {
            self.check_retrieval(x, &handle, &mut out);
            return out;
        }
        if Endpoint::of(&x.request.path) != Endpoint::Responses {
            return out;
        }
        let body = x.request.json();
        // `store` defaults to true: a Response the client did not opt out of
        // storing must be stored, or its id will not resolve.
        if body.as_ref().and_then(|b| b.get("store")) != Some(&Value::Bool(false)) {
            for call in x.model_calls().filter(|c| c.request.json_field("store") == Some(&Value::Bool(false))) {
                out.push(violation(
                    "fidelity.response-handle",
                    format!(
                        "the client left `store` on (its default), but {} was sent store: false: the Response's id will not resolve on the next turn",
                        call.provider
                    ),
                ));
            }
        }
        let sent = body.and_then(|b| b.get("previous_response_id").and_then(Value::as_str).map(str::to_string));
        if let Some((mock, id)) = sent.as_deref().and_then(|h| self.issued.get(h)) {
            let handle = sent.as_deref().unwrap_or_default();
            for call in x.model_calls().filter(|c| c.request.path.trim_end_matches('/').ends_with("/responses")) {
                let Some(upstream) = call.request.json_field("previous_response_id").and_then(Value::as_str) else {
                    continue;
                };
                if call.provider != *mock {
                    out.push(violation(
                        "fidelity.response-handle",
                        format!(
                            "the client continued Response {handle:?}, which {mock} stored, but the follow-up went to {} (with previous_response_id {upstream:?})",
                            call.provider
                        ),
                    ));
                } else if upstream != id {
                    out.push(violation(
                        "fidelity.response-handle",
                        format!(
                            "the client continued Response {handle:?}; {mock} issued it as {id:?} but received previous_response_id {upstream:?}"
                        ),
                    ));
                }
            }
        }
        self.learn(x);
        out
    }

    /// `GET /v1/responses/{handle}`: read from the provider that stored
    /// it, as the id it issued; a 2xx is that Response. A gateway that does
    /// not serve the route (a 404 of its own, no upstream read) is not
    /// judged: the route is optional for a gateway, its answer is not.
    fn check_retrieval(&self, x: &Exchange, handle: &str, out: &mut Vec<Violation>) {
        let Some((mock, id)) = self.issued.get(handle) else { return };
        for call in x.upstream.iter().filter(|c| matches!(c.request.method.as_str(), "GET" | "DELETE")) {
            let Some(read) = call.request.path.rsplit_once("/responses/").map(|(_, id)| id) else { continue };
            let read = crate::mocks::percent_decode(read, false);
            if call.provider != *mock || read != *id {
                out.push(violation(
                    "fidelity.response-handle",
                    format!(
                        "the client {} Response {handle:?}, which {mock} stored as {id:?}, but the gateway asked {} for {read:?}",
                        if x.request.method == "GET" { "read" } else { "deleted" },
                        call.provider
                    ),
                ));
            }
        }
        if x.request.method == "GET" && (200..300).contains(&x.response.status) {
            let problems = match x.response.json() {
                Some(v) => super::schema::openai_response(&v),
                None => vec!["not JSON".to_string()],
            };
            if !problems.is_empty() {
                out.push(violation(
                    "schema.success-body",
                    format!("GET of Response {handle:?}: {}", problems.join("; ")),
                ));
            }
        }
    }

    fn learn(&mut self, x: &Exchange) {
        if !(200..300).contains(&x.response.status) {
            return;
        }
        let Some(call) = x.last_model_call() else { return };
        let (client, provider) = (response_ids(&x.response.body), response_ids(&call.answer.body));
        if let (Some(c), Some(p)) = (client.first(), provider.first()) {
            self.issued.insert(c.clone(), (call.provider.clone(), p.clone()));
        }
    }
}

/// The id a client reads with `GET /v1/responses/{id}` (any root path
/// already removed).
fn retrieved_id(x: &Exchange) -> Option<String> {
    if !matches!(x.request.method.as_str(), "GET" | "DELETE") {
        return None;
    }
    let path = x.request.path.split(['?', '#']).next().unwrap_or("");
    let id = path.strip_prefix("/v1/responses/").or_else(|| path.strip_prefix("/responses/"))?;
    (!id.is_empty() && !id.contains('/')).then(|| crate::mocks::percent_decode(id, false))
}

/// The ids of the Responses a body carries: a whole `Response`, or the
/// `response` of a stream's lifecycle events, in order of appearance.
pub fn response_ids(body: &[u8]) -> Vec<String> {
    fn id_of(v: &Value) -> Option<String> {
        let r = if v.get("object").and_then(Value::as_str) == Some("response") { Some(v) } else { v.get("response") };
        r?.get("id")?.as_str().map(str::to_string)
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return id_of(&v).into_iter().collect();
    }
    let mut ids: Vec<String> = Vec::new();
    for id in super::sse::events(body).events.iter().filter_map(|e| id_of(&e.json()?)) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}
