//! Errors and retries: what a provider refused is not retried, error
//! statuses keep their class and message, `Retry-After` survives, and a
//! malformed client request is a client error (OpenAI's "Error codes" guide,
//! Anthropic's "Errors" page, HTTP semantics for 4xx vs 5xx).

use super::exchange::{Attribution, Endpoint, Exchange, UpstreamCall};
use super::{snippet, violation, Violation};
use crate::mocks::AnswerEnd;
use serde_json::Value;

fn class(status: u16) -> u16 {
    status / 100
}

/// Client errors that a retry cannot fix. 401 and 403 are left out: a
/// gateway may refresh its own credential (an OAuth or Entra ID token) and
/// try again, which is no retry of the client's mistake.
fn final_client_error(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 401 | 403 | 408 | 409 | 429)
}

/// Whether the client's status is the provider's status class. A provider's
/// 401/403/404 may mean the deployment is misconfigured (its key, its model
/// name): a gateway may report that as its own 5xx, or pass the 4xx on.
fn same_class(upstream: u16, client: u16) -> bool {
    match upstream {
        429 => client == 429,
        401 | 403 | 404 => client >= 400,
        _ => class(upstream) == class(client),
    }
}

pub(super) fn check(x: &Exchange, out: &mut Vec<Violation>) {
    invalid_request(x, out);
    if x.attribution != Attribution::Exact {
        return;
    }
    stored_resource(x, out);
    let calls: Vec<_> = x.model_calls().collect();
    let same = |a: &&UpstreamCall, b: &&UpstreamCall| {
        a.provider == b.provider
            && a.request.method == b.request.method
            && a.request.path == b.request.path
            && a.request.body == b.request.body
    };
    for (i, first) in calls.iter().enumerate() {
        let Some(status) = first.answer.status.filter(|s| final_client_error(*s)) else { continue };
        // One violation per refused request, however often it was repeated:
        // the repeats themselves are not new refusals.
        if calls[..i].iter().any(|earlier| same(earlier, first)) {
            continue;
        }
        let n = calls[i + 1..].iter().filter(|c| same(c, first)).count();
        if n > 0 {
            out.push(violation(
                "errors.client-error-not-retried",
                format!(
                    "{} answered {status} to {} {}, and got the same request {n} more time(s)",
                    first.provider, first.request.method, first.request.path
                ),
            ));
        }
    }
    let Some(last) = x.last_model_call() else { return };
    let got = x.response.status;
    // A provider that reset the connection or answered a broken success
    // failed; a 4xx tells the client its own request was at fault. (408 and
    // 429 say "try again", which stays true.)
    if (400..500).contains(&got) && !matches!(got, 408 | 429) {
        if let Some(why) = upstream_failure(last) {
            out.push(violation(
                "errors.status-class",
                format!(
                    "{} {why}: a failure upstream, yet the client got {got}, as if its request were at fault ({})",
                    last.provider,
                    snippet(&x.response.body)
                ),
            ));
        }
    }
    let Some(up) = last.answer.status else { return };
    if up < 400 || got < 400 {
        return;
    }
    if !same_class(up, got) {
        out.push(violation(
            "errors.status-class",
            format!("{} answered {up}; the client got {got} ({})", last.provider, snippet(&x.response.body)),
        ));
    }
    // The provider's words about the request itself (not about the
    // gateway's credential) are the client's to read.
    if matches!(up, 400 | 404 | 413 | 422) && (400..500).contains(&got) {
        if let Some(message) = provider_message(&last.answer.body) {
            // Compared on letters and digits only: gateways wrap a message in
            // layers of JSON or Python quoting, which is no loss of content.
            let letters = |t: &str| t.chars().filter(|c| c.is_alphanumeric()).collect::<String>();
            let (wanted, got) = (letters(&message), letters(&x.response.text()));
            if wanted.len() >= 4 && !got.contains(&wanted) {
                out.push(violation(
                    "errors.upstream-message",
                    format!("{} said {message:?}; the client got {}", last.provider, snippet(&x.response.body)),
                ));
            }
        }
    }
    if up == 429
        && got == 429
        && last.answer.header("retry-after").is_some()
        && x.response.header("retry-after").is_none()
    {
        out.push(violation(
            "errors.retry-after",
            format!(
                "{} sent retry-after: {:?}; the client's 429 has none",
                last.provider,
                last.answer.header("retry-after")
            ),
        ));
    }
}

/// Why a provider's answer is a failure although it carries no error
/// status: a reset, a success that broke off, or one that is not what its
/// API answers (HTML, half a JSON body).
fn upstream_failure(call: &super::exchange::UpstreamCall) -> Option<String> {
    let a = &call.answer;
    match (a.status, a.end) {
        (None, AnswerEnd::Reset) => return Some("reset the connection without answering".into()),
        (Some(s), _) if !(200..300).contains(&s) => return None,
        (Some(_), AnswerEnd::Cut | AnswerEnd::Reset) => return Some("broke off its answer".into()),
        (Some(_), AnswerEnd::Complete) => {}
        _ => return None,
    }
    let media = a.header("content-type").map(super::media_type).unwrap_or_default();
    match media.as_str() {
        "text/event-stream" | "application/vnd.amazon.eventstream" => None,
        m if m == "application/json" || m.ends_with("+json") => {
            a.json().is_none().then(|| format!("answered {} with a body that is not JSON", a.status.unwrap_or(200)))
        }
        other => Some(format!("answered {} with `{other}`, not JSON", a.status.unwrap_or(200))),
    }
}

/// The message of an OpenAI, Anthropic or AWS error body.
fn provider_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let m = v
        .pointer("/error/message")
        .or_else(|| v.get("message"))
        .or_else(|| v.get("Message"))
        .and_then(Value::as_str)?;
    Some(m.to_string())
}

/// Whether the client's body breaks its endpoint's request schema, and how.
/// Only structural faults every gateway must refuse: the body is not a JSON
/// object, or a required field is missing or of the wrong type, or a
/// well-known optional field has the wrong type (null counts as absent).
/// On Azure OpenAI's own paths (`/openai/deployments/{name}/…`) the model is
/// the path's deployment, so the body need not name one.
pub(crate) fn request_fault(path: &str, body: &[u8]) -> Option<String> {
    let endpoint = Endpoint::of(path);
    if !matches!(
        endpoint,
        Endpoint::ChatCompletions
            | Endpoint::Messages
            | Endpoint::Embeddings
            | Endpoint::Completions
            | Endpoint::Responses
    ) {
        return None;
    }
    let model_in_path = path.contains("/openai/deployments/");
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return Some("the body is not JSON".into()),
    };
    let Some(m) = v.as_object() else { return Some("the body is not a JSON object".into()) };
    let field = |k: &str| m.get(k).filter(|v| !v.is_null());
    let wrong = |k: &str, ok: fn(&Value) -> bool, what: &str| -> Option<String> {
        field(k).filter(|v| !ok(v)).map(|v| format!("`{k}` is {v}, not {what}"))
    };
    let required = |k: &str| -> Option<String> { field(k).is_none().then(|| format!("`{k}` is missing")) };
    let number = |v: &Value| v.is_number();
    let integer = |v: &Value| v.is_u64() || v.is_i64();
    let boolean = |v: &Value| v.is_boolean();
    let string = |v: &Value| v.is_string();
    let array = |v: &Value| v.is_array();
    let messages =
        |v: &Value| v.as_array().is_some_and(|a| a.iter().all(|m| m.get("role").is_some_and(Value::is_string)));
    let common = [
        if model_in_path { None } else { required("model") },
        wrong("model", string, "a string"),
        wrong("stream", boolean, "a boolean"),
        wrong("temperature", number, "a number"),
        wrong("top_p", number, "a number"),
        wrong("max_tokens", integer, "an integer"),
    ];
    let specific: Vec<Option<String>> = match endpoint {
        Endpoint::ChatCompletions => vec![
            required("messages"),
            wrong("messages", messages, "an array of messages with roles"),
            wrong("n", integer, "an integer"),
            wrong("max_completion_tokens", integer, "an integer"),
            wrong("tools", array, "an array"),
        ],
        Endpoint::Messages => vec![
            required("messages"),
            wrong("messages", messages, "an array of messages with roles"),
            wrong("tools", array, "an array"),
            wrong("system", |v| v.is_string() || v.is_array(), "a string or an array"),
        ],
        Endpoint::Embeddings => {
            vec![required("input"), wrong("input", |v| v.is_string() || v.is_array(), "a string or an array")]
        }
        Endpoint::Completions => {
            vec![required("prompt"), wrong("prompt", |v| v.is_string() || v.is_array(), "a string or an array")]
        }
        // `input` may be left out (a stored prompt, `previous_response_id`).
        Endpoint::Responses => vec![
            wrong("input", |v| v.is_string() || v.is_array(), "a string or an array"),
            wrong("max_output_tokens", integer, "an integer"),
            wrong("tools", array, "an array"),
        ],
        _ => return None,
    };
    common.into_iter().chain(specific).flatten().next()
}

fn invalid_request(x: &Exchange, out: &mut Vec<Violation>) {
    if x.request.method != "POST" || x.response.status == 0 {
        return;
    }
    // A request refused before its body was read (auth, size) is not judged
    // on its body.
    if matches!(x.response.status, 401 | 403 | 413) {
        return;
    }
    let Some(fault) = request_fault(&x.request.path, &x.request.body) else { return };
    if !(400..500).contains(&x.response.status) {
        out.push(violation(
            "errors.invalid-request-is-4xx",
            format!("{fault}, yet the client got {} ({})", x.response.status, snippet(&x.response.body)),
        ));
    }
}

/// A read or delete of a stored resource (`GET`/`DELETE /v1/responses/{id}`)
/// that the provider answered 404 is about the id the client gave: the
/// resource is not there (never stored, or deleted). That is the client's
/// 404, never a 5xx or a success: unlike a model call's 404, which a
/// misconfigured deployment may cause, here nothing but the id is asked.
fn stored_resource(x: &Exchange, out: &mut Vec<Violation>) {
    let method = x.request.method.to_ascii_uppercase();
    if !matches!(method.as_str(), "GET" | "DELETE") {
        return;
    }
    let path = x.request.path.split(['?', '#']).next().unwrap_or("");
    let bare = path.strip_prefix("/v1").unwrap_or(path);
    if !bare.strip_prefix("/responses/").is_some_and(|id| !id.is_empty() && !id.contains('/')) {
        return;
    }
    let read = x
        .upstream
        .iter()
        .rev()
        .find(|c| c.request.method.eq_ignore_ascii_case(&method) && c.request.path.contains("/responses/"));
    let Some(call) = read else { return };
    let got = x.response.status;
    if call.answer.status == Some(404) && !(400..500).contains(&got) {
        out.push(violation(
            "errors.status-class",
            format!(
                "{} answered {method} of the stored Response with 404 (it is not there); the client got {got} ({})",
                call.provider,
                snippet(&x.response.body)
            ),
        ));
    }
}
