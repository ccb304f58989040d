//! Fidelity on the way up: what the client asked reaches the provider, in
//! the client's order, with the client's roles and values, across any
//! translation (OpenAI chat ⇄ Anthropic Messages ⇄ Bedrock Converse).
//!
//! Compared as a conversation, not as bytes: consecutive messages of one
//! role are merged on both sides (Anthropic requires alternation, so
//! gateways merge), a tool result counts as the user's turn (that is where
//! Anthropic and Converse put it), system text is compared without its
//! whitespace layout, and non-text parts (images, documents) are not read.
//! Parameters are compared only when both sides carry them: a parameter a
//! gateway drops (`drop_params`) is not a changed one.

use super::exchange::{Endpoint, Exchange, UpstreamCall};
use super::{violation, Violation};
use crate::mocks::MockKind;
use serde_json::Value;

/// A conversation as (role, text) turns plus the system text.
#[derive(Debug, Default, PartialEq)]
struct Conversation {
    system: String,
    turns: Vec<(String, String)>,
    tool_calls: Vec<(String, Value)>,
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") | Some("input_text") => p.get("text").and_then(Value::as_str).map(str::to_string),
                Some("tool_result") => p.get("content").map(text_of),
                None => p.get("text").and_then(Value::as_str).map(str::to_string), // Converse
                _ => p.get("toolResult").and_then(|r| r.get("content")).map(text_of),
            })
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Conversation {
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
            c.push(role, text);
            for t in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let args = t.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                let args = serde_json::from_str(args).unwrap_or(Value::String(args.to_string()));
                let name = t.pointer("/function/name").and_then(Value::as_str).unwrap_or("").to_string();
                c.tool_calls.push((name, args));
            }
        }
        c
    }

    /// Anthropic Messages (also the InvokeModel body): `system` apart,
    /// tool_use blocks on assistant turns.
    fn anthropic(body: &Value) -> Conversation {
        Self::blocks(body, |b| (b.get("type").and_then(Value::as_str) == Some("tool_use")).then_some(b))
    }

    /// Bedrock Converse: `system` as text blocks, `toolUse` blocks.
    fn converse(body: &Value) -> Conversation {
        Self::blocks(body, |b| b.get("toolUse"))
    }

    /// A block-structured conversation; `tool_use` finds the tool call (with
    /// `name` and `input`) a content block holds, if it holds one.
    fn blocks(body: &Value, tool_use: impl Fn(&Value) -> Option<&Value>) -> Conversation {
        let mut c = Conversation { system: body.get("system").map(text_of).unwrap_or_default(), ..Default::default() };
        for m in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            let content = m.get("content").cloned().unwrap_or(Value::Null);
            c.push(role, text_of(&content));
            for t in content.as_array().into_iter().flatten().filter_map(&tool_use) {
                let name = t.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                c.tool_calls.push((name, t.get("input").cloned().unwrap_or(Value::Null)));
            }
        }
        c
    }
}

/// A parameter as each API names it: (OpenAI, Anthropic, Converse pointer).
const PARAMS: &[(&str, &str, &str)] = &[
    ("temperature", "temperature", "/inferenceConfig/temperature"),
    ("top_p", "top_p", "/inferenceConfig/topP"),
    ("max_tokens", "max_tokens", "/inferenceConfig/maxTokens"),
    ("max_completion_tokens", "max_tokens", "/inferenceConfig/maxTokens"),
];

#[derive(Clone, Copy, PartialEq)]
enum Api {
    OpenAi,
    Anthropic,
    Converse,
}

fn upstream_api(call: &UpstreamCall) -> Option<Api> {
    let path = call.request.path.as_str();
    Some(match call.kind {
        MockKind::Bedrock if path.ends_with("/converse") || path.ends_with("/converse-stream") => Api::Converse,
        MockKind::Bedrock if path.ends_with("/invoke") || path.ends_with("/invoke-with-response-stream") => {
            Api::Anthropic
        }
        MockKind::Bedrock => return None,
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

fn param<'v>(body: &'v Value, api: Api, names: (&str, &str, &str)) -> Option<&'v Value> {
    let v = match api {
        Api::OpenAi => body.get(names.0),
        Api::Anthropic => body.get(names.1),
        Api::Converse => body.pointer(names.2),
    };
    v.filter(|v| !v.is_null())
}

fn same_number(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => a == b,
    }
}

pub(super) fn check(x: &Exchange, endpoint: Endpoint, out: &mut Vec<Violation>) {
    let client_api = match endpoint {
        Endpoint::ChatCompletions => Api::OpenAi,
        Endpoint::Messages => Api::Anthropic,
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
    };
    let asked = read(client_api, &sent);
    for call in &x.upstream {
        let (Some(api), Some(body)) = (upstream_api(call), call.request.json.as_ref()) else { continue };
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
        }
        for names in PARAMS {
            if let (Some(a), Some(g)) = (param(&sent, client_api, *names), param(body, api, *names)) {
                if !same_number(a, g) {
                    out.push(violation("fidelity.request", format!("{at}: `{}` {a} became {g}", names.0)));
                }
            }
        }
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}
