//! The load generator: `concurrency` workers, each with one keep-alive
//! HTTP/1.1 connection (as wrk does), sending the same request back to back
//! until the run's time or request budget is spent. Per request it keeps
//! the latency to the end of the body; for a stream, also the time to the
//! first content event and the gaps between events.
//!
//! Why its own and not wrk: the bench must run on a fresh machine with
//! nothing but this binary, and it must read streams event by event (wrk
//! times whole responses only). It is hyper's client connection without a
//! pool, so its own cost per request is a few microseconds.

use anyhow::anyhow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::net::TcpStream;

/// What to send, where, and how long.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// `host:port` on 127.0.0.1.
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub concurrency: usize,
    pub duration: Duration,
    /// A cap on requests across all workers.
    pub max_requests: u64,
    pub stream: bool,
    /// A request slower than this counts as an error and its connection is
    /// replaced.
    pub request_timeout: Duration,
}

/// What one run saw.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Microseconds per successful request, sorted.
    pub latency_us: Vec<u32>,
    /// Streams: microseconds to the first content event, sorted.
    pub ttft_us: Vec<u32>,
    /// Streams: microseconds between consecutive events, sorted.
    pub gap_us: Vec<u32>,
    /// Transport failures and timeouts.
    pub errors: u64,
    /// Answers with a status other than 2xx.
    pub non_2xx: u64,
    /// The first failure, to say what went wrong.
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn requests(&self) -> u64 {
        self.latency_us.len() as u64
    }

    pub fn per_second(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The value at quantile `q` (0..=1) of sorted samples.
pub(crate) fn quantile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).copied()
}

#[derive(Default)]
struct Worker {
    latency: Vec<u32>,
    ttft: Vec<u32>,
    gaps: Vec<u32>,
    errors: u64,
    non_2xx: u64,
    first_error: Option<String>,
}

impl Worker {
    fn fail(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

/// One keep-alive client connection.
pub(crate) type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A keep-alive HTTP/1.1 connection to `authority` with TCP_NODELAY.
pub async fn connect(authority: &str) -> anyhow::Result<Conn> {
    let tcp = TcpStream::connect(authority).await.map_err(|e| anyhow!("connect {authority}: {e}"))?;
    tcp.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| anyhow!("handshake {authority}: {e}"))?;
    tokio::spawn(async move {
        // Ends with an error when the peer closes; the worker reconnects.
        let _ = conn.await;
    });
    Ok(send)
}

/// Sends `method path` with `headers` and `body` on `conn` (reconnecting
/// first when the connection was closed before the request was written) and
/// returns the response head, its body still to be read, and when the
/// request was sent.
pub async fn send(
    conn: &mut Conn,
    authority: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> anyhow::Result<(hyper::Response<hyper::body::Incoming>, Instant)> {
    let mut req = http::Request::builder().method(method).uri(path).header("host", authority);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Full::new(body))?;
    if conn.ready().await.is_err() {
        // Closed before this request was written: reconnect and send it.
        *conn = connect(authority).await?;
        conn.ready().await?;
    }
    let started = Instant::now();
    let resp = conn.send_request(req).await?;
    Ok((resp, started))
}

/// One request on `conn`: its latency, and for a stream the event times.
async fn one(spec: &LoadSpec, conn: &mut Conn, w: &mut Worker) -> anyhow::Result<()> {
    let (resp, started) = send(conn, &spec.authority, "POST", &spec.path, &spec.headers, spec.body.clone()).await?;
    let ok = resp.status().is_success();
    let mut body = resp.into_body();
    let mut last_event: Option<Instant> = None;
    let mut pending: usize = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else { continue };
        if !spec.stream {
            continue;
        }
        // Events end with a blank line; count each completed one when the
        // bytes that complete it arrive.
        let now = Instant::now();
        let mut prev = pending;
        for &b in data.iter() {
            if b == b'\n' {
                if prev == 1 {
                    match last_event {
                        None => w.ttft.push(micros(now - started)),
                        Some(t) => w.gaps.push(micros(now - t)),
                    }
                    last_event = Some(now);
                    prev = 0;
                    continue;
                }
                prev = 1;
            } else if b != b'\r' {
                prev = 2;
            }
        }
        pending = prev;
    }
    if ok {
        w.latency.push(micros(started.elapsed()));
    } else {
        w.non_2xx += 1;
    }
    Ok(())
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Runs the load and gathers every worker's samples.
pub async fn run(spec: &LoadSpec) -> LoadResult {
    let spec = Arc::new(spec.clone());
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + spec.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..spec.concurrency.max(1) {
        let (spec, sent) = (spec.clone(), sent.clone());
        tasks.spawn(async move {
            let mut w = Worker::default();
            let mut conn: Option<Conn> = None;
            while tokio::time::Instant::now() < deadline && sent.fetch_add(1, Ordering::Relaxed) < spec.max_requests {
                // A server may end a keep-alive connection between two
                // requests (HTTP allows it): that is a reconnect, not an error.
                if conn.as_ref().is_some_and(|c| c.is_closed()) {
                    conn = None;
                }
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match tokio::time::timeout_at(deadline, connect(&spec.authority)).await {
                        Ok(Ok(c)) => conn.insert(c),
                        Ok(Err(e)) => {
                            w.fail(format!("{e:#}"));
                            // A refused connection would spin; the budget
                            // still ends the run.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                        Err(_) => break,
                    },
                };
                match tokio::time::timeout(spec.request_timeout, one(&spec, c, &mut w)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        w.fail(format!("{e:#}"));
                        conn = None;
                    }
                    Err(_) => {
                        w.fail(format!("no answer within {:?}", spec.request_timeout));
                        conn = None;
                    }
                }
            }
            w
        });
    }
    let mut out = LoadResult::default();
    while let Some(w) = tasks.join_next().await {
        let Ok(w) = w else { continue };
        out.latency_us.extend(w.latency);
        out.ttft_us.extend(w.ttft);
        out.gap_us.extend(w.gaps);
        out.errors += w.errors;
        out.non_2xx += w.non_2xx;
        if out.first_error.is_none() {
            out.first_error = w.first_error;
        }
    }
    out.elapsed = started.elapsed();
    out.latency_us.sort_unstable();
    out.ttft_us.sort_unstable();
    out.gap_us.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_of_sorted_samples() {
        let xs: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&xs, 0.5), Some(51));
        assert_eq!(quantile(&xs, 0.99), Some(99));
        assert_eq!(quantile(&xs, 1.0), Some(100));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
