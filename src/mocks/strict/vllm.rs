//! vLLM's OpenAI-compatible server. It validates bodies with pydantic and
//! answers HTTP 400 with `str(errors)` as the message: this is how incident 4
//! (`encoding_format: null` on embeddings) surfaced.

use serde_json::{Map, Value};

use super::super::errors;
use super::super::journal::RecordedRequest;
use super::super::route::Route;
use super::super::wire::Buffered;
use super::parse_object;
use super::pyrepr::{body_loc, py_value, render, Loc, PyError};

/// Typed optional chat parameters that the mock refuses as explicit `null`.
/// Stricter than vLLM itself, whose fields are mostly `Optional[...]`: a
/// gateway should drop unset parameters rather than forward `null` (the bug
/// class behind incident 4), and this list makes that visible.
const FLOAT_PARAMS: &[&str] =
    &["temperature", "top_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "min_p"];
const INT_PARAMS: &[&str] = &["max_tokens", "max_completion_tokens", "n", "seed", "top_k", "top_logprobs"];
const BOOL_PARAMS: &[&str] = &["logprobs"];

pub(super) fn check(req: &RecordedRequest, route: &Route) -> Option<Buffered> {
    let is_chat = match route {
        Route::Chat { .. } => true,
        Route::Embeddings { .. } => false,
        _ => return None,
    };
    let obj = match parse_object(req) {
        Ok(Some(obj)) => obj,
        Ok(None) => {
            let input = req.json.as_ref().map(py_value).unwrap_or_default();
            let e = PyError::new(
                "model_attributes_type",
                vec![Loc::Key("body".into())],
                "Input should be a valid dictionary or object to extract fields from",
                input,
            );
            return Some(reject(&[e]));
        }
        Err(err) => {
            let e = PyError::new(
                "json_invalid",
                vec![Loc::Key("body".into()), Loc::Index(err.column().saturating_sub(1))],
                "JSON decode error",
                "{}".into(),
            )
            .with_ctx("error", "Expecting value");
            return Some(reject(&[e]));
        }
    };
    let whole = py_value(&Value::Object(obj.clone()));
    let mut errs = Vec::new();
    let required: &[&str] = if is_chat { &["messages", "model"] } else { &["model", "input"] };
    for key in required {
        if !obj.contains_key(*key) {
            errs.push(PyError::new("missing", body_loc(key), "Field required", whole.clone()));
        }
    }
    if is_chat {
        chat_nulls(obj, &mut errs);
    } else if let Some(v) = obj.get("encoding_format") {
        if !matches!(v.as_str(), Some("float" | "base64")) {
            errs.push(
                PyError::new("enum", body_loc("encoding_format"), "Input should be 'float' or 'base64'", py_value(v))
                    .with_ctx("expected", "'float' or 'base64'"),
            );
        }
    }
    if errs.is_empty() {
        None
    } else {
        Some(reject(&errs))
    }
}

fn chat_nulls(obj: &Map<String, Value>, errs: &mut Vec<PyError>) {
    for (key, value) in obj {
        if !value.is_null() {
            continue;
        }
        let key = key.as_str();
        if FLOAT_PARAMS.contains(&key) {
            errs.push(PyError::new("float_type", body_loc(key), "Input should be a valid number", "None".into()));
        } else if INT_PARAMS.contains(&key) {
            errs.push(PyError::new("int_type", body_loc(key), "Input should be a valid integer", "None".into()));
        } else if BOOL_PARAMS.contains(&key) {
            errs.push(PyError::new("bool_type", body_loc(key), "Input should be a valid boolean", "None".into()));
        } else if key == "stop" {
            // `Union[str, list[str]]`: pydantic reports one error per member.
            let mut str_loc = body_loc("stop");
            str_loc.push(Loc::Key("str".into()));
            let mut list_loc = body_loc("stop");
            list_loc.push(Loc::Key("list[str]".into()));
            errs.push(PyError::new("string_type", str_loc, "Input should be a valid string", "None".into()));
            errs.push(PyError::new("list_type", list_loc, "Input should be a valid list", "None".into()));
        }
    }
}

fn reject(errs: &[PyError]) -> Buffered {
    errors::vllm(400, &render(errs), "BadRequestError")
}
