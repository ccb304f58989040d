//! Builders for hand-written exchanges.

use postmortem::contracts::{ClientRequest, ClientResponse, Exchange, Setup, UpstreamCall};
use postmortem::mocks::{AnswerEnd, MockAnswer, MockKind, RecordedRequest};
use serde_json::{json, Value};

pub const OPENAI_KEY: &str = "test-openai-credential";
pub const ANTHROPIC_KEY: &str = "test-anthropic-credential";
pub const MASTER_KEY: &str = "sk-test-master-0102";

/// One hand-written exchange and the contract it must break (`None`: it
/// must pass every contract). `also`: other contracts the same fault
/// necessarily breaks.
pub struct Case {
    pub name: &'static str,
    pub exchange: Exchange,
    pub setup: Setup,
    pub expect: Option<&'static str>,
    pub also: Vec<&'static str>,
}

pub fn case(name: &'static str, expect: Option<&'static str>, exchange: Exchange) -> Case {
    Case { name, exchange, setup: setup(), expect, also: Vec::new() }
}

/// Two mocks (`openai`, `anthropic`) with a credential each, a master key,
/// and a sentinel mock nothing points at.
pub fn setup() -> Setup {
    let config = json!({
        "model_list": [
            {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:1001/v1", "api_key": OPENAI_KEY}},
            {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-x", "api_base": "http://127.0.0.1:1002", "api_key": ANTHROPIC_KEY}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
    });
    let mocks = [
        ("openai".to_string(), "http://127.0.0.1:1001".to_string()),
        ("anthropic".to_string(), "http://127.0.0.1:1002".to_string()),
        ("sentinel".to_string(), "http://127.0.0.1:1003".to_string()),
    ]
    .into_iter()
    .collect();
    Setup::from_config(&config, &mocks, &Default::default())
}

pub fn request(path: &str, body: Value) -> ClientRequest {
    ClientRequest {
        method: "POST".into(),
        path: path.into(),
        headers: vec![
            ("authorization".into(), format!("Bearer {MASTER_KEY}")),
            ("content-type".into(), "application/json".into()),
        ],
        body: serde_json::to_vec(&body).unwrap(),
    }
}

pub fn chat(body: Value) -> ClientRequest {
    request("/v1/chat/completions", body)
}

pub fn messages(body: Value) -> ClientRequest {
    request("/v1/messages", body)
}

pub fn json_response(status: u16, body: Value) -> ClientResponse {
    ClientResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(&body).unwrap(),
        complete: true,
        elapsed: None,
    }
}

pub fn sse_response(body: Vec<u8>) -> ClientResponse {
    ClientResponse {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream; charset=utf-8".into())],
        body,
        complete: true,
        elapsed: None,
    }
}

/// `data: <json>` events (strings are sent as they are, e.g. `[DONE]`).
pub fn openai_sse(events: &[Value]) -> Vec<u8> {
    let mut out = String::new();
    for e in events {
        let data = match e {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("data: {data}\n\n"));
    }
    out.into_bytes()
}

/// Named events, the name taken from each event's `type`.
pub fn anthropic_sse(events: &[Value]) -> Vec<u8> {
    let mut out = String::new();
    for e in events {
        out.push_str(&format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")));
    }
    out.into_bytes()
}

pub fn answer(status: u16, content_type: &str, body: Vec<u8>) -> MockAnswer {
    MockAnswer {
        status: Some(status),
        headers: vec![("content-type".into(), content_type.into())],
        body,
        end: AnswerEnd::Complete,
        seq: 0,
    }
}

pub fn json_answer(status: u16, body: Value) -> MockAnswer {
    answer(status, "application/json", serde_json::to_vec(&body).unwrap())
}

pub fn upstream(
    provider: &str,
    kind: MockKind,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
    a: MockAnswer,
) -> UpstreamCall {
    let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    UpstreamCall {
        provider: provider.into(),
        kind,
        request: RecordedRequest::new("POST", path, None, headers, serde_json::to_vec(&body).unwrap()),
        answer: a,
    }
}

/// A call to the `openai` mock with its own credential.
pub fn to_openai(body: Value, a: MockAnswer) -> UpstreamCall {
    let auth = format!("Bearer {OPENAI_KEY}");
    upstream("openai", MockKind::Openai, "/v1/chat/completions", &[("authorization", &auth)], body, a)
}

/// A call to the `anthropic` mock with its own credential.
pub fn to_anthropic(body: Value, a: MockAnswer) -> UpstreamCall {
    upstream("anthropic", MockKind::Anthropic, "/v1/messages", &[("x-api-key", ANTHROPIC_KEY)], body, a)
}

pub fn exchange(request: ClientRequest, response: ClientResponse, upstream: Vec<UpstreamCall>) -> Exchange {
    Exchange { request, response, upstream, attribution: Default::default(), egress: Vec::new() }
}

pub fn completion(content: &str) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-2024-08-06",
           "system_fingerprint": "fp_1",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop", "logprobs": null}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})
}

pub fn message(text: &str) -> Value {
    json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
           "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
           "usage": {"input_tokens": 10, "output_tokens": 2}})
}

pub fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

/// A complete Anthropic stream saying `text`.
pub fn anthropic_events(text: &str, stop: &str) -> Vec<Value> {
    vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 2}}),
        json!({"type": "message_stop"}),
    ]
}

pub fn chat_body() -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
}
