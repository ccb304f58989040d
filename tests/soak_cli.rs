//! `postmortem soak`, the short version CI runs: a few thousand requests
//! against our gateway with every feature on (streams and plain requests,
//! each upstream fault, client-cache churn, key churn, RSS sampling) must
//! pass every check; the same soak against an upstream that ignores its
//! fault markers must fail (the checks can fail); bad options are clear
//! errors. The test itself never sleeps; the binary paces its own key
//! churn and RSS sampling, and every wait in it is bounded.

use std::process::Command;

fn soak(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_postmortem")).arg("soak").args(args).output().expect("postmortem runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SHORT: &[&str] =
    &["--requests", "3000", "--concurrency", "8", "--time-limit", "300", "--request-timeout", "20", "--format", "json"];

#[test]
fn a_short_soak_with_every_fault_and_churn_passes_every_check() {
    let (code, out, err) = soak(SHORT);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(v["failures"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["unexpected"], 0);
    assert_eq!(v["finished"], true);
    let kinds = v["by_kind"].as_array().expect("by_kind");
    for fault in ["none", "500", "503", "429", "reset", "cut", "malformed"] {
        for stream in [false, true] {
            let k = kinds
                .iter()
                .find(|k| k["fault"] == fault && k["stream"] == stream)
                .unwrap_or_else(|| panic!("no {fault} stream={stream} requests in {kinds:#?}"));
            assert!(k["sent"].as_u64().unwrap() > 0 && k["sent"] == k["as_expected"], "{k}");
        }
    }
    let sent: u64 = kinds.iter().map(|k| k["sent"].as_u64().unwrap()).sum();
    assert_eq!(sent, 3000);
    // Key churn ran whole cycles: live keys worked, deleted ones got 401.
    let churn = &v["key_churn"];
    assert!(churn["keys_deleted"].as_u64().unwrap() >= 1, "{churn}");
    assert_eq!(churn["live_ok"], churn["live_requests"]);
    assert_eq!(churn["deleted_401"], churn["deleted_requests"]);
    // The client cache evicted and rebuilt clients, none in use.
    let cache = &v["client_cache"];
    assert!(cache["evictions_capacity"].as_u64().unwrap() > 0, "{cache}");
    // Each request reached the upstream once: no retry hid a fault.
    assert_eq!(v["upstream_calls"], v["upstream_calls_expected"]);
    // RSS was read from /proc (the run lasts seconds: at least one sample).
    assert!(v["idle_rss_kib"].as_u64().unwrap() > 0);
    assert!(!v["rss"].as_array().unwrap().is_empty());
}

#[test]
fn faults_that_reach_the_client_as_successes_fail_the_soak() {
    let mut args = SHORT.to_vec();
    args[1] = "400";
    args.push("--self-test-unfaulted-upstream");
    let (code, out, err) = soak(&args);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    assert!(v["unexpected"].as_u64().unwrap() > 0, "{v:#}");
    assert!(v["unexpected_by_kind"]["status"].as_u64().unwrap() > 0, "{v:#}");
    let failures = v["failures"].to_string();
    assert!(failures.contains("unexpected error"), "{failures}");
}

#[test]
fn bad_options_are_clear_errors_and_the_config_can_be_printed() {
    for (args, says) in [
        (&["--fault-fraction", "1.5"][..], "--fault-fraction"),
        (&["--requests", "0"][..], "--requests"),
        (&["--request-timeout", "0"][..], "--request-timeout"),
        (
            &["--target-url", "http://10.1.2.3:4000", "--upstream-port", "9", "--key", "k"][..],
            "only talks to 127.0.0.1",
        ),
        (&["--target-url", "http://127.0.0.1:4000"][..], "--upstream-port"),
    ] {
        let (code, _, err) = soak(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.starts_with("error:") && err.contains(says) && !err.contains("panicked"), "{args:?}: {err}");
    }
    let (code, out, _) = soak(&["--print-config", "--upstream-port", "4321", "--deployments", "2"]);
    assert_eq!(code, 0);
    assert!(out.contains("model_name: soak-1") && out.contains("http://127.0.0.1:4321/d1/v1"), "{out}");
    assert!(!out.contains("soak-2") && out.contains("num_retries: 0"), "{out}");
}
