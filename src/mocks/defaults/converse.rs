//! Bedrock Converse bodies (bedrock): the `converse` answer and the
//! `converse-stream` events. Converse is Bedrock's own model-agnostic shape
//! (camelCase, no message id, no model name), modelled on the recorded
//! `/converse` and `/converse-stream` interactions under fixtures/cassettes.
//! The text and token counts are the InvokeModel default's, so a scenario
//! sees the same reply whichever API the gateway picks.

use serde_json::{json, Value};

use super::super::journal::RecordedRequest;
use super::super::MockKind;
use super::{completion_tokens, deltas, prompt_tokens, reply_text};

/// Bedrock reports its own latency; a constant keeps bodies stable (the
/// InvokeModel default reports 0 in `x-amzn-bedrock-invocation-latency` too).
const LATENCY_MS: u64 = 0;

fn usage(input: u64, output: u64) -> Value {
    json!({"inputTokens": input, "outputTokens": output, "totalTokens": input + output})
}

pub(super) fn response(name: &str, req: &RecordedRequest) -> Value {
    let text = reply_text(MockKind::Bedrock, name);
    let output = completion_tokens(&text);
    json!({
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": usage(prompt_tokens(req), output),
        "metrics": {"latencyMs": LATENCY_MS}
    })
}

/// `(event type, payload)` in ConverseStream's order. A text block has no
/// `contentBlockStart` (only tool-use blocks do), and usage arrives last, in
/// `metadata`, after `messageStop`.
pub(super) fn stream_events(name: &str, req: &RecordedRequest) -> Vec<(&'static str, Value)> {
    let text = reply_text(MockKind::Bedrock, name);
    let output = completion_tokens(&text);
    let mut out = vec![("messageStart", json!({"role": "assistant"}))];
    for piece in deltas(&text) {
        out.push(("contentBlockDelta", json!({"delta": {"text": piece}, "contentBlockIndex": 0})));
    }
    out.push(("contentBlockStop", json!({"contentBlockIndex": 0})));
    out.push(("messageStop", json!({"stopReason": "end_turn"})));
    out.push(("metadata", json!({"usage": usage(prompt_tokens(req), output), "metrics": {"latencyMs": LATENCY_MS}})));
    out
}
