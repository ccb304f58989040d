//! Virtual keys' rpm/tpm limits shared through a real Redis server (started
//! per test, `support/services.rs`): three in-process gateways on one Redis
//! let exactly the key's limit through in total, the window turns with the
//! gateways' manual clock, and with Redis gone each instance counts on its
//! own (`/health` degraded) until Redis is back. The password is never shown.

use postmortem::gateway::clock::ManualClock;
use postmortem::gateway::{Config, Gateway, GatewayBuilder};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[path = "support/services.rs"]
mod services;

const MASTER: &str = "sk-test-master-redis-0001";
const KEY: &str = "sk-test-shared-limits-0001";

async fn upstream() -> MockServer {
    let up = MockServer::start().await;
    let answer = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}});
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&up)
        .await;
    up
}

fn config(up: &MockServer, redis: &str, limits: &str) -> String {
    format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: k}}\n\
         general_settings: {{master_key: {MASTER}}}\n\
         router_settings: {{{redis}}}\n\
         keys:\n  - {{key: {KEY}, {limits}}}\n",
        up.uri()
    )
}

#[path = "support/logs.rs"]
mod logs;
use logs::{log_lines, logged};

/// `n` gateways of one config on one manual clock.
async fn fleet(yaml: &str, n: usize, clock: &Arc<ManualClock>) -> Vec<Arc<Gateway>> {
    let mut v = Vec::new();
    for _ in 0..n {
        let cfg = Config::parse(yaml, "test.yaml").expect("config parses").config;
        v.push(GatewayBuilder::new(cfg).clock(clock.clone()).build().await.expect("gateway builds"));
    }
    v
}

#[path = "support/router.rs"]
mod router;
use router::call;

/// One chat request with the key; its tokens are in Redis when this returns.
async fn chat(gw: &Arc<Gateway>) -> (u16, Value) {
    let r = call(
        gw,
        "POST",
        "/v1/chat/completions",
        KEY,
        Some(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    if let Some(s) = &gw.shared_limits {
        s.settled().await;
    }
    r
}

async fn health(gw: &Arc<Gateway>) -> Value {
    call(gw, "GET", "/health", MASTER, None).await.1
}

/// Polls each gateway's `/health` (bounded: 10 s) until its `redis.connected`
/// is `want`: the background probe's interval is real time.
async fn wait_connected(fleet: &[Arc<Gateway>], want: bool) {
    let started = Instant::now();
    for gw in fleet {
        loop {
            let h = health(gw).await;
            if h["redis"]["connected"] == json!(want) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "redis.connected never became {want}: {h}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Sends `n` requests round the fleet; the statuses in order.
async fn round(fleet: &[Arc<Gateway>], n: usize) -> Vec<(u16, Value)> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(chat(&fleet[i % fleet.len()]).await);
    }
    out
}

fn statuses(r: &[(u16, Value)]) -> Vec<u16> {
    r.iter().map(|(s, _)| *s).collect()
}

fn assert_litellm_429(body: &Value, kind: &str) {
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains(kind), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_on_one_redis_let_the_keys_rpm_through_once_in_total() {
    let redis = services::Redis::start();
    let up = upstream().await;
    let clock = ManualClock::shared();
    let gws = fleet(&config(&up, &format!("redis_url: '{}'", redis.url()), "rpm_limit: 5"), 3, &clock).await;
    wait_connected(&gws, true).await;

    let r = round(&gws, 9).await;
    assert_eq!(statuses(&r), [200, 200, 200, 200, 200, 429, 429, 429, 429]);
    assert_litellm_429(&r[5].1, "requests per minute");

    // The next minute of the gateways' clock is a new window, whatever
    // Redis's own clock says.
    clock.advance(Duration::from_secs(60));
    let r = round(&gws, 6).await;
    assert_eq!(statuses(&r), [200, 200, 200, 200, 200, 429]);
    assert_eq!(health(&gws[0]).await["status"], "healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_on_one_redis_share_the_keys_tpm() {
    let redis = services::Redis::start();
    let up = upstream().await;
    let clock = ManualClock::shared();
    let gws = fleet(&config(&up, &format!("redis_url: '{}'", redis.url()), "tpm_limit: 30"), 3, &clock).await;
    wait_connected(&gws, true).await;

    // 12 tokens a call: 0, 12 and 24 are under 30; 36 is not.
    let r = round(&gws, 5).await;
    assert_eq!(statuses(&r), [200, 200, 200, 429, 429]);
    assert_litellm_429(&r[3].1, "tokens per minute");

    clock.advance(Duration::from_secs(60));
    assert_eq!(statuses(&round(&gws, 1).await), [200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_each_gateway_counts_alone_and_shares_again_when_it_is_back() {
    log_lines();
    let mut redis = services::Redis::start();
    let up = upstream().await;
    let clock = ManualClock::shared();
    let gws =
        fleet(&config(&up, &format!("redis_host: 127.0.0.1, redis_port: {}", redis.port), "rpm_limit: 5"), 3, &clock)
            .await;
    wait_connected(&gws, true).await;
    assert_eq!(statuses(&round(&gws, 3).await), [200, 200, 200]);

    redis.stop();
    // Served on each instance's own window: 5 each, whatever was shared.
    for gw in &gws {
        let r = round(std::slice::from_ref(gw), 6).await;
        assert_eq!(statuses(&r), [200, 200, 200, 200, 200, 429], "{:?}", r.last());
    }
    wait_connected(&gws, false).await;
    let h = health(&gws[1]).await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["redis"]["configured"], true);
    assert!(h["redis"]["last_error"].is_string(), "{h}");

    redis.restart();
    wait_connected(&gws, true).await;
    let r = round(&gws, 6).await;
    assert_eq!(statuses(&r), [200, 200, 200, 200, 200, 429]);
    assert_eq!(health(&gws[2]).await["status"], "healthy");
    // One warning per gateway for going down, however many checks failed
    // meanwhile; one notice each for coming up, at start and after.
    assert_eq!(logged(redis.port, "Redis unreachable"), 3);
    assert_eq!(logged(redis.port, "Redis reachable"), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_password_is_never_shown() {
    log_lines();
    let password = "test-redis-pw-Zq81";
    let mut redis = services::Redis::start_with_password(Some(password));
    let up = upstream().await;
    let clock = ManualClock::shared();
    let settings = format!("redis_host: 127.0.0.1, redis_port: '{}', redis_password: {password}", redis.port);
    let gws = fleet(&config(&up, &settings, "rpm_limit: 5"), 1, &clock).await;
    wait_connected(&gws, true).await;
    let h = health(&gws[0]).await;
    assert_eq!(h["redis"]["address"], format!("redis://127.0.0.1:{}/0", redis.port));
    assert!(!h.to_string().contains(password));
    // Anyone else sees whether, not where.
    let anon = call(&gws[0], "GET", "/health", "", None).await.1;
    assert!(anon["redis"].get("address").is_none(), "{anon}");

    // A wrong password: not connected, and the error does not quote it.
    let wrong = format!("redis_url: 'redis://:wrong-pw-Xy77@127.0.0.1:{}/0'", redis.port);
    let bad = fleet(&config(&up, &wrong, "rpm_limit: 5"), 1, &clock).await;
    wait_connected(&bad, false).await;
    let started = Instant::now();
    while health(&bad[0]).await["redis"]["last_error"].is_null() {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let h = health(&bad[0]).await;
    assert!(!h.to_string().contains("wrong-pw-Xy77"), "{h}");
    assert_eq!(chat(&bad[0]).await.0, 200, "served on its own window");

    redis.stop();
    wait_connected(&gws, false).await;
    assert!(!health(&gws[0]).await.to_string().contains(password));
    assert!(logged(redis.port, "Redis unreachable") >= 2, "both gateways said so");
    let lines = log_lines();
    let lines = lines.lock().unwrap();
    assert!(lines.iter().all(|l| !l.contains(password) && !l.contains("wrong-pw-Xy77")));
}

#[tokio::test]
async fn a_redis_port_that_is_not_a_number_refuses_the_start_naming_the_field() {
    let cfg = Config::parse("router_settings: {redis_host: 127.0.0.1, redis_port: abc}\n", "c.yaml").unwrap().config;
    let e = GatewayBuilder::new(cfg).build().await.unwrap_err().to_string();
    assert!(e.contains("router_settings.redis_port") && e.contains("\"abc\""), "{e}");

    let mut cfg = Config::parse("router_settings: {redis_host: 127.0.0.1}\n", "c.yaml").unwrap().config;
    cfg.environment_variables.insert("REDIS_PORT".into(), "sixty".into());
    let e = GatewayBuilder::new(cfg).build().await.unwrap_err().to_string();
    assert!(e.contains("REDIS_PORT"), "{e}");

    let cfg = Config::parse("router_settings: {redis_url: 'rediss://:pw-secret@h:1'}\n", "c.yaml").unwrap().config;
    let e = GatewayBuilder::new(cfg).build().await.unwrap_err().to_string();
    assert!(e.contains("router_settings.redis_url") && !e.contains("pw-secret"), "{e}");

    // Not configured: `/health` says so, and nothing is degraded for it.
    let cfg = Config::parse("model_list: []\n", "c.yaml").unwrap().config;
    let gw = GatewayBuilder::new(cfg).clock(Arc::new(ManualClock::new())).build().await.unwrap();
    let h = health(&gw).await;
    assert_eq!(h["redis"]["configured"], false, "{h}");
}

/// `/model_cost_map/status` of each gateway, polled (bounded: 20 s; each
/// reload parses the map on a blocking thread) until `done` holds.
async fn wait_status(fleet: &[Arc<Gateway>], what: &str, done: impl Fn(&Value) -> bool) {
    let started = Instant::now();
    for gw in fleet {
        loop {
            let s = call(gw, "GET", "/model_cost_map/status", MASTER, None).await.1;
            if done(&s) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "{what} never happened: {s}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cost_map_reload_on_one_gateway_reaches_the_others_and_a_bad_map_is_refused_by_each() {
    let redis = services::Redis::start();
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let map_path = dir.path().join("cost_map.json");
    let good = std::fs::read_to_string("fixtures/litellm/model_prices_and_context_window.json").unwrap();
    std::fs::write(&map_path, &good).unwrap();
    let yaml = config(&up, &format!("redis_url: '{}'", redis.url()), "rpm_limit: 5").replace(
        &format!("master_key: {MASTER}"),
        &format!("master_key: {MASTER}, model_cost_map: '{}'", map_path.display()),
    );
    let gws = fleet(&yaml, 3, &ManualClock::shared()).await;
    wait_connected(&gws, true).await;
    let subscribed =
        |h: &Value| h["redis"]["shared"].as_array().is_some_and(|a| a.contains(&json!("model_cost_map_reloads")));
    for gw in &gws {
        let started = Instant::now();
        while !subscribed(&health(gw).await) {
            assert!(started.elapsed() < Duration::from_secs(10), "never subscribed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let before = call(&gws[1], "GET", "/model_cost_map/status", MASTER, None).await.1["model_count"].as_u64().unwrap();

    // A map with one more model, reloaded on the first gateway only.
    let mut map: serde_json::Map<String, Value> = serde_json::from_str(&good).unwrap();
    map.insert(
        "gpt-brand-new-2026".into(),
        json!({"litellm_provider": "openai", "mode": "chat",
        "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}),
    );
    std::fs::write(&map_path, serde_json::to_string(&map).unwrap()).unwrap();
    let (status, body) = call(&gws[0], "POST", "/reload/model_cost_map", MASTER, None).await;
    assert_eq!(status, 200, "{body}");
    wait_status(&gws, "adopting the new map", |s| s["model_count"].as_u64() == Some(before + 1)).await;

    // A malformed map: the first refuses it, and so does each other one.
    std::fs::write(&map_path, format!("{{{good}")).unwrap();
    let (status, _) = call(&gws[0], "POST", "/reload/model_cost_map", MASTER, None).await;
    assert_eq!(status, 422);
    wait_status(&gws, "refusing the bad map", |s| s["stale"] == json!(true)).await;
    for gw in &gws {
        let s = call(gw, "GET", "/model_cost_map/status", MASTER, None).await.1;
        assert_eq!(s["model_count"].as_u64(), Some(before + 1), "the last good map stays: {s}");
    }
}

/// `/key/info`'s spend on `gw`, after its spend writer's round.
async fn spend_on(gw: &Arc<Gateway>) -> f64 {
    if let Some(s) = &gw.shared_limits {
        s.write_spend().await;
    }
    let (status, body) = call(gw, "GET", "/key/info", KEY, None).await;
    assert_eq!(status, 200, "{body}");
    body["info"]["spend"].as_f64().unwrap_or_else(|| panic!("no spend: {body}"))
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() < 1e-12, "{what}: expected {want}, got {got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_is_the_fleets_and_what_redis_missed_is_added_once_it_is_back() {
    log_lines();
    // No append-only file: the restarted Redis has lost every total.
    let mut redis = services::Redis::start();
    let up = upstream().await;
    let clock = ManualClock::shared();
    let gws = fleet(&config(&up, &format!("redis_url: '{}'", redis.url()), "max_budget: 100"), 2, &clock).await;
    wait_connected(&gws, true).await;
    assert_eq!(chat(&gws[0]).await.0, 200);
    let one = spend_on(&gws[0]).await;
    assert!(one > 0.0, "the call is priced");
    assert_eq!(chat(&gws[1]).await.0, 200);
    // Each instance reads both calls, not only its own.
    assert_close(spend_on(&gws[1]).await, 2.0 * one, "instance 1");
    assert_close(spend_on(&gws[0]).await, 2.0 * one, "instance 0");

    redis.stop();
    wait_connected(&gws, false).await;
    // Served while Redis is down, and buffered.
    for gw in [&gws[0], &gws[0], &gws[1]] {
        assert_eq!(chat(gw).await.0, 200);
    }
    let unapplied = |gw: &Arc<Gateway>| gw.shared_limits.as_ref().map_or(0.0, |s| s.unapplied_spend());
    assert_close(unapplied(&gws[0]), 2.0 * one, "buffered on instance 0");
    assert_close(unapplied(&gws[1]), one, "buffered on instance 1");
    // Each instance's own view meanwhile: the last total it saw, plus its calls.
    assert_close(spend_on(&gws[0]).await, 4.0 * one, "instance 0 alone");

    redis.restart();
    wait_connected(&gws, true).await;
    // The total starts again from what the instances knew (both had seen
    // the two calls), and each buffered call is added once.
    for gw in &gws {
        if let Some(s) = &gw.shared_limits {
            s.write_spend().await;
        }
    }
    assert_close(spend_on(&gws[0]).await, 5.0 * one, "instance 0 after");
    assert_close(spend_on(&gws[1]).await, 5.0 * one, "instance 1 after");
    assert_close(unapplied(&gws[0]) + unapplied(&gws[1]), 0.0, "nothing left buffered");
}
