//! The checks OpenAI's API makes on a request body past the types
//! (`openai.rs` checks those first): members it does not define
//! (`Unrecognized request argument supplied: x`), `stream_options` without
//! streaming, ranges of the sampling values, message roles and content part
//! types, the tool-call sequence (every `tool` message answers a call of the
//! assistant turn before it; every call is answered before the
//! conversation goes on), tool definitions and the tool choice.
//!
//! These are the rules a translating gateway breaks when it passes another
//! API's member or block through, loses a tool result or reorders turns;
//! the real service refuses each with a 400 naming the parameter. The
//! lists are this mock's own knowledge of the API, generous where the API
//! has grown: a member OpenAI accepts must never be refused.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

type Object = Map<String, Value>;

/// A refusal: OpenAI's message, its `param` and its `code`.
pub(crate) struct Refusal {
    pub message: String,
    pub param: Option<String>,
    pub code: &'static str,
}

fn refuse(message: String, param: impl Into<Option<String>>, code: &'static str) -> Option<Refusal> {
    Some(Refusal { message, param: param.into(), code })
}

/// Which endpoint the body is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    Chat,
    Responses,
    Completions,
    Embeddings,
}

/// `CreateChatCompletionRequest`'s members, deprecated ones included.
const CHAT: &[&str] = &[
    "messages",
    "model",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "prompt_cache_retention",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];

/// Azure OpenAI's additions to chat (On Your Data, Defender for Cloud).
const AZURE_CHAT: &[&str] = &["data_sources", "user_security_context"];

/// `CreateResponse`'s members.
const RESPONSES: &[&str] = &[
    "background",
    "context_management",
    "conversation",
    "include",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "model",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "prompt_cache_key",
    "prompt_cache_retention",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
];

/// `CreateCompletionRequest`'s members.
const COMPLETIONS: &[&str] = &[
    "model",
    "prompt",
    "best_of",
    "echo",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "max_tokens",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "suffix",
    "temperature",
    "top_p",
    "user",
];

/// `CreateEmbeddingRequest`'s members.
const EMBEDDINGS: &[&str] = &["input", "model", "encoding_format", "dimensions", "user"];

const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];

/// Content part types by role (`ChatCompletionRequest*MessageContentPart`).
fn part_types(role: &str) -> &'static [&'static str] {
    match role {
        "user" => &["text", "image_url", "input_audio", "file"],
        "assistant" => &["text", "refusal"],
        _ => &["text"],
    }
}

/// The first problem OpenAI reports, or `None`. `azure` adds Azure's
/// members.
pub(crate) fn problem(obj: &Object, body: Body, azure: bool) -> Option<Refusal> {
    let defined: &[&str] = match body {
        Body::Chat => CHAT,
        Body::Responses => RESPONSES,
        Body::Completions => COMPLETIONS,
        Body::Embeddings => EMBEDDINGS,
    };
    let extra = |k: &str| azure && body == Body::Chat && AZURE_CHAT.contains(&k);
    if let Some(k) = obj.keys().find(|k| !defined.contains(&k.as_str()) && !extra(k)) {
        return refuse(format!("Unrecognized request argument supplied: {k}"), None, "unrecognized_argument");
    }
    let streaming = obj.get("stream").and_then(Value::as_bool) == Some(true);
    if present(obj, "stream_options").is_some() && !streaming && body != Body::Embeddings {
        return refuse(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
            "stream_options".to_string(),
            "invalid_value",
        );
    }
    ranges(obj).or_else(|| match body {
        Body::Chat => messages(obj).or_else(|| tools(obj)).or_else(|| tool_choice(obj)),
        _ => None,
    })
}

fn ranges(obj: &Object) -> Option<Refusal> {
    let limits: &[(&str, f64, f64)] = &[
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("frequency_penalty", -2.0, 2.0),
        ("presence_penalty", -2.0, 2.0),
    ];
    for (key, lo, hi) in limits {
        let Some(x) = present(obj, key).and_then(Value::as_f64) else { continue };
        if x < *lo {
            return refuse(
                format!("Invalid '{key}': decimal below minimum value. Expected a value >= {lo}, but got {x} instead."),
                key.to_string(),
                "decimal_below_min_value",
            );
        }
        if x > *hi {
            return refuse(
                format!("Invalid '{key}': decimal above maximum value. Expected a value <= {hi}, but got {x} instead."),
                key.to_string(),
                "decimal_above_max_value",
            );
        }
    }
    if let Some(n) = present(obj, "n").and_then(Value::as_i64) {
        if n < 1 {
            return refuse(
                format!("Invalid 'n': integer below minimum value. Expected a value >= 1, but got {n} instead."),
                "n".to_string(),
                "integer_below_min_value",
            );
        }
    }
    None
}

fn messages(obj: &Object) -> Option<Refusal> {
    let messages = present(obj, "messages").and_then(Value::as_array)?;
    // Calls of the latest assistant turn still waiting for their answers.
    let mut pending: Option<(usize, Vec<String>)> = None;
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if !ROLES.contains(&role) {
            return refuse(
                format!("Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."),
                format!("messages[{i}].role"),
                "invalid_value",
            );
        }
        if let Some(Value::Array(parts)) = m.get("content") {
            let allowed = part_types(role);
            for (j, p) in parts.iter().enumerate() {
                let kind = p.get("type").and_then(Value::as_str).unwrap_or_default();
                if !allowed.contains(&kind) {
                    let list: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
                    return refuse(
                        format!("Invalid value: '{kind}'. Supported values are: {}.", list.join(", ")),
                        format!("messages[{i}].content[{j}].type"),
                        "invalid_value",
                    );
                }
            }
        }
        if role == "tool" {
            let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or_default();
            match pending.as_mut() {
                None => {
                    return refuse(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.".into(),
                        format!("messages.[{i}].role"),
                        "invalid_value",
                    )
                }
                Some((_, waiting)) => match waiting.iter().position(|w| w == id) {
                    Some(at) => {
                        waiting.remove(at);
                    }
                    None => {
                        return refuse(
                            format!("Invalid parameter: 'tool_call_id' of '{id}' not found in 'tool_calls' of previous message."),
                            format!("messages.[{i}].tool_call_id"),
                            "invalid_value",
                        )
                    }
                },
            }
            continue;
        }
        if let Some((at, waiting)) = pending.take() {
            if !waiting.is_empty() {
                return refuse(
                    format!("An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}", waiting.join(", ")),
                    format!("messages.[{at}].role"),
                    "invalid_value",
                );
            }
        }
        if role == "assistant" {
            let ids: Vec<String> = m
                .get("tool_calls")
                .and_then(Value::as_array)
                .map(|calls| {
                    calls.iter().filter_map(|c| c.get("id").and_then(Value::as_str)).map(str::to_string).collect()
                })
                .unwrap_or_default();
            if !ids.is_empty() {
                pending = Some((i, ids));
            }
        }
    }
    None
}

fn tools(obj: &Object) -> Option<Refusal> {
    let tools = present(obj, "tools").and_then(Value::as_array)?;
    let mut names = BTreeSet::new();
    for (i, t) in tools.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some("custom") => continue,
            Some(other) => {
                return refuse(
                    format!("Invalid value: '{other}'. Supported values are: 'function' and 'custom'."),
                    format!("tools[{i}].type"),
                    "invalid_value",
                )
            }
            None => {
                return refuse(
                    format!("Missing required parameter: 'tools[{i}].type'."),
                    format!("tools[{i}].type"),
                    "missing_required_parameter",
                )
            }
        }
        let Some(name) = t.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) else {
            return refuse(
                format!("Missing required parameter: 'tools[{i}].function.name'."),
                format!("tools[{i}].function.name"),
                "missing_required_parameter",
            );
        };
        let ok =
            (1..=64).contains(&name.len()) && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        if !ok {
            return refuse(
                format!("Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{{1,64}}$'."),
                format!("tools[{i}].function.name"),
                "invalid_value",
            );
        }
        if !names.insert(name) {
            return refuse(
                format!("Invalid 'tools': duplicate function name '{name}'."),
                "tools".to_string(),
                "invalid_value",
            );
        }
    }
    None
}

fn tool_choice(obj: &Object) -> Option<Refusal> {
    match present(obj, "tool_choice")? {
        Value::String(s) if matches!(s.as_str(), "none" | "auto" | "required") => None,
        Value::String(s) => refuse(
            format!("Invalid value: '{s}'. Supported values are: 'none', 'auto', and 'required'."),
            "tool_choice".to_string(),
            "invalid_value",
        ),
        Value::Object(c) => match c.get("type").and_then(Value::as_str) {
            Some("function") => match c.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
                Some(_) => None,
                None => refuse(
                    "Missing required parameter: 'tool_choice.function.name'.".into(),
                    "tool_choice.function.name".to_string(),
                    "missing_required_parameter",
                ),
            },
            Some("allowed_tools" | "custom") => None,
            other => refuse(
                format!(
                    "Invalid value: '{}'. Supported values are: 'function', 'allowed_tools' and 'custom'.",
                    other.unwrap_or_default()
                ),
                "tool_choice.type".to_string(),
                "invalid_value",
            ),
        },
        _ => refuse(
            "Invalid type for 'tool_choice': expected one of a string or an object.".into(),
            "tool_choice".to_string(),
            "invalid_type",
        ),
    }
}

/// Present and not `null`.
fn present<'a>(obj: &'a Object, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Option<String> {
        problem(v.as_object().unwrap(), Body::Chat, false).map(|r| r.message)
    }

    fn chat(messages: Value) -> Value {
        json!({"model": "gpt-4o", "messages": messages})
    }

    #[test]
    fn accepts_a_tool_round() {
        let round = chat(json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "w", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
            {"role": "tool", "tool_call_id": "call_1", "content": "sun"},
            {"role": "user", "content": "thanks"}
        ]));
        assert!(check(round).is_none());
    }

    #[test]
    fn refuses_what_the_api_refuses() {
        let hi = json!([{"role": "user", "content": "hi"}]);
        let mut extra = chat(hi.clone());
        extra["top_k"] = json!(5);
        let mut opts = chat(hi.clone());
        opts["stream_options"] = json!({"include_usage": true});
        let mut hot = chat(hi.clone());
        hot["temperature"] = json!(2.5);
        let mut anthropic_tool = chat(hi.clone());
        anthropic_tool["tools"] = json!([{"name": "w", "input_schema": {"type": "object"}}]);
        let mut any = chat(hi.clone());
        any["tool_choice"] = json!("any");
        let cases: Vec<(Value, &str)> = vec![
            (extra, "Unrecognized request argument supplied: top_k"),
            (opts, "stream_options"),
            (hot, "above maximum"),
            (anthropic_tool, "tools[0].type"),
            (any, "'any'"),
            (chat(json!([{"role": "model", "content": "x"}])), "Invalid value: 'model'"),
            (
                chat(json!([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}])),
                "'tool_result'",
            ),
            (
                chat(json!([{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "c", "content": "r"}])),
                "preceeding",
            ),
            (
                chat(json!([
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
                    {"role": "user", "content": "and?"}
                ])),
                "did not have response messages: c1",
            ),
            (
                chat(json!([
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c9", "content": "r"}
                ])),
                "'c9' not found",
            ),
        ];
        for (body, want) in cases {
            let got = check(body.clone()).unwrap_or_else(|| panic!("accepted {body}"));
            assert!(got.contains(want), "{body}: {got} lacks {want}");
        }
    }

    #[test]
    fn azure_members_only_on_azure() {
        let mut body = chat(json!([{"role": "user", "content": "hi"}]));
        body["data_sources"] = json!([]);
        assert!(problem(body.as_object().unwrap(), Body::Chat, true).is_none());
        assert!(problem(body.as_object().unwrap(), Body::Chat, false).is_some());
    }
}
