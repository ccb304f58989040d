//! Contracts: what the public API specifications say every exchange through
//! a gateway must satisfy, checked on every exchange of every scenario (in
//! process and in target mode), whatever the scenario itself expects.
//!
//! A contract has a stable name (`family.what`), a one-line statement and a
//! check over an [`Exchange`]: the client's request and response and the
//! upstream calls the mock providers saw, with their answers. The harness
//! knows what each mock sent, so it computes what the client must see.
//!
//! The statements come from the specifications (OpenAI's API reference and
//! OpenAPI document, Anthropic's Messages API and streaming events, the SSE
//! format, HTTP semantics), never from one gateway's behaviour: a check
//! that fires must point at a defect. Where a specification allows several
//! answers (which 4xx, absent or null, header parameters, error wording) the
//! check allows them all.
//!
//! Architecture invariant: nothing here imports `crate::gateway`. The
//! checks judge any gateway; they read its config as LiteLLM-format JSON
//! (see [`Setup::from_config`]) and never share the gateway's parsers.

mod accounting;
mod errors;
mod exchange;
mod fidelity;
mod handles;
mod request;
pub mod schema;
mod security;
pub(crate) mod semantic;
mod shape;
pub mod sse;
mod stream;

pub use accounting::{OwnRates, Prices, COST_HEADER};
pub(crate) use exchange::Endpoint;
pub use exchange::{masked, media_type, Attribution, ClientRequest, ClientResponse, Exchange, Setup, UpstreamCall};
pub use handles::{response_ids, Handles};

use serde::Serialize;

/// A contract's family, for grouping in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Schema,
    Streaming,
    Fidelity,
    Errors,
    Security,
    Resources,
    Accounting,
}

/// One contract.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Contract {
    pub name: &'static str,
    pub family: Family,
    pub statement: &'static str,
}

/// Every contract the checks can report, by name.
pub const CONTRACTS: &[Contract] = &[
    Contract {
        name: "schema.success-body",
        family: Family::Schema,
        statement: "A 2xx JSON response is a valid success object of its endpoint (chat.completion, text_completion, embeddings list in the encoding the client asked for, Response, Anthropic Message, model list and model).",
    },
    Contract {
        name: "schema.error-body",
        family: Family::Schema,
        statement: "A 4xx/5xx response from an API route carries an error object with a string message (on /v1/messages, Anthropic's {type: error, error: {type, message}}).",
    },
    Contract {
        name: "schema.media-type",
        family: Family::Schema,
        statement: "A non-streaming API response is application/json; a streamed one is text/event-stream.",
    },
    Contract {
        name: "stream.framing",
        family: Family::Streaming,
        statement: "Every event of a stream is well-formed SSE whose data is a valid chunk or event of its API (OpenAI chunks end with data: [DONE]; Anthropic events are named after their type).",
    },
    Contract {
        name: "stream.termination",
        family: Family::Streaming,
        statement: "A stream the provider completed ends with its API's terminator (data: [DONE] / message_stop / response.completed) and nothing after it; events come in the order the API defines.",
    },
    Contract {
        name: "stream.no-false-completion",
        family: Family::Streaming,
        statement: "When the provider's answer broke off (or stopped without its terminator), was malformed or reported a failure mid-stream, the client never sees a clean end (no [DONE] or message_stop, no 2xx success body).",
    },
    Contract {
        name: "stream.incremental",
        family: Family::Streaming,
        statement: "Events reach the client as the provider sends them: while the provider holds the rest of a stream, the client already has what was sent before.",
    },
    Contract {
        name: "stream.include-usage",
        family: Family::Streaming,
        statement: "With stream_options.include_usage, exactly one chunk carries usage, it comes last before [DONE] and has empty choices; every other chunk's usage is null.",
    },
    Contract {
        name: "fidelity.content",
        family: Family::Fidelity,
        statement: "The text the provider returned reaches the client byte for byte (per choice, streamed or not, translated or not).",
    },
    Contract {
        name: "fidelity.tool-calls",
        family: Family::Fidelity,
        statement: "Tool calls reach the client with the provider's ids, names and arguments (the same string, or the same JSON across a translation).",
    },
    Contract {
        name: "fidelity.finish-reason",
        family: Family::Fidelity,
        statement: "The finish/stop reason is the provider's, or its counterpart in the client's API (end_turn→stop, max_tokens→length, tool_use→tool_calls).",
    },
    Contract {
        name: "fidelity.response-handle",
        family: Family::Fidelity,
        statement: "A Response id the client got, sent back as previous_response_id or read or deleted at /v1/responses/{id}, reaches the provider that stored that Response, as the id it issued; a Response the client did not opt out of storing is stored.",
    },
    Contract {
        name: "fidelity.usage",
        family: Family::Fidelity,
        statement: "Token usage is the provider's count, cache tokens included, never an estimate; a count_tokens answer is the provider's count where its API has one (Anthropic's).",
    },
    Contract {
        name: "fidelity.identity",
        family: Family::Fidelity,
        statement: "Without a translation, id, created, system_fingerprint and model reach the client as the provider sent them (model may be the name the client asked for, or the provider's behind a routing prefix); a stream's chunks share one id.",
    },
    Contract {
        name: "fidelity.request",
        family: Family::Fidelity,
        statement: "What the client asked reaches the provider: its turns in order with their roles and text, its system text, earlier tool calls (each result answering the same call), its images, the tools it declared (name, description, schema), its tool choice and stop sequences, and the values of the other parameters it set (a dropped parameter is not a changed one).",
    },
    Contract {
        name: "errors.client-error-not-retried",
        family: Family::Errors,
        statement: "A request a provider refused with a client error (4xx other than 401, 403, 408, 409, 429) is not sent to that provider again.",
    },
    Contract {
        name: "errors.status-class",
        family: Family::Errors,
        statement: "When the last upstream attempt failed and the client gets an error, it gets the same status class (4xx or 5xx; 429 stays 429; a provider's 401/403/404 may become the gateway's 5xx, except a 404 to a read or delete of a stored Response, which is the client's 4xx); a reset or a broken success upstream is never the client's 4xx.",
    },
    Contract {
        name: "errors.upstream-message",
        family: Family::Errors,
        statement: "A provider's message about the request (its 400, 404, 413 or 422) reaches the client.",
    },
    Contract {
        name: "errors.retry-after",
        family: Family::Errors,
        statement: "A 429 passed on from a provider keeps the provider's Retry-After.",
    },
    Contract {
        name: "errors.invalid-request-is-4xx",
        family: Family::Errors,
        statement: "A request body that is not JSON, not an object, or lacks or mistypes a required field is answered 4xx, never 2xx or 5xx.",
    },
    Contract {
        name: "security.client-key-not-forwarded",
        family: Family::Security,
        statement: "The credential the client presented to the gateway never reaches a provider.",
    },
    Contract {
        name: "security.credential-to-its-host",
        family: Family::Security,
        statement: "A deployment's credential only ever reaches that deployment's host.",
    },
    Contract {
        name: "security.credential-not-replaced",
        family: Family::Security,
        statement: "A provider receives only the credentials configured for it, whatever the client's body or headers say.",
    },
    Contract {
        name: "security.no-redirect",
        family: Family::Security,
        statement: "A provider no deployment points at receives nothing: nothing a client sends can redirect a call.",
    },
    Contract {
        name: "security.no-secret-in-response",
        family: Family::Security,
        statement: "No configured secret (provider credentials, master key, configured keys) appears in a response's headers or body.",
    },
    Contract {
        name: "security.no-secret-in-output",
        family: Family::Security,
        statement: "No configured secret appears in the gateway's log output.",
    },
    Contract {
        name: "security.unauthenticated-refused",
        family: Family::Security,
        statement: "When the gateway has a master key, a model or key-admin request without a credential is refused (never 2xx) and reaches no provider.",
    },
    Contract {
        name: "resources.timeout-honoured",
        family: Family::Resources,
        statement: "A deployment's configured timeout bounds each call to it: a non-streaming request to a model whose deployments all set one is answered within the attempts made times that timeout (plus slack), whatever the provider does.",
    },
    Contract {
        name: "resources.abandoned-upstream-closed",
        family: Family::Resources,
        statement: "When a client abandons a stream, the gateway closes the upstream call within the bound (and later requests are unaffected).",
    },
    Contract {
        name: "accounting.response-cost",
        family: Family::Accounting,
        statement: "A cost the gateway reports for a call (x-litellm-response-cost) is what the model cost map it was given (or the deployment's own rates) charges for the usage the provider reported: input, cached input, cache writes and output tokens each at their own rate.",
    },
];

/// What a gateway may add to its deployments' timeouts before the client
/// has its answer: its own work, a slow machine, a retry's backoff.
pub(crate) const TIMEOUT_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

/// `resources.timeout-honoured`: a non-streaming call to a model whose
/// deployments all set `timeout` takes at most attempts x timeout x 1.5 +
/// [`TIMEOUT_SLACK`]. Streams are not bounded as a whole (their
/// `stream_timeout` bounds the gaps), nor exchanges nobody timed.
fn timeout_honoured(x: &Exchange, setup: &Setup, out: &mut Vec<Violation>) {
    let Some(elapsed) = x.response.elapsed else { return };
    if x.request.wants_stream() {
        return;
    }
    let model = x.request.json().and_then(|b| b.get("model").and_then(serde_json::Value::as_str).map(str::to_string));
    let Some(timeout) = model.as_ref().and_then(|m| setup.timeouts.get(m)) else { return };
    let attempts = x.model_calls().count().max(1) as f64;
    let bound = std::time::Duration::from_secs_f64(attempts * timeout * 1.5) + TIMEOUT_SLACK;
    if elapsed > bound {
        out.push(violation(
            "resources.timeout-honoured",
            format!(
                "`{}` has a timeout of {timeout} s and the gateway made {attempts} attempt(s), yet the client waited {} ms (bound {} ms)",
                model.unwrap_or_default(),
                elapsed.as_millis(),
                bound.as_millis()
            ),
        ));
    }
}

/// How long a gateway may hold back events the provider has sent.
pub(crate) const INCREMENTAL_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

/// The streaming contract for a partly read stream: `have` events arrived
/// within the bound while the provider held the rest; `want` were sent.
pub fn check_incremental(have: usize, want: usize) -> Option<Violation> {
    (have < want).then(|| {
        violation(
            "stream.incremental",
            format!(
                "the provider sent its first events and held the rest; after {} s the client had {have} event(s), not {want}",
                INCREMENTAL_BOUND.as_secs()
            ),
        )
    })
}

/// How long a gateway may keep an abandoned stream's upstream call open.
pub const ABANDON_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

/// The resources contract for one abandoned stream: `call` is the upstream
/// call behind it as the mock saw it once `waited` had passed.
pub fn check_abandoned(call: &UpstreamCall, waited: std::time::Duration) -> Option<Violation> {
    use crate::mocks::AnswerEnd;
    match call.answer.end {
        AnswerEnd::PeerClosed | AnswerEnd::Reset | AnswerEnd::Cut => None,
        AnswerEnd::Complete => None, // the stream ended before the client left
        AnswerEnd::InProgress => Some(violation(
            "resources.abandoned-upstream-closed",
            format!(
                "the client left {} ms ago; {} still has the upstream call {} {} open",
                waited.as_millis(),
                call.provider,
                call.request.method,
                call.request.path
            ),
        )),
    }
}

/// Looks a contract up by name.
pub fn contract(name: &str) -> Option<&'static Contract> {
    CONTRACTS.iter().find(|c| c.name == name)
}

/// One broken contract on one exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub contract: &'static str,
    /// What is wrong, with the values that show it.
    pub detail: String,
}

pub(crate) fn violation(contract: &'static str, detail: impl Into<String>) -> Violation {
    debug_assert!(self::contract(contract).is_some(), "unknown contract {contract}");
    Violation { contract, detail: detail.into() }
}

/// Checks every contract that applies to this exchange.
pub fn check(x: &Exchange, setup: &Setup) -> Vec<Violation> {
    let mut out = Vec::new();
    security::check(x, setup, &mut out);
    errors::check(x, &mut out);
    let endpoint = Endpoint::of(&x.request.path);
    if matches!(endpoint, Endpoint::Models | Endpoint::Model) {
        models_schema(x, endpoint, &mut out);
    }
    if endpoint.calls_a_model() {
        let mut shape = Vec::new();
        shape_checks(x, endpoint, &mut shape);
        // A gateway that relays a provider's own departure from the spec
        // unchanged did not make it: in a pass-through, what the provider's
        // answer already breaks is not held against the gateway.
        if let Some(relayed) = provider_as_client(x, endpoint) {
            let mut theirs = Vec::new();
            shape_checks(&relayed, endpoint, &mut theirs);
            // Only what a relay cannot mend without rewriting content: a
            // wrong media type or a false completion is the gateway's call.
            const RELAYED: &[&str] = &[
                "stream.framing",
                "stream.termination",
                "stream.include-usage",
                "schema.success-body",
                "schema.error-body",
            ];
            shape.retain(|v| !(RELAYED.contains(&v.contract) && theirs.iter().any(|t| t.contract == v.contract)));
        }
        out.extend(shape);
        if x.attribution == Attribution::Exact {
            fidelity::check(x, endpoint, &mut out);
            if endpoint == Endpoint::CountTokens {
                fidelity::count_tokens(x, setup, &mut out);
            }
            timeout_honoured(x, setup, &mut out);
            request::check(x, endpoint, &mut out);
            accounting::check(x, setup, &mut out);
        }
    }
    out.sort_by(|a, b| a.contract.cmp(b.contract).then_with(|| a.detail.cmp(&b.detail)));
    out.dedup();
    out
}

/// The schema and streaming families for one response.
fn shape_checks(x: &Exchange, endpoint: Endpoint, out: &mut Vec<Violation>) {
    if x.request.wants_stream() && (200..300).contains(&x.response.status) {
        stream::check(x, endpoint, out);
    } else {
        body_schema(x, endpoint, out);
    }
}

/// In a pass-through (the provider speaks the client's API), the exchange
/// the client would have had if the gateway had relayed the provider's
/// successful answer byte for byte.
fn provider_as_client(x: &Exchange, endpoint: Endpoint) -> Option<Exchange> {
    use crate::mocks::MockKind;
    // Alone, the last call; among concurrent exchanges, the call whose
    // answer is (as JSON) what the client got, if there is one.
    let call = match x.attribution {
        Attribution::Exact => x.last_model_call()?,
        Attribution::Shared => {
            let got = x.response.json()?;
            x.upstream.iter().find(|c| c.answer.json().as_ref() == Some(&got))?
        }
    };
    let a = &call.answer;
    let same_api = match endpoint {
        Endpoint::ChatCompletions | Endpoint::Embeddings => call.kind.is_openai_family(),
        Endpoint::Responses => {
            call.kind.is_openai_family() && call.request.path.trim_end_matches('/').ends_with("/responses")
        }
        Endpoint::Messages | Endpoint::CountTokens => {
            matches!(call.kind, MockKind::Anthropic | MockKind::AzureAi | MockKind::VertexAi)
        }
        _ => false,
    };
    if !same_api || !a.status.is_some_and(|s| (200..300).contains(&s)) || a.end != crate::mocks::AnswerEnd::Complete {
        return None;
    }
    Some(Exchange {
        request: x.request.clone(),
        response: ClientResponse {
            status: a.status?,
            headers: a.headers.clone(),
            body: a.body.clone(),
            complete: true,
            elapsed: None,
        },
        upstream: Vec::new(),
        attribution: Attribution::Shared,
        egress: Vec::new(),
    })
}

/// A model listing or a model the client read (`GET` only; errors on
/// these routes have no schema of their own in the reference).
fn models_schema(x: &Exchange, endpoint: Endpoint, out: &mut Vec<Violation>) {
    let r = &x.response;
    if x.request.method != "GET" || !(200..300).contains(&r.status) {
        return;
    }
    if r.media_type().as_deref() != Some("application/json") {
        out.push(violation(
            "schema.media-type",
            format!("a {} answer to GET {} has content-type {:?}", r.status, x.request.path, r.header("content-type")),
        ));
    }
    let problems = match r.json() {
        Some(v) => schema::openai_models(&v, endpoint == Endpoint::Model),
        None => vec![format!("not JSON: {}", snippet(&r.body))],
    };
    if !problems.is_empty() {
        out.push(violation("schema.success-body", problems.join("; ")));
    }
}

/// The schema family for a response that is not a stream.
fn body_schema(x: &Exchange, endpoint: Endpoint, out: &mut Vec<Violation>) {
    let r = &x.response;
    // A gateway's own 404/405 for a path it does not serve, and the
    // transport-level answers, are outside the API's schemas.
    let api_route = matches!(
        endpoint,
        Endpoint::ChatCompletions
            | Endpoint::Completions
            | Endpoint::Embeddings
            | Endpoint::Responses
            | Endpoint::Messages
            | Endpoint::CountTokens
    );
    if !api_route || r.status == 0 {
        return;
    }
    let json = r.json();
    if (200..300).contains(&r.status) {
        if r.media_type().as_deref() != Some("application/json") {
            out.push(violation(
                "schema.media-type",
                format!(
                    "a {} answer to a non-streaming request has content-type {:?}",
                    r.status,
                    r.header("content-type")
                ),
            ));
        }
        if let Some(call) = x.last_model_call().filter(|_| x.attribution == Attribution::Exact) {
            let a = &call.answer;
            let ok = a.status.is_some_and(|s| (200..300).contains(&s));
            if ok && a.json().is_none() && endpoint != Endpoint::CountTokens {
                out.push(violation(
                    "stream.no-false-completion",
                    format!(
                        "{} answered {} with a body that is not JSON ({}), yet the client got {}",
                        call.provider,
                        a.status.unwrap_or(0),
                        snippet(&a.body),
                        r.status
                    ),
                ));
            }
        }
        let Some(v) = json else {
            out.push(violation(
                "schema.success-body",
                format!("a {} body that is not JSON: {}", r.status, snippet(&r.body)),
            ));
            return;
        };
        let problems = match endpoint {
            Endpoint::ChatCompletions => schema::openai_chat_completion(&v),
            Endpoint::Completions => schema::openai_text_completion(&v, false),
            Endpoint::Embeddings => {
                let asked = x
                    .request
                    .json()
                    .and_then(|b| b.get("encoding_format").and_then(|f| f.as_str().map(str::to_string)));
                let mut p = schema::openai_embeddings(&v);
                p.extend(schema::openai_embeddings_encoding(&v, asked.as_deref()));
                p
            }
            Endpoint::Responses => schema::openai_response(&v),
            Endpoint::Messages => schema::anthropic_message(&v, false),
            Endpoint::CountTokens => count_tokens(&v),
            _ => Vec::new(),
        };
        if !problems.is_empty() {
            out.push(violation("schema.success-body", problems.join("; ")));
        }
    } else if r.status >= 400 {
        let problems = match json {
            None => vec![format!("not JSON: {}", snippet(&r.body))],
            Some(v) if endpoint.is_anthropic() => schema::anthropic_error(&v),
            Some(v) => schema::openai_error(&v),
        };
        if !problems.is_empty() {
            out.push(violation("schema.error-body", format!("{} answer: {}", r.status, problems.join("; "))));
        }
    }
}

fn count_tokens(v: &serde_json::Value) -> Vec<String> {
    match v.get("input_tokens") {
        Some(n) if n.is_u64() => Vec::new(),
        _ => vec!["/input_tokens: missing or not an integer".into()],
    }
}

/// Two numbers are one value when they agree to nine significant digits
/// (`1` and `1.0`, a float written back in another notation).
pub(crate) fn same_number(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => a == b,
    }
}

/// Where two JSON values first differ, as (pointer, first's, second's), by
/// the one rule every contract compares data with: numbers by value, and a
/// field that is null on one side and absent on the other is no difference
/// (the specifications make such fields nullable, and relays drop nulls).
pub(crate) fn json_difference<'v>(
    p: &'v serde_json::Value,
    c: &'v serde_json::Value,
    at: String,
) -> Option<(String, Option<&'v serde_json::Value>, Option<&'v serde_json::Value>)> {
    use serde_json::Value;
    match (p, c) {
        (Value::Object(a), Value::Object(b)) => {
            a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))).find_map(|k| {
                let (x, y) = (a.get(k).filter(|v| !v.is_null()), b.get(k).filter(|v| !v.is_null()));
                match (x, y) {
                    (None, None) => None,
                    (Some(x), Some(y)) => json_difference(x, y, format!("{at}/{k}")),
                    _ => Some((format!("{at}/{k}"), x, y)),
                }
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            a.iter().zip(b).enumerate().find_map(|(i, (x, y))| json_difference(x, y, format!("{at}/{i}")))
        }
        (Value::Number(_), Value::Number(_)) if same_number(p, c) => None,
        _ if p == c => None,
        _ => Some((at, Some(p), Some(c))),
    }
}

/// The first 200 characters of a body, for evidence.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    format!("{s:?}")
}

/// Checks the gateway's output lines (logs) for configured secrets.
pub fn check_output(lines: &[String], setup: &Setup) -> Vec<Violation> {
    let mut out = Vec::new();
    for secret in &setup.secrets {
        if let Some(n) = lines.iter().position(|l| l.contains(&secret.value)) {
            out.push(violation(
                "security.no-secret-in-output",
                format!("output line {} contains {}", n + 1, masked(secret)),
            ));
        }
    }
    out
}
