//! Fidelity: what the provider returned reaches the client unchanged,
//! unless the translation between APIs says otherwise. The translation
//! table is written down once, here, and read in both directions:
//!
//! | OpenAI chat completion            | Anthropic Message / Bedrock Converse          |
//! |-----------------------------------|-----------------------------------------------|
//! | `choices[0].message.content`      | text blocks, concatenated                     |
//! | `tool_calls[].id/function.name`   | `tool_use.id/name` (`toolUse.toolUseId/name`) |
//! | `tool_calls[].function.arguments` | `tool_use.input` (same JSON value)            |
//! | `finish_reason` stop              | `end_turn`, `stop_sequence`                   |
//! | `finish_reason` length            | `max_tokens`                                  |
//! | `finish_reason` tool_calls        | `tool_use`                                    |
//! | `finish_reason` content_filter    | `refusal`, `guardrail_intervened`, `content_filtered` |
//! | `usage.completion_tokens`         | `output_tokens` (`outputTokens`)              |
//! | `usage.prompt_tokens`             | `input_tokens` + cache read + cache creation  |
//! | `prompt_tokens_details.cached_tokens` | `cache_read_input_tokens`                 |
//!
//! Gemini (`generateContent`) reads the same way: candidates are choices,
//! `functionCall` parts tool calls (`args` the same JSON value), `STOP` is
//! `stop` (`tool_calls`/`tool_use` when it called a function), `MAX_TOKENS`
//! `length`, its safety reasons `content_filter`; `promptTokenCount`
//! (cached tokens included) is `prompt_tokens`, candidates + thoughts are
//! `completion_tokens`, `cachedContentTokenCount` is `cached_tokens`.
//!
//! OpenAI's `prompt_tokens` counts every input token; Anthropic's
//! `input_tokens` excludes cached ones. Gateways differ on whether to add
//! the cache counts back, so `prompt_tokens` may be the input alone, input +
//! cache read, or input + both; anything else is an estimate.

use super::exchange::{Endpoint, Exchange, Setup, UpstreamCall};
use super::semantic::{self, Answer, Protocol};
use super::{violation, Violation};
use crate::mocks::{AnswerEnd, MockKind};
use serde_json::Value;

/// The client's view, in the client's protocol.
fn client_answer(x: &Exchange, endpoint: Endpoint) -> Option<Answer> {
    let streamed = x.request.wants_stream();
    match (endpoint, streamed) {
        (Endpoint::ChatCompletions, false) => x.response.json().map(|v| semantic::openai_body(&v)),
        (Endpoint::ChatCompletions, true) => Some(semantic::openai_stream(&x.response.body)),
        (Endpoint::Messages, false) => x.response.json().map(|v| semantic::anthropic_body(&v)),
        (Endpoint::Messages, true) => Some(semantic::anthropic_stream(&x.response.body)),
        (Endpoint::Responses, false) => x.response.json().map(|v| semantic::responses_body(&v)),
        (Endpoint::Responses, true) => Some(semantic::responses_stream(&x.response.body)),
        _ => None,
    }
}

/// The provider's answer, in its own protocol.
pub(super) fn provider_answer(call: &UpstreamCall) -> Option<Answer> {
    let a = &call.answer;
    let body = &a.body;
    let path = &call.request.path;
    let event_stream = a.header("content-type").map(super::media_type).unwrap_or_default();
    match call.kind {
        MockKind::Bedrock if path.ends_with("/converse-stream") => Some(semantic::converse_stream(body)),
        MockKind::Bedrock if path.ends_with("/converse") => a.json().map(|v| semantic::converse_body(&v)),
        MockKind::Bedrock if path.ends_with("/invoke-with-response-stream") => {
            Some(semantic::bedrock_invoke_stream(body))
        }
        MockKind::Bedrock => a.json().map(|v| semantic::anthropic_body(&v)),
        // A stream (SSE, or one JSON array without `alt=sse`), or one answer.
        MockKind::Gemini if path.contains(":streamGenerateContent") => Some(semantic::gemini_stream(body)),
        MockKind::Gemini => a.json().map(|v| semantic::gemini_body(&v)),
        k if k.is_openai_family() && path.trim_end_matches('/').ends_with("/responses") => {
            if event_stream == "text/event-stream" {
                Some(semantic::responses_stream(body))
            } else {
                a.json().map(|v| semantic::responses_body(&v))
            }
        }
        k if k.is_openai_family() => {
            if event_stream == "text/event-stream" {
                Some(semantic::openai_stream(body))
            } else {
                a.json().map(|v| semantic::openai_body(&v))
            }
        }
        _ => {
            if event_stream == "text/event-stream" {
                Some(semantic::anthropic_stream(body))
            } else {
                a.json().map(|v| semantic::anthropic_body(&v))
            }
        }
    }
}

/// Gemini's reasons for stopping on safety grounds (its `FinishReason`
/// enum), and a blocked prompt's `blockReason`s.
const GEMINI_FILTERED: &[&str] =
    &["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT"];

/// The finish reasons of the client's API that a provider's reason maps to.
/// `called`: the provider's choice called a tool (Gemini says `STOP` then).
fn finish_counterparts(
    provider: Protocol,
    client: Protocol,
    reason: &str,
    called: bool,
) -> Option<&'static [&'static str]> {
    use Protocol::*;
    Some(match (provider, client) {
        (OpenAi, OpenAi) | (Anthropic, Anthropic) => return None, // compared as equal strings
        (Gemini, OpenAi) => match reason {
            "STOP" if called => &["tool_calls"],
            "STOP" => &["stop"],
            "MAX_TOKENS" => &["length"],
            r if GEMINI_FILTERED.contains(&r) => &["content_filter"],
            _ => return Some(&[]),
        },
        (Gemini, Anthropic) => match reason {
            "STOP" if called => &["tool_use"],
            "STOP" => &["end_turn", "stop_sequence"],
            "MAX_TOKENS" => &["max_tokens"],
            r if GEMINI_FILTERED.contains(&r) => &["refusal", "end_turn"],
            _ => return Some(&[]),
        },
        (Anthropic | Converse, OpenAi) => match reason {
            "end_turn" | "stop_sequence" => &["stop"],
            "max_tokens" => &["length"],
            "tool_use" => &["tool_calls"],
            "refusal" | "guardrail_intervened" | "content_filtered" => &["content_filter"],
            _ => return Some(&[]),
        },
        (OpenAi | Converse, Anthropic) => match reason {
            "stop" | "end_turn" => &["end_turn", "stop_sequence"],
            "stop_sequence" => &["stop_sequence", "end_turn"],
            "length" | "max_tokens" => &["max_tokens"],
            "tool_calls" | "tool_use" | "function_call" => &["tool_use"],
            "content_filter" | "guardrail_intervened" | "content_filtered" => &["refusal", "end_turn"],
            _ => return Some(&[]),
        },
        (_, Converse | Gemini) => return Some(&[]),
    })
}

/// `count_tokens` is a usage answer too: where the model is served by
/// Anthropic's own API, which counts exactly (tools, images and system
/// included), the client's `input_tokens` is the provider's. An answer the
/// gateway made up without asking is an estimate, whatever it is labelled.
pub(super) fn count_tokens(x: &Exchange, setup: &Setup, out: &mut Vec<Violation>) {
    if !(200..300).contains(&x.response.status) {
        return;
    }
    let Some(client) = x.response.json().and_then(|v| v.get("input_tokens").and_then(Value::as_u64)) else {
        return; // not a count: the schema checks' business
    };
    let counted_upstream = x.model_calls().rev().find_map(|c| {
        let path = c.request.path.split('?').next().unwrap_or("");
        if !(path.contains("count_tokens") || path.contains("count-tokens")) {
            return None;
        }
        c.answer.status.filter(|s| (200..300).contains(s))?;
        c.answer.json().and_then(|v| v.get("input_tokens").and_then(Value::as_u64))
    });
    match counted_upstream {
        Some(p) if p != client => out.push(violation(
            "fidelity.usage",
            format!("count_tokens: the provider counted {p} input tokens, the client got {client}"),
        )),
        Some(_) => {}
        None => {
            let model = x.request.json().and_then(|b| b.get("model").and_then(Value::as_str).map(str::to_string));
            if let Some(model) = model.filter(|m| setup.exact_counts.contains(m)) {
                out.push(violation(
                    "fidelity.usage",
                    format!(
                        "count_tokens for `{model}`: the client got {client} input tokens, but the gateway never asked \
                         the provider, whose API counts them exactly (an estimate in place of the provider's count)"
                    ),
                ));
            }
        }
    }
}

pub(super) fn check(x: &Exchange, endpoint: Endpoint, out: &mut Vec<Violation>) {
    if !(200..300).contains(&x.response.status)
        || !matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses)
    {
        if endpoint == Endpoint::Embeddings && (200..300).contains(&x.response.status) {
            embeddings(x, out);
        }
        return;
    }
    // The answer the client's came from: the last successful upstream call.
    let Some(call) = x.model_calls().rev().find(|c| c.answer.status.is_some_and(|s| (200..300).contains(&s))) else {
        return;
    };
    if call.answer.end != AnswerEnd::Complete || super::stream::reported_failure(call).is_some() {
        return; // a broken or failed answer is the streaming contracts' business
    }
    let client_failed = x.response.media_type().as_deref() == Some("text/event-stream")
        && super::stream::failure_event(&x.response.body).is_some();
    if client_failed {
        // The gateway gave up on the answer (its stream_timeout, say) and
        // told the client so: what the provider sent after that is not owed.
        return;
    }
    let (Some(p), Some(c)) = (provider_answer(call), client_answer(x, endpoint)) else { return };
    let (Some(pp), Some(cp)) = (p.protocol, c.protocol) else { return };
    // Chat Completions and the Responses API are both "OpenAI": a gateway
    // that bridges one to the other translates as much as one to Anthropic.
    let responses = |path: &str| path.split('?').next().unwrap_or("").trim_end_matches('/').ends_with("/responses");
    let translated = pp != cp || responses(&call.request.path) != (endpoint == Endpoint::Responses);
    for (index, pc) in &p.choices {
        let Some(cc) = c.choices.get(index) else {
            out.push(violation(
                "fidelity.content",
                format!("the provider's choice {index} is missing from the client's answer"),
            ));
            continue;
        };
        if pc.text != cc.text {
            out.push(violation(
                "fidelity.content",
                format!("choice {index}: the provider sent {:?}, the client got {:?}", clip(&pc.text), clip(&cc.text)),
            ));
        }
        tool_calls(index, pc, cc, !translated && pp == Protocol::OpenAi, out);
        if pp == Protocol::Anthropic && cp == Protocol::Anthropic && pc.thinking != cc.thinking {
            out.push(violation(
                "fidelity.content",
                format!(
                    "choice {index}: the provider's thinking blocks {} reached the client as {}",
                    clip(&Value::Array(pc.thinking.clone()).to_string()),
                    clip(&Value::Array(cc.thinking.clone()).to_string())
                ),
            ));
        }
        if let (Some(pf), Some(cf)) = (&pc.finish, &cc.finish) {
            let called = !pc.tool_calls.is_empty();
            let ok = match finish_counterparts(pp, cp, pf, called) {
                None => pf == cf,
                Some(allowed) => allowed.is_empty() || allowed.contains(&cf.as_str()),
            };
            if !ok {
                // Across APIs a reason changes its spelling: say which ones
                // the translation table allows, so "refusal became refusal"
                // reads as the missing translation it is.
                let expected = match finish_counterparts(pp, cp, pf, called) {
                    Some(allowed) => format!(" (the {cp:?} spelling is one of {})", allowed.join(", ")),
                    None => String::new(),
                };
                out.push(violation(
                    "fidelity.finish-reason",
                    format!("choice {index}: the provider's {pf:?} became {cf:?}{expected}"),
                ));
            }
        } else if pc.finish.is_some() && cc.finish.is_none() && c.completed {
            out.push(violation(
                "fidelity.finish-reason",
                format!("choice {index}: the provider's {:?} was dropped", pc.finish),
            ));
        }
    }
    usage(&p, &c, cp, x, out);
    if !translated && !x.request.wants_stream() {
        identity(&p, &c, x, out);
        if endpoint == Endpoint::ChatCompletions {
            logprobs(call, x, out);
        }
    }
}

/// A pass-through's log probabilities: each choice's `logprobs` as the
/// provider sent them (tokens, their log probabilities, the alternatives).
fn logprobs(call: &UpstreamCall, x: &Exchange, out: &mut Vec<Violation>) {
    let (Some(p), Some(c)) = (call.answer.json(), x.response.json()) else { return };
    let choices = |v: &Value| v.get("choices").and_then(Value::as_array).cloned().unwrap_or_default();
    for pc in choices(&p) {
        let Some(lp) = pc.get("logprobs").filter(|l| !l.is_null()) else { continue };
        let index = pc.get("index").and_then(Value::as_u64);
        let cc = choices(&c).into_iter().find(|cc| cc.get("index").and_then(Value::as_u64) == index);
        let got = cc.as_ref().and_then(|cc| cc.get("logprobs")).cloned().unwrap_or(Value::Null);
        if let Some((at, want, have)) = super::json_difference(lp, &got, String::new()) {
            let show = |v: Option<&Value>| v.map_or("nothing".to_string(), |v| clip(&v.to_string()));
            let (want, have) = (show(want), show(have));
            out.push(violation(
                "fidelity.content",
                format!("choice {}: logprobs{at}: the provider sent {want}, the client got {have}", index.unwrap_or(0)),
            ));
        }
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s.to_string()
    }
}

fn tool_calls(index: &u64, pc: &semantic::Choice, cc: &semantic::Choice, byte_exact: bool, out: &mut Vec<Violation>) {
    if pc.tool_calls.len() != cc.tool_calls.len() {
        out.push(violation(
            "fidelity.tool-calls",
            format!(
                "choice {index}: the provider sent {} tool call(s), the client got {}",
                pc.tool_calls.len(),
                cc.tool_calls.len()
            ),
        ));
        return;
    }
    for (k, (pt, ct)) in pc.tool_calls.iter().zip(&cc.tool_calls).enumerate() {
        if pt.id.is_some() && pt.id != ct.id {
            out.push(violation("fidelity.tool-calls", format!("tool call {k}: id {:?} became {:?}", pt.id, ct.id)));
        }
        if pt.name != ct.name {
            out.push(violation(
                "fidelity.tool-calls",
                format!("tool call {k}: name {:?} became {:?}", pt.name, ct.name),
            ));
        }
        // OpenAI to OpenAI: the argument string byte for byte. Otherwise
        // one side is an object: the same JSON value.
        let same = if byte_exact {
            pt.arguments == ct.arguments
        } else {
            match (pt.arguments_json(), ct.arguments_json()) {
                (Some(a), Some(b)) => a == b,
                _ => pt.arguments == ct.arguments,
            }
        };
        if !same {
            out.push(violation(
                "fidelity.tool-calls",
                format!("tool call {k}: arguments {:?} became {:?}", clip(&pt.arguments), clip(&ct.arguments)),
            ));
        }
    }
}

fn usage(p: &Answer, c: &Answer, client: Protocol, x: &Exchange, out: &mut Vec<Violation>) {
    let Some(pu) = p.usage else { return };
    let Some(cu) = c.usage else {
        // Streams carry usage only when asked (OpenAI); a body always may.
        let streamed_openai = x.request.wants_stream() && client == Protocol::OpenAi;
        if !streamed_openai && pu.output.is_some() {
            out.push(violation("fidelity.usage", "the provider reported usage; the client's answer has none"));
        }
        return;
    };
    let read = pu.cache_read.unwrap_or(0);
    let creation = pu.cache_creation.unwrap_or(0);
    if let (Some(po), Some(co)) = (pu.output, cu.output) {
        if po != co {
            out.push(violation(
                "fidelity.usage",
                format!("output tokens: the provider counted {po}, the client got {co}"),
            ));
        }
    }
    if let (Some(pi), Some(ci)) = (pu.input, cu.input) {
        let allowed: Vec<u64> = match (p.protocol, client) {
            (Some(Protocol::OpenAi), Protocol::OpenAi) => vec![pi],
            // Gemini's prompt count includes its cached tokens, as OpenAI's
            // does; Anthropic's input_tokens may leave them out.
            (Some(Protocol::Gemini), Protocol::OpenAi) => vec![pi],
            (Some(Protocol::Gemini), Protocol::Anthropic) => vec![pi, pi.saturating_sub(read)],
            (_, Protocol::OpenAi) => vec![pi, pi + read, pi + read + creation],
            // OpenAI -> Anthropic: input_tokens may exclude cached tokens.
            (Some(Protocol::OpenAi), Protocol::Anthropic) => vec![pi, pi.saturating_sub(read)],
            _ => vec![pi],
        };
        if !allowed.contains(&ci) {
            out.push(violation(
                "fidelity.usage",
                format!("input tokens: the provider counted {pi} (cache read {read}, creation {creation}), the client got {ci}"),
            ));
        }
    }
    if client == Protocol::OpenAi {
        if let (Some(ci), Some(co), Some(ct)) = (cu.input, cu.output, cu.total) {
            if ci + co != ct {
                out.push(violation(
                    "fidelity.usage",
                    format!("total_tokens {ct} is not prompt {ci} + completion {co}"),
                ));
            }
        }
    }
    // Gemini's cached count is OpenAI's `cached_tokens` under another name.
    let gemini_to_openai = p.protocol == Some(Protocol::Gemini) && client == Protocol::OpenAi;
    if p.protocol == Some(client) || gemini_to_openai {
        for (what, pv, cv) in
            [("cache read", pu.cache_read, cu.cache_read), ("cache creation", pu.cache_creation, cu.cache_creation)]
        {
            if let (Some(pv), Some(cv)) = (pv, cv) {
                if pv != cv {
                    out.push(violation(
                        "fidelity.usage",
                        format!("{what} tokens: the provider counted {pv}, the client got {cv}"),
                    ));
                }
            } else if pv.is_some_and(|v| v > 0) && cv.is_none() {
                out.push(violation(
                    "fidelity.usage",
                    format!("{what} tokens: the provider counted {pv:?}, the client's usage has none"),
                ));
            }
        }
    }
}

fn identity(p: &Answer, c: &Answer, x: &Exchange, out: &mut Vec<Violation>) {
    // A Response's id is a handle the client sends back
    // (`previous_response_id`, `GET /v1/responses/{id}`): a gateway may hand
    // out its own (LiteLLM encodes the deployment into it) as long as it
    // resolves it, so only Chat Completions' ids must stay the provider's.
    let handle = Endpoint::of(&x.request.path) == Endpoint::Responses;
    if p.id.is_some() && p.id != c.id && !handle {
        out.push(violation("fidelity.identity", format!("id {:?} became {:?}", p.id, c.id)));
    }
    if p.created.is_some() && c.created.is_some() && p.created != c.created {
        out.push(violation("fidelity.identity", format!("created {:?} became {:?}", p.created, c.created)));
    }
    if p.system_fingerprint.is_some() && p.system_fingerprint != c.system_fingerprint {
        out.push(violation(
            "fidelity.identity",
            format!("system_fingerprint {:?} became {:?}", p.system_fingerprint, c.system_fingerprint),
        ));
    }
    let asked = x.request.json().and_then(|b| b.get("model").and_then(Value::as_str).map(str::to_string));
    if let (Some(pm), Some(cm)) = (&p.model, &c.model) {
        // The provider's name, the name the client asked for, or the
        // provider's name behind a routing prefix (`hosted_vllm/<name>`).
        let prefixed = cm.ends_with(pm.as_str()) && cm[..cm.len() - pm.len()].ends_with('/');
        if pm != cm && asked.as_deref() != Some(cm.as_str()) && !prefixed {
            out.push(violation(
                "fidelity.identity",
                format!("model {pm:?} became {cm:?} (the client asked for {asked:?})"),
            ));
        }
    }
}

/// Embeddings: each vector as the provider sent it, and its usage.
fn embeddings(x: &Exchange, out: &mut Vec<Violation>) {
    let Some(call) = x.model_calls().rev().find(|c| c.answer.status.is_some_and(|s| (200..300).contains(&s))) else {
        return;
    };
    let (Some(p), Some(c)) = (call.answer.json(), x.response.json()) else { return };
    let vectors = |v: &Value| -> Vec<Option<Vec<f32>>> {
        v.get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|d| d.get("embedding").and_then(vector))
            .collect()
    };
    if vectors(&p) != vectors(&c) {
        out.push(violation("fidelity.content", "the embedding vectors the client got differ from the provider's"));
    }
    for k in ["prompt_tokens", "total_tokens"] {
        let (pv, cv) = (p.pointer(&format!("/usage/{k}")), c.pointer(&format!("/usage/{k}")));
        if pv.is_some() && pv != cv {
            out.push(violation(
                "fidelity.usage",
                format!("embeddings usage.{k}: the provider counted {pv:?}, the client got {cv:?}"),
            ));
        }
    }
}

/// An embedding as float32 values: a JSON array of numbers, or OpenAI's
/// `encoding_format: base64` (little-endian float32). A gateway may ask the
/// provider for base64 and answer its client with numbers: the values are
/// the same float32s.
fn vector(v: &Value) -> Option<Vec<f32>> {
    use base64::Engine;
    match v {
        Value::Array(xs) => xs.iter().map(|x| x.as_f64().map(|f| f as f32)).collect(),
        Value::String(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            (bytes.len() % 4 == 0)
                .then(|| bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        _ => None,
    }
}
