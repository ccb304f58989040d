//! A scenario file: loaded, linted, or refused with a message; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = postmortem::scenario::Scenario::parse(text, "fuzz.yaml");
});
