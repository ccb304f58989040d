//! The bench's upstream: a minimal, fast OpenAI-compatible provider. Every
//! `POST …/chat/completions` (any path prefix, so deployments can differ by
//! `api_base`) reads its body and answers the same fixed chat completion,
//! or with `"stream": true` in the body, the same answer as
//! `STREAM_CHUNKS` chunks spaced [`Upstream::chunk_gap`] apart, then
//! `[DONE]`. Not the harness mock (`src/mocks`), which validates and records
//! every request for the contracts: here the upstream must cost as little
//! as possible, so what is measured is the gateway.
//!
//! With [`Upstream::faults`] on (`bench-upstream --faults`, for `postmortem
//! soak`) it obeys a fault marker in the body ([`super::faults::Fault`]):
//! an error status, a connection closed without an answer, an answer cut
//! off, malformed JSON. It counts the calls of each kind; `GET /stats`
//! returns the counts, so the soak can tell whether a gateway retried
//! (or dropped) calls.
//!
//! Served with hyper directly, not axum: a closed connection without an
//! answer needs the service to fail (hyper then drops the connection
//! without writing a status line), which axum's infallible router cannot.
//! TCP_NODELAY is set on every accepted connection, as gateways set it on
//! their upstream side, so neither end waits on Nagle. It binds 127.0.0.1
//! only.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::net::TcpListener;

use super::faults::Fault;

/// The fixed answer: a realistic non-streaming completion with usage, so a
/// gateway's cost lookup finds `gpt-4o` and prices it.
pub(crate) const CHAT_COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1735689600,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"The build is green: 214 tests passed, 0 failed.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":57,"completion_tokens":14,"total_tokens":71,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp_bench"}"#;

/// Content chunks of a streamed answer (a role chunk, these, a finish
/// chunk with usage, `[DONE]`).
pub(crate) const STREAM_CHUNKS: usize = 16;

/// Content chunks a cut stream sends before it breaks off.
const CUT_AFTER_CHUNKS: usize = 3;

/// How the upstream answers.
#[derive(Debug, Clone, Copy)]
pub struct Upstream {
    /// The pause before each content chunk of a stream: what a model's
    /// token rate looks like to a gateway.
    pub chunk_gap: Duration,
    /// Obey fault markers in request bodies (off for `bench`: its requests
    /// carry none, and scanning for them would be work it does not need).
    pub faults: bool,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream { chunk_gap: Duration::from_millis(2), faults: false }
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

/// Calls answered, by fault kind (in [`Fault::ALL`] order).
#[derive(Default)]
struct Counts([AtomicU64; Fault::ALL.len()]);

/// A service error: hyper closes the connection without an answer.
#[derive(Debug)]
struct CloseWithoutAnswer;

impl std::fmt::Display for CloseWithoutAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault injected: connection closed before an answer")
    }
}

impl std::error::Error for CloseWithoutAnswer {}

fn chunk(delta: &str, finish: Option<&str>, usage: bool) -> Bytes {
    let finish = finish.map_or("null".to_string(), |f| format!("\"{f}\""));
    let usage = if usage { r#","usage":{"prompt_tokens":57,"completion_tokens":16,"total_tokens":73}"# } else { "" };
    Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1735689600,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]{usage}}}\n\n"
    ))
}

fn full(status: StatusCode, media: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).map_err(|e: Infallible| match e {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static(media));
    r
}

fn error(status: StatusCode, message: &str, ty: &str, code: &str) -> Response<Body> {
    let body =
        format!(r#"{{"error":{{"message":"fault injected: {message}","type":"{ty}","param":null,"code":{code}}}}}"#);
    full(status, "application/json", body)
}

/// The streamed answer; with `cut`, it breaks off after a few chunks with
/// a body error (hyper then ends the connection without the chunked
/// terminator).
fn stream(gap: Duration, cut: bool) -> Response<Body> {
    let events = async_stream::stream! {
        yield Ok::<_, std::io::Error>(Frame::data(chunk(r#"{"role":"assistant","content":""}"#, None, false)));
        for i in 0..STREAM_CHUNKS {
            if cut && i == CUT_AFTER_CHUNKS {
                yield Err(std::io::Error::other("fault injected: stream cut"));
                return;
            }
            tokio::time::sleep(gap).await;
            yield Ok(Frame::data(chunk(&format!("{{\"content\":\"tok{i} \"}}"), None, false)));
        }
        yield Ok(Frame::data(chunk("{}", Some("stop"), true)));
        yield Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n")));
    };
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(events)));
    r.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream"));
    r
}

/// A buffered answer that declares its whole length and breaks off halfway.
fn cut_buffered() -> Response<Body> {
    let half = Bytes::from_static(&CHAT_COMPLETION.as_bytes()[..CHAT_COMPLETION.len() / 2]);
    let frames =
        futures::stream::iter([Ok(Frame::data(half)), Err(std::io::Error::other("fault injected: answer cut"))]);
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    r.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r.headers_mut().insert(CONTENT_LENGTH, http::HeaderValue::from(CHAT_COMPLETION.len()));
    r
}

async fn handle(
    up: Upstream,
    counts: Arc<Counts>,
    req: Request<Incoming>,
) -> Result<Response<Body>, CloseWithoutAnswer> {
    if req.method() == Method::GET && req.uri().path() == "/stats" {
        let calls: serde_json::Map<String, serde_json::Value> = Fault::ALL
            .iter()
            .map(|f| (f.name().to_string(), counts.0[f.index()].load(Ordering::Relaxed).into()))
            .collect();
        return Ok(full(StatusCode::OK, "application/json", serde_json::json!({ "calls": calls }).to_string()));
    }
    if req.method() != Method::POST || !req.uri().path().ends_with("/chat/completions") {
        return Ok(full(StatusCode::NOT_FOUND, "text/plain", "not found"));
    }
    // The body is read (a real upstream must read it) and only scanned for
    // the stream flag and a fault marker, not parsed.
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Err(CloseWithoutAnswer);
    };
    let has = |pat: &[u8]| body.windows(pat.len()).any(|w| w == pat);
    let streamed = has(b"\"stream\":true") || has(b"\"stream\": true");
    let fault = if up.faults { Fault::in_body(&body) } else { Fault::None };
    counts.0[fault.index()].fetch_add(1, Ordering::Relaxed);
    Ok(match fault {
        Fault::None if streamed => stream(up.chunk_gap, false),
        Fault::None => full(StatusCode::OK, "application/json", CHAT_COMPLETION),
        Fault::Status500 => error(StatusCode::INTERNAL_SERVER_ERROR, "internal server error", "server_error", "null"),
        Fault::Status503 => error(StatusCode::SERVICE_UNAVAILABLE, "the engine is overloaded", "server_error", "null"),
        Fault::Status429 => {
            let mut r =
                error(StatusCode::TOO_MANY_REQUESTS, "rate limit reached", "requests", "\"rate_limit_exceeded\"");
            r.headers_mut().insert(RETRY_AFTER, http::HeaderValue::from_static("1"));
            r
        }
        Fault::Reset => return Err(CloseWithoutAnswer),
        Fault::Cut if streamed => stream(up.chunk_gap, true),
        Fault::Cut => cut_buffered(),
        Fault::Malformed => {
            full(StatusCode::OK, "application/json", &CHAT_COMPLETION.as_bytes()[..CHAT_COMPLETION.len() / 3])
        }
    })
}

/// Serves the upstream on `listener` with TCP_NODELAY on every connection,
/// HTTP/1.1 with keep-alive, until the process ends.
pub async fn serve(listener: TcpListener, up: Upstream) -> std::io::Result<()> {
    let counts = Arc::new(Counts::default());
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: pause instead of spinning.
                eprintln!("bench upstream: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("bench upstream: cannot set TCP_NODELAY: {e}");
        }
        let counts = counts.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(up, counts.clone(), req));
            // Ends with an error on every injected reset or cut: expected.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}
