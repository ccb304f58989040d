//! `/ui` in a real browser: Debian's Chromium, headless, loads the page of a
//! served gateway under a root path, runs its script (which fetches
//! `/health` from the root path) and the rendered DOM is read back
//! (`--dump-dom`, with a virtual-time budget so the fetches complete). The
//! page must show the models, every deployment with its state (an
//! unavailable one with its reason), no `api_base` and no secret to an
//! anonymous visitor, and every link must stay under the root path.
//!
//! Chromium is installed by `.ci/run`; under `CI` a missing browser is a
//! failure, elsewhere the test says it did not run.

use postmortem::gateway::server::{serve_with, ServeLimits};
use postmortem::gateway::{Config, GatewayBuilder};
use std::time::Duration;

const MASTER_KEY: &str = "sk-ui-browser-master-0001";
const CREDENTIAL: &str = "sk-ui-browser-provider-credential";

fn chromium() -> Option<String> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()));
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "CI is set but no Chromium for the /ui test (.ci/run installs it)");
        eprintln!("/ui browser test not run: install Debian's chromium (.ci/run does)");
    }
    found.map(str::to_string)
}

async fn served() -> (String, tokio::sync::oneshot::Sender<()>) {
    let yaml = format!(
        "model_list:\n\
         \x20 - model_name: gpt-4o\n\
         \x20   litellm_params: {{model: openai/gpt-4o, api_base: 'http://127.0.0.1:9/secret-base', api_key: {CREDENTIAL}}}\n\
         \x20 - model_name: claude-vertex\n\
         \x20   litellm_params: {{model: vertex_ai/claude-sonnet-4-5}}\n\
         general_settings: {{master_key: {MASTER_KEY}, server_root_path: /llmproxy}}\n"
    );
    let cfg = Config::parse(&yaml, "ui.yaml").expect("config parses").config;
    let gw = GatewayBuilder::new(cfg).build().await.expect("gateway builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_with(
        gw,
        listener,
        async {
            let _ = rx.await;
        },
        ServeLimits::default(),
    ));
    (url, tx)
}

/// The DOM after the page's scripts ran, within a bound.
async fn rendered(browser: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("Chromium rendered the page within 90 s")
        .expect("Chromium started");
    assert!(out.status.success(), "Chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("the DOM is UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_renders_the_gateway_in_chromium() {
    let Some(browser) = chromium() else { return };
    let (url, _stop) = served().await;
    let dom = rendered(&browser, &format!("{url}/llmproxy/ui")).await;

    // The script ran and fetched /llmproxy/health: the placeholder is gone
    // and the status, the models and both deployments are on the page.
    assert!(!dom.contains("loading…"), "the page's script did not replace the status:\n{dom}");
    assert!(dom.contains("<span class=\"ok\">healthy") || dom.contains("<span class=\"ok\">degraded"), "{dom}");
    assert!(dom.contains("<li>gpt-4o</li>"), "{dom}");
    assert!(dom.contains("<td>gpt-4o</td>") && dom.contains("<td>claude-vertex</td>"), "{dom}");
    assert!(dom.contains("<td>available</td>"), "{dom}");
    assert!(
        dom.contains("unavailable: ") && dom.contains("vertex_project"),
        "the unavailable deployment's reason: {dom}"
    );
    // A master key is set: no open-gateway banner.
    assert!(!dom.contains("open-banner"), "{dom}");
    // An anonymous visitor sees neither where deployments point nor a secret.
    for secret in [MASTER_KEY, CREDENTIAL, "secret-base"] {
        assert!(!dom.contains(secret), "{secret} is on the page:\n{dom}");
    }
    // Every link the page has stays under the root path.
    for link in dom.split("href=\"").skip(1).filter_map(|s| s.split('"').next()) {
        assert!(link.starts_with("/llmproxy/"), "link {link} leaves the root path");
    }
}
