//! OpenTelemetry traces, LiteLLM's `callbacks: ["otel"]`: a server span per
//! model request (named after its route) with a client span child for each
//! upstream attempt (every retry and fallback gets its own), attributes
//! after the OpenTelemetry GenAI and HTTP semantic conventions, exported
//! over OTLP/HTTP (protobuf or JSON) off the request path (`export`,
//! `protobuf`), configured by the standard `OTEL_*` variables (`settings`).
//!
//! How a request is traced: [`layer`] (around the route table) starts the
//! server span, continuing the client's W3C `traceparent` when it sent a
//! valid one, and runs the request with the span in a task-local; the
//! proxy's stages report to whatever span is current: `fallback` wraps each
//! attempt in [`attempt`], `call::send` asks `upstream_request` for the
//! `traceparent` it sends upstream, `call::read_json` hands over the answer
//! (`upstream_answer`), `pricing::charge` the usage and cost ([`usage`]).
//! With traces off, or outside a traced request, every hook is a no-op.
//! A span ends when its last holder lets go: the server span when the
//! answer's body is done (a stream's last byte), an attempt when the
//! gateway has the upstream's answer (a stream's first chunk).
//!
//! What never goes into a span: an API key, the master key, a virtual key
//! (its hash and alias at most), any header value, the prompt or the
//! answer's content, an upstream's error text (which may quote a key); the
//! upstream's host and port, never its URL.

mod export;
mod protobuf;
mod settings;

pub use export::encode as encode_json;
pub(crate) use export::{AttrValue, ExportStats, SpanData, SpanKind, SpanStatus};
pub(crate) use settings::{OtelError, OtelSettings};

use crate::gateway::activity::{Attribution, Who};
use crate::gateway::error::ApiError;
use crate::gateway::metrics::RequestedModel;
use crate::gateway::routing::Route;
use crate::gateway::state::Gateway;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use export::{Exporter, Queue};
use http::HeaderValue;
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The traces of one gateway: its exporter (and so its queue and task).
pub struct Otel {
    exporter: Arc<Exporter>,
    sampler: settings::Sampler,
}

impl std::fmt::Debug for Otel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otel").field("stats", &self.exporter.stats()).finish()
    }
}

impl Otel {
    /// Traces when the config's callbacks name `otel`; `Ok(None)` when not;
    /// an error for settings that cannot be honoured. Needs a Tokio runtime
    /// (the exporter's task starts here).
    pub fn from_config(config: &crate::gateway::Config) -> Result<Option<Otel>, OtelError> {
        match OtelSettings::from_config(config)? {
            Some(s) => {
                let sampler = s.sampler;
                Ok(Some(Otel { exporter: Exporter::start(s)?, sampler }))
            }
            None => Ok(None),
        }
    }

    /// Sends every finished span now (graceful shutdown; tests), each batch
    /// within the export timeout.
    pub async fn flush(&self) -> ExportStats {
        self.exporter.flush().await
    }

    pub fn stats(&self) -> ExportStats {
        self.exporter.stats()
    }
}

/// W3C trace context: trace id, parent span id, and whether it is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceParent {
    /// A `traceparent` header value (W3C Trace Context, version 00); `None`
    /// for anything malformed, as the specification says to ignore it.
    pub fn parse(v: &str) -> Option<TraceParent> {
        let lower_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let mut parts = v.trim().split('-');
        let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let rest = parts.next();
        if version.len() != 2 || !lower_hex(version) || version == "ff" || (version == "00" && rest.is_some()) {
            return None;
        }
        if trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
            return None;
        }
        if !(lower_hex(trace) && lower_hex(parent) && lower_hex(flags)) {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(parent, &mut span_id).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceParent { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    /// The header value, built from the ids alone (never from text a client sent).
    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", hex::encode(self.trace_id), hex::encode(self.span_id), u8::from(self.sampled))
    }
}

/// A span in progress. It is exported when its last holder drops it.
pub struct LiveSpan {
    queue: Arc<Queue>,
    context: TraceParent,
    parent: Option<[u8; 8]>,
    kind: SpanKind,
    /// The GenAI operation (`chat`, `embeddings`…), for the attempts' names.
    operation: &'static str,
    started: Instant,
    start_unix_nanos: u64,
    state: Mutex<SpanState>,
}

struct SpanState {
    name: String,
    attributes: Vec<(&'static str, AttrValue)>,
    status: SpanStatus,
    /// An attempt's outcome was recorded; one dropped without it was cancelled.
    finished: bool,
}

fn random_span_id() -> [u8; 8] {
    loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

fn random_trace_id() -> [u8; 16] {
    loop {
        let id: [u8; 16] = rand::random();
        if id != [0; 16] {
            return id;
        }
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// Longest client-chosen text put into an attribute (a model name).
const MAX_TEXT: usize = 256;

fn capped(s: &str) -> String {
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

impl LiveSpan {
    /// Sets an attribute, replacing an earlier value of the same key.
    pub fn set(&self, key: &'static str, value: impl Into<AttrValue>) {
        let value = value.into();
        let mut st = self.state.lock();
        match st.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => st.attributes.push((key, value)),
        }
    }

    fn fail(&self, error_type: &str) {
        self.set("error.type", error_type.to_string());
        self.state.lock().status = SpanStatus::Error(error_type.to_string());
    }

    /// The context a call made under this span carries.
    pub fn context(&self) -> TraceParent {
        self.context
    }

    fn child(self: &Arc<Self>, name: String, kind: SpanKind) -> Arc<LiveSpan> {
        let offset = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Arc::new(LiveSpan {
            queue: Arc::clone(&self.queue),
            context: TraceParent { span_id: random_span_id(), ..self.context },
            parent: Some(self.context.span_id),
            kind,
            operation: self.operation,
            started: Instant::now(),
            start_unix_nanos: self.start_unix_nanos.saturating_add(offset),
            state: Mutex::new(SpanState { name, attributes: Vec::new(), status: SpanStatus::Unset, finished: false }),
        })
    }
}

impl Drop for LiveSpan {
    fn drop(&mut self) {
        if !self.context.sampled {
            return;
        }
        let elapsed = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let st = self.state.get_mut();
        if self.kind == SpanKind::Client && !st.finished {
            // The request went away (the client left) before the attempt ended.
            st.attributes.push(("error.type", "cancelled".into()));
            st.status = SpanStatus::Error("cancelled".into());
        }
        let span = SpanData {
            trace_id: self.context.trace_id,
            span_id: self.context.span_id,
            parent: self.parent,
            name: std::mem::take(&mut st.name),
            kind: self.kind,
            start_unix_nanos: self.start_unix_nanos,
            end_unix_nanos: self.start_unix_nanos.saturating_add(elapsed),
            attributes: std::mem::take(&mut st.attributes),
            status: std::mem::replace(&mut st.status, SpanStatus::Unset),
            sampled: true,
        };
        self.queue.push(span);
    }
}

tokio::task_local! {
    /// The server span of the request being handled.
    static REQUEST: Arc<LiveSpan>;
    /// The upstream attempt in progress.
    static ATTEMPT: Arc<LiveSpan>;
}

/// The GenAI operation of a model route (`metrics::model_route`'s names).
fn operation(route: &str) -> &'static str {
    match route {
        "embeddings" => "embeddings",
        "completions" => "text_completion",
        "count_tokens" => "count_tokens",
        _ => "chat",
    }
}

/// The GenAI semantic conventions' provider names where they have one;
/// else LiteLLM's prefix.
fn provider_name(provider: &str) -> &str {
    match provider {
        "azure" => "azure.ai.openai",
        "azure_ai" => "azure.ai.inference",
        "bedrock" => "aws.bedrock",
        "vertex_ai" => "gcp.vertex_ai",
        "mistral" => "mistral_ai",
        "xai" => "x_ai",
        other => other,
    }
}

/// The layer around the route table that traces each model request.
pub async fn layer(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let Some(otel) = gw.otel.as_ref() else { return next.run(req).await };
    let Some(route) = crate::gateway::metrics::model_route(req.uri().path()) else { return next.run(req).await };
    // A valid `traceparent` continues the client's trace (one header only:
    // several are ambiguous, so none is trusted).
    let mut inbound = req.headers().get_all("traceparent").iter();
    let continued = match (inbound.next(), inbound.next()) {
        (Some(v), None) => v.to_str().ok().and_then(TraceParent::parse),
        _ => None,
    };
    let template = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let method = req.method().as_str().to_string();
    // The route's template, never the raw path: a path no route matched is
    // the client's text (HTTP semantic conventions: the method alone).
    let name = match &template {
        Some(t) => format!("{method} {t}"),
        None => method.clone(),
    };
    let trace_id = continued.map(|c| c.trace_id).unwrap_or_else(random_trace_id);
    // Not sampled: nothing is recorded, but the decision still travels upstream.
    let sampled = otel.sampler.sampled(continued.map(|c| c.sampled), &trace_id);
    let span = Arc::new(LiveSpan {
        queue: Arc::clone(&otel.exporter.queue),
        context: TraceParent { trace_id, span_id: random_span_id(), sampled },
        parent: continued.map(|c| c.span_id),
        kind: SpanKind::Server,
        operation: operation(route),
        started: Instant::now(),
        start_unix_nanos: unix_nanos(gw.clock.wall()),
        state: Mutex::new(SpanState { name, attributes: Vec::new(), status: SpanStatus::Unset, finished: true }),
    });
    span.set("http.request.method", method);
    if let Some(t) = template {
        span.set("http.route", t);
    }
    span.set("gen_ai.operation.name", span.operation);
    let resp = REQUEST.scope(Arc::clone(&span), next.run(req)).await;
    let status = resp.status().as_u16();
    span.set("http.response.status_code", i64::from(status));
    if let Some(m) = resp.extensions().get::<RequestedModel>().filter(|m| !m.0.is_empty()) {
        span.set("gen_ai.request.model", capped(&m.0));
    }
    match resp.extensions().get::<Attribution>().and_then(|a| a.who.as_ref()) {
        // The key's hash and alias identify it; the key itself never leaves.
        Some(Who::Key(k)) => {
            span.set("litellm.caller", "virtual_key");
            span.set("litellm.key.hash", k.key_hash());
            if let Some(alias) = k.alias() {
                span.set("litellm.key.alias", capped(alias));
            }
        }
        Some(Who::Master) => span.set("litellm.caller", "master_key"),
        None => {}
    }
    for (header, key) in [("x-litellm-call-id", "litellm.call_id"), ("x-litellm-model-id", "litellm.model_id")] {
        if let Some(v) = resp.headers().get(header).and_then(|v| v.to_str().ok()) {
            span.set(key, capped(v));
        }
    }
    if status >= 500 {
        span.fail(&status.to_string());
    } else if status >= 400 {
        // A client error is not the server span's failure (HTTP semantic
        // conventions), but its kind is still said.
        span.set("error.type", status.to_string());
    }
    // The span ends when the body is done with (a stream's last byte, or
    // the client leaving): the body holds the last reference.
    use http_body_util::BodyExt;
    resp.map(move |body| {
        axum::body::Body::new(body.map_err(move |e| {
            let _held = &span;
            e
        }))
    })
}

/// Runs one upstream attempt as a client span under the current request's
/// span, recording its outcome: the upstream's status, or the kind of
/// failure (never its text).
pub async fn attempt<F>(route: &Route, fut: F) -> Result<Response, ApiError>
where
    F: std::future::Future<Output = Result<Response, ApiError>>,
{
    let Ok(parent) = REQUEST.try_with(Arc::clone) else { return fut.await };
    let span = parent.child(format!("{} {}", parent.operation, capped(&route.upstream_model)), SpanKind::Client);
    let provider = provider_name(route.provider.as_str()).to_string();
    span.set("gen_ai.operation.name", parent.operation);
    span.set("gen_ai.provider.name", provider.clone());
    span.set("gen_ai.system", provider.clone());
    span.set("gen_ai.request.model", capped(&route.upstream_model));
    span.set("litellm.model_id", capped(&route.deployment.id));
    span.set("litellm.model_group", capped(&route.deployment.model_name));
    parent.set("gen_ai.provider.name", provider);
    let result = ATTEMPT.scope(Arc::clone(&span), fut).await;
    match &result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            span.set("http.response.status_code", i64::from(status));
            if status >= 400 {
                span.fail(&status.to_string());
            }
        }
        Err(e) => {
            if let ApiError::Upstream { status, .. } = e {
                span.set("http.response.status_code", i64::from(*status));
            }
            span.fail(&error_type(e));
        }
    }
    span.state.lock().finished = true;
    result
}

/// The semantic conventions' `error.type`: the upstream's status code, or
/// what went wrong when there was no answer.
fn error_type(e: &ApiError) -> String {
    match e {
        ApiError::Upstream { status, .. } => status.to_string(),
        ApiError::GatewayTimeout(_) => "timeout".into(),
        ApiError::BadGateway(_) => "bad_gateway".into(),
        ApiError::BadRequest(_) | ApiError::UnsupportedParam { .. } | ApiError::InvalidParam { .. } => {
            "invalid_request".into()
        }
        ApiError::RateLimited { .. } => "rate_limited".into(),
        other => other.status().as_u16().to_string(),
    }
}

/// For the upstream call about to be sent: notes its host and port on the
/// attempt's span and gives the `traceparent` header to send, naming the
/// attempt's span as the parent. Built from the ids alone, so no client
/// text reaches the upstream through it. `None` outside a traced attempt.
pub(crate) fn upstream_request(method: &http::Method, url: &str) -> Option<HeaderValue> {
    ATTEMPT
        .try_with(|span| {
            span.set("http.request.method", method.as_str().to_string());
            // Host and port only: a URL's path or query may carry a credential.
            if let Ok(url) = reqwest::Url::parse(url) {
                if let Some(host) = url.host_str() {
                    span.set("server.address", host.to_string());
                }
                if let Some(port) = url.port_or_known_default() {
                    span.set("server.port", i64::from(port));
                }
            }
            HeaderValue::from_str(&span.context().header()).ok()
        })
        .ok()
        .flatten()
}

/// A buffered upstream answer: the model and id it names.
pub(crate) fn upstream_answer(v: &Value) {
    for span in [ATTEMPT.try_with(Arc::clone).ok(), REQUEST.try_with(Arc::clone).ok()].into_iter().flatten() {
        set_answer(&span, v);
    }
}

/// A streamed answer's model and id, from the event that names them (an
/// OpenAI chunk, a Responses API event's `response`, Anthropic's
/// `message_start` message), on the request's span: the attempt ended at
/// the first chunk.
pub(crate) fn stream_answer(span: Option<&LiveSpan>, v: &Value) {
    if let Some(span) = span {
        set_answer(span, v.get("response").filter(|r| r.is_object()).unwrap_or(v));
    }
}

/// A stream that ended with an error event after its 200: the request's
/// span gets error status with the failure's kind (`bad_gateway` when the
/// provider's stream could not be read).
pub(crate) fn stream_broke(span: Option<&LiveSpan>, e: Option<&ApiError>) {
    if let Some(span) = span {
        span.fail(&e.map(error_type).unwrap_or_else(|| "bad_gateway".into()));
        span.set("litellm.stream.broken", "true");
    }
}

fn set_answer(span: &LiveSpan, v: &Value) {
    if let Some(m) = v.get("model").and_then(Value::as_str) {
        span.set("gen_ai.response.model", capped(m));
    }
    if let Some(i) = v.get("id").and_then(Value::as_str) {
        span.set("gen_ai.response.id", capped(i));
    }
}

/// A priced call's tokens and cost (USD; `None` when unpriced), on the
/// request's span and, while it runs, the attempt's.
pub fn usage(input_tokens: u64, output_tokens: u64, cost_usd: Option<f64>) {
    for span in [ATTEMPT.try_with(Arc::clone).ok(), REQUEST.try_with(Arc::clone).ok()].into_iter().flatten() {
        span.set("gen_ai.usage.input_tokens", input_tokens);
        span.set("gen_ai.usage.output_tokens", output_tokens);
        if let Some(c) = cost_usd.filter(|c| c.is_finite()) {
            span.set("litellm.response_cost", c);
        }
    }
}

/// The current request's span, for work that finishes after the handler
/// returns (a stream's meter).
pub fn current() -> Option<Arc<LiveSpan>> {
    REQUEST.try_with(Arc::clone).ok()
}

/// Runs `f` as part of `span`'s request (what it reports lands there).
pub fn within<R>(span: Option<Arc<LiveSpan>>, f: impl FnOnce() -> R) -> R {
    match span {
        Some(s) => REQUEST.sync_scope(s, f),
        None => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_as_the_w3c_specification_says() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(ok).expect("valid");
        assert_eq!(hex::encode(tp.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(tp.span_id), "00f067aa0ba902b7");
        assert!(tp.sampled);
        assert_eq!(tp.header(), ok, "round trip");
        assert!(!TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap().sampled);
        // A later version may carry more fields after the four it shares.
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx-evil: 1",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn long_client_text_is_capped_on_a_char_boundary() {
        let long = "é".repeat(MAX_TEXT + 10);
        assert_eq!(capped(&long).chars().count(), MAX_TEXT);
        assert_eq!(capped("gpt-4o"), "gpt-4o");
    }
}
