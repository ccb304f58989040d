//! Streaming contracts: SSE framing, each event's schema, termination and
//! order, no clean end after a broken upstream, and the `include_usage`
//! chunk (OpenAI's API reference, "stream_options"; Anthropic's "Streaming
//! Messages": message_start, content blocks, message_delta, message_stop).

use super::exchange::{Endpoint, Exchange, UpstreamCall};
use super::{schema, snippet, sse, violation, Violation};
use crate::mocks::AnswerEnd;
use serde_json::Value;

pub(super) fn check(x: &Exchange, endpoint: Endpoint, out: &mut Vec<Violation>) {
    let r = &x.response;
    if r.media_type().as_deref() != Some("text/event-stream") {
        out.push(violation(
            "schema.media-type",
            format!("a {} answer to a streaming request has content-type {:?}", r.status, r.header("content-type")),
        ));
        return;
    }
    let parsed = sse::events(&r.body);
    for line in parsed.stray_lines.iter().take(3) {
        out.push(violation("stream.framing", format!("a line that is not an SSE field: {line:?}")));
    }
    let broken_upstream = upstream_broke(x);
    let clean_end = match endpoint {
        Endpoint::Messages => anthropic(&parsed, broken_upstream.is_none(), out),
        Endpoint::ChatCompletions | Endpoint::Completions => openai(x, &parsed, broken_upstream.is_none(), out),
        Endpoint::Responses => responses(x, &parsed, broken_upstream.is_none(), out),
        _ => return,
    };
    if let (Some(why), true) = (broken_upstream, clean_end) {
        out.push(violation(
            "stream.no-false-completion",
            format!("the provider's stream {why}, yet the client's stream ended cleanly"),
        ));
    }
}

/// Why the provider's answer to this exchange did not complete, if it did not.
/// Looks at the last upstream call (the one the client's stream came from).
fn upstream_broke(x: &Exchange) -> Option<String> {
    let last = x.last_model_call()?;
    let a = &last.answer;
    match a.end {
        AnswerEnd::Cut => return Some("was cut mid-event".into()),
        AnswerEnd::Reset => return Some("was reset".into()),
        _ => {}
    }
    if a.status.is_some_and(|s| (200..300).contains(&s)) {
        let media = a.header("content-type").map(super::media_type).unwrap_or_default();
        let sse = last.request.query.as_deref().is_some_and(|q| q.split('&').any(|p| p == "alt=sse"));
        let wanted = match last.kind {
            crate::mocks::MockKind::Bedrock => "application/vnd.amazon.eventstream",
            // Gemini streams SSE only when asked (`alt=sse`); otherwise its
            // stream is one JSON array, and `:generateContent` answers whole.
            crate::mocks::MockKind::Gemini if !sse => "application/json",
            _ => "text/event-stream",
        };
        if media != wanted && !a.body.is_empty() {
            return Some(format!("was {media:?}, not an event stream ({})", snippet(&a.body)));
        }
    }
    reported_failure(last).or_else(|| unterminated(last))
}

/// A stream the provider ended without saying it was complete (no
/// `[DONE]`, no `message_stop`, no terminal Responses event), although the
/// transport closed cleanly: the answer is as broken as a cut one.
fn unterminated(call: &UpstreamCall) -> Option<String> {
    let a = &call.answer;
    if !a.status.is_some_and(|s| (200..300).contains(&s)) || a.end != AnswerEnd::Complete {
        return None;
    }
    let media = a.header("content-type").map(super::media_type).unwrap_or_default();
    if !matches!(media.as_str(), "text/event-stream" | "application/vnd.amazon.eventstream") {
        return None;
    }
    let answer = super::fidelity::provider_answer(call)?;
    (!answer.completed).then(|| "ended without its terminator ([DONE], message_stop or a terminal event)".to_string())
}

/// A failure the provider reported inside a stream it otherwise ended
/// properly: Anthropic's `error` event (an `overloaded_error` after
/// `message_start`), an OpenAI chunk that is an `error` object, the
/// Responses API's `error` or `response.failed`, a Bedrock exception frame.
/// The answer did not complete, whatever the transport says.
pub(super) fn reported_failure(call: &UpstreamCall) -> Option<String> {
    let a = &call.answer;
    if !a.status.is_some_and(|s| (200..300).contains(&s)) {
        return None;
    }
    let media = a.header("content-type").map(super::media_type).unwrap_or_default();
    if media == "application/vnd.amazon.eventstream" {
        let (frames, _) = sse::eventstream(&a.body);
        return frames
            .iter()
            .find(|f| f.header(":message-type") == Some("exception"))
            .map(|f| format!("reported {} mid-stream", f.header(":exception-type").unwrap_or("an exception")));
    }
    if media != "text/event-stream" {
        return None;
    }
    failure_event(&a.body).map(|data| format!("reported a failure mid-stream ({})", snippet(data.as_bytes())))
}

/// The data of the first event of an SSE body that reports a failure in its
/// API's terms: Anthropic's `error` event, an OpenAI chunk that is an
/// `error` object, the Responses API's `error` or `response.failed`. For
/// the provider's streams and the client's alike.
pub(super) fn failure_event(body: &[u8]) -> Option<String> {
    sse::events(body).events.into_iter().find_map(|ev| {
        let v = ev.json()?;
        let ty = v.get("type").and_then(Value::as_str);
        let openai_error = ty.is_none() && v.get("error").is_some_and(|e| e.is_object());
        let failed = ev.event.as_deref() == Some("error") || matches!(ty, Some("error" | "response.failed"));
        (failed || openai_error).then_some(ev.data)
    })
}

/// OpenAI chunks; returns whether the stream ended cleanly (`[DONE]`).
fn openai(x: &Exchange, parsed: &sse::Parsed, upstream_complete: bool, out: &mut Vec<Violation>) -> bool {
    let mut done_at = None;
    let mut chunks: Vec<(usize, Value)> = Vec::new();
    let mut error_event = false;
    for (i, e) in parsed.events.iter().enumerate() {
        if e.data.trim() == "[DONE]" {
            done_at.get_or_insert(i);
            continue;
        }
        if done_at.is_some() {
            out.push(violation(
                "stream.termination",
                format!("an event after data: [DONE]: {}", snippet(e.data.as_bytes())),
            ));
            continue;
        }
        match e.json() {
            Some(v) if v.get("error").is_some() => {
                error_event = true;
                let problems = schema::openai_error(&v);
                if !problems.is_empty() {
                    out.push(violation(
                        "stream.framing",
                        format!("error event {i}: {}: {}", problems.join("; "), snippet(e.data.as_bytes())),
                    ));
                }
            }
            Some(v) => {
                let problems = if Endpoint::of(&x.request.path) == Endpoint::Completions {
                    schema::openai_text_completion(&v, true)
                } else {
                    schema::openai_chat_chunk(&v)
                };
                if !problems.is_empty() {
                    out.push(violation(
                        "stream.framing",
                        format!("chunk {i}: {}: {}", problems.join("; "), snippet(e.data.as_bytes())),
                    ));
                }
                chunks.push((i, v));
            }
            None => {
                out.push(violation("stream.framing", format!("event {i} is not JSON: {}", snippet(e.data.as_bytes()))))
            }
        }
    }
    let clean = done_at.is_some() && !error_event && x.response.complete;
    if upstream_complete && x.response.complete && done_at.is_none() && !error_event && provider_completed(x) {
        out.push(violation(
            "stream.termination",
            "the provider completed its stream but the client's ended without data: [DONE]",
        ));
    }
    let ids: Vec<&str> = chunks.iter().filter_map(|(_, c)| c.get("id").and_then(Value::as_str)).collect();
    if let Some(first) = ids.first() {
        if let Some(other) = ids.iter().find(|id| *id != first) {
            out.push(violation("fidelity.identity", format!("chunks carry different ids: {first:?} and {other:?}")));
        }
    }
    let wants_usage = x
        .request
        .json()
        .and_then(|b| b.pointer("/stream_options/include_usage").and_then(Value::as_bool))
        .unwrap_or(false);
    if wants_usage && clean {
        include_usage(&chunks, out);
    }
    clean
}

/// The provider's own stream reached its terminator (or, translated, its
/// `message_stop`); judged from the last upstream answer.
fn provider_completed(x: &Exchange) -> bool {
    x.last_model_call().is_some_and(|c| c.answer.end == AnswerEnd::Complete && c.answer.status.is_some_and(|s| s < 300))
}

fn include_usage(chunks: &[(usize, Value)], out: &mut Vec<Violation>) {
    let with_usage: Vec<usize> = chunks
        .iter()
        .enumerate()
        .filter(|(_, (_, c))| c.get("usage").is_some_and(|u| !u.is_null()))
        .map(|(k, _)| k)
        .collect();
    match with_usage.as_slice() {
        [] => out.push(violation("stream.include-usage", "include_usage was set but no chunk carries usage")),
        [k] => {
            if *k + 1 != chunks.len() {
                out.push(violation(
                    "stream.include-usage",
                    format!("the usage chunk is chunk {} of {}, not the last before [DONE]", k + 1, chunks.len()),
                ));
            }
            let choices = chunks[*k].1.get("choices").and_then(Value::as_array).map(Vec::len);
            if choices != Some(0) {
                out.push(violation(
                    "stream.include-usage",
                    format!("the usage chunk's choices are not empty ({} choices)", choices.unwrap_or(0)),
                ));
            }
        }
        many => {
            out.push(violation("stream.include-usage", format!("{} chunks carry usage; exactly one must", many.len())))
        }
    }
}

/// A Responses API stream (OpenAI's "Streaming responses"): named events
/// whose data has a `type` (the SSE name, when given, is that type), opened
/// by `response.created` and closed by one terminal event
/// (`response.completed`, `.incomplete` or `.failed`) with nothing after it
/// but a `[DONE]` some relays add. Returns whether the stream ended cleanly.
fn responses(x: &Exchange, parsed: &sse::Parsed, upstream_complete: bool, out: &mut Vec<Violation>) -> bool {
    const TERMINAL: &[&str] = &["response.completed", "response.incomplete", "response.failed"];
    let mut terminal: Option<String> = None;
    let mut error_event = false;
    let mut seen = 0usize;
    // One stream is one Response: its lifecycle events all carry its id.
    let mut response_id: Option<String> = None;
    for (i, e) in parsed.events.iter().enumerate() {
        if e.data.trim() == "[DONE]" {
            continue;
        }
        let Some(v) = e.json() else {
            out.push(violation("stream.framing", format!("event {i} is not JSON: {}", snippet(e.data.as_bytes()))));
            continue;
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        if let Some(id) = v.pointer("/response/id").and_then(Value::as_str) {
            match &response_id {
                None => response_id = Some(id.to_string()),
                Some(first) if first != id => out.push(violation(
                    "stream.framing",
                    format!("event {i} ({kind}): the Response's id {id:?} is not the stream's {first:?}"),
                )),
                Some(_) => {}
            }
        }
        let problems = schema::openai_response_event(&v);
        if !problems.is_empty() {
            out.push(violation(
                "stream.framing",
                format!("event {i} ({kind}): {}: {}", problems.join("; "), snippet(e.data.as_bytes())),
            ));
        }
        if e.event.as_deref().is_some_and(|name| name != kind) {
            out.push(violation(
                "stream.framing",
                format!("event {i}: the SSE event name {:?} is not its type {kind:?}", e.event),
            ));
        }
        if let Some(t) = &terminal {
            out.push(violation("stream.termination", format!("event {i} ({kind}) after {t}")));
            continue;
        }
        // A failure may be reported at once (an `error` or `response.failed`
        // event); anything else opens with `response.created`.
        if seen == 0 && !matches!(kind.as_str(), "response.created" | "error" | "response.failed") {
            out.push(violation("stream.termination", format!("the stream opens with {kind}, not response.created")));
        }
        if kind == "response.created" && seen > 0 {
            out.push(violation("stream.termination", format!("event {i}: a second response.created")));
        }
        seen += 1;
        if kind == "error" {
            error_event = true;
        } else if TERMINAL.contains(&kind.as_str()) {
            terminal = Some(kind);
        }
    }
    let completed = terminal.as_deref().is_some_and(|t| t != "response.failed");
    if upstream_complete && x.response.complete && !completed && !error_event && provider_completed(x) {
        out.push(violation(
            "stream.termination",
            "the provider completed its stream but the client's ended without response.completed",
        ));
    }
    completed && !error_event && x.response.complete
}

/// Anthropic events; returns whether the stream ended cleanly (`message_stop`).
fn anthropic(parsed: &sse::Parsed, upstream_complete: bool, out: &mut Vec<Violation>) -> bool {
    let mut started = false;
    let mut stopped = false;
    let mut open: Vec<u64> = Vec::new();
    let mut closed: Vec<u64> = Vec::new();
    let mut error_event = false;
    for (i, e) in parsed.events.iter().enumerate() {
        let Some(v) = e.json() else {
            out.push(violation("stream.framing", format!("event {i} is not JSON: {}", snippet(e.data.as_bytes()))));
            continue;
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        let problems = schema::anthropic_event(&v);
        if !problems.is_empty() {
            out.push(violation(
                "stream.framing",
                format!("event {i} ({kind}): {}: {}", problems.join("; "), snippet(e.data.as_bytes())),
            ));
        }
        if e.event.as_deref() != Some(kind.as_str()) {
            out.push(violation(
                "stream.framing",
                format!("event {i}: the SSE event name {:?} is not its type {kind:?}", e.event),
            ));
        }
        if stopped {
            out.push(violation("stream.termination", format!("event {i} ({kind}) after message_stop")));
            continue;
        }
        let index = v.get("index").and_then(Value::as_u64);
        let order = match kind.as_str() {
            "ping" => None,
            "error" => {
                error_event = true;
                None
            }
            "message_start" if started => Some("a second message_start".to_string()),
            "message_start" => {
                started = true;
                None
            }
            _ if !started => Some(format!("{kind} before message_start")),
            "content_block_start" => match index {
                Some(n) if open.contains(&n) || closed.contains(&n) => Some(format!("content block {n} started twice")),
                Some(n) => {
                    open.push(n);
                    None
                }
                None => None,
            },
            "content_block_delta" => {
                index.filter(|n| !open.contains(n)).map(|n| format!("a delta for block {n}, which is not open"))
            }
            "content_block_stop" => match index {
                Some(n) if open.contains(&n) => {
                    open.retain(|o| *o != n);
                    closed.push(n);
                    None
                }
                Some(n) => Some(format!("block {n} stopped but not open")),
                None => None,
            },
            "message_delta" if !open.is_empty() => Some(format!("message_delta while block(s) {open:?} are open")),
            "message_stop" => {
                stopped = true;
                None
            }
            _ => None,
        };
        if let Some(problem) = order {
            out.push(violation("stream.termination", format!("event {i}: {problem}: {}", snippet(e.data.as_bytes()))));
        }
    }
    if upstream_complete && !stopped && !error_event {
        out.push(violation("stream.termination", "the client's stream ended without message_stop"));
    }
    stopped && !error_event
}
