//! OpenAI Chat Completions ⇄ Gemini's `generateContent`, both ways.
//!
//! Requests (`chat_to_gemini`):
//! - `system`/`developer` messages become `systemInstruction` parts; the
//!   other turns become `contents` with Gemini's two roles (`user`,
//!   `model`), consecutive turns of one role merged (Gemini requires them to
//!   alternate, and a tool result is the user's turn).
//! - Images must be `data:` URLs (`inlineData`): Gemini does not fetch links.
//! - An assistant's `tool_calls` become `functionCall` parts (arguments
//!   parsed to the object Gemini wants); a `tool` message becomes a
//!   `functionResponse` part named after the call it answers (Gemini matches
//!   results to calls by name), its text as `response.content`.
//! - `tools` become `functionDeclarations` with the schema as
//!   `parametersJsonSchema` (JSON Schema as the client wrote it: Gemini's
//!   older `parameters` takes an OpenAPI subset and refuses keys such as
//!   `additionalProperties` that OpenAI's strict schemas require);
//!   `tool_choice` becomes `toolConfig.functionCallingConfig`.
//! - Sampling parameters go into `generationConfig`; `response_format`
//!   becomes `responseMimeType` (and `responseJsonSchema`, for the same
//!   reason as the tools' schemas).
//!
//! Answers (`gemini_to_chat`, `ChunkTranslator` for streams): candidates
//! become choices (text parts joined, `thought` parts left out, function
//! calls as `tool_calls` with generated `call_…` ids unless Gemini gave
//! one), `finishReason` becomes `finish_reason`, `usageMetadata` becomes
//! usage (thinking tokens are completion tokens, as they are billed), and
//! `modelVersion`/`responseId` become `model`/`id`. Gemini's stream has no
//! terminator: it is complete when every candidate has its `finishReason`;
//! one that ends before that is broken and ends with an error, never `[DONE]`.

use crate::gateway::error::ApiError;
use crate::gateway::providers::{AnswerContext, StreamTranslator};
use crate::gateway::sse::SseParser;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error("`{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

type Result<T> = std::result::Result<T, TranslateError>;

fn invalid(field: &str, reason: impl Into<String>) -> TranslateError {
    TranslateError::Invalid { field: field.to_string(), reason: reason.into() }
}

/// Between a tool call's id and the `thoughtSignature` of the function
/// call it stands for (see `candidate_parts`).
pub(crate) const THOUGHT_SEPARATOR: &str = "__thought__";

/// Keys of a Chat Completions body this translation reads or knowingly
/// leaves out: routing and transport (`model`, `stream`, `stream_options`),
/// and what Gemini has no place for (`user`, `metadata`; the Messages
/// bridge's `parallel_tool_calls`). Anything else is refused rather than
/// silently lost.
const CONSUMED: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "parallel_tool_calls",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
];

/// The contents so far: (role, parts), consecutive roles merged.
#[derive(Default)]
struct Contents(Vec<(&'static str, Vec<Value>)>);

impl Contents {
    fn push(&mut self, role: &'static str, parts: Vec<Value>) {
        if parts.is_empty() {
            return; // Gemini refuses a turn without parts: nothing was said
        }
        match self.0.last_mut() {
            Some((r, p)) if *r == role => p.extend(parts),
            _ => self.0.push((role, parts)),
        }
    }
}

/// A message's text parts (a string or text content parts), images where
/// `images` allows them.
fn content_parts(content: Option<&Value>, field: &str, images: bool) -> Result<Vec<Value>> {
    let mut parts = Vec::new();
    match content {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                parts.push(json!({"text": s}));
            }
        }
        Some(Value::Array(items)) => {
            for (k, p) in items.iter().enumerate() {
                let at = format!("{field}.content[{k}]");
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = p.get("text").and_then(Value::as_str).ok_or_else(|| invalid(&at, "needs `text`"))?;
                        if !t.is_empty() {
                            parts.push(json!({"text": t}));
                        }
                    }
                    Some("image_url") if images => parts.push(image_part(p, &at)?),
                    other => {
                        return Err(invalid(&at, format!("content part type {other:?} is not supported for Gemini")))
                    }
                }
            }
        }
        Some(_) => return Err(invalid(&format!("{field}.content"), "must be a string or an array of parts")),
    }
    Ok(parts)
}

/// An `image_url` part as `inlineData`. Gemini takes bytes, not links.
fn image_part(p: &Value, field: &str) -> Result<Value> {
    let url = p
        .get("image_url")
        .and_then(|u| u.get("url").or(Some(u)))
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(field, "needs `image_url.url`"))?;
    let Some((media, data)) = url.strip_prefix("data:").and_then(|r| r.split_once(";base64,")) else {
        return Err(invalid(field, "Gemini takes images as base64 `data:` URLs, not links"));
    };
    if media.is_empty() {
        return Err(invalid(field, "the data URL names no media type"));
    }
    Ok(json!({"inlineData": {"mimeType": media, "data": data}}))
}

/// The text of a tool message's content (a string or text parts).
fn tool_text(content: Option<&Value>, field: &str) -> Result<String> {
    Ok(content_parts(content, field, false)?
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(""))
}

/// A Chat Completions request as a `GenerateContentRequest`.
pub(crate) fn chat_to_gemini(body: &Value) -> Result<Map<String, Value>> {
    let obj = body.as_object().ok_or_else(|| invalid("body", "must be a JSON object"))?;
    if let Some(k) = obj.iter().find(|(k, v)| !v.is_null() && !CONSUMED.contains(&k.as_str())).map(|(k, _)| k) {
        return Err(invalid(k, "is not supported for Gemini"));
    }
    let messages =
        obj.get("messages").and_then(Value::as_array).ok_or_else(|| invalid("messages", "must be an array"))?;
    let mut system = Vec::new();
    let mut contents = Contents::default();
    // Each earlier call's id → its function's name: a tool result is sent
    // under the name of the call it answers.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let field = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str).ok_or_else(|| invalid(&field, "needs a `role`"))?;
        match role {
            "system" | "developer" => system.extend(content_parts(m.get("content"), &field, false)?),
            "user" => contents.push("user", content_parts(m.get("content"), &field, true)?),
            "assistant" => {
                let mut parts = content_parts(m.get("content"), &field, false)?;
                for (k, call) in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    let at = format!("{field}.tool_calls[{k}]");
                    let name = call
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                        .ok_or_else(|| invalid(&at, "needs `function.name`"))?;
                    let raw = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
                    let args: Value = if raw.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(raw)
                            .map_err(|e| invalid(&format!("{at}.function.arguments"), format!("is not JSON: {e}")))?
                    };
                    if !args.is_object() {
                        return Err(invalid(&format!("{at}.function.arguments"), "must be a JSON object"));
                    }
                    let id = call.get("id").and_then(Value::as_str);
                    if let Some(id) = id {
                        call_names.insert(id.to_string(), name.to_string());
                    }
                    let mut part = json!({"functionCall": {"name": name, "args": args}});
                    if let Some((_, sig)) = id.and_then(|id| id.split_once(THOUGHT_SEPARATOR)) {
                        part["thoughtSignature"] = json!(sig);
                    }
                    parts.push(part);
                }
                contents.push("model", parts);
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(&field, "a tool message needs `tool_call_id`"))?;
                let name = call_names
                    .get(id)
                    .ok_or_else(|| invalid(&field, format!("`tool_call_id` {id:?} answers no earlier tool call")))?;
                let text = tool_text(m.get("content"), &field)?;
                contents.push("user", vec![json!({"functionResponse": {"name": name, "response": {"content": text}}})]);
            }
            other => return Err(invalid(&format!("{field}.role"), format!("`{other}` is not supported for Gemini"))),
        }
    }
    let mut out = Map::new();
    let contents: Vec<Value> =
        contents.0.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    if let Some(tools) = tools(obj.get("tools"))? {
        out.insert("tools".into(), tools);
    }
    if let Some(tc) = tool_config(obj.get("tool_choice"))? {
        out.insert("toolConfig".into(), tc);
    }
    let config = generation_config(obj)?;
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(out)
}

fn tools(v: Option<&Value>) -> Result<Option<Value>> {
    let Some(list) = v.filter(|v| !v.is_null()) else { return Ok(None) };
    let list = list.as_array().ok_or_else(|| invalid("tools", "must be an array"))?;
    let mut declarations = Vec::new();
    for (k, t) in list.iter().enumerate() {
        let at = format!("tools[{k}]");
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(invalid(&at, "only `function` tools are supported for Gemini"));
        }
        let f = t.get("function").ok_or_else(|| invalid(&at, "needs `function`"))?;
        let name = f.get("name").and_then(Value::as_str).ok_or_else(|| invalid(&at, "needs `function.name`"))?;
        let mut d = Map::new();
        d.insert("name".into(), json!(name));
        if let Some(desc) = f.get("description").filter(|d| !d.is_null()) {
            d.insert("description".into(), desc.clone());
        }
        if let Some(schema) = f.get("parameters").filter(|p| !p.is_null()) {
            d.insert("parametersJsonSchema".into(), schema.clone());
        }
        declarations.push(Value::Object(d));
    }
    if declarations.is_empty() {
        return Ok(None);
    }
    Ok(Some(json!([{"functionDeclarations": declarations}])))
}

fn tool_config(v: Option<&Value>) -> Result<Option<Value>> {
    let config = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"mode": "AUTO"}),
            "none" => json!({"mode": "NONE"}),
            "required" => json!({"mode": "ANY"}),
            other => return Err(invalid("tool_choice", format!("`{other}` is not one of auto, none, required"))),
        },
        Some(c) => {
            let name = c
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("tool_choice", "a named tool choice needs `function.name`"))?;
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
    };
    Ok(Some(json!({"functionCallingConfig": config})))
}

fn generation_config(obj: &Map<String, Value>) -> Result<Map<String, Value>> {
    let mut c = Map::new();
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
    for (openai, gemini) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = get(openai) {
            if !v.is_number() {
                return Err(invalid(openai, "must be a number"));
            }
            c.insert(gemini.into(), v.clone());
        }
    }
    // `max_completion_tokens` is the newer name of the same bound.
    if let Some(v) = get("max_completion_tokens").or_else(|| get("max_tokens")) {
        if !v.is_u64() {
            return Err(invalid("max_tokens", "must be a positive integer"));
        }
        c.insert("maxOutputTokens".into(), v.clone());
    }
    match get("stop") {
        None => {}
        Some(Value::String(s)) => {
            c.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            c.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        Some(_) => return Err(invalid("stop", "must be a string or an array of strings")),
    }
    if let Some(f) = get("response_format") {
        match f.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => {
                c.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                c.insert("responseMimeType".into(), json!("application/json"));
                if let Some(schema) = f.pointer("/json_schema/schema").filter(|s| !s.is_null()) {
                    c.insert("responseJsonSchema".into(), schema.clone());
                }
            }
            other => return Err(invalid("response_format.type", format!("{other:?} is not supported for Gemini"))),
        }
    }
    Ok(c)
}

// ------------------------------------------------------------ answers

/// Gemini's finish reason in Chat Completions' words; a candidate that
/// called a function stopped for `tool_calls` (Gemini says `STOP`).
pub fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => "content_filter",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// OpenAI's usage object from `usageMetadata`: thinking tokens are
/// completion tokens (they are billed as output); `promptTokenCount`
/// already includes the cached tokens, which are also said apart.
pub fn usage(meta: &Value) -> Option<Value> {
    let m = meta.as_object()?;
    let n = |k: &str| m.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (prompt, thoughts) = (n("promptTokenCount"), n("thoughtsTokenCount"));
    let completion = n("candidatesTokenCount") + thoughts;
    let mut u = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    if let Some(cached) = m.get("cachedContentTokenCount").and_then(Value::as_u64) {
        u["prompt_tokens_details"] = json!({"cached_tokens": cached});
    }
    if thoughts > 0 {
        u["completion_tokens_details"] = json!({"reasoning_tokens": thoughts});
    }
    Some(u)
}

/// An id for what Gemini did not name (a response without `responseId`,
/// a function call without `id`).
fn fresh_id(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..24).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    format!("{prefix}{tail}")
}

/// A candidate's answer: its text (thoughts left out) and its function
/// calls as OpenAI tool calls.
fn candidate_parts(c: &Value) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for p in c.pointer("/content/parts").and_then(Value::as_array).into_iter().flatten() {
        if p.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            text.push_str(t);
        }
        if let Some(f) = p.get("functionCall") {
            // Gemini 3 refuses a later turn whose function calls lost their
            // `thoughtSignature`, and OpenAI's tool call has no place for
            // one but its id: a generated id carries it (LiteLLM's
            // spelling, so a client may move between the two), and
            // `chat_to_gemini` puts it back. An id Gemini gave is kept as is.
            let id = match (f.get("id").and_then(Value::as_str), p.get("thoughtSignature").and_then(Value::as_str)) {
                (Some(id), _) => id.to_string(),
                (None, Some(sig)) => format!("{}{THOUGHT_SEPARATOR}{sig}", fresh_id("call_")),
                (None, None) => fresh_id("call_"),
            };
            let args = f.get("args").filter(|a| !a.is_null()).cloned().unwrap_or_else(|| json!({}));
            calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": f.get("name").and_then(Value::as_str).unwrap_or(""), "arguments": args.to_string()},
            }));
        }
    }
    (text, calls)
}

fn candidate_index(c: &Value, position: usize) -> u64 {
    c.get("index").and_then(Value::as_u64).unwrap_or(position as u64)
}

/// A prompt Gemini blocked comes back with no candidates and
/// `promptFeedback.blockReason`.
fn blocked(v: &Value) -> bool {
    v.pointer("/promptFeedback/blockReason").is_some_and(|r| !r.is_null())
}

/// A `GenerateContentResponse` as a `chat.completion`.
pub(crate) fn gemini_to_chat(v: &Value, cx: &AnswerContext<'_>) -> Result<Value> {
    if !v.is_object() {
        return Err(invalid("answer", "is not a JSON object"));
    }
    let candidates = v.get("candidates").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut choices = Vec::new();
    for (k, c) in candidates.iter().enumerate() {
        let (text, calls) = candidate_parts(c);
        let reason = c.get("finishReason").and_then(Value::as_str).unwrap_or("STOP");
        let mut message = json!({"role": "assistant", "content": text});
        if !calls.is_empty() {
            if text.is_empty() {
                message["content"] = Value::Null;
            }
            message["tool_calls"] = json!(calls);
        }
        choices.push(json!({
            "index": candidate_index(c, k),
            "message": message,
            "finish_reason": finish_reason(reason, !calls.is_empty()),
        }));
    }
    if choices.is_empty() {
        if !blocked(v) {
            return Err(invalid("candidates", "the answer has no candidates"));
        }
        choices.push(
            json!({"index": 0, "message": {"role": "assistant", "content": null}, "finish_reason": "content_filter"}),
        );
    }
    let mut out = json!({
        "id": v.get("responseId").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| fresh_id("chatcmpl-")),
        "object": "chat.completion",
        "created": cx.created,
        "model": v.get("modelVersion").and_then(Value::as_str).unwrap_or(cx.upstream_model),
        "choices": choices,
    });
    if let Some(u) = v.get("usageMetadata").and_then(usage) {
        out["usage"] = u;
    }
    Ok(out)
}

/// A Gemini stream (`alt=sse`: one `GenerateContentResponse` per event,
/// no terminator) as Chat Completions chunks.
pub(crate) struct ChunkTranslator {
    sse: SseParser,
    created: u64,
    include_usage: bool,
    id: Option<String>,
    model: String,
    /// Candidates whose first delta (with the role) went out.
    started: BTreeSet<u64>,
    /// Per candidate, the tool calls sent so far (the next call's index).
    calls: BTreeMap<u64, u64>,
    /// Candidates that carried their `finishReason`.
    finished: BTreeSet<u64>,
    usage: Option<Value>,
}

impl ChunkTranslator {
    pub(crate) fn new(cx: &AnswerContext<'_>) -> Self {
        ChunkTranslator {
            sse: SseParser::new(),
            created: cx.created,
            include_usage: cx.include_usage,
            id: None,
            model: cx.upstream_model.to_string(),
            started: BTreeSet::new(),
            calls: BTreeMap::new(),
            finished: BTreeSet::new(),
            usage: None,
        }
    }

    fn chunk(&self, choices: Value, out: &mut Vec<u8>) {
        let c = json!({
            "id": self.id.as_deref().unwrap_or(""),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        out.extend_from_slice(format!("data: {c}\n\n").as_bytes());
    }

    fn on_response(&mut self, v: &Value, out: &mut Vec<u8>) {
        if self.id.is_none() {
            let id = v.get("responseId").and_then(Value::as_str).map(str::to_string);
            self.id = Some(id.unwrap_or_else(|| fresh_id("chatcmpl-")));
            if let Some(m) = v.get("modelVersion").and_then(Value::as_str) {
                self.model = m.to_string();
            }
        }
        if let Some(u) = v.get("usageMetadata").and_then(usage) {
            self.usage = Some(u);
        }
        let candidates = v.get("candidates").and_then(Value::as_array).cloned().unwrap_or_default();
        if candidates.is_empty() && blocked(v) && !self.finished.contains(&0) {
            self.started.insert(0);
            self.finished.insert(0);
            let choice = json!({"index": 0, "delta": {"role": "assistant"}, "finish_reason": "content_filter"});
            self.chunk(json!([choice]), out);
            return;
        }
        for (k, c) in candidates.iter().enumerate() {
            let index = candidate_index(c, k);
            let (text, calls) = candidate_parts(c);
            let mut delta = Map::new();
            if self.started.insert(index) {
                delta.insert("role".into(), json!("assistant"));
            }
            if !text.is_empty() {
                delta.insert("content".into(), json!(text));
            }
            if !calls.is_empty() {
                let next = self.calls.entry(index).or_insert(0);
                let calls: Vec<Value> = calls
                    .into_iter()
                    .map(|mut call| {
                        call["index"] = json!(*next);
                        *next += 1;
                        call
                    })
                    .collect();
                delta.insert("tool_calls".into(), Value::Array(calls));
            }
            if !delta.is_empty() {
                self.chunk(json!([{"index": index, "delta": delta, "finish_reason": null}]), out);
            }
            if let Some(reason) = c.get("finishReason").and_then(Value::as_str) {
                if self.finished.insert(index) {
                    let called = self.calls.get(&index).is_some_and(|n| *n > 0);
                    let choice = json!({"index": index, "delta": {}, "finish_reason": finish_reason(reason, called)});
                    self.chunk(json!([choice]), out);
                }
            }
        }
    }
}

/// A failure Gemini reported inside its stream, as the error it is.
fn stream_error(err: &Value) -> ApiError {
    let status = err.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
    let message = err.get("message").and_then(Value::as_str).unwrap_or("an error in its stream");
    ApiError::Upstream {
        status,
        message: format!("gemini error ({status}): {message}"),
        provider: "gemini".into(),
        error_type: err.get("status").and_then(Value::as_str).map(str::to_string),
        retry_after: None,
    }
}

impl StreamTranslator for ChunkTranslator {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), ApiError> {
        let events = self.sse.feed(chunk).map_err(|e| ApiError::BadGateway(format!("gemini stream: {e}")))?;
        for ev in events {
            let data = ev.data.trim();
            if data.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(data)
                .map_err(|e| ApiError::BadGateway(format!("gemini: stream chunk is not JSON: {e}")))?;
            if let Some(err) = v.get("error").filter(|e| e.is_object()) {
                return Err(stream_error(err));
            }
            self.on_response(&v, out);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> std::result::Result<(), ApiError> {
        let rest = std::mem::take(&mut self.sse).finish();
        if rest.is_some_and(|e| !e.data.trim().is_empty()) {
            return Err(ApiError::BadGateway("gemini ended its stream in the middle of an event".into()));
        }
        // No terminator in Gemini's streams: the last chunk carries every
        // candidate's finishReason. Without it the answer was cut short.
        let complete = !self.started.is_empty() && self.started.iter().all(|i| self.finished.contains(i));
        if !complete {
            return Err(ApiError::BadGateway("gemini ended its stream before its answer was complete".into()));
        }
        if self.include_usage {
            if let Some(u) = self.usage.clone() {
                let c = json!({
                    "id": self.id.as_deref().unwrap_or(""),
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": u,
                });
                out.extend_from_slice(format!("data: {c}\n\n").as_bytes());
            }
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        Ok(())
    }

    fn usage(&self) -> Option<Value> {
        self.usage.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(include_usage: bool) -> AnswerContext<'static> {
        AnswerContext { upstream_model: "gemini-2.5-flash", created: 7, include_usage }
    }

    #[test]
    fn a_conversation_becomes_contents_with_gemini_roles_merged() {
        let body = json!({
            "model": "g",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": " and kind"}]},
                {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "user", "content": "and tomorrow?"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object", "additionalProperties": false}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "temperature": 0.5, "top_p": 0.9, "max_tokens": 10, "stop": "END", "n": 2, "seed": 3,
            "presence_penalty": 0.1, "frequency_penalty": 0.2,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            "stream_options": {"include_usage": true}, "user": "u-1"
        });
        let g = Value::Object(chat_to_gemini(&body).unwrap());
        assert_eq!(g["systemInstruction"], json!({"parts": [{"text": "be brief"}, {"text": " and kind"}]}));
        assert_eq!(
            g["contents"],
            json!([
                {"role": "user", "parts": [{"text": "look"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
                {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}, {"text": "and tomorrow?"}]}
            ])
        );
        assert_eq!(g["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["additionalProperties"], false);
        assert_eq!(
            g["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
        );
        assert_eq!(
            g["generationConfig"],
            json!({"temperature": 0.5, "topP": 0.9, "candidateCount": 2, "seed": 3, "presencePenalty": 0.1,
                   "frequencyPenalty": 0.2, "maxOutputTokens": 10, "stopSequences": ["END"],
                   "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}})
        );
    }

    #[test]
    fn a_function_calls_thought_signature_travels_in_its_tool_call_id_and_back() {
        let v = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2lnLTE="},
            {"functionCall": {"name": "g", "args": {}}}]}, "finishReason": "STOP"}]});
        let c = gemini_to_chat(&v, &cx(false)).unwrap();
        let calls = c["choices"][0]["message"]["tool_calls"].as_array().unwrap().clone();
        let ids: Vec<&str> = calls.iter().map(|t| t["id"].as_str().unwrap()).collect();
        assert!(ids[0].starts_with("call_") && ids[0].ends_with("__thought__c2lnLTE="), "{ids:?}");
        assert!(!ids[1].contains("__thought__"), "{ids:?}");
        let body = json!({"messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": calls},
            {"role": "tool", "tool_call_id": ids[0], "content": "one"},
            {"role": "tool", "tool_call_id": ids[1], "content": "two"}]});
        let g = chat_to_gemini(&body).unwrap();
        assert_eq!(
            g["contents"][1]["parts"],
            json!([{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2lnLTE="}, {"functionCall": {"name": "g", "args": {}}}])
        );
        assert_eq!(g["contents"][2]["parts"][0]["functionResponse"]["name"], "f");
        assert_eq!(g["contents"][2]["parts"][1]["functionResponse"]["name"], "g");
    }

    #[test]
    fn what_gemini_cannot_take_is_a_clear_error() {
        let cases = [
            (json!({"messages": [{"role": "tool", "tool_call_id": "x", "content": "r"}]}), "answers no earlier"),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
                "data:",
            ),
            (json!({"messages": [], "logit_bias": {"1": 2}}), "logit_bias"),
            (json!({"messages": [], "tool_choice": "sometimes"}), "sometimes"),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "[1]"}}]}]}),
                "object",
            ),
            (json!({"messages": [{"role": "function", "content": "x"}]}), "function"),
        ];
        for (body, needle) in cases {
            let err = chat_to_gemini(&body).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
        for (choice, mode) in [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")] {
            let g = chat_to_gemini(&json!({"messages": [], "tool_choice": choice})).unwrap();
            assert_eq!(g["toolConfig"]["functionCallingConfig"]["mode"], mode);
        }
    }

    #[test]
    fn an_answer_becomes_a_chat_completion() {
        let v = json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "thinking…", "thought": true}, {"text": "Hel"}, {"text": "lo"}]}, "finishReason": "STOP", "index": 0},
                           {"content": {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]}, "finishReason": "STOP", "index": 1},
                           {"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": "SAFETY", "index": 2},
                           {"content": {"role": "model", "parts": [{"text": "y"}]}, "finishReason": "MAX_TOKENS", "index": 3}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 3, "cachedContentTokenCount": 4, "totalTokenCount": 18},
            "modelVersion": "gemini-2.5-flash-001", "responseId": "resp-1"
        });
        let c = gemini_to_chat(&v, &cx(false)).unwrap();
        assert_eq!(
            (c["id"].as_str(), c["model"].as_str(), c["created"].as_u64()),
            (Some("resp-1"), Some("gemini-2.5-flash-001"), Some(7))
        );
        assert_eq!(c["choices"][0]["message"]["content"], "Hello");
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        let call = &c["choices"][1]["message"]["tool_calls"][0];
        assert!(call["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(
            (call["function"]["name"].as_str(), call["function"]["arguments"].as_str()),
            (Some("f"), Some("{\"a\":1}"))
        );
        assert_eq!(c["choices"][1]["message"]["content"], Value::Null);
        assert_eq!(c["choices"][1]["finish_reason"], "tool_calls");
        assert_eq!(c["choices"][2]["finish_reason"], "content_filter");
        assert_eq!(c["choices"][3]["finish_reason"], "length");
        assert_eq!(
            c["usage"],
            json!({"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18,
                   "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 3}})
        );
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}});
        assert_eq!(gemini_to_chat(&blocked, &cx(false)).unwrap()["choices"][0]["finish_reason"], "content_filter");
        assert!(gemini_to_chat(&json!({}), &cx(false)).is_err());
    }

    fn run(tr: &mut ChunkTranslator, body: &str) -> (String, std::result::Result<(), ApiError>) {
        let mut out = Vec::new();
        // Fed a byte at a time: events split anywhere still translate.
        for b in body.as_bytes() {
            if let Err(e) = tr.feed(std::slice::from_ref(b), &mut out) {
                return (String::from_utf8(out).unwrap(), Err(e));
            }
        }
        let r = tr.finish(&mut out);
        (String::from_utf8(out).unwrap(), r)
    }

    #[test]
    fn a_stream_becomes_chunks_then_usage_then_done() {
        let body = concat!(
            "data: {\"candidates\": [{\"content\": {\"role\": \"model\", \"parts\": [{\"text\": \"Hel\"}]}, \"index\": 0}], \"modelVersion\": \"m-1\", \"responseId\": \"r-1\"}\r\n\r\n",
            "data: {\"candidates\": [{\"content\": {\"role\": \"model\", \"parts\": [{\"functionCall\": {\"name\": \"f\", \"args\": {}}}]}, \"finishReason\": \"STOP\", \"index\": 0}], \"usageMetadata\": {\"promptTokenCount\": 3, \"candidatesTokenCount\": 2, \"totalTokenCount\": 5}}\r\n\r\n",
        );
        let mut tr = ChunkTranslator::new(&cx(true));
        let (out, r) = run(&mut tr, body);
        r.unwrap();
        let events: Vec<&str> = out.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 5, "{out}");
        let chunk = |i: usize| serde_json::from_str::<Value>(events[i].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(chunk(0)["choices"][0]["delta"], json!({"role": "assistant", "content": "Hel"}));
        assert_eq!((chunk(0)["id"].as_str(), chunk(0)["model"].as_str()), (Some("r-1"), Some("m-1")));
        assert_eq!(chunk(1)["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert_eq!(chunk(2)["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunk(3)["choices"], json!([]));
        assert_eq!(chunk(3)["usage"]["total_tokens"], 5);
        assert_eq!(events[4], "data: [DONE]");

        // Without include_usage: no usage chunk, but the meter still sees it.
        let mut tr = ChunkTranslator::new(&cx(false));
        let (out, r) = run(&mut tr, body);
        r.unwrap();
        assert!(!out.contains("\"usage\""), "{out}");
        assert_eq!(tr.usage().unwrap()["prompt_tokens"], 3);
    }

    #[test]
    fn a_stream_without_its_finish_reason_or_with_an_error_never_ends_cleanly() {
        let cut = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}]}}]}\n\n";
        let (out, r) = run(&mut ChunkTranslator::new(&cx(true)), cut);
        assert!(r.is_err() && !out.contains("[DONE]"), "{out}");
        let failed = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}]}}]}\n\ndata: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}\n\n";
        let (out, r) = run(&mut ChunkTranslator::new(&cx(true)), failed);
        let e = r.unwrap_err();
        assert!(e.to_string().contains("overloaded") && out.contains("Hel") && !out.contains("[DONE]"), "{e} {out}");
        let (_, r) = run(&mut ChunkTranslator::new(&cx(true)), "");
        assert!(r.is_err(), "an empty stream is no answer");
    }
}
