//! Mock providers against a real HTTP client: strict profiles (good request
//! accepted, bad one rejected with the provider's exact status and body),
//! stubs and `times`, the journal, streams (framing, gates, cuts), faults,
//! and Bedrock's binary event streams (InvokeModel and Converse).
//!
//! No test depends on timing: held streams are observed through
//! `wait_until_held`, and the only timeouts are guards against hangs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use base64::Engine;
use futures::FutureExt;
use postmortem::mocks::{
    EventStreamEvent, EventStreamException, Fault, MockError, MockKind, MockOptions, MockProvider, Stub, StubEvent,
    StubMatch, StubResponse,
};
use serde_json::{json, Value};

const GUARD: Duration = Duration::from_secs(20);

async fn start(kind: MockKind) -> MockProvider {
    MockProvider::start(kind, "m1", MockOptions::default()).await.expect("mock starts")
}

async fn start_with_betas(kind: MockKind, betas: &[&str]) -> MockProvider {
    let opts = MockOptions {
        strict: true,
        beta_allowlist: Some(betas.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()),
    };
    MockProvider::start(kind, "m1", opts).await.expect("mock starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap_or_default().to_string())
    }
}

async fn send(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    let mut rb = client().post(url).body(body);
    for (n, v) in headers {
        rb = rb.header(*n, *v);
    }
    let resp = tokio::time::timeout(GUARD, rb.send()).await.expect("no hang").expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body").to_vec();
    Reply { status, headers, body }
}

async fn post(url: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    send(url, &h, serde_json::to_vec(body).expect("json")).await
}

fn chat_body() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

fn claude_body() -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
}

const OPENAI_AUTH: (&str, &str) = ("authorization", "Bearer sk-mock");
const ANTHROPIC_HEADERS: [(&str, &str); 2] = [("x-api-key", "mock-key"), ("anthropic-version", "2023-06-01")];

mod anthropic_family;
mod bedrock;
mod faults;
mod gemini;
mod openai_family;
mod streams;
mod stubs;
