//! Target mode: the incident scenarios run black-box against a separate
//! gateway process. Our own `postmortem serve` must be clean on every
//! incident; a target that never starts, exits early or answers garbage must
//! give a clear error naming the command and its last output, within a
//! bounded wait.

use postmortem::scenario::engine::IncidentVerdict;
use postmortem::scenario::runner::run_all;
use postmortem::scenario::{model, run_scenario, RunOptions, Scenario, Verdict};
use postmortem::target::{TargetKind, TargetSpec};
use std::path::PathBuf;
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn opts(command: &str, startup_timeout: Duration) -> RunOptions {
    let mut o = RunOptions::in_process(root());
    o.target = TargetSpec::Command { command: command.to_string(), startup_timeout, kind: TargetKind::Postmortem };
    o
}

/// Through the CLI's runner, as `postmortem run --target-cmd` does it: every
/// incident clean, and scenarios with equal configs share one process (the
/// command appends a line to a file each time it really starts one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_gateway_is_clean_on_every_incident_in_target_mode() {
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let cmd = format!(
        "echo started >> '{}'; exec {} serve --config {{config}} --port {{port}}",
        starts.display(),
        env!("CARGO_BIN_EXE_postmortem")
    );
    let o = opts(&cmd, Duration::from_secs(60));
    let files = model::discover(&[root().join("scenarios/incidents")]).unwrap();
    let run = run_all(&files, &o, false, 2, false).await;
    let mut clean_incidents = std::collections::BTreeSet::new();
    for out in &run.outcomes {
        match out.incident_verdict {
            Some(IncidentVerdict::Clean) => {
                clean_incidents.insert(out.incident.clone().unwrap());
            }
            Some(IncidentVerdict::NotApplicable) => {
                // Only scenarios whose steps need the manual clock may be N/A,
                // and only when another scenario covers the incident.
                assert!(
                    out.not_applicable.as_deref().unwrap_or("").contains("manual_clock"),
                    "{}: {:?}",
                    out.file,
                    out.not_applicable
                );
            }
            other => panic!("{}: {other:?}: {:?}\n{:?}", out.file, out.failure, out.target_output),
        }
    }
    let expected: std::collections::BTreeSet<String> = [
        "1-client-cache-eviction",
        "2-stale-wildcard",
        "3-server-root-path",
        "4-none-params",
        "5-beta-headers",
        "6-malformed-cost-map",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(clean_incidents, expected);

    // The three beta-header scenarios have one config: one process for them.
    let beta: Vec<_> = run.outcomes.iter().filter(|o| o.file.contains("/5-beta-headers")).collect();
    assert_eq!(beta.len(), 3);
    assert_eq!(beta.iter().filter(|o| o.reused_target).count(), 2, "{beta:#?}");
    let ran = run.outcomes.iter().filter(|o| o.not_applicable.is_none()).count();
    let reused = run.outcomes.iter().filter(|o| o.reused_target).count();
    let started = std::fs::read_to_string(&starts).unwrap().lines().count();
    assert_eq!(started, ran - reused, "one process per group of equal configs");
}

fn assert_passed(out: &postmortem::scenario::Outcome) {
    assert!(
        matches!(out.verdict, Verdict::Passed),
        "{}: {:?} {:?}\n{:#?}\n{:?}",
        out.file,
        out.verdict,
        out.failure,
        out.violations,
        out.target_output
    );
}

async fn setup_error(command: &str, timeout: Duration) -> String {
    let f = root().join("scenarios/incidents/3-server-root-path.yaml");
    let s = Scenario::load(&f).unwrap();
    let started = std::time::Instant::now();
    let out = run_scenario(&s, &f, &opts(command, timeout)).await;
    assert!(started.elapsed() < timeout + Duration::from_secs(10), "the wait was not bounded");
    assert!(matches!(out.verdict, Verdict::Failed), "{out:?}");
    let failure = out.failure.expect("a failure");
    assert_eq!(failure.step, "setup");
    failure.message
}

#[tokio::test]
async fn a_target_that_exits_early_is_reported_with_its_output() {
    let msg = setup_error("echo booting up; echo 'fatal: no such config' >&2; exit 3", Duration::from_secs(20)).await;
    assert!(msg.contains("exited"), "{msg}");
    assert!(msg.contains("echo booting up"), "names the command: {msg}");
    assert!(msg.contains("fatal: no such config"), "shows the output: {msg}");
}

#[tokio::test]
async fn a_target_that_never_answers_times_out_with_a_clear_error() {
    let msg = setup_error("echo waiting forever; sleep 30", Duration::from_secs(1)).await;
    assert!(msg.contains("did not answer HTTP"), "{msg}");
    assert!(msg.contains("sleep 30"), "{msg}");
    assert!(msg.contains("waiting forever"), "{msg}");
}

#[tokio::test]
async fn a_target_that_answers_garbage_is_an_error_not_a_hang() {
    let garbage = "python3 -c \"import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', {port})); s.listen(); print('garbage server up', flush=True)\nwhile True:\n c,_=s.accept(); c.recv(65536); c.sendall(b'\\x00\\x01 not http at all\\r\\n'); c.close()\"";
    let msg = setup_error(garbage, Duration::from_secs(2)).await;
    assert!(msg.contains("did not answer HTTP"), "{msg}");
    assert!(msg.contains("garbage server up"), "{msg}");
}

/// The conformance suite and the fault matrix against `postmortem serve` as a separate process:
/// every scenario passes and no contract is broken, as in-process, and
/// every fault is bounded as the fault matrix says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_gateway_keeps_every_contract_as_a_process() {
    let cmd = format!("exec {} serve --config {{config}} --port {{port}}", env!("CARGO_BIN_EXE_postmortem"));
    let mut o = opts(&cmd, Duration::from_secs(60));
    // As an anonymous target: only what any gateway must do.
    o.target = TargetSpec::Command { command: cmd, startup_timeout: Duration::from_secs(60), kind: TargetKind::Other };
    // The conformance suite and the fault matrix (#16: every bound met as a
    // process too).
    let files = model::discover(&[root().join("scenarios/conformance"), root().join("scenarios/faults")]).unwrap();
    assert!(files.len() >= 20, "{files:?}");
    let run = run_all(&files, &o, false, 2, false).await;
    for out in &run.outcomes {
        assert_passed(out);
        assert!(out.exchanges_checked > 0, "{}: no exchange was checked", out.file);
    }
}

/// A differential run through the command line: our gateway as a process
/// is the baseline, the in-process gateway the candidate. Nothing regresses,
/// so the exit status is 0, and the report says what was compared.
#[test]
fn a_differential_run_between_equal_gateways_reports_no_regression() {
    let bin = env!("CARGO_BIN_EXE_postmortem");
    let out = std::process::Command::new(bin)
        .current_dir(root())
        .args(["run", "--contracts-only", "--format", "json", "--baseline-target-cmd"])
        .arg(format!("exec {bin} serve --config {{config}} --port {{port}}"))
        .output()
        .expect("postmortem runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{}", text, String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&text).expect("a JSON report");
    assert_eq!(report["differential"]["regressions"], serde_json::json!([]), "{text}");
    assert!(report["baseline"]["total"].as_u64().unwrap_or(0) >= 6, "{text}");
}

/// A harness stopped by SIGTERM (a CI timeout, Ctrl-C) stops the target
/// gateways it started: none outlives it. The target here never answers;
/// its command writes its pid to a file first, so the test knows which
/// process must be gone. Every wait is bounded.
#[test]
fn an_interrupted_run_leaves_no_target_running() {
    use std::process::{Command, Stdio};
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("target.pid");
    let cmd = format!("echo $$ > '{}'; exec sleep 600 # {{config}} {{port}}", pid_file.display());
    let mut harness = Command::new(env!("CARGO_BIN_EXE_postmortem"))
        .args(["run", "--root"])
        .arg(root())
        .args(["--target-cmd", &cmd, "--target-startup-timeout", "120"])
        .arg(root().join("scenarios/conformance/security.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let target_pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
            break pid;
        }
        assert!(Instant::now() < deadline, "the target never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    let alive = |pid: u32| Command::new("kill").args(["-0", &pid.to_string()]).status().is_ok_and(|s| s.success());
    assert!(alive(target_pid));
    Command::new("kill").args(["-TERM", &harness.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = harness.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the harness did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143), "{status:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(target_pid) {
        assert!(Instant::now() < deadline, "target pid {target_pid} outlived the interrupted harness");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A target whose graceful shutdown never ends (it ignores SIGTERM, as a
/// server waiting on a stalled connection does) is killed once the grace
/// period is over: no target outlives its scenario.
#[tokio::test]
async fn a_target_that_ignores_sigterm_is_killed_after_the_grace_period() {
    // Serves HTTP on {port} so that the harness sees it start, and ignores
    // SIGTERM; a grandchild (as a gateway's workers are), so killing the
    // shell the harness started does not stop it.
    let cmd = "python3 -c \"import signal, http.server; signal.signal(signal.SIGTERM, signal.SIG_IGN); http.server.HTTPServer(('127.0.0.1', {port}), http.server.BaseHTTPRequestHandler).serve_forever()\" & wait";
    let env = std::collections::BTreeMap::new();
    let gut = postmortem::target::GatewayUnderTest::start_command(
        None,
        cmd,
        "{}",
        &env,
        "",
        TargetKind::Other,
        Duration::from_secs(20),
    )
    .await
    .expect("the stubborn target starts");
    let pid = gut.pid().expect("a process");
    let alive = || {
        std::process::Command::new("kill")
            .args(["-0", "--", &format!("-{pid}")])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(alive());
    drop(gut);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive() {
        assert!(std::time::Instant::now() < deadline, "the target's group still runs 10 s after it was dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The fleet scenarios against `postmortem serve` processes: N instances
/// of the command on one config (and its `postmortem.db`, or the scenario's
/// Postgres), restarted with SIGTERM, killed with SIGKILL, on a database
/// the harness stops and starts. Every scenario passes as in-process; only
/// the manual-clock steps are skipped, and the report says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_scenarios_pass_against_gateway_processes() {
    let cmd = format!("exec {} serve --config {{config}} --port {{port}}", env!("CARGO_BIN_EXE_postmortem"));
    let o = opts(&cmd, Duration::from_secs(60));
    let files = model::discover(&[root().join("scenarios/fleet")]).unwrap();
    assert!(files.len() >= 3, "{files:?}");
    let run = run_all(&files, &o, false, 1, false).await;
    for out in &run.outcomes {
        assert_passed(out);
        assert!(!out.reused_target, "{}: a fleet never shares its processes", out.file);
        assert!(out.skipped_steps.iter().all(|s| s.contains("manual_clock")), "{}: {:?}", out.file, out.skipped_steps);
    }
}
