//! OpenAI-format bodies (openai, azure, hosted_vllm): chat completions,
//! chat completion chunks and embeddings.

use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::super::ids::{IdGen, CREATED};
use super::super::journal::RecordedRequest;
use super::super::stub::StubEvent;
use super::super::MockKind;
use super::{completion_tokens, deltas, prompt_tokens, reply_text};

const FINGERPRINT: &str = "fp_d0469e1700";
/// Small vectors keep journals and snapshots readable; `dimensions` in the
/// request overrides it as it does upstream.
const DEFAULT_DIMENSIONS: usize = 8;
const MAX_DIMENSIONS: u64 = 4096;

fn model(req: &RecordedRequest, deployment: Option<&str>) -> String {
    req.json_field("model")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| deployment.map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn id(kind: MockKind, ids: &IdGen) -> String {
    if kind == MockKind::HostedVllm {
        ids.vllm_chatcmpl()
    } else {
        ids.chatcmpl()
    }
}

fn usage(kind: MockKind, prompt: u64, completion: u64) -> Value {
    if kind == MockKind::HostedVllm {
        return json!({"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion, "prompt_tokens_details": null});
    }
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    })
}

fn azure_filter_results() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe})
}

pub(super) fn chat_completion(
    kind: MockKind,
    name: &str,
    ids: &IdGen,
    req: &RecordedRequest,
    deployment: Option<&str>,
) -> Value {
    let text = reply_text(kind, name);
    let prompt = prompt_tokens(req);
    let completion = completion_tokens(&text);
    let mut choice = json!({
        "index": 0,
        "message": {"role": "assistant", "content": text, "refusal": null, "annotations": []},
        "logprobs": null,
        "finish_reason": "stop"
    });
    if kind == MockKind::HostedVllm {
        choice = json!({
            "index": 0,
            "message": {"role": "assistant", "reasoning_content": null, "content": text, "tool_calls": []},
            "logprobs": null,
            "finish_reason": "stop",
            "stop_reason": null
        });
    }
    if kind == MockKind::Azure {
        if let Some(obj) = choice.as_object_mut() {
            obj.insert("content_filter_results".into(), azure_filter_results());
        }
    }
    let mut body = json!({
        "id": id(kind, ids),
        "object": "chat.completion",
        "created": CREATED,
        "model": model(req, deployment),
        "choices": [choice],
        "usage": usage(kind, prompt, completion),
    });
    if let Some(obj) = body.as_object_mut() {
        match kind {
            MockKind::Openai => {
                obj.insert("service_tier".into(), json!("default"));
                obj.insert("system_fingerprint".into(), json!(FINGERPRINT));
            }
            MockKind::Azure => {
                obj.insert("system_fingerprint".into(), json!(FINGERPRINT));
                obj.insert(
                    "prompt_filter_results".into(),
                    json!([{"prompt_index": 0, "content_filter_results": azure_filter_results()}]),
                );
            }
            _ => {}
        }
    }
    body
}

/// `data:` events of a streamed chat completion, ending with `[DONE]`.
/// With `stream_options.include_usage` every chunk carries `"usage": null`
/// and a last chunk with empty `choices` carries the usage, as OpenAI does.
pub(super) fn chat_chunks(
    kind: MockKind,
    name: &str,
    ids: &IdGen,
    req: &RecordedRequest,
    deployment: Option<&str>,
) -> Vec<StubEvent> {
    let text = reply_text(kind, name);
    let include_usage =
        req.json_field("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    let id = id(kind, ids);
    let model = model(req, deployment);
    let chunk = |choices: Value, usage: Option<Value>| -> StubEvent {
        let mut obj = Map::new();
        obj.insert("id".into(), json!(id));
        obj.insert("object".into(), json!("chat.completion.chunk"));
        obj.insert("created".into(), json!(CREATED));
        obj.insert("model".into(), json!(model));
        if kind == MockKind::Openai {
            obj.insert("service_tier".into(), json!("default"));
        }
        if kind != MockKind::HostedVllm {
            obj.insert("system_fingerprint".into(), json!(FINGERPRINT));
        }
        obj.insert("choices".into(), choices);
        if include_usage {
            obj.insert("usage".into(), usage.unwrap_or(Value::Null));
        }
        StubEvent::data(Value::Object(obj).to_string())
    };
    let choice =
        |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let mut events =
        vec![chunk(choice(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null), None)];
    for piece in deltas(&text) {
        events.push(chunk(choice(json!({"content": piece}), Value::Null), None));
    }
    events.push(chunk(choice(json!({}), json!("stop")), None));
    if include_usage {
        events.push(chunk(json!([]), Some(usage(kind, prompt_tokens(req), completion_tokens(&text)))));
    }
    events.push(StubEvent::data("[DONE]"));
    events
}

/// A legacy text completion (`/v1/completions`).
pub(super) fn text_completion(
    kind: MockKind,
    name: &str,
    ids: &IdGen,
    req: &RecordedRequest,
    deployment: Option<&str>,
) -> Value {
    let text = reply_text(kind, name);
    let (prompt, completion) = (prompt_tokens(req), completion_tokens(&text));
    json!({
        "id": format!("cmpl-{}", ids.hex(29)),
        "object": "text_completion",
        "created": CREATED,
        "model": model(req, deployment),
        "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    })
}

/// The same completion streamed: `text_completion` chunks, then `[DONE]`
/// (with `stream_options.include_usage`, a last chunk with the usage).
pub(super) fn text_completion_chunks(
    kind: MockKind,
    name: &str,
    ids: &IdGen,
    req: &RecordedRequest,
    deployment: Option<&str>,
) -> Vec<StubEvent> {
    let whole = text_completion(kind, name, ids, req, deployment);
    let text = reply_text(kind, name);
    let include_usage =
        req.json_field("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    let chunk = |choices: Value| json!({"id": whole["id"], "object": "text_completion", "created": CREATED, "model": whole["model"], "choices": choices});
    let mut events: Vec<StubEvent> = deltas(&text)
        .into_iter()
        .map(|piece| {
            StubEvent::data(
                chunk(json!([{"text": piece, "index": 0, "logprobs": null, "finish_reason": null}])).to_string(),
            )
        })
        .collect();
    events.push(StubEvent::data(
        chunk(json!([{"text": "", "index": 0, "logprobs": null, "finish_reason": "stop"}])).to_string(),
    ));
    if include_usage {
        let mut last = chunk(json!([]));
        last["usage"] = whole["usage"].clone();
        events.push(StubEvent::data(last.to_string()));
    }
    events.push(StubEvent::data("[DONE]"));
    events
}

/// A Responses API object (`/v1/responses`): one assistant message with the
/// reply as `output_text`, usage in the Responses API's names. Text parts and
/// deltas carry `logprobs: []` as the live API's do (recorded in
/// fixtures/cassettes/pydantic-ai/.../test_background_mode_streaming_vcr.yaml);
/// SDK versions that model the field as required refuse parts without it.
pub(super) fn response(kind: MockKind, name: &str, ids: &IdGen, req: &RecordedRequest) -> Value {
    let text = reply_text(kind, name);
    let (input, output) = (prompt_tokens(req), completion_tokens(&text));
    json!({
        "id": format!("resp_{}", ids.hex(48)),
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "error": null,
        "incomplete_details": null,
        "model": model(req, None),
        "output": [{
            "type": "message",
            "id": format!("msg_{}", ids.hex(48)),
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        }],
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": input,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input + output
        }
    })
}

/// The Responses API's stream of the same answer: named events with a
/// `sequence_number`, text deltas, and `response.completed` carrying the
/// whole response (there is no `[DONE]` in this API).
pub(super) fn response_events(kind: MockKind, name: &str, ids: &IdGen, req: &RecordedRequest) -> Vec<StubEvent> {
    let done = response(kind, name, ids, req);
    let text = reply_text(kind, name);
    let item = done["output"][0].clone();
    let item_id = item["id"].clone();
    let mut in_progress = done.clone();
    in_progress["status"] = json!("in_progress");
    in_progress["output"] = json!([]);
    in_progress["usage"] = Value::Null;
    let mut seq = 0u64;
    let mut ev = |ty: &str, mut data: Value| {
        data["type"] = json!(ty);
        data["sequence_number"] = json!(seq);
        seq += 1;
        StubEvent { event: Some(ty.to_string()), data: data.to_string(), ..StubEvent::data("") }
    };
    let mut empty_item = item.clone();
    empty_item["status"] = json!("in_progress");
    empty_item["content"] = json!([]);
    let mut events = vec![
        ev("response.created", json!({"response": in_progress})),
        ev("response.in_progress", json!({"response": in_progress})),
        ev("response.output_item.added", json!({"output_index": 0, "item": empty_item})),
        ev(
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
        ),
    ];
    for piece in deltas(&text) {
        events.push(ev(
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}),
        ));
    }
    events.push(ev(
        "response.output_text.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
    ));
    events.push(ev(
        "response.content_part.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}}),
    ));
    events.push(ev("response.output_item.done", json!({"output_index": 0, "item": item})));
    events.push(ev("response.completed", json!({"response": done})));
    events
}

/// The texts to embed: `input` as a string, a list of strings, or token
/// arrays (rendered as their JSON text for hashing).
fn inputs(req: &RecordedRequest) -> Vec<String> {
    match req.json_field("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            vec![Value::Array(items.clone()).to_string()]
        }
        Some(Value::Array(items)) => {
            items.iter().map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string())).collect()
        }
        Some(other) => vec![other.to_string()],
        None => Vec::new(),
    }
}

/// A deterministic unit-ish vector for `text`.
fn vector(text: &str, dims: usize) -> Vec<f32> {
    (0..dims)
        .map(|i| {
            let mut h = Sha256::new();
            h.update(text.as_bytes());
            h.update((i as u64).to_le_bytes());
            let d = h.finalize();
            let n = u16::from_le_bytes([d[0], d[1]]);
            // [-0.1, 0.1] with 4 decimals, so JSON floats stay short.
            ((f32::from(n) / f32::from(u16::MAX)) * 2000.0 - 1000.0).round() / 10000.0
        })
        .collect()
}

pub(super) fn embeddings(kind: MockKind, ids: &IdGen, req: &RecordedRequest, deployment: Option<&str>) -> Value {
    let dims = req
        .json_field("dimensions")
        .and_then(Value::as_u64)
        .filter(|d| (1..=MAX_DIMENSIONS).contains(d))
        .map_or(DEFAULT_DIMENSIONS, |d| d as usize);
    let base64 = req.json_field("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs(req)
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = vector(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let prompt = prompt_tokens(req);
    if kind == MockKind::HostedVllm {
        return json!({
            "id": format!("embd-{}", ids.hex(32)),
            "object": "list",
            "created": CREATED,
            "model": model(req, deployment),
            "data": data,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt, "completion_tokens": 0, "prompt_tokens_details": null}
        });
    }
    json!({
        "object": "list",
        "data": data,
        "model": model(req, deployment),
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt}
    })
}
