//! The checks Claude's Messages API makes on a request body once it is
//! JSON, shared by every place Claude is served with Anthropic's own body
//! (Anthropic direct, Azure AI Foundry, Vertex rawPredict, Bedrock
//! InvokeModel). Each surface wraps the first problem in its own error
//! envelope.
//!
//! What is checked is what Anthropic's API reference and its errors state:
//! the body's schema forbids members it does not define (`x: Extra inputs
//! are not permitted`, at the top level, in a message and in `metadata`);
//! roles are `user` and `assistant` only; content is non-empty text or
//! typed blocks; every `tool_use` is answered by a `tool_result` in the
//! next turn and every `tool_result` answers one of the previous turn;
//! sampling values are in range; with extended thinking on, `max_tokens`
//! exceeds the budget, temperature and `top_k` are left alone, tool use is
//! not forced, and the assistant turn that made the pending tool calls
//! starts with its thinking block. These are the rules a translating
//! gateway breaks (an OpenAI member passed through, an empty text block for
//! a `content: null` tool-call turn, a thinking block lost between turns),
//! and the real service refuses each with a 400.
//!
//! The lists below are this mock's own knowledge of the API (generous where
//! the API has grown: a member Anthropic accepts must never be refused);
//! nothing is read from the gateway.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

type Object = Map<String, Value>;

/// Where the body is going: which envelope members the surface adds to the
/// Messages body, and whether it is a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    /// `POST /v1/messages` (Anthropic, Azure AI Foundry).
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// Vertex AI `rawPredict`/`streamRawPredict` (model in the URL).
    Vertex,
    /// Vertex AI's `count-tokens:rawPredict`.
    VertexCount,
    /// Bedrock InvokeModel (model and streaming chosen by the URL; the
    /// envelope members are checked by Bedrock's own schema first).
    Bedrock,
}

/// Members of "Create a Message" (`POST /v1/messages`), beta members
/// included.
const MESSAGE_MEMBERS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_k",
    "top_p",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "context_management",
    "mcp_servers",
    "output_format",
    "output_config",
    "inference_geo",
];

/// Content block types Claude accepts in a turn. Server tools' blocks
/// (`*_tool_use`, `*_tool_result`) are accepted by suffix: their family
/// grows with each tool release.
const BLOCK_TYPES: &[&str] = &[
    "text",
    "image",
    "document",
    "search_result",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "container_upload",
];

const THINKING_FIRST: &str = "Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`.";

/// The beta that lets thinking budgets exceed `max_tokens` (budgets then
/// span the whole turn).
const INTERLEAVED_THINKING: &str = "interleaved-thinking-2025-05-14";

/// The first problem Claude reports, as `path: message` (Anthropic's
/// wording), or `None` when the body is acceptable. `betas` are the flags
/// the request carries (header or body).
pub(crate) fn problem(obj: &Object, surface: Surface, betas: &[String]) -> Option<String> {
    let extra = match surface {
        // Bedrock's schema reports these in its own words (`bedrock.rs`).
        Surface::Bedrock => None,
        _ => unknown_members(obj, surface).first().map(|k| format!("{k}: Extra inputs are not permitted")),
    };
    extra
        .or_else(|| metadata(obj))
        .or_else(|| sampling(obj, surface))
        .or_else(|| system(obj))
        .or_else(|| turns(obj))
        .or_else(|| tools(obj))
        .or_else(|| thinking(obj, surface, betas))
}

/// Top-level members the surface does not define, in body order. Bedrock
/// InvokeModel's own schema lists its envelope (`anthropic_version`,
/// `anthropic_beta`) and refuses `model` and `stream` itself
/// (`bedrock.rs`); Vertex refuses `model` itself (`vertex.rs`).
pub(crate) fn unknown_members(obj: &Object, surface: Surface) -> Vec<&str> {
    let (defined, envelope): (&[&str], &[&str]) = match surface {
        Surface::Messages => (MESSAGE_MEMBERS, &[]),
        // Counting documents fewer members, but a count that carries the
        // message's own members is not worth a false alarm.
        Surface::CountTokens => (MESSAGE_MEMBERS, &[]),
        Surface::Vertex => (MESSAGE_MEMBERS, &["anthropic_version", "anthropic_beta"]),
        Surface::VertexCount => (MESSAGE_MEMBERS, &["anthropic_version", "anthropic_beta"]),
        Surface::Bedrock => (MESSAGE_MEMBERS, &["anthropic_version", "anthropic_beta"]),
    };
    let refused_elsewhere = |k: &str| match surface {
        Surface::Bedrock => k == "model" || k == "stream",
        Surface::Vertex => k == "model",
        _ => false,
    };
    obj.keys()
        .map(String::as_str)
        .filter(|k| !defined.contains(k) && !envelope.contains(k) && !refused_elsewhere(k))
        .collect()
}

fn metadata(obj: &Object) -> Option<String> {
    let meta = present(obj, "metadata")?;
    let Some(meta) = meta.as_object() else {
        return Some("metadata: Input should be a valid dictionary or object to extract fields from".into());
    };
    meta.keys().find(|k| *k != "user_id").map(|key| format!("metadata.{key}: Extra inputs are not permitted"))
}

fn sampling(obj: &Object, surface: Surface) -> Option<String> {
    if !matches!(surface, Surface::CountTokens | Surface::VertexCount) {
        if let Some(v) = present(obj, "max_tokens") {
            match v.as_i64() {
                None => return Some("max_tokens: Input should be a valid integer".into()),
                Some(n) if n < 1 => return Some("max_tokens: Input should be greater than or equal to 1".into()),
                _ => {}
            }
        }
    }
    for (key, max) in [("temperature", 1.0), ("top_p", 1.0)] {
        if let Some(v) = present(obj, key) {
            match v.as_f64() {
                None => return Some(format!("{key}: Input should be a valid number")),
                Some(x) if x < 0.0 => return Some(format!("{key}: Input should be greater than or equal to 0")),
                Some(x) if x > max => return Some(format!("{key}: Input should be less than or equal to {max}")),
                _ => {}
            }
        }
    }
    if let Some(v) = present(obj, "top_k") {
        if v.as_i64().is_none_or(|k| k < 0) {
            return Some("top_k: Input should be a valid integer greater than or equal to 0".into());
        }
    }
    if let Some(v) = present(obj, "stop_sequences") {
        if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            return Some("stop_sequences: Input should be a valid list of strings".into());
        }
    }
    None
}

fn system(obj: &Object) -> Option<String> {
    let v = present(obj, "system")?;
    match v {
        Value::String(_) => None,
        Value::Array(blocks) => blocks.iter().enumerate().find_map(|(i, b)| {
            let at = format!("system.{i}");
            if b.get("type").and_then(Value::as_str) != Some("text") {
                return Some(format!("{at}.type: Input should be 'text'"));
            }
            text_problem(b, &at)
        }),
        _ => Some("system: Input should be a valid string or a list of text blocks".into()),
    }
}

/// A text block's `text`: a non-empty string with something besides
/// whitespace.
fn text_problem(block: &Value, at: &str) -> Option<String> {
    match block.get("text") {
        Some(Value::String(t)) if t.is_empty() => Some(format!("{at}: text content blocks must be non-empty")),
        Some(Value::String(t)) if t.trim().is_empty() => {
            Some(format!("{at}: text content blocks must contain non-whitespace text"))
        }
        Some(Value::String(_)) => None,
        _ => Some(format!("{at}.text: Field required")),
    }
}

fn turns(obj: &Object) -> Option<String> {
    let Some(messages) = present(obj, "messages") else {
        return Some("messages: Field required".into());
    };
    let Some(messages) = messages.as_array() else {
        return Some("messages: Input should be a valid list".into());
    };
    let last = messages.len().saturating_sub(1);
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages.{i}");
        let Some(m) = m.as_object() else {
            return Some(format!("{at}: Input should be a valid dictionary"));
        };
        if let Some(key) = m.keys().find(|k| *k != "role" && *k != "content") {
            return Some(format!("{at}.{key}: Extra inputs are not permitted"));
        }
        let role = m.get("role").and_then(Value::as_str);
        match role {
            Some("user" | "assistant") => {}
            Some("system") => {
                return Some("messages: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role.".into())
            }
            Some(other) => return Some(format!("{at}.role: Input should be 'user' or 'assistant' (got '{other}')")),
            None => return Some(format!("{at}.role: Field required")),
        }
        let final_assistant = i == last && role == Some("assistant");
        match m.get("content") {
            Some(Value::String(s)) => {
                if s.is_empty() && !final_assistant {
                    return Some(format!(
                        "{at}: all messages must have non-empty content except for the optional final assistant message"
                    ));
                }
            }
            Some(Value::Array(blocks)) => {
                if blocks.is_empty() && !final_assistant {
                    return Some(format!(
                        "{at}: all messages must have non-empty content except for the optional final assistant message"
                    ));
                }
                for (j, b) in blocks.iter().enumerate() {
                    if let Some(p) = block(b, &format!("{at}.content.{j}")) {
                        return Some(p);
                    }
                }
            }
            Some(_) => {
                return Some(format!("{at}.content: Input should be a valid string or a list of content blocks"))
            }
            None => return Some(format!("{at}.content: Field required")),
        }
    }
    pairing(messages)
}

fn block(b: &Value, at: &str) -> Option<String> {
    let Some(kind) = b.get("type").and_then(Value::as_str) else {
        return Some(format!("{at}.type: Field required"));
    };
    let server_tool = kind.ends_with("_tool_use") || kind.ends_with("_tool_result");
    if !BLOCK_TYPES.contains(&kind) && !server_tool {
        return Some(format!("{at}: Input tag '{kind}' found using 'type' does not match any of the expected tags"));
    }
    let string = |key: &str| -> Option<String> {
        match b.get(key) {
            Some(Value::String(_)) => None,
            _ => Some(format!("{at}.{kind}.{key}: Field required")),
        }
    };
    match kind {
        "text" => text_problem(b, at),
        "image" | "document" => match b.get("source") {
            Some(Value::Object(_)) => None,
            _ => Some(format!("{at}.{kind}.source: Field required")),
        },
        "tool_use" => string("id")
            .or_else(|| string("name"))
            .or_else(|| match b.get("input") {
                Some(Value::Object(_)) => None,
                Some(_) => Some(format!("{at}.tool_use.input: Input should be a valid dictionary")),
                None => Some(format!("{at}.tool_use.input: Field required")),
            })
            .or_else(|| {
                let id = b.get("id").and_then(Value::as_str).unwrap_or_default();
                let ok = !id.is_empty() && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
                (!ok).then(|| format!("{at}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"))
            }),
        "tool_result" => string("tool_use_id").or_else(|| match b.get("content") {
            None | Some(Value::String(_)) | Some(Value::Null) => None,
            Some(Value::Array(parts)) => parts.iter().enumerate().find_map(|(k, p)| {
                let pat = format!("{at}.tool_result.content.{k}");
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => text_problem(p, &pat),
                    Some("image" | "document" | "search_result") => None,
                    Some(other) => Some(format!(
                        "{pat}: Input tag '{other}' found using 'type' does not match any of the expected tags"
                    )),
                    None => Some(format!("{pat}.type: Field required")),
                }
            }),
            Some(_) => Some(format!("{at}.tool_result.content: Input should be a valid string or list")),
        }),
        "thinking" => string("thinking").or_else(|| string("signature")),
        "redacted_thinking" => string("data"),
        _ => None,
    }
}

/// The turns as the API reads them: consecutive turns of one role are one
/// turn (the API merges them), each with its blocks.
fn merged(messages: &[Value]) -> Vec<(usize, &str, Vec<&Value>)> {
    let mut out: Vec<(usize, &str, Vec<&Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let blocks: Vec<&Value> = match m.get("content") {
            Some(Value::Array(b)) => b.iter().collect(),
            _ => Vec::new(),
        };
        match out.last_mut() {
            Some((_, r, bs)) if *r == role => bs.extend(blocks),
            _ => out.push((i, role, blocks)),
        }
    }
    out
}

fn ids_of<'a>(blocks: &[&'a Value], kind: &str, key: &str) -> Vec<&'a str> {
    blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some(kind))
        .filter_map(|b| b.get(key).and_then(Value::as_str))
        .collect()
}

/// Every `tool_use` is answered in the next turn; every `tool_result`
/// answers a `tool_use` of the previous turn.
fn pairing(messages: &[Value]) -> Option<String> {
    let turns = merged(messages);
    for (t, (i, role, blocks)) in turns.iter().enumerate() {
        if *role == "assistant" {
            let uses = ids_of(blocks, "tool_use", "id");
            if uses.is_empty() {
                continue;
            }
            let Some((next, _, next_blocks)) = turns.get(t + 1) else {
                continue;
            };
            let answered: BTreeSet<&str> = ids_of(next_blocks, "tool_result", "tool_use_id").into_iter().collect();
            let missing: Vec<&str> = uses.into_iter().filter(|id| !answered.contains(id)).collect();
            if !missing.is_empty() {
                return Some(format!(
                    "messages.{next}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                    missing.join(", ")
                ));
            }
        } else {
            let results = ids_of(blocks, "tool_result", "tool_use_id");
            if results.is_empty() {
                continue;
            }
            let previous: BTreeSet<&str> = match t.checked_sub(1).and_then(|p| turns.get(p)) {
                Some((_, "assistant", pb)) => ids_of(pb, "tool_use", "id").into_iter().collect(),
                _ => BTreeSet::new(),
            };
            if let Some(orphan) = results.into_iter().find(|id| !previous.contains(id)) {
                return Some(format!(
                    "messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks: {orphan}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                ));
            }
        }
    }
    None
}

fn tools(obj: &Object) -> Option<String> {
    if let Some(tools) = present(obj, "tools") {
        let Some(tools) = tools.as_array() else {
            return Some("tools: Input should be a valid list".into());
        };
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, tool) in tools.iter().enumerate() {
            let at = format!("tools.{i}");
            let kind = tool.get("type").and_then(Value::as_str);
            match kind {
                None | Some("custom") => {}
                // OpenAI's shape passed through untranslated.
                Some("function") => {
                    return Some(format!(
                        "{at}: Input tag 'function' found using 'type' does not match any of the expected tags"
                    ))
                }
                // A server tool (web search, code execution, ...): its own schema.
                Some(_) => continue,
            }
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                return Some(format!("{at}.custom.name: Field required"));
            };
            let name_ok = (1..=128).contains(&name.len())
                && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
            if !name_ok {
                return Some(format!("{at}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"));
            }
            if names.insert(name, i).is_some() {
                return Some(format!("tools: Tool names must be unique (`{name}`)"));
            }
            match tool.get("input_schema") {
                Some(Value::Object(s)) => {
                    if s.get("type").and_then(Value::as_str) != Some("object") {
                        return Some(format!("{at}.custom.input_schema.type: Input should be 'object'"));
                    }
                }
                Some(_) => return Some(format!("{at}.custom.input_schema: Input should be a valid dictionary")),
                None => return Some(format!("{at}.custom.input_schema: Field required")),
            }
        }
    }
    let choice = present(obj, "tool_choice")?;
    let Some(choice) = choice.as_object() else {
        return Some("tool_choice: Input should be a valid dictionary or object to extract fields from".into());
    };
    match choice.get("type").and_then(Value::as_str) {
        Some("auto" | "any" | "none") => None,
        Some("tool") => match choice.get("name") {
            Some(Value::String(_)) => None,
            _ => Some("tool_choice.tool.name: Field required".into()),
        },
        Some(other) => Some(format!(
            "tool_choice: Input tag '{other}' found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
        )),
        None => Some("tool_choice.type: Field required".into()),
    }
}

/// Extended thinking's rules.
fn thinking(obj: &Object, surface: Surface, betas: &[String]) -> Option<String> {
    let t = present(obj, "thinking")?;
    let Some(t) = t.as_object() else {
        return Some("thinking: Input should be a valid dictionary or object to extract fields from".into());
    };
    match t.get("type").and_then(Value::as_str) {
        Some("enabled") => {}
        Some("disabled" | "adaptive") => return None,
        Some(other) => {
            return Some(format!(
                "thinking: Input tag '{other}' found using 'type' does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'"
            ))
        }
        None => return Some("thinking.type: Field required".into()),
    }
    let Some(budget) = t.get("budget_tokens").and_then(Value::as_i64) else {
        return Some("thinking.enabled.budget_tokens: Field required".into());
    };
    if budget < 1024 {
        return Some("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024".into());
    }
    let interleaved = betas.iter().any(|b| b == INTERLEAVED_THINKING);
    if !matches!(surface, Surface::CountTokens | Surface::VertexCount) && !interleaved {
        if let Some(max) = present(obj, "max_tokens").and_then(Value::as_i64) {
            if max <= budget {
                return Some("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size".into());
            }
        }
    }
    if present(obj, "temperature").and_then(Value::as_f64).is_some_and(|x| x != 1.0) {
        return Some("`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility".into());
    }
    if present(obj, "top_k").is_some() {
        return Some("`top_k` must be unset when thinking is enabled. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility".into());
    }
    if present(obj, "top_p").and_then(Value::as_f64).is_some_and(|x| x < 0.95) {
        return Some("`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility".into());
    }
    let forced = present(obj, "tool_choice")
        .and_then(|c| c.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|k| k == "any" || k == "tool");
    if forced {
        return Some("Thinking may not be enabled when tool_choice forces tool use.".into());
    }
    // The assistant turn whose tool calls the last turn answers must start
    // with its thinking.
    let messages = present(obj, "messages").and_then(Value::as_array)?;
    let turns = merged(messages);
    let (_, last_role, last_blocks) = turns.last()?;
    if *last_role != "user" || ids_of(last_blocks, "tool_result", "tool_use_id").is_empty() {
        return None;
    }
    let (i, role, blocks) = turns.get(turns.len().checked_sub(2)?)?;
    if *role != "assistant" {
        return None;
    }
    let first = blocks.first().and_then(|b| b.get("type")).and_then(Value::as_str);
    if !matches!(first, Some("thinking" | "redacted_thinking")) {
        return Some(format!("messages.{i}.content.0.type: {THINKING_FIRST}"));
    }
    None
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
        problem(v.as_object().unwrap(), Surface::Messages, &[])
    }

    fn base() -> Value {
        json!({"model": "claude", "max_tokens": 2048, "messages": [{"role": "user", "content": "hi"}]})
    }

    fn with(mut v: Value, key: &str, value: Value) -> Value {
        v[key] = value;
        v
    }

    #[test]
    fn accepts_a_plain_message_and_a_tool_round() {
        assert_eq!(check(base()), None);
        let round = with(
            base(),
            "messages",
            json!([
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [{"type": "text", "text": "Looking."}, {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}
            ]),
        );
        assert_eq!(check(round), None);
    }

    #[test]
    fn refuses_what_the_api_refuses() {
        let cases: Vec<(Value, &str)> = vec![
            (with(base(), "n", json!(1)), "n: Extra inputs"),
            (with(base(), "stream_options", json!({"include_usage": true})), "stream_options: Extra"),
            (with(base(), "metadata", json!({"user_id": "u", "tags": "x"})), "metadata.tags"),
            (
                with(
                    base(),
                    "messages",
                    json!([{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]),
                ),
                "Unexpected role",
            ),
            (with(base(), "messages", json!([{"role": "user", "content": "hi", "name": "bob"}])), "messages.0.name"),
            (with(base(), "messages", json!([{"role": "user", "content": ""}])), "non-empty content"),
            (
                with(base(), "messages", json!([{"role": "user", "content": [{"type": "text", "text": ""}]}])),
                "must be non-empty",
            ),
            (
                with(
                    base(),
                    "messages",
                    json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
                ),
                "'image_url'",
            ),
            (
                with(
                    base(),
                    "messages",
                    json!([
                        {"role": "user", "content": "q"},
                        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}]},
                        {"role": "user", "content": "and?"}
                    ]),
                ),
                "without `tool_result`",
            ),
            (
                with(
                    base(),
                    "messages",
                    json!([
                        {"role": "user", "content": "q"},
                        {"role": "assistant", "content": "no tools"},
                        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t9", "content": "x"}]}
                    ]),
                ),
                "unexpected `tool_use_id`",
            ),
            (with(base(), "temperature", json!(1.5)), "less than or equal to 1"),
            (with(base(), "max_tokens", json!(0)), "greater than or equal to 1"),
            (with(base(), "stop_sequences", json!("END")), "stop_sequences"),
            (with(base(), "tools", json!([{"type": "function", "function": {"name": "w"}}])), "'function'"),
            (with(base(), "tools", json!([{"name": "w"}])), "input_schema: Field required"),
            (with(base(), "tool_choice", json!("auto")), "tool_choice"),
            (with(base(), "tool_choice", json!({"type": "required"})), "'required'"),
            (
                with(base(), "thinking", json!({"type": "enabled", "budget_tokens": 4096})),
                "greater than `thinking.budget_tokens`",
            ),
            (
                with(
                    with(base(), "thinking", json!({"type": "enabled", "budget_tokens": 1024})),
                    "temperature",
                    json!(0.2),
                ),
                "temperature",
            ),
            (
                with(base(), "messages", json!([{"role": "user", "content": [{"type": "thinking", "thinking": "t"}]}])),
                "signature: Field required",
            ),
        ];
        for (body, want) in cases {
            let got = check(body.clone()).unwrap_or_else(|| panic!("accepted {body}"));
            assert!(got.contains(want), "{body}: {got} lacks {want}");
        }
    }

    #[test]
    fn thinking_must_open_the_pending_tool_turn() {
        let turns = |assistant: Value| {
            json!({"model": "c", "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": assistant},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r"}]}
            ]})
        };
        let tool_use = json!({"type": "tool_use", "id": "t1", "name": "w", "input": {}});
        let lost = check(turns(json!([tool_use.clone()]))).expect("refused");
        assert!(lost.contains("Expected `thinking`"), "{lost}");
        let kept = turns(json!([{"type": "thinking", "thinking": "t", "signature": "s"}, tool_use]));
        assert_eq!(check(kept), None);
    }

    #[test]
    fn interleaved_thinking_lets_the_budget_exceed_max_tokens() {
        let body = with(base(), "thinking", json!({"type": "enabled", "budget_tokens": 4096}));
        let obj = body.as_object().unwrap();
        assert_eq!(problem(obj, Surface::Messages, &[INTERLEAVED_THINKING.to_string()]), None);
    }

    #[test]
    fn counting_skips_the_generation_limits() {
        let v = with(base(), "max_tokens", json!(0));
        assert_eq!(problem(v.as_object().unwrap(), Surface::CountTokens, &[]), None);
    }
}
