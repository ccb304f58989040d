//! Anthropic Messages clients on OpenAI-family providers: `/v1/messages`
//! requests become Chat Completions requests, and the answers (whole or
//! streamed) come back as Messages (LiteLLM's "Anthropic adapter", what
//! Claude Code uses to reach a non-Anthropic model).
//!
//! The mapping, both ways, is the one `anthropic.rs` uses for the opposite
//! direction, read backwards:
//! - `system` (a string or text blocks) becomes the first `system` message.
//! - A user turn's `tool_result` blocks become `tool` messages (first, as
//!   Anthropic requires them first), its text and images one `user` message.
//! - An assistant turn's `tool_use` blocks become `tool_calls` (the `input`
//!   object serialized as the `arguments` string); `thinking` blocks are not
//!   sent (OpenAI has nowhere to put them).
//! - `stop_sequences` → `stop`, `metadata.user_id` → `user`, `tools` and
//!   `tool_choice` to their function forms; `top_k` has no counterpart and is
//!   dropped.
//! - Answers: `finish_reason` → `stop_reason` (`stop` → `end_turn`, `length`
//!   → `max_tokens`, `tool_calls` → `tool_use`, `content_filter` →
//!   `refusal`); usage with cached prompt tokens apart, as Anthropic counts.
//! - Streams ask the provider for its usage chunk (`stream_options.
//!   include_usage`) because a Messages stream always reports usage.

use serde_json::{json, Map, Value};

use super::anthropic::TranslateError;

type Result<T> = std::result::Result<T, TranslateError>;

fn invalid(field: &str, reason: impl Into<String>) -> TranslateError {
    TranslateError::Invalid { field: field.to_string(), reason: reason.into() }
}

/// The text of a `system` value or a content array's text blocks.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// An Anthropic image block as an OpenAI `image_url` part.
fn image_part(block: &Value, field: &str) -> Result<Value> {
    let source = block.get("source").ok_or_else(|| invalid(field, "an image needs `source`"))?;
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source.get("media_type").and_then(Value::as_str).unwrap_or("image/png");
            let data = source.get("data").and_then(Value::as_str).unwrap_or_default();
            format!("data:{media};base64,{data}")
        }
        Some("url") => source.get("url").and_then(Value::as_str).unwrap_or_default().to_string(),
        other => return Err(invalid(field, format!("image source type {other:?} is not supported"))),
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn push_user(out: &mut Vec<Value>, content: &Value, field: &str) -> Result<()> {
    let blocks = match content {
        Value::String(s) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => return Err(invalid(field, "content must be a string or an array of blocks")),
    };
    let mut parts = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let f = format!("{field}[{j}]");
        match b.get("type").and_then(Value::as_str) {
            Some("tool_result") => {
                let id =
                    b.get("tool_use_id").and_then(Value::as_str).ok_or_else(|| invalid(&f, "needs `tool_use_id`"))?;
                let text = b.get("content").map(text_of).unwrap_or_default();
                out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            Some("text") => {
                parts.push(json!({"type": "text", "text": b.get("text").and_then(Value::as_str).unwrap_or_default()}))
            }
            Some("image") => parts.push(image_part(b, &f)?),
            // Documents, search results…: no Chat Completions counterpart.
            Some(other) => return Err(invalid(&f, format!("block type `{other}` is not supported for this model"))),
            None => return Err(invalid(&f, "a block needs `type`")),
        }
    }
    if !parts.is_empty() {
        // One text part is sent as a plain string, the form every
        // OpenAI-compatible server accepts.
        let content = match parts.as_slice() {
            [p] if p["type"] == "text" => p["text"].clone(),
            _ => Value::Array(parts),
        };
        out.push(json!({"role": "user", "content": content}));
    }
    Ok(())
}

fn push_assistant(out: &mut Vec<Value>, content: &Value, field: &str) -> Result<()> {
    let blocks = match content {
        Value::String(s) => {
            out.push(json!({"role": "assistant", "content": s}));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => return Err(invalid(field, "content must be a string or an array of blocks")),
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let f = format!("{field}[{j}]");
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => {
                let id = b.get("id").and_then(Value::as_str).ok_or_else(|| invalid(&f, "needs `id`"))?;
                let name = b.get("name").and_then(Value::as_str).ok_or_else(|| invalid(&f, "needs `name`"))?;
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(
                    json!({"id": id, "type": "function", "function": {"name": name, "arguments": input.to_string()}}),
                );
            }
            Some("thinking" | "redacted_thinking") => {}
            Some(other) => return Err(invalid(&f, format!("block type `{other}` is not supported for this model"))),
            None => return Err(invalid(&f, "a block needs `type`")),
        }
    }
    let mut m = Map::new();
    m.insert("role".into(), json!("assistant"));
    m.insert("content".into(), if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) });
    if !calls.is_empty() {
        m.insert("tool_calls".into(), Value::Array(calls));
    }
    out.push(Value::Object(m));
    Ok(())
}

/// A Messages request body as a Chat Completions body for `upstream_model`.
pub(crate) fn messages_to_chat_request(body: &Map<String, Value>, upstream_model: &str) -> Result<Map<String, Value>> {
    let mut messages = Vec::new();
    if let Some(system) = body.get("system").filter(|s| !s.is_null()) {
        let text = text_of(system);
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let turns = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::Missing { field: "messages".into() })?;
    for (i, m) in turns.iter().enumerate() {
        let field = format!("messages[{i}].content");
        let content = m.get("content").unwrap_or(&Value::Null);
        match m.get("role").and_then(Value::as_str) {
            Some("user") => push_user(&mut messages, content, &field)?,
            Some("assistant") => push_assistant(&mut messages, content, &field)?,
            other => {
                return Err(invalid(&format!("messages[{i}].role"), format!("{other:?} is not `user` or `assistant`")))
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert("messages".into(), Value::Array(messages));
    for (from, to) in
        [("max_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"), ("stop_sequences", "stop")]
    {
        if let Some(v) = body.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    }
    if let Some(user) = body.get("metadata").and_then(|m| m.get("user_id")).filter(|v| v.is_string()) {
        out.insert("user".into(), user.clone());
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let mut fns = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            let name =
                t.get("name").and_then(Value::as_str).ok_or_else(|| invalid(&format!("tools[{i}]"), "needs `name`"))?;
            if t.get("type").and_then(Value::as_str).is_some_and(|ty| ty != "custom") {
                // Server tools (web search, computer use) run at Anthropic only.
                return Err(invalid(&format!("tools[{i}]"), "server tools are not supported for this model"));
            }
            let mut f = Map::new();
            f.insert("name".into(), json!(name));
            if let Some(d) = t.get("description").filter(|d| d.is_string()) {
                f.insert("description".into(), d.clone());
            }
            f.insert("parameters".into(), t.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"})));
            fns.push(json!({"type": "function", "function": f}));
        }
        if !fns.is_empty() {
            out.insert("tools".into(), Value::Array(fns));
        }
    }
    if let Some(choice) = body.get("tool_choice").filter(|c| !c.is_null()) {
        let mapped = match choice.get("type").and_then(Value::as_str) {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                let name =
                    choice.get("name").and_then(Value::as_str).ok_or_else(|| invalid("tool_choice", "needs `name`"))?;
                json!({"type": "function", "function": {"name": name}})
            }
            other => return Err(invalid("tool_choice", format!("type {other:?} is not supported"))),
        };
        out.insert("tool_choice".into(), mapped);
        if choice.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(out)
}

/// `finish_reason` → `stop_reason`.
pub(crate) fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// OpenAI usage as Anthropic counts it: cached prompt tokens apart.
fn usage(u: Option<&Value>) -> Value {
    let g = |p: &str| u.and_then(|u| u.pointer(p)).and_then(Value::as_u64).unwrap_or(0);
    let cached = g("/prompt_tokens_details/cached_tokens");
    json!({
        "input_tokens": g("/prompt_tokens").saturating_sub(cached),
        "output_tokens": g("/completion_tokens"),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    })
}

/// The input of a tool call: its arguments string parsed; a string that is
/// not a JSON object is kept whole under `_raw` rather than lost.
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ if arguments.trim().is_empty() => json!({}),
        _ => json!({"_raw": arguments}),
    }
}

/// A Chat Completions answer as a Messages answer reported as `model`.
pub(crate) fn chat_to_messages_response(v: &Value, model: &str) -> Result<Value> {
    let choice = v.pointer("/choices/0").ok_or_else(|| TranslateError::Missing { field: "choices[0]".into() })?;
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(text) = msg.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for tc in msg.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let args = tc.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
        content.push(json!({
            "type": "tool_use",
            "id": tc.get("id").and_then(Value::as_str).unwrap_or_default(),
            "name": tc.pointer("/function/name").and_then(Value::as_str).unwrap_or_default(),
            "input": tool_input(args),
        }));
    }
    let finish = choice.get("finish_reason").and_then(Value::as_str).unwrap_or("stop");
    let id = v.get("id").and_then(Value::as_str).map(|i| format!("msg_{i}")).unwrap_or_else(|| "msg_gateway".into());
    Ok(json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(finish),
        "stop_sequence": null,
        "usage": usage(v.get("usage")),
    }))
}

/// Turns Chat Completions chunks into Messages stream events, in order.
#[derive(Debug)]
pub(crate) struct ChunkTranslator {
    model: String,
    started: bool,
    /// The open content block: its Messages index and, for a tool call, the
    /// OpenAI tool-call index it carries.
    open: Option<(u64, Option<u64>)>,
    next_index: u64,
    finish: Option<String>,
    usage: Option<Value>,
    done: bool,
}

/// One Messages event: its `event:` name and its data.
pub(crate) type Event = (&'static str, Value);

impl ChunkTranslator {
    pub(crate) fn new(model: &str) -> Self {
        ChunkTranslator {
            model: model.to_string(),
            started: false,
            open: None,
            next_index: 0,
            finish: None,
            usage: None,
            done: false,
        }
    }

    fn start(&mut self, id: &str, out: &mut Vec<Event>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push((
            "message_start",
            json!({"type": "message_start", "message": {
                "id": format!("msg_{id}"), "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        ));
    }

    fn close(&mut self, out: &mut Vec<Event>) {
        if let Some((index, _)) = self.open.take() {
            out.push(("content_block_stop", json!({"type": "content_block_stop", "index": index})));
        }
    }

    fn open_block(&mut self, block: Value, tool: Option<u64>, out: &mut Vec<Event>) -> u64 {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        out.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        self.open = Some((index, tool));
        index
    }

    /// The events for one chunk (a parsed `data:` line).
    pub(crate) fn on_chunk(&mut self, chunk: &Value) -> Vec<Event> {
        let mut out = Vec::new();
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let id = chunk.get("id").and_then(Value::as_str).unwrap_or("gateway").to_string();
        for choice in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
            self.start(&id, &mut out);
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                let index = match self.open {
                    Some((i, None)) => i,
                    _ => self.open_block(json!({"type": "text", "text": ""}), None, &mut out),
                };
                out.push(("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}})));
            }
            for tc in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let k = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
                let index = match self.open {
                    Some((i, Some(open_k))) if open_k == k => i,
                    _ => {
                        let block = json!({
                            "type": "tool_use",
                            "id": tc.get("id").and_then(Value::as_str).unwrap_or_default(),
                            "name": tc.pointer("/function/name").and_then(Value::as_str).unwrap_or_default(),
                            "input": {},
                        });
                        self.open_block(block, Some(k), &mut out)
                    }
                };
                if let Some(args) = tc.pointer("/function/arguments").and_then(Value::as_str).filter(|a| !a.is_empty())
                {
                    out.push(("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": args}})));
                }
            }
            if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(f.to_string());
            }
        }
        out
    }

    /// Whether the provider's stream said it was complete: `[DONE]`, the
    /// end of every OpenAI stream. A finish reason is not enough: the usage
    /// chunk this gateway asks for comes after it, so a stream that stops
    /// there was cut.
    pub(crate) fn complete(&self) -> bool {
        self.done
    }

    /// `[DONE]` was read.
    pub(crate) fn on_done(&mut self) {
        self.done = true;
    }

    /// The closing events, once the provider's stream is complete.
    pub(crate) fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.start("gateway", &mut out);
        self.close(&mut out);
        let u = usage(self.usage.as_ref());
        out.push((
            "message_delta",
            json!({"type": "message_delta",
                   "delta": {"stop_reason": stop_reason(self.finish.as_deref().unwrap_or("stop")), "stop_sequence": null},
                   "usage": u}),
        ));
        out.push(("message_stop", json!({"type": "message_stop"})));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_conversation_with_tools_maps_turn_for_turn() {
        let body = obj(json!({
            "model": "m", "max_tokens": 64, "system": [{"type": "text", "text": "be brief"}],
            "stop_sequences": ["END"], "metadata": {"user_id": "u1"}, "top_k": 5,
            "tools": [{"name": "get_weather", "description": "d", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"}, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]}, {"type": "text", "text": "and tomorrow?"}]}
            ]
        }));
        let out = messages_to_chat_request(&body, "gpt-4o").unwrap();
        assert_eq!(out["model"], "gpt-4o");
        assert_eq!(out["stop"], json!(["END"]));
        assert_eq!(out["user"], "u1");
        assert!(out.get("top_k").is_none());
        assert_eq!(out["tool_choice"], json!({"type": "function", "function": {"name": "get_weather"}}));
        assert_eq!(out["tools"][0]["function"]["parameters"]["properties"]["city"]["type"], "string");
        assert_eq!(
            out["messages"],
            json!([
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
                {"role": "user", "content": "and tomorrow?"}
            ])
        );
        let bad = obj(json!({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}));
        assert!(messages_to_chat_request(&bad, "m").unwrap_err().to_string().contains("messages[0].content[0]"));
    }

    #[test]
    fn an_answer_with_a_tool_call_becomes_blocks() {
        let v = json!({"id": "chatcmpl-1", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "checking",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 8}}});
        let m = chat_to_messages_response(&v, "my-model").unwrap();
        assert_eq!(m["model"], "my-model");
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(m["content"][0], json!({"type": "text", "text": "checking"}));
        assert_eq!(m["content"][1]["input"], json!({"city": "Paris"}));
        assert_eq!(m["usage"]["input_tokens"], 12);
        assert_eq!(m["usage"]["cache_read_input_tokens"], 8);
        assert_eq!(tool_input("not json"), json!({"_raw": "not json"}));
    }

    #[test]
    fn chunks_become_a_well_formed_event_sequence() {
        let mut t = ChunkTranslator::new("m");
        let chunks = [
            json!({"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]}),
            json!({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]}}]}),
            json!({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}}]}),
            json!({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, "finish_reason": "tool_calls"}]}),
            json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
        ];
        let mut names = Vec::new();
        for c in &chunks {
            names.extend(t.on_chunk(c).into_iter().map(|(n, _)| n));
        }
        assert!(!t.complete(), "a finish reason without [DONE] is no complete stream");
        t.on_done();
        assert!(t.complete());
        let end = t.finish();
        assert_eq!(end[1].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(end[1].1["usage"]["output_tokens"], 4);
        names.extend(end.into_iter().map(|(n, _)| n));
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
    }
}
