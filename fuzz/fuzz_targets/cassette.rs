//! Recorded traffic in any format `import`/`replay` accept (ours, VCR, HAR,
//! WireMock): a cassette or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = postmortem::replay::parse_any(text, "fuzz.json");
});
