//! The served gateway's connection limits, over real sockets: a client
//! that trickles its headers is dropped after the header-read timeout, and
//! connections beyond the limit are closed as they arrive while the ones
//! being served keep working. Every wait is bounded.

use postmortem::gateway::server::{serve_with, ServeLimits};
use postmortem::gateway::{Config, GatewayBuilder};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BOUND: Duration = Duration::from_secs(10);

async fn served(limits: ServeLimits) -> (String, tokio::sync::oneshot::Sender<()>) {
    let yaml = "model_list: []\ngeneral_settings: {master_key: sk-limits-test-0001}\n";
    let cfg = Config::parse(yaml, "test.yaml").expect("config parses").config;
    let gw = GatewayBuilder::new(cfg).build().await.expect("gateway builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_with(
        gw,
        listener,
        async {
            let _ = rx.await;
        },
        limits,
    ));
    (addr, tx)
}

/// Reads until the server closes the connection; what it sent first.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(BOUND, s.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open past {BOUND:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn health(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    String::from_utf8_lossy(&until_closed(&mut s).await).into_owned()
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_dropped() {
    let limits = ServeLimits { header_read_timeout: Duration::from_millis(300), ..ServeLimits::default() };
    let (addr, _stop) = served(limits).await;
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let answer = until_closed(&mut slow).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "{answer:?}");
    assert!(health(&addr).await.starts_with("HTTP/1.1 200"), "a complete request is still served");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_the_rest_served() {
    let limits = ServeLimits { max_connections: 2, ..ServeLimits::default() };
    let (addr, _stop) = served(limits).await;
    // Two connections, each proven accepted by a request answered on it.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(BOUND, s.read(&mut buf)).await.expect("answered").unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // A third is closed without an answer.
    let mut third = TcpStream::connect(&addr).await.unwrap();
    let _ = third.write_all(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(until_closed(&mut third).await.is_empty());
    // Once one held connection goes, a new one is served again.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let answer = health(&addr).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no connection served after one was freed");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn headers_over_the_limit_are_refused_and_the_server_keeps_serving() {
    let limits = ServeLimits { max_header_bytes: 8 * 1024, ..ServeLimits::default() };
    let (addr, _stop) = served(limits).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let big = "a".repeat(20 * 1024);
    let req = format!("GET /health/liveliness HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    // The server may close while the rest is still being written.
    let _ = s.write_all(req.as_bytes()).await;
    let answer = String::from_utf8_lossy(&until_closed(&mut s).await).into_owned();
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
    assert!(health(&addr).await.starts_with("HTTP/1.1 200"));
}

#[test]
fn the_limits_are_set_in_general_settings_and_checked_when_the_config_loads() {
    let yaml = "model_list: []\ngeneral_settings: {header_read_timeout_secs: 0.3, max_connections: 2, max_header_size_kb: 16, max_upstream_response_mb: 0.5, upstream_idle_timeout_secs: 5, upstream_max_idle_per_host: 8, max_stream_duration_secs: 120}\n";
    let cfg = Config::parse(yaml, "test.yaml").expect("config parses").config;
    let limits = ServeLimits::from_config(&cfg);
    assert_eq!(limits.header_read_timeout, Duration::from_millis(300));
    assert_eq!(limits.max_connections, 2);
    assert_eq!(limits.max_header_bytes, 16 * 1024);
    let upstream = postmortem::gateway::upstream::UpstreamLimits::from_config(&cfg);
    assert_eq!(upstream.max_answer_bytes, 512 * 1024);
    assert_eq!(upstream.idle_timeout, Duration::from_secs(5));
    assert_eq!(upstream.max_idle_per_host, 8);
    assert_eq!(upstream.max_stream_duration, Duration::from_secs(120));
    let default_upstream = postmortem::gateway::upstream::UpstreamLimits::default();
    assert_eq!(default_upstream.max_stream_duration, Duration::from_secs(3600));
    let defaults = ServeLimits::from_config(&Config::parse("model_list: []\n", "t.yaml").unwrap().config);
    assert_eq!(defaults.max_connections, ServeLimits::default().max_connections);
    for (bad, field) in [
        ("header_read_timeout_secs: 0", "header_read_timeout_secs"),
        ("header_read_timeout_secs: -1", "header_read_timeout_secs"),
        ("max_connections: 0", "max_connections"),
        ("max_header_size_kb: 1", "max_header_size_kb"),
        ("max_upstream_response_mb: 0", "max_upstream_response_mb"),
        ("upstream_idle_timeout_secs: -3", "upstream_idle_timeout_secs"),
        ("max_stream_duration_secs: 0", "max_stream_duration_secs"),
        ("max_stream_duration_secs: .inf", "max_stream_duration_secs"),
    ] {
        let e = Config::parse(&format!("model_list: []\ngeneral_settings: {{{bad}}}\n"), "t.yaml").unwrap_err();
        assert!(e.to_string().contains(field), "{e}");
    }
}
