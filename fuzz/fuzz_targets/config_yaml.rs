//! A LiteLLM `config.yaml` from anywhere: parsing and resolving it must end
//! in a config or an error naming the problem, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(loaded) = postmortem::gateway::Config::parse(text, "fuzz.yaml") {
        let mut config = loaded.config;
        let _ = config.resolve_env("fuzz.yaml");
        let _ = config.reliability();
        let _ = postmortem::gateway::reliability::FallbackPolicy::from_config(&config);
        let _ = postmortem::gateway::routing::ModelRouter::from_config(&config);
    }
});
