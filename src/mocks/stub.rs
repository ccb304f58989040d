//! Stubs: what a scenario tells a mock to answer. These types are read
//! straight from scenario YAML, so every struct denies unknown fields and
//! every enum uses snake_case external tags:
//!
//! ```yaml
//! matcher: { method: POST, path: /v1/chat/completions }
//! response:
//!   sse:
//!     events:
//!       - { data: '{"choices":[]}' }
//!       - { comment: true, data: keep-alive, delay_ms: 50 }
//!     hold_before: [1, first-token-seen]
//! times: 1
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::errors;
use super::ids::IdGen;
use super::journal::RecordedRequest;
use super::wire::Buffered;
use super::MockKind;

/// One canned answer and the requests it applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stub {
    #[serde(default, alias = "match")]
    pub matcher: StubMatch,
    pub response: StubResponse,
    /// Answer this many requests, then fall through to later stubs or the
    /// default behaviour. `None` answers forever.
    #[serde(default)]
    pub times: Option<u64>,
}

impl Stub {
    pub fn new(matcher: StubMatch, response: StubResponse) -> Stub {
        Stub { matcher, response, times: None }
    }

    pub fn times(mut self, n: u64) -> Stub {
        self.times = Some(n);
        self
    }

    /// Checks everything that would otherwise fail (or panic inside
    /// wiremock) while serving: statuses, header names and values, gate and
    /// cut indexes. The message names the offending field.
    pub fn validate(&self) -> Result<(), StubError> {
        if let Some((name, _)) = &self.matcher.header {
            http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| StubError::new("matcher.header", format!("`{name}` is not a valid header name")))?;
        }
        self.response.validate("response")
    }
}

/// Which requests a stub applies to. Every field that is set must match;
/// an empty matcher matches everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StubMatch {
    /// HTTP method, case-insensitive.
    pub method: Option<String>,
    /// Exact path, without the query string.
    pub path: Option<String>,
    /// Substring of the path.
    pub path_contains: Option<String>,
    /// The body is JSON and contains this value: objects may have more keys,
    /// arrays must have the same length and match element by element, and an
    /// explicit `null` only matches an explicit `null`.
    pub body_contains_json: Option<Value>,
    /// A header (name case-insensitive) with exactly this value.
    pub header: Option<(String, String)>,
}

impl StubMatch {
    pub fn post(path: &str) -> StubMatch {
        StubMatch { method: Some("POST".into()), path: Some(path.into()), ..StubMatch::default() }
    }

    pub fn matches(&self, req: &RecordedRequest) -> bool {
        if let Some(m) = &self.method {
            if !m.eq_ignore_ascii_case(&req.method) {
                return false;
            }
        }
        if let Some(p) = &self.path {
            if *p != req.path {
                return false;
            }
        }
        if let Some(p) = &self.path_contains {
            if !req.path.contains(p.as_str()) {
                return false;
            }
        }
        if let Some(expected) = &self.body_contains_json {
            match &req.json {
                Some(actual) if json_contains(actual, expected) => {}
                _ => return false,
            }
        }
        if let Some((name, value)) = &self.header {
            if !req.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value) {
                return false;
            }
        }
        true
    }
}

/// `actual` contains `expected` (see [`StubMatch::body_contains_json`]).
pub(crate) fn json_contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            e.iter().all(|(k, ev)| a.get(k).is_some_and(|av| json_contains(av, ev)))
        }
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(av, ev)| json_contains(av, ev))
        }
        _ => actual == expected,
    }
}

fn ok() -> u16 {
    200
}

fn text_plain() -> String {
    "text/plain; charset=utf-8".into()
}

/// What a stub answers. In YAML either `json: {...}` (a single-key map) or
/// the tagged form `!json {...}`; in JSON `{"json": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
pub enum StubResponse {
    /// A buffered JSON body (`content-type: application/json` unless the
    /// headers say otherwise).
    Json {
        #[serde(default = "ok")]
        status: u16,
        body: Value,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// A buffered body of any bytes. In YAML `body` may be a string.
    Raw {
        #[serde(default = "ok")]
        status: u16,
        #[serde(with = "bytes_or_string")]
        body: Vec<u8>,
        #[serde(default = "text_plain")]
        content_type: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// A server-sent-events stream served chunk by chunk by the front.
    Sse {
        #[serde(default = "ok")]
        status: u16,
        events: Vec<StubEvent>,
        /// `(i, gate)`: before sending event `i` (0-based; `i == events.len()`
        /// holds the end of the stream) wait until the gate is released.
        #[serde(default)]
        hold_before: Option<(usize, String)>,
        /// Send `n` whole events, then half of event `n`, then close the
        /// connection without ending the chunked body.
        #[serde(default)]
        cut_after: Option<usize>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// A Bedrock `application/vnd.amazon.eventstream` stream (binary frames).
    EventStream {
        #[serde(default = "ok")]
        status: u16,
        events: Vec<EventStreamEvent>,
        #[serde(default)]
        hold_before: Option<(usize, String)>,
        #[serde(default)]
        cut_after: Option<usize>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    Fault(Fault),
}

/// Failures of the transport or of the provider. Unit variants may be
/// written as a bare name: `fault: reset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Read the request, then drop the TCP connection (RST) without a response.
    Reset,
    /// HTTP 200, `content-type: application/json`, body cut in the middle of
    /// the provider's normal success JSON.
    Malformed,
    /// Wait `ms` milliseconds, then answer with `then`.
    Latency { ms: u64, then: Box<StubResponse> },
    /// HTTP 429 with `retry-after` and the provider's rate-limit error body.
    RateLimited { retry_after_secs: u64 },
    /// Any status with the provider's own error body for it (e.g. 529 for
    /// Anthropic overload, 503 for Bedrock).
    Status { code: u16 },
    /// A `status` answer with a JSON body `bytes` long (`{"padding":
    /// "xxx…"}`), sent in 1 MiB pieces: for a gateway's limit on what it
    /// reads from a provider. At most 512 MiB.
    Huge {
        bytes: u64,
        #[serde(default = "ok")]
        status: u16,
    },
}

/// One SSE event. `comment: true` sends `: data` (a keep-alive line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StubEvent {
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub data: String,
    /// Wait this long before sending the event.
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub comment: bool,
}

impl StubEvent {
    /// `data: <data>` with no event name (OpenAI framing).
    pub fn data(data: impl Into<String>) -> StubEvent {
        StubEvent { data: data.into(), ..StubEvent::default() }
    }

    /// `event: <name>` + `data: <data>` (Anthropic framing, or an `error` event).
    pub fn named(event: &str, data: impl Into<String>) -> StubEvent {
        StubEvent { event: Some(event.into()), data: data.into(), ..StubEvent::default() }
    }

    /// `: <text>`, a comment line proxies and providers send as keep-alive.
    pub fn comment(text: impl Into<String>) -> StubEvent {
        StubEvent { data: text.into(), comment: true, ..StubEvent::default() }
    }

    pub fn delay(mut self, ms: u64) -> StubEvent {
        self.delay_ms = ms;
        self
    }
}

/// One Bedrock event-stream frame: an InvokeModel `chunk` event whose payload
/// is `{"bytes": base64(json)}`, a named Converse event (`event`, e.g.
/// `messageStart`, whose payload is `payload` itself), or an exception frame
/// (e.g. `throttlingException`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventStreamEvent {
    #[serde(default)]
    pub chunk: Option<Value>,
    /// A Converse event type; its JSON is `payload` (default `{}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(default)]
    pub exception: Option<EventStreamException>,
    #[serde(default)]
    pub delay_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventStreamException {
    /// The `:exception-type` header, e.g. `throttlingException`.
    pub exception_type: String,
    pub message: String,
}

impl StubResponse {
    /// The response after every `Latency` wrapper is peeled off.
    pub(crate) fn terminal(&self) -> &StubResponse {
        let mut current = self;
        while let StubResponse::Fault(Fault::Latency { then, .. }) = current {
            current = then;
        }
        current
    }

    /// The buffered form of a terminal response, rendered once when the stub
    /// is mounted; `None` for what is produced per request (streams, resets,
    /// malformed bodies).
    pub(crate) fn buffered(&self, kind: MockKind, ids: &IdGen) -> Option<Buffered> {
        match self {
            StubResponse::Json { status, body, headers } => {
                let mut b = Buffered::json(*status, body);
                for (k, v) in headers {
                    b = b.with_header(k, v.clone());
                }
                Some(b)
            }
            StubResponse::Raw { status, body, content_type, headers } => {
                let mut b = Buffered {
                    status: *status,
                    headers: vec![("content-type".into(), content_type.clone())],
                    body: body.clone(),
                };
                for (k, v) in headers {
                    b = b.with_header(k, v.clone());
                }
                Some(b)
            }
            StubResponse::Fault(Fault::RateLimited { retry_after_secs }) => {
                Some(errors::rate_limited(kind, *retry_after_secs, ids))
            }
            StubResponse::Fault(Fault::Status { code }) => Some(errors::status(kind, *code, ids)),
            _ => None,
        }
    }

    fn validate(&self, at: &str) -> Result<(), StubError> {
        match self {
            StubResponse::Json { status, headers, .. } => {
                check_status(*status, at)?;
                check_headers(headers, at)
            }
            StubResponse::Raw { status, content_type, headers, .. } => {
                check_status(*status, at)?;
                check_header_value(content_type, &format!("{at}.content_type"))?;
                check_headers(headers, at)
            }
            StubResponse::Sse { status, events, hold_before, cut_after, headers } => {
                check_status(*status, at)?;
                check_headers(headers, at)?;
                for (i, e) in events.iter().enumerate() {
                    if let Some(name) = &e.event {
                        if name.contains(['\n', '\r']) {
                            return Err(StubError::new(
                                format!("{at}.events[{i}].event"),
                                "an event name cannot contain a line break",
                            ));
                        }
                    }
                }
                check_stream_indexes(events.len(), hold_before, cut_after, at)
            }
            StubResponse::EventStream { status, events, hold_before, cut_after, headers } => {
                check_status(*status, at)?;
                check_headers(headers, at)?;
                for (i, e) in events.iter().enumerate() {
                    let kinds = [e.chunk.is_some(), e.event.is_some(), e.exception.is_some()];
                    if kinds.iter().filter(|k| **k).count() != 1 {
                        return Err(StubError::new(
                            format!("{at}.events[{i}]"),
                            "set exactly one of `chunk`, `event` and `exception`",
                        ));
                    }
                    if e.payload.is_some() && e.event.is_none() {
                        return Err(StubError::new(format!("{at}.events[{i}]"), "`payload` goes with `event`"));
                    }
                }
                check_stream_indexes(events.len(), hold_before, cut_after, at)
            }
            StubResponse::Fault(Fault::Latency { then, .. }) => then.validate(&format!("{at}.fault.latency.then")),
            StubResponse::Fault(Fault::Status { code }) => check_status(*code, &format!("{at}.fault.status")),
            StubResponse::Fault(Fault::Huge { bytes, status }) => {
                if *bytes < 32 || *bytes > 512 * 1024 * 1024 {
                    return Err(StubError::new(
                        format!("{at}.fault.huge.bytes"),
                        format!("must be from 32 to 536870912, got {bytes}"),
                    ));
                }
                check_status(*status, &format!("{at}.fault.huge.status"))
            }
            StubResponse::Fault(Fault::Reset | Fault::Malformed | Fault::RateLimited { .. }) => Ok(()),
        }
    }
}

/// A stub that could not be served as written: the field (its path in the
/// stub, e.g. `response.headers`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct StubError {
    pub field: String,
    pub problem: String,
}

impl StubError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> StubError {
        StubError { field: field.into(), problem: problem.into() }
    }
}

fn check_status(status: u16, at: &str) -> Result<(), StubError> {
    match http::StatusCode::from_u16(status) {
        Ok(_) => Ok(()),
        Err(_) => Err(StubError::new(format!("{at}.status"), format!("{status} is not an HTTP status (100..=999)"))),
    }
}

fn check_headers(headers: &BTreeMap<String, String>, at: &str) -> Result<(), StubError> {
    for (name, value) in headers {
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| StubError::new(format!("{at}.headers"), format!("`{name}` is not a valid header name")))?;
        check_header_value(value, &format!("{at}.headers.{name}"))?;
    }
    Ok(())
}

fn check_header_value(value: &str, at: &str) -> Result<(), StubError> {
    http::HeaderValue::from_str(value)
        .map(|_| ())
        .map_err(|_| StubError::new(at, format!("`{value}` is not a valid header value")))
}

fn check_stream_indexes(
    len: usize,
    hold_before: &Option<(usize, String)>,
    cut_after: &Option<usize>,
    at: &str,
) -> Result<(), StubError> {
    if let Some((i, gate)) = hold_before {
        if *i > len {
            return Err(StubError::new(
                format!("{at}.hold_before"),
                format!("index {i} is past the end ({len} events)"),
            ));
        }
        if gate.is_empty() {
            return Err(StubError::new(format!("{at}.hold_before"), "the gate name is empty"));
        }
    }
    if let Some(n) = cut_after {
        if *n >= len {
            return Err(StubError::new(
                format!("{at}.cut_after"),
                format!("{n} needs at least {} events to cut one in half", n + 1),
            ));
        }
    }
    Ok(())
}

/// The trait impls of the two enums wrap the derived (`remote = "Self"`)
/// functions so that an enum value is accepted in every form a scenario
/// author may write: YAML tag (`!sse`), single-key map (`sse: ...`, which
/// serde_yaml_ng alone refuses for enums), or a bare unit-variant name.
macro_rules! either_form {
    ($ty:ident, $derived:ident) => {
        struct $derived($ty);

        impl<'de> Deserialize<'de> for $derived {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $ty::deserialize(d).map($derived)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(either_form::EitherForm::<$derived>::new()).map(|v| v.0)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $ty::serialize(self, s)
            }
        }
    };
}

either_form!(StubResponse, DerivedStubResponse);
either_form!(Fault, DerivedFault);

mod either_form {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::value::{EnumAccessDeserializer, MapAccessDeserializer};
    use serde::de::{self, EnumAccess, IntoDeserializer, MapAccess, Visitor};
    use serde::Deserialize;

    pub(super) struct EitherForm<R>(PhantomData<R>);

    impl<R> EitherForm<R> {
        pub(super) fn new() -> Self {
            EitherForm(PhantomData)
        }
    }

    impl<'de, R: Deserialize<'de>> Visitor<'de> for EitherForm<R> {
        type Value = R;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a variant as a single-key map (`name: ...`), a YAML tag (`!name`) or a bare name")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<R, E> {
            R::deserialize(v.into_deserializer())
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<R, A::Error> {
            R::deserialize(MapAccessDeserializer::new(map))
        }

        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<R, A::Error> {
            R::deserialize(EnumAccessDeserializer::new(data))
        }
    }
}

/// `Raw` bodies: a string in YAML/JSON, or a list of byte values.
mod bytes_or_string {
    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.collect_seq(bytes),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                Ok(v.as_bytes().to_vec())
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}
