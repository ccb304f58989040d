//! OpenAI ⇄ Anthropic translation on any JSON: requests both ways, answers
//! both ways, and stream events/chunks in any order: a result or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postmortem::gateway::providers::{anthropic, messages_bridge};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    let _ = anthropic::chat_to_messages(&v, "claude-x");
    let _ = anthropic::messages_to_chat(&v, "m");
    let _ = messages_bridge::chat_to_messages_response(&v, "m");
    if let Some(obj) = v.as_object() {
        let _ = messages_bridge::messages_to_chat_request(obj, "gpt-4o");
    }
    // A sequence of events: each array item is one event (`type` names it).
    if let Some(items) = v.as_array() {
        let mut tr = anthropic::StreamTranslator::new("m", "id");
        let mut chunks = messages_bridge::ChunkTranslator::new("m");
        for item in items {
            let ty = item.get("type").and_then(Value::as_str).unwrap_or("");
            if tr.on_event(ty, item).is_err() {
                break;
            }
            let _ = chunks.on_chunk(item);
        }
        let _ = chunks.finish();
    }
});
