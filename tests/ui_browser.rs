//! `/ui` and `/docs` in a real browser: Debian's Chromium, headless, driven
//! over WebDriver (Debian's ChromeDriver, spoken to with reqwest: the
//! protocol is a handful of JSON calls) against a gateway served under a
//! multi-segment root path. The pages' scripts must run and fetch from the
//! root path; the admin page must show the models, every deployment with
//! its state (an unavailable one with its reason), the cost-map and
//! client-cache panels, and, once the master key is typed in and "Load keys"
//! clicked, the keys; an anonymous visitor must see no `api_base` and no
//! secret; every link and asset must resolve under the root path. After a
//! few priced calls (to a small upstream of the test's own) and one failed
//! one, the last hour's charts must be drawn: per model on load, one group
//! of marks per series and the model in the legend; per key only after
//! "Load keys", never for an anonymous visitor. A screenshot of each page
//! is saved under `target/ui-screenshots/`.
//!
//! `.ci/run` installs Chromium and ChromeDriver; under `CI` a missing one is
//! a failure, elsewhere the test says it did not run. Every wait is bounded
//! (ChromeDriver's implicit wait and the harness's own timeouts).

use base64::Engine;
use postmortem::gateway::server::{serve_with, ServeLimits};
use postmortem::gateway::{Config, GatewayBuilder};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const MASTER_KEY: &str = "sk-ui-browser-master-0001";
const CREDENTIAL: &str = "sk-ui-browser-provider-credential";
const ROOT: &str = "/api/v1/gateway";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const BOUND: Duration = Duration::from_secs(60);

fn installed(program: &str) -> bool {
    std::process::Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// An OpenAI upstream answering every chat call with a priced completion.
async fn upstream() -> String {
    let answer = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200}});
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(move || async move { axum::Json(answer.clone()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

async fn served() -> (String, tokio::sync::oneshot::Sender<()>) {
    let up = upstream().await;
    let yaml = format!(
        "model_list:\n\
         \x20 - model_name: gpt-4o\n\
         \x20   litellm_params: {{model: openai/gpt-4o, api_base: 'http://127.0.0.1:9/secret-base', api_key: {CREDENTIAL}}}\n\
         \x20 - model_name: gpt-4o-mini\n\
         \x20   litellm_params: {{model: openai/gpt-4o-mini, api_base: '{up}', api_key: {CREDENTIAL}}}\n\
         \x20 - model_name: claude-vertex\n\
         \x20   litellm_params: {{model: vertex_ai/claude-sonnet-4-5}}\n\
         general_settings: {{master_key: {MASTER_KEY}, server_root_path: {ROOT}}}\n\
         router_settings: {{redis_url: 'redis://127.0.0.1:9/0'}}\n"
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

/// ChromeDriver on a port of its own choosing (`--port=0`), read from
/// what it prints.
async fn chromedriver() -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new("chromedriver")
        .arg("--port=0")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(BOUND, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(p) = line.split("started successfully on port ").nth(1) {
                return p.trim_end_matches('.').trim().to_string();
            }
        }
        panic!("chromedriver exited before it listened")
    })
    .await
    .expect("chromedriver listened within the bound");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://127.0.0.1:{port}"))
}

/// One WebDriver session.
struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    async fn start(driver: &str) -> Browser {
        let http = reqwest::Client::builder().timeout(BOUND).build().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,2600"]
        }}}});
        let v: Value = http.post(format!("{driver}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}"));
        let b = Browser { http, session: format!("{driver}/session/{id}") };
        // Element lookups wait (bounded) for what the scripts render.
        b.call("POST", "/timeouts", json!({"implicit": 15000, "pageLoad": 30000})).await;
        b
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.session);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if v["value"].get("error").is_some() {
            panic!("WebDriver {method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url})).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self.call("POST", "/element", json!({"using": "css selector", "value": css})).await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    /// How many elements match (waiting, bounded, for the first).
    async fn count(&self, css: &str) -> usize {
        let v = self.call("POST", "/elements", json!({"using": "css selector", "value": css})).await;
        v.as_array().map_or(0, Vec::len)
    }

    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.call("GET", &format!("/element/{e}/text"), Value::Null).await.as_str().unwrap_or_default().to_string()
    }

    async fn source(&self) -> String {
        self.call("GET", "/source", Value::Null).await.as_str().unwrap().to_string()
    }

    async fn screenshot(&self, name: &str) {
        let png = self.call("GET", "/screenshot", Value::Null).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &bytes).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{name}: not a PNG");
    }
}

/// Every `href` and `src` in the page, each of which must answer 200.
async fn check_links(page: &str, base: &str) {
    let http = reqwest::Client::builder().timeout(BOUND).build().unwrap();
    for attr in ["href=\"", "src=\""] {
        for link in page.split(attr).skip(1).filter_map(|s| s.split('"').next()) {
            assert!(link.starts_with(&format!("{ROOT}/")), "link {link} leaves the root path {ROOT}");
            let status = http.get(format!("{base}{link}")).send().await.unwrap().status();
            assert_eq!(status, 200, "{link} answered {status}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_and_the_docs_work_in_chromium() {
    if !installed("chromium") || !installed("chromedriver") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but Chromium or ChromeDriver is missing (.ci/run installs them)"
        );
        eprintln!("/ui browser test not run: install Debian's chromium and chromium-driver (.ci/run does)");
        return;
    }
    let (url, _stop) = served().await;
    // A key to find in the keys panel.
    let made: Value = reqwest::Client::new()
        .post(format!("{url}{ROOT}/key/generate"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"key_alias": "ui-browser-alias", "models": ["gpt-4o", "gpt-4o-mini"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let made_key = made["key"].as_str().expect("a key was made").to_string();
    let (_driver, driver_url) = chromedriver().await;
    let b = Browser::start(&driver_url).await;
    // Before any traffic the charts say there is none.
    b.open(&format!("{url}{ROOT}/ui")).await;
    let empty = b.text("#activity-models .empty").await;
    assert_eq!(empty, "No traffic in the last hour.");

    // Traffic for the charts: priced calls with the key and the master key,
    // and one to the deployment nobody answers (an error, no spend).
    let http = reqwest::Client::builder().timeout(BOUND).build().unwrap();
    for (key, model, want) in [
        (made_key.as_str(), "gpt-4o-mini", 200),
        (made_key.as_str(), "gpt-4o-mini", 200),
        (MASTER_KEY, "gpt-4o-mini", 200),
        (made_key.as_str(), "gpt-4o", 502),
    ] {
        let r = http
            .post(format!("{url}{ROOT}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{model}: {}", r.text().await.unwrap_or_default());
    }
    let activity: Value = http
        .get(format!("{url}{ROOT}/ui/activity"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let model_series = activity["models"].as_array().expect("model series").len();
    let key_series = activity["keys"].as_array().expect("key series").len();
    assert_eq!((model_series, key_series), (2, 2), "{activity}");

    b.open(&format!("{url}{ROOT}/ui")).await;

    // The script ran and fetched the root path's /health.
    let status = b.text("#status span").await;
    assert!(status.starts_with("healthy") || status.starts_with("degraded"), "{status}");
    let page = b.source().await;
    assert!(page.contains("<li>gpt-4o</li>"), "{page}");
    assert!(page.contains("<td>gpt-4o</td>") && page.contains("<td>claude-vertex</td>"), "{page}");
    assert!(page.contains("<td>available</td>"), "{page}");
    assert!(page.contains("unavailable: ") && page.contains("vertex_project"), "the unavailable one's reason: {page}");
    // Panels a person reads at a glance: words and dates, not raw JSON.
    let cost_map = b.text("#cost-map").await;
    assert!(cost_map.contains("State current") && cost_map.contains("Models priced"), "cost map: {cost_map}");
    assert!(!cost_map.contains("loaded_at") && !cost_map.contains('{'), "cost map is raw JSON: {cost_map}");
    let cache = b.text("#client-cache").await;
    // Two deployments were called (one of them never answers): two clients.
    assert!(cache.contains("Clients cached 2 of 200"), "client cache: {cache}");
    assert!(b.text("#stale-banner").await.is_empty(), "a current cost map shows the stale banner");
    // Redis is configured on a port where nothing listens: the page says the
    // instance counts on its own.
    let redis = b.text("#redis").await;
    assert!(redis.contains("Connected NO") && redis.contains("counted by this instance alone"), "redis: {redis}");
    assert!(status.starts_with("degraded"), "Redis is down, yet the status is {status}");
    assert!(!page.contains("open-banner"), "a master key is set, yet the page says the gateway is open");
    for secret in [MASTER_KEY, CREDENTIAL, "secret-base", made_key.as_str()] {
        assert!(!page.contains(secret), "{secret} is on the page of an anonymous visitor:\n{page}");
    }
    check_links(&page, &url).await;

    // The per-model charts, drawn on load: spend and latency, one group of
    // marks per series, a title and summary, the models in the legend.
    for chart in ["spend", "latency"] {
        let css = format!("#activity-models figure.{chart} svg g.series");
        assert_eq!(b.count(&css).await, model_series, "{css}");
        let legend = b.text(&format!("#activity-models figure.{chart} .legend")).await;
        assert!(legend.contains("gpt-4o-mini") && legend.contains("gpt-4o"), "{chart} legend: {legend}");
    }
    assert!(b.count("#activity-models figure.spend svg g.series rect").await >= 1, "no spend bar");
    assert!(b.count("#activity-models figure.latency svg g.series circle").await >= 2, "no latency points");
    assert_eq!(b.count("#activity-models figure.latency circle.has-errors").await, 1, "the 502's minute is not marked");
    let page = b.source().await;
    assert!(page.contains("<title id=") && page.contains("Spend per minute by model"), "no chart title: {page:.3000}");
    assert!(b.text("#activity-keys").await.contains("Enter the master key"), "key charts before the master key");
    assert!(!page.contains("ui-browser-alias"), "an anonymous visitor sees a key's alias:\n{page}");
    assert_eq!(b.count("#activity-keys svg").await, 0, "key charts for an anonymous visitor");
    b.screenshot("ui").await;

    // The keys panel, with the master key typed in.
    let input = b.find("#master-key").await;
    b.call("POST", &format!("/element/{input}/value"), json!({"text": MASTER_KEY})).await;
    let button = b.find("#load-keys").await;
    b.call("POST", &format!("/element/{button}/click"), json!({})).await;
    let keys = b.text("#keys tbody tr").await;
    assert!(keys.contains("ui-browser-alias") && keys.contains("gpt-4o"), "keys panel: {keys}");
    let masked = format!("{}...{}", &made_key[..3], &made_key[made_key.len() - 4..]);
    assert!(keys.contains(&masked), "the keys panel does not show the masked key {masked}: {keys}");
    assert!(!b.source().await.contains(&made_key), "the keys panel shows a whole key");
    // The per-key charts, once the master key is in: the alias in the legend.
    for chart in ["spend", "latency"] {
        let css = format!("#activity-keys figure.{chart} svg g.series");
        assert_eq!(b.count(&css).await, key_series, "{css}");
        let legend = b.text(&format!("#activity-keys figure.{chart} .legend")).await;
        assert!(legend.contains("ui-browser-alias") && legend.contains("master key"), "{chart} legend: {legend}");
    }
    assert!(!b.source().await.contains(&made_key), "the key charts show a whole key");
    b.screenshot("ui-keys").await;

    // The API docs render the OpenAPI document from the root path.
    b.open(&format!("{url}{ROOT}/docs")).await;
    let first = b.text("#docs .op").await;
    assert!(first.contains('/'), "the first operation: {first}");
    let page = b.source().await;
    assert!(page.contains("/v1/chat/completions"), "the docs list no route: {page:.2000}");
    check_links(&page, &url).await;
    b.screenshot("docs").await;

    b.call("DELETE", "", Value::Null).await;
}
