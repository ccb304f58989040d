//! Gemini's answers (Google AI Studio): the `GenerateContentResponse` of
//! `:generateContent`, and the same cut into one response per word for
//! `:streamGenerateContent` (SSE events with `alt=sse`, else one JSON array).
//! As the live API streams: every chunk carries the candidate's new text and
//! a `usageMetadata` with the prompt count; only the last carries
//! `finishReason` and the whole usage. There is no terminator event.

use serde_json::{json, Value};

use super::super::ids::IdGen;
use super::super::journal::RecordedRequest;
use super::super::stub::StubEvent;
use super::super::MockKind;
use super::{completion_tokens, deltas, prompt_tokens, reply_text};

/// How many candidates the request asked for (`generationConfig.candidateCount`).
fn candidates(req: &RecordedRequest) -> u64 {
    let config = req.json_field("generationConfig").or_else(|| req.json_field("generation_config"));
    let n = config.and_then(|c| c.get("candidateCount").or_else(|| c.get("candidate_count")));
    n.and_then(Value::as_u64).unwrap_or(1).clamp(1, 8)
}

fn usage(prompt: u64, output: Option<u64>) -> Value {
    let mut u = json!({"promptTokenCount": prompt});
    if let Some(out) = output {
        u["candidatesTokenCount"] = json!(out);
    }
    u["totalTokenCount"] = json!(prompt + output.unwrap_or(0));
    u["promptTokensDetails"] = json!([{"modality": "TEXT", "tokenCount": prompt}]);
    u
}

fn candidate(text: &str, index: u64, finish: bool) -> Value {
    let mut c = json!({"content": {"parts": [{"text": text}], "role": "model"}});
    if finish {
        c["finishReason"] = json!("STOP");
    }
    c["index"] = json!(index);
    c
}

pub(super) fn response(name: &str, ids: &IdGen, req: &RecordedRequest, model: &str) -> Value {
    let text = reply_text(MockKind::Gemini, name);
    let n = candidates(req);
    json!({
        "candidates": (0..n).map(|i| candidate(&text, i, true)).collect::<Vec<_>>(),
        "usageMetadata": usage(prompt_tokens(req), Some(completion_tokens(&text) * n)),
        "modelVersion": model,
        "responseId": ids.token(22),
    })
}

/// The stream's responses, in order.
pub(super) fn stream_responses(name: &str, ids: &IdGen, req: &RecordedRequest, model: &str) -> Vec<Value> {
    let text = reply_text(MockKind::Gemini, name);
    let n = candidates(req);
    let prompt = prompt_tokens(req);
    let id = ids.token(22);
    let pieces = deltas(&text);
    let last = pieces.len().saturating_sub(1);
    pieces
        .iter()
        .enumerate()
        .map(|(k, piece)| {
            let done = k == last;
            let output = done.then(|| completion_tokens(&text) * n);
            json!({
                "candidates": (0..n).map(|i| candidate(piece, i, done)).collect::<Vec<_>>(),
                "usageMetadata": usage(prompt, output),
                "modelVersion": model,
                "responseId": id,
            })
        })
        .collect()
}

/// The stream as SSE events (`alt=sse`): one `data:` line each.
pub(super) fn sse_events(name: &str, ids: &IdGen, req: &RecordedRequest, model: &str) -> Vec<StubEvent> {
    stream_responses(name, ids, req, model).iter().map(|r| StubEvent::data(r.to_string())).collect()
}
