//! Running one scenario from your own program and reading its outcome:
//! the verdict, the failing step if any, and every contract it broke.
//!
//! Run: `cargo run --example run_scenario -- scenarios/conformance/openai-family.yaml`
//! (from the project root; the default is that file). Against another
//! gateway, set `RunOptions::target` to a `target::TargetSpec::Command`.

use postmortem::scenario::{run_scenario, RunOptions, Scenario};
use std::path::PathBuf;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("scenarios/conformance/openai-family.yaml"));
    let scenario = Scenario::load(&file)?;
    let opts = RunOptions::in_process(std::env::current_dir()?);
    let outcome = run_scenario(&scenario, &file, &opts).await;
    println!("{}: {:?} ({} exchanges checked)", outcome.name, outcome.verdict, outcome.exchanges_checked);
    if let Some(f) = &outcome.failure {
        println!("  failed at {}: {}", f.step, f.message);
    }
    for v in &outcome.violations {
        println!("  contract {} broken at {}: {}", v.contract, v.step, v.detail);
    }
    std::process::exit(if outcome.passed() { 0 } else { 1 })
}
