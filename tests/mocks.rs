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

// ---------------------------------------------------------------- openai

#[tokio::test]
async fn openai_accepts_a_good_chat_request_with_a_realistic_body() {
    let m = start(MockKind::Openai).await;
    let r = post(&format!("{}/v1/chat/completions", m.url()), &[OPENAI_AUTH], &chat_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert!(j["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(j["object"], "chat.completion");
    assert_eq!(j["model"], "gpt-4o-mini");
    assert_eq!(j["choices"][0]["message"]["role"], "assistant");
    assert!(j["choices"][0]["message"]["content"].as_str().unwrap().contains("`m1`"));
    assert_eq!(j["choices"][0]["finish_reason"], "stop");
    let u = &j["usage"];
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );
    // Also served without the /v1 prefix.
    let r = post(&format!("{}/chat/completions", m.url()), &[OPENAI_AUTH], &chat_body()).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn openai_rejects_missing_key_model_messages_and_bad_json() {
    let m = start(MockKind::Openai).await;
    let url = format!("{}/v1/chat/completions", m.url());

    let r = post(&url, &[], &chat_body()).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "param": null, "code": null}})
    );

    let r = post(&url, &[OPENAI_AUTH], &json!({"messages": []})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "you must provide a model parameter", "type": "invalid_request_error", "param": null, "code": null}})
    );

    let r = post(&url, &[OPENAI_AUTH], &json!({"model": "gpt-4o"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "Missing required parameter: 'messages'.", "type": "invalid_request_error", "param": "messages", "code": "missing_required_parameter"}})
    );

    let r = send(&url, &[OPENAI_AUTH, ("content-type", "application/json")], b"{\"model\": ".to_vec()).await;
    assert_eq!(r.status, 400);
    let j = r.json();
    assert!(j["error"]["message"].as_str().unwrap().starts_with("We could not parse the JSON body of your request."));
    assert_eq!(j["error"]["type"], "invalid_request_error");

    let r =
        post(&format!("{}/v1/embeddings", m.url()), &[OPENAI_AUTH], &json!({"model": "text-embedding-3-small"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "input");
}

#[tokio::test]
async fn openai_embeddings_return_floats_or_base64() {
    let m = start(MockKind::Openai).await;
    let url = format!("{}/v1/embeddings", m.url());
    let r = post(&url, &[OPENAI_AUTH], &json!({"model": "text-embedding-3-small", "input": ["a", "b"]})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["object"], "list");
    assert_eq!(j["data"].as_array().unwrap().len(), 2);
    assert_eq!(j["data"][1]["index"], 1);
    assert_eq!(j["data"][0]["embedding"].as_array().unwrap().len(), 8);

    let r =
        post(&url, &[OPENAI_AUTH], &json!({"model": "m", "input": "a", "encoding_format": "base64", "dimensions": 4}))
            .await;
    let b64 = r.json()["data"][0]["embedding"].as_str().unwrap().to_string();
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    assert_eq!(bytes.len(), 4 * 4, "4 little-endian f32");
}

#[tokio::test]
async fn openai_unknown_route_is_openais_404() {
    let m = start(MockKind::Openai).await;
    let r = post(&format!("{}/v1/nope", m.url()), &[OPENAI_AUTH], &json!({})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], "Invalid URL (POST /v1/nope)");
}

// ---------------------------------------------------------------- azure

#[tokio::test]
async fn azure_requires_api_key_and_api_version() {
    let m = start(MockKind::Azure).await;
    let base = format!("{}/openai/deployments/gpt4o-eu/chat/completions", m.url());
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});

    let r = post(&format!("{base}?api-version=2024-10-21"), &[], &body).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "401");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Access denied due to invalid subscription key"));

    let r = post(&base, &[("api-key", "k")], &body).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), json!({"error": {"code": "404", "message": "Resource not found"}}));

    // Deployment routes take the model from the path.
    let r = post(&format!("{base}?api-version=2024-10-21"), &[("api-key", "k")], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "gpt4o-eu");
    assert!(r.json()["prompt_filter_results"].is_array());

    let emb = format!("{}/openai/deployments/emb/embeddings?api-version=2024-10-21", m.url());
    let r = post(&emb, &[("api-key", "k")], &json!({"input": "x"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"][0]["object"], "embedding");
}

// ---------------------------------------------------------------- hosted_vllm

#[tokio::test]
async fn vllm_rejects_null_encoding_format_with_the_exact_pydantic_body() {
    let m = start(MockKind::HostedVllm).await;
    let url = format!("{}/v1/embeddings", m.url());
    let r = post(&url, &[], &json!({"model": "bge", "input": ["hi"], "encoding_format": null})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({
            "object": "error",
            "message": "[{'type': 'enum', 'loc': ('body', 'encoding_format'), 'msg': \"Input should be 'float' or 'base64'\", 'input': None, 'ctx': {'expected': \"'float' or 'base64'\"}}]",
            "type": "BadRequestError",
            "param": null,
            "code": 400
        })
    );

    let r = post(&url, &[], &json!({"model": "bge", "input": ["hi"], "encoding_format": "int8"})).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("'input': 'int8'"));

    for fmt in ["float", "base64"] {
        let r = post(&url, &[], &json!({"model": "bge", "input": ["hi"], "encoding_format": fmt})).await;
        assert_eq!(r.status, 200, "{fmt}: {}", r.text());
    }
    // Omitting it is what a fixed gateway does.
    let r = post(&format!("{}/embeddings", m.url()), &[], &json!({"model": "bge", "input": "hi"})).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["id"].as_str().unwrap().starts_with("embd-"));
}

#[tokio::test]
async fn vllm_rejects_null_typed_chat_params_and_missing_fields() {
    let m = start(MockKind::HostedVllm).await;
    let url = format!("{}/v1/chat/completions", m.url());
    let mut body = chat_body();
    body["temperature"] = Value::Null;
    body["max_tokens"] = Value::Null;
    let r = post(&url, &[], &body).await;
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j["type"], "BadRequestError");
    assert_eq!(j["code"], 400);
    assert_eq!(
        j["message"],
        "[{'type': 'float_type', 'loc': ('body', 'temperature'), 'msg': 'Input should be a valid number', 'input': None}, {'type': 'int_type', 'loc': ('body', 'max_tokens'), 'msg': 'Input should be a valid integer', 'input': None}]"
    );

    let r = post(&url, &[], &json!({"model": "llama"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "[{'type': 'missing', 'loc': ('body', 'messages'), 'msg': 'Field required', 'input': {'model': 'llama'}}]"
    );

    let r = post(&url, &[], &json!({"model": "llama", "messages": [], "temperature": 0.2})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["stop_reason"], Value::Null);
}

// ---------------------------------------------------------------- anthropic

#[tokio::test]
async fn anthropic_requires_version_key_and_fields() {
    let m = start(MockKind::Anthropic).await;
    let url = format!("{}/v1/messages", m.url());

    let r = post(&url, &[("x-api-key", "k")], &claude_body()).await;
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j["type"], "error");
    assert_eq!(
        j["error"],
        json!({"type": "invalid_request_error", "message": "anthropic-version: header is required"})
    );
    assert!(j["request_id"].as_str().unwrap().starts_with("req_"));

    let r = post(&url, &[("anthropic-version", "2023-06-01")], &claude_body()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], json!({"type": "authentication_error", "message": "x-api-key header is required"}));

    let mut body = claude_body();
    body.as_object_mut().unwrap().remove("max_tokens");
    let r = post(&url, &ANTHROPIC_HEADERS, &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["message"], "max_tokens: Field required");

    let r = post(&url, &ANTHROPIC_HEADERS, &json!({"model": "c", "max_tokens": 1})).await;
    assert_eq!(r.json()["error"]["message"], "messages: Field required");

    let r = send(&url, &ANTHROPIC_HEADERS, b"{oops".to_vec()).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("The request body is not valid JSON: "));

    // Anthropic itself accepts unknown beta flags.
    let mut h = ANTHROPIC_HEADERS.to_vec();
    h.push(("anthropic-beta", "made-up-2099-01-01"));
    let r = post(&url, &h, &claude_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert!(j["id"].as_str().unwrap().starts_with("msg_01"));
    assert_eq!(j["type"], "message");
    assert_eq!(j["model"], "claude-sonnet-4-5");
    assert_eq!(j["stop_reason"], "end_turn");
    assert!(j["usage"]["input_tokens"].as_u64().unwrap() >= 1);

    let r = post(
        &format!("{}/v1/messages/count_tokens", m.url()),
        &ANTHROPIC_HEADERS,
        &json!({"model": "c", "messages": [{"role": "user", "content": "hello there"}]}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["input_tokens"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn anthropic_default_stream_has_the_real_event_sequence() {
    let m = start(MockKind::Anthropic).await;
    let mut body = claude_body();
    body["stream"] = json!(true);
    let r = post(&format!("{}/v1/messages", m.url()), &ANTHROPIC_HEADERS, &body).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
    let text = r.text();
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    let deltas = names.iter().filter(|n| **n == "content_block_delta").count();
    assert!(deltas >= 2);
    expected.extend(std::iter::repeat_n("content_block_delta", deltas));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    // Every event is `event:` + `data:` + blank line, and data is the same type.
    for block in text.split_terminator("\n\n") {
        let mut lines = block.lines();
        let event = lines.next().unwrap().strip_prefix("event: ").unwrap();
        let data: Value = serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], event);
    }
}

// ---------------------------------------------------------------- bedrock

const AMZ_DATE: &str = "20250101T000000Z";

fn sigv4() -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDMOCKMOCK/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={}",
        "ab".repeat(32)
    )
}

fn bedrock_body() -> Value {
    json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
}

async fn bedrock_post(m: &MockProvider, op: &str, extra: &[(&str, &str)], body: &Value) -> Reply {
    let auth = sigv4();
    let mut h = vec![("authorization", auth.as_str()), ("x-amz-date", AMZ_DATE)];
    h.extend_from_slice(extra);
    let url = format!("{}/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/{op}", m.url());
    post(&url, &h, body).await
}

#[tokio::test]
async fn bedrock_requires_sigv4_and_x_amz_date() {
    let m = start(MockKind::Bedrock).await;
    let url = format!("{}/model/anthropic.claude-3-haiku-20240307-v1:0/invoke", m.url());

    let r = post(&url, &[], &bedrock_body()).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json(), json!({"message": "Missing Authentication Token"}));
    assert!(r.header("x-amzn-errortype").unwrap().starts_with("MissingAuthenticationTokenException"));

    let r = post(&url, &[("authorization", "Bearer abc"), ("x-amz-date", AMZ_DATE)], &bedrock_body()).await;
    assert_eq!(r.status, 403);
    assert!(r.json()["message"].as_str().unwrap().contains("Authorization header requires 'Credential' parameter."));

    let auth = sigv4();
    let r = post(&url, &[("authorization", auth.as_str())], &bedrock_body()).await;
    assert_eq!(r.status, 403);
    assert!(r.json()["message"].as_str().unwrap().contains("'X-Amz-Date'"));

    let wrong_service = auth.replace("/bedrock/", "/s3/");
    let r = post(&url, &[("authorization", wrong_service.as_str()), ("x-amz-date", AMZ_DATE)], &bedrock_body()).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], "Credential should be scoped to correct service: 'bedrock'. ");

    let r = post(&url, &[("authorization", auth.as_str()), ("x-amz-date", AMZ_DATE)], &bedrock_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["type"], "message");
    assert_eq!(j["model"], "claude-3-haiku-20240307");
    assert!(r.header("x-amzn-bedrock-input-token-count").is_some());
}

#[tokio::test]
async fn bedrock_rejects_model_in_body_and_wrong_version() {
    let m = start(MockKind::Bedrock).await;
    let mut body = bedrock_body();
    body["model"] = json!("claude");
    let r = bedrock_post(&m, "invoke", &[], &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"message": "Malformed input request: #: extraneous key [model] is not permitted, please reformat your input and try again."})
    );
    assert!(r.header("x-amzn-errortype").unwrap().starts_with("ValidationException"));

    let mut body = bedrock_body();
    body.as_object_mut().unwrap().remove("anthropic_version");
    let r = bedrock_post(&m, "invoke", &[], &body).await;
    assert_eq!(
        r.json()["message"],
        "Malformed input request: #: required key [anthropic_version] not found, please reformat your input and try again."
    );

    let mut body = bedrock_body();
    body["anthropic_version"] = json!("2023-06-01");
    let r = bedrock_post(&m, "invoke", &[], &body).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("#/anthropic_version: 2023-06-01"));
}

#[tokio::test]
async fn bedrock_rejects_beta_flags_outside_the_allowlist() {
    let m = start_with_betas(MockKind::Bedrock, &["computer-use-2025-01-24"]).await;
    let invalid = json!({"message": "The model returned the following errors: invalid beta flag"});

    let mut body = bedrock_body();
    body["anthropic_beta"] = json!(["computer-use-2025-01-24", "prompt-caching-scope-2026-01-05"]);
    let r = bedrock_post(&m, "invoke", &[], &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), invalid);

    let r =
        bedrock_post(&m, "invoke", &[("anthropic-beta", "computer-use-2025-01-24,unknown-header")], &bedrock_body())
            .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), invalid);

    let mut body = bedrock_body();
    body["anthropic_beta"] = json!(["computer-use-2025-01-24"]);
    let r = bedrock_post(&m, "invoke", &[("anthropic-beta", "computer-use-2025-01-24")], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Splits a Bedrock event stream into (headers, payload) messages with the
/// AWS decoder; panics on a corrupt frame.
fn decode_frames(body: &[u8]) -> Vec<(BTreeMap<String, String>, Vec<u8>)> {
    let mut buf = bytes::Bytes::copy_from_slice(body);
    let mut decoder = MessageFrameDecoder::new();
    let mut out = Vec::new();
    while let DecodedFrame::Complete(msg) = decoder.decode_frame(&mut buf).expect("valid frame") {
        let headers = msg
            .headers()
            .iter()
            .map(|h| {
                let value = h.value().as_string().map(|s| s.as_str().to_string());
                (h.name().as_str().to_string(), value.unwrap_or_default())
            })
            .collect();
        out.push((headers, msg.payload().to_vec()));
    }
    assert!(bytes::Buf::remaining(&buf) == 0, "trailing bytes after the last frame");
    out
}

#[tokio::test]
async fn bedrock_stream_is_binary_eventstream_with_base64_anthropic_events() {
    let m = start(MockKind::Bedrock).await;
    let r = bedrock_post(&m, "invoke-with-response-stream", &[], &bedrock_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type").unwrap(), "application/vnd.amazon.eventstream");
    let frames = decode_frames(&r.body);
    let mut types = Vec::new();
    for (headers, payload) in &frames {
        assert_eq!(headers[":event-type"], "chunk");
        assert_eq!(headers[":message-type"], "event");
        assert_eq!(headers[":content-type"], "application/json");
        let outer: Value = serde_json::from_slice(payload).unwrap();
        let inner = base64::engine::general_purpose::STANDARD.decode(outer["bytes"].as_str().unwrap()).unwrap();
        let event: Value = serde_json::from_slice(&inner).unwrap();
        types.push(event["type"].as_str().unwrap().to_string());
        if event["type"] == "message_stop" {
            assert!(event["amazon-bedrock-invocationMetrics"]["outputTokenCount"].as_u64().is_some());
        }
    }
    assert_eq!(types.first().map(String::as_str), Some("message_start"));
    assert_eq!(types.last().map(String::as_str), Some("message_stop"));
    assert!(!types.iter().any(|t| t == "ping"), "Bedrock sends no ping");
}

/// A Bedrock `throttlingException` frame, as a stream's failure mid-way.
fn throttling() -> EventStreamEvent {
    EventStreamEvent {
        exception: Some(EventStreamException {
            exception_type: "throttlingException".into(),
            message: "Too many tokens".into(),
        }),
        ..Default::default()
    }
}

/// An `event_stream` stub response with `events` and no holds or cuts.
fn event_stream(events: Vec<EventStreamEvent>) -> StubResponse {
    StubResponse::EventStream { status: 200, events, hold_before: None, cut_after: None, headers: BTreeMap::new() }
}

#[tokio::test]
async fn bedrock_eventstream_stub_can_fail_mid_stream() {
    let m = start(MockKind::Bedrock).await;
    let stub = Stub::new(
        StubMatch { path_contains: Some("invoke-with-response-stream".into()), ..StubMatch::default() },
        event_stream(vec![
            EventStreamEvent { chunk: Some(json!({"type": "message_start", "message": {}})), ..Default::default() },
            throttling(),
        ]),
    );
    m.mount(stub).await.unwrap();
    let r = bedrock_post(&m, "invoke-with-response-stream", &[], &bedrock_body()).await;
    let frames = decode_frames(&r.body);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1].0[":message-type"], "exception");
    assert_eq!(frames[1].0[":exception-type"], "throttlingException");
    assert_eq!(serde_json::from_slice::<Value>(&frames[1].1).unwrap(), json!({"message": "Too many tokens"}));
}

// ---------------------------------------------------------------- bedrock converse

const INVALID_BETA: &str = "The model returned the following errors: invalid beta flag";

/// What LiteLLM sends for an OpenAI chat request to a `bedrock/` Claude model.
fn converse_body() -> Value {
    json!({
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "system": [{"text": "be brief"}],
        "inferenceConfig": {"maxTokens": 64},
        "additionalModelRequestFields": {}
    })
}

fn with_betas(betas: Value) -> Value {
    let mut body = converse_body();
    body["additionalModelRequestFields"] = json!({"anthropic_beta": betas});
    body
}

#[tokio::test]
async fn bedrock_converse_default_answer_has_the_real_shape() {
    let m = start(MockKind::Bedrock).await;
    let r = bedrock_post(&m, "converse", &[], &converse_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(r.header("x-amzn-requestid").map(|id| id.len()), Some(36), "a uuid");
    assert!(r.header("x-amzn-bedrock-input-token-count").is_none(), "Converse reports usage in the body");
    let j = r.json();
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["output", "stopReason", "usage", "metrics"]);
    assert_eq!(
        j["output"],
        json!({"message": {"role": "assistant", "content": [{"text": "Hello from the bedrock mock `m1`."}]}})
    );
    assert_eq!(j["stopReason"], "end_turn");
    let (input, output) = (j["usage"]["inputTokens"].as_u64().unwrap(), j["usage"]["outputTokens"].as_u64().unwrap());
    assert!(input > 0 && output > 0);
    assert_eq!(j["usage"]["totalTokens"].as_u64(), Some(input + output));
    assert!(j["metrics"]["latencyMs"].is_u64());

    // The same reply as InvokeModel's, so a scenario does not care which API the gateway picks.
    let invoke = bedrock_post(&m, "invoke", &[], &bedrock_body()).await.json();
    assert_eq!(invoke["content"][0]["text"], j["output"]["message"]["content"][0]["text"]);
}

#[tokio::test]
async fn bedrock_converse_stream_sends_the_five_event_types_in_order_without_a_bytes_wrapper() {
    let m = start(MockKind::Bedrock).await;
    let r = bedrock_post(&m, "converse-stream", &[], &converse_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type").as_deref(), Some("application/vnd.amazon.eventstream"));
    assert!(r.header("x-amzn-requestid").is_some());
    let mut kinds: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut events = BTreeMap::new();
    for (headers, payload) in decode_frames(&r.body) {
        assert_eq!(headers[":message-type"], "event");
        assert_eq!(headers[":content-type"], "application/json");
        let event: Value = serde_json::from_slice(&payload).unwrap();
        assert!(event.get("bytes").is_none(), "Converse events are not wrapped: {event}");
        let kind = headers[":event-type"].clone();
        if kind == "contentBlockDelta" {
            assert_eq!(event["contentBlockIndex"], 0);
            text.push_str(event["delta"]["text"].as_str().unwrap());
        }
        if kinds.last() != Some(&kind) {
            kinds.push(kind.clone());
        }
        events.insert(kind, event);
    }
    assert_eq!(kinds, ["messageStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"]);
    assert_eq!(text, "Hello from the bedrock mock `m1`.");
    assert_eq!(events["messageStart"]["role"], "assistant");
    assert_eq!(events["contentBlockStop"]["contentBlockIndex"], 0);
    assert_eq!(events["messageStop"]["stopReason"], "end_turn");
    let usage = &events["metadata"]["usage"];
    assert_eq!(
        usage["totalTokens"].as_u64(),
        Some(usage["inputTokens"].as_u64().unwrap() + usage["outputTokens"].as_u64().unwrap())
    );
    assert!(events["metadata"]["metrics"]["latencyMs"].is_u64());

    // The same usage as the buffered answer.
    let buffered = bedrock_post(&m, "converse", &[], &converse_body()).await.json();
    assert_eq!(&buffered["usage"], usage);
}

#[tokio::test]
async fn bedrock_converse_requires_the_same_sigv4_as_invoke() {
    let m = start(MockKind::Bedrock).await;
    let url = |op: &str| format!("{}/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/{op}", m.url());
    let invoke = post(&url("invoke"), &[], &bedrock_body()).await;
    assert_eq!(invoke.status, 403);
    let wrong_service = sigv4().replace("/bedrock/", "/s3/");
    let invoke_s3 =
        post(&url("invoke"), &[("authorization", &wrong_service), ("x-amz-date", AMZ_DATE)], &bedrock_body()).await;
    for op in ["converse", "converse-stream"] {
        let r = post(&url(op), &[], &converse_body()).await;
        assert_eq!((r.status, r.json()), (invoke.status, invoke.json()), "{op} without auth");
        assert_eq!(r.header("x-amzn-errortype"), invoke.header("x-amzn-errortype"));
        let r = post(&url(op), &[("authorization", &wrong_service), ("x-amz-date", AMZ_DATE)], &converse_body()).await;
        assert_eq!((r.status, r.json()), (invoke_s3.status, invoke_s3.json()), "{op} scoped to s3");
    }
}

#[tokio::test]
async fn bedrock_converse_rejects_what_bedrock_rejects() {
    let m = start_with_betas(MockKind::Bedrock, &["computer-use-2025-01-24"]).await;
    let body = |patch: Value| {
        let mut b = converse_body();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        serde_json::to_vec(&b).unwrap()
    };
    let user = |content: Value| json!({"role": "user", "content": content});
    let assistant = json!({"role": "assistant", "content": [{"text": "ok"}]});
    // (case, `anthropic-beta` header, body, the exact message or the part of it that matters)
    let cases = vec![
        ("body not JSON", None, b"{not json".to_vec(), "Malformed input request, please reformat your input and try again."),
        ("body not an object", None, b"[1]".to_vec(), "Malformed input request, please reformat your input and try again."),
        (
            "string content (OpenAI style)",
            None,
            body(json!({"messages": [user(json!("hi"))]})),
            "The format of the value at messages.0.content is invalid. Provide a list for the field and try again.",
        ),
        ("string system", None, body(json!({"system": "be brief"})), "The format of the value at system is invalid."),
        (
            "maxTokens 0",
            None,
            body(json!({"inferenceConfig": {"maxTokens": 0}})),
            "1 validation error detected: Value '0' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1",
        ),
        (
            "maxTokens not an integer",
            None,
            body(json!({"inferenceConfig": {"maxTokens": 1.5}})),
            "The format of the value at inferenceConfig.maxTokens is invalid.",
        ),
        (
            "system role and a negative maxTokens",
            None,
            body(json!({"messages": [{"role": "system", "content": [{"text": "x"}]}], "inferenceConfig": {"maxTokens": -1}})),
            "2 validation errors detected: Value 'system' at 'messages.1.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]; Value '-1' at",
        ),
        ("no messages", None, body(json!({"messages": []})), "A conversation must start with a user message."),
        ("assistant first", None, body(json!({"messages": [assistant]})), "A conversation must start with a user message."),
        (
            "two user turns",
            None,
            body(json!({"messages": [user(json!([{"text": "a"}])), user(json!([{"text": "b"}]))]})),
            "A conversation must alternate between user and assistant roles.",
        ),
        ("empty content", None, body(json!({"messages": [user(json!([]))]})), "The content field in the Message object at messages.0 is empty."),
        (
            "empty text",
            None,
            body(json!({"messages": [user(json!([{"text": "a"}, {"text": ""}]))]})),
            "The text field in the ContentBlock object at messages.0.content.1 is blank.",
        ),
        (
            "whitespace-only text",
            None,
            body(json!({"messages": [user(json!([{"text": " \n"}]))]})),
            "The model returned the following errors: messages: text content blocks must contain non-whitespace text",
        ),
        (
            "anthropic_beta not a list",
            None,
            serde_json::to_vec(&with_betas(json!("computer-use-2025-01-24"))).unwrap(),
            "Malformed input request: #/anthropic_beta: expected type: JSONArray, found: String, please reformat your input and try again.",
        ),
        (
            "beta flag outside the allowlist in additionalModelRequestFields",
            None,
            serde_json::to_vec(&with_betas(json!(["computer-use-2025-01-24", "prompt-caching-scope-2026-01-05"]))).unwrap(),
            INVALID_BETA,
        ),
        (
            "beta flag outside the allowlist in the header",
            Some("computer-use-2025-01-24,unknown-header"),
            serde_json::to_vec(&converse_body()).unwrap(),
            INVALID_BETA,
        ),
    ];
    for op in ["converse", "converse-stream"] {
        for (case, beta_header, body, message) in &cases {
            let auth = sigv4();
            let mut h =
                vec![("content-type", "application/json"), ("authorization", auth.as_str()), ("x-amz-date", AMZ_DATE)];
            h.extend(beta_header.map(|flags| ("anthropic-beta", flags)));
            let url = format!("{}/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/{op}", m.url());
            let r = send(&url, &h, body.clone()).await;
            assert_eq!(r.status, 400, "{op}: {case}: {}", r.text());
            let errortype = r.header("x-amzn-errortype").unwrap_or_default();
            assert_eq!(
                errortype, "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
                "{op}: {case}"
            );
            let got = r.json();
            let got = got["message"].as_str().unwrap_or_default();
            assert!(got.starts_with(message), "{op}: {case}: {got}");
            if *message == INVALID_BETA {
                assert_eq!(r.json(), json!({"message": INVALID_BETA}), "{op}: {case}: the invoke path's exact body");
            }
        }
    }

    // Allowed flags pass, from the body and the header.
    let r = bedrock_post(
        &m,
        "converse",
        &[("anthropic-beta", "computer-use-2025-01-24")],
        &with_betas(json!(["computer-use-2025-01-24"])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = bedrock_post(&m, "converse-stream", &[], &with_betas(json!(["computer-use-2025-01-24"]))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A conversation that alternates, with a null member (absent in AWS's JSON protocol).
    let mut body = converse_body();
    body["messages"] = json!([
        {"role": "user", "content": [{"text": "a"}]},
        {"role": "assistant", "content": [{"text": "b"}]},
        {"role": "user", "content": [{"text": "c"}]}
    ]);
    body["toolConfig"] = Value::Null;
    let r = bedrock_post(&m, "converse", &[], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn bedrock_unknown_operations_still_get_unknown_operation_404() {
    let m = start(MockKind::Bedrock).await;
    for op in ["converse-streams", "conversation", "invoke/converse"] {
        let r = bedrock_post(&m, op, &[], &converse_body()).await;
        assert_eq!(r.status, 404, "{op}");
        assert_eq!(r.json()["Output"]["__type"], "com.amazon.coral.service#UnknownOperationException", "{op}");
    }
}

#[tokio::test]
async fn bedrock_stubs_and_faults_answer_on_converse_routes() {
    let m = start(MockKind::Bedrock).await;
    m.mount(Stub::new(
        StubMatch { path_contains: Some("/converse-stream".into()), ..StubMatch::default() },
        event_stream(vec![
            EventStreamEvent {
                event: Some("messageStart".into()),
                payload: Some(json!({"role": "assistant"})),
                ..Default::default()
            },
            throttling(),
        ]),
    ))
    .await
    .unwrap();
    m.mount(Stub {
        matcher: StubMatch {
            body_contains_json: Some(json!({"system": [{"text": "stub me"}]})),
            ..StubMatch::default()
        },
        response: StubResponse::Json { status: 200, body: json!({"stubbed": true}), headers: BTreeMap::new() },
        times: Some(1),
    })
    .await
    .unwrap();
    m.mount(Stub::new(
        StubMatch { path_contains: Some("/converse".into()), ..StubMatch::default() },
        StubResponse::Fault(Fault::Malformed),
    ))
    .await
    .unwrap();

    let r = bedrock_post(&m, "converse-stream", &[], &converse_body()).await;
    let frames = decode_frames(&r.body);
    assert_eq!(frames.len(), 2);
    // A named Converse event: its type in the header, its JSON as the payload.
    assert_eq!(frames[0].0[":event-type"], "messageStart");
    let payload: Value = serde_json::from_slice(&frames[0].1).unwrap();
    assert_eq!(payload["role"], "assistant");
    assert_eq!(frames[1].0[":exception-type"], "throttlingException");

    let mut body = converse_body();
    body["system"] = json!([{"text": "stub me"}]);
    let r = bedrock_post(&m, "converse", &[], &body).await;
    assert_eq!(r.json(), json!({"stubbed": true}));

    // The malformed fault cuts the route's own default body in half.
    let r = bedrock_post(&m, "converse", &[], &converse_body()).await;
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("{\"output\":{\"message\":"), "{}", r.text());
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    // The strict profile still answers first.
    let r = post(&format!("{}/model/m/converse", m.url()), &[], &converse_body()).await;
    assert_eq!(r.status, 403);
}

// ---------------------------------------------------------------- vertex_ai

fn vertex_url(m: &MockProvider, verb: &str) -> String {
    format!(
        "{}/v1/projects/p1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:{verb}",
        m.url()
    )
}

fn vertex_body() -> Value {
    json!({"anthropic_version": "vertex-2023-10-16", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn vertex_requires_bearer_version_and_no_model() {
    let m = start(MockKind::VertexAi).await;
    let url = vertex_url(&m, "rawPredict");
    let auth = ("authorization", "Bearer ya29.mock");

    let r = post(&url, &[], &vertex_body()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(r.json()["error"]["code"], 401);

    let mut body = vertex_body();
    body["model"] = json!("claude-sonnet-4-5");
    let r = post(&url, &[auth], &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        json!({"type": "invalid_request_error", "message": "model: Extra inputs are not permitted"})
    );
    assert!(r.json()["request_id"].as_str().unwrap().starts_with("req_vrtx_"));

    let mut body = vertex_body();
    body["anthropic_version"] = json!("bedrock-2023-05-31");
    let r = post(&url, &[auth], &body).await;
    assert_eq!(r.json()["error"]["message"], "anthropic_version: Input should be 'vertex-2023-10-16'");

    let r = post(&url, &[auth], &vertex_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "claude-sonnet-4-5-20250929");
    assert!(r.json()["id"].as_str().unwrap().starts_with("msg_vrtx_"));

    let mut body = vertex_body();
    body["stream"] = json!(true);
    let r = post(&vertex_url(&m, "streamRawPredict"), &[auth], &body).await;
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("event: message_start\ndata: "));
}

#[tokio::test]
async fn vertex_rejects_beta_flags_outside_the_allowlist() {
    let m = start_with_betas(MockKind::VertexAi, &["context-1m-2025-08-07"]).await;
    let url = vertex_url(&m, "rawPredict");
    let auth = ("authorization", "Bearer ya29.mock");
    let r =
        post(&url, &[auth, ("anthropic-beta", "context-1m-2025-08-07,web-search-2025-03-05")], &vertex_body()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        json!({"type": "invalid_request_error", "message": "Unexpected value(s) `web-search-2025-03-05` for the `anthropic-beta` header. Please consult our documentation at docs.anthropic.com or try again without the header."})
    );
    let r = post(&url, &[auth, ("anthropic-beta", "context-1m-2025-08-07")], &vertex_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

// ---------------------------------------------------------------- azure_ai

#[tokio::test]
async fn azure_ai_accepts_either_key_header_and_checks_version_and_betas() {
    let m = start_with_betas(MockKind::AzureAi, &["prompt-caching-scope-2026-01-05"]).await;
    let url = format!("{}/anthropic/v1/messages", m.url());
    let version = ("anthropic-version", "2023-06-01");

    let r = post(&url, &[version], &claude_body()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "401");

    for key in ["x-api-key", "api-key"] {
        let r = post(&url, &[(key, "k"), version], &claude_body()).await;
        assert_eq!(r.status, 200, "{key}: {}", r.text());
        assert!(r.json()["id"].as_str().unwrap().starts_with("msg_01"));
    }

    let r = post(&url, &[("api-key", "k")], &claude_body()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["message"], "anthropic-version: header is required");

    let r = post(
        &url,
        &[("api-key", "k"), version, ("anthropic-beta", "prompt-caching-scope-2026-01-05,mcp-servers-2025-12-04")],
        &claude_body(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["type"], "error");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("`mcp-servers-2025-12-04`"));

    // Also served at /v1/messages.
    let r = post(&format!("{}/v1/messages", m.url()), &[("api-key", "k"), version], &claude_body()).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn non_strict_mock_accepts_what_strict_rejects() {
    let m = MockProvider::start(MockKind::Bedrock, "lenient", MockOptions { strict: false, beta_allowlist: None })
        .await
        .unwrap();
    let r = post(&format!("{}/model/x/invoke", m.url()), &[], &json!({"model": "x", "messages": []})).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

// ---------------------------------------------------------------- stubs and journal

#[tokio::test]
async fn stub_matches_on_body_subset_and_header_and_runs_out_after_times() {
    let m = start(MockKind::Openai).await;
    let stub = Stub {
        matcher: StubMatch {
            method: Some("post".into()),
            path: Some("/v1/chat/completions".into()),
            body_contains_json: Some(json!({"model": "gpt-4o-mini", "messages": [{"role": "user"}]})),
            header: Some(("X-Tenant".into(), "blue".into())),
            ..StubMatch::default()
        },
        response: StubResponse::Json {
            status: 201,
            body: json!({"stubbed": true}),
            headers: BTreeMap::from([("x-stub".into(), "yes".into())]),
        },
        times: Some(2),
    };
    m.mount(stub).await.unwrap();
    let url = format!("{}/v1/chat/completions", m.url());

    // Wrong header value: default answer.
    let r = post(&url, &[OPENAI_AUTH, ("x-tenant", "red")], &chat_body()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["object"], "chat.completion");

    for _ in 0..2 {
        let r = post(&url, &[OPENAI_AUTH, ("x-tenant", "blue")], &chat_body()).await;
        assert_eq!(r.status, 201);
        assert_eq!(r.json(), json!({"stubbed": true}));
        assert_eq!(r.header("x-stub").as_deref(), Some("yes"));
    }
    // Used up: falls through to the default.
    let r = post(&url, &[OPENAI_AUTH, ("x-tenant", "blue")], &chat_body()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["object"], "chat.completion");
    assert_eq!(m.request_count(), 4);
}

#[tokio::test]
async fn explicit_null_in_a_matcher_only_matches_an_explicit_null() {
    let m = start(MockKind::Openai).await;
    let stub = Stub::new(
        StubMatch { body_contains_json: Some(json!({"encoding_format": null})), ..StubMatch::default() },
        StubResponse::Json { status: 418, body: json!({}), headers: BTreeMap::new() },
    );
    m.mount(stub).await.unwrap();
    let url = format!("{}/v1/embeddings", m.url());
    let r = post(&url, &[OPENAI_AUTH], &json!({"model": "e", "input": "x"})).await;
    assert_eq!(r.status, 200);
    let r = post(&url, &[OPENAI_AUTH], &json!({"model": "e", "input": "x", "encoding_format": null})).await;
    assert_eq!(r.status, 418);
}

#[tokio::test]
async fn strict_profile_runs_before_stubs() {
    let m = start(MockKind::Anthropic).await;
    m.mount(Stub::new(
        StubMatch::post("/v1/messages"),
        StubResponse::Json { status: 200, body: json!({"ok": 1}), headers: BTreeMap::new() },
    ))
    .await
    .unwrap();
    let r = post(&format!("{}/v1/messages", m.url()), &[("x-api-key", "k")], &claude_body()).await;
    assert_eq!(r.status, 400, "a request the provider rejects never reaches a stub");
}

#[tokio::test]
async fn journal_records_every_request_as_sent() {
    let m = start(MockKind::Azure).await;
    let url = format!("{}/openai/deployments/d1/chat/completions?api-version=2024-10-21&x=a%20b", m.url());
    post(&url, &[("API-Key", "k"), ("X-Trace", "t1")], &json!({"messages": [{"role": "user", "content": "hi"}]})).await;
    post(&format!("{}/other", m.url()), &[], &json!({})).await;
    let j = m.journal();
    assert_eq!(j.len(), 2);
    let first = &j[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/openai/deployments/d1/chat/completions");
    assert_eq!(first.query.as_deref(), Some("api-version=2024-10-21&x=a%20b"));
    assert_eq!(first.query_param("x").as_deref(), Some("a b"));
    assert_eq!(first.header("api-key"), Some("k"));
    assert!(first.headers.iter().any(|(n, v)| n == "x-trace" && v == "t1"), "names are lower-case");
    assert_eq!(first.json, Some(json!({"messages": [{"role": "user", "content": "hi"}]})));
    assert_eq!(serde_json::from_slice::<Value>(&first.body).unwrap(), first.json.clone().unwrap());
    // Rejected requests are recorded too.
    assert_eq!(j[1].path, "/other");
    m.clear_journal();
    assert_eq!(m.request_count(), 0);
}

#[tokio::test]
async fn reset_removes_stubs() {
    let m = start(MockKind::Openai).await;
    m.mount(Stub::new(StubMatch::default(), StubResponse::Fault(Fault::Status { code: 500 }))).await.unwrap();
    let url = format!("{}/v1/chat/completions", m.url());
    assert_eq!(post(&url, &[OPENAI_AUTH], &chat_body()).await.status, 500);
    m.reset().await;
    assert_eq!(post(&url, &[OPENAI_AUTH], &chat_body()).await.status, 200);
    // The strict profile is back after the reset.
    assert_eq!(post(&url, &[], &chat_body()).await.status, 401);
}

#[tokio::test]
async fn invalid_stubs_are_refused_with_the_field_named() {
    let m = start(MockKind::Openai).await;
    let bad =
        Stub::new(StubMatch::default(), StubResponse::Json { status: 42, body: json!({}), headers: BTreeMap::new() });
    let err = m.mount(bad).await.unwrap_err();
    assert!(matches!(err, MockError::InvalidStub { .. }));
    assert!(err.to_string().contains("response.status"), "{err}");
    let bad = Stub::new(
        StubMatch::default(),
        StubResponse::Sse {
            status: 200,
            events: vec![StubEvent::data("x")],
            hold_before: None,
            cut_after: Some(1),
            headers: BTreeMap::new(),
        },
    );
    assert!(m.mount(bad).await.unwrap_err().to_string().contains("cut_after"));
    // An event-stream frame is one of chunk, named event or exception.
    for (event, want) in [
        (EventStreamEvent::default(), "events[0]: set exactly one of"),
        (
            EventStreamEvent { chunk: Some(json!({})), event: Some("messageStart".into()), ..Default::default() },
            "events[0]: set exactly one of",
        ),
        (
            EventStreamEvent { chunk: Some(json!({})), payload: Some(json!({})), ..Default::default() },
            "`payload` goes with `event`",
        ),
    ] {
        let bad = Stub::new(StubMatch::default(), event_stream(vec![event]));
        let err = m.mount(bad).await.unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn stubs_deserialize_from_scenario_yaml_and_deny_unknown_fields() {
    let yaml = r#"
matcher: { method: POST, path: /v1/messages, header: [anthropic-beta, x] }
response:
  sse:
    events:
      - { event: message_start, data: '{"type":"message_start"}' }
      - { comment: true, data: keep-alive, delay_ms: 5 }
      - { event: error, data: '{"type":"error"}' }
    hold_before: [1, g1]
    cut_after: 2
times: 3
"#;
    let stub: Stub = serde_yaml_ng::from_str(yaml).unwrap();
    assert_eq!(stub.times, Some(3));
    let StubResponse::Sse { events, hold_before, cut_after, .. } = &stub.response else { panic!("sse") };
    assert_eq!(events[1], StubEvent::comment("keep-alive").delay(5));
    assert_eq!(hold_before, &Some((1, "g1".to_string())));
    assert_eq!(*cut_after, Some(2));

    let fault: Stub =
        serde_yaml_ng::from_str("response: { fault: { latency: { ms: 0, then: { fault: reset } } } }").unwrap();
    assert_eq!(
        fault.response,
        StubResponse::Fault(Fault::Latency { ms: 0, then: Box::new(StubResponse::Fault(Fault::Reset)) })
    );
    let raw: Stub = serde_yaml_ng::from_str(
        "response: { raw: { status: 502, body: '<html>bad gateway</html>', content_type: text/html } }",
    )
    .unwrap();
    assert!(matches!(raw.response, StubResponse::Raw { ref body, .. } if body == b"<html>bad gateway</html>"));

    let err = serde_yaml_ng::from_str::<Stub>("response: { json: { body: {}, stauts: 200 } }").unwrap_err();
    assert!(err.to_string().contains("stauts"), "{err}");
    let err = serde_yaml_ng::from_str::<Stub>("matcher: { pth: /x }\nresponse: { fault: reset }").unwrap_err();
    assert!(err.to_string().contains("pth"), "{err}");
    assert_eq!("vertex_ai".parse::<MockKind>().unwrap(), MockKind::VertexAi);
    assert_eq!(serde_yaml_ng::from_str::<MockKind>("hosted_vllm").unwrap(), MockKind::HostedVllm);
}

#[test]
fn stubs_also_accept_yaml_tags_and_json() {
    let tagged: Stub =
        serde_yaml_ng::from_str("response: !fault\n  rate_limited: { retry_after_secs: 3 }\ntimes: 1").unwrap();
    assert_eq!(tagged.response, StubResponse::Fault(Fault::RateLimited { retry_after_secs: 3 }));
    let tagged: Stub = serde_yaml_ng::from_str("response: !json { status: 503, body: { a: 1 } }").unwrap();
    assert!(matches!(tagged.response, StubResponse::Json { status: 503, .. }));

    let json: Stub = serde_json::from_value(json!({
        "matcher": {"path_contains": "/messages"},
        "response": {"fault": {"latency": {"ms": 5, "then": {"fault": "malformed"}}}}
    }))
    .unwrap();
    assert_eq!(
        json.response,
        StubResponse::Fault(Fault::Latency { ms: 5, then: Box::new(StubResponse::Fault(Fault::Malformed)) })
    );
    // Round trip through the serializer.
    let back: Stub = serde_json::from_value(serde_json::to_value(&json).unwrap()).unwrap();
    assert_eq!(back, json);
    let err = serde_json::from_value::<Stub>(json!({"response": {"fault": "explode"}})).unwrap_err();
    assert!(err.to_string().contains("explode"), "{err}");
}

// ---------------------------------------------------------------- streams

/// Reads chunks until the buffer holds `n` complete SSE blocks.
async fn read_blocks(resp: &mut reqwest::Response, buf: &mut String, n: usize) {
    while buf.matches("\n\n").count() < n {
        let chunk =
            tokio::time::timeout(GUARD, resp.chunk()).await.expect("no hang").expect("chunk").expect("more data");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn held_stream_sends_event_zero_then_waits_for_the_gate() {
    let m = start(MockKind::Openai).await;
    let events = vec![
        StubEvent::data(r#"{"n":0}"#),
        StubEvent::comment("OPENROUTER PROCESSING").delay(1),
        StubEvent::data(r#"{"n":1}"#),
        StubEvent::named("error", r#"{"error":{"message":"boom"}}"#),
        StubEvent::data("[DONE]"),
    ];
    m.mount(Stub::new(
        StubMatch::post("/v1/chat/completions"),
        StubResponse::Sse {
            status: 200,
            events,
            hold_before: Some((1, "first-token".into())),
            cut_after: None,
            headers: BTreeMap::new(),
        },
    ))
    .await
    .unwrap();
    let mut body = chat_body();
    body["stream"] = json!(true);
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", m.url()))
        .header("authorization", "Bearer k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream; charset=utf-8");

    let mut got = String::new();
    read_blocks(&mut resp, &mut got, 1).await;
    assert_eq!(got, "data: {\"n\":0}\n\n");

    tokio::time::timeout(GUARD, m.wait_until_held("first-token")).await.expect("stream parks on the gate");
    assert_eq!(m.held_gates(), vec!["first-token".to_string()]);
    // The server has written nothing after event 0, so no data can be ready.
    assert!(resp.chunk().now_or_never().is_none(), "nothing after event 0 before the release");

    m.release("first-token");
    let rest = tokio::time::timeout(GUARD, resp.bytes()).await.expect("no hang").expect("stream completes");
    assert_eq!(
        String::from_utf8_lossy(&rest),
        ": OPENROUTER PROCESSING\n\ndata: {\"n\":1}\n\nevent: error\ndata: {\"error\":{\"message\":\"boom\"}}\n\ndata: [DONE]\n\n"
    );
    assert!(m.held_gates().is_empty());
}

#[tokio::test]
async fn dropping_the_mock_ends_a_held_stream() {
    let m = start(MockKind::Anthropic).await;
    m.mount(Stub::new(
        StubMatch::default(),
        StubResponse::Sse {
            status: 200,
            events: vec![StubEvent::named("ping", r#"{"type":"ping"}"#)],
            hold_before: Some((1, "never".into())),
            cut_after: None,
            headers: BTreeMap::new(),
        },
    ))
    .await
    .unwrap();
    let mut resp =
        client()
            .post(format!("{}/v1/messages", m.url()))
            .headers(reqwest::header::HeaderMap::from_iter(ANTHROPIC_HEADERS.map(|(n, v)| {
                (reqwest::header::HeaderName::from_static(n), reqwest::header::HeaderValue::from_static(v))
            })))
            .json(&claude_body())
            .send()
            .await
            .unwrap();
    let mut got = String::new();
    read_blocks(&mut resp, &mut got, 1).await;
    tokio::time::timeout(GUARD, m.wait_until_held("never")).await.expect("parked");
    drop(m);
    let rest = tokio::time::timeout(GUARD, resp.bytes()).await.expect("the stream ends, not hangs");
    assert!(rest.is_err(), "the body is cut, not completed");
}

#[tokio::test]
async fn cut_stream_delivers_whole_events_then_half_an_event_then_fails() {
    let m = start(MockKind::Openai).await;
    let events = vec![StubEvent::data(r#"{"n":0}"#), StubEvent::data(r#"{"n":1,"long":"xxxxxxxxxxxxxxxx"}"#)];
    m.mount(Stub::new(
        StubMatch::default(),
        StubResponse::Sse { status: 200, events, hold_before: None, cut_after: Some(1), headers: BTreeMap::new() },
    ))
    .await
    .unwrap();
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", m.url()))
        .header("authorization", "Bearer k")
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    let mut got = Vec::new();
    let err = loop {
        match tokio::time::timeout(GUARD, resp.chunk()).await.expect("no hang") {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => panic!("the body ended cleanly; expected a cut"),
            Err(e) => break e,
        }
    };
    assert!(err.is_body() || err.is_decode() || err.is_request(), "{err:?}");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("data: {\"n\":0}\n\ndata: {\"n\":1"), "{text}");
    assert!(!text.ends_with("\n\n"), "second event is incomplete: {text}");
}

#[tokio::test]
async fn openai_default_stream_uses_real_chunk_framing() {
    let m = start(MockKind::Openai).await;
    let mut body = chat_body();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(&format!("{}/v1/chat/completions", m.url()), &[OPENAI_AUTH], &body).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let chunks: Vec<Value> = text
        .split_terminator("\n\n")
        .map(|b| b.strip_prefix("data: ").expect("only data lines"))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, "Hello from the openai mock `m1`.");
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn reset_fault_drops_the_connection_without_a_response() {
    let m = start(MockKind::Openai).await;
    m.mount(Stub::new(StubMatch::default(), StubResponse::Fault(Fault::Reset)).times(1)).await.unwrap();
    let result = tokio::time::timeout(
        GUARD,
        client()
            .post(format!("{}/v1/chat/completions", m.url()))
            .header("authorization", "Bearer k")
            .json(&chat_body())
            .send(),
    )
    .await
    .expect("no hang");
    let err = result.expect_err("no response");
    assert!(err.is_request() || err.is_connect(), "{err:?}");
    assert_eq!(m.request_count(), 1, "the request was read and recorded");
    // `times: 1`: the next request is answered normally.
    let r = post(&format!("{}/v1/chat/completions", m.url()), &[OPENAI_AUTH], &chat_body()).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn rate_limited_fault_sends_429_with_retry_after() {
    let m = start(MockKind::Openai).await;
    m.mount(Stub::new(StubMatch::default(), StubResponse::Fault(Fault::RateLimited { retry_after_secs: 2 })))
        .await
        .unwrap();
    let r = post(&format!("{}/v1/chat/completions", m.url()), &[OPENAI_AUTH], &chat_body()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("2"));
    assert_eq!(
        r.json(),
        json!({"error": {"message": "Rate limit reached for requests. Please try again later.", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}})
    );

    let b = start(MockKind::Bedrock).await;
    b.mount(Stub::new(StubMatch::default(), StubResponse::Fault(Fault::RateLimited { retry_after_secs: 7 })))
        .await
        .unwrap();
    let r = bedrock_post(&b, "invoke", &[], &bedrock_body()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("7"));
    assert!(r.header("x-amzn-errortype").unwrap().starts_with("ThrottlingException"));
}

#[tokio::test]
async fn status_fault_uses_the_providers_error_shape() {
    let m = start(MockKind::Anthropic).await;
    m.mount(Stub::new(StubMatch::default(), StubResponse::Fault(Fault::Status { code: 529 }))).await.unwrap();
    let r = post(&format!("{}/v1/messages", m.url()), &ANTHROPIC_HEADERS, &claude_body()).await;
    assert_eq!(r.status, 529);
    assert_eq!(r.json()["error"], json!({"type": "overloaded_error", "message": "Overloaded"}));
}

#[tokio::test]
async fn malformed_fault_sends_200_with_broken_json() {
    let m = start(MockKind::Openai).await;
    m.mount(Stub::new(StubMatch::default(), StubResponse::Fault(Fault::Malformed))).await.unwrap();
    let r = post(&format!("{}/v1/chat/completions", m.url()), &[OPENAI_AUTH], &chat_body()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    assert!(r.text().starts_with("{\"id\":\"chatcmpl-"));
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());
}

#[tokio::test]
async fn latency_wraps_any_response() {
    let m = start(MockKind::Openai).await;
    let inner = StubResponse::Raw {
        status: 502,
        body: b"<html>502</html>".to_vec(),
        content_type: "text/html".into(),
        headers: BTreeMap::new(),
    };
    m.mount(Stub::new(StubMatch::default(), StubResponse::Fault(Fault::Latency { ms: 1, then: Box::new(inner) })))
        .await
        .unwrap();
    let r = post(&format!("{}/v1/chat/completions", m.url()), &[OPENAI_AUTH], &chat_body()).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type").as_deref(), Some("text/html"));
    assert_eq!(r.text(), "<html>502</html>");
}

// ---------------------------------------------------------------- wire level

async fn raw_exchange(url: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(GUARD, s.read_to_end(&mut out)).await.expect("no hang").unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn front_reads_chunked_bodies_and_refuses_garbage() {
    let m = start(MockKind::HostedVllm).await;
    let body = r#"{"model":"bge","input":"hi"}"#;
    let (a, b) = body.split_at(10);
    let req = format!(
        "POST /v1/embeddings HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let resp = raw_exchange(&m.url(), req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert_eq!(m.journal()[0].json, Some(serde_json::from_str(body).unwrap()));

    let resp = raw_exchange(&m.url(), b"NONSENSE\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{resp}");
    assert_eq!(m.request_count(), 1, "unparseable requests are not journaled");
}

/// OpenAI's Responses API: a `response` object, its named-event stream
/// ending in `response.completed` (which carries the whole response), and
/// the strict profile's `input` check. vLLM has no such route.
#[tokio::test]
async fn openai_serves_the_responses_api_whole_and_streamed() {
    let m = start(MockKind::Openai).await;
    let url = format!("{}/v1/responses", m.url());
    let auth = [("authorization", "Bearer sk-test")];
    let r = post(&url, &auth, &json!({"model": "gpt-4o", "input": "hi"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert!(v["usage"]["input_tokens"].as_u64().is_some());

    let r = post(&url, &auth, &json!({"model": "gpt-4o", "input": "hi", "stream": true})).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    assert!(names.contains(&"response.output_text.delta"));
    assert!(!text.contains("[DONE]"), "the Responses API has no [DONE]");

    let r = post(&url, &auth, &json!({"model": "gpt-4o"})).await;
    assert_eq!(r.status, 400, "input is required: {}", r.text());
    let vllm = start(MockKind::HostedVllm).await;
    let r = post(&format!("{}/v1/responses", vllm.url()), &[], &json!({"model": "m", "input": "hi"})).await;
    assert_eq!(r.status, 404);
}
