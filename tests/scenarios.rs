//! Every scenario file is its own named test (`cargo test --test scenarios -- vllm`
//! filters), every incident scenario also gets a `prove::` test (it must fail
//! with its bug put back), and scenarios with `snapshot: true` compare their
//! normalized transcript with insta snapshots under `snapshots/`.

use libtest_mimic::{Arguments, Failed, Trial};
use postmortem::scenario::prove::prove;
use postmortem::scenario::{model, run_scenario, RunOptions, Scenario};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

fn opts() -> RunOptions {
    RunOptions::in_process(root())
}

fn test_name(file: &Path) -> String {
    let rel = file.strip_prefix(root().join("scenarios")).unwrap_or(file);
    rel.with_extension("").display().to_string().replace('/', "::")
}

fn run_one(file: PathBuf) -> Result<(), Failed> {
    let scenario = Scenario::load(&file).map_err(|e| Failed::from(e.to_string()))?;
    let outcome = runtime().block_on(run_scenario(&scenario, &file, &opts()));
    if let Some(f) = &outcome.failure {
        return Err(format!("{}: {}\n{}", file.display(), f.step, f.message).into());
    }
    // A contract broken on any exchange fails the scenario as it does in
    // `postmortem run`, whatever its own expectations said.
    if !outcome.violations.is_empty() || !outcome.passed() {
        let broken: Vec<String> =
            outcome.violations.iter().map(|v| format!("{} at {}: {}", v.contract, v.step, v.detail)).collect();
        return Err(format!("{}: {:?}\n{}", file.display(), outcome.verdict, broken.join("\n")).into());
    }
    if scenario.snapshot {
        let transcript = serde_json::Value::Array(outcome.transcript.clone());
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(root().join("snapshots"));
        settings.set_prepend_module_to_snapshot(false);
        settings.set_sort_maps(true);
        settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[port]");
        let name = test_name(&file).replace("::", "__");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            settings.bind(|| {
                insta::assert_yaml_snapshot!(name, transcript);
            })
        }));
        if result.is_err() {
            return Err(format!("{}: snapshot differs; review with `cargo insta review`", file.display()).into());
        }
    }
    Ok(())
}

fn prove_one(file: PathBuf) -> Result<(), Failed> {
    let scenario = Scenario::load(&file).map_err(|e| Failed::from(e.to_string()))?;
    let (proofs, _) =
        runtime().block_on(prove(&scenario, &file, &opts())).ok_or_else(|| Failed::from("not an incident scenario"))?;
    let problems: Vec<String> = proofs
        .iter()
        .filter_map(|p| {
            p.problem.as_ref().map(|why| format!("incident {} ({}) not proven: {why}", p.incident, p.variant))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}", file.display(), problems.join("\n")).into())
    }
}

fn main() {
    let args = Arguments::from_args();
    let files = model::discover(&[root().join("scenarios")]).expect("scenarios/ is readable");
    let mut trials = Vec::new();
    for f in files {
        let name = test_name(&f);
        let is_incident = Scenario::load(&f).map(|s| s.incident.is_some()).unwrap_or(false);
        let file = f.clone();
        trials.push(Trial::test(name.clone(), move || run_one(file)));
        if is_incident {
            let file = f.clone();
            trials.push(Trial::test(format!("prove::{name}"), move || prove_one(file)));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
