//! What a mock answers when no stub matches: realistic success bodies and
//! streams for each kind's routes, modelled on the recorded cassettes under
//! fixtures/cassettes (field order, ids, usage blocks, event sequences).
//! Bodies name the mock (`... mock \`name\``) so a scenario can tell which
//! deployment served a request.

mod anthropic;
mod converse;
mod gemini;
mod openai;

use serde_json::Value;

use super::ids::IdGen;
use super::journal::RecordedRequest;
use super::route::Route;
use super::stream::{eventstream_headers, sse_frames, sse_headers, Frame, StreamPlan, EVENTSTREAM_CONTENT_TYPE};
use super::wire::Buffered;
use super::{errors, eventstream, MockKind};

/// The assistant text of every default reply.
pub(crate) fn reply_text(kind: MockKind, name: &str) -> String {
    format!("Hello from the {kind} mock `{name}`.")
}

/// Rough token count (4 characters per token) of the prompt-bearing fields,
/// so usage numbers grow with the request like real ones do.
pub(crate) fn prompt_tokens(req: &RecordedRequest) -> u64 {
    fn chars(v: &Value) -> usize {
        match v {
            Value::String(s) => s.chars().count(),
            Value::Array(items) => items.iter().map(chars).sum(),
            Value::Object(map) => map.values().map(chars).sum(),
            _ => 0,
        }
    }
    let total: usize = ["messages", "system", "input", "prompt", "tools", "contents", "systemInstruction"]
        .iter()
        .filter_map(|k| req.json_field(k))
        .map(chars)
        .sum();
    (total as u64 / 4).max(1)
}

pub(crate) fn completion_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The text split into stream deltas (one per word, keeping the spaces).
pub(crate) fn deltas(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_string).collect()
}

/// Non-streaming default; the kind's 404 for routes it does not serve.
pub(crate) fn respond(kind: MockKind, name: &str, ids: &IdGen, req: &RecordedRequest) -> Buffered {
    let route = Route::classify(kind, req);
    let body = match &route {
        Route::Chat { deployment } => Some(openai::chat_completion(kind, name, ids, req, deployment.as_deref())),
        Route::Embeddings { deployment } => Some(openai::embeddings(kind, ids, req, deployment.as_deref())),
        Route::Responses => Some(openai::response(kind, name, ids, req)),
        Route::Completions { deployment } => Some(openai::text_completion(kind, name, ids, req, deployment.as_deref())),
        Route::Messages => Some(anthropic::message(kind, name, ids, req, &anthropic::model_of(&route, req))),
        Route::BedrockInvoke { .. } | Route::VertexPredict { .. } => {
            Some(anthropic::message(kind, name, ids, req, &anthropic::model_of(&route, req)))
        }
        Route::CountTokens | Route::VertexCountTokens => Some(anthropic::count_tokens(req)),
        Route::BedrockConverse { .. } => Some(converse::response(name, req)),
        // Without `alt=sse`, Google streams the responses as one JSON array.
        Route::GeminiGenerate { model, stream: true, sse: false } => {
            Some(Value::Array(gemini::stream_responses(name, ids, req, model)))
        }
        Route::GeminiGenerate { model, .. } => Some(gemini::response(name, ids, req, model)),
        // Google's answer to a token request the strict profile let through.
        Route::GoogleToken => Some(serde_json::json!({
            "access_token": format!("ya29.mock_{}", ids.hex(40)),
            "expires_in": 3599,
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "token_type": "Bearer",
        })),
        Route::Other => None,
    };
    let Some(body) = body else {
        return errors::not_found(kind, &req.method, &req.path, ids);
    };
    let b = Buffered::json(200, &body);
    with_provider_headers(kind, &route, b, ids, &body)
}

/// Headers real providers add to successful responses.
fn with_provider_headers(kind: MockKind, route: &Route, b: Buffered, ids: &IdGen, body: &Value) -> Buffered {
    match kind {
        MockKind::Openai | MockKind::Azure => b.with_header("x-request-id", format!("req_{}", ids.hex(32))),
        MockKind::Anthropic | MockKind::AzureAi => b.with_header("request-id", ids.anthropic_request_id()),
        // Converse reports usage in its body only: no token-count headers.
        MockKind::Bedrock if matches!(route, Route::BedrockConverse { .. }) => {
            b.with_header("x-amzn-requestid", ids.uuid())
        }
        MockKind::Bedrock => {
            let usage = body.get("usage");
            let input = usage.and_then(|u| u.get("input_tokens")).and_then(Value::as_u64).unwrap_or(0);
            let output = usage.and_then(|u| u.get("output_tokens")).and_then(Value::as_u64).unwrap_or(0);
            b.with_header("x-amzn-requestid", ids.uuid())
                .with_header("x-amzn-bedrock-input-token-count", input.to_string())
                .with_header("x-amzn-bedrock-output-token-count", output.to_string())
                .with_header("x-amzn-bedrock-invocation-latency", "0")
        }
        MockKind::HostedVllm | MockKind::VertexAi | MockKind::Gemini => b,
    }
}

/// The default stream for a streaming request on a known route.
pub(crate) fn stream(
    kind: MockKind,
    name: &str,
    ids: &IdGen,
    req: &RecordedRequest,
    route: &Route,
) -> Option<StreamPlan> {
    match route {
        Route::Chat { deployment } => Some(StreamPlan {
            status: 200,
            headers: sse_headers(),
            frames: sse_frames(&openai::chat_chunks(kind, name, ids, req, deployment.as_deref())),
            hold_before: None,
            cut_after: None,
        }),
        Route::Completions { deployment } => Some(StreamPlan {
            status: 200,
            headers: sse_headers(),
            frames: sse_frames(&openai::text_completion_chunks(kind, name, ids, req, deployment.as_deref())),
            hold_before: None,
            cut_after: None,
        }),
        Route::Responses => Some(StreamPlan {
            status: 200,
            headers: sse_headers(),
            frames: sse_frames(&openai::response_events(kind, name, ids, req)),
            hold_before: None,
            cut_after: None,
        }),
        Route::Messages | Route::VertexPredict { .. } => {
            let model = anthropic::model_of(route, req);
            Some(StreamPlan {
                status: 200,
                headers: sse_headers(),
                frames: sse_frames(&anthropic::sse_events(kind, name, ids, req, &model)),
                hold_before: None,
                cut_after: None,
            })
        }
        Route::GeminiGenerate { model, .. } => Some(StreamPlan {
            status: 200,
            headers: sse_headers(),
            frames: sse_frames(&gemini::sse_events(name, ids, req, model)),
            hold_before: None,
            cut_after: None,
        }),
        Route::BedrockInvoke { .. } => {
            let model = anthropic::model_of(route, req);
            let frames = anthropic::bedrock_events(name, ids, req, &model)
                .iter()
                .enumerate()
                .map(|(i, e)| Frame { bytes: eventstream::chunk_frame(e, i), delay_ms: 0 })
                .collect();
            let mut headers = eventstream_headers();
            headers.push(("x-amzn-requestid".into(), ids.uuid()));
            Some(StreamPlan { status: 200, headers, frames, hold_before: None, cut_after: None })
        }
        Route::BedrockConverse { .. } => {
            let frames = converse::stream_events(name, req)
                .iter()
                .enumerate()
                .map(|(i, (event_type, e))| Frame { bytes: eventstream::converse_frame(event_type, e, i), delay_ms: 0 })
                .collect();
            // No `x-amzn-bedrock-content-type`: that header describes the
            // model's own body, which only InvokeModel streams carry.
            let headers =
                vec![("content-type".into(), EVENTSTREAM_CONTENT_TYPE.into()), ("x-amzn-requestid".into(), ids.uuid())];
            Some(StreamPlan { status: 200, headers, frames, hold_before: None, cut_after: None })
        }
        _ => None,
    }
}

/// HTTP 200 whose JSON body stops half way through the default success
/// body of the route (or through a generic object on unknown routes).
pub(crate) fn malformed(kind: MockKind, name: &str, ids: &IdGen, req: &RecordedRequest) -> Buffered {
    let full = respond(kind, name, ids, req);
    let body =
        if full.status == 200 { full.body } else { br#"{"id":"mock","object":"unknown","data":[1,2,3]}"#.to_vec() };
    let cut = (body.len() / 2).max(1).min(body.len());
    Buffered {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body[..cut].to_vec(),
    }
}
