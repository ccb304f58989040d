//! The bench's upstream: a minimal, fast OpenAI-compatible provider. Every
//! `POST …/chat/completions` reads its body and answers the same fixed chat
//! completion, or with `"stream": true` in the body, the same answer as
//! [`STREAM_CHUNKS`] chunks spaced [`Upstream::chunk_gap`] apart, then
//! `[DONE]`. Not the harness mock (`src/mocks`), which validates and records
//! every request for the contracts: here the upstream must cost as little
//! as possible, so what is measured is the gateway.
//!
//! TCP_NODELAY is set on every accepted connection, as gateways set it on
//! their upstream side, so neither end waits on Nagle. It binds 127.0.0.1
//! only.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;

/// The fixed answer: a realistic non-streaming completion with usage, so a
/// gateway's cost lookup finds `gpt-4o` and prices it.
pub const CHAT_COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1735689600,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"The build is green: 214 tests passed, 0 failed.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":57,"completion_tokens":14,"total_tokens":71,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp_bench"}"#;

/// Content chunks of a streamed answer (a role chunk, these, a finish
/// chunk with usage, `[DONE]`).
pub const STREAM_CHUNKS: usize = 16;

/// How the upstream answers.
#[derive(Debug, Clone, Copy)]
pub struct Upstream {
    /// The pause before each content chunk of a stream: what a model's
    /// token rate looks like to a gateway.
    pub chunk_gap: Duration,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream { chunk_gap: Duration::from_millis(2) }
    }
}

fn chunk(delta: &str, finish: Option<&str>, usage: bool) -> Bytes {
    let finish = finish.map_or("null".to_string(), |f| format!("\"{f}\""));
    let usage = if usage { r#","usage":{"prompt_tokens":57,"completion_tokens":16,"total_tokens":73}"# } else { "" };
    Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1735689600,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]{usage}}}\n\n"
    ))
}

async fn chat(State(up): State<Upstream>, body: Bytes) -> Response {
    // The body is read (a real upstream must read it) and only scanned for
    // the stream flag, not parsed.
    let has = |pat: &[u8]| body.windows(pat.len()).any(|w| w == pat);
    let stream = has(b"\"stream\":true") || has(b"\"stream\": true");
    if !stream {
        return ([(CONTENT_TYPE, "application/json")], CHAT_COMPLETION).into_response();
    }
    let gap = up.chunk_gap;
    let events = async_stream::stream! {
        yield Ok::<_, std::io::Error>(chunk(r#"{"role":"assistant","content":""}"#, None, false));
        for i in 0..STREAM_CHUNKS {
            tokio::time::sleep(gap).await;
            yield Ok(chunk(&format!("{{\"content\":\"tok{i} \"}}"), None, false));
        }
        yield Ok(chunk("{}", Some("stop"), true));
        yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
    };
    ([(CONTENT_TYPE, "text/event-stream")], Body::from_stream(events)).into_response()
}

pub fn app(up: Upstream) -> Router {
    Router::new().route("/v1/chat/completions", post(chat)).route("/chat/completions", post(chat)).with_state(up)
}

/// Serves [`app`] on `listener` with TCP_NODELAY on every connection.
pub async fn serve(listener: TcpListener, up: Upstream) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("bench upstream: cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, app(up)).await
}
