//! `postmortem bench` as users run it: against our gateway (the default
//! target) it loads every arm without errors and reports each; bad options
//! and a target that does not start get a clear error, never a panic. No
//! timing is asserted: the figures are for BENCHMARKS.md, not for tests.

use std::process::Command;

fn bench(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    bench_in(dir.path(), args)
}

/// `postmortem bench ARGS` with its baselines kept in `dir`.
fn bench_in(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_postmortem"))
        .arg("bench")
        .args(args)
        .arg("--baseline-dir")
        .arg(dir)
        .output()
        .expect("postmortem runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--virtual-key --redis`: the same gateway twice in one run, with and
/// without a Redis the bench starts, each request checked and charged on a
/// virtual key (a key the config does not know would be a 401, an error).
#[test]
fn with_redis_the_gateway_is_loaded_twice_on_a_virtual_key() {
    let (code, out, err) = bench(&[
        "--duration",
        "1",
        "--rounds",
        "1",
        "--concurrency",
        "2",
        "--mode",
        "plain",
        "--no-floor",
        "--virtual-key",
        "--redis",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    let summaries = v["report"]["summaries"].as_array().expect("summaries");
    for arm in ["target", "target+redis"] {
        let s = summaries.iter().find(|s| s["arm"] == arm).unwrap_or_else(|| panic!("no {arm} in {summaries:#?}"));
        assert!(s["per_second"].as_f64().unwrap() > 0.0, "{s}");
        assert_eq!(s["errors"], 0, "{s}");
    }
    let samples = v["report"]["samples"].as_array().expect("samples");
    assert!(samples.iter().all(|s| s["non_2xx"] == 0), "every request answered 2xx: {samples:#?}");
    // The Redis server's CPU is the +redis arm's cost, measured, and never
    // another arm's.
    for s in samples {
        let redis_cpu = s["redis_cpu_us_per_request"].as_f64();
        match s["arm"].as_str() {
            Some("target+redis") => assert!(redis_cpu.is_some_and(|c| c > 0.0), "{s}"),
            _ => assert!(redis_cpu.is_none(), "{s}"),
        }
    }
}

#[test]
fn our_gateway_is_loaded_plain_and_streamed_beside_direct_and_reported_as_json() {
    let (code, out, err) = bench(&["--duration", "1", "--rounds", "1", "--concurrency", "2", "--format", "json"]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    let summaries = v["report"]["summaries"].as_array().expect("summaries");
    for mode in ["plain", "stream"] {
        for arm in ["direct", "target"] {
            let s = summaries
                .iter()
                .find(|s| s["mode"] == mode && s["arm"] == arm)
                .unwrap_or_else(|| panic!("no {mode} {arm} in {summaries:#?}"));
            assert!(s["per_second"].as_f64().unwrap() > 0.0, "{s}");
            assert_eq!(s["errors"], 0, "{s}");
        }
        let stream = summaries.iter().find(|s| s["mode"] == "stream" && s["arm"] == "target").unwrap();
        assert!(stream["first_event_p50_us"].as_f64().is_some() && stream["gap_p50_us"].as_f64().is_some());
    }
    assert!(v["report"]["targets"][0]["idle_rss_kib"].as_u64().unwrap() > 0);
}

#[test]
fn bad_options_and_a_target_that_never_starts_are_clear_errors() {
    let (code, _, err) = bench(&["--target-url", "http://10.1.2.3:4000", "--upstream-port", "9"]);
    assert_eq!(code, 2);
    assert!(err.contains("only talks to 127.0.0.1"), "{err}");
    let (code, _, err) = bench(&["--duration", "0.1"]);
    assert_eq!(code, 2);
    assert!(err.contains("--duration"), "{err}");
    let (code, _, err) = bench(&["--baseline", "../etc/passwd"]);
    assert_eq!(code, 2);
    assert!(err.contains("baseline name"), "{err}");
    let (code, _, err) = bench(&["--baseline", "never-saved"]);
    assert_eq!(code, 2);
    assert!(err.contains("never-saved"), "{err}");
    let (code, _, err) =
        bench(&["--target-cmd", "exit 3", "--startup-timeout", "5", "--duration", "1", "--rounds", "1"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error:") && !err.contains("panicked"), "{err}");
}

#[test]
fn a_saved_baseline_is_compared_with_the_next_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |extra: &[&str]| {
        let mut args = vec!["--duration", "1", "--rounds", "1", "--concurrency", "1", "--mode", "plain", "--no-floor"];
        args.extend_from_slice(extra);
        bench_in(dir.path(), &args)
    };
    let (code, _, err) = run(&["--save-baseline", "first"]);
    assert_eq!(code, 0, "{err}");
    assert!(dir.path().join("first.json").is_file());
    // The verdict depends on the machine's noise; what is checked is that
    // the comparison ran and named each figure it judged.
    let (_, out, err) = run(&["--baseline", "first"]);
    assert!(out.contains("against baseline `first`") && out.contains("throughput ×direct"), "{out}\n{err}");
}
