//! The gateway's HTTP stacks without the gateway: an axum server (hyper,
//! tokio's multi-thread runtime, mimalloc) in front of a reqwest client with
//! the gateway's pool settings, forwarding every request as it is to the
//! upstream that a bench config names. No auth, routing, JSON or pricing.
//!
//! What for: `postmortem bench` compares a gateway with nginx (the floor).
//! This arm splits what our gateway costs beyond nginx into what the Rust
//! HTTP stacks it is built on cost by themselves, and what its own work adds
//! (BENCHMARKS.md, eleventh run):
//!
//! ```sh
//! cargo build --release --example plain_proxy
//! postmortem bench --target-cmd "target/release/examples/plain_proxy {config} {port}" \
//!     --target-cmd "target/release/postmortem serve --config {config} --port {port}"
//! ```
//!
//! With `--client hyper` it forwards through hyper-util's pooled client
//! instead of reqwest: what reqwest adds over the client it is built on
//! (twelfth run).
//!
//! It reads the first `api_base: "http://HOST:PORT/..."` of the config and
//! answers `GET /health/liveliness` itself, as the bench's readiness probe
//! expects.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use http_body_util::{BodyExt, Full};
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone)]
struct Upstream {
    origin: String,
    client: Client,
}

/// The upstream client: reqwest (what the gateway uses), or the hyper client
/// it is built on, used directly (`--client hyper`).
#[derive(Clone)]
enum Client {
    Reqwest(reqwest::Client),
    Hyper(Box<HyperClient>),
}

type HyperClient = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [header::HeaderName; 5] =
    [header::CONNECTION, header::HOST, header::TRANSFER_ENCODING, header::CONTENT_LENGTH, header::UPGRADE];

async fn forward(State(up): State<Upstream>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = axum::http::Request::builder().method(method).uri(format!("{}{path}", up.origin));
    for (k, v) in headers.iter().filter(|(k, _)| !HOP_BY_HOP.contains(k)) {
        req = req.header(k, v);
    }
    let req = match req.body(body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match &up.client {
        Client::Reqwest(c) => match reqwest::Request::try_from(req) {
            Ok(r) => match c.execute(r).await {
                Ok(resp) => relay(axum::http::Response::from(resp)).await,
                Err(e) => (StatusCode::BAD_GATEWAY, format!("upstream: {e}")).into_response(),
            },
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
        Client::Hyper(c) => match c.request(req.map(Full::new)).await {
            Ok(resp) => relay(resp).await,
            Err(e) => (StatusCode::BAD_GATEWAY, format!("upstream: {e}")).into_response(),
        },
    }
}

/// The upstream's answer to the client: a stream chunk by chunk; any other
/// answer read whole first, as the gateway reads one to price it.
async fn relay<B>(resp: axum::http::Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let (parts, upstream) = resp.into_parts();
    let stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let mut out = Response::builder().status(parts.status);
    for (k, v) in parts.headers.iter().filter(|(k, _)| !HOP_BY_HOP.contains(k)) {
        out = out.header(k, v);
    }
    let body = if stream {
        Body::new(upstream)
    } else {
        match upstream.collect().await {
            Ok(b) => Body::from(b.to_bytes()),
            Err(e) => return (StatusCode::BAD_GATEWAY, format!("upstream body: {}", e.into())).into_response(),
        }
    };
    out.body(body).unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

/// `http://HOST:PORT` from the first `api_base: "http://HOST:PORT/..."`.
fn upstream_origin(config: &str) -> Option<String> {
    let at = config.find("api_base:")?;
    let rest = config[at + "api_base:".len()..].trim_start().trim_start_matches(['"', '\'']);
    let authority = rest.strip_prefix("http://")?.split(['/', '"', '\'', ',', '}', '\n']).next()?;
    (!authority.is_empty()).then(|| format!("http://{authority}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(config), Some(port)) = (args.next(), args.next()) else {
        return Err("usage: plain_proxy CONFIG PORT [--client reqwest|hyper]".into());
    };
    let hyper = match (args.next().as_deref(), args.next().as_deref()) {
        (None, _) => false,
        (Some("--client"), Some("reqwest")) => false,
        (Some("--client"), Some("hyper")) => true,
        _ => return Err("usage: plain_proxy CONFIG PORT [--client reqwest|hyper]".into()),
    };
    let text = std::fs::read_to_string(&config).map_err(|e| format!("{config}: {e}"))?;
    let origin = upstream_origin(&text).ok_or_else(|| format!("{config}: no `api_base: \"http://…\"` in it"))?;
    let port: u16 = port.parse().map_err(|e| format!("port `{port}`: {e}"))?;
    // The gateway's client settings (upstream.rs): no Nagle, idle
    // connections kept 90 s, up to 256 per host.
    let client = if hyper {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Client::Hyper(Box::new(
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .build(connector),
        ))
    } else {
        Client::Reqwest(
            reqwest::Client::builder()
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(5))
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .build()?,
        )
    };
    let app = Router::new()
        .route("/health/liveliness", get(|| async { "I'm alive!" }))
        .fallback(forward)
        .with_state(Upstream { origin, client });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    // No Nagle on the client side either, as the gateway's accept loop: a
    // stream's small events go out as they come.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_upstream_is_read_from_a_bench_config() {
        let yaml = "model_list:\n  - model_name: m\n    litellm_params: {model: openai/gpt-4o, api_base: \"http://127.0.0.1:4321/v1\", api_key: k}\n";
        assert_eq!(super::upstream_origin(yaml).as_deref(), Some("http://127.0.0.1:4321"));
        assert_eq!(super::upstream_origin("api_base: https://elsewhere/v1"), None);
        assert_eq!(super::upstream_origin("model_list: []"), None);
    }
}
