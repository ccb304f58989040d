//! Fidelity on the way up: what the client asked reaches the provider, in
//! the client's order, with the client's roles and values, across any
//! translation (OpenAI chat ⇄ Anthropic Messages ⇄ Bedrock Converse, to
//! Gemini's `generateContent`, and a Responses API request bridged to
//! either). Gemini's `model` role is the assistant's; its function results
//! answer calls by name (or by `id`, when the gateway sends one).
//!
//! Compared as a conversation, not as bytes: consecutive messages of one
//! role are merged on both sides (Anthropic requires alternation, so
//! gateways merge), a tool result counts as the user's turn (that is where
//! Anthropic and Converse put it), system text is compared without its
//! whitespace layout. Images are compared as a sequence (their turn, their
//! media type and base64 data, or their URL); documents are not read. Tool
//! results must answer the same calls: ids may be renamed, but each result
//! points at the call in the same position.
//! Parameters are compared only when both sides carry them: a parameter a
//! gateway drops (`drop_params`) is not a changed one.
//!
//! Beyond the conversation: the tools the client declared (name,
//! description, parameter schema as the same JSON value), its `tool_choice`
//! and `parallel_tool_calls` (mapped per the table in docs/contracts.md), its
//! stop sequences (less the whitespace-only ones Anthropic refuses), and, on
//! a path without translation, the value of every other parameter it set.

use super::exchange::{Endpoint, Exchange, UpstreamCall};
use super::{same_number, violation, Violation};
use crate::mocks::MockKind;
use serde_json::Value;

/// A conversation as (role, text) turns plus the system text.
#[derive(Debug, Default, PartialEq)]
struct Conversation {
    system: String,
    turns: Vec<(String, String)>,
    tool_calls: Vec<(String, Value)>,
    /// The ids of `tool_calls`, in the same order.
    call_ids: Vec<String>,
    /// The call id each tool result answers, in order.
    results: Vec<String>,
    /// Each image: the turn it is in (after merging) and what it is.
    images: Vec<(usize, Image)>,
}

/// An image in a request, in any API's spelling.
#[derive(Debug, Clone, PartialEq)]
enum Image {
    /// Inline bytes: media type and base64 data (whitespace removed).
    Inline(String, String),
    /// By reference: a URL (a gateway may fetch it and send it inline).
    Url(String),
}

impl Image {
    /// OpenAI `image_url` (a `data:` URL or a link), Anthropic `image`
    /// (base64 or url source), Converse `image` (format and bytes).
    fn of(part: &Value) -> Option<Image> {
        let inline = |media: &str, data: &str| {
            Image::Inline(media.to_ascii_lowercase(), data.chars().filter(|c| !c.is_whitespace()).collect())
        };
        if part.get("type").and_then(Value::as_str) == Some("image_url") {
            let url = part.get("image_url").and_then(|u| u.get("url").or(Some(u))).and_then(Value::as_str)?;
            return Some(match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                Some((media, data)) => inline(media, data),
                None => Image::Url(url.to_string()),
            });
        }
        if part.get("type").and_then(Value::as_str) == Some("image") {
            let source = part.get("source")?;
            return match source.get("type").and_then(Value::as_str) {
                Some("base64") => Some(inline(
                    source.get("media_type").and_then(Value::as_str).unwrap_or(""),
                    source.get("data").and_then(Value::as_str).unwrap_or(""),
                )),
                Some("url") => source.get("url").and_then(Value::as_str).map(|u| Image::Url(u.to_string())),
                _ => None,
            };
        }
        let converse = part.get("image")?;
        let format = converse.get("format").and_then(Value::as_str).unwrap_or("");
        let bytes = converse.pointer("/source/bytes").and_then(Value::as_str)?;
        Some(inline(&format!("image/{format}"), bytes))
    }

    /// Whether `got` is a faithful form of `self`: the same bytes, or, for a
    /// URL, the same URL or bytes the gateway fetched (not checkable here).
    fn kept_as(&self, got: &Image) -> bool {
        match (self, got) {
            (Image::Url(_), Image::Inline(..)) => true,
            (a, b) => a == b,
        }
    }
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                // `input_text`/`output_text`: the Responses API's parts.
                Some("text") | Some("input_text") | Some("output_text") => {
                    p.get("text").and_then(Value::as_str).map(str::to_string)
                }
                // An assistant's earlier refusal (Chat Completions and the
                // Responses API): what it said, which a translation carries as text.
                Some("refusal") => p.get("refusal").and_then(Value::as_str).map(str::to_string),
                Some("tool_result") => p.get("content").map(|c| result_text(text_of(c))),
                // Converse: a text block, or a toolResult holding text blocks.
                None => p
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| p.get("toolResult").and_then(|r| r.get("content")).map(|c| result_text(text_of(c))))
                    // A Converse tool result's `json` block.
                    .or_else(|| p.get("json").map(Value::to_string)),
                _ => p.get("toolResult").and_then(|r| r.get("content")).map(|c| result_text(text_of(c))),
            })
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// A tool's result as text to compare: a result that is a JSON object or
/// array is compared as that value, in its compact form. APIs that carry a
/// result as structured data (Gemini's `functionResponse.response`, a
/// Converse `json` block) hold the value, not the client's spacing, so a
/// gateway that parses `"{\"a\": 1}"` into `{"a":1}` changed nothing.
fn result_text(text: String) -> String {
    let t = text.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return text;
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => v.to_string(),
        _ => text,
    }
}

/// An earlier call's `arguments` string as the value it encodes: empty (or
/// blank) arguments are no arguments, `{}`, as the streamed answers are read
/// (`semantic::anthropic_events`); a string that is not JSON stays text.
fn call_arguments(args: &str) -> Value {
    if args.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(args).unwrap_or(Value::String(args.to_string()))
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Conversation {
    /// The images among `content`'s parts, in the current last turn.
    fn images_in(&mut self, content: &Value) {
        let turn = self.turns.len().saturating_sub(1);
        for part in content.as_array().into_iter().flatten() {
            if let Some(image) = Image::of(part) {
                self.images.push((turn, image));
            }
        }
    }

    /// For each tool result, the position of the call it answers (`None`:
    /// no call in the conversation has its id).
    fn answered(&self) -> Vec<Option<usize>> {
        self.results.iter().map(|id| self.call_ids.iter().position(|c| c == id)).collect()
    }

    fn push(&mut self, role: &str, text: String) {
        let role = if role == "tool" { "user" } else { role }.to_string();
        match self.turns.last_mut() {
            Some((r, t)) if *r == role => t.push_str(&text),
            _ => self.turns.push((role, text)),
        }
    }

    /// OpenAI chat: system/developer messages anywhere, tool calls on
    /// assistant messages, tool results as `tool` messages.
    fn openai(body: &Value) -> Conversation {
        let mut c = Conversation::default();
        for m in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            let text = m.get("content").map(text_of).unwrap_or_default();
            if matches!(role, "system" | "developer") {
                c.system.push_str(&text);
                continue;
            }
            let text = if role == "tool" { result_text(text) } else { text };
            c.push(role, text);
            if let Some(content) = m.get("content") {
                c.images_in(content);
            }
            if role == "tool" {
                c.results.push(m.get("tool_call_id").and_then(Value::as_str).unwrap_or("").to_string());
            }
            for t in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let args = t.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                let args = call_arguments(args);
                let name = t.pointer("/function/name").and_then(Value::as_str).unwrap_or("").to_string();
                c.tool_calls.push((name, args));
                c.call_ids.push(t.get("id").and_then(Value::as_str).unwrap_or("").to_string());
            }
        }
        c
    }

    /// The Responses API: `instructions` and system/developer items are the
    /// system text; `input` is a string (one user turn) or items: messages
    /// (text or `input_text`/`output_text` parts), `function_call` items
    /// (the assistant's earlier calls) and `function_call_output` items
    /// (the results, the user's turn).
    fn responses(body: &Value) -> Conversation {
        let mut c = Conversation {
            system: body.get("instructions").and_then(Value::as_str).unwrap_or("").to_string(),
            ..Default::default()
        };
        match body.get("input") {
            Some(Value::String(s)) => c.push("user", s.clone()),
            Some(Value::Array(items)) => {
                for item in items {
                    let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
                    match kind {
                        "function_call" => {
                            c.push("assistant", String::new());
                            let args = item.get("arguments").and_then(Value::as_str).unwrap_or("{}");
                            let args = call_arguments(args);
                            let name = item.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                            c.tool_calls.push((name, args));
                            c.call_ids.push(item.get("call_id").and_then(Value::as_str).unwrap_or("").to_string());
                        }
                        "function_call_output" => {
                            let output = item.get("output").map(text_of).map(result_text).unwrap_or_default();
                            c.push("user", output);
                            c.results.push(item.get("call_id").and_then(Value::as_str).unwrap_or("").to_string());
                        }
                        _ => {
                            let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                            let content = item.get("content").cloned().unwrap_or(Value::Null);
                            let text = text_of(&content);
                            if matches!(role, "system" | "developer") {
                                c.system.push_str(&text);
                            } else {
                                c.push(role, text);
                                c.images_in(&content);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        c
    }

    /// Anthropic Messages (also the InvokeModel body): `system` apart,
    /// tool_use blocks on assistant turns.
    fn anthropic(body: &Value) -> Conversation {
        let of_type = |b: &Value, t: &str| b.get("type").and_then(Value::as_str) == Some(t);
        Self::blocks(
            body,
            |b| of_type(b, "tool_use").then_some(b),
            |b| of_type(b, "tool_result").then(|| b.get("tool_use_id")).flatten(),
            "id",
        )
    }

    /// Bedrock Converse: `system` as text blocks, `toolUse` blocks.
    fn converse(body: &Value) -> Conversation {
        Self::blocks(body, |b| b.get("toolUse"), |b| b.pointer("/toolResult/toolUseId"), "toolUseId")
    }

    /// A block-structured conversation; `tool_use` finds the tool call (with
    /// `name`, `input` and its id under `id_field`) a content block holds, if
    /// it holds one; `result_of` the call id a tool result block answers.
    fn blocks(
        body: &Value,
        tool_use: impl Fn(&Value) -> Option<&Value>,
        result_of: impl Fn(&Value) -> Option<&Value>,
        id_field: &str,
    ) -> Conversation {
        let mut c = Conversation { system: body.get("system").map(text_of).unwrap_or_default(), ..Default::default() };
        for m in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            let content = m.get("content").cloned().unwrap_or(Value::Null);
            c.push(role, text_of(&content));
            c.images_in(&content);
            for block in content.as_array().into_iter().flatten() {
                if let Some(t) = tool_use(block) {
                    let name = t.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                    c.tool_calls.push((name, t.get("input").cloned().unwrap_or(Value::Null)));
                    c.call_ids.push(t.get(id_field).and_then(Value::as_str).unwrap_or("").to_string());
                }
                if let Some(id) = result_of(block) {
                    c.results.push(id.as_str().unwrap_or("").to_string());
                }
            }
        }
        c
    }
}

/// Gemini's body with every field of the request's own messages in its
/// camelCase spelling: the service takes proto's snake_case too
/// (`system_instruction`, `generation_config`), and a gateway may send
/// either. Values the client wrote (function arguments and results,
/// schemas) are left as they are.
fn gemini_camel(body: &Value) -> Value {
    /// The members that hold the request's own messages (lists of them
    /// included): their keys are renamed in turn; other values are data.
    const MESSAGES: &[&str] = &[
        "contents",
        "parts",
        "systemInstruction",
        "inlineData",
        "fileData",
        "functionCall",
        "functionResponse",
        "tools",
        "functionDeclarations",
        "toolConfig",
        "functionCallingConfig",
        "generationConfig",
    ];
    fn camel(key: &str) -> String {
        let mut out = String::with_capacity(key.len());
        let mut up = false;
        for c in key.chars() {
            if c == '_' {
                up = true;
            } else if up {
                out.push(c.to_ascii_uppercase());
                up = false;
            } else {
                out.push(c);
            }
        }
        out
    }
    fn rename(v: &Value) -> Value {
        let Some(obj) = v.as_object() else { return v.clone() };
        let mut out = serde_json::Map::new();
        for (k, v) in obj {
            let k = camel(k);
            let v = match v {
                Value::Array(items) if MESSAGES.contains(&k.as_str()) => {
                    Value::Array(items.iter().map(rename).collect())
                }
                _ if MESSAGES.contains(&k.as_str()) => rename(v),
                _ => v.clone(),
            };
            out.insert(k, v);
        }
        Value::Object(out)
    }
    rename(body)
}

impl Conversation {
    /// Gemini's `generateContent`: `systemInstruction` apart; `model` turns
    /// are the assistant's; `functionCall` parts are earlier calls and
    /// `functionResponse` parts their results (the user's turn), matched by
    /// `id` when given, else by name in order (the k-th result of a name
    /// answers the k-th call of it); `inlineData` and `fileData` images.
    fn gemini(body: &Value) -> Conversation {
        let body = gemini_camel(body);
        let text_parts = |parts: Option<&Value>| -> String {
            parts
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect()
        };
        let mut c = Conversation { system: text_parts(body.pointer("/systemInstruction/parts")), ..Default::default() };
        let mut calls_of: std::collections::HashMap<String, usize> = Default::default();
        let mut results_of: std::collections::HashMap<String, usize> = Default::default();
        for m in body.get("contents").and_then(Value::as_array).into_iter().flatten() {
            let role = match m.get("role").and_then(Value::as_str).unwrap_or("user") {
                "model" => "assistant",
                other => other,
            };
            let parts = m.get("parts").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut text = text_parts(m.get("parts"));
            for p in &parts {
                if let Some(r) = p.get("functionResponse") {
                    let response = r.get("response").cloned().unwrap_or(Value::Null);
                    let said = ["content", "output"].iter().find_map(|k| response.get(*k).and_then(Value::as_str));
                    text.push_str(&said.map(|s| result_text(s.to_string())).unwrap_or_else(|| response.to_string()));
                }
            }
            c.push(role, text);
            let turn = c.turns.len().saturating_sub(1);
            for p in &parts {
                if let Some(d) = p.get("inlineData") {
                    let media = d.get("mimeType").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
                    let data = d.get("data").and_then(Value::as_str).unwrap_or("");
                    c.images.push((turn, Image::Inline(media, data.chars().filter(|c| !c.is_whitespace()).collect())));
                }
                if let Some(uri) = p.pointer("/fileData/fileUri").and_then(Value::as_str) {
                    c.images.push((turn, Image::Url(uri.to_string())));
                }
                let key = |f: &Value, seen: &mut std::collections::HashMap<String, usize>| {
                    let name = f.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                    let k = seen.entry(name.clone()).or_insert(0);
                    *k += 1;
                    f.get("id").and_then(Value::as_str).map(str::to_string).unwrap_or(format!("{name}#{k}"))
                };
                if let Some(f) = p.get("functionCall") {
                    let name = f.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                    c.tool_calls.push((name, f.get("args").cloned().unwrap_or_else(|| serde_json::json!({}))));
                    c.call_ids.push(key(f, &mut calls_of));
                }
                if let Some(r) = p.get("functionResponse") {
                    c.results.push(key(r, &mut results_of));
                }
            }
        }
        c
    }
}

/// A parameter as each API names it: (OpenAI, Anthropic, Converse pointer,
/// Gemini pointer).
const PARAMS: &[(&str, &str, &str, &str)] = &[
    ("temperature", "temperature", "/inferenceConfig/temperature", "/generationConfig/temperature"),
    ("top_p", "top_p", "/inferenceConfig/topP", "/generationConfig/topP"),
    ("max_tokens", "max_tokens", "/inferenceConfig/maxTokens", "/generationConfig/maxOutputTokens"),
    ("max_completion_tokens", "max_tokens", "/inferenceConfig/maxTokens", "/generationConfig/maxOutputTokens"),
];

#[derive(Clone, Copy, PartialEq)]
enum Api {
    OpenAi,
    Anthropic,
    Converse,
    /// Gemini's `generateContent` (read in its camelCase spelling).
    Gemini,
    /// The Responses API, as a client's request a gateway bridges to
    /// another API (it never goes upstream as this: a pass-through is
    /// judged by `openai_passthrough`).
    Responses,
}

fn upstream_api(call: &UpstreamCall) -> Option<Api> {
    let path = call.request.path.as_str();
    Some(match call.kind {
        MockKind::Bedrock if path.ends_with("/converse") || path.ends_with("/converse-stream") => Api::Converse,
        MockKind::Bedrock if path.ends_with("/invoke") || path.ends_with("/invoke-with-response-stream") => {
            Api::Anthropic
        }
        MockKind::Bedrock => return None,
        MockKind::Gemini if path.contains(":generateContent") || path.contains(":streamGenerateContent") => Api::Gemini,
        MockKind::Gemini => return None,
        k if k.is_openai_family() => {
            if !path.ends_with("/chat/completions") {
                return None;
            }
            Api::OpenAi
        }
        _ if path.ends_with("/count_tokens") => return None,
        _ if path.ends_with("/messages") || path.contains(":rawPredict") || path.contains(":streamRawPredict") => {
            Api::Anthropic
        }
        _ => return None,
    })
}

fn param<'v>(body: &'v Value, api: Api, names: (&str, &str, &str, &str)) -> Option<&'v Value> {
    let v = match api {
        Api::OpenAi => body.get(names.0),
        Api::Responses => match names.0 {
            "max_tokens" => body.get("max_output_tokens"),
            "max_completion_tokens" => None,
            other => body.get(other),
        },
        Api::Anthropic => body.get(names.1),
        Api::Converse => body.pointer(names.2),
        Api::Gemini => body.pointer(names.3),
    };
    v.filter(|v| !v.is_null())
}

/// An OpenAI endpoint passed through to the same endpoint (the Responses
/// API, embeddings, text completions): every field the client set (its
/// `input`, `prompt`, `instructions`, `dimensions` included) reaches the
/// provider with the same value, or not at all. A lone string and a list
/// holding just it are one input; `encoding_format` is the gateway's to
/// choose upstream (the vectors are compared as float32 values);
/// `previous_response_id` is a handle the gateway may have issued itself,
/// judged by `fidelity.response-handle`.
fn openai_passthrough(x: &Exchange, endpoint_path: &str, out: &mut Vec<Violation>) {
    let Some(sent) = x.request.json() else { return };
    let Some(fields) = sent.as_object() else { return };
    for call in x.model_calls() {
        let path = call.request.path.split('?').next().unwrap_or("").trim_end_matches('/');
        // `/completions` is also the tail of `/chat/completions`, another API.
        let same = path.ends_with(endpoint_path) && !path.ends_with("/chat/completions");
        if !call.kind.is_openai_family() || !same {
            continue;
        }
        let Some(body) = call.request.json.as_ref() else { continue };
        for (k, v) in fields {
            if v.is_null()
                || matches!(
                    k.as_str(),
                    "model" | "stream" | "stream_options" | "metadata" | "encoding_format" | "previous_response_id"
                )
            {
                continue;
            }
            let Some(g) = body.get(k).filter(|g| !g.is_null()) else { continue };
            let one = |a: &Value, b: &Value| match (a, b) {
                (Value::String(_), Value::Array(xs)) => xs.len() == 1 && same_value(a, &xs[0]),
                _ => false,
            };
            let same = same_value(v, g) || (matches!(k.as_str(), "input" | "prompt") && (one(v, g) || one(g, v)));
            if !same {
                out.push(violation(
                    "fidelity.request",
                    format!(
                        "{} {}: `{k}` {} became {}",
                        call.provider,
                        call.request.path,
                        clip(&v.to_string()),
                        clip(&g.to_string())
                    ),
                ));
            }
        }
    }
}

pub(super) fn check(x: &Exchange, endpoint: Endpoint, out: &mut Vec<Violation>) {
    let same_endpoint = match endpoint {
        Endpoint::Responses => Some("/responses"),
        Endpoint::Embeddings => Some("/embeddings"),
        Endpoint::Completions => Some("/completions"),
        _ => None,
    };
    if let Some(path) = same_endpoint {
        if super::errors::request_fault(&x.request.path, &x.request.body).is_none() {
            openai_passthrough(x, path, out);
        }
        // A Responses request may also be bridged to another API (Chat
        // Completions, Messages): judged below, like any translation.
        if endpoint != Endpoint::Responses {
            return;
        }
    }
    let client_api = match endpoint {
        Endpoint::ChatCompletions => Api::OpenAi,
        Endpoint::Messages => Api::Anthropic,
        Endpoint::Responses => Api::Responses,
        _ => return,
    };
    // An invalid request has no faithful form; the errors family judges it.
    if super::errors::request_fault(&x.request.path, &x.request.body).is_some() {
        return;
    }
    let Some(sent) = x.request.json() else { return };
    let read = |api: Api, body: &Value| match api {
        Api::OpenAi => Conversation::openai(body),
        Api::Anthropic => Conversation::anthropic(body),
        Api::Converse => Conversation::converse(body),
        Api::Gemini => Conversation::gemini(body),
        Api::Responses => Conversation::responses(body),
    };
    let asked = read(client_api, &sent);
    for call in &x.upstream {
        let (Some(api), Some(body)) = (upstream_api(call), call.request.json.as_ref()) else { continue };
        let camel;
        let body = if api == Api::Gemini {
            camel = gemini_camel(body);
            &camel
        } else {
            body
        };
        let got = read(api, body);
        let at = format!("{} {}", call.provider, call.request.path);
        let roles = |c: &Conversation| c.turns.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>();
        if roles(&asked) != roles(&got) {
            out.push(violation(
                "fidelity.request",
                format!("{at}: the turns' roles were {:?}, the provider got {:?}", roles(&asked), roles(&got)),
            ));
        } else {
            for (i, ((_, a), (_, g))) in asked.turns.iter().zip(&got.turns).enumerate() {
                if a != g {
                    out.push(violation(
                        "fidelity.request",
                        format!("{at}: turn {i}: the client sent {:?}, the provider got {:?}", clip(a), clip(g)),
                    ));
                }
            }
        }
        if squash(&asked.system) != squash(&got.system) {
            out.push(violation(
                "fidelity.request",
                format!("{at}: system text {:?} became {:?}", clip(&asked.system), clip(&got.system)),
            ));
        }
        if asked.tool_calls != got.tool_calls {
            out.push(violation(
                "fidelity.request",
                format!("{at}: earlier tool calls {:?} reached the provider as {:?}", asked.tool_calls, got.tool_calls),
            ));
        } else if asked.answered() != got.answered() {
            out.push(violation(
                "fidelity.request",
                format!(
                    "{at}: the tool results answered calls {:?} (by position), the provider's answer calls {:?}",
                    asked.answered(),
                    got.answered()
                ),
            ));
        }
        let kept = asked.images.len() == got.images.len()
            && asked.images.iter().zip(&got.images).all(|((ta, a), (tg, g))| ta == tg && a.kept_as(g));
        if !kept {
            let show = |c: &Conversation| {
                c.images
                    .iter()
                    .map(|(t, i)| match i {
                        Image::Inline(m, d) => format!("turn {t}: {m}, {} base64 chars", d.len()),
                        Image::Url(u) => format!("turn {t}: {}", clip(u)),
                    })
                    .collect::<Vec<_>>()
            };
            out.push(violation(
                "fidelity.request",
                format!("{at}: the client's images {:?} reached the provider as {:?}", show(&asked), show(&got)),
            ));
        }
        for names in PARAMS {
            if let (Some(a), Some(g)) = (param(&sent, client_api, *names), param(body, api, *names)) {
                if !same_number(a, g) {
                    out.push(violation("fidelity.request", format!("{at}: `{}` {a} became {g}", names.0)));
                }
            }
        }
        check_parameters(&at, &sent, client_api, body, api, out);
    }
}

/// A tool the client declared, in any API's spelling.
#[derive(Debug)]
struct ToolDef {
    name: String,
    description: Option<String>,
    schema: Option<Value>,
}

/// The function tools a body declares (`None`: no `tools` at all). Server
/// tools (Anthropic's typed tools, OpenAI's built-in ones) are not read.
fn tools(body: &Value, api: Api) -> Option<Vec<ToolDef>> {
    if api == Api::Gemini {
        let list = body.get("tools")?.as_array()?;
        return Some(
            list.iter()
                .flat_map(|t| t.get("functionDeclarations").and_then(Value::as_array).cloned().unwrap_or_default())
                .filter_map(|d| {
                    let name = d.get("name").and_then(Value::as_str)?.to_string();
                    let description = d.get("description").and_then(Value::as_str).map(str::to_string);
                    // JSON Schema as written, or Gemini's OpenAPI-style
                    // `parameters`, whose type names may be upper-case.
                    let schema = d
                        .get("parametersJsonSchema")
                        .filter(|s| !s.is_null())
                        .cloned()
                        .or_else(|| d.get("parameters").filter(|s| !s.is_null()).map(lower_types));
                    Some(ToolDef { name, description, schema })
                })
                .collect(),
        );
    }
    let list = match api {
        Api::Converse => body.pointer("/toolConfig/tools"),
        _ => body.get("tools"),
    }?
    .as_array()?;
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let o = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
    Some(
        list.iter()
            .filter_map(|t| match api {
                Api::Responses => {
                    (t.get("type").and_then(Value::as_str) == Some("function")).then_some(())?;
                    Some(ToolDef {
                        name: s(t.get("name"))?,
                        description: s(t.get("description")),
                        schema: o(t.get("parameters")),
                    })
                }
                Api::OpenAi => {
                    let f = t.get("function").filter(|_| t.get("type").and_then(Value::as_str) == Some("function"))?;
                    Some(ToolDef {
                        name: s(f.get("name"))?,
                        description: s(f.get("description")),
                        schema: o(f.get("parameters")),
                    })
                }
                Api::Anthropic => {
                    let custom = matches!(t.get("type").and_then(Value::as_str), None | Some("custom"));
                    custom.then_some(())?;
                    Some(ToolDef {
                        name: s(t.get("name"))?,
                        description: s(t.get("description")),
                        schema: o(t.get("input_schema")),
                    })
                }
                Api::Gemini => None,
                Api::Converse => {
                    let spec = t.get("toolSpec")?;
                    Some(ToolDef {
                        name: s(spec.get("name"))?,
                        description: s(spec.get("description")),
                        schema: o(spec.pointer("/inputSchema/json")),
                    })
                }
            })
            .collect(),
    )
}

/// A schema with its `type` names in lower case (Gemini's `Schema` spells
/// them `OBJECT`, `STRING`): the same schema as JSON Schema's.
fn lower_types(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("type", Value::String(t)) => (k.clone(), Value::String(t.to_ascii_lowercase())),
                    _ => (k.clone(), lower_types(v)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(lower_types).collect()),
        other => other.clone(),
    }
}

/// `tool_choice` in one vocabulary.
#[derive(Debug, PartialEq)]
enum Choice {
    None,
    Auto,
    Required,
    Named(String),
}

fn tool_choice(body: &Value, api: Api) -> Option<Choice> {
    if api == Api::Gemini {
        let c = body.pointer("/toolConfig/functionCallingConfig")?;
        let names = c.get("allowedFunctionNames").and_then(Value::as_array);
        return match c.get("mode").and_then(Value::as_str)? {
            "NONE" => Some(Choice::None),
            "AUTO" => Some(Choice::Auto),
            "ANY" => match names.map(Vec::as_slice) {
                Some([one]) => one.as_str().map(|n| Choice::Named(n.to_string())),
                _ => Some(Choice::Required),
            },
            _ => None,
        };
    }
    let c = match api {
        Api::Converse => body.pointer("/toolConfig/toolChoice"),
        _ => body.get("tool_choice"),
    }?;
    let name = |v: Option<&Value>| v.and_then(Value::as_str).map(|n| Choice::Named(n.to_string()));
    match api {
        Api::OpenAi | Api::Responses => match c {
            Value::String(s) => match s.as_str() {
                "none" => Some(Choice::None),
                "auto" => Some(Choice::Auto),
                "required" => Some(Choice::Required),
                _ => None,
            },
            // Chat: {type: function, function: {name}}; Responses: {type: function, name}.
            _ => name(c.pointer("/function/name").or_else(|| c.get("name"))),
        },
        Api::Gemini => None,
        Api::Anthropic => match c.get("type").and_then(Value::as_str)? {
            "none" => Some(Choice::None),
            "auto" => Some(Choice::Auto),
            "any" => Some(Choice::Required),
            "tool" => name(c.get("name")),
            _ => None,
        },
        Api::Converse => {
            if c.get("auto").is_some() {
                Some(Choice::Auto)
            } else if c.get("any").is_some() {
                Some(Choice::Required)
            } else {
                name(c.pointer("/tool/name"))
            }
        }
    }
}

/// Whether the model may call several tools at once, when the body says.
fn parallel_calls(body: &Value, api: Api) -> Option<bool> {
    match api {
        Api::OpenAi | Api::Responses => body.get("parallel_tool_calls")?.as_bool(),
        Api::Anthropic => body.pointer("/tool_choice/disable_parallel_tool_use")?.as_bool().map(|d| !d),
        Api::Converse | Api::Gemini => None,
    }
}

/// The stop sequences a body sets. Anthropic refuses whitespace-only ones,
/// so they are not counted on either side.
fn stops(body: &Value, api: Api) -> Option<Vec<String>> {
    let v = match api {
        Api::OpenAi => body.get("stop"),
        Api::Responses => return None,
        Api::Anthropic => body.get("stop_sequences"),
        Api::Converse => body.pointer("/inferenceConfig/stopSequences"),
        Api::Gemini => body.pointer("/generationConfig/stopSequences"),
    }?;
    let all: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => return None,
    };
    Some(all.into_iter().filter(|s| !s.trim().is_empty()).collect())
}

/// JSON values equal by the contracts' one rule ([`super::json_difference`]).
fn same_value(a: &Value, b: &Value) -> bool {
    super::json_difference(a, b, String::new()).is_none()
}

/// Top-level fields a pass-through is not held to: routing and transport
/// (`model`, `stream`, `stream_options`), what is compared above in its own
/// terms, and `metadata`, which LiteLLM-style gateways also read as their
/// own field.
const NOT_PASSED_AS_IS: &[&str] = &[
    "model",
    "messages",
    "system",
    "stream",
    "stream_options",
    "metadata",
    "stop",
    "stop_sequences",
    "tools",
    "tool_choice",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
];

/// Tools, tool choice, stop sequences and, without a translation, every
/// other parameter the client set.
fn check_parameters(at: &str, sent: &Value, client: Api, body: &Value, api: Api, out: &mut Vec<Violation>) {
    let mut bad = |what: String| out.push(violation("fidelity.request", format!("{at}: {what}")));
    let declared = tools(sent, client).unwrap_or_default();
    match tools(body, api) {
        None if !declared.is_empty() && tool_choice(sent, client) != Some(Choice::None) => {
            bad(format!("the client declared {} tool(s); the provider got none", declared.len()))
        }
        None => {}
        Some(got) => {
            for d in &declared {
                let Some(g) = got.iter().find(|g| g.name == d.name) else {
                    bad(format!("the client's tool `{}` did not reach the provider", d.name));
                    continue;
                };
                // The model reads both to decide whether and how to call
                // the tool: lost on the way is as changed.
                match (&d.description, &g.description) {
                    (Some(a), Some(b)) if a != b => {
                        bad(format!("tool `{}`: description {:?} became {:?}", d.name, clip(a), clip(b)))
                    }
                    (Some(a), None) if !a.trim().is_empty() => {
                        bad(format!("tool `{}`: its description {:?} did not reach the provider", d.name, clip(a)))
                    }
                    _ => {}
                }
                match (&d.schema, &g.schema) {
                    (Some(a), Some(b)) if !same_value(a, b) => {
                        bad(format!("tool `{}`: parameter schema {a} became {b}", d.name))
                    }
                    (Some(a), None) => {
                        bad(format!("tool `{}`: its parameter schema {a} did not reach the provider", d.name))
                    }
                    _ => {}
                }
            }
        }
    }
    if let (Some(a), Some(g)) = (tool_choice(sent, client), tool_choice(body, api)) {
        if a != g {
            bad(format!("tool_choice {a:?} became {g:?}"));
        }
    }
    if let (Some(a), Some(g)) = (parallel_calls(sent, client), parallel_calls(body, api)) {
        if a != g {
            bad(format!("parallel tool calls {} became {}", allowed(a), allowed(g)));
        }
    }
    if let (Some(a), Some(g)) = (stops(sent, client), stops(body, api)) {
        if a != g {
            bad(format!("stop sequences {a:?} became {g:?}"));
        }
    }
    if client != api {
        return;
    }
    if api == Api::Anthropic {
        let (asked, got) = (cache_marks(sent), cache_marks(body));
        let mut rest = got.iter();
        if !asked.iter().all(|m| rest.any(|g| same_value(m, g))) {
            bad(format!(
                "the client's cache_control breakpoints {} reached the provider as {}",
                clip(&Value::Array(asked).to_string()),
                clip(&Value::Array(got).to_string())
            ));
        }
    }
    let Some(fields) = sent.as_object() else { return };
    for (k, v) in fields {
        if v.is_null() || NOT_PASSED_AS_IS.contains(&k.as_str()) {
            continue;
        }
        if let Some(g) = body.get(k).filter(|g| !g.is_null()) {
            if !same_value(v, g) {
                bad(format!("`{k}` {} became {}", clip(&v.to_string()), clip(&g.to_string())));
            }
        }
    }
}

/// The `cache_control` breakpoints of a Messages body, in the order the
/// API reads them (tools, system, messages): prompt caching is paid for by
/// where they stand, so a pass-through keeps every one (a gateway may add
/// its own where its config says so).
fn cache_marks(body: &Value) -> Vec<Value> {
    let blocks = |v: Option<&Value>| -> Vec<Value> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|b| b.get("cache_control").filter(|c| !c.is_null()).cloned())
            .collect()
    };
    let mut marks = blocks(body.get("tools"));
    marks.extend(blocks(body.get("system")));
    for m in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
        marks.extend(blocks(m.get("content")));
    }
    marks
}

fn allowed(yes: bool) -> &'static str {
    if yes {
        "allowed"
    } else {
        "refused"
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}
