//! Translation between OpenAI Chat Completions and Anthropic Messages.
//!
//! Clients speak OpenAI's `/v1/chat/completions`; Claude (on Anthropic,
//! Bedrock, Vertex) speaks Messages. These are pure functions on JSON values
//! so every mapping rule is unit-testable without a network, and the HTTP
//! layer only moves bytes.
//!
//! Rules worth knowing:
//! - Anthropic has one `system` prompt; every `system`/`developer` message is
//!   hoisted there, in order.
//! - Anthropic requires `max_tokens`; it defaults to `DEFAULT_MAX_TOKENS`.
//! - OpenAI `tool` messages become `tool_result` blocks in a user turn, and
//!   consecutive same-role turns are merged (parallel tool results must come
//!   back in one user turn).
//! - Optional fields absent from the request stay absent: never `null`, as
//!   Anthropic rejects `null` for most of them.
//! - Usage: OpenAI's `prompt_tokens` counts everything read, while Anthropic
//!   splits input into uncached, cache-read and cache-write tokens; the sum is
//!   reported, and the parts are kept so cost can be computed exactly.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

#[cfg(test)]
use crate::gateway::sse::SseEvent;

/// Anthropic requires `max_tokens`; OpenAI clients usually omit it.
pub(crate) const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A request or response that cannot be translated, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("`{field}` is required")]
    Missing { field: String },
    #[error("`{field}`: {reason}")]
    Invalid { field: String, reason: String },
    #[error("`{field}`: `{value}` is not supported for Anthropic models")]
    Unsupported { field: String, value: String },
    /// Anthropic reported an error (an `error` SSE event or an error body).
    #[error("upstream error ({error_type}): {message}")]
    Upstream { error_type: String, message: String },
}

impl TranslateError {
    fn missing(field: impl Into<String>) -> Self {
        TranslateError::Missing { field: field.into() }
    }
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        TranslateError::Invalid { field: field.into(), reason: reason.into() }
    }
    fn unsupported(field: impl Into<String>, value: impl Into<String>) -> Self {
        TranslateError::Unsupported { field: field.into(), value: value.into() }
    }

    /// The offending field, for request-side errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            TranslateError::Missing { field }
            | TranslateError::Invalid { field, .. }
            | TranslateError::Unsupported { field, .. } => Some(field),
            TranslateError::Upstream { .. } => None,
        }
    }

    /// OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`:
    /// the unit tests' view of an error (the proxy renders errors through
    /// `ApiError`, with [`TranslateError::field`] as the `param`).
    #[cfg(test)]
    pub(crate) fn to_openai_error(&self) -> Value {
        let (error_type, param) = match self {
            TranslateError::Upstream { error_type, .. } => (error_type.as_str(), Value::Null),
            other => ("invalid_request_error", other.field().map_or(Value::Null, |f| json!(f))),
        };
        json!({"error": {"message": self.to_string(), "type": error_type, "param": param, "code": null}})
    }
}

type Result<T> = std::result::Result<T, TranslateError>;

/// `obj[key]`, treating JSON `null` like an absent key.
fn get<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn get_str<'a>(obj: &'a Value, key: &str, field: &str) -> Result<Option<&'a str>> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| TranslateError::invalid(field, "must be a string")),
    }
}

// ---------------------------------------------------------------------------
// Request: OpenAI chat -> Anthropic Messages
// ---------------------------------------------------------------------------

/// Content of one Anthropic turn while it is being assembled.
enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

impl Content {
    fn into_blocks(self) -> Vec<Value> {
        match self {
            Content::Text(t) if t.is_empty() => Vec::new(),
            Content::Text(t) => vec![json!({"type": "text", "text": t})],
            Content::Blocks(b) => b,
        }
    }
    fn into_value(self) -> Value {
        match self {
            Content::Text(t) => Value::String(t),
            Content::Blocks(b) => Value::Array(b),
        }
    }
}

struct Turn {
    role: &'static str,
    content: Content,
}

/// Appends a turn, merging it into the previous one when the role repeats.
fn push_turn(turns: &mut Vec<Turn>, role: &'static str, content: Content) {
    match turns.last_mut() {
        Some(last) if last.role == role => {
            let prev = std::mem::replace(&mut last.content, Content::Blocks(Vec::new()));
            let mut blocks = prev.into_blocks();
            blocks.extend(content.into_blocks());
            last.content = Content::Blocks(blocks);
        }
        _ => turns.push(Turn { role, content }),
    }
}

/// Copies `cache_control` from an OpenAI part (LiteLLM-style prompt caching).
fn with_cache_control(mut block: Value, part: &Value) -> Value {
    if let (Some(cc), Some(obj)) = (get(part, "cache_control"), block.as_object_mut()) {
        obj.insert("cache_control".into(), cc.clone());
    }
    block
}

/// One `{"type": "text"}` part; `None` for empty text (Anthropic rejects
/// empty text blocks).
fn text_part(part: &Value, pf: &str) -> Result<Option<Value>> {
    let text =
        get_str(part, "text", &format!("{pf}.text"))?.ok_or_else(|| TranslateError::missing(format!("{pf}.text")))?;
    Ok((!text.is_empty()).then(|| with_cache_control(json!({"type": "text", "text": text}), part)))
}

/// Text-only content (system prompts, tool results): a string or text parts.
fn text_blocks(content: Option<&Value>, field: &str) -> Result<Vec<Value>> {
    match content {
        None => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({"type": "text", "text": s})]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let pf = format!("{field}[{j}]");
                match get_str(part, "type", &format!("{pf}.type"))? {
                    Some("text") => out.extend(text_part(part, &pf)?),
                    Some(other) => return Err(TranslateError::unsupported(format!("{pf}.type"), other)),
                    None => return Err(TranslateError::missing(format!("{pf}.type"))),
                }
            }
            Ok(out)
        }
        Some(_) => Err(TranslateError::invalid(field, "must be a string or an array of parts")),
    }
}

/// `image_url` part -> Anthropic image block (URL or base64 source).
fn image_block(part: &Value, pf: &str) -> Result<Value> {
    let iu = get(part, "image_url").ok_or_else(|| TranslateError::missing(format!("{pf}.image_url")))?;
    let url = match iu {
        Value::String(s) => s.as_str(),
        other => get_str(other, "url", &format!("{pf}.image_url.url"))?
            .ok_or_else(|| TranslateError::missing(format!("{pf}.image_url.url")))?,
    };
    let source = if let Some(rest) = url.strip_prefix("data:") {
        // data:<media type>;base64,<data>
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| TranslateError::invalid(format!("{pf}.image_url.url"), "malformed data URL"))?;
        let media_type = meta
            .strip_suffix(";base64")
            .ok_or_else(|| TranslateError::invalid(format!("{pf}.image_url.url"), "data URL must be base64-encoded"))?;
        if media_type.is_empty() {
            return Err(TranslateError::invalid(format!("{pf}.image_url.url"), "data URL has no media type"));
        }
        json!({"type": "base64", "media_type": media_type, "data": data})
    } else if url.starts_with("http://") || url.starts_with("https://") {
        json!({"type": "url", "url": url})
    } else {
        return Err(TranslateError::invalid(format!("{pf}.image_url.url"), "must be an http(s) or data: URL"));
    };
    Ok(with_cache_control(json!({"type": "image", "source": source}), part))
}

fn user_content(m: &Value, field: &str) -> Result<Content> {
    let cf = format!("{field}.content");
    match get(m, "content") {
        None => Err(TranslateError::missing(cf)),
        Some(Value::String(s)) => Ok(Content::Text(s.clone())),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let pf = format!("{cf}[{j}]");
                match get_str(part, "type", &format!("{pf}.type"))? {
                    Some("text") => blocks.extend(text_part(part, &pf)?),
                    Some("image_url") => blocks.push(image_block(part, &pf)?),
                    Some(other) => return Err(TranslateError::unsupported(format!("{pf}.type"), other)),
                    None => return Err(TranslateError::missing(format!("{pf}.type"))),
                }
            }
            Ok(Content::Blocks(blocks))
        }
        Some(_) => Err(TranslateError::invalid(cf, "must be a string or an array of parts")),
    }
}

fn assistant_content(m: &Value, field: &str) -> Result<Option<Content>> {
    let cf = format!("{field}.content");
    let tool_calls = match get(m, "tool_calls") {
        None => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(TranslateError::invalid(format!("{field}.tool_calls"), "must be an array")),
    };
    if tool_calls.is_empty() {
        if let Some(Value::String(s)) = get(m, "content") {
            return Ok((!s.is_empty()).then(|| Content::Text(s.clone())));
        }
    }
    // OpenAI allows `refusal` parts in assistant history; they are text to Claude.
    let content = match get(m, "content") {
        Some(Value::Array(parts)) => Some(Value::Array(
            parts
                .iter()
                .map(|p| match (get_str(p, "type", "").ok().flatten(), get(p, "refusal")) {
                    (Some("refusal"), Some(r)) => json!({"type": "text", "text": r}),
                    _ => p.clone(),
                })
                .collect(),
        )),
        other => other.cloned(),
    };
    let mut blocks = text_blocks(content.as_ref(), &cf)?;
    for (j, call) in tool_calls.iter().enumerate() {
        let tf = format!("{field}.tool_calls[{j}]");
        if let Some(t) = get_str(call, "type", &format!("{tf}.type"))? {
            if t != "function" {
                return Err(TranslateError::unsupported(format!("{tf}.type"), t));
            }
        }
        let id =
            get_str(call, "id", &format!("{tf}.id"))?.ok_or_else(|| TranslateError::missing(format!("{tf}.id")))?;
        let func = get(call, "function").ok_or_else(|| TranslateError::missing(format!("{tf}.function")))?;
        let name = get_str(func, "name", &format!("{tf}.function.name"))?
            .ok_or_else(|| TranslateError::missing(format!("{tf}.function.name")))?;
        let af = format!("{tf}.function.arguments");
        let input = match get(func, "arguments") {
            None => json!({}),
            Some(Value::String(s)) if s.trim().is_empty() => json!({}),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                .map_err(|e| TranslateError::invalid(&af, format!("not valid JSON: {e}")))?,
            // Some clients send the object itself.
            Some(v) => v.clone(),
        };
        if !input.is_object() {
            return Err(TranslateError::invalid(af, "must encode a JSON object"));
        }
        blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    Ok((!blocks.is_empty()).then_some(Content::Blocks(blocks)))
}

fn tool_result(m: &Value, field: &str) -> Result<Value> {
    let id = get_str(m, "tool_call_id", &format!("{field}.tool_call_id"))?
        .ok_or_else(|| TranslateError::missing(format!("{field}.tool_call_id")))?;
    let mut block = json!({"type": "tool_result", "tool_use_id": id});
    let content = match get(m, "content") {
        None => None,
        Some(Value::String(s)) => Some(Value::String(s.clone())),
        c => Some(Value::Array(text_blocks(c, &format!("{field}.content"))?)),
    };
    if let (Some(c), Some(obj)) = (content, block.as_object_mut()) {
        obj.insert("content".into(), c);
    }
    Ok(block)
}

fn translate_tools(tools: &Value) -> Result<Vec<Value>> {
    let arr = tools.as_array().ok_or_else(|| TranslateError::invalid("tools", "must be an array"))?;
    let mut out = Vec::with_capacity(arr.len());
    for (i, t) in arr.iter().enumerate() {
        let tf = format!("tools[{i}]");
        match get_str(t, "type", &format!("{tf}.type"))? {
            Some("function") | None => {}
            Some(other) => return Err(TranslateError::unsupported(format!("{tf}.type"), other)),
        }
        let func = get(t, "function").ok_or_else(|| TranslateError::missing(format!("{tf}.function")))?;
        let name = get_str(func, "name", &format!("{tf}.function.name"))?
            .ok_or_else(|| TranslateError::missing(format!("{tf}.function.name")))?;
        let mut tool = Map::new();
        tool.insert("name".into(), json!(name));
        if let Some(d) = get_str(func, "description", &format!("{tf}.function.description"))? {
            tool.insert("description".into(), json!(d));
        }
        let schema = match get(func, "parameters") {
            None => json!({"type": "object", "properties": {}}),
            Some(p) if p.is_object() => p.clone(),
            Some(_) => {
                return Err(TranslateError::invalid(
                    format!("{tf}.function.parameters"),
                    "must be a JSON Schema object",
                ))
            }
        };
        tool.insert("input_schema".into(), schema);
        if let Some(cc) = get(t, "cache_control") {
            tool.insert("cache_control".into(), cc.clone());
        }
        out.push(Value::Object(tool));
    }
    Ok(out)
}

fn translate_tool_choice(choice: Option<&Value>, parallel: Option<bool>) -> Result<Option<Value>> {
    let mut tc = match choice {
        None => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            other => return Err(TranslateError::unsupported("tool_choice", other)),
        }),
        Some(obj @ Value::Object(_)) => {
            match get_str(obj, "type", "tool_choice.type")? {
                Some("function") => {}
                Some(other) => return Err(TranslateError::unsupported("tool_choice.type", other)),
                None => return Err(TranslateError::missing("tool_choice.type")),
            }
            let name = get(obj, "function")
                .map(|f| get_str(f, "name", "tool_choice.function.name"))
                .transpose()?
                .flatten()
                .ok_or_else(|| TranslateError::missing("tool_choice.function.name"))?;
            Some(json!({"type": "tool", "name": name}))
        }
        Some(_) => return Err(TranslateError::invalid("tool_choice", "must be a string or an object")),
    };
    if parallel == Some(false) {
        let tc = tc.get_or_insert_with(|| json!({"type": "auto"}));
        if tc["type"] != "none" {
            if let Some(obj) = tc.as_object_mut() {
                obj.insert("disable_parallel_tool_use".into(), json!(true));
            }
        }
    }
    Ok(tc)
}

/// Parameters with no Anthropic equivalent, dropped with a debug log rather
/// than failing (LiteLLM's `drop_params` behaviour for harmless ones).
const IGNORED_PARAMS: &[&str] = &[
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
    "response_format",
    "stream_options",
    "service_tier",
    "store",
    "modalities",
    "reasoning_effort",
    "prediction",
    "audio",
    "web_search_options",
];

/// Translates an OpenAI chat completion request into an Anthropic Messages
/// request for `upstream_model`.
pub fn chat_to_messages(openai_body: &Value, upstream_model: &str) -> Result<Value> {
    if !openai_body.is_object() {
        return Err(TranslateError::invalid("", "request body must be a JSON object"));
    }
    let messages = get(openai_body, "messages")
        .ok_or_else(|| TranslateError::missing("messages"))?
        .as_array()
        .ok_or_else(|| TranslateError::invalid("messages", "must be an array"))?;

    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let field = format!("messages[{i}]");
        let role = get_str(m, "role", &format!("{field}.role"))?
            .ok_or_else(|| TranslateError::missing(format!("{field}.role")))?;
        match role {
            "system" | "developer" => system.extend(text_blocks(get(m, "content"), &format!("{field}.content"))?),
            "user" => push_turn(&mut turns, "user", user_content(m, &field)?),
            "assistant" => {
                // An empty assistant turn (no text, no tools) is rejected by
                // Anthropic and carries nothing: skip it.
                if let Some(c) = assistant_content(m, &field)? {
                    push_turn(&mut turns, "assistant", c);
                }
            }
            "tool" => push_turn(&mut turns, "user", Content::Blocks(vec![tool_result(m, &field)?])),
            other => return Err(TranslateError::unsupported(format!("{field}.role"), other)),
        }
    }

    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));

    let max_tokens = match get(openai_body, "max_completion_tokens").or_else(|| get(openai_body, "max_tokens")) {
        None => DEFAULT_MAX_TOKENS,
        Some(v) => {
            let field = if get(openai_body, "max_completion_tokens").is_some() {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            match v.as_u64() {
                Some(n) if n > 0 => n,
                _ => return Err(TranslateError::invalid(field, "must be a positive integer")),
            }
        }
    };
    out.insert("max_tokens".into(), json!(max_tokens));

    match system.as_slice() {
        [] => {}
        [only] if only.as_object().is_some_and(|o| o.len() == 2) => {
            out.insert("system".into(), only["text"].clone());
        }
        _ => {
            out.insert("system".into(), Value::Array(system));
        }
    }
    out.insert(
        "messages".into(),
        Value::Array(turns.into_iter().map(|t| json!({"role": t.role, "content": t.content.into_value()})).collect()),
    );

    if let Some(tools) = get(openai_body, "tools") {
        let tools = translate_tools(tools)?;
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    let parallel = match get(openai_body, "parallel_tool_calls") {
        None => None,
        Some(v) => {
            Some(v.as_bool().ok_or_else(|| TranslateError::invalid("parallel_tool_calls", "must be a boolean"))?)
        }
    };
    if let Some(tc) = translate_tool_choice(get(openai_body, "tool_choice"), parallel)? {
        out.insert("tool_choice".into(), tc);
    }

    for key in ["temperature", "top_p", "top_k"] {
        if let Some(v) = get(openai_body, key) {
            if !v.is_number() {
                return Err(TranslateError::invalid(key, "must be a number"));
            }
            out.insert(key.into(), v.clone());
        }
    }
    match get(openai_body, "stop") {
        None => {}
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        Some(_) => return Err(TranslateError::invalid("stop", "must be a string or an array of strings")),
    }
    if let Some(v) = get(openai_body, "stream") {
        let b = v.as_bool().ok_or_else(|| TranslateError::invalid("stream", "must be a boolean"))?;
        out.insert("stream".into(), json!(b));
    }
    if let Some(user) = get_str(openai_body, "user", "user")? {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    // Anthropic-native extension some OpenAI clients send through LiteLLM.
    if let Some(thinking) = get(openai_body, "thinking") {
        out.insert("thinking".into(), thinking.clone());
    }
    // `n` never gets here: Claude's parameter table (`params.rs`) does not list
    // it, so the proxy refuses it (or drops it) before translating.
    let ignored: Vec<&str> = IGNORED_PARAMS.iter().copied().filter(|k| get(openai_body, k).is_some()).collect();
    if !ignored.is_empty() {
        tracing::debug!(?ignored, "OpenAI parameters with no Anthropic equivalent were dropped");
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------
// Response: Anthropic Messages -> OpenAI chat
// ---------------------------------------------------------------------------

/// Token counts as Anthropic reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AnthropicUsage {
    /// Uncached input tokens only.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
}

impl AnthropicUsage {
    /// Reads an Anthropic `usage` object; absent or non-numeric fields are 0.
    pub(crate) fn from_usage_object(usage: &Value) -> AnthropicUsage {
        let mut u = AnthropicUsage::default();
        u.update(usage);
        u
    }

    /// Overwrites the fields present in `usage` (a `message_delta` carries
    /// the final counts for some fields only).
    pub(crate) fn update(&mut self, usage: &Value) {
        let set = |key: &str, slot: &mut u64| {
            if let Some(n) = usage.get(key).and_then(Value::as_u64) {
                *slot = n;
            }
        };
        set("input_tokens", &mut self.input_tokens);
        set("output_tokens", &mut self.output_tokens);
        set("cache_read_input_tokens", &mut self.cache_read_tokens);
        set("cache_creation_input_tokens", &mut self.cache_creation_tokens);
    }

    /// Everything the model read, as OpenAI counts `prompt_tokens`.
    pub(crate) fn prompt_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.cache_read_tokens).saturating_add(self.cache_creation_tokens)
    }

    pub(crate) fn total_tokens(&self) -> u64 {
        self.prompt_tokens().saturating_add(self.output_tokens)
    }

    /// OpenAI `usage` object, keeping Anthropic's cache fields as LiteLLM does.
    pub(crate) fn to_openai_usage(self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens(),
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens(),
            "prompt_tokens_details": {"cached_tokens": self.cache_read_tokens},
            "cache_read_input_tokens": self.cache_read_tokens,
            "cache_creation_input_tokens": self.cache_creation_tokens,
        })
    }
}

/// Usage of a Messages response (or of a `message_start` event's message).
pub(crate) fn usage_from_messages(resp: &Value) -> AnthropicUsage {
    let usage = get(resp, "usage").or_else(|| get(resp, "message").and_then(|m| get(m, "usage")));
    usage.map(AnthropicUsage::from_usage_object).unwrap_or_default()
}

/// Anthropic `stop_reason` -> OpenAI `finish_reason`.
pub(crate) fn map_stop_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything new.
        _ => "stop",
    }
}

fn upstream_error(body: &Value) -> TranslateError {
    let err = get(body, "error").unwrap_or(&Value::Null);
    TranslateError::Upstream {
        error_type: get(err, "type").and_then(Value::as_str).unwrap_or("api_error").to_string(),
        message: get(err, "message").and_then(Value::as_str).unwrap_or("unknown error").to_string(),
    }
}

/// An Anthropic Message as a `chat.completion`; `created` comes from the
/// caller's clock.
pub fn messages_to_chat(resp: &Value, model: &str, created: u64) -> Result<Value> {
    if get_str(resp, "type", "type")? == Some("error") {
        return Err(upstream_error(resp));
    }
    let blocks = get(resp, "content")
        .ok_or_else(|| TranslateError::missing("content"))?
        .as_array()
        .ok_or_else(|| TranslateError::invalid("content", "must be an array"))?;
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut tool_calls = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let bf = format!("content[{i}]");
        match get_str(b, "type", &format!("{bf}.type"))? {
            Some("text") => {
                let t = get_str(b, "text", &format!("{bf}.text"))?.unwrap_or_default();
                text.get_or_insert_with(String::new).push_str(t);
            }
            Some("thinking") => {
                let t = get_str(b, "thinking", &format!("{bf}.thinking"))?.unwrap_or_default();
                reasoning.get_or_insert_with(String::new).push_str(t);
            }
            Some("tool_use") => {
                let id = get_str(b, "id", &format!("{bf}.id"))?
                    .ok_or_else(|| TranslateError::missing(format!("{bf}.id")))?;
                let name = get_str(b, "name", &format!("{bf}.name"))?
                    .ok_or_else(|| TranslateError::missing(format!("{bf}.name")))?;
                let input = get(b, "input").cloned().unwrap_or_else(|| json!({}));
                tool_calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": input.to_string()},
                }));
            }
            Some(other) => {
                // redacted_thinking, server tool blocks, citations...: nothing
                // an OpenAI client can use.
                tracing::debug!(block_type = other, "skipped Anthropic content block");
            }
            None => return Err(TranslateError::missing(format!("{bf}.type"))),
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert("content".into(), text.map_or(Value::Null, Value::String));
    if let Some(r) = reasoning {
        message.insert("reasoning_content".into(), json!(r));
    }
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    let finish_reason = match get_str(resp, "stop_reason", "stop_reason")? {
        Some(s) => json!(map_stop_reason(s)),
        None => Value::Null,
    };
    let id = get_str(resp, "id", "id")?.unwrap_or("chatcmpl-anthropic");
    Ok(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": Value::Object(message), "finish_reason": finish_reason}],
        "usage": usage_from_messages(resp).to_openai_usage(),
    }))
}

// ---------------------------------------------------------------------------
// Streaming: Anthropic SSE events -> OpenAI chat.completion.chunk objects
// ---------------------------------------------------------------------------

/// Turns Anthropic stream events into OpenAI `chat.completion.chunk` objects.
/// One translator per response. The caller frames each chunk as
/// `data: <json>\n\n` and writes `data: [DONE]` at the end.
#[derive(Debug)]
pub(crate) struct StreamTranslator {
    model: String,
    id: String,
    created: u64,
    usage: AnthropicUsage,
    /// Started Anthropic content blocks: index -> OpenAI tool-call index for
    /// client `tool_use` blocks, `None` for others (text, thinking, server
    /// tools, whose `input_json_delta`s the client must not see).
    blocks: BTreeMap<u64, Option<usize>>,
    next_tool_index: usize,
    role_sent: bool,
    finished: bool,
    usage_chunk: bool,
}

impl StreamTranslator {
    /// `model` is reported to the client; `id_hint` is the chunk id unless
    /// the upstream's `message_start` provides one.
    /// `created` (unix seconds) is stamped on every chunk.
    pub(crate) fn new(model: &str, id_hint: &str, created: u64) -> Self {
        StreamTranslator {
            model: model.to_string(),
            id: id_hint.to_string(),
            created,
            usage: AnthropicUsage::default(),
            blocks: BTreeMap::new(),
            next_tool_index: 0,
            role_sent: false,
            finished: false,
            usage_chunk: true,
        }
    }

    /// Whether to emit the final usage-only chunk (`choices: []`), as OpenAI
    /// does with `stream_options.include_usage`. On by default.
    pub(crate) fn with_usage_chunk(mut self, enabled: bool) -> Self {
        self.usage_chunk = enabled;
        self
    }

    /// The chunk id (the unit tests' view: the proxy reads only the chunks).
    #[cfg(test)]
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Usage seen so far (final once [`is_finished`](Self::is_finished)); the
    /// unit tests' view: the proxy meters the events themselves (`StreamMeter`).
    #[cfg(test)]
    pub(crate) fn usage(&self) -> AnthropicUsage {
        self.usage
    }

    /// `message_stop` was seen: the response is complete.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        })
    }

    fn role_chunk_once(&mut self, out: &mut Vec<Value>) {
        if !self.role_sent {
            self.role_sent = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
    }

    /// Convenience for the unit tests: parses an SSE event's data and calls
    /// [`on_event`](Self::on_event) (the proxy parses events itself).
    #[cfg(test)]
    pub(crate) fn on_sse(&mut self, event: &SseEvent) -> Result<Vec<Value>> {
        let data: Value = serde_json::from_str(&event.data)
            .map_err(|e| TranslateError::invalid("data", format!("not valid JSON: {e}")))?;
        self.on_event(event.event.as_deref().unwrap_or(""), &data)
    }

    /// Handles one Anthropic event. `event_type` is the SSE `event:` name; when
    /// empty (e.g. Bedrock chunks carry no name) the data's `type` is used.
    /// An `error` event yields `Err(TranslateError::Upstream)`.
    pub(crate) fn on_event(&mut self, event_type: &str, data: &Value) -> Result<Vec<Value>> {
        let ty = match event_type {
            "" | "message" => get_str(data, "type", "type")?.unwrap_or(""),
            t => t,
        };
        let mut out = Vec::new();
        match ty {
            "message_start" => {
                let msg = get(data, "message").ok_or_else(|| TranslateError::missing("message_start.message"))?;
                if let Some(id) = get_str(msg, "id", "message_start.message.id")? {
                    self.id = id.to_string();
                }
                if let Some(u) = get(msg, "usage") {
                    self.usage.update(u);
                }
                self.role_chunk_once(&mut out);
            }
            "content_block_start" => {
                let index = block_index(data, "content_block_start")?;
                let block = get(data, "content_block")
                    .ok_or_else(|| TranslateError::missing("content_block_start.content_block"))?;
                self.blocks.insert(index, None);
                match get_str(block, "type", "content_block_start.content_block.type")? {
                    Some("text") => {
                        let text = get_str(block, "text", "content_block_start.content_block.text")?;
                        if let Some(t) = text.filter(|t| !t.is_empty()) {
                            self.role_chunk_once(&mut out);
                            out.push(self.chunk(json!({"content": t}), None));
                        }
                    }
                    Some("tool_use") => {
                        let f = "content_block_start.content_block";
                        let id = get_str(block, "id", &format!("{f}.id"))?
                            .ok_or_else(|| TranslateError::missing(format!("{f}.id")))?;
                        let name = get_str(block, "name", &format!("{f}.name"))?
                            .ok_or_else(|| TranslateError::missing(format!("{f}.name")))?;
                        let args = match get(block, "input") {
                            Some(Value::Object(o)) if o.is_empty() => String::new(),
                            None => String::new(),
                            Some(v) => v.to_string(),
                        };
                        let tool_index = self.next_tool_index;
                        self.next_tool_index += 1;
                        self.blocks.insert(index, Some(tool_index));
                        self.role_chunk_once(&mut out);
                        out.push(self.chunk(
                            json!({"tool_calls": [{
                                "index": tool_index,
                                "id": id,
                                "type": "function",
                                "function": {"name": name, "arguments": args},
                            }]}),
                            None,
                        ));
                    }
                    Some("thinking") => {
                        let t = get_str(block, "thinking", "content_block_start.content_block.thinking")?;
                        if let Some(t) = t.filter(|t| !t.is_empty()) {
                            self.role_chunk_once(&mut out);
                            out.push(self.chunk(json!({"reasoning_content": t}), None));
                        }
                    }
                    other => {
                        tracing::debug!(block_type = ?other, "skipped Anthropic stream content block");
                    }
                }
            }
            "content_block_delta" => {
                let index = block_index(data, "content_block_delta")?;
                let delta = get(data, "delta").ok_or_else(|| TranslateError::missing("content_block_delta.delta"))?;
                match get_str(delta, "type", "content_block_delta.delta.type")? {
                    Some("text_delta") => {
                        let t = get_str(delta, "text", "content_block_delta.delta.text")?.unwrap_or_default();
                        if !t.is_empty() {
                            self.role_chunk_once(&mut out);
                            out.push(self.chunk(json!({"content": t}), None));
                        }
                    }
                    Some("input_json_delta") => {
                        let part = get_str(delta, "partial_json", "content_block_delta.delta.partial_json")?
                            .unwrap_or_default();
                        match self.blocks.get(&index) {
                            Some(Some(tool_index)) if !part.is_empty() => out.push(self.chunk(
                                json!({"tool_calls": [{"index": tool_index, "function": {"arguments": part}}]}),
                                None,
                            )),
                            Some(_) => {}
                            None => {
                                return Err(TranslateError::invalid(
                                    "content_block_delta.index",
                                    format!("input_json_delta for block {index}, which was never started"),
                                ))
                            }
                        }
                    }
                    Some("thinking_delta") => {
                        let t = get_str(delta, "thinking", "content_block_delta.delta.thinking")?.unwrap_or_default();
                        if !t.is_empty() {
                            self.role_chunk_once(&mut out);
                            out.push(self.chunk(json!({"reasoning_content": t}), None));
                        }
                    }
                    // signature_delta (thinking signature), citations_delta...
                    other => tracing::debug!(delta_type = ?other, "skipped Anthropic stream delta"),
                }
            }
            "message_delta" => {
                if let Some(u) = get(data, "usage") {
                    self.usage.update(u);
                }
                let stop = get(data, "delta")
                    .map(|d| get_str(d, "stop_reason", "message_delta.delta.stop_reason"))
                    .transpose()?
                    .flatten();
                if let Some(stop) = stop {
                    let fr = map_stop_reason(stop);
                    self.role_chunk_once(&mut out);
                    out.push(self.chunk(json!({}), Some(fr)));
                }
            }
            "message_stop" => {
                self.finished = true;
                if self.usage_chunk {
                    out.push(json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": self.usage.to_openai_usage(),
                    }));
                }
            }
            "error" => return Err(upstream_error(data)),
            // ping, content_block_stop, and event types added in the future.
            other => tracing::trace!(event_type = other, "ignored Anthropic stream event"),
        }
        Ok(out)
    }
}

fn block_index(data: &Value, event: &str) -> Result<u64> {
    get(data, "index")
        .ok_or_else(|| TranslateError::missing(format!("{event}.index")))?
        .as_u64()
        .ok_or_else(|| TranslateError::invalid(format!("{event}.index"), "must be a non-negative integer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::sse::SseParser;

    const CASSETTES: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/cassettes/pydantic-ai/tests/models/cassettes/test_anthropic");

    fn cassette(name: &str) -> serde_yaml_ng::Value {
        let path = format!("{CASSETTES}/{name}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn yaml_to_json(v: &serde_yaml_ng::Value) -> Value {
        serde_json::to_value(v).expect("yaml value converts to json")
    }

    #[test]
    fn minimal_request_has_only_required_fields() {
        let body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
        let out = chat_to_messages(&body, "claude-sonnet-4-5").unwrap();
        assert_eq!(
            out,
            json!({"model": "claude-sonnet-4-5", "max_tokens": 4096,
                   "messages": [{"role": "user", "content": "hi"}]})
        );
        // Explicit nulls count as absent.
        let body = json!({"messages": [{"role": "user", "content": "hi"}], "temperature": null,
                          "stop": null, "tools": null, "tool_choice": null, "user": null, "max_tokens": null});
        let out = chat_to_messages(&body, "m").unwrap();
        assert_eq!(out.as_object().unwrap().keys().collect::<Vec<_>>(), ["model", "max_tokens", "messages"]);
    }

    #[test]
    fn full_request_translation() {
        let body = json!({
            "model": "claude",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use tools.", "cache_control": {"type": "ephemeral"}}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "look", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "a dog"}]},
                {"role": "user", "content": "thanks"},
                {"role": "assistant", "content": "You're welcome."},
                {"role": "user", "content": "bye"}
            ],
            "tools": [
                {"type": "function", "function": {"name": "look", "description": "Look at it",
                  "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}},
                {"type": "function", "function": {"name": "noargs"}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "look"}},
            "parallel_tool_calls": false,
            "max_completion_tokens": 100,
            "max_tokens": 5,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": "END",
            "stream": true,
            "user": "u-1",
            "seed": 7
        });
        let out = chat_to_messages(&body, "claude-x").unwrap();
        let expected = json!({
            "model": "claude-x",
            "max_tokens": 100,
            "system": [
                {"type": "text", "text": "Be brief."},
                {"type": "text", "text": "Use tools.", "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "look", "input": {"x": 1}},
                    {"type": "tool_use", "id": "call_2", "name": "look", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "a cat"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "a dog"}]},
                    {"type": "text", "text": "thanks"}
                ]},
                {"role": "assistant", "content": "You're welcome."},
                {"role": "user", "content": "bye"}
            ],
            "tools": [
                {"name": "look", "description": "Look at it",
                 "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}}},
                {"name": "noargs", "input_schema": {"type": "object", "properties": {}}}
            ],
            "tool_choice": {"type": "tool", "name": "look", "disable_parallel_tool_use": true},
            "temperature": 0.5,
            "top_p": 0.9,
            "stop_sequences": ["END"],
            "stream": true,
            "metadata": {"user_id": "u-1"}
        });
        assert_eq!(out, expected);
    }

    #[test]
    fn tool_choice_strings() {
        let base = |tc: Value| {
            let body = json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": tc});
            chat_to_messages(&body, "m").map(|v| v["tool_choice"].clone())
        };
        assert_eq!(base(json!("auto")).unwrap(), json!({"type": "auto"}));
        assert_eq!(base(json!("required")).unwrap(), json!({"type": "any"}));
        assert_eq!(base(json!("none")).unwrap(), json!({"type": "none"}));
        assert_eq!(base(json!("sometimes")).unwrap_err(), TranslateError::unsupported("tool_choice", "sometimes"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({}), "messages"),
            (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
            (json!({"messages": [{"role": "user"}]}), "messages[0].content"),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{bad"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (json!({"messages": [{"role": "tool", "content": "x"}]}), "messages[0].tool_call_id"),
            (json!({"messages": [{"role": "function", "content": "x"}]}), "messages[0].role"),
            (json!({"messages": [], "max_tokens": 0}), "max_tokens"),
            (json!({"messages": [], "max_completion_tokens": "9"}), "max_completion_tokens"),
            (json!({"messages": [], "temperature": "hot"}), "temperature"),
            (json!({"messages": [], "stop": [1]}), "stop"),
            (json!({"messages": [], "tools": [{"type": "web_search"}]}), "tools[0].type"),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}),
                "messages[0].content[0].image_url.url",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,xx"}}]}]}),
                "messages[0].content[0].image_url.url",
            ),
        ];
        for (body, field) in cases {
            let err = chat_to_messages(&body, "m").expect_err(&body.to_string());
            assert_eq!(err.field(), Some(field), "{body}: {err}");
            assert_eq!(err.to_openai_error()["error"]["param"], json!(field));
        }
        assert!(chat_to_messages(&json!([1]), "m").is_err());
    }

    #[test]
    fn empty_assistant_turns_are_skipped() {
        let body = json!({"messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "b"}
        ]});
        let out = chat_to_messages(&body, "m").unwrap();
        assert_eq!(
            out["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
        );
    }

    /// The second request of a recorded pydantic-ai conversation, rebuilt in
    /// OpenAI form, must translate to what was actually sent to Anthropic.
    #[test]
    fn reproduces_recorded_parallel_tool_call_request() {
        let c = cassette("test_multiple_parallel_tool_calls.yaml");
        let mut recorded = yaml_to_json(&c["interactions"][1]["request"]["parsed_body"]);
        // pydantic-ai adds `is_error: false`, which OpenAI has no way to express.
        for m in recorded["messages"].as_array_mut().unwrap() {
            if let Some(blocks) = m["content"].as_array_mut() {
                for b in blocks {
                    b.as_object_mut().unwrap().remove("is_error");
                }
            }
        }
        let first_resp = yaml_to_json(&c["interactions"][0]["response"]["parsed_body"]);
        let chat_resp = messages_to_chat(&first_resp, "haiku", 1).unwrap();
        let assistant = chat_resp["choices"][0]["message"].clone();
        let mut messages = vec![
            json!({"role": "system", "content": recorded["system"]}),
            json!({"role": "user", "content": [{"type": "text", "text": recorded["messages"][0]["content"][0]["text"]}]}),
            assistant.clone(),
        ];
        for b in recorded["messages"][2]["content"].as_array().unwrap() {
            messages.push(json!({"role": "tool", "tool_call_id": b["tool_use_id"], "content": b["content"]}));
        }
        let t = &recorded["tools"][0];
        let body = json!({
            "model": "haiku",
            "messages": messages,
            "tools": [{"type": "function", "function": {
                "name": t["name"], "description": t["description"], "parameters": t["input_schema"]}}],
            "tool_choice": "auto",
            "stream": false
        });
        let out = chat_to_messages(&body, "claude-haiku-4-5").unwrap();
        assert_eq!(out, recorded);
        assert_eq!(assistant["tool_calls"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn recorded_responses_translate() {
        let c = cassette("test_multiple_parallel_tool_calls.yaml");
        let first = yaml_to_json(&c["interactions"][0]["response"]["parsed_body"]);
        let out = messages_to_chat(&first, "my-alias", 42).unwrap();
        assert_eq!(out["object"], "chat.completion");
        assert_eq!(out["model"], "my-alias");
        assert_eq!(out["created"], 42);
        assert_eq!(out["id"], "msg_011S3wxtqL5CVescWqS3zeg2");
        let choice = &out["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        let calls = choice["message"]["tool_calls"].as_array().unwrap();
        let names: Vec<Value> =
            calls.iter().map(|c| serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap()).collect();
        assert_eq!(
            names,
            vec![
                json!({"name": "Alice"}),
                json!({"name": "Bob"}),
                json!({"name": "Charlie"}),
                json!({"name": "Daisy"})
            ]
        );
        assert_eq!(calls[0]["id"], "toolu_0167cfEnoQaPviGdVXA95zcu");
        assert!(choice["message"]["content"].as_str().unwrap().starts_with("I'll help you find out"));
        assert_eq!(out["usage"]["prompt_tokens"], 423);
        assert_eq!(out["usage"]["completion_tokens"], 202);
        assert_eq!(out["usage"]["total_tokens"], 625);

        let second = yaml_to_json(&c["interactions"][1]["response"]["parsed_body"]);
        let out = messages_to_chat(&second, "m", 0).unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        assert!(out["choices"][0]["message"].get("tool_calls").is_none());
        assert!(out["choices"][0]["message"]["content"].as_str().unwrap().contains("Daisy is the youngest"));
    }

    #[test]
    fn response_usage_with_cache_and_stop_reasons() {
        let resp = json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            "stop_reason": "max_tokens",
            "usage": {"input_tokens": 10, "output_tokens": 5,
                      "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}
        });
        let out = messages_to_chat(&resp, "m", 0).unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], "ab");
        assert_eq!(out["choices"][0]["message"]["reasoning_content"], "hmm");
        assert_eq!(out["choices"][0]["finish_reason"], "length");
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 130, "completion_tokens": 5, "total_tokens": 135,
                   "prompt_tokens_details": {"cached_tokens": 100},
                   "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20})
        );
        assert_eq!(
            usage_from_messages(&resp),
            AnthropicUsage { input_tokens: 10, output_tokens: 5, cache_read_tokens: 100, cache_creation_tokens: 20 }
        );
        for (anth, oai) in
            [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls")]
        {
            assert_eq!(map_stop_reason(anth), oai);
        }
        let only_tools = json!({"content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
                                "stop_reason": "tool_use"});
        let out = messages_to_chat(&only_tools, "m", 0).unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(out["usage"]["total_tokens"], 0);
    }

    #[test]
    fn error_bodies_and_bad_responses() {
        let err = messages_to_chat(
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            "m",
            0,
        )
        .unwrap_err();
        assert_eq!(
            err,
            TranslateError::Upstream { error_type: "overloaded_error".into(), message: "Overloaded".into() }
        );
        assert_eq!(err.to_openai_error()["error"]["type"], "overloaded_error");
        assert_eq!(messages_to_chat(&json!({"id": "x"}), "m", 0).unwrap_err().field(), Some("content"));
        assert_eq!(
            messages_to_chat(&json!({"content": [{"type": "tool_use", "name": "f"}]}), "m", 0).unwrap_err().field(),
            Some("content[0].id")
        );
    }

    /// Runs a recorded SSE body through the parser and the translator,
    /// feeding it in `chunk`-byte pieces.
    fn run_stream(body: &str, chunk: usize) -> (Vec<Value>, StreamTranslator) {
        let mut parser = SseParser::new();
        let mut tr = StreamTranslator::new("alias", "chatcmpl-hint", 7);
        let mut chunks = Vec::new();
        let mut events = Vec::new();
        for piece in body.as_bytes().chunks(chunk) {
            events.extend(parser.feed(piece).unwrap());
        }
        events.extend(parser.finish());
        for ev in &events {
            chunks.extend(tr.on_sse(ev).unwrap());
        }
        (chunks, tr)
    }

    /// The finish reason the chunks carry (the one chunk that has it).
    fn finish_of(chunks: &[Value]) -> Option<&str> {
        chunks.iter().find_map(|c| c["choices"][0]["finish_reason"].as_str())
    }

    fn concat(chunks: &[Value], key: &str) -> String {
        chunks.iter().filter_map(|c| c["choices"][0]["delta"][key].as_str()).collect::<Vec<_>>().concat()
    }

    #[test]
    fn recorded_stream_short_answer() {
        let c = cassette("test_request_stream_fallback_for_high_max_tokens.yaml");
        let body = c["interactions"][0]["response"]["body"]["string"].as_str().unwrap().to_string();
        for size in [1, 7, 64, body.len()] {
            let (chunks, tr) = run_stream(&body, size);
            assert_eq!(concat(&chunks, "content"), "2");
            assert_eq!(finish_of(&chunks), Some("stop"));
            assert!(tr.is_finished());
            assert_eq!(tr.id(), "msg_018E1hg8GoVTGEKQY3ovMcSJ");
            // role chunk first, finish chunk, usage chunk last
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
            let last = chunks.last().unwrap();
            assert_eq!(last["choices"], json!([]));
            assert_eq!(last["usage"]["prompt_tokens"], 20);
            assert_eq!(last["usage"]["completion_tokens"], 5);
            let finishes: Vec<&Value> = chunks
                .iter()
                .filter(|c| {
                    !c["choices"][0]["finish_reason"].is_null()
                        && c["choices"].as_array().is_some_and(|a| !a.is_empty())
                })
                .collect();
            assert_eq!(finishes.len(), 1);
            assert!(chunks
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "alias" && c["created"] == 7));
        }
    }

    #[test]
    fn recorded_stream_with_thinking() {
        let c = cassette("test_anthropic_model_thinking_part_stream.yaml");
        let body = c["interactions"][0]["response"]["body"]["string"].as_str().unwrap().to_string();
        let (chunks, tr) = run_stream(&body, 13);
        let text = concat(&chunks, "content");
        assert!(!text.is_empty());
        assert!(text.starts_with("Here are the basic"), "{text}");
        let reasoning = concat(&chunks, "reasoning_content");
        assert!(reasoning.starts_with("This is a straightforward question about pedestrian safety."), "{reasoning}");
        assert_eq!(finish_of(&chunks), Some("stop"));
        assert_eq!(tr.usage().output_tokens, 282);
        assert_eq!(tr.usage().input_tokens, 43);
        // The signature never leaks into content.
        assert!(!text.contains("EvMCCkYICxgC"));
    }

    #[test]
    fn stream_tool_calls_and_errors() {
        let mut tr = StreamTranslator::new("m", "hint", 1).with_usage_chunk(false);
        let events = [
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 3, "cache_read_input_tokens": 4}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_2", "name": "put", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            // A server tool (web search): its input must not surface as a client tool call.
            json!({"type": "content_block_start", "index": 3, "content_block": {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}}),
            json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{\"query\": \"x\"}"}}),
            json!({"type": "content_block_stop", "index": 3}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ];
        let mut chunks = Vec::new();
        for e in &events {
            chunks.extend(tr.on_event("", e).unwrap());
        }
        let deltas: Vec<Value> = chunks.iter().map(|c| c["choices"][0]["delta"].clone()).collect();
        assert_eq!(
            deltas,
            vec![
                json!({"role": "assistant", "content": ""}),
                json!({"content": "Let me check."}),
                json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "get", "arguments": ""}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
                json!({"tool_calls": [{"index": 1, "id": "toolu_2", "type": "function", "function": {"name": "put", "arguments": ""}}]}),
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
                json!({}),
            ]
        );
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[0]["id"], "hint");
        assert_eq!(tr.usage().prompt_tokens(), 7);
        assert_eq!(tr.usage().output_tokens, 9);

        let err = tr
            .on_event(
                "error",
                &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            )
            .unwrap_err();
        assert_eq!(err.to_openai_error()["error"]["message"], "upstream error (overloaded_error): Overloaded");
        assert!(tr.on_event("ping", &json!({"type": "ping"})).unwrap().is_empty());
        assert!(tr.on_event("brand_new_event", &json!({})).unwrap().is_empty());
        let err = tr
            .on_event(
                "content_block_delta",
                &json!({"index": 9, "delta": {"type": "input_json_delta", "partial_json": "x"}}),
            )
            .unwrap_err();
        assert_eq!(err.field(), Some("content_block_delta.index"));
        let bad = SseEvent { event: Some("message_delta".into()), data: "{oops".into(), id: None };
        assert_eq!(tr.on_sse(&bad).unwrap_err().field(), Some("data"));
    }
}
