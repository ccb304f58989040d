//! What an answer *says*, whatever its wire format: the text and tool calls
//! of each choice, why it stopped, the token usage and the identity fields.
//! Extracted from OpenAI and Anthropic bodies and streams, Bedrock
//! InvokeModel event streams and Converse bodies and streams, Gemini's
//! `GenerateContentResponse` bodies and streams, so fidelity checks compare
//! meaning across a translation.

use super::sse;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The wire format of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    OpenAi,
    Anthropic,
    /// Bedrock Converse / ConverseStream.
    Converse,
    /// Gemini's `generateContent` / `streamGenerateContent` (Google AI Studio).
    Gemini,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ToolCall {
    pub id: Option<String>,
    pub name: String,
    /// As sent: OpenAI's argument string, or Anthropic's `input` serialized.
    pub arguments: String,
}

impl ToolCall {
    pub(crate) fn arguments_json(&self) -> Option<Value> {
        if self.arguments.trim().is_empty() {
            return Some(json!({}));
        }
        serde_json::from_str(&self.arguments).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Choice {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    /// Anthropic's `thinking` (text and signature) and `redacted_thinking`
    /// (data) blocks, in order: a client sends them back verbatim on its
    /// next turn, so a pass-through must keep them whole.
    pub thinking: Vec<Value>,
    /// In the answer's own vocabulary (`stop`, `end_turn`, ...).
    pub finish: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Usage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub total: Option<u64>,
    pub cache_read: Option<u64>,
    pub cache_creation: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Answer {
    pub protocol: Option<Protocol>,
    pub choices: BTreeMap<u64, Choice>,
    pub usage: Option<Usage>,
    pub id: Option<String>,
    pub model: Option<String>,
    pub created: Option<i64>,
    pub system_fingerprint: Option<String>,
    /// The stream (or body) said it completed: `[DONE]`, `message_stop`,
    /// `messageStop`, or a whole non-streaming body.
    pub completed: bool,
}

fn u(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_u64)
}

fn s(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn openai_usage(v: &Value) -> Option<Usage> {
    let usage = v.get("usage").filter(|u| u.is_object())?;
    Some(Usage {
        input: u(usage.get("prompt_tokens")),
        output: u(usage.get("completion_tokens")),
        total: u(usage.get("total_tokens")),
        cache_read: u(usage.pointer("/prompt_tokens_details/cached_tokens")),
        cache_creation: None,
    })
}

fn anthropic_usage(usage: &Value, into: &mut Usage) {
    if let Some(x) = u(usage.get("input_tokens")) {
        into.input = Some(x);
    }
    if let Some(x) = u(usage.get("output_tokens")) {
        into.output = Some(x);
    }
    if let Some(x) = u(usage.get("cache_read_input_tokens")) {
        into.cache_read = Some(x);
    }
    if let Some(x) = u(usage.get("cache_creation_input_tokens")) {
        into.cache_creation = Some(x);
    }
}

/// A non-streaming OpenAI chat completion.
pub(crate) fn openai_body(v: &Value) -> Answer {
    let mut a = Answer { protocol: Some(Protocol::OpenAi), completed: true, ..Answer::default() };
    a.id = s(v.get("id"));
    a.model = s(v.get("model"));
    a.created = v.get("created").and_then(Value::as_i64);
    a.system_fingerprint = s(v.get("system_fingerprint"));
    a.usage = openai_usage(v);
    for (i, c) in v.get("choices").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let index = u(c.get("index")).unwrap_or(i as u64);
        let msg = c.get("message").cloned().unwrap_or(Value::Null);
        let tool_calls = msg
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|t| ToolCall {
                id: s(t.get("id")),
                name: s(t.pointer("/function/name")).unwrap_or_default(),
                arguments: s(t.pointer("/function/arguments")).unwrap_or_default(),
            })
            .collect();
        a.choices.insert(
            index,
            Choice {
                text: s(msg.get("content")).unwrap_or_default(),
                tool_calls,
                finish: s(c.get("finish_reason")),
                ..Choice::default()
            },
        );
    }
    a
}

/// An OpenAI chat completion stream: deltas concatenated per choice and
/// per tool call index.
pub(crate) fn openai_stream(body: &[u8]) -> Answer {
    let mut a = Answer { protocol: Some(Protocol::OpenAi), ..Answer::default() };
    let mut tools: BTreeMap<(u64, u64), ToolCall> = BTreeMap::new();
    for e in sse::events(body).events {
        if e.data.trim() == "[DONE]" {
            a.completed = true;
            continue;
        }
        let Some(v) = e.json() else { continue };
        if a.id.is_none() {
            a.id = s(v.get("id"));
        }
        if a.model.is_none() {
            a.model = s(v.get("model")).filter(|m| !m.is_empty());
        }
        if a.created.is_none() {
            a.created = v.get("created").and_then(Value::as_i64);
        }
        if a.system_fingerprint.is_none() {
            a.system_fingerprint = s(v.get("system_fingerprint"));
        }
        if let Some(usage) = openai_usage(&v) {
            a.usage = Some(usage);
        }
        for c in v.get("choices").and_then(Value::as_array).into_iter().flatten() {
            let index = u(c.get("index")).unwrap_or(0);
            let choice = a.choices.entry(index).or_default();
            if let Some(t) = c.pointer("/delta/content").and_then(Value::as_str) {
                choice.text.push_str(t);
            }
            if let Some(f) = s(c.get("finish_reason")) {
                choice.finish = Some(f);
            }
            for (k, t) in c.pointer("/delta/tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let ti = u(t.get("index")).unwrap_or(k as u64);
                let call = tools.entry((index, ti)).or_default();
                if let Some(id) = s(t.get("id")) {
                    call.id = Some(id);
                }
                if let Some(n) = s(t.pointer("/function/name")) {
                    call.name.push_str(&n);
                }
                if let Some(args) = s(t.pointer("/function/arguments")) {
                    call.arguments.push_str(&args);
                }
            }
        }
    }
    for ((choice, _), call) in tools {
        a.choices.entry(choice).or_default().tool_calls.push(call);
    }
    a
}

/// An OpenAI Responses API object (`POST /v1/responses`) read as an OpenAI
/// answer: its `output_text` parts joined, `function_call` items as tool
/// calls, and a finish reason in Chat Completions' words (`tool_calls` when
/// it called a tool, `length` when it stopped at `max_output_tokens`, else
/// `stop`), so a gateway that bridges a client to the Responses API is
/// compared by meaning like any other translation.
pub(crate) fn responses_body(v: &Value) -> Answer {
    let mut a = Answer { protocol: Some(Protocol::OpenAi), ..Answer::default() };
    a.completed = matches!(v.get("status").and_then(Value::as_str), Some("completed" | "incomplete") | None);
    a.id = s(v.get("id"));
    a.model = s(v.get("model"));
    a.created = v.get("created_at").and_then(Value::as_i64);
    if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
        a.usage = Some(Usage {
            input: u(usage.get("input_tokens")),
            output: u(usage.get("output_tokens")),
            total: u(usage.get("total_tokens")),
            cache_read: u(usage.pointer("/input_tokens_details/cached_tokens")),
            cache_creation: None,
        });
    }
    let mut choice = Choice::default();
    for item in v.get("output").and_then(Value::as_array).into_iter().flatten() {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item.get("content").and_then(Value::as_array).into_iter().flatten() {
                    if part.get("type").and_then(Value::as_str) == Some("output_text") {
                        choice.text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                }
            }
            Some("function_call") => choice.tool_calls.push(ToolCall {
                id: s(item.get("call_id")),
                name: s(item.get("name")).unwrap_or_default(),
                arguments: s(item.get("arguments")).unwrap_or_default(),
            }),
            _ => {}
        }
    }
    let max_tokens = v.pointer("/incomplete_details/reason").and_then(Value::as_str) == Some("max_output_tokens");
    choice.finish = Some(
        if !choice.tool_calls.is_empty() {
            "tool_calls"
        } else if max_tokens {
            "length"
        } else {
            "stop"
        }
        .to_string(),
    );
    a.choices.insert(0, choice);
    a
}

/// A Responses API event stream: the final `response.completed` (or
/// `response.incomplete`) event carries the whole response; without one the
/// text deltas so far, not completed.
pub(crate) fn responses_stream(body: &[u8]) -> Answer {
    let mut text = String::new();
    for e in sse::events(body).events {
        let Some(v) = e.json() else { continue };
        match v.get("type").and_then(Value::as_str) {
            Some("response.completed" | "response.incomplete") => {
                if let Some(r) = v.get("response") {
                    // The terminal Response has the calls, usage and status;
                    // the text is what the client rendered from the deltas
                    // (a client shows those, so they are what must be kept).
                    let mut a = responses_body(r);
                    if !text.is_empty() {
                        a.choices.entry(0).or_default().text = text;
                    }
                    return a;
                }
            }
            Some("response.output_text.delta") => text.push_str(v.get("delta").and_then(Value::as_str).unwrap_or("")),
            _ => {}
        }
    }
    let mut a = Answer { protocol: Some(Protocol::OpenAi), ..Answer::default() };
    a.choices.insert(0, Choice { text, ..Choice::default() });
    a
}

fn anthropic_block_into(choice: &mut Choice, block: &Value) {
    match block.get("type").and_then(Value::as_str) {
        Some("thinking") => choice.thinking.push(json!({
            "type": "thinking",
            "thinking": block.get("thinking").and_then(Value::as_str).unwrap_or(""),
            "signature": block.get("signature").and_then(Value::as_str).unwrap_or(""),
        })),
        Some("redacted_thinking") => choice.thinking.push(json!({
            "type": "redacted_thinking",
            "data": block.get("data").and_then(Value::as_str).unwrap_or(""),
        })),
        Some("text") => choice.text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
        Some("tool_use") => choice.tool_calls.push(ToolCall {
            id: s(block.get("id")),
            name: s(block.get("name")).unwrap_or_default(),
            arguments: block.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
        }),
        _ => {}
    }
}

/// A non-streaming Anthropic Message (also Bedrock InvokeModel's body).
pub(crate) fn anthropic_body(v: &Value) -> Answer {
    let mut a = Answer { protocol: Some(Protocol::Anthropic), completed: true, ..Answer::default() };
    a.id = s(v.get("id"));
    a.model = s(v.get("model"));
    let mut choice = Choice { finish: s(v.get("stop_reason")), ..Choice::default() };
    for b in v.get("content").and_then(Value::as_array).into_iter().flatten() {
        anthropic_block_into(&mut choice, b);
    }
    a.choices.insert(0, choice);
    if let Some(usage) = v.get("usage") {
        let mut x = Usage::default();
        anthropic_usage(usage, &mut x);
        a.usage = Some(x);
    }
    a
}

/// Folds Anthropic stream events (already parsed) into an answer.
pub(crate) fn anthropic_events(events: impl IntoIterator<Item = Value>) -> Answer {
    let mut a = Answer { protocol: Some(Protocol::Anthropic), ..Answer::default() };
    let mut blocks: BTreeMap<u64, Value> = BTreeMap::new();
    let mut partial: BTreeMap<u64, String> = BTreeMap::new();
    let mut usage = Usage::default();
    let mut finish = None;
    for v in events {
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let m = v.get("message").cloned().unwrap_or(Value::Null);
                a.id = s(m.get("id"));
                a.model = s(m.get("model"));
                if let Some(x) = m.get("usage") {
                    anthropic_usage(x, &mut usage);
                }
            }
            Some("content_block_start") => {
                let i = u(v.get("index")).unwrap_or(0);
                blocks.insert(i, v.get("content_block").cloned().unwrap_or(Value::Null));
            }
            Some("content_block_delta") => {
                let i = u(v.get("index")).unwrap_or(0);
                let d = v.get("delta").cloned().unwrap_or(Value::Null);
                let block = blocks.entry(i).or_insert_with(|| json!({"type": "text", "text": ""}));
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let t = d.get("text").and_then(Value::as_str).unwrap_or("");
                        let cur = block.get("text").and_then(Value::as_str).unwrap_or("").to_string();
                        block["text"] = Value::String(cur + t);
                    }
                    Some("input_json_delta") => partial
                        .entry(i)
                        .or_default()
                        .push_str(d.get("partial_json").and_then(Value::as_str).unwrap_or("")),
                    Some(kind @ ("thinking_delta" | "signature_delta")) => {
                        let field = if kind == "thinking_delta" { "thinking" } else { "signature" };
                        let t = d.get(field).and_then(Value::as_str).unwrap_or("");
                        let cur = block.get(field).and_then(Value::as_str).unwrap_or("").to_string();
                        block[field] = Value::String(cur + t);
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(r) = s(v.pointer("/delta/stop_reason")) {
                    finish = Some(r);
                }
                if let Some(x) = v.get("usage") {
                    anthropic_usage(x, &mut usage);
                }
            }
            Some("message_stop") => a.completed = true,
            _ => {}
        }
    }
    let mut choice = Choice { finish, ..Choice::default() };
    for (i, mut block) in blocks {
        if let Some(p) = partial.get(&i) {
            // The streamed input, as one string; parse failures compare as text.
            let input = if p.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(p).unwrap_or(Value::String(p.clone()))
            };
            block["input"] = input;
        }
        anthropic_block_into(&mut choice, &block);
    }
    a.choices.insert(0, choice);
    a.usage = Some(usage);
    a
}

/// An Anthropic SSE stream.
pub(crate) fn anthropic_stream(body: &[u8]) -> Answer {
    anthropic_events(sse::events(body).events.iter().filter_map(sse::Event::json))
}

/// Bedrock InvokeModelWithResponseStream: event-stream frames whose
/// `chunk` payloads carry base64 Anthropic events.
pub(crate) fn bedrock_invoke_stream(body: &[u8]) -> Answer {
    let (messages, _) = sse::eventstream(body);
    let events = messages.into_iter().filter_map(|m| {
        let payload: Value = serde_json::from_slice(&m.payload).ok()?;
        let b64 = payload.get("bytes")?.as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        serde_json::from_slice(&bytes).ok()
    });
    anthropic_events(events)
}

/// Bedrock Converse's body.
pub(crate) fn converse_body(v: &Value) -> Answer {
    let mut a = Answer { protocol: Some(Protocol::Converse), completed: true, ..Answer::default() };
    let mut choice = Choice { finish: s(v.get("stopReason")), ..Choice::default() };
    for b in v.pointer("/output/message/content").and_then(Value::as_array).into_iter().flatten() {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            choice.text.push_str(t);
        }
        if let Some(t) = b.get("toolUse") {
            choice.tool_calls.push(ToolCall {
                id: s(t.get("toolUseId")),
                name: s(t.get("name")).unwrap_or_default(),
                arguments: t.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
            });
        }
    }
    a.choices.insert(0, choice);
    a.usage = v.get("usage").map(converse_usage);
    a
}

fn converse_usage(x: &Value) -> Usage {
    Usage {
        input: u(x.get("inputTokens")),
        output: u(x.get("outputTokens")),
        total: u(x.get("totalTokens")),
        cache_read: u(x.get("cacheReadInputTokens")),
        cache_creation: u(x.get("cacheWriteInputTokens")),
    }
}

/// Bedrock ConverseStream: event-stream frames named by `:event-type`.
pub(crate) fn converse_stream(body: &[u8]) -> Answer {
    let (messages, _) = sse::eventstream(body);
    let mut a = Answer { protocol: Some(Protocol::Converse), ..Answer::default() };
    let mut choice = Choice::default();
    let mut tools: BTreeMap<u64, ToolCall> = BTreeMap::new();
    for m in messages {
        let Ok(p) = serde_json::from_slice::<Value>(&m.payload) else { continue };
        match m.header(":event-type") {
            Some("contentBlockStart") => {
                if let Some(t) = p.pointer("/start/toolUse") {
                    let i = u(p.get("contentBlockIndex")).unwrap_or(0);
                    tools.insert(
                        i,
                        ToolCall {
                            id: s(t.get("toolUseId")),
                            name: s(t.get("name")).unwrap_or_default(),
                            arguments: String::new(),
                        },
                    );
                }
            }
            Some("contentBlockDelta") => {
                let i = u(p.get("contentBlockIndex")).unwrap_or(0);
                if let Some(t) = p.pointer("/delta/text").and_then(Value::as_str) {
                    choice.text.push_str(t);
                }
                if let Some(t) = p.pointer("/delta/toolUse/input").and_then(Value::as_str) {
                    tools.entry(i).or_default().arguments.push_str(t);
                }
            }
            Some("messageStop") => {
                choice.finish = s(p.get("stopReason"));
                a.completed = true;
            }
            Some("metadata") => a.usage = p.get("usage").map(converse_usage),
            _ => {}
        }
    }
    choice.tool_calls = tools.into_values().collect();
    a.choices.insert(0, choice);
    a
}

/// Gemini's `usageMetadata`: `promptTokenCount` counts the cached tokens
/// too (`cachedContentTokenCount` says how many); thinking tokens
/// (`thoughtsTokenCount`) are output beside the candidates' own.
fn gemini_usage(v: &Value) -> Option<Usage> {
    let m = v.get("usageMetadata").filter(|m| m.is_object())?;
    let (candidates, thoughts) = (u(m.get("candidatesTokenCount")), u(m.get("thoughtsTokenCount")));
    let output = (candidates.is_some() || thoughts.is_some()).then(|| candidates.unwrap_or(0) + thoughts.unwrap_or(0));
    Some(Usage {
        input: u(m.get("promptTokenCount")),
        output,
        total: u(m.get("totalTokenCount")),
        cache_read: u(m.get("cachedContentTokenCount")),
        cache_creation: None,
    })
}

/// Folds one `GenerateContentResponse` (a whole answer, or one chunk of a
/// stream) into `a`: each candidate's text (its `thought` parts are not the
/// answer), function calls and finish reason; a prompt Gemini blocked has
/// no candidates, and its `promptFeedback.blockReason` is the reason.
fn gemini_into(a: &mut Answer, v: &Value, finished: &mut std::collections::BTreeSet<u64>) {
    if a.id.is_none() {
        a.id = s(v.get("responseId"));
    }
    if a.model.is_none() {
        a.model = s(v.get("modelVersion"));
    }
    if let Some(usage) = gemini_usage(v) {
        a.usage = Some(usage);
    }
    let candidates = v.get("candidates").and_then(Value::as_array).cloned().unwrap_or_default();
    if candidates.is_empty() {
        if let Some(reason) = s(v.pointer("/promptFeedback/blockReason")) {
            a.choices.entry(0).or_default().finish = Some(reason);
            finished.insert(0);
        }
    }
    for (k, c) in candidates.iter().enumerate() {
        let index = u(c.get("index")).unwrap_or(k as u64);
        let choice = a.choices.entry(index).or_default();
        for p in c.pointer("/content/parts").and_then(Value::as_array).into_iter().flatten() {
            if p.get("thought").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            if let Some(t) = p.get("text").and_then(Value::as_str) {
                choice.text.push_str(t);
            }
            if let Some(f) = p.get("functionCall").or_else(|| p.get("function_call")) {
                choice.tool_calls.push(ToolCall {
                    id: s(f.get("id")),
                    name: s(f.get("name")).unwrap_or_default(),
                    arguments: f
                        .get("args")
                        .filter(|a| !a.is_null())
                        .map(Value::to_string)
                        .unwrap_or_else(|| "{}".into()),
                });
            }
        }
        if let Some(r) = s(c.get("finishReason")) {
            choice.finish = Some(r);
            finished.insert(index);
        }
    }
}

/// A whole Gemini answer (`:generateContent`).
pub(crate) fn gemini_body(v: &Value) -> Answer {
    let mut a = Answer { protocol: Some(Protocol::Gemini), completed: true, ..Answer::default() };
    gemini_into(&mut a, v, &mut Default::default());
    a
}

/// Gemini's stream: SSE events (`alt=sse`) or one JSON array, each a
/// `GenerateContentResponse`. It has no terminator: it completed when every
/// candidate it started carried its `finishReason`.
pub(crate) fn gemini_stream(body: &[u8]) -> Answer {
    let responses: Vec<Value> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items,
        _ => sse::events(body).events.iter().filter_map(sse::Event::json).collect(),
    };
    let mut a = Answer { protocol: Some(Protocol::Gemini), ..Answer::default() };
    let mut finished = std::collections::BTreeSet::new();
    for v in &responses {
        gemini_into(&mut a, v, &mut finished);
    }
    a.completed = !a.choices.is_empty() && a.choices.keys().all(|i| finished.contains(i));
    a
}
