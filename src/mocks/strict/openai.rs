//! OpenAI and Azure OpenAI.

use super::super::errors;
use super::super::journal::RecordedRequest;
use super::super::route::Route;
use super::super::wire::Buffered;
use super::super::MockKind;
use super::openai_body::{self, Body};
use super::{has, has_bearer, non_empty_header, parse_object};

pub(crate) const NO_API_KEY: &str = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys.";

pub(crate) const INVALID_JSON: &str = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)";

pub(crate) const NO_MODEL: &str = "you must provide a model parameter";

pub(super) fn check(kind: MockKind, req: &RecordedRequest, route: &Route) -> Option<Buffered> {
    // Authentication first, for every path.
    if kind == MockKind::Azure {
        // Azure takes a key in `api-key` or an Entra ID token as Bearer.
        if !non_empty_header(req, "api-key") && !has_bearer(req) {
            return Some(errors::azure(401, "401", errors::AZURE_ACCESS_DENIED));
        }
    } else if !has_bearer(req) {
        return Some(errors::openai(401, NO_API_KEY, "invalid_request_error", None, None));
    }

    let (deployment, required) = match route {
        Route::Chat { deployment } => (deployment, "messages"),
        Route::Embeddings { deployment } => (deployment, "input"),
        Route::Responses => (&None, "input"),
        Route::Completions { deployment } => (deployment, "prompt"),
        _ => return None,
    };
    // Azure's data-plane routes under /openai/deployments need api-version;
    // without it the gateway answers 404, not 400.
    if deployment.is_some() && !matches!(req.query_param("api-version"), Some(v) if !v.is_empty()) {
        return Some(errors::azure(404, "404", "Resource not found"));
    }
    let obj = match parse_object(req) {
        Ok(Some(obj)) => obj,
        Ok(None) | Err(_) => {
            return Some(errors::openai(400, INVALID_JSON, "invalid_request_error", None, None));
        }
    };
    // Azure deployment routes take the model from the path.
    // OpenAI answers an empty `model` as it answers a missing one.
    if deployment.is_none() && (!has(obj, "model") || obj.get("model").and_then(|m| m.as_str()) == Some("")) {
        return Some(errors::openai(400, NO_MODEL, "invalid_request_error", None, None));
    }
    if !has(obj, required) {
        return Some(missing(required));
    }
    let fields: &[(&str, Expected)] = match route {
        Route::Chat { .. } => CHAT_FIELDS,
        Route::Responses => RESPONSES_FIELDS,
        Route::Completions { .. } => COMPLETIONS_FIELDS,
        _ => EMBEDDINGS_FIELDS,
    };
    for (name, expected) in fields {
        match obj.get(*name) {
            Some(v) if !v.is_null() && !expected.accepts(v) => {
                return Some(errors::openai(
                    400,
                    &format!(
                        "Invalid type for '{name}': expected {}, but got {} instead.",
                        expected.noun(),
                        noun_of(v)
                    ),
                    "invalid_request_error",
                    Some(name),
                    Some("invalid_type"),
                ))
            }
            _ => {}
        }
    }
    if let Some(messages) = obj.get("messages").and_then(|m| m.as_array()) {
        // Every item is an object by now (`messages` is checked above as
        // an array of objects).
        for (i, m) in messages.iter().enumerate() {
            if !m.get("role").is_some_and(|r| r.is_string()) {
                return Some(missing(&format!("messages[{i}].role")));
            }
        }
    }
    let body = match route {
        Route::Chat { .. } => Body::Chat,
        Route::Responses => Body::Responses,
        Route::Completions { .. } => Body::Completions,
        _ => Body::Embeddings,
    };
    openai_body::problem(obj, body, kind == MockKind::Azure)
        .map(|r| errors::openai(400, &r.message, "invalid_request_error", r.param.as_deref(), Some(r.code)))
}

fn missing(param: &str) -> Buffered {
    errors::openai(
        400,
        &format!("Missing required parameter: '{param}'."),
        "invalid_request_error",
        Some(param),
        Some("missing_required_parameter"),
    )
}

/// The JSON types OpenAI's request validation names in its errors.
#[derive(Debug, Clone, Copy)]
enum Expected {
    Decimal,
    Integer,
    Boolean,
    String,
    ArrayOfObjects,
    StringOrArray,
}

impl Expected {
    fn accepts(self, v: &serde_json::Value) -> bool {
        match self {
            Expected::Decimal => v.is_number(),
            Expected::Integer => v.is_i64() || v.is_u64(),
            Expected::Boolean => v.is_boolean(),
            Expected::String => v.is_string(),
            Expected::ArrayOfObjects => v.as_array().is_some_and(|a| a.iter().all(|x| x.is_object())),
            Expected::StringOrArray => v.is_string() || v.is_array(),
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Expected::Decimal => "a decimal",
            Expected::Integer => "an integer",
            Expected::Boolean => "a boolean",
            Expected::String => "a string",
            Expected::ArrayOfObjects => "an array of objects",
            Expected::StringOrArray => "a string or an array",
        }
    }
}

fn noun_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(n) if n.is_f64() => "a decimal",
        serde_json::Value::Number(_) => "an integer",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Chat fields whose type OpenAI checks before anything else (null is
/// accepted for each: it means "not set").
const CHAT_FIELDS: &[(&str, Expected)] = &[
    ("model", Expected::String),
    ("messages", Expected::ArrayOfObjects),
    ("temperature", Expected::Decimal),
    ("top_p", Expected::Decimal),
    ("frequency_penalty", Expected::Decimal),
    ("presence_penalty", Expected::Decimal),
    ("n", Expected::Integer),
    ("max_tokens", Expected::Integer),
    ("max_completion_tokens", Expected::Integer),
    ("seed", Expected::Integer),
    ("stream", Expected::Boolean),
    ("logprobs", Expected::Boolean),
    ("tools", Expected::ArrayOfObjects),
    ("user", Expected::String),
];

/// The Responses API's typed fields ("Create a model response").
const RESPONSES_FIELDS: &[(&str, Expected)] = &[
    ("model", Expected::String),
    ("input", Expected::StringOrArray),
    ("instructions", Expected::String),
    ("max_output_tokens", Expected::Integer),
    ("temperature", Expected::Decimal),
    ("top_p", Expected::Decimal),
    ("stream", Expected::Boolean),
    ("parallel_tool_calls", Expected::Boolean),
    ("store", Expected::Boolean),
    ("tools", Expected::ArrayOfObjects),
    ("previous_response_id", Expected::String),
    ("user", Expected::String),
];

/// Legacy completions' typed fields.
const COMPLETIONS_FIELDS: &[(&str, Expected)] = &[
    ("model", Expected::String),
    ("prompt", Expected::StringOrArray),
    ("max_tokens", Expected::Integer),
    ("temperature", Expected::Decimal),
    ("top_p", Expected::Decimal),
    ("n", Expected::Integer),
    ("seed", Expected::Integer),
    ("best_of", Expected::Integer),
    ("logprobs", Expected::Integer),
    ("stream", Expected::Boolean),
    ("echo", Expected::Boolean),
    ("user", Expected::String),
];

const EMBEDDINGS_FIELDS: &[(&str, Expected)] = &[
    ("model", Expected::String),
    ("input", Expected::StringOrArray),
    ("dimensions", Expected::Integer),
    ("encoding_format", Expected::String),
    ("user", Expected::String),
];
