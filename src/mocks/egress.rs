//! The egress sentinel: an HTTP proxy that lets nothing through and writes
//! down where the gateway under test tried to go.
//!
//! In target mode the gateway process gets `HTTPS_PROXY`/`HTTP_PROXY`
//! pointing here and `NO_PROXY` for 127.0.0.1 (where the mocks are), so a
//! call the gateway sends anywhere but its configured `api_base` (a
//! provider's public API it decided to reach on its own, with a
//! deployment's credential) shows up as a `CONNECT host:port` instead of
//! vanishing in a DNS failure. Every attempt is refused with a 403; nothing
//! leaves the machine.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One attempt to leave through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressAttempt {
    /// `CONNECT` (HTTPS) or the method of a plain-HTTP request.
    pub method: String,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for EgressAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}:{}", self.method, self.host, self.port)
    }
}

/// How much of a request head is read, and for how long.
const HEAD_LIMIT: usize = 16 * 1024;
const HEAD_TIME: Duration = Duration::from_secs(5);

/// The running sentinel; stops when dropped.
pub(crate) struct EgressSentinel {
    url: String,
    attempts: Arc<Mutex<Vec<EgressAttempt>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EgressSentinel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EgressSentinel {
    pub(crate) async fn start() -> std::io::Result<EgressSentinel> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let attempts: Arc<Mutex<Vec<EgressAttempt>>> = Arc::default();
        let seen = attempts.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::with_capacity(1024);
                    let mut buf = [0u8; 2048];
                    let read = tokio::time::timeout(HEAD_TIME, async {
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < HEAD_LIMIT {
                            match conn.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                    })
                    .await;
                    if read.is_ok() {
                        if let Some(a) = parse_request_line(&head) {
                            seen.lock().push(a);
                        }
                    }
                    let _ = conn
                        .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        Ok(EgressSentinel { url, attempts, task })
    }

    /// The proxy URL to give the gateway (`HTTPS_PROXY`, `HTTP_PROXY`).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// How many attempts so far.
    pub(crate) fn count(&self) -> usize {
        self.attempts.lock().len()
    }

    /// The attempts from the `from`-th on.
    pub(crate) fn since(&self, from: usize) -> Vec<EgressAttempt> {
        self.attempts.lock().iter().skip(from).cloned().collect()
    }
}

/// `CONNECT host:port HTTP/1.1` or `GET http://host[:port]/path HTTP/1.1`.
fn parse_request_line(head: &[u8]) -> Option<EgressAttempt> {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    let (authority, default_port) = if method.eq_ignore_ascii_case("CONNECT") {
        (target, 443)
    } else {
        let rest = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://"))?;
        (rest.split('/').next()?, if target.starts_with("https://") { 443 } else { 80 })
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, default_port),
    };
    Some(EgressAttempt { method, host: host.trim_matches(['[', ']']).to_ascii_lowercase(), port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_name_the_host_the_client_wanted() {
        let a = parse_request_line(b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n");
        assert_eq!(a, Some(EgressAttempt { method: "CONNECT".into(), host: "api.anthropic.com".into(), port: 443 }));
        let a = parse_request_line(b"POST http://Example.COM/v1/x HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("example.com", 80));
        assert_eq!(parse_request_line(b"garbage"), None);
    }

    #[tokio::test]
    async fn every_attempt_is_refused_and_written_down() {
        let s = EgressSentinel::start().await.unwrap();
        let addr = s.url().trim_start_matches("http://").to_string();
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"CONNECT api.openai.com:443 HTTP/1.1\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert_eq!(
            s.since(0),
            vec![EgressAttempt { method: "CONNECT".into(), host: "api.openai.com".into(), port: 443 }]
        );
        assert_eq!(s.count(), 1);
    }
}
