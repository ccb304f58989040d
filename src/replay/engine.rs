//! The replay engine: one cassette against our gateway.
//!
//! 1. Plan: each interaction becomes a client call the gateway serves
//!    (OpenAI chat and embeddings, Azure, the Anthropic Messages API, Bedrock
//!    InvokeModel and Vertex rawPredict through `/v1/messages`), or is
//!    skipped with the reason (Gemini, the Responses API, Bedrock Converse,
//!    model listings).
//! 2. Serve: one mock provider per API, with the recorded responses mounted
//!    as stubs in recording order (each answers once), then a catch-all that
//!    answers "no recorded interaction matches" so the mock's own defaults
//!    never stand in for a recording.
//! 3. Drive: a gateway built in-process from a generated config that routes
//!    each recorded model to its mock; the recorded client requests go in.
//! 4. Compare: what the gateway sent upstream (the mock's journal, redacted
//!    like the cassette) against the recorded request, and what the client
//!    got against the recorded response. Every upstream request must match a
//!    recorded one (method, path, query and redacted body, after the noise
//!    rules in `diff`); every recorded one must be used.

use anyhow::{anyhow, Context};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::cassette::{
    header, percent_decode, push_header, split_url, Api, Body, Cassette, ClientSide, HeaderValues, Headers,
    Interaction, RecordedEvent, Request, Response, SseCollector,
};
use super::diff::{
    canonical, events_diff, header_diff, json_diff, normalize_request_body, normalized_query, request_body_key,
    response_json_diff, text_diff, ComparedEvent, Difference,
};
use super::redact::{self, is_placeholder, RedactionLog};
use crate::gateway::config::{Config, LitellmParams, ModelDeployment, RouterSettings};
use crate::gateway::KnownBugs;
use crate::mocks::{
    EventStreamEvent, EventStreamException, MockKind, MockOptions, MockProvider, RecordedRequest, Stub, StubMatch,
    StubResponse,
};
use crate::target::GatewayUnderTest;

/// Credentials the generated config gives the gateway. The mocks do not
/// check them (replay mocks are not strict: the recording is the truth).
const UPSTREAM_KEY: &str = "replay-upstream-credential";
const AWS_KEY_ID: &str = "TESTACCESSKEYID0000";
const AWS_SECRET: &str = "test-secret-access-key-0000";
/// Interactions whose stubs a mock holds at once (see the drive loop).
const WINDOW: usize = 64;
/// Marks the catch-all answer.
const NO_MATCH_HEADER: &str = "x-postmortem-replay";
/// The catch-all's error message; the gateway passes it on to the client.
const NO_MATCH_MESSAGE: &str = "postmortem replay: no recorded interaction matches this request";

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Known-bad variants to put back (to prove a replay catches them).
    pub bugs: KnownBugs,
    /// Build an updated cassette holding the new behaviour.
    pub update: bool,
    /// Recorded interactions nobody asked for are warnings, not failures.
    pub allow_unused: bool,
    /// Client requests in flight at once. 1 keeps recording order, which
    /// matters when identical requests got different answers (retries).
    pub concurrency: usize,
    /// Per client request.
    pub timeout: Duration,
    /// Advanced once per interaction.
    pub progress: Option<indicatif::ProgressBar>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            bugs: KnownBugs::default(),
            update: false,
            allow_unused: false,
            concurrency: 1,
            timeout: Duration::from_secs(30),
            progress: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayVerdict {
    Passed,
    Failed,
    NotReplayable,
}

/// Something wrong with one interaction (or an upstream request no
/// interaction accounts for).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub what: String,
    pub differences: Vec<Difference>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InteractionReport {
    pub index: usize,
    /// `POST /v1/embeddings (openai)`.
    pub label: String,
    /// Why it was not replayed.
    pub skipped: Option<String>,
    pub findings: Vec<Finding>,
    pub warnings: Vec<String>,
}

impl InteractionReport {
    pub fn passed(&self) -> bool {
        self.skipped.is_none() && self.findings.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub source: String,
    pub verdict: ReplayVerdict,
    /// Why nothing was replayed, or why the replay could not run.
    pub reason: Option<String>,
    pub interactions: Vec<InteractionReport>,
    /// Upstream requests that match no recorded interaction.
    pub extra_requests: Vec<Finding>,
    pub duration_ms: u128,
    /// With `update`: the cassette holding the new behaviour, when it differs.
    #[serde(skip)]
    pub updated: Option<Cassette>,
}

impl ReplayReport {
    pub fn failed(&self) -> bool {
        self.verdict == ReplayVerdict::Failed
    }

    pub fn replayed(&self) -> usize {
        self.interactions.iter().filter(|i| i.skipped.is_none()).count()
    }

    /// Every difference found, for tests and tools.
    pub fn differences(&self) -> impl Iterator<Item = &Difference> {
        self.interactions
            .iter()
            .flat_map(|i| i.findings.iter())
            .chain(self.extra_requests.iter())
            .flat_map(|f| f.differences.iter())
    }

    /// The human report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let head = match self.verdict {
            ReplayVerdict::Passed => "ok",
            ReplayVerdict::Failed => "FAILED",
            ReplayVerdict::NotReplayable => "not replayable",
        };
        out.push_str(&format!("== {} ({head}", self.source));
        if let Some(r) = &self.reason {
            out.push_str(&format!(": {r}"));
        }
        out.push_str(")\n");
        if self.verdict == ReplayVerdict::NotReplayable {
            return out;
        }
        for i in &self.interactions {
            let tag = match (&i.skipped, i.findings.is_empty()) {
                (Some(_), _) => "skip",
                (None, true) => "ok",
                (None, false) => "FAIL",
            };
            out.push_str(&format!("  {tag:<4} #{} {}", i.index, i.label));
            if let Some(r) = &i.skipped {
                out.push_str(&format!(": not replayable: {r}"));
            }
            out.push('\n');
            for f in &i.findings {
                render_finding(&mut out, f);
            }
            for w in &i.warnings {
                out.push_str(&format!("         warning: {w}\n"));
            }
        }
        for f in &self.extra_requests {
            out.push_str("  FAIL extra upstream request\n");
            render_finding(&mut out, f);
        }
        out
    }
}

fn render_finding(out: &mut String, f: &Finding) {
    out.push_str(&format!("         {}\n", f.what));
    for d in &f.differences {
        for (n, line) in d.to_string().lines().enumerate() {
            let indent = if n == 0 { "           " } else { "             " };
            out.push_str(&format!("{indent}{line}\n"));
        }
    }
}

// ------------------------------------------------------------------ planning

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Chat,
    Embeddings,
    /// `/v1/messages` to Anthropic, Bedrock InvokeModel or Vertex rawPredict.
    Messages,
}

/// One upstream deployment the generated config needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Target {
    mock: MockKind,
    /// `provider/model` for `litellm_params.model`.
    litellm_model: String,
    /// The base path before the API's own path, e.g. `/openai/v1` for Groq.
    prefix: String,
    api_version: Option<String>,
    region: Option<String>,
    vertex_project: Option<String>,
    vertex_location: Option<String>,
    /// The client-facing name to start from.
    name_hint: String,
}

struct Planned {
    index: usize,
    target: usize,
    mode: Mode,
    client: Request,
    expected: Response,
}

/// Why an interaction cannot be replayed: it is reported as skipped, with
/// this reason, and the rest of the cassette still runs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
struct Skipped {
    reason: String,
}

fn skip(reason: impl Into<String>) -> Result<(Target, Mode, bool), Skipped> {
    Err(Skipped { reason: reason.into() })
}

fn body_object(i: &Interaction) -> Option<Map<String, Value>> {
    match i.request.body.as_json() {
        Some(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// Which deployment and client call an interaction needs, or why it cannot
/// be replayed.
fn classify(i: &Interaction) -> Result<(Target, Mode, bool), Skipped> {
    let path = i.request.path().to_string();
    let api = i.api();
    let what = format!("{} {}", i.request.method, path);
    if i.request.method != "POST" {
        return skip(format!("{what}: not an LLM API call the gateway serves"));
    }
    match api {
        Api::Gemini => return skip("Gemini API (generateContent): the gateway has no Gemini provider"),
        Api::Other => return skip(format!("{what}: not an LLM API call the gateway serves")),
        _ => {}
    }
    if api == Api::Openai && path.ends_with("/responses") {
        return skip(
            "OpenAI Responses API (/v1/responses): the gateway serves /v1/chat/completions and /v1/embeddings",
        );
    }
    if api == Api::Bedrock && (path.ends_with("/converse") || path.ends_with("/converse-stream")) {
        return skip("Bedrock Converse API: the gateway calls Bedrock through InvokeModel only");
    }
    let body = match body_object(i) {
        Some(b) => b,
        None if i.request.body.is_empty() => {
            return skip("the recorded request has no body (a hand-written stub?): there is no client request to send")
        }
        None => return skip("the recorded request body is not a JSON object"),
    };
    let model = body.get("model").and_then(Value::as_str).map(str::to_string);
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let base = |name_hint: String, mock, litellm_model| Target {
        mock,
        litellm_model,
        prefix: String::new(),
        api_version: None,
        region: None,
        vertex_project: None,
        vertex_location: None,
        name_hint,
    };
    match api {
        Api::Openai => {
            let (mode, suffix) = if path.ends_with("/chat/completions") {
                (Mode::Chat, "/chat/completions")
            } else if path.ends_with("/embeddings") {
                (Mode::Embeddings, "/embeddings")
            } else {
                return skip(format!("{what}: the gateway serves only chat completions and embeddings"));
            };
            let Some(model) = model else { return skip("the recorded request has no `model`") };
            let mut t = base(model.clone(), MockKind::Openai, format!("openai/{model}"));
            t.prefix = path[..path.len() - suffix.len()].to_string();
            Ok((t, mode, stream))
        }
        Api::Azure => {
            let Some((prefix, rest)) = path.split_once("/openai/deployments/") else {
                return skip(format!("{what}: not an Azure OpenAI deployment path"));
            };
            let Some((dep, op)) = rest.split_once('/') else { return skip(format!("{what}: no operation")) };
            let mode = match op {
                "chat/completions" => Mode::Chat,
                "embeddings" => Mode::Embeddings,
                _ => return skip(format!("{what}: the gateway serves only chat completions and embeddings")),
            };
            let dep = percent_decode(dep, false);
            let mut t = base(dep.clone(), MockKind::Azure, format!("azure/{dep}"));
            t.prefix = prefix.to_string();
            t.api_version = normalized_query(i.request.query()).get("api-version").and_then(|v| v.first()).cloned();
            Ok((t, mode, stream))
        }
        Api::Anthropic => {
            if !path.ends_with("/v1/messages") {
                return skip(format!("{what}: the gateway serves only the Messages API (/v1/messages)"));
            }
            let Some(model) = model else { return skip("the recorded request has no `model`") };
            let mut t = base(model.clone(), MockKind::Anthropic, format!("anthropic/{model}"));
            t.prefix = path[..path.len() - "/v1/messages".len()].to_string();
            Ok((t, Mode::Messages, stream))
        }
        Api::Bedrock => {
            let Some((prefix, rest)) = path.split_once("/model/") else {
                return skip(format!("{what}: not a Bedrock runtime path"));
            };
            let Some((id, op)) = rest.rsplit_once('/') else { return skip(format!("{what}: no operation")) };
            let stream = match op {
                "invoke" => false,
                "invoke-with-response-stream" => true,
                _ => return skip(format!("{what}: not InvokeModel")),
            };
            let id = percent_decode(id, false);
            if !body.contains_key("messages") {
                return skip(format!(
                    "InvokeModel with a non-Anthropic body ({id}): the gateway serves Bedrock only for Claude via the Messages API"
                ));
            }
            let (host, _, _) = split_url(&i.request.url);
            let region = host
                .strip_prefix("bedrock-runtime.")
                .and_then(|h| h.split('.').next())
                .filter(|r| !r.is_empty())
                .unwrap_or("us-east-1");
            let mut t = base(format!("bedrock/{id}"), MockKind::Bedrock, format!("bedrock/{id}"));
            t.prefix = prefix.to_string();
            t.region = Some(region.to_string());
            Ok((t, Mode::Messages, stream))
        }
        Api::VertexAi => {
            let Some((prefix, rest)) =
                path.split_once("/v1/projects/").or_else(|| path.split_once("/v1beta1/projects/"))
            else {
                return skip(format!("{what}: not a Vertex AI publisher path"));
            };
            let parts: Vec<&str> = rest.split('/').collect();
            // [project, "locations", location, "publishers", "anthropic", "models", "model:verb"]
            if parts.len() != 7 || parts[1] != "locations" || parts[3] != "publishers" || parts[5] != "models" {
                return skip(format!("{what}: not a Vertex AI Anthropic publisher path"));
            }
            let last = percent_decode(parts[6], false);
            let Some((model, verb)) = last.rsplit_once(':') else { return skip(format!("{what}: no verb")) };
            let stream = match verb {
                "rawPredict" => false,
                "streamRawPredict" => true,
                _ => return skip(format!("{what}: the gateway serves rawPredict and streamRawPredict")),
            };
            if model == "count-tokens" {
                return skip("Vertex AI count-tokens: not served by the gateway");
            }
            let mut t = base(format!("vertex_ai/{model}"), MockKind::VertexAi, format!("vertex_ai/{model}"));
            t.prefix = prefix.to_string();
            t.vertex_project = Some(parts[0].to_string());
            t.vertex_location = Some(parts[2].to_string());
            Ok((t, Mode::Messages, stream))
        }
        Api::Gemini | Api::Other => skip(format!("{what}: not an LLM API call the gateway serves")),
    }
}

/// The request the client sends to the gateway, from the upstream one.
fn derive_client_request(i: &Interaction, t: &Target, mode: Mode, stream: bool, model_name: &str) -> Request {
    let mut body = body_object(i).unwrap_or_default();
    let mut headers = Headers::new();
    push_header(&mut headers, "content-type", "application/json".into());
    body.insert("model".into(), Value::String(model_name.to_string()));
    let path = match mode {
        Mode::Chat => "/v1/chat/completions",
        Mode::Embeddings => "/v1/embeddings",
        Mode::Messages => "/v1/messages",
    };
    if mode == Mode::Messages {
        for name in ["anthropic-version", "anthropic-beta"] {
            if let Some(v) = i.request.headers.get(name) {
                headers.insert(name.into(), v.clone());
            }
        }
        if matches!(t.mock, MockKind::Bedrock | MockKind::VertexAi) {
            // The gateway sets the platform's own anthropic_version.
            body.remove("anthropic_version");
            if t.mock == MockKind::Bedrock {
                // Bedrock takes betas in the body; clients send them as a header.
                if let Some(Value::Array(flags)) = body.remove("anthropic_beta") {
                    let flags: Vec<&str> = flags.iter().filter_map(Value::as_str).collect();
                    if !flags.is_empty() {
                        push_header(&mut headers, "anthropic-beta", flags.join(","));
                    }
                }
            }
            if stream {
                body.insert("stream".into(), Value::Bool(true));
            }
        }
    }
    Request { method: "POST".into(), url: path.into(), headers, body: Body::json(Value::Object(body)) }
}

/// The response the client should get, from the upstream one: the same,
/// except Bedrock's event stream, which the gateway turns into SSE.
fn derive_expected(i: &Interaction) -> Response {
    let mut r = i.response.clone();
    if let Some(frames) = &r.body.eventstream {
        let mut events = Vec::new();
        for f in frames {
            if let Some(chunk) = &f.chunk {
                let ty = chunk.get("type").and_then(Value::as_str).map(str::to_string);
                events.push(RecordedEvent { event: ty, data: Some(chunk.to_string()), ..RecordedEvent::default() });
            } else if f.header(":message-type") == Some("exception") {
                let msg = f.payload.as_ref().and_then(|p| p.get("message")).and_then(Value::as_str).unwrap_or("");
                let err = json!({"type": "error", "error": {"type": "api_error", "message": msg}});
                events.push(RecordedEvent {
                    event: Some("error".into()),
                    data: Some(err.to_string()),
                    ..RecordedEvent::default()
                });
            }
        }
        r.body = Body { sse: Some(events), ..Body::default() };
        r.headers.insert("content-type".into(), HeaderValues::One("text/event-stream".into()));
    }
    r
}

// ----------------------------------------------------------------- stubs

/// Response headers a stub may carry: not framing, not encoding, valid.
fn stub_headers(h: &Headers) -> BTreeMap<String, String> {
    h.iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "content-encoding" | "date"
            )
        })
        .map(|(k, v)| (k.clone(), v.iter().collect::<Vec<_>>().join(", ")))
        .filter(|(k, v)| http::HeaderName::from_bytes(k.as_bytes()).is_ok() && http::HeaderValue::from_str(v).is_ok())
        .collect()
}

/// The recorded response as a mock answer.
fn stub_response(r: &Response) -> anyhow::Result<StubResponse> {
    let mut headers = stub_headers(&r.headers);
    let status = r.status;
    let b = &r.body;
    if let Some(events) = &b.sse {
        let events = events
            .iter()
            .map(|e| match &e.comment {
                Some(c) => crate::mocks::StubEvent::comment(c.strip_prefix(' ').unwrap_or(c)),
                None => crate::mocks::StubEvent {
                    event: e.event.clone(),
                    data: e.data.clone().unwrap_or_default(),
                    delay_ms: 0,
                    comment: false,
                },
            })
            .collect();
        return Ok(StubResponse::Sse { status, events, hold_before: None, cut_after: None, headers });
    }
    if let Some(frames) = &b.eventstream {
        let simple: Option<Vec<EventStreamEvent>> = frames
            .iter()
            .map(|f| {
                if let Some(chunk) = &f.chunk {
                    Some(EventStreamEvent { chunk: Some(chunk.clone()), ..EventStreamEvent::default() })
                } else if f.header(":message-type") == Some("exception") {
                    let message = f.payload.as_ref()?.get("message")?.as_str()?.to_string();
                    let exception_type = f.header(":exception-type")?.to_string();
                    let exception = Some(EventStreamException { exception_type, message });
                    Some(EventStreamEvent { exception, ..EventStreamEvent::default() })
                } else {
                    None
                }
            })
            .collect();
        if let Some(events) = simple {
            return Ok(StubResponse::EventStream { status, events, hold_before: None, cut_after: None, headers });
        }
        let content_type =
            headers.remove("content-type").unwrap_or_else(|| "application/vnd.amazon.eventstream".into());
        return Ok(StubResponse::Raw { status, body: b.to_bytes()?, content_type, headers });
    }
    if let Some(v) = &b.json {
        return Ok(StubResponse::Json { status, body: v.clone(), headers });
    }
    let content_type = headers.remove("content-type").unwrap_or_else(|| "text/plain; charset=utf-8".into());
    Ok(StubResponse::Raw { status, body: b.to_bytes()?, content_type, headers })
}

/// The JSON a live request must contain to get this answer. Values holding a
/// redaction placeholder are left out: the live request has the real secret
/// there (or the same placeholder), and dropping the value is what redacting
/// the live request before matching amounts to. A `"stream": false` is left
/// out too, as in `diff`.
fn match_body(v: &Value) -> Option<Value> {
    fn reduce(v: &Value) -> Option<Value> {
        match v {
            Value::String(s) if is_placeholder(s) => None,
            Value::Array(a) => a.iter().map(reduce).collect::<Option<Vec<_>>>().map(Value::Array),
            Value::Object(o) => {
                Some(Value::Object(o.iter().filter_map(|(k, x)| reduce(x).map(|x| (k.clone(), x))).collect()))
            }
            other => Some(other.clone()),
        }
    }
    let mut log = RedactionLog::new();
    let mut v = normalize_request_body(v);
    redact::redact_json(&mut v, &mut log);
    reduce(&v)
}

/// A stub answering `i`'s request with `i`'s response.
pub(crate) fn stub_for(i: &Interaction, times: Option<u64>) -> anyhow::Result<Stub> {
    let matcher = StubMatch {
        method: Some(i.request.method.clone()),
        path: Some(i.request.path().to_string()),
        body_contains_json: i.request.body.as_json().filter(Value::is_object).and_then(|v| match_body(&v)),
        ..StubMatch::default()
    };
    Ok(Stub { matcher, response: stub_response(&i.response)?, times })
}

fn no_match_stub() -> Stub {
    let body = json!({"error": {
        "message": NO_MATCH_MESSAGE,
        "type": "replay_no_match",
    }});
    let headers = BTreeMap::from([(NO_MATCH_HEADER.to_string(), "no-match".to_string())]);
    Stub::new(StubMatch::default(), StubResponse::Json { status: 500, body, headers })
}

fn mock_kind(api: Api) -> Option<MockKind> {
    Some(match api {
        Api::Openai => MockKind::Openai,
        Api::Azure => MockKind::Azure,
        Api::Anthropic => MockKind::Anthropic,
        Api::Bedrock => MockKind::Bedrock,
        Api::VertexAi => MockKind::VertexAi,
        Api::Gemini | Api::Other => return None,
    })
}

fn serves(kind: MockKind, api: Api) -> bool {
    match api {
        Api::Openai => matches!(kind, MockKind::Openai | MockKind::HostedVllm),
        Api::Anthropic => matches!(kind, MockKind::Anthropic | MockKind::AzureAi),
        other => mock_kind(other) == Some(kind),
    }
}

/// Stubs for a scenario's mock of `kind` from a cassette (any format
/// `load_any` reads): the interactions of that API, each answering once in
/// recording order, except the last answer to each distinct request, which
/// keeps answering (so a scenario may repeat a request).
pub fn scenario_stubs(path: &Path, kind: MockKind) -> anyhow::Result<Vec<Stub>> {
    let (cassette, _) = super::load_any(path)?;
    let mine: Vec<&Interaction> = cassette.interactions.iter().filter(|i| serves(kind, i.api())).collect();
    if mine.is_empty() {
        return Err(anyhow!("{}: no interactions for a `{kind}` provider", path.display()));
    }
    let mut stubs = Vec::with_capacity(mine.len());
    for (n, i) in mine.iter().enumerate() {
        stubs.push(stub_for(i, Some(1)).with_context(|| format!("{}: interaction {n}", path.display()))?);
    }
    let mut seen = HashSet::new();
    for s in stubs.iter_mut().rev() {
        if seen.insert(format!("{:?}", s.matcher)) {
            s.times = None;
        }
    }
    Ok(stubs)
}

// ----------------------------------------------------------- comparison

/// A request from the mock's journal in cassette form, redacted exactly as
/// recordings are.
fn observed_request(r: &RecordedRequest) -> Request {
    let mut headers = Headers::new();
    for (k, v) in &r.headers {
        push_header(&mut headers, k, v.clone());
    }
    let url = match &r.query {
        Some(q) => format!("{}?{q}", r.path),
        None => r.path.clone(),
    };
    let body = match &r.json {
        Some(v) => Body::json(v.clone()),
        None => Body::from_bytes(header(&headers, "content-type"), &r.body),
    };
    let mut req = Request { method: r.method.clone(), url, headers, body };
    redact::redact_request(&mut req, &mut RedactionLog::new());
    req
}

/// Equal keys exactly when `request_diff` (without headers) finds nothing,
/// both sides redacted. Computed from borrowed parts: it runs for every
/// request of every replay.
fn request_key(method: &str, path: &str, query: Option<&str>, json: Option<&Value>, raw: &[u8]) -> String {
    let body = match json {
        Some(v) => request_body_key(v),
        None => {
            let text = String::from_utf8_lossy(raw);
            match redact::redact_str(&text) {
                Some((r, _)) => format!("raw:{r}"),
                None => format!("raw:{text}"),
            }
        }
    };
    format!(
        "{} {} {}\n{body}",
        method.to_ascii_uppercase(),
        percent_decode(path, false),
        canonical(&serde_json::to_value(normalized_query(query)).unwrap_or_default())
    )
}

fn recorded_key(r: &Request) -> String {
    let parsed = if r.body.json.is_none() { r.body.as_json() } else { None };
    let raw =
        if r.body.json.is_none() && parsed.is_none() { r.body.to_bytes().unwrap_or_default() } else { Vec::new() };
    request_key(&r.method, r.path(), r.query(), r.body.json.as_ref().or(parsed.as_ref()), &raw)
}

fn journal_key(r: &RecordedRequest) -> String {
    request_key(&r.method, &r.path, r.query.as_deref(), r.json.as_ref(), &r.body)
}

/// The compared headers of a journal entry.
fn semantic_headers(r: &RecordedRequest) -> Headers {
    let mut h = Headers::new();
    for (k, v) in &r.headers {
        if super::diff::SEMANTIC_HEADERS.contains(&k.as_str()) {
            push_header(&mut h, k, v.clone());
        }
    }
    h
}

fn request_diff(recorded: &Request, observed: &Request, complete: bool) -> Vec<Difference> {
    let mut out = Vec::new();
    if !recorded.method.eq_ignore_ascii_case(&observed.method) {
        out.push(Difference::new("method", Some(json!(recorded.method)), Some(json!(observed.method))));
    }
    let (rp, op) = (percent_decode(recorded.path(), false), percent_decode(observed.path(), false));
    if rp != op {
        out.push(Difference::new("path", Some(json!(rp)), Some(json!(op))));
    }
    let rq = serde_json::to_value(normalized_query(recorded.query())).unwrap_or_default();
    let oq = serde_json::to_value(normalized_query(observed.query())).unwrap_or_default();
    json_diff(&rq, &oq, "query", &mut out);
    header_diff(&recorded.headers, &observed.headers, complete, &mut out);
    match (recorded.body.as_json(), observed.body.as_json()) {
        (Some(r), Some(o)) => json_diff(&normalize_request_body(&r), &normalize_request_body(&o), "body", &mut out),
        _ => {
            let r = String::from_utf8_lossy(&recorded.body.to_bytes().unwrap_or_default()).into_owned();
            let o = String::from_utf8_lossy(&observed.body.to_bytes().unwrap_or_default()).into_owned();
            out.extend(text_diff("body", &r, &o));
        }
    }
    out
}

/// What the client got.
#[derive(Debug, Clone)]
struct ClientResponse {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
}

impl ClientResponse {
    /// The gateway relayed the replay mock's catch-all answer.
    fn is_no_match(&self) -> bool {
        self.status >= 500 && String::from_utf8_lossy(&self.body).contains(NO_MATCH_MESSAGE)
    }

    fn to_response(&self) -> Response {
        let ct = header(&self.headers, "content-type").map(str::to_string);
        let mut headers = Headers::new();
        if let Some(ct) = &ct {
            push_header(&mut headers, "content-type", ct.clone());
        }
        let mut r = Response { status: self.status, headers, body: Body::from_bytes(ct.as_deref(), &self.body) };
        redact::redact_response(&mut r, &mut RedactionLog::new());
        r
    }
}

fn error_message(v: &Value) -> Option<String> {
    v.pointer("/error/message").or_else(|| v.get("message")).and_then(Value::as_str).map(str::to_string)
}

fn is_error_event(e: &ComparedEvent) -> bool {
    e.event.as_deref() == Some("error") || e.data.get("error").is_some_and(|x| x.is_object())
}

fn response_diff(expected: &Response, got: &ClientResponse) -> Vec<Difference> {
    let mut out = Vec::new();
    if expected.status != got.status {
        out.push(Difference::new("response.status", Some(json!(expected.status)), Some(json!(got.status))));
    }
    let got_json: Option<Value> = serde_json::from_slice(&got.body).ok();
    if expected.status >= 400 {
        // The gateway re-shapes errors; what must survive is the status and
        // the provider's message.
        let bytes = expected.body.to_bytes().unwrap_or_default();
        let (want, _) = crate::gateway::error::upstream_message(&bytes);
        match got_json.as_ref().and_then(error_message) {
            Some(msg) if msg.contains(&want) => {}
            other => {
                let mut d = Difference::new("response.body.error.message", Some(json!(want)), other.map(Value::String));
                d.note = Some("the gateway's error must carry the provider's message".into());
                out.push(d);
            }
        }
        return out;
    }
    if expected.status < 300 {
        let want =
            expected.header("content-type").map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        let have =
            header(&got.headers, "content-type").map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        if want.is_some() && want != have {
            out.push(Difference::new(
                "response.headers.content-type",
                want.map(Value::String),
                have.map(Value::String),
            ));
        }
    }
    if let Some(events) = &expected.body.sse {
        let recorded: Vec<ComparedEvent> = events.iter().filter_map(ComparedEvent::from_sse).collect();
        let mut c = SseCollector::default();
        c.push(&got.body, None);
        let replayed: Vec<ComparedEvent> = c.finish().iter().filter_map(ComparedEvent::from_sse).collect();
        // Error events are re-shaped like error bodies: compare by message.
        let mut plain_r = recorded.clone();
        let mut plain_p = replayed.clone();
        for n in 0..recorded.len().min(replayed.len()) {
            if is_error_event(&recorded[n]) && is_error_event(&replayed[n]) {
                let (want, have) =
                    (error_message(&recorded[n].data).unwrap_or_default(), error_message(&replayed[n].data));
                if !have.as_deref().is_some_and(|h| h.contains(&want)) {
                    out.push(Difference::new(
                        format!("response.events[{n}].data.error.message"),
                        Some(json!(want)),
                        have.map(Value::String),
                    ));
                }
                plain_r[n] = ComparedEvent { event: None, data: Value::Null };
                plain_p[n] = ComparedEvent { event: None, data: Value::Null };
            }
        }
        let mut ev = Vec::new();
        events_diff(&plain_r, &plain_p, &mut ev);
        out.extend(ev.into_iter().map(|mut d| {
            d.path = format!("response.{}", d.path);
            d
        }));
        return out;
    }
    let parsed = if expected.body.json.is_none() { expected.body.as_json() } else { None };
    match (expected.body.json.as_ref().or(parsed.as_ref()), got_json) {
        (Some(e), Some(g)) => response_json_diff(e, &g, "response.body", &mut out),
        (None, _) if expected.body.is_empty() && got.body.is_empty() => {}
        _ => {
            let e = String::from_utf8_lossy(&expected.body.to_bytes().unwrap_or_default()).into_owned();
            let g = String::from_utf8_lossy(&got.body).into_owned();
            out.extend(text_diff("response.body", &e, &g));
        }
    }
    out
}

// ------------------------------------------------------------------ engine

async fn send(http: &reqwest::Client, base: &str, r: &Request) -> anyhow::Result<ClientResponse> {
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).map_err(|_| anyhow!("bad method `{}`", r.method))?;
    let mut rb = http.request(method, format!("{base}{}", r.url));
    for (k, vs) in &r.headers {
        // Framing is reqwest's business; a recorded content-length is stale.
        if matches!(
            k.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "te" | "upgrade"
        ) {
            continue;
        }
        for v in vs.iter() {
            rb = rb.header(k.as_str(), v);
        }
    }
    let body = r.body.to_bytes()?;
    let resp = rb
        .body(body)
        .send()
        .await
        .map_err(|e| anyhow!("{} {}: request to the gateway failed: {e}", r.method, r.url))?;
    let status = resp.status().as_u16();
    let mut headers = Headers::new();
    for (k, v) in resp.headers() {
        push_header(&mut headers, k.as_str(), String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let body = resp.bytes().await.map_err(|e| anyhow!("{} {}: response body broke: {e}", r.method, r.url))?;
    Ok(ClientResponse { status, headers, body: body.to_vec() })
}

fn label(i: &Interaction) -> String {
    format!("{} {} ({})", i.request.method, i.request.path(), i.api())
}

/// Replays one cassette; `source` names it in the report.
pub async fn replay_cassette(cassette: &Cassette, source: &str, opts: &ReplayOptions) -> ReplayReport {
    let started = Instant::now();
    let mut report = ReplayReport {
        source: source.to_string(),
        verdict: ReplayVerdict::Passed,
        reason: None,
        interactions: cassette
            .interactions
            .iter()
            .enumerate()
            .map(|(index, i)| InteractionReport {
                index,
                label: label(i),
                skipped: None,
                findings: Vec::new(),
                warnings: Vec::new(),
            })
            .collect(),
        extra_requests: Vec::new(),
        duration_ms: 0,
        updated: None,
    };
    if let Err(reason) = run(cassette, opts, &mut report).await {
        report.verdict = ReplayVerdict::Failed;
        report.reason = Some(format!("{reason:#}"));
    }
    report.duration_ms = started.elapsed().as_millis();
    report
}

/// The deployments the generated config needs (with their client-facing
/// model names) and the interactions that will be replayed.
struct Plan {
    targets: Vec<Target>,
    names: Vec<String>,
    planned: Vec<Planned>,
}

/// Plans every interaction; skipped ones get their reason in `report`.
fn plan(cassette: &Cassette, report: &mut ReplayReport) -> Plan {
    let mut targets: Vec<Target> = Vec::new();
    let mut target_ids: HashMap<Target, usize> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut planned: Vec<Planned> = Vec::new();
    for (index, i) in cassette.interactions.iter().enumerate() {
        let (t, mode, stream) = match classify(i) {
            Ok(x) => x,
            Err(Skipped { reason }) => {
                report.interactions[index].skipped = Some(reason);
                continue;
            }
        };
        let id = match target_ids.get(&t) {
            Some(id) => *id,
            None => {
                let mut name = t.name_hint.clone();
                let mut n = 2;
                while names.contains(&name) {
                    name = format!("{}#{n}", t.name_hint);
                    n += 1;
                }
                names.push(name);
                targets.push(t.clone());
                target_ids.insert(t.clone(), targets.len() - 1);
                targets.len() - 1
            }
        };
        let client = match i.client.as_ref().and_then(|c| c.request.clone()) {
            Some(r) => r,
            None => derive_client_request(i, &targets[id], mode, stream, &names[id]),
        };
        let expected = match i.client.as_ref().and_then(|c| c.response.clone()) {
            Some(r) => r,
            None => derive_expected(i),
        };
        planned.push(Planned { index, target: id, mode, client, expected });
    }
    Plan { targets, names, planned }
}

async fn run(cassette: &Cassette, opts: &ReplayOptions, report: &mut ReplayReport) -> anyhow::Result<()> {
    let Plan { targets, names, planned } = plan(cassette, report);
    if planned.is_empty() {
        if let Some(p) = &opts.progress {
            p.inc(cassette.interactions.len() as u64);
        }
        let mut reasons: Vec<String> = report.interactions.iter().filter_map(|i| i.skipped.clone()).collect();
        reasons.dedup();
        report.verdict = ReplayVerdict::NotReplayable;
        report.reason =
            Some(if reasons.is_empty() { "the cassette has no interactions".into() } else { reasons.join("; ") });
        return Ok(());
    }
    if let Some(p) = &opts.progress {
        p.inc((cassette.interactions.len() - planned.len()) as u64);
    }

    // Serve: one mock per kind.
    let mut mocks: BTreeMap<MockKind, MockProvider> = BTreeMap::new();
    for t in &targets {
        if mocks.contains_key(&t.mock) {
            continue;
        }
        let options = MockOptions { strict: false, beta_allowlist: None };
        let mock = MockProvider::start(t.mock, &format!("replay-{}", t.mock), options)
            .await
            .map_err(|e| anyhow!("mock provider did not start: {e}"))?;
        mocks.insert(t.mock, mock);
    }

    // The gateway.
    let model_list = targets.iter().zip(&names).map(|(t, name)| deployment(t, name, &mocks[&t.mock].url())).collect();
    let config = Config {
        model_list,
        router_settings: RouterSettings { num_retries: Some(0), ..RouterSettings::default() },
        ..Config::default()
    };
    let setup = contract_setup(&config, &mocks);
    let gut = GatewayUnderTest::in_process(config, opts.bugs).await?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(opts.timeout)
        .build()
        .map_err(|e| anyhow!("http client: {e}"))?;
    let base = gut.base_url().to_string();

    // Drive, window by window. Before each window its recorded responses are
    // mounted in recording order (each answering once), then the catch-all.
    // A mock scans its stubs on every request, so holding one window rather
    // than the whole cassette keeps long replays linear. In order (no
    // concurrency), the journal entries each call caused are known.
    let mut responses: Vec<Option<anyhow::Result<ClientResponse>>> = (0..planned.len()).map(|_| None).collect();
    // Per mock: journal entries [from, to) were caused by these planned calls.
    let mut caused_by: Causes = HashMap::new();
    for (w, window) in planned.chunks(WINDOW).enumerate() {
        let first = w * WINDOW;
        if w > 0 {
            for m in mocks.values() {
                m.reset().await;
            }
        }
        for p in window {
            let i = &cassette.interactions[p.index];
            let stub = stub_for(i, Some(1)).with_context(|| format!("interactions[{}]", p.index))?;
            let mock = &mocks[&targets[p.target].mock];
            mock.mount(stub).await.with_context(|| format!("interactions[{}]", p.index))?;
        }
        for m in mocks.values() {
            m.mount(no_match_stub()).await?;
        }
        if opts.concurrency <= 1 {
            for (k, p) in window.iter().enumerate() {
                let n = first + k;
                let kind = targets[p.target].mock;
                let before = mocks[&kind].request_count();
                responses[n] = Some(send(&http, &base, &p.client).await);
                let after = mocks[&kind].request_count();
                caused_by.entry(kind).or_default().push((before, after, n..n + 1));
                if let Some(pb) = &opts.progress {
                    pb.inc(1);
                }
            }
            continue;
        }
        let before: Vec<(MockKind, usize)> = mocks.iter().map(|(k, m)| (*k, m.request_count())).collect();
        // Owned copies per task: the requests run on the runtime's threads.
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(opts.concurrency));
        let mut set = tokio::task::JoinSet::new();
        for (k, p) in window.iter().enumerate() {
            let (http, base, req, sem, pb) =
                (http.clone(), base.clone(), p.client.clone(), sem.clone(), opts.progress.clone());
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let r = send(&http, &base, &req).await;
                if let Some(pb) = pb {
                    pb.inc(1);
                }
                (first + k, r)
            });
        }
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((n, r)) => responses[n] = Some(r),
                Err(e) => return Err(anyhow!("a replay request task failed: {e}")),
            }
        }
        for (kind, b) in before {
            let after = mocks[&kind].request_count();
            caused_by.entry(kind).or_default().push((b, after, first..first + window.len()));
        }
    }
    drop(gut);
    let answered: BTreeMap<MockKind, Vec<(RecordedRequest, crate::mocks::MockAnswer)>> =
        mocks.iter().map(|(k, m)| (*k, m.exchanges())).collect();

    // Match what the gateway sent upstream with the recording.
    let complete = cassette.metadata.headers_complete;
    let journals: BTreeMap<MockKind, Vec<RecordedRequest>> = mocks.iter().map(|(k, m)| (*k, m.journal())).collect();
    let observed_for = match_journals(cassette, (&targets, &planned), &journals, caused_by, report);
    // Where each matched entry sits in its mock's journal (and so in
    // `answered`): the upstream call the contract checks attribute to it.
    let position: HashMap<*const RecordedRequest, (MockKind, usize)> = journals
        .iter()
        .flat_map(|(kind, journal)| {
            journal.iter().enumerate().map(move |(i, r)| (r as *const RecordedRequest, (*kind, i)))
        })
        .collect();

    // Per interaction: headers of matched requests, unused ones, responses.
    // Only with --update: a copy of the cassette to change.
    let mut updated = opts.update.then(|| cassette.clone());
    let mut changed = false;
    for (n, p) in planned.iter().enumerate() {
        let rec = &cassette.interactions[p.index];
        let rep = &mut report.interactions[p.index];
        match observed_for[n] {
            Some(entry) => {
                if rep.findings.is_empty() {
                    let mut d = Vec::new();
                    header_diff(&rec.request.headers, &semantic_headers(entry), complete, &mut d);
                    if !d.is_empty() {
                        rep.findings.push(Finding {
                            what: "request headers differ from the recording:".into(),
                            differences: d,
                        });
                    }
                }
                if let Some(u) = updated.as_mut().filter(|_| !rep.findings.is_empty()) {
                    let slot = &mut u.interactions[p.index];
                    slot.client.get_or_insert_with(ClientSide::default).request.get_or_insert_with(|| p.client.clone());
                    slot.request = merge_observed(&rec.request, &observed_request(entry));
                    changed = true;
                }
            }
            None => {
                let what = "unused: the gateway never sent this recorded request upstream".to_string();
                if opts.allow_unused {
                    rep.warnings.push(what);
                } else {
                    rep.findings.push(Finding { what, differences: Vec::new() });
                }
            }
        }
        match responses[n].take() {
            // The request found no recorded answer and got the catch-all:
            // the request's finding says why; comparing (or keeping) that
            // response would only add noise.
            Some(Ok(got)) if got.is_no_match() => {}
            Some(Ok(got)) => {
                let call = observed_for[n].and_then(|entry| position.get(&(entry as *const RecordedRequest)).copied());
                let x = exchange(p, &got, call, opts.concurrency > 1, &answered);
                for v in crate::contracts::check(&x, &setup) {
                    rep.findings.push(Finding {
                        what: format!("contract {} broken: {}", v.contract, v.detail),
                        differences: Vec::new(),
                    });
                }
                let d = response_diff(&p.expected, &got);
                if !d.is_empty() {
                    rep.findings.push(Finding {
                        what: format!("the client's response differs from the recording ({:?} mode):", p.mode),
                        differences: d,
                    });
                    if let Some(u) = updated.as_mut() {
                        let slot = &mut u.interactions[p.index];
                        slot.client.get_or_insert_with(ClientSide::default).response = Some(got.to_response());
                        changed = true;
                    }
                }
            }
            Some(Err(e)) => rep.findings.push(Finding { what: format!("{e:#}"), differences: Vec::new() }),
            None => rep.findings.push(Finding { what: "no response (internal error)".into(), differences: Vec::new() }),
        }
    }
    let failed = report.interactions.iter().any(|i| !i.findings.is_empty()) || !report.extra_requests.is_empty();
    report.verdict = if failed { ReplayVerdict::Failed } else { ReplayVerdict::Passed };
    if let Some(mut u) = updated.filter(|_| changed) {
        u.metadata.updated_at = Some(super::cassette::now_rfc3339());
        redact::redact_cassette(&mut u);
        report.updated = Some(u);
    }
    Ok(())
}

/// What the contract checks know of the generated config.
fn contract_setup(config: &Config, mocks: &BTreeMap<MockKind, MockProvider>) -> crate::contracts::Setup {
    let model_list: Vec<Value> = config
        .model_list
        .iter()
        .map(|d| {
            let p = &d.litellm_params;
            json!({"model_name": d.model_name, "litellm_params": {
                "model": p.model, "api_base": p.api_base.clone().or_else(|| p.aws_bedrock_runtime_endpoint.clone()),
                "api_key": p.api_key, "aws_access_key_id": p.aws_access_key_id,
                "aws_secret_access_key": p.aws_secret_access_key,
            }})
        })
        .collect();
    let urls = mocks.values().map(|m| (m.name().to_string(), m.url())).collect();
    crate::contracts::Setup::from_config(&json!({"model_list": model_list}), &urls, &BTreeMap::new())
}

/// A planned call as the contract checks see it, with the upstream request
/// the journals matched to it. The match is by content: replayed one at a
/// time, that request's answer is what the client got; concurrently, two
/// equal requests may have been answered the other way round, so the call
/// is only shared evidence (no fidelity checks on it).
fn exchange(
    p: &Planned,
    got: &ClientResponse,
    call: Option<(MockKind, usize)>,
    concurrent: bool,
    answered: &BTreeMap<MockKind, Vec<(RecordedRequest, crate::mocks::MockAnswer)>>,
) -> crate::contracts::Exchange {
    use crate::contracts::{Attribution, ClientRequest, ClientResponse as Got, Exchange, UpstreamCall};
    let pairs = |h: &Headers| -> Vec<(String, String)> {
        h.iter().flat_map(|(k, v)| v.iter().map(move |x| (k.to_ascii_lowercase(), x.to_string()))).collect()
    };
    let upstream = call
        .and_then(|(kind, i)| answered.get(&kind)?.get(i).map(|a| (kind, a)))
        .map(|(kind, (request, answer))| UpstreamCall {
            provider: format!("replay-{kind}"),
            kind,
            request: request.clone(),
            answer: answer.clone(),
        })
        .into_iter()
        .collect();
    Exchange {
        request: ClientRequest {
            method: p.client.method.clone(),
            path: p.client.url.clone(),
            headers: pairs(&p.client.headers),
            body: p.client.body.to_bytes().unwrap_or_default(),
        },
        response: Got {
            status: got.status,
            headers: pairs(&got.headers),
            body: got.body.clone(),
            complete: true,
            elapsed: None,
        },
        upstream,
        attribution: if concurrent { Attribution::Shared } else { Attribution::Exact },
        egress: Vec::new(),
    }
}

/// Journal entries [from, to) of a mock, and the planned calls in flight
/// while they came.
type Causes = HashMap<MockKind, Vec<(usize, usize, std::ops::Range<usize>)>>;

/// Pairs every request the mocks received with a recorded one: exact
/// matches (after redaction and the noise rules) by key, in recording order;
/// the rest with the closest unused recording among the calls in flight,
/// as a finding with the differences, or as an extra request. Returns the
/// journal entry paired with each planned interaction.
fn match_journals<'j>(
    cassette: &Cassette,
    plan: (&[Target], &[Planned]),
    journals: &'j BTreeMap<MockKind, Vec<RecordedRequest>>,
    mut caused_by: Causes,
    report: &mut ReplayReport,
) -> Vec<Option<&'j RecordedRequest>> {
    let (targets, planned) = plan;
    let complete = cassette.metadata.headers_complete;
    let mut observed_for: Vec<Option<&RecordedRequest>> = vec![None; planned.len()];
    for (kind, journal) in journals {
        let mine: Vec<usize> = (0..planned.len()).filter(|n| targets[planned[*n].target].mock == *kind).collect();
        let mut by_key: HashMap<String, VecDeque<usize>> = HashMap::new();
        for n in &mine {
            by_key.entry(recorded_key(&cassette.interactions[planned[*n].index].request)).or_default().push_back(*n);
        }
        let ranges = caused_by.remove(kind).unwrap_or_default();
        let cause = |e: usize| ranges.iter().find(|(b, a, _)| *b <= e && e < *a).map(|(_, _, r)| r.clone());
        let mut unmatched = Vec::new();
        for (e, entry) in journal.iter().enumerate() {
            match by_key.get_mut(&journal_key(entry)).and_then(VecDeque::pop_front) {
                Some(n) => observed_for[n] = Some(entry),
                None => unmatched.push((e, entry)),
            }
        }
        let rec_for = |n: usize| &cassette.interactions[planned[n].index].request;
        for (e, entry) in unmatched {
            let obs = observed_request(entry);
            // The calls in flight when it came: one in order, a window with
            // concurrency. It is paired with the closest unused recording
            // among them (searching a window, not the whole cassette).
            let candidates: Vec<usize> = match cause(e) {
                Some(r) => r.filter(|n| targets[planned[*n].target].mock == *kind).collect(),
                None => mine.clone(),
            };
            let closest = |ns: &mut dyn Iterator<Item = usize>| {
                ns.map(|n| (request_diff(rec_for(n), &obs, complete), n)).min_by_key(|(d, _)| d.len())
            };
            let free = closest(&mut candidates.iter().copied().filter(|n| observed_for[*n].is_none()));
            match free {
                Some((differences, n)) => {
                    let what = format!(
                        "no recorded interaction matches {} {}; it differs from this one:",
                        obs.method,
                        obs.path()
                    );
                    report.interactions[planned[n].index].findings.push(Finding { what, differences });
                    observed_for[n] = Some(entry);
                }
                None => {
                    let (what, differences) = match closest(&mut candidates.iter().copied()) {
                        Some((differences, n)) => (
                            format!(
                                "{} {} (sent while replaying interaction #{}) matches no recorded interaction; against #{}:",
                                obs.method,
                                obs.path(),
                                planned[n].index,
                                planned[n].index
                            ),
                            differences,
                        ),
                        None => (format!("{} {} matches no recorded interaction", obs.method, obs.path()), Vec::new()),
                    };
                    report.extra_requests.push(Finding { what, differences });
                }
            }
        }
    }

    observed_for
}

/// The recorded request with what the gateway sends now: method, path and
/// query, body, and the compared headers. Scheme and host stay as recorded.
fn merge_observed(recorded: &Request, observed: &Request) -> Request {
    let (host, _, _) = split_url(&recorded.url);
    let scheme = recorded.url.split_once("://").map(|(s, _)| s).unwrap_or("https");
    let url = if host.is_empty() { observed.url.clone() } else { format!("{scheme}://{host}{}", observed.url) };
    let mut headers = recorded.headers.clone();
    for name in super::diff::SEMANTIC_HEADERS {
        match observed.headers.get(*name) {
            Some(v) => {
                headers.insert(name.to_string(), v.clone());
            }
            None => {
                headers.remove(*name);
            }
        }
    }
    Request { method: observed.method.clone(), url, headers, body: observed.body.clone() }
}

fn deployment(t: &Target, name: &str, mock_url: &str) -> ModelDeployment {
    let base = format!("{mock_url}{}", t.prefix);
    let mut p = LitellmParams { model: t.litellm_model.clone(), ..LitellmParams::default() };
    match t.mock {
        MockKind::Bedrock => {
            p.aws_bedrock_runtime_endpoint = Some(base);
            p.aws_access_key_id = Some(AWS_KEY_ID.into());
            p.aws_secret_access_key = Some(AWS_SECRET.into());
            p.aws_region_name = t.region.clone();
        }
        _ => {
            p.api_base = Some(base);
            p.api_key = Some(UPSTREAM_KEY.into());
            p.api_version = t.api_version.clone();
            p.vertex_project = t.vertex_project.clone();
            p.vertex_location = t.vertex_location.clone();
        }
    }
    ModelDeployment { model_name: name.to_string(), litellm_params: p, ..ModelDeployment::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interaction(url: &str, body: Value) -> Interaction {
        Interaction {
            provider: None,
            request: Request {
                method: "POST".into(),
                url: url.into(),
                headers: Headers::new(),
                body: Body::json(body),
            },
            response: Response { status: 200, headers: Headers::new(), body: Body::json(json!({})) },
            elapsed_ms: None,
            client: None,
        }
    }

    #[test]
    fn classification_names_why_not() {
        let ok =
            classify(&interaction("https://api.groq.com/openai/v1/chat/completions", json!({"model": "m"}))).unwrap();
        assert_eq!((ok.0.prefix.as_str(), ok.1), ("/openai/v1", Mode::Chat));
        let e = classify(&interaction("https://api.openai.com/v1/responses", json!({"model": "m"})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Responses API"), "{e}");
        let e = classify(&interaction(
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.titan-embed-text-v2%3A0/invoke",
            json!({"inputText": "x"}),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("non-Anthropic"), "{e}");
        let b = classify(&interaction(
            "https://bedrock-runtime.eu-west-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream",
            json!({"messages": [], "anthropic_version": "bedrock-2023-05-31"}),
        ))
        .unwrap();
        assert_eq!(b.0.region.as_deref(), Some("eu-west-1"));
        assert!(b.2, "the stream comes from the operation");
    }

    #[test]
    fn match_bodies_leave_out_secrets_and_defaults() {
        let m = match_body(
            &json!({"stream": false, "user": "[REDACTED:openai-key]", "messages": [{"content": "hi"}], "tags": ["a", "[REDACTED]"]}),
        );
        assert_eq!(m, Some(json!({"messages": [{"content": "hi"}]})));
    }

    #[test]
    fn request_keys_follow_the_noise_rules() {
        let a = Request {
            method: "POST".into(),
            url: "https://api.anthropic.com/v1/messages?beta=true".into(),
            headers: Headers::new(),
            body: Body::json(json!({"model": "m", "stream": false, "max_tokens": 1.0})),
        };
        let b = Request {
            url: "/v1/messages".into(),
            body: Body::json(json!({"max_tokens": 1, "model": "m"})),
            ..a.clone()
        };
        assert_eq!(recorded_key(&a), recorded_key(&b));
        let c = Request { body: Body::json(json!({"max_tokens": 1, "model": "m", "x": null})), ..b.clone() };
        assert_ne!(recorded_key(&a), recorded_key(&c));
        assert_eq!(request_diff(&a, &c, false)[0].path, "body.x");
        // A live request carrying a secret matches its redacted recording.
        let secret = format!("sk-proj-{}", "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ");
        let live = serde_json::to_vec(&json!({"model": "m", "max_tokens": 1, "user": secret})).unwrap();
        let live = RecordedRequest::new("POST", "/v1/messages", Some("beta=true"), Vec::new(), live);
        let rec =
            Request { body: Body::json(json!({"model": "m", "max_tokens": 1, "user": "[REDACTED:openai-key]"})), ..b };
        assert_eq!(journal_key(&live), recorded_key(&rec));
    }
}
