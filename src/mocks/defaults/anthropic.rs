//! Anthropic-format bodies (anthropic, azure_ai, vertex_ai, bedrock):
//! messages, the streaming event sequence, and count_tokens.

use serde_json::{json, Value};

use super::super::ids::IdGen;
use super::super::journal::RecordedRequest;
use super::super::route::Route;
use super::super::stub::StubEvent;
use super::super::MockKind;
use super::{completion_tokens, deltas, prompt_tokens, reply_text};

/// The model name the provider reports: the body's for Anthropic and
/// Foundry; derived from the URL for Vertex (`claude-x@date` -> `claude-x-date`)
/// and Bedrock (`us.anthropic.claude-x-v1:0` -> `claude-x`).
pub(super) fn model_of(route: &Route, req: &RecordedRequest) -> String {
    match route {
        Route::VertexPredict { model, .. } => model.replace('@', "-"),
        Route::BedrockInvoke { model, .. } => bedrock_model_name(model),
        _ => req.json_field("model").and_then(Value::as_str).unwrap_or("unknown").to_string(),
    }
}

fn bedrock_model_name(id: &str) -> String {
    let after_vendor = match id.find("anthropic.") {
        Some(i) => &id[i + "anthropic.".len()..],
        None => id,
    };
    // Drop a `-v1:0` style suffix.
    match after_vendor.rfind("-v") {
        Some(i) if after_vendor[i + 2..].chars().next().is_some_and(|c| c.is_ascii_digit()) => {
            after_vendor[..i].to_string()
        }
        _ => after_vendor.to_string(),
    }
}

fn message_id(kind: MockKind, ids: &IdGen) -> String {
    match kind {
        MockKind::VertexAi => ids.msg_vertex(),
        MockKind::Bedrock => ids.bedrock_msg(),
        _ => ids.msg(),
    }
}

fn usage(input: u64, output: u64) -> Value {
    json!({
        "input_tokens": input,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output,
        "service_tier": "standard"
    })
}

pub(super) fn message(kind: MockKind, name: &str, ids: &IdGen, req: &RecordedRequest, model: &str) -> Value {
    let text = reply_text(kind, name);
    json!({
        "model": model,
        "id": message_id(kind, ids),
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": usage(prompt_tokens(req), completion_tokens(&text))
    })
}

pub(super) fn count_tokens(req: &RecordedRequest) -> Value {
    json!({"input_tokens": prompt_tokens(req)})
}

/// The event payloads of a streamed message, in Anthropic's order. `ping`
/// is included for the SSE APIs; Bedrock does not send it.
fn events(
    kind: MockKind,
    name: &str,
    ids: &IdGen,
    req: &RecordedRequest,
    model: &str,
    ping: bool,
) -> Vec<(String, Value)> {
    let text = reply_text(kind, name);
    let input = prompt_tokens(req);
    let output = completion_tokens(&text);
    let mut out = vec![
        (
            "message_start".to_string(),
            json!({"type": "message_start", "message": {
                "model": model,
                "id": message_id(kind, ids),
                "type": "message",
                "role": "assistant",
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage(input, 1)
            }}),
        ),
        (
            "content_block_start".to_string(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    if ping {
        out.push(("ping".into(), json!({"type": "ping"})));
    }
    for piece in deltas(&text) {
        out.push((
            "content_block_delta".into(),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    out.push(("content_block_stop".into(), json!({"type": "content_block_stop", "index": 0})));
    out.push((
        "message_delta".into(),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": output}}),
    ));
    out.push(("message_stop".into(), json!({"type": "message_stop"})));
    out
}

pub(super) fn sse_events(
    kind: MockKind,
    name: &str,
    ids: &IdGen,
    req: &RecordedRequest,
    model: &str,
) -> Vec<StubEvent> {
    events(kind, name, ids, req, model, true)
        .into_iter()
        .map(|(event, data)| StubEvent::named(&event, data.to_string()))
        .collect()
}

/// Bedrock sends the same events (without `ping`); the last one carries
/// `amazon-bedrock-invocationMetrics`.
pub(super) fn bedrock_events(name: &str, ids: &IdGen, req: &RecordedRequest, model: &str) -> Vec<Value> {
    let text = reply_text(MockKind::Bedrock, name);
    let input = prompt_tokens(req);
    let output = completion_tokens(&text);
    let mut out: Vec<Value> =
        events(MockKind::Bedrock, name, ids, req, model, false).into_iter().map(|(_, v)| v).collect();
    if let Some(Value::Object(last)) = out.last_mut() {
        last.insert(
            "amazon-bedrock-invocationMetrics".into(),
            json!({"inputTokenCount": input, "outputTokenCount": output, "invocationLatency": 0, "firstByteLatency": 0}),
        );
    }
    out
}
