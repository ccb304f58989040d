//! A deliberately small HTTP/1.1 server connection: enough for gateways'
//! HTTP clients (keep-alive, content-length or chunked request bodies), and
//! low-level enough to misbehave on purpose: drop the socket before any
//! response byte, or stop a chunked body in the middle of a chunk.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::Buffered;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A request as read from the socket.
#[derive(Debug)]
pub(crate) struct WireRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Bad(String),
}

pub(crate) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    pub(super) fn new(stream: TcpStream) -> Conn {
        Conn { stream, buf: BytesMut::with_capacity(8 * 1024) }
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        self.stream.read_buf(&mut self.buf).await
    }

    /// The next request, or `None` when the client closed the connection
    /// between requests.
    pub(crate) async fn read_request(&mut self) -> Result<Option<WireRequest>, ReadError> {
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::Bad("request head larger than 64 KiB".into()));
            }
            if self.fill().await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(ReadError::Bad("connection closed inside the request head".into()));
            }
        };
        let head = self.buf.split_to(head_end + 4);
        let text =
            std::str::from_utf8(&head[..head_end]).map_err(|_| ReadError::Bad("request head is not UTF-8".into()))?;
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let parts: Vec<&str> = request_line.split(' ').collect();
        let [method, target, version] = parts[..] else {
            return Err(ReadError::Bad(format!("bad request line `{request_line}`")));
        };
        if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
            return Err(ReadError::Bad(format!("bad request line `{request_line}`")));
        }
        let mut headers = Vec::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return Err(ReadError::Bad(format!("bad header line `{line}`")));
            };
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let connection = get("connection").unwrap_or_default().to_ascii_lowercase();
        let keep_alive =
            if version == "HTTP/1.0" { connection.contains("keep-alive") } else { !connection.contains("close") };
        let chunked = get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let content_length = match get("content-length") {
            Some(v) => Some(v.parse::<usize>().map_err(|_| ReadError::Bad(format!("bad content-length `{v}`")))?),
            None => None,
        };
        if get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
            self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let body = if chunked {
            self.read_chunked().await?
        } else if let Some(n) = content_length {
            if n > MAX_BODY {
                return Err(ReadError::Bad("request body larger than 64 MiB".into()));
            }
            self.read_exact_body(n).await?
        } else {
            Vec::new()
        };
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target.to_string(), None),
        };
        Ok(Some(WireRequest { method: method.to_string(), path, query, headers, body, keep_alive }))
    }

    async fn read_exact_body(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                return Err(ReadError::Bad("connection closed inside the request body".into()));
            }
        }
        Ok(self.buf.split_to(n).to_vec())
    }

    async fn read_line(&mut self) -> Result<String, ReadError> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let line = self.buf.split_to(pos + 2);
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::Bad("chunk header too long".into()));
            }
            if self.fill().await? == 0 {
                return Err(ReadError::Bad("connection closed inside a chunked body".into()));
            }
        }
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| ReadError::Bad(format!("bad chunk size `{size_text}`")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            if size > MAX_BODY.saturating_sub(body.len()) {
                return Err(ReadError::Bad("request body larger than 64 MiB".into()));
            }
            body.extend(self.read_exact_body(size).await?);
            if !self.read_line().await?.is_empty() {
                return Err(ReadError::Bad("chunk not followed by CRLF".into()));
            }
        }
    }

    /// Writes a complete response with `content-length`.
    pub(crate) async fn write_full(&mut self, resp: &Buffered, keep_alive: bool) -> std::io::Result<()> {
        let mut out = status_line(resp.status);
        for (n, v) in &resp.headers {
            if is_framing(n) {
                continue;
            }
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str(&format!("content-length: {}\r\n", resp.body.len()));
        if !keep_alive {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&resp.body);
        self.stream.write_all(&bytes).await?;
        self.stream.flush().await
    }

    /// Starts a chunked response.
    pub(crate) async fn write_stream_head(&mut self, status: u16, headers: &[(String, String)]) -> std::io::Result<()> {
        let mut out = status_line(status);
        for (n, v) in headers {
            if is_framing(n) {
                continue;
            }
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("transfer-encoding: chunked\r\n\r\n");
        self.stream.write_all(out.as_bytes()).await?;
        self.stream.flush().await
    }

    pub(crate) async fn write_chunk(&mut self, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        self.stream.write_all(&out).await?;
        self.stream.flush().await
    }

    pub(crate) async fn write_last_chunk(&mut self) -> std::io::Result<()> {
        self.stream.write_all(b"0\r\n\r\n").await?;
        self.stream.flush().await
    }

    /// Resolves when the peer closes its side (or the socket fails). Bytes
    /// that arrive meanwhile are kept for the next request.
    pub(crate) async fn peer_closed(&mut self) {
        loop {
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) if self.buf.len() > MAX_BODY => return,
                Ok(_) => {}
            }
        }
    }

    /// Drops the connection with a TCP RST and no response.
    pub(super) fn reset(self) {
        // If SO_LINGER cannot be set the drop still closes the socket (FIN),
        // which clients also see as a connection error.
        let _ = self.stream.set_zero_linger();
        drop(self.stream);
    }
}

/// Headers our writer sets itself.
fn is_framing(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length")
        || name.eq_ignore_ascii_case("transfer-encoding")
        || name.eq_ignore_ascii_case("connection")
        || name.eq_ignore_ascii_case("keep-alive")
}

fn status_line(status: u16) -> String {
    let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    format!("HTTP/1.1 {status} {reason}\r\n")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
