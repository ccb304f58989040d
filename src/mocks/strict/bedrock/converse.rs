//! Bedrock Converse / ConverseStream with a Claude model. Unlike
//! InvokeModel, whose body is the model's own, Bedrock parses a Converse
//! body itself, so after the SigV4 check (shared, in `bedrock.rs`) errors
//! come from four layers in turn, each with its own wording:
//! 1. deserializing the body: a member of the wrong JSON type;
//! 2. constraint validation, every violation in one message
//!    (`2 validation errors detected: Value 'x' at 'messages.1.member.role'
//!    …; …`, 1-based indexes as AWS's validator writes them);
//! 3. Converse's conversation rules: first message from the user,
//!    alternating roles, non-empty content, non-blank text (0-based paths);
//! 4. the model, once `additionalModelRequestFields` is merged into its
//!    native request: beta flags (incident 5, same text as InvokeModel) and
//!    whitespace-only text.
//!
//! All answer 400 `ValidationException`. A JSON `null` member counts as
//! absent, as it does for AWS's JSON protocols.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::super::super::errors;
use super::super::super::ids::IdGen;
use super::super::super::journal::RecordedRequest;
use super::super::super::wire::Buffered;
use super::super::{parse_object, unknown_betas};
use super::{json_type, INVALID_BETA, MALFORMED};

const START_WITH_USER: &str =
    "A conversation must start with a user message. Try again with a conversation that starts with a user message.";
const ALTERNATE: &str = "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.";
const WHITESPACE_TEXT: &str =
    "The model returned the following errors: messages: text content blocks must contain non-whitespace text";
const ROLES: &[&str] = &["user", "assistant"];

type Object = Map<String, Value>;

pub(super) fn check(allow: Option<&BTreeSet<String>>, req: &RecordedRequest, ids: &IdGen) -> Option<Buffered> {
    let message = match parse_object(req) {
        Ok(Some(obj)) => format_error(obj)
            .or_else(|| constraint_error(obj))
            .or_else(|| conversation_error(obj))
            .or_else(|| model_error(allow, req, obj))?,
        Ok(None) | Err(_) => MALFORMED.to_string(),
    };
    Some(errors::bedrock(400, "ValidationException", &message, ids))
}

/// Present and not `null`.
fn member<'a>(obj: &'a Object, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn messages(obj: &Object) -> &[Value] {
    member(obj, "messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// Layer 1: the first member whose JSON type does not fit the API's shape
/// (a string `content`, as OpenAI allows, is the usual one).
fn format_error(obj: &Object) -> Option<String> {
    let wrong = |path: &str, expected: &str| {
        Some(format!("The format of the value at {path} is invalid. Provide {expected} for the field and try again."))
    };
    match member(obj, "messages") {
        None | Some(Value::Array(_)) => {}
        Some(_) => return wrong("messages", "a list"),
    }
    for (i, m) in messages(obj).iter().enumerate() {
        let Some(m) = m.as_object() else {
            return wrong(&format!("messages.{i}"), "a json object");
        };
        if member(m, "role").is_some_and(|r| !r.is_string()) {
            return wrong(&format!("messages.{i}.role"), "a string");
        }
        let blocks = match member(m, "content") {
            None => continue,
            Some(Value::Array(blocks)) => blocks,
            Some(_) => return wrong(&format!("messages.{i}.content"), "a list"),
        };
        for (j, block) in blocks.iter().enumerate() {
            let Some(block) = block.as_object() else {
                return wrong(&format!("messages.{i}.content.{j}"), "a json object");
            };
            if member(block, "text").is_some_and(|t| !t.is_string()) {
                return wrong(&format!("messages.{i}.content.{j}.text"), "a string");
            }
        }
    }
    if member(obj, "system").is_some_and(|v| !v.is_array()) {
        return wrong("system", "a list");
    }
    if let Some(config) = member(obj, "inferenceConfig") {
        let Some(config) = config.as_object() else {
            return wrong("inferenceConfig", "a json object");
        };
        if member(config, "maxTokens").is_some_and(|v| !v.is_i64() && !v.is_u64()) {
            return wrong("inferenceConfig.maxTokens", "an integer");
        }
    }
    if member(obj, "additionalModelRequestFields").is_some_and(|v| !v.is_object()) {
        return wrong("additionalModelRequestFields", "a json object");
    }
    None
}

/// Layer 2: missing roles and content, unknown roles, `maxTokens < 1`.
fn constraint_error(obj: &Object) -> Option<String> {
    let mut violations = Vec::new();
    for (i, m) in messages(obj).iter().enumerate() {
        let Some(m) = m.as_object() else { continue };
        let at = format!("messages.{}.member", i + 1);
        match member(m, "role").and_then(Value::as_str) {
            None => violations.push(format!("Value null at '{at}.role' failed to satisfy constraint: Member must not be null")),
            Some(role) if !ROLES.contains(&role) => violations.push(format!(
                "Value '{role}' at '{at}.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]"
            )),
            Some(_) => {}
        }
        if member(m, "content").is_none() {
            violations
                .push(format!("Value null at '{at}.content' failed to satisfy constraint: Member must not be null"));
        }
    }
    let max_tokens = member(obj, "inferenceConfig").and_then(|c| c.get("maxTokens")).and_then(Value::as_i64);
    if let Some(max) = max_tokens.filter(|m| *m < 1) {
        violations.push(format!(
            "Value '{max}' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1"
        ));
    }
    match violations.len() {
        0 => None,
        1 => Some(format!("1 validation error detected: {}", violations[0])),
        n => Some(format!("{n} validation errors detected: {}", violations.join("; "))),
    }
}

fn blocks(message: &Value) -> &[Value] {
    message.get("content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn texts(obj: &Object) -> impl Iterator<Item = (usize, usize, &str)> {
    messages(obj).iter().enumerate().flat_map(|(i, m)| {
        blocks(m).iter().enumerate().filter_map(move |(j, b)| Some((i, j, b.get("text")?.as_str()?)))
    })
}

/// Layer 3: what Converse requires of a conversation. No messages at all
/// fails like a conversation that does not start with the user.
fn conversation_error(obj: &Object) -> Option<String> {
    let roles: Vec<&str> =
        messages(obj).iter().map(|m| m.get("role").and_then(Value::as_str).unwrap_or_default()).collect();
    if roles.first() != Some(&"user") {
        return Some(START_WITH_USER.into());
    }
    if roles.windows(2).any(|pair| pair[0] == pair[1]) {
        return Some(ALTERNATE.into());
    }
    if let Some(i) = messages(obj).iter().position(|m| blocks(m).is_empty()) {
        return Some(format!(
            "The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."
        ));
    }
    if let Some((i, j, _)) = texts(obj).find(|(_, _, text)| text.is_empty()) {
        return Some(format!(
            "The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again."
        ));
    }
    None
}

/// Layer 4: Claude's own checks on the merged request. Beta flags come from
/// `additionalModelRequestFields.anthropic_beta` and the `anthropic-beta`
/// header, as on InvokeModel.
fn model_error(allow: Option<&BTreeSet<String>>, req: &RecordedRequest, obj: &Object) -> Option<String> {
    let mut flags = Vec::new();
    let fields = member(obj, "additionalModelRequestFields").and_then(Value::as_object);
    // Inside the document a `null` is passed on to the model as it is.
    if let Some(v) = fields.and_then(|f| f.get("anthropic_beta")) {
        match v.as_array().filter(|items| items.iter().all(Value::is_string)) {
            Some(items) => flags.extend(items.iter().filter_map(Value::as_str).map(str::to_string)),
            None => {
                return Some(format!(
                    "Malformed input request: #/anthropic_beta: expected type: JSONArray, found: {}, please reformat your input and try again.",
                    json_type(v)
                ))
            }
        }
    }
    if let Some(allow) = allow {
        if !unknown_betas(allow, flags.into_iter().chain(req.beta_header_flags())).is_empty() {
            return Some(INVALID_BETA.into());
        }
    }
    if texts(obj).any(|(_, _, text)| !text.is_empty() && text.trim().is_empty()) {
        return Some(WHITESPACE_TEXT.into());
    }
    None
}
