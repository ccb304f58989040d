//! The cassette format: our own YAML, written to be read and diffed by people.
//! See docs/cassettes.md for the reference.
//!
//! A cassette is a list of interactions with one provider API (or several,
//! `provider: mixed`). Each interaction is the request as it went to the
//! provider and the response as it came back. Bodies are stored in the most
//! readable form that still replays: JSON as YAML, text as text, binary as
//! base64, server-sent events one event a line with the time it arrived, and
//! Bedrock's binary event stream as decoded frames.
//!
//! Every struct denies unknown keys, so a typo in a hand-edited cassette is an
//! error naming the line instead of a silently ignored field.

use anyhow::{anyhow, Context};
use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::CassetteError;

/// The value of the top-level `format` key. Bumped on incompatible changes.
pub(crate) const FORMAT: &str = "postmortem-cassette/v1";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cassette {
    pub format: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub interactions: Vec<Interaction>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The provider API of the interactions (`openai`, `anthropic`, ...), or
    /// `mixed` when they go to several.
    pub provider: String,
    /// When the traffic was recorded (RFC 3339, UTC), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<String>,
    /// Where the interactions came from: `record <upstream>`, `vcr <file>`,
    /// `har <file>` or `wiremock <file>`.
    pub source: String,
    /// What redaction replaced: rule -> how many values. Empty when nothing
    /// matched; the rules ran all the same.
    #[serde(default)]
    pub redactions: BTreeMap<String, u64>,
    /// True when request headers were kept in full (our recorder). Imported
    /// cassettes usually had headers filtered out before they were written, so
    /// replay compares only the headers such a recording still has.
    #[serde(default)]
    pub headers_complete: bool,
    /// When `replay --update` last rewrote the cassette.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The provider API an interaction talks to, derived from its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// OpenAI and every OpenAI-compatible server (Groq, Mistral, vLLM, ...).
    Openai,
    /// Azure OpenAI `/openai/deployments/{name}/...`.
    Azure,
    Anthropic,
    Bedrock,
    VertexAi,
    Gemini,
    /// Anything else (model listings, health checks, ...).
    #[serde(other)]
    Other,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Openai => "openai",
            Api::Azure => "azure",
            Api::Anthropic => "anthropic",
            Api::Bedrock => "bedrock",
            Api::VertexAi => "vertex_ai",
            Api::Gemini => "gemini",
            Api::Other => "other",
        }
    }

    /// Classifies a request by host and path.
    pub(crate) fn classify(url: &str) -> Api {
        let (host, path, _) = split_url(url);
        let host = host.to_ascii_lowercase();
        let bedrock_op = ["/invoke", "/invoke-with-response-stream", "/converse", "/converse-stream"];
        if host.starts_with("bedrock-runtime")
            || path.starts_with("/model/") && bedrock_op.iter().any(|op| path.ends_with(op))
        {
            return Api::Bedrock;
        }
        if host.contains("generativelanguage.googleapis.com")
            || path.contains(":generateContent")
            || path.contains(":streamGenerateContent")
        {
            return Api::Gemini;
        }
        if path.contains("/publishers/anthropic/models/") {
            return Api::VertexAi;
        }
        if path.contains("/openai/deployments/") {
            return Api::Azure;
        }
        if host.contains("anthropic.com") || path.ends_with("/v1/messages") || path.ends_with("/messages/count_tokens")
        {
            return Api::Anthropic;
        }
        if path.ends_with("/chat/completions")
            || path.ends_with("/embeddings")
            || path.ends_with("/responses")
            || path.ends_with("/completions")
            || host.contains("openai.com")
        {
            return Api::Openai;
        }
        Api::Other
    }
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    /// The provider API, derived from the URL; kept for readers and for
    /// `grep`, recomputed when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Api>,
    pub request: Request,
    pub response: Response,
    /// Time from the request to the end of the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// What replay sends to the gateway and expects back, when that is not
    /// derived from `request` and `response` (written by `replay --update`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientSide>,
}

impl Interaction {
    pub fn api(&self) -> Api {
        self.provider.unwrap_or_else(|| Api::classify(&self.request.url))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSide {
    /// The request to send to the gateway; `url` is a path (`/v1/messages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
    /// The response the gateway should give.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub method: String,
    /// The full URL as recorded (scheme, host, path and query), or only a
    /// path and query for client-side requests.
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: Headers,
    #[serde(default, skip_serializing_if = "Body::is_empty")]
    pub body: Body,
}

impl Request {
    /// Path without the query (still percent-encoded as recorded).
    pub fn path(&self) -> &str {
        split_url(&self.url).1
    }

    /// The raw query string without `?`.
    pub fn query(&self) -> Option<&str> {
        split_url(&self.url).2
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub status: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: Headers,
    #[serde(default, skip_serializing_if = "Body::is_empty")]
    pub body: Body,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Header name (lower-case) -> value, or values when the header repeats.
pub type Headers = BTreeMap<String, HeaderValues>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderValues {
    One(String),
    Many(Vec<String>),
}

impl HeaderValues {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let slice: &[String] = match self {
            HeaderValues::One(v) => std::slice::from_ref(v),
            HeaderValues::Many(v) => v,
        };
        slice.iter().map(String::as_str)
    }

    pub fn first(&self) -> Option<&str> {
        self.iter().next()
    }
}

/// First value of a header (names are stored lower-case).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.get(&name.to_ascii_lowercase()).and_then(HeaderValues::first)
}

/// Adds a value, turning a single value into a list on repeats.
pub(crate) fn push_header(headers: &mut Headers, name: &str, value: String) {
    let name = name.to_ascii_lowercase();
    match headers.remove(&name) {
        None => {
            headers.insert(name, HeaderValues::One(value));
        }
        Some(HeaderValues::One(first)) => {
            headers.insert(name, HeaderValues::Many(vec![first, value]));
        }
        Some(HeaderValues::Many(mut all)) => {
            all.push(value);
            headers.insert(name, HeaderValues::Many(all));
        }
    }
}

/// A body in exactly one form (or none). A struct of options rather than an
/// enum so the YAML reads `body: {json: ...}` without YAML tags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// A `text/event-stream` response, event by event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<Vec<RecordedEvent>>,
    /// An `application/vnd.amazon.eventstream` response, frame by frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eventstream: Option<Vec<Frame>>,
}

/// One server-sent event, or one comment line (`: keep-alive`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedEvent {
    /// Milliseconds from the request until the event was complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The `data:` lines joined with `\n`, byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// A comment line's text (without the leading `:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u64>,
}

/// One event-stream frame. `chunk` frames of InvokeModelWithResponseStream
/// keep the Anthropic event they carry decoded (`chunk`), the rest of the
/// payload (Bedrock's `p` padding) in `payload`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frame {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    /// String headers (`:event-type`, `:message-type`, `:content-type`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// A frame that could not be decoded (or has non-string headers), as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
}

impl Frame {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

impl Body {
    pub fn is_empty(&self) -> bool {
        self.json.is_none()
            && self.text.is_none()
            && self.base64.is_none()
            && self.sse.is_none()
            && self.eventstream.is_none()
    }

    pub fn json(v: Value) -> Body {
        Body { json: Some(v), ..Body::default() }
    }

    pub fn text(t: impl Into<String>) -> Body {
        Body { text: Some(t.into()), ..Body::default() }
    }

    fn forms(&self) -> usize {
        [
            self.json.is_some(),
            self.text.is_some(),
            self.base64.is_some(),
            self.sse.is_some(),
            self.eventstream.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }

    /// The body as JSON: the `json` form, or text that parses as JSON.
    pub(crate) fn as_json(&self) -> Option<Value> {
        if let Some(v) = &self.json {
            return Some(v.clone());
        }
        self.text.as_deref().and_then(|t| serde_json::from_str(t).ok())
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        if let Some(v) = &self.json {
            return Ok(serde_json::to_vec(v)?);
        }
        if let Some(t) = &self.text {
            return Ok(t.as_bytes().to_vec());
        }
        if let Some(b) = &self.base64 {
            return decode_b64(b).context("base64");
        }
        if let Some(events) = &self.sse {
            return Ok(render_sse(events).into_bytes());
        }
        if let Some(frames) = &self.eventstream {
            let mut out = Vec::new();
            for (i, f) in frames.iter().enumerate() {
                out.extend(encode_frame(f).with_context(|| format!("eventstream[{i}]"))?);
            }
            return Ok(out);
        }
        Ok(Vec::new())
    }

    /// The most readable form of a buffered body. `content_type` picks
    /// streams; otherwise JSON that parses is stored as JSON, UTF-8 as text
    /// and anything else as base64.
    pub(crate) fn from_bytes(content_type: Option<&str>, bytes: &[u8]) -> Body {
        if bytes.is_empty() {
            return Body::default();
        }
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        if ct.starts_with("text/event-stream") {
            if let Ok(text) = std::str::from_utf8(bytes) {
                let mut c = SseCollector::default();
                c.push(text.as_bytes(), None);
                return Body { sse: Some(c.finish()), ..Body::default() };
            }
        }
        if ct.starts_with("application/vnd.amazon.eventstream") {
            return Body { eventstream: Some(decode_frames(bytes, None)), ..Body::default() };
        }
        if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
            // A bare JSON string or number in a text/plain body is text.
            if v.is_object() || v.is_array() || ct.contains("json") {
                return Body::json(v);
            }
        }
        match std::str::from_utf8(bytes) {
            // Control characters mean binary, even when the bytes are UTF-8.
            Ok(t) if !t.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) => Body::text(t),
            _ => Body { base64: Some(B64.encode(bytes)), ..Body::default() },
        }
    }

    pub(crate) fn is_stream(&self) -> bool {
        self.sse.is_some() || self.eventstream.is_some()
    }
}

pub(crate) fn decode_b64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(compact)
}

pub(crate) fn encode_b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// `scheme://host` (may be empty), the path, and the query without `?`.
pub(crate) fn split_url(url: &str) -> (&str, &str, Option<&str>) {
    let (before_query, query) = match url.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (url, None),
    };
    let (host, path) = match before_query.find("://") {
        Some(i) => {
            let rest = &before_query[i + 3..];
            match rest.find('/') {
                Some(j) => (&rest[..j], &rest[j..]),
                None => (rest, "/"),
            }
        }
        None => ("", before_query),
    };
    (host, if path.is_empty() { "/" } else { path }, query)
}

pub(crate) use crate::mocks::percent_decode;

/// `event:`/`id:`/`retry:`/`data:` lines and a blank line per event;
/// `: text` for comments.
pub(crate) fn render_sse(events: &[RecordedEvent]) -> String {
    let mut out = String::new();
    for e in events {
        if let Some(c) = &e.comment {
            for line in c.split('\n') {
                out.push(':');
                out.push_str(line);
                out.push('\n');
            }
            out.push('\n');
            continue;
        }
        if let Some(name) = &e.event {
            out.push_str("event: ");
            out.push_str(name);
            out.push('\n');
        }
        if let Some(id) = &e.id {
            out.push_str("id: ");
            out.push_str(id);
            out.push('\n');
        }
        if let Some(r) = e.retry {
            out.push_str(&format!("retry: {r}\n"));
        }
        if let Some(d) = &e.data {
            for line in d.split('\n') {
                out.push_str("data: ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out
}

/// Splits an SSE byte stream into events as chunks arrive, so each event
/// gets the time its last byte came in. Comments are kept as their own
/// entries (they matter to a gateway's idle timeouts), unlike the gateway's
/// parser, which drops them.
#[derive(Debug, Default)]
pub(crate) struct SseCollector {
    pending: String,
    bytes: Vec<u8>,
    current: RecordedEvent,
    has_fields: bool,
    events: Vec<RecordedEvent>,
}

impl SseCollector {
    /// Feeds a chunk that arrived `at_ms` after the request.
    pub(crate) fn push(&mut self, chunk: &[u8], at_ms: Option<u64>) {
        // Keep a split multi-byte character for the next chunk.
        self.bytes.extend_from_slice(chunk);
        let valid = match std::str::from_utf8(&self.bytes) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        let text = String::from_utf8_lossy(&self.bytes[..valid]).into_owned();
        self.bytes.drain(..valid);
        self.pending.push_str(&text);
        while let Some(end) = self.pending.find('\n') {
            let mut line: String = self.pending.drain(..=end).collect();
            line.pop();
            if line.ends_with('\r') {
                line.pop();
            }
            self.line(&line, at_ms);
        }
    }

    fn line(&mut self, line: &str, at_ms: Option<u64>) {
        if line.is_empty() {
            if self.has_fields {
                let mut e = std::mem::take(&mut self.current);
                e.at_ms = at_ms;
                self.events.push(e);
                self.has_fields = false;
            }
            return;
        }
        if let Some(c) = line.strip_prefix(':') {
            // Comments are kept as entries of their own, in arrival order; the
            // blank line after a comment then dispatches nothing.
            self.events.push(RecordedEvent { at_ms, comment: Some(c.to_string()), ..RecordedEvent::default() });
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        self.has_fields = true;
        match field {
            "event" => self.current.event = Some(value.to_string()),
            "id" => self.current.id = Some(value.to_string()),
            "retry" => self.current.retry = value.trim().parse().ok(),
            "data" => match &mut self.current.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.current.data = Some(value.to_string()),
            },
            // Unknown fields are ignored by the spec; keep the line as data
            // would be wrong, so it is dropped.
            _ => {}
        }
    }

    /// Ends the stream; an event without its closing blank line is kept.
    pub(crate) fn finish(mut self) -> Vec<RecordedEvent> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.line(rest.trim_end_matches('\r'), None);
        }
        if self.has_fields {
            let e = std::mem::take(&mut self.current);
            self.events.push(e);
        }
        self.events
    }
}

/// Decodes event-stream frames. Bytes that do not form a frame end up in a
/// final `raw_base64` frame, so nothing recorded is lost.
pub fn decode_frames(bytes: &[u8], at_ms: Option<u64>) -> Vec<Frame> {
    let mut d = FrameCollector::default();
    d.push(bytes, at_ms);
    d.finish()
}

/// Incremental frame decoder with arrival times.
#[derive(Debug, Default)]
pub(crate) struct FrameCollector {
    decoder: crate::gateway::providers::bedrock::EventStreamDecoder,
    raw: Vec<u8>,
    failed: bool,
    frames: Vec<Frame>,
}

impl FrameCollector {
    pub(crate) fn push(&mut self, chunk: &[u8], at_ms: Option<u64>) {
        if self.failed {
            self.raw.extend_from_slice(chunk);
            return;
        }
        self.raw.extend_from_slice(chunk);
        match self.decoder.feed_messages(chunk) {
            Ok(messages) => {
                let mut consumed = 0;
                for m in messages {
                    let mut encoded = Vec::new();
                    let frame = match aws_smithy_eventstream::frame::write_message_to(&m, &mut encoded) {
                        Ok(()) => frame_from_message(&m, &encoded, at_ms),
                        Err(_) => Frame { at_ms, raw_base64: Some(encode_b64(&encoded)), ..Frame::default() },
                    };
                    consumed += encoded.len();
                    self.frames.push(frame);
                }
                // Only the undecoded tail stays as raw bytes.
                let consumed = consumed.min(self.raw.len());
                self.raw.drain(..consumed);
            }
            Err(_) => self.failed = true,
        }
    }

    pub(crate) fn finish(mut self) -> Vec<Frame> {
        if !self.raw.is_empty() {
            self.frames.push(Frame { raw_base64: Some(encode_b64(&self.raw)), ..Frame::default() });
        }
        self.frames
    }
}

fn frame_from_message(m: &aws_smithy_types::event_stream::Message, encoded: &[u8], at_ms: Option<u64>) -> Frame {
    let mut headers = BTreeMap::new();
    for h in m.headers() {
        match h.value().as_string() {
            Ok(s) => {
                headers.insert(h.name().as_str().to_string(), s.as_str().to_string());
            }
            // Only string headers have a readable form; keep the frame as is.
            Err(_) => return Frame { at_ms, raw_base64: Some(encode_b64(encoded)), ..Frame::default() },
        }
    }
    let payload = m.payload();
    let mut frame = Frame { at_ms, headers, ..Frame::default() };
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(mut obj)) => {
            let inner = if frame.header(":event-type") == Some("chunk") {
                obj.get("bytes")
                    .and_then(Value::as_str)
                    .and_then(|b| decode_b64(b).ok())
                    .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
            } else {
                None
            };
            if let Some(chunk) = inner {
                obj.remove("bytes");
                frame.chunk = Some(chunk);
                if !obj.is_empty() {
                    frame.payload = Some(Value::Object(obj));
                }
            } else {
                frame.payload = Some(Value::Object(obj));
            }
        }
        Ok(other) => frame.payload = Some(other),
        Err(_) if payload.is_empty() => {}
        Err(_) => frame.payload_base64 = Some(encode_b64(payload)),
    }
    frame
}

/// Re-encodes a frame (CRCs recomputed).
pub(crate) fn encode_frame(f: &Frame) -> anyhow::Result<Vec<u8>> {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    if let Some(raw) = &f.raw_base64 {
        return decode_b64(raw).map_err(|e| anyhow!("raw_base64: {e}"));
    }
    let headers: Vec<Header> =
        f.headers.iter().map(|(k, v)| Header::new(k.clone(), HeaderValue::String(v.clone().into()))).collect();
    let payload = if let Some(chunk) = &f.chunk {
        let mut obj = match &f.payload {
            Some(Value::Object(o)) => o.clone(),
            _ => serde_json::Map::new(),
        };
        let inner = serde_json::to_vec(chunk)?;
        obj.insert("bytes".into(), Value::String(encode_b64(&inner)));
        serde_json::to_vec(&Value::Object(obj))?
    } else if let Some(p) = &f.payload {
        serde_json::to_vec(p)?
    } else if let Some(b) = &f.payload_base64 {
        decode_b64(b).map_err(|e| anyhow!("payload_base64: {e}"))?
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&Message::new_from_parts(headers, payload), &mut out)?;
    Ok(out)
}

impl Cassette {
    pub fn new(source: impl Into<String>, interactions: Vec<Interaction>) -> Cassette {
        let mut c = Cassette {
            format: FORMAT.to_string(),
            metadata: Metadata { source: source.into(), ..Metadata::default() },
            interactions,
        };
        c.fill_providers();
        c
    }

    /// Sets each interaction's `provider` from its URL and the cassette's
    /// from them.
    pub(crate) fn fill_providers(&mut self) {
        let mut apis = std::collections::BTreeSet::new();
        for i in &mut self.interactions {
            let api = i.api();
            i.provider = Some(api);
            if api != Api::Other {
                apis.insert(api);
            }
        }
        self.metadata.provider = match apis.len() {
            0 => Api::Other.as_str().to_string(),
            1 => apis.iter().next().map(|a| a.as_str().to_string()).unwrap_or_default(),
            _ => "mixed".to_string(),
        };
    }

    /// Reads a cassette in our format. Errors name the file and the line (for
    /// YAML and type errors) or the field path (for the checks after parsing).
    pub fn load(path: &Path) -> Result<Cassette, CassetteError> {
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| CassetteError::Read { file: file.clone(), source })?;
        Cassette::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<Cassette, CassetteError> {
        let c: Cassette = serde_yaml_ng::from_str(text).map_err(|e| CassetteError::yaml(file, &e))?;
        c.validate().map_err(|e| CassetteError::Invalid { file: file.to_string(), message: format!("{e:#}") })?;
        Ok(c)
    }

    /// Checks what the types cannot: the format, one body form, statuses.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.format != FORMAT {
            return Err(anyhow!("format: expected `{FORMAT}`, got `{}`", self.format));
        }
        for (i, it) in self.interactions.iter().enumerate() {
            let at = format!("interactions[{i}]");
            check_request(&it.request, &format!("{at}.request"))?;
            check_response(&it.response, &format!("{at}.response"))?;
            if let Some(c) = &it.client {
                if let Some(r) = &c.request {
                    check_request(r, &format!("{at}.client.request"))?;
                }
                if let Some(r) = &c.response {
                    check_response(r, &format!("{at}.client.response"))?;
                }
            }
        }
        Ok(())
    }

    /// YAML text of the cassette.
    pub fn to_yaml(&self) -> anyhow::Result<String> {
        let body = serde_yaml_ng::to_string(self)?;
        Ok(format!("# postmortem cassette: see docs/cassettes.md\n{body}"))
    }

    /// Writes the cassette atomically (a temporary file renamed over the
    /// target), so a reader never sees half a cassette.
    pub fn save(&self, path: &Path) -> Result<(), CassetteError> {
        let file = path.display().to_string();
        let text =
            self.to_yaml().map_err(|e| CassetteError::Invalid { file: file.clone(), message: format!("{e:#}") })?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut tmp, text.as_bytes())?;
            tmp.persist(path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|source| CassetteError::Write { file, source })
    }
}

fn check_request(r: &Request, at: &str) -> anyhow::Result<()> {
    if http::Method::from_bytes(r.method.as_bytes()).is_err() {
        return Err(anyhow!("{at}.method: `{}` is not an HTTP method", r.method));
    }
    if r.url.is_empty() {
        return Err(anyhow!("{at}.url: must not be empty"));
    }
    check_body(&r.body, &format!("{at}.body"))?;
    if r.body.is_stream() {
        return Err(anyhow!("{at}.body: a request body cannot be `sse` or `eventstream`"));
    }
    Ok(())
}

fn check_response(r: &Response, at: &str) -> anyhow::Result<()> {
    if http::StatusCode::from_u16(r.status).is_err() {
        return Err(anyhow!("{at}.status: {} is not an HTTP status", r.status));
    }
    check_body(&r.body, &format!("{at}.body"))
}

fn check_body(b: &Body, at: &str) -> anyhow::Result<()> {
    if b.forms() > 1 {
        return Err(anyhow!("{at}: give exactly one of json, text, base64, sse, eventstream"));
    }
    if let Some(s) = &b.base64 {
        decode_b64(s).with_context(|| format!("{at}.base64"))?;
    }
    if let Some(frames) = &b.eventstream {
        for (i, f) in frames.iter().enumerate() {
            let forms = [f.chunk.is_some() || f.payload.is_some(), f.payload_base64.is_some(), f.raw_base64.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            if forms > 1 {
                return Err(anyhow!(
                    "{at}.eventstream[{i}]: give chunk/payload, payload_base64 or raw_base64, not several"
                ));
            }
            encode_frame(f).with_context(|| format!("{at}.eventstream[{i}]"))?;
        }
    }
    Ok(())
}

/// Now as RFC 3339 (UTC, seconds).
pub(crate) fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    aws_smithy_types::DateTime::from_secs(i64::try_from(secs).unwrap_or(0))
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_split_into_host_path_query() {
        assert_eq!(split_url("https://api.x.com/v1/a?b=1"), ("api.x.com", "/v1/a", Some("b=1")));
        assert_eq!(split_url("/v1/messages"), ("", "/v1/messages", None));
        assert_eq!(split_url("http://h:1"), ("h:1", "/", None));
    }

    #[test]
    fn apis_are_classified_from_the_url() {
        assert_eq!(Api::classify("https://api.openai.com/v1/chat/completions"), Api::Openai);
        assert_eq!(Api::classify("https://api.groq.com/openai/v1/chat/completions"), Api::Openai);
        assert_eq!(Api::classify("https://api.anthropic.com/v1/messages?beta=true"), Api::Anthropic);
        assert_eq!(Api::classify("https://bedrock-runtime.us-east-1.amazonaws.com/model/x%3A0/converse"), Api::Bedrock);
        assert_eq!(
            Api::classify("https://generativelanguage.googleapis.com/v1beta/models/g:generateContent"),
            Api::Gemini
        );
        assert_eq!(Api::classify("https://r.openai.azure.com/openai/deployments/d/embeddings"), Api::Azure);
        assert_eq!(Api::classify("https://huggingface.co/api/models/x"), Api::Other);
    }

    #[test]
    fn sse_keeps_comments_times_and_split_characters() {
        let mut c = SseCollector::default();
        c.push(b": OPENROUTER PROCESSING\n\ndata: {\"a\":", Some(1));
        c.push(b"\"\xC3", Some(2));
        c.push(b"\xA9\"}\n\nevent: x\r\ndata: 1\ndata: 2\n\n", Some(3));
        let events = c.finish();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].comment.as_deref(), Some(" OPENROUTER PROCESSING"));
        assert_eq!(events[1].data.as_deref(), Some("{\"a\":\"é\"}"));
        assert_eq!(events[1].at_ms, Some(3));
        assert_eq!(events[2].event.as_deref(), Some("x"));
        assert_eq!(events[2].data.as_deref(), Some("1\n2"));
        let again = Body::from_bytes(Some("text/event-stream"), render_sse(&events).as_bytes());
        let mut plain = events.clone();
        plain.iter_mut().for_each(|e| e.at_ms = None);
        assert_eq!(again.sse, Some(plain));
    }

    #[test]
    fn eventstream_frames_round_trip() {
        let event = json!({"type": "content_block_delta", "delta": {"text": "hi"}});
        let bytes = crate::gateway::providers::bedrock::encode_chunk_frame(&event).unwrap();
        let frames = decode_frames(&bytes, Some(5));
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].chunk, Some(event));
        assert_eq!(frames[0].header(":event-type"), Some("chunk"));
        let again = encode_frame(&frames[0]).unwrap();
        assert_eq!(decode_frames(&again, Some(5)), frames);
        let broken = decode_frames(b"\x00\x00\x00\x10garbage", None);
        assert!(broken.last().is_some_and(|f| f.raw_base64.is_some()));
    }

    #[test]
    fn bodies_pick_the_most_readable_form() {
        assert_eq!(Body::from_bytes(Some("application/json"), b"{\"a\":1}").json, Some(json!({"a": 1})));
        assert_eq!(Body::from_bytes(Some("text/plain"), b"42").text.as_deref(), Some("42"));
        assert!(Body::from_bytes(None, &[0xff, 0x00]).base64.is_some());
        assert!(Body::from_bytes(None, b"").is_empty());
    }

    #[test]
    fn a_typo_is_an_error_with_a_line() {
        let text = "format: postmortem-cassette/v1\nmetadata: {provider: openai, source: x}\ninteractions:\n- request: {method: POST, url: /x, boddy: {}}\n  response: {status: 200}\n";
        let err = Cassette::parse(text, "c.yaml").unwrap_err().to_string();
        assert!(err.contains("c.yaml") && err.contains("boddy") && err.contains("line 4"), "{err}");
        let text = "format: postmortem-cassette/v1\nmetadata: {provider: openai, source: x}\ninteractions:\n- request: {method: POST, url: /x, body: {json: 1, text: a}}\n  response: {status: 200}\n";
        let err = Cassette::parse(text, "c.yaml").unwrap_err().to_string();
        assert!(err.contains("interactions[0].request.body"), "{err}");
    }
}
