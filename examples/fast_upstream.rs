//! A minimal, fast OpenAI-compatible upstream for load tests and the
//! end-to-end bench: every `POST /v1/chat/completions` (or
//! `/chat/completions`) reads its body and answers the same fixed chat
//! completion. Not the harness mock (`src/mocks`), which validates every
//! request and records it for fidelity: here the upstream must cost as
//! little as possible so what is measured is the gateway.
//!
//! TCP_NODELAY is set on every accepted connection, as the gateway's
//! upstream client sets it on its side, so neither end waits on Nagle.
//!
//! Run: `cargo run --release --example fast_upstream -- --port 0`
//! (prints `fast_upstream listening on http://127.0.0.1:PORT`). It binds
//! 127.0.0.1 only.

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;

/// The fixed answer: a realistic non-streaming completion with usage, so
/// the gateway's cost lookup finds `gpt-4o` and prices it.
pub const CHAT_COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1735689600,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"The build is green: 214 tests passed, 0 failed.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":57,"completion_tokens":14,"total_tokens":71,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp_bench"}"#;

async fn chat(body: Bytes) -> impl IntoResponse {
    // The body is read (a real upstream must read it) but not parsed.
    drop(body);
    ([(CONTENT_TYPE, "application/json")], CHAT_COMPLETION)
}

pub fn app() -> Router {
    Router::new().route("/v1/chat/completions", post(chat)).route("/chat/completions", post(chat))
}

/// Serves [`app`] on `listener` with TCP_NODELAY on every connection.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("fast_upstream: cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, app()).await
}

/// `--port N` (0, the default, picks a free port).
fn parse_port(mut args: impl Iterator<Item = String>) -> Result<u16, String> {
    let mut port = 0;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let v = args.next().ok_or("--port needs a value")?;
                port = v.parse().map_err(|e| format!("--port {v}: {e}"))?;
            }
            other => return Err(format!("unknown argument `{other}` (usage: fast_upstream [--port N])")),
        }
    }
    Ok(port)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let port = match parse_port(std::env::args().skip(1)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot bind 127.0.0.1:{port}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        // The line scripts wait for.
        Ok(addr) => println!("fast_upstream listening on http://{addr}"),
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    match serve(listener).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: server stopped: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
