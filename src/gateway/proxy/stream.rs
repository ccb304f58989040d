//! Streamed answers: the SSE response, error events in each API's own form,
//! and the meter that prices a stream from the usage it carried.

use super::pricing::{charge, openai_usage};
use crate::gateway::auth::Caller;
use crate::gateway::catalog::Usage;
use crate::gateway::error::ApiError;
use crate::gateway::providers::anthropic;
use crate::gateway::providers::params::Endpoint;
use crate::gateway::routing::Route;
use crate::gateway::sse::SseParser;
use crate::gateway::state::Gateway;
use axum::body::{Body, Bytes};
use axum::http::HeaderValue;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;

pub(super) fn sse_response(stream: impl futures::Stream<Item = Result<Bytes, ApiError>> + Send + 'static) -> Response {
    let body = Body::from_stream(stream.map(|r| r.map_err(std::io::Error::other)));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("text/event-stream"));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}

pub(super) fn sse_error_event(e: &ApiError) -> Bytes {
    Bytes::from(format!("data: {}\n\n", e.body()))
}

/// The error event of a pass-through stream in its API's own form: the
/// Responses API names its events and puts `type: error` in the data
/// ("Streaming responses", `error` event); Chat Completions and text
/// completions carry an `error` object.
pub(super) fn stream_error_event(endpoint: Endpoint, e: &ApiError) -> Bytes {
    if endpoint != Endpoint::Responses {
        return sse_error_event(e);
    }
    let body = e.body();
    let error = &body["error"];
    let data = json!({"type": "error", "code": error["code"], "message": error["message"], "param": error["param"]});
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

/// Prices a stream from the usage the provider streamed: the OpenAI usage
/// chunk (`stream_options.include_usage`), or Anthropic's `message_start` +
/// `message_delta` counts. Charged once, when the stream is done with (its
/// end, an error, or the client leaving): tokens read are spent either way.
/// A stream whose provider sent no usage is charged nothing and logged.
pub(super) struct StreamMeter {
    gw: Arc<Gateway>,
    caller: Caller,
    /// The model the client asked for, charged in the activity charts.
    model: String,
    route: Route,
    openai: Option<SseParser>,
    anthropic: anthropic::AnthropicUsage,
    usage: Option<Usage>,
    tap: UsageTap,
    /// The request's trace span: the stream is priced after the handler
    /// returned, and its usage belongs on that span.
    span: Option<Arc<crate::gateway::otel::LiveSpan>>,
}

/// Where a translated stream leaves the usage its provider reported (an
/// OpenAI usage object), for the meter to charge when the client did not ask
/// for the usage chunk that would have carried it.
#[derive(Clone, Default)]
pub(super) struct UsageTap(Arc<parking_lot::Mutex<Option<Value>>>);

impl UsageTap {
    pub(super) fn set(&self, usage: Option<Value>) {
        if usage.is_some() {
            *self.0.lock() = usage;
        }
    }
}

impl StreamMeter {
    /// For a stream passed through as bytes: the meter parses them itself.
    pub(super) fn reading_bytes(gw: &Arc<Gateway>, caller: &Caller, model: &str, route: &Route) -> Self {
        StreamMeter::new(gw, caller, model, route, Some(SseParser::new()))
    }

    /// For a stream the gateway parses anyway: it hands the meter each event.
    pub(super) fn fed(gw: &Arc<Gateway>, caller: &Caller, model: &str, route: &Route) -> Self {
        StreamMeter::new(gw, caller, model, route, None)
    }

    fn new(gw: &Arc<Gateway>, caller: &Caller, model: &str, route: &Route, openai: Option<SseParser>) -> Self {
        StreamMeter {
            gw: Arc::clone(gw),
            caller: caller.clone(),
            model: model.to_string(),
            route: route.clone(),
            openai,
            anthropic: anthropic::AnthropicUsage::default(),
            usage: None,
            tap: UsageTap::default(),
            span: crate::gateway::otel::current(),
        }
    }

    /// The tap a translated stream reports its usage through.
    pub(super) fn tap(&self) -> UsageTap {
        self.tap.clone()
    }

    /// OpenAI chunks as forwarded (complete events).
    pub(super) fn observe_bytes(&mut self, bytes: &[u8]) {
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
    pub(super) fn observe_chunk(&mut self, chunk: &Value) {
        let responses_final = chunk.pointer("/response/usage").is_some_and(Value::is_object);
        if chunk.get("usage").is_some_and(Value::is_object) || responses_final {
            self.usage = Some(openai_usage(chunk));
            // The usage chunk names the model too: read here, once, not per chunk.
            crate::gateway::otel::stream_answer(self.span.as_deref(), chunk);
        }
    }

    /// The stream broke after the client had its first byte (an error event
    /// ends it): its request's span says so, though its status was 200.
    /// `None` for a provider stream the gateway could not read.
    pub(super) fn broke(&self, e: Option<&ApiError>) {
        crate::gateway::otel::stream_broke(self.span.as_deref(), e);
    }

    /// An Anthropic event (`message_start`, `message_delta` carry usage).
    pub(super) fn observe_event(&mut self, ty: &str, data: &Value) {
        if ty == "message_start" {
            if let Some(message) = data.get("message") {
                crate::gateway::otel::stream_answer(self.span.as_deref(), message);
            }
        }
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
        let tapped = self.tap.0.lock().take().map(|u| openai_usage(&json!({ "usage": u })));
        match self.usage.take().or(tapped) {
            Some(u) => {
                let span = self.span.take();
                let cost =
                    crate::gateway::otel::within(span, || charge(&self.gw, &self.caller, &self.model, &self.route, &u));
                if cost.is_none() {
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
