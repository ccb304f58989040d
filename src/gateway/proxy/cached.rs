//! The response cache on the request path (`gateway::response_cache`):
//! after admission (so a key's models, budget and rpm are checked first, and
//! a hit still counts against its rpm, as in LiteLLM), before any route is
//! tried. A hit is answered from the cache (memory or Redis), with no
//! upstream call and no spend (LiteLLM prices a hit at 0); a miss goes
//! upstream and a successful whole answer is stored.

use super::admit::Admitted;
use super::fallback::with_call_headers;
use super::stream::sse_response;
use crate::gateway::error::ApiError;
use crate::gateway::response_cache::{replay_as_stream, CallType, ChatAssembler, Plan, ResponseCache, MAX_ENTRY_BYTES};
use crate::gateway::state::Gateway;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use std::sync::Arc;

/// Whether the answer came from the cache: `hit` or `miss` (only on
/// requests the cache applies to). LiteLLM says a hit with
/// `x-litellm-cache-key` alone; this says a miss too.
const STATUS_HEADER: &str = "x-postmortem-cache-status";

/// Runs `run` (the request's routes) unless the cache answers; stores what
/// it answered when it may.
pub(super) async fn through_cache<F, Fut>(
    gw: &Gateway,
    a: &Admitted,
    call: CallType,
    run: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let Some(cache) = gw.response_cache.as_ref() else { return run().await };
    let Some(plan) = cache.plan(call, a.stream, &a.cache, &a.caller, &a.group, &a.body) else {
        return run().await;
    };
    let found = cache.get(&plan).await.and_then(|stored| hit(call, a, &plan, stored));
    if cache.looks_up(&plan) {
        gw.metrics.cache_lookup(&a.model, found.is_some());
    }
    if let Some(resp) = found {
        return Ok(with_call_headers(resp, &a.caller));
    }
    let mut resp = run().await?;
    let json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if cache.stores(&plan) && !a.stream && resp.status() == StatusCode::OK && json {
        resp = stored(cache, &plan, resp).await?;
    }
    resp.headers_mut().insert(STATUS_HEADER, HeaderValue::from_static("miss"));
    Ok(resp)
}

/// Reads a whole answer (already in memory: a JSON body) and stores it.
/// One too large to keep is passed on unread.
async fn stored(cache: &ResponseCache, plan: &Plan, resp: Response) -> Result<Response, ApiError> {
    let (parts, body) = resp.into_parts();
    let fits = body.size_hint().upper().is_some_and(|n| n <= MAX_ENTRY_BYTES as u64);
    if !fits {
        return Ok(Response::from_parts(parts, body));
    }
    let bytes = axum::body::to_bytes(body, MAX_ENTRY_BYTES)
        .await
        .map_err(|e| ApiError::Internal(format!("reading an answer to cache it: {e}")))?;
    cache.put(plan, bytes.clone()).await;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// The stored answer as the client asked for it: the JSON as stored, or,
/// for a stream, replayed as one. `None` when it cannot be replayed (the
/// request then goes upstream).
fn hit(call: CallType, a: &Admitted, plan: &Plan, stored: Bytes) -> Option<Response> {
    let mut resp = if a.stream {
        let include_usage = a.body.get("stream_options").and_then(|o| o.get("include_usage")).and_then(|v| v.as_bool());
        let events = replay_as_stream(call, &stored, include_usage == Some(true))?;
        sse_response(futures::stream::iter(events.into_iter().map(Ok)))
    } else {
        let mut r = Response::new(Body::from(stored));
        r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
        r
    };
    let h = resp.headers_mut();
    h.insert(STATUS_HEADER, HeaderValue::from_static("hit"));
    if let Ok(v) = HeaderValue::from_str(&plan.key) {
        h.insert("x-litellm-cache-key", v);
    }
    // A hit costs nothing (LiteLLM's cost calculator: 0 for a cache hit).
    let zero = HeaderValue::from_static("0.0000000000");
    h.insert("x-litellm-response-cost", zero.clone());
    h.insert("x-postmortem-response-cost", zero);
    Some(resp)
}

/// A streamed chat answer on its way to the client, kept to be stored when
/// the stream ends whole (`ChatAssembler` says what whole is). Under the
/// key a buffered request gets: `stream` is no part of it.
pub(super) struct StreamRecorder {
    gw: Arc<Gateway>,
    plan: Plan,
    assembler: ChatAssembler,
}

impl StreamRecorder {
    /// For a streamed chat request whose answer may be stored, else `None`.
    pub(super) fn for_chat(gw: &Arc<Gateway>, a: &Admitted) -> Option<StreamRecorder> {
        let cache = gw.response_cache.as_ref()?;
        let plan = cache.plan(CallType::Chat, false, &a.cache, &a.caller, &a.group, &a.body)?;
        cache.stores(&plan).then(|| StreamRecorder { gw: Arc::clone(gw), plan, assembler: ChatAssembler::new() })
    }

    /// Complete events, as the client gets them.
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        self.assembler.feed(bytes);
    }

    /// The stream ended cleanly: store the answer if it was whole (before
    /// the client's body ends, so a request after it finds the entry; a
    /// Redis write is bounded).
    pub(super) async fn finish(self) {
        if let (Some(cache), Some(answer)) = (self.gw.response_cache.as_ref(), self.assembler.finish()) {
            cache.put(&self.plan, answer).await;
        }
    }
}
