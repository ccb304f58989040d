//! The oracle on hostile answers: the schema checks and the answer readers
//! take any bytes a gateway or provider could send, and report, not panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postmortem::contracts::{schema, semantic};

fuzz_target!(|data: &[u8]| {
    let _ = semantic::openai_stream(data);
    let _ = semantic::anthropic_stream(data);
    let _ = semantic::responses_stream(data);
    let _ = semantic::converse_stream(data);
    let _ = semantic::bedrock_invoke_stream(data);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = semantic::openai_body(&v);
        let _ = semantic::anthropic_body(&v);
        let _ = semantic::responses_body(&v);
        let _ = semantic::converse_body(&v);
        let _ = schema::openai_chat_completion(&v);
        let _ = schema::openai_chat_chunk(&v);
        let _ = schema::openai_text_completion(&v, true);
        let _ = schema::openai_embeddings(&v);
        let _ = schema::anthropic_message(&v, false);
        let _ = schema::anthropic_event(&v);
        let _ = schema::openai_error(&v);
    }
});
