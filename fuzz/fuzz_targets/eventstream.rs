//! AWS event-stream frames (Bedrock streaming): decoded incrementally by the
//! gateway and whole by the harness, errors and not panics on bad frames.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = postmortem::gateway::providers::bedrock::EventStreamDecoder::new();
    for chunk in data.chunks(7) {
        if decoder.feed(chunk).is_err() {
            break;
        }
    }
    let _ = postmortem::contracts::sse::eventstream(data);
});
