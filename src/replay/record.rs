//! `postmortem record`: a reverse proxy that forwards every request to the
//! upstream provider and writes what went by to a cassette.
//!
//! Responses are passed to the client chunk by chunk as they arrive (a
//! stream is not held back to be recorded) while a tap on the body records
//! each chunk with its time offset. When a body ends, its interaction is
//! redacted and the cassette file is rewritten atomically, so the file always
//! holds every finished interaction and never a secret: redaction happens in
//! memory, before anything touches the disk.
//!
//! The proxy asks the upstream for uncompressed bodies (it does not forward
//! `accept-encoding`), so recorded bodies stay readable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body as AxumBody, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response as AxumResponse};
use futures::{Stream, StreamExt};
use parking_lot::Mutex;

use super::cassette::{
    push_header, rfc3339, Body, Cassette, FrameCollector, Headers, Interaction, Request, Response, SseCollector,
};
use super::redact::{self, RedactionLog};
use super::CassetteError;

/// Largest request body the proxy buffers.
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Hop-by-hop headers (RFC 9110 7.6.1) and ones the proxy sets itself.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// Base URL of the provider, e.g. `https://api.openai.com`. A path prefix
    /// is kept: requests for `/x` go to `{upstream}/x`.
    pub upstream: String,
    /// Address to listen on, e.g. `127.0.0.1:8089` (port 0 picks one).
    pub listen: String,
    pub out: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("--upstream `{url}`: {reason}")]
    Upstream { url: String, reason: String },
    #[error("--listen `{addr}`: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error(transparent)]
    Cassette(#[from] CassetteError),
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    out: PathBuf,
    started_at: String,
    next_seq: AtomicU64,
    state: Mutex<RecState>,
    changed: tokio::sync::Notify,
    /// One write at a time, each of the state as it is when the write
    /// starts: a background write still running when `finish` writes can
    /// then never replace the final file with an older snapshot.
    write_lock: Mutex<()>,
}

#[derive(Default)]
struct RecState {
    done: Vec<(u64, Interaction)>,
    notes: Vec<(u64, String)>,
    log: RedactionLog,
    write_error: Option<String>,
}

impl Shared {
    fn complete(&self, seq: u64, mut interaction: Interaction, note: Option<String>) {
        let mut st = self.state.lock();
        redact::redact_interaction(&mut interaction, &mut st.log);
        tracing::info!(
            method = %interaction.request.method,
            path = %interaction.request.path(),
            status = interaction.response.status,
            elapsed_ms = interaction.elapsed_ms.unwrap_or(0),
            "recorded"
        );
        st.done.push((seq, interaction));
        if let Some(n) = note {
            st.notes.push((seq, n));
        }
        drop(st);
        self.changed.notify_one();
    }

    fn cassette(&self) -> Cassette {
        let st = self.state.lock();
        let mut done: Vec<&(u64, Interaction)> = st.done.iter().collect();
        done.sort_by_key(|(seq, _)| *seq);
        let index_of = |seq: u64| done.iter().position(|(s, _)| *s == seq);
        let mut c =
            Cassette::new(format!("record {}", self.upstream), done.iter().map(|(_, i)| i.clone()).collect::<Vec<_>>());
        c.metadata.recorded_at = Some(self.started_at.clone());
        c.metadata.headers_complete = true;
        c.metadata.redactions = st.log.clone();
        c.metadata.notes =
            st.notes.iter().filter_map(|(seq, n)| index_of(*seq).map(|i| format!("interactions[{i}]: {n}"))).collect();
        drop(st);
        // Belt and braces: the interactions are redacted already, so this
        // changes nothing and counts nothing.
        redact::redact_cassette(&mut c);
        c
    }

    fn write(&self) -> Result<Cassette, CassetteError> {
        let _one_at_a_time = self.write_lock.lock();
        let c = self.cassette();
        let result = c.save(&self.out);
        self.state.lock().write_error = result.as_ref().err().map(|e| e.to_string());
        result.map(|()| c)
    }
}

/// A running recording proxy.
pub struct Recorder {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    writer: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Binds, then serves until [`Recorder::finish`].
    pub async fn start(opts: RecordOptions) -> Result<Recorder, RecordError> {
        let bad = |reason: &str| RecordError::Upstream { url: opts.upstream.clone(), reason: reason.to_string() };
        let url = reqwest::Url::parse(&opts.upstream).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("must be an http:// or https:// URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or a fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not carry credentials; the client sends them and they are redacted"));
        }
        let upstream = opts.upstream.trim_end_matches('/').to_string();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(RecordError::Client)?;
        let listener = tokio::net::TcpListener::bind(&opts.listen)
            .await
            .map_err(|source| RecordError::Bind { addr: opts.listen.clone(), source })?;
        let addr = listener.local_addr().map_err(|source| RecordError::Bind { addr: opts.listen.clone(), source })?;
        let shared = Arc::new(Shared {
            upstream,
            client,
            out: opts.out.clone(),
            started_at: rfc3339(std::time::SystemTime::now()),
            next_seq: AtomicU64::new(0),
            state: Mutex::new(RecState::default()),
            changed: tokio::sync::Notify::new(),
            write_lock: Mutex::new(()),
        });
        let app = axum::Router::new().fallback(proxy).with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
        });
        let w = shared.clone();
        let writer = tokio::spawn(async move {
            loop {
                w.changed.notified().await;
                let w2 = w.clone();
                // Serializing and writing are blocking work.
                let result = tokio::task::spawn_blocking(move || w2.write()).await;
                if let Ok(Err(e)) = result {
                    tracing::error!(error = %e, "cannot write the cassette");
                }
            }
        });
        Ok(Recorder { addr, shared, shutdown: Some(tx), server: Some(server), writer })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, what clients use as their base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Interactions finished so far.
    pub fn recorded(&self) -> usize {
        self.shared.state.lock().done.len()
    }

    /// Stops accepting, lets requests in flight finish, writes the cassette
    /// a last time and returns it.
    pub async fn finish(mut self) -> Result<Cassette, RecordError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            if let Ok(Err(e)) = server.await {
                tracing::warn!(error = %e, "recording proxy stopped with an error");
            }
        }
        self.writer.abort();
        let shared = self.shared.clone();
        let c = tokio::task::spawn_blocking(move || shared.write())
            .await
            .map_err(|e| CassetteError::invalid(&self.shared.out.display().to_string(), e.to_string()))??;
        Ok(c)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(s) = &self.server {
            s.abort();
        }
        self.writer.abort();
    }
}

fn lossy(v: &HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

fn proxy_error(status: StatusCode, message: String) -> AxumResponse {
    let body = serde_json::json!({"error": {"message": message, "type": "postmortem_record_error"}});
    (status, axum::Json(body)).into_response()
}

async fn proxy(State(s): State<Arc<Shared>>, req: axum::extract::Request) -> AxumResponse {
    let started = Instant::now();
    let seq = s.next_seq.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(e) => return proxy_error(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}")),
    };
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("{}{path_and_query}", s.upstream);
    let mut rb = s.client.request(parts.method.clone(), &url);
    let mut recorded_headers = Headers::new();
    for (name, value) in &parts.headers {
        if hop_by_hop(name.as_str()) {
            continue;
        }
        push_header(&mut recorded_headers, name.as_str(), lossy(value));
        if name.as_str() != "accept-encoding" {
            rb = rb.header(name, value);
        }
    }
    let request_ct = parts.headers.get("content-type").map(lossy);
    let request = Request {
        method: parts.method.as_str().to_string(),
        url: url.clone(),
        headers: recorded_headers,
        body: Body::from_bytes(request_ct.as_deref(), &bytes),
    };
    let upstream = match rb.body(bytes).send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(method = %parts.method, path = %parts.uri.path(), error = %e, "upstream request failed");
            return proxy_error(StatusCode::BAD_GATEWAY, format!("upstream request failed: {e}"));
        }
    };
    let status = upstream.status();
    let mut client_headers = HeaderMap::new();
    let mut response_headers = Headers::new();
    for (name, value) in upstream.headers() {
        if hop_by_hop(name.as_str()) {
            continue;
        }
        push_header(&mut response_headers, name.as_str(), lossy(value));
        if let (Ok(n), Ok(v)) =
            (HeaderName::from_bytes(name.as_str().as_bytes()), HeaderValue::from_bytes(value.as_bytes()))
        {
            client_headers.append(n, v);
        }
    }
    let ct = upstream.headers().get("content-type").map(lossy).unwrap_or_default().to_ascii_lowercase();
    let collector = if ct.starts_with("text/event-stream") {
        Collector::Sse(SseCollector::default())
    } else if ct.starts_with("application/vnd.amazon.eventstream") {
        Collector::Frames(FrameCollector::default())
    } else {
        Collector::Buffer(Vec::new(), ct)
    };
    let tap = Tap {
        inner: upstream.bytes_stream().boxed(),
        acc: Some(Acc { seq, started, request, status: status.as_u16(), headers: response_headers, collector }),
        shared: s.clone(),
    };
    let mut resp = AxumResponse::new(AxumBody::from_stream(tap));
    *resp.status_mut() = status;
    *resp.headers_mut() = client_headers;
    resp
}

enum Collector {
    Sse(SseCollector),
    Frames(FrameCollector),
    Buffer(Vec<u8>, String),
}

/// An interaction whose response body is still arriving.
struct Acc {
    seq: u64,
    started: Instant,
    request: Request,
    status: u16,
    headers: Headers,
    collector: Collector,
}

impl Acc {
    fn push(&mut self, chunk: &[u8]) {
        let at = Some(self.started.elapsed().as_millis() as u64);
        match &mut self.collector {
            Collector::Sse(c) => c.push(chunk, at),
            Collector::Frames(c) => c.push(chunk, at),
            Collector::Buffer(b, _) => b.extend_from_slice(chunk),
        }
    }

    fn into_interaction(self) -> (u64, Interaction) {
        let body = match self.collector {
            Collector::Sse(c) => Body { sse: Some(c.finish()), ..Body::default() },
            Collector::Frames(c) => Body { eventstream: Some(c.finish()), ..Body::default() },
            Collector::Buffer(b, ct) => Body::from_bytes(Some(&ct), &b),
        };
        let interaction = Interaction {
            provider: None,
            request: self.request,
            response: Response { status: self.status, headers: self.headers, body },
            elapsed_ms: Some(self.started.elapsed().as_millis() as u64),
            client: None,
        };
        (self.seq, interaction)
    }
}

/// The response body on its way to the client, recorded as it passes.
struct Tap {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    acc: Option<Acc>,
    shared: Arc<Shared>,
}

impl Tap {
    fn finish(&mut self, note: Option<String>) {
        if let Some(acc) = self.acc.take() {
            let (seq, interaction) = acc.into_interaction();
            self.shared.complete(seq, interaction, note);
        }
    }
}

impl Stream for Tap {
    type Item = reqwest::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(acc) = &mut this.acc {
                    acc.push(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(Some(format!("the upstream body broke: {e}")));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // The client hung up before the end: keep what arrived.
        self.finish(Some("the client went away before the end of the response".into()));
    }
}
