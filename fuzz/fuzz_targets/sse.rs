//! Server-sent events split at any byte: the gateway's incremental parser
//! and the harness's own reader must agree on every complete event.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else { return };
    let mut parser = postmortem::gateway::sse::SseParser::new();
    let at = usize::from(split).min(body.len());
    let mut events = Vec::new();
    for part in [&body[..at], &body[at..]] {
        match parser.feed(part) {
            Ok(evs) => events.extend(evs),
            Err(_) => return,
        }
    }
    // The harness's reader sees the same complete events (it reads the
    // whole body at once).
    let whole = postmortem::contracts::sse::events(body);
    assert!(whole.events.len() >= events.len(), "the harness lost events the gateway read");
});
