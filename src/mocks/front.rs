//! The front server the gateway talks to. Per request it:
//! 1. records the request in the journal;
//! 2. if the strict profile rejects it, forwards it to wiremock tagged
//!    `strict`, where the strict-profile `Mock` sends the provider's error;
//! 3. otherwise picks the first stub that matches and has uses left, and
//!    serves it itself: buffered answers (rendered once, at mount time),
//!    streams, resets and malformed bodies;
//! 4. with no stub, serves the default stream for streaming requests, or
//!    forwards to wiremock's default bodies.
//!
//! Stubs used to be wiremock `Mock`s too, reached by forwarding; that hop
//! cost about half of the mock's CPU time per request and kept replay under
//! its 5,000 interactions/s target (BENCHMARKS.md), so the front serves the
//! answers it already holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::answer::{AnswerEnd, MockAnswer};
use super::gates::Gates;
use super::http1::{Conn, ReadError, WireRequest};
use super::ids::IdGen;
use super::inner::{STRICT_TARGET, TARGET_HEADER};
use super::journal::RecordedRequest;
use super::route::Route;
use super::stream::{self, Ended, StreamPlan};
use super::stub::{Fault, Stub, StubMatch, StubResponse};
use super::wire::Buffered;
use super::{defaults, errors, strict, MockKind, MockOptions};

struct Mounted {
    matcher: StubMatch,
    /// Shared, so taking a stub for a request does not copy its body.
    response: Arc<StubResponse>,
    /// The answer of a buffered stub, rendered when it was mounted (so ids
    /// in it are drawn in mount order, as a recorded body's would be).
    buffered: Option<Buffered>,
    remaining: Option<u64>,
}

/// State shared by the front, the wiremock responders and the handle.
pub(crate) struct Shared {
    pub kind: MockKind,
    pub name: String,
    pub opts: MockOptions,
    pub ids: IdGen,
    pub gates: Gates,
    journal: Mutex<Vec<RecordedRequest>>,
    /// `answers[i]` is what the front sent for `journal[i]`.
    answers: Mutex<Vec<MockAnswer>>,
    stubs: Mutex<Vec<Mounted>>,
    /// Responses deleted with `DELETE /v1/responses/{id}`.
    deleted: Mutex<std::collections::BTreeSet<String>>,
    inner_uri: String,
    client: reqwest::Client,
}

impl Shared {
    pub(super) fn new(
        kind: MockKind,
        name: &str,
        opts: MockOptions,
        inner_uri: String,
        client: reqwest::Client,
    ) -> Shared {
        Shared {
            kind,
            name: name.to_string(),
            opts,
            ids: IdGen::new(&format!("{kind}/{name}")),
            gates: Gates::new(),
            journal: Mutex::new(Vec::new()),
            answers: Mutex::new(Vec::new()),
            stubs: Mutex::new(Vec::new()),
            deleted: Mutex::new(std::collections::BTreeSet::new()),
            inner_uri,
            client,
        }
    }

    pub(crate) fn push_stub(&self, stub: Stub) {
        let Stub { matcher, response, times: remaining } = stub;
        let buffered = response.terminal().buffered(self.kind, &self.ids);
        self.stubs.lock().push(Mounted { matcher, response: Arc::new(response), buffered, remaining });
    }

    pub(crate) fn clear_stubs(&self) {
        self.stubs.lock().clear();
    }

    pub(super) fn journal(&self) -> Vec<RecordedRequest> {
        self.journal.lock().clone()
    }

    /// Every request with the answer it got so far, in arrival order.
    pub(super) fn exchanges(&self) -> Vec<(RecordedRequest, MockAnswer)> {
        // Lock order: journal, then answers (as in `record`).
        let journal = self.journal.lock();
        let answers = self.answers.lock();
        journal
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), answers.get(i).cloned().unwrap_or_else(MockAnswer::pending)))
            .collect()
    }

    pub(crate) fn exchange_at(&self, i: usize) -> Option<(RecordedRequest, MockAnswer)> {
        let journal = self.journal.lock();
        let answers = self.answers.lock();
        Some((journal.get(i)?.clone(), answers.get(i).cloned().unwrap_or_else(MockAnswer::pending)))
    }

    pub(super) fn clear_journal(&self) {
        let mut journal = self.journal.lock();
        journal.clear();
        self.answers.lock().clear();
        self.deleted.lock().clear();
    }

    /// Appends a request and its (pending) answer; returns its index.
    fn record(&self, req: RecordedRequest) -> usize {
        let mut journal = self.journal.lock();
        let mut answers = self.answers.lock();
        journal.push(req);
        answers.resize(journal.len() - 1, MockAnswer::pending());
        answers.push(MockAnswer::arrived());
        journal.len() - 1
    }

    /// Updates the answer to request `index` (a no-op after `clear_journal`).
    pub(crate) fn answer(&self, index: usize, f: impl FnOnce(&mut MockAnswer)) {
        if let Some(a) = self.answers.lock().get_mut(index) {
            f(a);
        }
    }

    pub(super) fn request_count(&self) -> usize {
        self.journal.lock().len()
    }

    /// The strict profile's verdict, without spending ids of the real
    /// sequence (the front only needs to know whether to forward).
    pub(crate) fn strict_rejection(&self, req: &RecordedRequest) -> Option<Buffered> {
        self.rejection(req, &IdGen::new("probe"))
    }

    /// The strict profile's verdict: the stateless checks, then the ones
    /// that depend on what this provider answered before.
    pub(crate) fn rejection(&self, req: &RecordedRequest, ids: &IdGen) -> Option<Buffered> {
        strict::check(self.kind, &self.opts, req, ids).or_else(|| self.unknown_previous_response(req))
    }

    /// OpenAI's Responses API resolves `previous_response_id` against the
    /// Responses it stored for this account (`store` defaults to true); any
    /// other id is a 400 `previous_response_not_found`. A gateway that sends
    /// a follow-up to another deployment, or forwards an id it made up
    /// itself, meets this answer, as it would in production.
    fn unknown_previous_response(&self, req: &RecordedRequest) -> Option<Buffered> {
        if !self.opts.strict
            || !matches!(self.kind, MockKind::Openai | MockKind::Azure)
            || Route::classify(self.kind, req) != Route::Responses
        {
            return None;
        }
        let wanted = req.json_field("previous_response_id")?.as_str()?;
        self.stored_response(wanted).is_none().then(|| {
            errors::openai(
                400,
                &format!("Previous response with id '{wanted}' not found."),
                "invalid_request_error",
                Some("previous_response_id"),
                Some("previous_response_not_found"),
            )
        })
    }

    /// A Response this provider stored (`store` not false, answered 2xx),
    /// in its latest state.
    fn stored_response(&self, id: &str) -> Option<serde_json::Value> {
        if self.deleted.lock().contains(id) {
            return None;
        }
        self.exchanges().into_iter().rev().find_map(|(r, a)| {
            let stored = Route::classify(self.kind, &r) == Route::Responses
                && r.method == "POST"
                && r.json_field("store") != Some(&serde_json::Value::Bool(false))
                && a.status.is_some_and(|s| (200..300).contains(&s));
            if !stored {
                return None;
            }
            carried_responses(&a.body).into_iter().rev().find(|v| v.get("id").and_then(|i| i.as_str()) == Some(id))
        })
    }

    /// `GET /v1/responses/{id}` (Azure: `/openai/v1/responses/{id}`): the
    /// stored Response; `DELETE`: OpenAI's deletion object, after which the
    /// id is gone; either is OpenAI's 404 for an id it does not have.
    fn retrieved_response(&self, req: &RecordedRequest) -> Option<Buffered> {
        let delete = req.method == "DELETE";
        if !(req.method == "GET" || delete) || !matches!(self.kind, MockKind::Openai | MockKind::Azure) {
            return None;
        }
        let id = ["/v1/responses/", "/openai/v1/responses/", "/openai/responses/"]
            .iter()
            .find_map(|p| req.path.strip_prefix(p))
            .filter(|id| !id.is_empty() && !id.contains('/'))?;
        let id = super::journal::percent_decode(id);
        Some(match self.stored_response(&id) {
            Some(_) if delete => {
                self.deleted.lock().insert(id.clone());
                Buffered::json(200, &serde_json::json!({"id": id, "object": "response.deleted", "deleted": true}))
            }
            Some(v) => Buffered::json(200, &v),
            None => {
                errors::openai(404, &format!("Response with id '{id}' not found."), "invalid_request_error", None, None)
            }
        })
    }

    /// First matching stub with uses left; counts the use.
    fn take_stub(&self, req: &RecordedRequest) -> Option<(Arc<StubResponse>, Option<Buffered>)> {
        let mut stubs = self.stubs.lock();
        let m = stubs.iter_mut().find(|m| m.remaining != Some(0) && m.matcher.matches(req))?;
        if let Some(n) = m.remaining.as_mut() {
            *n -= 1;
        }
        Some((Arc::clone(&m.response), m.buffered.clone()))
    }
}

/// What to do with the connection for one request.
enum Action {
    Respond(Buffered),
    Forward(Target),
    Stream(StreamPlan),
    Reset,
}

/// Which wiremock `Mock` a forwarded request is meant for. The front
/// decides and tags the request, so wiremock never second-guesses it.
#[derive(Debug, Clone, Copy)]
enum Target {
    Strict,
    Default,
}

pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in this set, so aborting the accept task (when the
    // MockProvider is dropped) aborts them too, held streams included.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_conn(shared.clone(), stream));
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_conn(shared: Arc<Shared>, stream: TcpStream) {
    let mut conn = Conn::new(stream);
    loop {
        let wire = match conn.read_request().await {
            Ok(Some(w)) => w,
            Ok(None) | Err(ReadError::Io(_)) => return,
            Err(ReadError::Bad(reason)) => {
                let b = Buffered {
                    status: 400,
                    headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
                    body: format!("mock front: bad request: {reason}").into_bytes(),
                };
                let _ = conn.write_full(&b, false).await;
                return;
            }
        };
        let keep_alive = wire.keep_alive;
        let req = RecordedRequest::new(
            &wire.method,
            &wire.path,
            wire.query.as_deref(),
            wire.headers.clone(),
            wire.body.clone(),
        );
        let index = shared.record(req.clone());
        let written = match dispatch(&shared, &req).await {
            Action::Reset => {
                shared.answer(index, |a| a.end = AnswerEnd::Reset);
                conn.reset();
                return;
            }
            Action::Respond(b) => write_buffered(&shared, index, &mut conn, &b, keep_alive).await,
            Action::Forward(target) => {
                let b = forward(&shared, &wire, target).await;
                write_buffered(&shared, index, &mut conn, &b, keep_alive).await
            }
            Action::Stream(plan) => {
                stream::run(&mut conn, &plan, &shared.gates, &shared, index).await == Ended::Complete
            }
        };
        if !written || !keep_alive {
            return;
        }
    }
}

/// Writes a buffered answer, recorded before the first byte leaves so the
/// harness never sees a response whose answer is not in the journal yet.
async fn write_buffered(shared: &Shared, index: usize, conn: &mut Conn, b: &Buffered, keep_alive: bool) -> bool {
    shared.answer(index, |a| {
        a.status = Some(b.status);
        a.headers = b.headers.clone();
        a.body = b.body.clone();
        a.end = AnswerEnd::Complete;
    });
    let ok = conn.write_full(b, keep_alive).await.is_ok();
    if !ok {
        shared.answer(index, |a| a.end = AnswerEnd::PeerClosed);
    }
    ok
}

/// The Responses an answer carried, latest state last: a `Response` body,
/// or the `response` of each of a stream's lifecycle events (the terminal
/// one holds the whole output).
fn carried_responses(body: &[u8]) -> Vec<serde_json::Value> {
    let response_of = |v: serde_json::Value| {
        if v.get("object").and_then(|o| o.as_str()) == Some("response") {
            Some(v)
        } else {
            v.get("response").filter(|r| r.get("id").is_some()).cloned()
        }
    };
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        return response_of(v).into_iter().collect();
    }
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d.trim()).ok())
        .filter_map(response_of)
        .collect()
}

async fn dispatch(shared: &Shared, req: &RecordedRequest) -> Action {
    if shared.strict_rejection(req).is_some() {
        return Action::Forward(Target::Strict);
    }
    if let Some((response, buffered)) = shared.take_stub(req) {
        return resolve(shared, req, &response, buffered).await;
    }
    if let Some(b) = shared.retrieved_response(req) {
        return Action::Respond(b);
    }
    let route = Route::classify(shared.kind, req);
    if route.streams(req) {
        if let Some(plan) = defaults::stream(shared.kind, &shared.name, &shared.ids, req, &route) {
            return Action::Stream(plan);
        }
    }
    Action::Forward(Target::Default)
}

/// Serves a stub's response, sleeping through any `Latency` wrappers first.
async fn resolve(
    shared: &Shared,
    req: &RecordedRequest,
    response: &StubResponse,
    buffered: Option<Buffered>,
) -> Action {
    let mut current = response;
    loop {
        match current {
            StubResponse::Fault(Fault::Latency { ms, then }) => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                current = then;
            }
            StubResponse::Fault(Fault::Reset) => return Action::Reset,
            StubResponse::Fault(Fault::Malformed) => {
                return Action::Respond(defaults::malformed(shared.kind, &shared.name, &shared.ids, req))
            }
            StubResponse::Fault(Fault::Huge { bytes, status }) => {
                return Action::Stream(StreamPlan {
                    status: *status,
                    headers: vec![("content-type".into(), "application/json".into())],
                    frames: stream::huge_json(*bytes),
                    hold_before: None,
                    cut_after: None,
                })
            }
            StubResponse::Sse { status, events, hold_before, cut_after, headers } => {
                return Action::Stream(StreamPlan {
                    status: *status,
                    headers: merge(stream::sse_headers(), headers),
                    frames: stream::sse_frames(events),
                    hold_before: hold_before.clone(),
                    cut_after: *cut_after,
                })
            }
            StubResponse::EventStream { status, events, hold_before, cut_after, headers } => {
                return Action::Stream(StreamPlan {
                    status: *status,
                    headers: merge(stream::eventstream_headers(), headers),
                    frames: stream::eventstream_frames(events),
                    hold_before: hold_before.clone(),
                    cut_after: *cut_after,
                })
            }
            StubResponse::Json { .. }
            | StubResponse::Raw { .. }
            | StubResponse::Fault(Fault::RateLimited { .. } | Fault::Status { .. }) => {
                // Rendered at mount time; `None` cannot happen for these
                // variants, and a provider 500 is the honest answer if it does.
                return Action::Respond(buffered.unwrap_or_else(|| errors::status(shared.kind, 500, &shared.ids)));
            }
        }
    }
}

/// Default headers overridden (by lower-case name) with the stub's.
fn merge(mut base: Vec<(String, String)>, overrides: &BTreeMap<String, String>) -> Vec<(String, String)> {
    for (name, value) in overrides {
        let name = name.to_ascii_lowercase();
        base.retain(|(n, _)| *n != name);
        base.push((name, value.clone()));
    }
    base
}

/// Hop-by-hop headers, and ones reqwest sets itself.
fn skip_request_header(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
    ) || name.starts_with("proxy-")
        || name == TARGET_HEADER
}

/// Sends the request to wiremock and relays its answer.
async fn forward(shared: &Shared, wire: &WireRequest, target: Target) -> Buffered {
    let url = match &wire.query {
        Some(q) => format!("{}{}?{}", shared.inner_uri, wire.path, q),
        None => format!("{}{}", shared.inner_uri, wire.path),
    };
    let method = match reqwest::Method::from_bytes(wire.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => return bad_gateway(&format!("unsupported method `{}`", wire.method)),
    };
    let mut builder = shared.client.request(method, &url);
    for (name, value) in &wire.headers {
        if !skip_request_header(name) {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    match target {
        Target::Strict => builder = builder.header(TARGET_HEADER, STRICT_TARGET),
        Target::Default => {}
    }
    let resp = match builder.body(wire.body.clone()).send().await {
        Ok(r) => r,
        Err(e) => return bad_gateway(&format!("inner wiremock server unreachable: {e}")),
    };
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter(|(n, _)| {
            !matches!(n.as_str(), "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "date")
        })
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    match resp.bytes().await {
        Ok(body) => Buffered { status, headers, body: body.to_vec() },
        Err(e) => bad_gateway(&format!("reading the inner wiremock response: {e}")),
    }
}

/// The mock itself failed (never a provider behaviour): a plain-text 502.
fn bad_gateway(reason: &str) -> Buffered {
    Buffered {
        status: 502,
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
        body: format!("mock front: {reason}").into_bytes(),
    }
}
