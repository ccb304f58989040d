//! The bodies the public API references define, as shape checks: OpenAI's
//! chat completion, chunk, embeddings and error objects (the OpenAPI
//! document's `CreateChatCompletionResponse`, `CreateChatCompletionStreamResponse`,
//! `CreateEmbeddingResponse`, `ErrorResponse`), Anthropic's Message, stream
//! events and error. Only what the
//! specification requires is checked: extra fields are always allowed (APIs
//! grow), and a field the spec marks required *and nullable* may be absent
//! (every SDK reads an absent nullable field as null).

use super::shape::{Shape, T};
use serde_json::{Map, Value};

pub(crate) const OPENAI_FINISH_REASONS: &[&str] = &["stop", "length", "tool_calls", "content_filter", "function_call"];
pub(crate) const ANTHROPIC_STOP_REASONS: &[&str] =
    &["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal", "model_context_window_exceeded"];

fn usage_openai(s: &mut Shape, m: &Map<String, Value>, at: &str, embeddings: bool) {
    if let Some(u) = s.optional(m, at, "usage", &[T::Obj, T::Null]).and_then(Value::as_object) {
        let at = format!("{at}/usage");
        s.required(u, &at, "prompt_tokens", &[T::Int]);
        s.required(u, &at, "total_tokens", &[T::Int]);
        if !embeddings {
            s.required(u, &at, "completion_tokens", &[T::Int]);
        }
    }
}

fn tool_call(s: &mut Shape, v: &Value, at: &str, streamed: bool) {
    let Some(tc) = s.object(v, at) else { return };
    if streamed {
        s.required(tc, at, "index", &[T::Int]);
        s.optional(tc, at, "id", &[T::Str, T::Null]);
        if let Some(f) = s.optional(tc, at, "function", &[T::Obj]).and_then(Value::as_object) {
            let at = format!("{at}/function");
            s.optional(f, &at, "name", &[T::Str, T::Null]);
            s.optional(f, &at, "arguments", &[T::Str, T::Null]);
        }
    } else {
        s.required(tc, at, "id", &[T::Str]);
        s.one_of(tc, at, "type", &["function"]);
        if let Some(f) = s.required(tc, at, "function", &[T::Obj]).and_then(Value::as_object) {
            let at = format!("{at}/function");
            s.required(f, &at, "name", &[T::Str]);
            s.required(f, &at, "arguments", &[T::Str]);
        }
    }
}

/// The fields every chat completion object and chunk carries.
fn completion_envelope(s: &mut Shape, m: &Map<String, Value>, object: &str) {
    s.required(m, "", "id", &[T::Str]);
    s.one_of(m, "", "object", &[object]);
    s.required(m, "", "created", &[T::Int]);
    s.required(m, "", "model", &[T::Str]);
}

/// `CreateChatCompletionResponse`.
pub fn openai_chat_completion(v: &Value) -> Vec<String> {
    let mut s = Shape::default();
    let Some(m) = s.object(v, "") else { return s.problems };
    completion_envelope(&mut s, m, "chat.completion");
    for (at, c) in s.each(m, "", "choices") {
        let Some(c) = s.object(c, &at) else { continue };
        s.required(c, &at, "index", &[T::Int]);
        s.one_of(c, &at, "finish_reason", OPENAI_FINISH_REASONS);
        s.optional(c, &at, "logprobs", &[T::Obj, T::Null]);
        if let Some(msg) = s.required(c, &at, "message", &[T::Obj]).and_then(Value::as_object) {
            let at = format!("{at}/message");
            s.one_of(msg, &at, "role", &["assistant"]);
            s.optional(msg, &at, "content", &[T::Str, T::Null]);
            for (at, tc) in s.each_optional(msg, &at, "tool_calls") {
                tool_call(&mut s, tc, &at, false);
            }
        }
    }
    usage_openai(&mut s, m, "", false);
    s.problems
}

/// `CreateChatCompletionStreamResponse`: one chunk.
pub fn openai_chat_chunk(v: &Value) -> Vec<String> {
    let mut s = Shape::default();
    let Some(m) = s.object(v, "") else { return s.problems };
    completion_envelope(&mut s, m, "chat.completion.chunk");
    for (at, c) in s.each(m, "", "choices") {
        let Some(c) = s.object(c, &at) else { continue };
        s.required(c, &at, "index", &[T::Int]);
        s.nullable_one_of(c, &at, "finish_reason", OPENAI_FINISH_REASONS);
        if let Some(d) = s.required(c, &at, "delta", &[T::Obj]).and_then(Value::as_object) {
            let at = format!("{at}/delta");
            s.optional(d, &at, "role", &[T::Str, T::Null]);
            s.optional(d, &at, "content", &[T::Str, T::Null]);
            for (at, tc) in s.each_optional(d, &at, "tool_calls") {
                tool_call(&mut s, tc, &at, true);
            }
        }
    }
    usage_openai(&mut s, m, "", false);
    s.problems
}

/// `CreateCompletionResponse` (legacy text completions), whole or one
/// streamed chunk: both are `text_completion` objects whose choices carry
/// `text` (a chunk's `finish_reason` may be null).
pub fn openai_text_completion(v: &Value, streamed: bool) -> Vec<String> {
    let mut s = Shape::default();
    let Some(m) = s.object(v, "") else { return s.problems };
    completion_envelope(&mut s, m, "text_completion");
    for (at, c) in s.each(m, "", "choices") {
        let Some(c) = s.object(c, &at) else { continue };
        s.required(c, &at, "index", &[T::Int]);
        s.required(c, &at, "text", &[T::Str]);
        if streamed {
            s.nullable_one_of(c, &at, "finish_reason", OPENAI_FINISH_REASONS);
        } else {
            s.one_of(c, &at, "finish_reason", OPENAI_FINISH_REASONS);
        }
        s.optional(c, &at, "logprobs", &[T::Obj, T::Null]);
    }
    usage_openai(&mut s, m, "", false);
    s.problems
}

/// `CreateEmbeddingResponse`.
pub fn openai_embeddings(v: &Value) -> Vec<String> {
    let mut s = Shape::default();
    let Some(m) = s.object(v, "") else { return s.problems };
    s.one_of(m, "", "object", &["list"]);
    s.required(m, "", "model", &[T::Str]);
    for (at, d) in s.each(m, "", "data") {
        let Some(d) = s.object(d, &at) else { continue };
        s.one_of(d, &at, "object", &["embedding"]);
        s.required(d, &at, "index", &[T::Int]);
        match s.required(d, &at, "embedding", &[T::Arr, T::Str]) {
            Some(Value::Array(xs)) if !xs.iter().all(Value::is_number) => {
                s.problem(&format!("{at}/embedding"), "expected an array of numbers")
            }
            _ => {}
        }
    }
    if m.contains_key("usage") {
        usage_openai(&mut s, m, "", true);
    } else {
        s.problem("/usage", "missing (expected object)");
    }
    s.problems
}

/// `CreateEmbeddingRequest.encoding_format`: "The format to return the
/// embeddings in. Can be either `float` or `base64`", `float` by default.
/// So each `embedding` is an array of numbers unless the client asked for
/// base64, and then a base64 string of little-endian float32 values
/// (whatever the gateway asked its provider for).
pub(crate) fn openai_embeddings_encoding(v: &Value, asked: Option<&str>) -> Vec<String> {
    use base64::Engine;
    let mut problems = Vec::new();
    let base64 = asked == Some("base64");
    let Some(data) = v.get("data").and_then(Value::as_array) else { return problems };
    for (i, d) in data.iter().enumerate() {
        match (d.get("embedding"), base64) {
            (Some(Value::String(_)), false) => problems.push(format!(
                "/data/{i}/embedding: a base64 string, but the client asked for {} (floats)",
                asked.map_or("no encoding_format".to_string(), |a| format!("encoding_format {a:?}"))
            )),
            (Some(Value::Array(_)), true) => problems.push(format!(
                "/data/{i}/embedding: an array of numbers, but the client asked for encoding_format \"base64\""
            )),
            (Some(Value::String(b)), true) => {
                let ok = base64::engine::general_purpose::STANDARD.decode(b).is_ok_and(|bytes| bytes.len() % 4 == 0);
                if !ok {
                    problems.push(format!("/data/{i}/embedding: not base64 of float32 values"));
                }
            }
            _ => {}
        }
    }
    problems
}

/// `ListModelsResponse` (`GET /v1/models`) and `Model`
/// (`GET /v1/models/{model}`): `id`, `object: "model"`, `created` (Unix
/// seconds) and `owned_by`, all required.
pub(crate) fn openai_models(v: &Value, one: bool) -> Vec<String> {
    fn model(s: &mut Shape, v: &Value, at: &str) {
        let Some(m) = s.object(v, at) else { return };
        s.required(m, at, "id", &[T::Str]);
        s.one_of(m, at, "object", &["model"]);
        s.required(m, at, "created", &[T::Int]);
        s.required(m, at, "owned_by", &[T::Str]);
    }
    let mut s = Shape::default();
    if one {
        model(&mut s, v, "");
        return s.problems;
    }
    let Some(m) = s.object(v, "") else { return s.problems };
    s.one_of(m, "", "object", &["list"]);
    for (at, d) in s.each(m, "", "data") {
        model(&mut s, d, &at);
    }
    s.problems
}

/// The Responses API's `Response` object (`POST /v1/responses`, and the
/// `response` of its stream's lifecycle events). Output items are checked
/// for the kinds a client reads (messages with `output_text`, function
/// calls); other item kinds only need a `type`.
pub(crate) fn openai_response(v: &Value) -> Vec<String> {
    let mut s = Shape::default();
    let Some(m) = s.object(v, "") else { return s.problems };
    s.required(m, "", "id", &[T::Str]);
    s.one_of(m, "", "object", &["response"]);
    if !m.get("created_at").is_some_and(Value::is_number) {
        s.problem("/created_at", "missing or not a number");
    }
    s.required(m, "", "model", &[T::Str]);
    s.optional(m, "", "status", &[T::Str]);
    for (at, item) in s.each(m, "", "output") {
        let Some(item) = s.object(item, &at) else { continue };
        match s.required(item, &at, "type", &[T::Str]).and_then(Value::as_str) {
            Some("message") => {
                s.one_of(item, &at, "role", &["assistant"]);
                for (at, part) in s.each(item, &at, "content") {
                    let Some(part) = s.object(part, &at) else { continue };
                    if s.required(part, &at, "type", &[T::Str]).and_then(Value::as_str) == Some("output_text") {
                        s.required(part, &at, "text", &[T::Str]);
                    }
                }
            }
            Some("function_call") => {
                for k in ["call_id", "name", "arguments"] {
                    s.required(item, &at, k, &[T::Str]);
                }
            }
            _ => {}
        }
    }
    if let Some(u) = s.optional(m, "", "usage", &[T::Obj, T::Null]).and_then(Value::as_object) {
        for k in ["input_tokens", "output_tokens", "total_tokens"] {
            s.required(u, "/usage", k, &[T::Int]);
        }
    }
    s.problems
}

/// One event of a Responses API stream: a `type`; the lifecycle events
/// carry a whole `response`; deltas carry their text.
pub(crate) fn openai_response_event(v: &Value) -> Vec<String> {
    let mut s = Shape::default();
    let Some(m) = s.object(v, "") else { return s.problems };
    let Some(kind) = s.required(m, "", "type", &[T::Str]).and_then(Value::as_str) else { return s.problems };
    match kind {
        // A failure report need only say it failed: how much of the
        // Response a gateway can fill in after a broken upstream varies.
        "response.failed" => {
            s.required(m, "", "response", &[T::Obj]);
        }
        "response.created"
        | "response.in_progress"
        | "response.completed"
        | "response.incomplete"
        | "response.queued" => {
            if let Some(r) = s.required(m, "", "response", &[T::Obj]) {
                for p in openai_response(r) {
                    s.problem("/response", p);
                }
            }
        }
        "response.output_text.delta" | "response.function_call_arguments.delta" => {
            s.required(m, "", "delta", &[T::Str]);
        }
        "error" => {
            s.required(m, "", "message", &[T::Str]);
        }
        _ => {}
    }
    s.problems
}

/// `ErrorResponse`: `{"error": {"message": ...}}`. `type`, `param` and
/// `code` are checked for type only: gateways fill them differently and
/// every SDK reads the message.
pub fn openai_error(v: &Value) -> Vec<String> {
    let mut s = Shape::default();
    let Some(m) = s.object(v, "") else { return s.problems };
    if let Some(e) = s.required(m, "", "error", &[T::Obj]).and_then(Value::as_object) {
        s.required(e, "/error", "message", &[T::Str]);
        s.optional(e, "/error", "type", &[T::Str, T::Null]);
        s.optional(e, "/error", "param", &[T::Str, T::Null]);
        s.optional(e, "/error", "code", &[T::Str, T::Int, T::Null]);
    }
    s.problems
}

fn anthropic_usage(s: &mut Shape, u: &Map<String, Value>, at: &str, delta: bool) {
    if !delta {
        s.required(u, at, "input_tokens", &[T::Int]);
    }
    s.required(u, at, "output_tokens", &[T::Int]);
    for k in ["cache_read_input_tokens", "cache_creation_input_tokens"] {
        s.optional(u, at, k, &[T::Int, T::Null]);
    }
}

fn anthropic_block(s: &mut Shape, v: &Value, at: &str, starting: bool) {
    let Some(b) = s.object(v, at) else { return };
    let Some(kind) = s.required(b, at, "type", &[T::Str]).and_then(Value::as_str) else { return };
    match kind {
        "text" => {
            s.required(b, at, "text", &[T::Str]);
        }
        "tool_use" | "server_tool_use" => {
            s.required(b, at, "id", &[T::Str]);
            s.required(b, at, "name", &[T::Str]);
            // A streamed tool_use block starts with `input: {}`.
            s.required(b, at, "input", &[T::Obj]);
        }
        "thinking" => {
            s.required(b, at, "thinking", &[T::Str]);
            if !starting {
                s.required(b, at, "signature", &[T::Str]);
            }
        }
        "redacted_thinking" => {
            s.required(b, at, "data", &[T::Str]);
        }
        _ => {} // newer block types: the spec grows
    }
}

/// Anthropic's `Message` (a non-streaming response, or `message_start`'s
/// message when `starting`: then `stop_reason` is null and content empty).
pub fn anthropic_message(v: &Value, starting: bool) -> Vec<String> {
    let mut s = Shape::default();
    let Some(m) = s.object(v, "") else { return s.problems };
    s.required(m, "", "id", &[T::Str]);
    s.one_of(m, "", "type", &["message"]);
    s.one_of(m, "", "role", &["assistant"]);
    s.required(m, "", "model", &[T::Str]);
    for (at, b) in s.each(m, "", "content") {
        anthropic_block(&mut s, b, &at, false);
    }
    if starting {
        s.nullable_one_of(m, "", "stop_reason", ANTHROPIC_STOP_REASONS);
    } else {
        s.one_of(m, "", "stop_reason", ANTHROPIC_STOP_REASONS);
    }
    s.optional(m, "", "stop_sequence", &[T::Str, T::Null]);
    if let Some(u) = s.required(m, "", "usage", &[T::Obj]).and_then(Value::as_object) {
        anthropic_usage(&mut s, u, "/usage", false);
    }
    s.problems
}

/// Anthropic's error: `{"type": "error", "error": {"type", "message"}}`.
pub(crate) fn anthropic_error(v: &Value) -> Vec<String> {
    let mut s = Shape::default();
    let Some(m) = s.object(v, "") else { return s.problems };
    s.one_of(m, "", "type", &["error"]);
    if let Some(e) = s.required(m, "", "error", &[T::Obj]).and_then(Value::as_object) {
        s.required(e, "/error", "type", &[T::Str]);
        s.required(e, "/error", "message", &[T::Str]);
    }
    s.problems
}

/// One Anthropic stream event's data.
pub fn anthropic_event(v: &Value) -> Vec<String> {
    let mut s = Shape::default();
    let Some(m) = s.object(v, "") else { return s.problems };
    let Some(kind) = s.required(m, "", "type", &[T::Str]).and_then(Value::as_str) else { return s.problems };
    match kind {
        "message_start" => {
            if let Some(msg) = s.required(m, "", "message", &[T::Obj]) {
                for p in anthropic_message(msg, true) {
                    s.problem("/message", p);
                }
            }
        }
        "content_block_start" => {
            s.required(m, "", "index", &[T::Int]);
            if let Some(b) = s.required(m, "", "content_block", &[T::Obj]) {
                anthropic_block(&mut s, b, "/content_block", true);
            }
        }
        "content_block_delta" => {
            s.required(m, "", "index", &[T::Int]);
            if let Some(d) = s.required(m, "", "delta", &[T::Obj]).and_then(Value::as_object) {
                match s.required(d, "/delta", "type", &[T::Str]).and_then(Value::as_str) {
                    Some("text_delta") => {
                        s.required(d, "/delta", "text", &[T::Str]);
                    }
                    Some("input_json_delta") => {
                        s.required(d, "/delta", "partial_json", &[T::Str]);
                    }
                    Some("thinking_delta") => {
                        s.required(d, "/delta", "thinking", &[T::Str]);
                    }
                    Some("signature_delta") => {
                        s.required(d, "/delta", "signature", &[T::Str]);
                    }
                    _ => {}
                }
            }
        }
        "content_block_stop" => {
            s.required(m, "", "index", &[T::Int]);
        }
        "message_delta" => {
            if let Some(d) = s.required(m, "", "delta", &[T::Obj]).and_then(Value::as_object) {
                s.nullable_one_of(d, "/delta", "stop_reason", ANTHROPIC_STOP_REASONS);
                s.optional(d, "/delta", "stop_sequence", &[T::Str, T::Null]);
            }
            if let Some(u) = s.required(m, "", "usage", &[T::Obj]).and_then(Value::as_object) {
                anthropic_usage(&mut s, u, "/usage", true);
            }
        }
        "message_stop" | "ping" => {}
        "error" => {
            if let Some(e) = s.required(m, "", "error", &[T::Obj]).and_then(Value::as_object) {
                s.required(e, "/error", "type", &[T::Str]);
                s.required(e, "/error", "message", &[T::Str]);
            }
        }
        other => s.problem("/type", format!("`{other}` is not an event of the Messages stream")),
    }
    s.problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_minimal_valid_completion_passes_and_each_required_field_is_required() {
        let ok = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]});
        assert!(openai_chat_completion(&ok).is_empty());
        for key in ["id", "object", "created", "model", "choices"] {
            let mut bad = ok.clone();
            bad.as_object_mut().unwrap().remove(key);
            assert!(!openai_chat_completion(&bad).is_empty(), "{key}");
        }
        let mut bad = ok.clone();
        bad["choices"][0]["finish_reason"] = json!(null);
        assert!(!openai_chat_completion(&bad).is_empty());
    }
}
