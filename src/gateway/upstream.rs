//! HTTP clients for upstream providers and the keys they are cached under.
//!
//! An [`UpstreamClient`] is a pooled reqwest client. Shutting it down (which
//! the client cache does only after its last holder let go) closes it the way
//! an httpx client is closed: new requests fail and streams still reading
//! from it are cut. That is exactly why the cache must never shut down a
//! client someone still holds — see `client_cache`.

use crate::gateway::client_cache::Resource;
use crate::gateway::error::ApiError;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// What makes two deployments able to share one client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub provider: &'static str,
    pub api_base: String,
    /// First 16 hex chars of SHA-256 over the credentials: distinct keys get
    /// distinct pools without the secret itself living in the cache key.
    pub credential_fingerprint: String,
    pub connect_timeout_ms: u64,
}

impl ClientKey {
    pub fn new(
        provider: &'static str,
        api_base: &str,
        credential_fingerprint: &str,
        connect_timeout: Duration,
    ) -> Self {
        ClientKey {
            provider,
            api_base: api_base.to_string(),
            credential_fingerprint: credential_fingerprint.to_string(),
            connect_timeout_ms: connect_timeout.as_millis() as u64,
        }
    }

    /// First 16 hex chars of SHA-256 over the credentials. Computed once per
    /// deployment, not per request.
    pub fn fingerprint(credentials: &[&str]) -> String {
        let mut h = Sha256::new();
        for c in credentials {
            h.update(c.as_bytes());
            h.update([0u8]);
        }
        hex::encode(&h.finalize()[..8])
    }
}

/// How long an upstream call may take before it is a 504.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// The whole exchange, body included (buffered answers).
    Whole(Duration),
    /// Until the response headers (streams).
    Headers(Duration),
}

/// The most a buffered upstream answer may hold by default: a provider (or
/// something pretending to be one) cannot make the gateway hold more in
/// memory (`general_settings.max_upstream_response_mb`).
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// The longest a stream may last by default (an hour: the longest answers
/// of reasoning models take minutes; a stream past this is a provider
/// trickling, not answering).
pub(crate) const MAX_STREAM_DURATION: Duration = Duration::from_secs(3600);

/// Limits on what the gateway takes from providers and how long it keeps
/// their connections, from `general_settings` (defaults otherwise).
#[derive(Debug, Clone, Copy)]
pub struct UpstreamLimits {
    /// The most a buffered answer may hold.
    pub max_answer_bytes: usize,
    /// How long a pooled connection may idle.
    pub idle_timeout: Duration,
    /// Idle connections kept per host.
    pub max_idle_per_host: usize,
    /// The longest a stream may last from its headers to its end, however
    /// steadily it keeps coming: a provider (or something pretending to be
    /// one) that trickles chunks within the stream timeout cannot hold a
    /// client and a connection for ever.
    pub max_stream_duration: Duration,
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        UpstreamLimits {
            max_answer_bytes: MAX_ANSWER_BYTES,
            idle_timeout: Duration::from_secs(90),
            max_idle_per_host: 256,
            max_stream_duration: MAX_STREAM_DURATION,
        }
    }
}

impl UpstreamLimits {
    pub fn from_config(config: &crate::gateway::Config) -> UpstreamLimits {
        let g = &config.general_settings;
        let d = UpstreamLimits::default();
        UpstreamLimits {
            max_answer_bytes: g
                .max_upstream_response_mb
                .map(|mb| (mb * 1024.0 * 1024.0) as usize)
                .unwrap_or(d.max_answer_bytes),
            idle_timeout: g.upstream_idle_timeout_secs.map(Duration::from_secs_f64).unwrap_or(d.idle_timeout),
            max_idle_per_host: g.upstream_max_idle_per_host.unwrap_or(d.max_idle_per_host),
            max_stream_duration: g
                .max_stream_duration_secs
                .map(Duration::from_secs_f64)
                .unwrap_or(d.max_stream_duration),
        }
    }
}

/// The most of an upstream error body that is read: its message is all
/// the client gets of it.
pub(crate) const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Reads a buffered upstream answer, refusing one over `limit` bytes (a 502
/// that says so) without holding more than the limit.
pub async fn read_capped(resp: reqwest::Response, limit: usize, label: &str) -> Result<bytes::Bytes, ApiError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BadGateway(format!("upstream {label} answered with more than {limit} bytes")));
    }
    let mut resp = resp;
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(&e, label))? {
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::BadGateway(format!("upstream {label} answered with more than {limit} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(bytes::Bytes::from(buf))
}

/// Reads up to `limit` bytes of an upstream error body and drops the rest.
pub(crate) async fn read_prefix(resp: reqwest::Response, limit: usize) -> bytes::Bytes {
    let mut resp = resp;
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= limit {
            break;
        }
    }
    bytes::Bytes::from(buf)
}

/// The bound when a deployment configures none: no wait is unbounded.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The most parsed URLs an [`UpstreamClient`] keeps.
const MAX_PARSED_URLS: usize = 256;

#[derive(Debug)]
pub struct UpstreamClient {
    pub http: reqwest::Client,
    /// The URLs this client has called, parsed: reqwest parses a URL given
    /// as text on every request (IDNA included), about 2% of the gateway's
    /// CPU under load, for the few URLs a deployment has. Bounded: cleared
    /// when full (a wildcard route's URLs may name any model).
    urls: parking_lot::RwLock<std::collections::HashMap<String, reqwest::Url, foldhash::fast::RandomState>>,
    closed: AtomicBool,
    closed_tx: watch::Sender<bool>,
    label: String,
}

impl UpstreamClient {
    pub fn new(key: &ClientKey, limits: &UpstreamLimits) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_millis(key.connect_timeout_ms.max(1)))
            .pool_idle_timeout(limits.idle_timeout)
            .pool_max_idle_per_host(limits.max_idle_per_host)
            .build()
            .map_err(|e| ApiError::Internal(format!("cannot build upstream client: {e}")))?;
        let (closed_tx, _) = watch::channel(false);
        Ok(UpstreamClient {
            http,
            urls: parking_lot::RwLock::new(std::collections::HashMap::default()),
            closed: AtomicBool::new(false),
            closed_tx,
            // Client-facing messages name the provider only: an api_base is
            // the operator's business (it is in the logs, not in answers).
            label: key.provider.to_string(),
        })
    }

    /// A request to `url` on this client, the URL parsed once per client
    /// (a URL that does not parse is left to reqwest, which reports it when
    /// the request is sent, as before).
    pub fn request(&self, method: http::Method, url: String) -> reqwest::RequestBuilder {
        if let Some(parsed) = self.urls.read().get(&url) {
            return self.http.request(method, parsed.clone());
        }
        let Ok(parsed) = reqwest::Url::parse(&url) else { return self.http.request(method, url) };
        let mut urls = self.urls.write();
        if urls.len() >= MAX_PARSED_URLS {
            urls.clear();
        }
        urls.insert(url, parsed.clone());
        drop(urls);
        self.http.request(method, parsed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn closed_error(&self) -> ApiError {
        ApiError::BadGateway(format!(
            "upstream client {} has been closed: cannot send a request, as the client has been closed",
            self.label
        ))
    }

    /// Sends a request, mapping transport failures to 502/504. `bound` is
    /// how long it may take: the whole exchange for a buffered answer, the
    /// time to the response headers for a stream (whose chunks
    /// `guard_stream` bounds one by one).
    pub async fn send(&self, req: reqwest::RequestBuilder, bound: Bound) -> Result<reqwest::Response, ApiError> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        let (req, headers_within) = match bound {
            Bound::Whole(t) => (req.timeout(t), None),
            Bound::Headers(t) => (req, Some(t)),
        };
        let mut closed_rx = self.closed_tx.subscribe();
        let closed = async { closed_rx.wait_for(|c| *c).await.map(|_| ()) };
        let sent = async {
            match headers_within {
                Some(t) => match tokio::time::timeout(t, req.send()).await {
                    Ok(r) => r.map_err(Some),
                    Err(_) => Err(None),
                },
                None => req.send().await.map_err(Some),
            }
        };
        tokio::select! {
            r = sent => r.map_err(|e| match e {
                Some(e) => transport_error(&e, &self.label),
                None => ApiError::GatewayTimeout(format!(
                    "upstream {} sent no response headers within {} s",
                    self.label,
                    headers_within.map(|t| t.as_secs_f64()).unwrap_or_default()
                )),
            }),
            _ = closed => Err(self.closed_error()),
        }
    }

    /// Wraps a response body so it ends with an error when this client is
    /// shut down mid-stream, as closing an httpx client cuts its connections.
    /// `hold` (the cache lease) lives as long as the stream does.
    pub(crate) fn guard_stream<H: Send + 'static>(
        &self,
        body: impl Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send + 'static,
        idle_timeout: Option<Duration>,
        max_duration: Duration,
        hold: H,
    ) -> impl Stream<Item = Result<bytes::Bytes, ApiError>> + Send + 'static {
        let mut closed_rx = self.closed_tx.subscribe();
        let deadline = tokio::time::Instant::now() + max_duration;
        let label = self.label.clone();
        let closed_error = move |label: &str| {
            ApiError::BadGateway(format!(
                "upstream client {label} has been closed mid-stream: the connection was closed by the client cache"
            ))
        };
        async_stream::stream! {
            let _hold = hold;
            futures::pin_mut!(body);
            loop {
                let is_closed = *closed_rx.borrow();
                if is_closed {
                    yield Err(closed_error(&label));
                    break;
                }
                // The next chunk within the idle bound and the stream's
                // deadline, whichever comes first; which one ran out is
                // told apart below.
                let now = tokio::time::Instant::now();
                let until = idle_timeout.map_or(deadline, |t| (now + t).min(deadline));
                let next = async { tokio::time::timeout_at(until, body.next()).await.map_err(|_| ()) };
                let closed = async { closed_rx.wait_for(|c| *c).await.map(|_| ()) };
                let step = tokio::select! {
                    n = next => Some(n),
                    _ = closed => None,
                };
                match step {
                    None => { yield Err(closed_error(&label)); break; }
                    Some(Ok(Some(Ok(b)))) => yield Ok(b),
                    Some(Ok(Some(Err(e)))) => { yield Err(transport_error(&e, &label)); break; }
                    Some(Ok(None)) => break,
                    Some(Err(())) if tokio::time::Instant::now() >= deadline => {
                        yield Err(ApiError::GatewayTimeout(format!(
                            "upstream {label} was still streaming after {} s, the most a stream may last (general_settings.max_stream_duration_secs)",
                            max_duration.as_secs_f64()
                        )));
                        break;
                    }
                    Some(Err(())) => {
                        yield Err(ApiError::GatewayTimeout(format!("upstream {label} sent no stream data within the stream timeout")));
                        break;
                    }
                }
            }
        }
    }
}

impl Resource for UpstreamClient {
    fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.closed_tx.send_replace(true);
        tracing::debug!(client = %self.label, "upstream client shut down");
    }
}

pub(crate) fn transport_error(e: &reqwest::Error, label: &str) -> ApiError {
    // The full error (URL, OS error) goes to the log; the client gets what
    // happened, in words that reveal nothing of the deployment.
    tracing::warn!(upstream = %label, error = %crate::gateway::error::error_chain(e), "upstream transport error");
    if e.is_timeout() {
        ApiError::GatewayTimeout(format!("upstream {label} timed out"))
    } else if e.is_connect() {
        ApiError::BadGateway(format!("cannot connect to upstream {label}"))
    } else if e.is_body() || e.is_decode() {
        ApiError::BadGateway(format!("upstream {label} failed: its response broke off"))
    } else {
        ApiError::BadGateway(format!("upstream {label} failed: the request could not be completed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> UpstreamClient {
        let key = ClientKey::new("openai", "http://127.0.0.1:9", "f", Duration::from_secs(1));
        UpstreamClient::new(&key, &UpstreamLimits::default()).expect("a client")
    }

    /// A URL is parsed once per client and the request goes to it; the
    /// parsed URLs are bounded; a URL that does not parse still fails when
    /// sent, as reqwest reports it.
    #[tokio::test]
    async fn urls_are_parsed_once_bounded_and_a_bad_one_still_fails() {
        let c = client();
        for _ in 0..3 {
            let req = c.request(http::Method::POST, "http://127.0.0.1:9/v1/chat/completions".into()).build().unwrap();
            assert_eq!(req.url().as_str(), "http://127.0.0.1:9/v1/chat/completions");
        }
        assert_eq!(c.urls.read().len(), 1);
        for i in 0..MAX_PARSED_URLS + 3 {
            let req = c.request(http::Method::POST, format!("http://127.0.0.1:9/m{i}")).build().unwrap();
            assert_eq!(req.url().path(), format!("/m{i}"));
        }
        assert!(c.urls.read().len() <= MAX_PARSED_URLS);
        assert!(c.request(http::Method::POST, "not a url".into()).build().is_err());
        assert!(c.urls.read().len() <= MAX_PARSED_URLS);
    }
}
