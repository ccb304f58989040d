//! Response caching (`litellm_settings.cache: true`) through the real router
//! against a wiremock upstream. In memory (`cache_params.type: local`): hits
//! cost no upstream call and no spend, the per-request controls, TTLs on the
//! manual clock, one key never reads another's entries, stream hits
//! replayed. On Redis (`type: redis`, a real server started per test,
//! `support/services.rs`): two gateways share their answers, still per key
//! and on the gateways' clock; with Redis stopped or never there requests
//! are served uncached, one warning per outage; no secret in Redis.

use axum::body::Body;
use http_body_util::BodyExt;
use postmortem::gateway::clock::ManualClock;
use postmortem::gateway::{Config, Gateway, GatewayBuilder};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[path = "support/services.rs"]
mod services;

#[path = "support/logs.rs"]
mod logs;

const MASTER: &str = "sk-test-master-cache-01";
const KEY_A: &str = "test-key-cache-a";
const KEY_B: &str = "test-key-cache-b";
const KEY_OTHER: &str = "test-key-cache-other-model";
const KEY_RPM: &str = "test-key-cache-rpm-two";

struct Rig {
    app: axum::Router,
    clock: Arc<ManualClock>,
    up: MockServer,
}

async fn rig(cache_settings: &str) -> Rig {
    let up = upstream().await;
    let clock = Arc::new(ManualClock::new());
    let gw = gateway(&config(&up, cache_settings), &clock).await;
    Rig { app: postmortem::gateway::server::app(gw), clock, up }
}

/// The upstream every test's gateways call: a chat answer, buffered or
/// streamed (with usage when asked), and an embedding.
async fn upstream() -> MockServer {
    let up = MockServer::start().await;
    let sse = "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"streamed\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"stream": true})))
        .respond_with(ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream"))
        .with_priority(2)
        .mount(&up)
        .await;
    let with_usage = "data: {\"id\":\"chatcmpl-u\",\"object\":\"chat.completion.chunk\",\"created\":2,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"put \"},\"finish_reason\":null}],\"usage\":null}\n\n\
        data: {\"id\":\"chatcmpl-u\",\"object\":\"chat.completion.chunk\",\"created\":2,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"together\"},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
        data: {\"id\":\"chatcmpl-u\",\"object\":\"chat.completion.chunk\",\"created\":2,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6}}\n\n\
        data: [DONE]\n\n";
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"stream": true, "stream_options": {"include_usage": true}})))
        .respond_with(ResponseTemplate::new(200).set_body_raw(with_usage, "text/event-stream"))
        .with_priority(1)
        .mount(&up)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-cached", "object": "chat.completion", "created": 1764000000, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "cached words"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})))
        .mount(&up)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
            "model": "text-embedding-3-small", "usage": {"prompt_tokens": 1, "total_tokens": 1}})))
        .mount(&up)
        .await;
    up
}

fn config(up: &MockServer, cache_settings: &str) -> String {
    format!(
        "model_list:\n\
         \x20 - {{model_name: gpt-4o, litellm_params: {{model: openai/gpt-4o, api_base: '{u}/v1', api_key: test-upstream-key}}}}\n\
         \x20 - {{model_name: other, litellm_params: {{model: openai/gpt-4o-mini, api_base: '{u}/v1', api_key: test-upstream-key}}}}\n\
         \x20 - {{model_name: embed, litellm_params: {{model: openai/text-embedding-3-small, api_base: '{u}/v1', api_key: test-upstream-key}}}}\n\
         general_settings: {{master_key: {MASTER}}}\n\
         litellm_settings: {cache_settings}\n\
         keys:\n\
         \x20 - {{key: {KEY_A}, models: [gpt-4o, embed]}}\n\
         \x20 - {{key: {KEY_B}, models: [gpt-4o]}}\n\
         \x20 - {{key: {KEY_OTHER}, models: [other]}}\n\
         \x20 - {{key: {KEY_RPM}, models: [gpt-4o], rpm: 2}}\n",
        u = up.uri()
    )
}

async fn gateway(yaml: &str, clock: &Arc<ManualClock>) -> Arc<Gateway> {
    let cfg = Config::parse(yaml, "cache.yaml").expect("config parses").config;
    GatewayBuilder::new(cfg).clock(clock.clone()).build().await.expect("gateway builds")
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
    fn cache_status(&self) -> &str {
        self.header("x-postmortem-cache-status")
    }
}

async fn post(rig: &Rig, path: &str, key: &str, body: Value) -> Answer {
    post_to(&rig.app, path, key, body).await
}

async fn post_to(app: &axum::Router, path: &str, key: &str, body: Value) -> Answer {
    let req = http::Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
    Answer { status, headers, text }
}

async fn upstream_calls(rig: &Rig) -> Vec<Value> {
    calls_to(&rig.up).await
}

async fn calls_to(up: &MockServer) -> Vec<Value> {
    let reqs = up.received_requests().await.unwrap();
    reqs.iter().map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null)).collect()
}

fn chat(extra: Value) -> Value {
    let mut b = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "what is cached?"}]});
    if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(extra.clone());
    }
    b
}

const ON: &str = "{cache: true, cache_params: {type: local, ttl: 60}}";

#[tokio::test]
async fn a_second_identical_request_is_a_hit_with_no_upstream_call_and_no_spend() {
    let rig = rig(ON).await;
    let first = post(&rig, "/v1/chat/completions", KEY_A, chat(json!({}))).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.cache_status(), "miss");
    assert!(first.headers.get("x-litellm-cache-key").is_none(), "LiteLLM names the key on hits only");
    let spend_after_first: f64 = first.header("x-litellm-key-spend").parse().unwrap();
    assert!(spend_after_first > 0.0);

    // Member order and a different `metadata` do not make another request.
    let again = json!({"messages": [{"content": "what is cached?", "role": "user"}], "model": "gpt-4o", "metadata": {"run": 2}});
    let second = post(&rig, "/v1/chat/completions", KEY_A, again).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.cache_status(), "hit");
    assert_eq!(second.json(), first.json(), "the stored answer, as it was");
    let key = second.header("x-litellm-cache-key");
    assert_eq!(key.len(), 64, "a SHA-256 in hex: {key}");
    assert!(!key.contains(KEY_A) && !key.contains("test-upstream-key"));
    assert_eq!(second.header("x-litellm-response-cost").parse::<f64>().unwrap(), 0.0);
    assert_eq!(second.header("x-litellm-key-spend").parse::<f64>().unwrap(), spend_after_first, "a hit is free");
    assert!(!second.header("x-litellm-call-id").is_empty(), "a hit is still a call of its own");
    assert_eq!(upstream_calls(&rig).await.len(), 1);

    // Other content is another entry.
    let third = post(&rig, "/v1/chat/completions", KEY_A, chat(json!({"temperature": 0.2}))).await;
    assert_eq!(third.cache_status(), "miss");
    assert_eq!(upstream_calls(&rig).await.len(), 2);

    assert_eq!(
        health(&rig.app, MASTER).await["response_cache"],
        json!({"backend": "local", "entries": 2, "capacity": 200, "ttl_secs": 60.0, "hits": 1, "misses": 2})
    );
}

async fn health(app: &axum::Router, key: &str) -> Value {
    let req =
        http::Request::get("/health").header("authorization", format!("Bearer {key}")).body(Body::empty()).unwrap();
    serde_json::from_slice(&app.clone().oneshot(req).await.unwrap().into_body().collect().await.unwrap().to_bytes())
        .unwrap()
}

#[tokio::test]
async fn no_cache_goes_upstream_and_the_cache_member_is_never_forwarded() {
    let rig = rig(ON).await;
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_A, chat(json!({}))).await.cache_status(), "miss");
    let fresh = post(&rig, "/v1/chat/completions", KEY_A, chat(json!({"cache": {"no-cache": true}}))).await;
    assert_eq!(fresh.status, 200, "{}", fresh.text);
    assert_eq!(fresh.cache_status(), "miss");
    let sent = upstream_calls(&rig).await;
    assert_eq!(sent.len(), 2, "no-cache bypasses the stored answer");
    assert!(sent.iter().all(|b| b.get("cache").is_none()), "{sent:?}");
    // The controls are no part of the key: a plain request hits.
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_A, chat(json!({}))).await.cache_status(), "hit");
}

#[tokio::test]
async fn no_store_answers_but_keeps_nothing() {
    let rig = rig(ON).await;
    let first = post(&rig, "/v1/chat/completions", KEY_A, chat(json!({"cache": {"no-store": true}}))).await;
    assert_eq!((first.status, first.cache_status()), (200, "miss"));
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_A, chat(json!({}))).await.cache_status(), "miss");
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_A, chat(json!({}))).await.cache_status(), "hit");
    assert_eq!(upstream_calls(&rig).await.len(), 2);
}

#[tokio::test]
async fn entries_expire_after_their_ttl_on_the_gateway_clock() {
    let rig = rig(ON).await;
    post(&rig, "/v1/chat/completions", KEY_A, chat(json!({}))).await;
    rig.clock.advance(Duration::from_secs(59));
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_A, chat(json!({}))).await.cache_status(), "hit");
    rig.clock.advance(Duration::from_secs(1));
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_A, chat(json!({}))).await.cache_status(), "miss", "60 s ttl");

    // A request's own ttl wins over the config's.
    let short = chat(json!({"temperature": 1, "cache": {"ttl": 5}}));
    post(&rig, "/v1/chat/completions", KEY_A, short).await;
    rig.clock.advance(Duration::from_secs(4));
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_A, chat(json!({"temperature": 1}))).await.cache_status(), "hit");
    rig.clock.advance(Duration::from_secs(1));
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_A, chat(json!({"temperature": 1}))).await.cache_status(), "miss");

    // s-maxage: an answer older than the request accepts is not used.
    rig.clock.advance(Duration::from_secs(10));
    let picky =
        post(&rig, "/v1/chat/completions", KEY_A, chat(json!({"temperature": 1, "cache": {"s-maxage": 5}}))).await;
    assert_eq!(picky.cache_status(), "miss");
    let ok = post(&rig, "/v1/chat/completions", KEY_A, chat(json!({"temperature": 1, "cache": {"s-maxage": 5}}))).await;
    assert_eq!(ok.cache_status(), "hit", "the fresh answer replaced it");
}

#[tokio::test]
async fn one_key_never_reads_another_keys_entries() {
    let rig = rig(ON).await;
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_A, chat(json!({}))).await.cache_status(), "miss");
    let b = post(&rig, "/v1/chat/completions", KEY_B, chat(json!({}))).await;
    assert_eq!((b.status, b.cache_status()), (200, "miss"), "entries are per key");
    let master = post(&rig, "/v1/chat/completions", MASTER, chat(json!({}))).await;
    assert_eq!(master.cache_status(), "miss");
    let other = post(&rig, "/v1/chat/completions", KEY_OTHER, chat(json!({}))).await;
    assert_eq!(other.status, 403, "a key not allowed the model is refused before the cache: {}", other.text);
    assert!(other.headers.get("x-postmortem-cache-status").is_none());
    assert_eq!(upstream_calls(&rig).await.len(), 3);
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_B, chat(json!({}))).await.cache_status(), "hit");
}

#[tokio::test]
async fn a_hit_still_counts_against_the_keys_rpm() {
    let rig = rig(ON).await;
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_RPM, chat(json!({}))).await.status, 200);
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_RPM, chat(json!({}))).await.cache_status(), "hit");
    let third = post(&rig, "/v1/chat/completions", KEY_RPM, chat(json!({}))).await;
    assert_eq!(third.status, 429, "{}", third.text);
}

#[tokio::test]
async fn a_streamed_request_is_answered_from_the_cache_as_a_valid_stream() {
    let rig = rig(ON).await;
    post(&rig, "/v1/chat/completions", KEY_A, chat(json!({}))).await;
    let s = post(
        &rig,
        "/v1/chat/completions",
        KEY_A,
        chat(json!({"stream": true, "stream_options": {"include_usage": true}})),
    )
    .await;
    assert_eq!((s.status, s.cache_status()), (200, "hit"), "{}", s.text);
    assert!(s.header("content-type").starts_with("text/event-stream"));
    let events: Vec<&str> = s.text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"), "{}", s.text);
    let chunks: Vec<Value> = events
        .iter()
        .filter(|e| **e != "data: [DONE]")
        .map(|e| serde_json::from_str(&e["data: ".len()..]).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "chatcmpl-cached"));
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "cached words");
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 12);
    assert_eq!(upstream_calls(&rig).await.len(), 1);

    // A streamed miss without its usage is not stored: a buffered answer has usage.
    let fresh = chat(json!({"temperature": 0.3, "stream": true}));
    let miss = post(&rig, "/v1/chat/completions", KEY_A, fresh.clone()).await;
    assert_eq!(miss.cache_status(), "miss");
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_A, fresh).await.cache_status(), "miss");
}

#[tokio::test]
async fn a_whole_streamed_answer_fills_the_cache_for_buffered_and_streamed_requests() {
    let rig = rig(ON).await;
    let streamed = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let first = post(&rig, "/v1/chat/completions", KEY_A, streamed.clone()).await;
    assert_eq!((first.status, first.cache_status()), (200, "miss"), "{}", first.text);
    assert!(first.text.ends_with("data: [DONE]\n\n"));
    let buffered = post(&rig, "/v1/chat/completions", KEY_A, chat(json!({}))).await;
    assert_eq!(buffered.cache_status(), "hit", "{}", buffered.text);
    let v = buffered.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "chatcmpl-u");
    assert_eq!(v["choices"][0]["message"], json!({"role": "assistant", "content": "put together", "refusal": null}));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 6);
    let again = post(&rig, "/v1/chat/completions", KEY_A, streamed).await;
    assert_eq!(again.cache_status(), "hit");
    assert!(again.text.contains("put together") && again.text.ends_with("data: [DONE]\n\n"), "{}", again.text);
    assert_eq!(upstream_calls(&rig).await.len(), 1);
}

#[tokio::test]
async fn embeddings_are_cached_and_call_types_can_be_narrowed() {
    let all = rig(ON).await;
    let body = json!({"model": "embed", "input": ["x"]});
    assert_eq!(post(&all, "/v1/embeddings", KEY_A, body.clone()).await.cache_status(), "miss");
    assert_eq!(post(&all, "/v1/embeddings", KEY_A, body.clone()).await.cache_status(), "hit");

    let narrow = rig("{cache: true, cache_params: {supported_call_types: [aembedding]}}").await;
    assert_eq!(
        post(&narrow, "/v1/chat/completions", KEY_A, chat(json!({}))).await.cache_status(),
        "",
        "chat not cached"
    );
    assert_eq!(post(&narrow, "/v1/chat/completions", KEY_A, chat(json!({}))).await.cache_status(), "");
    assert_eq!(post(&narrow, "/v1/embeddings", KEY_A, body.clone()).await.cache_status(), "miss");
    assert_eq!(post(&narrow, "/v1/embeddings", KEY_A, body).await.cache_status(), "hit");
}

#[tokio::test]
async fn default_off_caches_only_requests_that_opt_in() {
    let rig = rig("{cache: true, cache_params: {mode: default_off}}").await;
    let opt_in = chat(json!({"cache": {"use-cache": true}}));
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_A, chat(json!({}))).await.cache_status(), "");
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_A, opt_in.clone()).await.cache_status(), "miss");
    assert_eq!(post(&rig, "/v1/chat/completions", KEY_A, opt_in).await.cache_status(), "hit");
}

#[tokio::test]
async fn bad_cache_controls_are_a_clear_400() {
    let rig = rig(ON).await;
    for (cache, words) in [
        (json!("yes"), "field `cache` must be an object"),
        (json!({"ttl": -1}), "`cache.ttl` must be a number of seconds"),
        (json!({"no-cache": "true"}), "`cache.no-cache` must be a boolean"),
        (json!({"no_cache": true}), "unknown cache control `no_cache`"),
    ] {
        let a = post(&rig, "/v1/chat/completions", KEY_A, chat(json!({ "cache": cache }))).await;
        assert_eq!(a.status, 400, "{}", a.text);
        assert!(a.json()["error"]["message"].as_str().unwrap_or_default().contains(words), "{}", a.text);
    }
    assert!(upstream_calls(&rig).await.is_empty());
}

#[tokio::test]
async fn without_caching_the_cache_member_is_still_taken_out() {
    let rig = rig("{drop_params: false}").await;
    let a = post(&rig, "/v1/chat/completions", KEY_A, chat(json!({"cache": {"no-cache": true}}))).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.headers.get("x-postmortem-cache-status").is_none());
    assert!(upstream_calls(&rig).await[0].get("cache").is_none());
}

#[test]
fn stores_not_implemented_warn_and_cache_nothing_and_bad_values_refuse_the_file() {
    let parse = |s: &str| Config::parse(&format!("litellm_settings: {s}\n"), "t.yaml");
    let cache = |l: &postmortem::gateway::config::LoadedConfig| {
        let clock: postmortem::gateway::clock::SharedClock = Arc::new(ManualClock::new());
        postmortem::gateway::response_cache::ResponseCache::from_config(&l.config, clock, None)
    };
    let l =
        parse("{cache: true, cache_params: {type: s3, s3_bucket_name: b, s3_aws_secret_access_key: test-s3-secret}}")
            .unwrap();
    assert!(
        l.warnings.iter().any(|w| w.contains("litellm_settings.cache_params.type `s3` is not implemented")),
        "{:?}",
        l.warnings
    );
    assert!(l.warnings.iter().all(|w| !w.contains("test-s3-secret")));
    assert!(cache(&l).is_none());
    // One Redis server is implemented; Sentinel and Cluster are not.
    let l = parse("{cache: true, cache_params: {type: redis, host: localhost, password: test-redis-secret}}").unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let l = parse("{cache: true, cache_params: {type: redis, service_name: m, sentinel_nodes: [[h, 26379]], sentinel_password: test-sentinel-secret}}").unwrap();
    assert!(
        l.warnings.iter().any(|w| w.contains("type `redis` is not implemented over Redis Sentinel or Cluster")),
        "{:?}",
        l.warnings
    );
    assert!(l.warnings.iter().all(|w| !w.contains("test-sentinel-secret")));
    assert!(cache(&l).is_none());
    let l = parse("{cache: true, cache_params: {type: redis, host: h, default_in_memory_ttl: 5, max_connections: 9}}")
        .unwrap();
    for name in ["default_in_memory_ttl", "max_connections"] {
        let words = format!("cache_params.{name} is ignored by the Redis cache");
        assert!(l.warnings.iter().any(|w| w.contains(&words)), "{name}: {:?}", l.warnings);
    }
    let l = parse("{cache: true, cache_params: {type: local, host: h}}").unwrap();
    assert!(l.warnings.iter().any(|w| w.contains("cache_params.host is ignored by the in-memory cache")));
    let l = parse("{cache: true}").unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert!(cache(&l).is_some(), "local by default");
    let l = parse("{cache_params: {type: local}}").unwrap();
    assert!(l.warnings.iter().any(|w| w.contains("cache_params is ignored")), "{:?}", l.warnings);
    let l = parse("{cache: true, cache_params: {supported_call_types: [acompletion, atranscription]}}").unwrap();
    assert!(l.warnings.iter().any(|w| w.contains("`atranscription` is not cached")), "{:?}", l.warnings);
    for (bad, words) in [
        ("{cache: true, cache_params: {ttl: -5}}", "litellm_settings.cache_params.ttl"),
        ("{cache: true, cache_params: {type: redis, ttl: 0}}", "litellm_settings.cache_params.ttl"),
        ("{cache: true, cache_params: {mode: sometimes}}", "default_on"),
        ("{cache: \"yes\"}", "litellm_settings.cache"),
    ] {
        let e = parse(bad).expect_err(bad).to_string();
        assert!(e.contains(words), "{bad}: {e}");
    }
}

// ---- `type: redis`: one cache for every instance on one Redis ----

/// `cache_params` on the Redis at `port` (its own `host`/`port` settings).
fn on_redis(port: u16, extra: &str) -> String {
    format!("{{cache: true, cache_params: {{type: redis, host: 127.0.0.1, port: {port}, ttl: 60{extra}}}}}")
}

/// Two gateways of one config on one manual clock, and their routers.
async fn pair(yaml: &str, clock: &Arc<ManualClock>) -> Vec<axum::Router> {
    let mut apps = Vec::new();
    for _ in 0..2 {
        apps.push(postmortem::gateway::server::app(gateway(yaml, clock).await));
    }
    apps
}

/// Polls each gateway's `/health` (bounded: 10 s; the link's background
/// probe runs on real time) until its cache's `redis.connected` is `want`.
async fn wait_cache_connected(apps: &[axum::Router], want: bool) {
    let started = Instant::now();
    for app in apps {
        loop {
            let h = health(app, MASTER).await;
            if h["response_cache"]["redis"]["connected"] == json!(want) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "the cache's Redis never became {want}: {h}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Every cache entry in the Redis at `url`: key, value and seconds to live.
async fn redis_entries(url: &str) -> Vec<(String, Vec<u8>, i64)> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("postmortem:cache:*").query_async(&mut conn).await.unwrap();
    let mut out = Vec::new();
    for k in keys {
        let v: Vec<u8> = redis::cmd("GET").arg(&k).query_async(&mut conn).await.unwrap();
        let ttl: i64 = redis::cmd("TTL").arg(&k).query_async(&mut conn).await.unwrap();
        out.push((k, v, ttl));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_one_gateway_got_is_a_hit_on_the_other_with_no_upstream_call_and_no_spend() {
    let redis = services::Redis::start();
    let up = upstream().await;
    let clock = ManualClock::shared();
    let apps = pair(&config(&up, &on_redis(redis.port, ", namespace: fleet")), &clock).await;
    wait_cache_connected(&apps, true).await;

    let first = post_to(&apps[0], "/v1/chat/completions", KEY_A, chat(json!({}))).await;
    assert_eq!((first.status, first.cache_status()), (200, "miss"), "{}", first.text);
    assert!(first.header("x-litellm-key-spend").parse::<f64>().unwrap() > 0.0);
    let second = post_to(&apps[1], "/v1/chat/completions", KEY_A, chat(json!({}))).await;
    assert_eq!((second.status, second.cache_status()), (200, "hit"), "{}", second.text);
    assert_eq!(second.json(), first.json(), "the stored answer, as it was");
    assert!(second.header("x-litellm-cache-key").starts_with("fleet:"), "{}", second.header("x-litellm-cache-key"));
    assert_eq!(second.header("x-litellm-response-cost").parse::<f64>().unwrap(), 0.0);
    assert_eq!(second.header("x-litellm-key-spend").parse::<f64>().unwrap(), 0.0, "nothing spent on instance 1");
    assert_eq!(calls_to(&up).await.len(), 1);

    // Another key never gets the entry, on either instance; its own answer
    // is shared as well.
    let b = post_to(&apps[1], "/v1/chat/completions", KEY_B, chat(json!({}))).await;
    assert_eq!((b.status, b.cache_status()), (200, "miss"));
    assert_eq!(post_to(&apps[0], "/v1/chat/completions", KEY_B, chat(json!({}))).await.cache_status(), "hit");
    assert_eq!(calls_to(&up).await.len(), 2);

    // A streamed request on instance 1 is answered from the entry instance 0
    // stored, replayed as a stream; a whole streamed answer stored by one is
    // a buffered hit on the other.
    let streamed = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let s = post_to(&apps[1], "/v1/chat/completions", KEY_A, streamed).await;
    assert_eq!((s.status, s.cache_status()), (200, "hit"), "{}", s.text);
    assert!(s.text.contains("cached words") && s.text.ends_with("data: [DONE]\n\n"), "{}", s.text);
    let fresh = chat(json!({"temperature": 0.4, "stream": true, "stream_options": {"include_usage": true}}));
    assert_eq!(post_to(&apps[0], "/v1/chat/completions", KEY_A, fresh).await.cache_status(), "miss");
    let buffered = post_to(&apps[1], "/v1/chat/completions", KEY_A, chat(json!({"temperature": 0.4}))).await;
    assert_eq!(buffered.cache_status(), "hit", "{}", buffered.text);
    assert_eq!(buffered.json()["choices"][0]["message"]["content"], "put together");
    assert_eq!(calls_to(&up).await.len(), 3);

    // Namespaced keys of hashes; no secret in a key or a value; Redis keeps
    // an entry a little longer than its TTL (the gateways' clock decides).
    let entries = redis_entries(&redis.url()).await;
    assert_eq!(entries.len(), 3, "{:?}", entries.iter().map(|e| &e.0).collect::<Vec<_>>());
    for (key, value, ttl) in &entries {
        let hash = key.strip_prefix("postmortem:cache:fleet:").unwrap_or_else(|| panic!("{key}"));
        assert!(hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
        let text = String::from_utf8_lossy(value);
        for secret in [KEY_A, KEY_B, MASTER, "test-upstream-key"] {
            assert!(!key.contains(secret) && !text.contains(secret), "{secret} in {key}");
        }
        assert!((61..=120).contains(ttl), "{key}: EX {ttl}");
    }

    let h = health(&apps[1], MASTER).await;
    let c = &h["response_cache"];
    assert_eq!((c["backend"].as_str(), c["hits"].as_u64(), c["misses"].as_u64()), (Some("redis"), Some(3), Some(1)));
    assert!(c.get("entries").is_none() && c.get("capacity").is_none(), "{c}");
    assert_eq!(c["redis"]["address"], format!("redis://127.0.0.1:{}/0", redis.port));
    assert_eq!(c["redis"]["shared"], json!(["response_cache"]));
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["redis"]["configured"], false, "the shared limits' Redis is another setting");
    let anon = health(&apps[1], "").await;
    assert!(anon["response_cache"]["redis"].get("address").is_none(), "{anon}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_entries_expire_on_the_gateways_clock_and_the_request_controls_hold() {
    let redis = services::Redis::start();
    let up = upstream().await;
    let clock = ManualClock::shared();
    // Found through `router_settings.redis_url`, as the shared limits find it.
    let yaml = config(&up, "{cache: true, cache_params: {type: redis, ttl: 60}}")
        .replace("general_settings:", &format!("router_settings: {{redis_url: '{}'}}\ngeneral_settings:", redis.url()));
    let apps = pair(&yaml, &clock).await;
    wait_cache_connected(&apps, true).await;
    let ask = |i: usize, extra: Value| {
        let app = apps[i].clone();
        async move { post_to(&app, "/v1/chat/completions", KEY_A, chat(extra)).await.cache_status().to_string() }
    };

    assert_eq!(ask(0, json!({})).await, "miss");
    clock.advance(Duration::from_secs(59));
    assert_eq!(ask(1, json!({})).await, "hit");
    clock.advance(Duration::from_secs(1));
    assert_eq!(ask(1, json!({})).await, "miss", "60 s ttl, on the gateways' clock (Redis still holds it)");
    assert_eq!(ask(0, json!({})).await, "hit", "the fresh answer replaced it");

    // A request's own ttl; s-maxage; no-cache; no-store: as in memory.
    assert_eq!(ask(0, json!({"temperature": 1, "cache": {"ttl": 5}})).await, "miss");
    clock.advance(Duration::from_secs(4));
    assert_eq!(ask(1, json!({"temperature": 1})).await, "hit");
    assert_eq!(ask(1, json!({"temperature": 1, "cache": {"s-maxage": 3}})).await, "miss", "4 s old");
    assert_eq!(ask(0, json!({"temperature": 1, "cache": {"s-maxage": 3}})).await, "hit", "stored just now");
    assert_eq!(ask(1, json!({"temperature": 1, "cache": {"no-cache": true}})).await, "miss");
    assert_eq!(ask(0, json!({"temperature": 2, "cache": {"no-store": true}})).await, "miss");
    assert_eq!(ask(1, json!({"temperature": 2})).await, "miss", "no-store kept nothing");
    let sent = calls_to(&up).await;
    assert_eq!(sent.len(), 7, "{sent:?}");
    assert!(sent.iter().all(|b| b.get("cache").is_none()), "the controls never go upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_requests_are_served_uncached_and_one_warning_says_so() {
    logs::log_lines();
    let mut redis = services::Redis::start();
    let up = upstream().await;
    let clock = ManualClock::shared();
    let apps = pair(&config(&up, &on_redis(redis.port, "")), &clock).await;
    wait_cache_connected(&apps, true).await;
    assert_eq!(post_to(&apps[0], "/v1/chat/completions", KEY_A, chat(json!({}))).await.cache_status(), "miss");
    assert_eq!(post_to(&apps[1], "/v1/chat/completions", KEY_A, chat(json!({}))).await.cache_status(), "hit");

    redis.stop();
    for n in 0..4 {
        let a = post_to(&apps[n % 2], "/v1/chat/completions", KEY_A, chat(json!({}))).await;
        assert_eq!((a.status, a.cache_status()), (200, "miss"), "{}", a.text);
    }
    assert_eq!(calls_to(&up).await.len(), 5, "every request went upstream");
    wait_cache_connected(&apps, false).await;
    let h = health(&apps[0], MASTER).await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["response_cache"]["redis"]["last_error"].is_string(), "{h}");
    assert_eq!(h["response_cache"]["redis"]["shared"], json!([]));

    // Back (empty, as after a restart): cached and shared again.
    redis.restart();
    wait_cache_connected(&apps, true).await;
    assert_eq!(post_to(&apps[1], "/v1/chat/completions", KEY_A, chat(json!({}))).await.cache_status(), "miss");
    assert_eq!(post_to(&apps[0], "/v1/chat/completions", KEY_A, chat(json!({}))).await.cache_status(), "hit");
    assert_eq!(calls_to(&up).await.len(), 6);
    // One warning per gateway for the outage, however many requests missed.
    assert_eq!(logs::logged(redis.port, "Redis unreachable: responses are neither cached"), 2);
    assert_eq!(logs::logged(redis.port, "Redis reachable: responses are cached"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_on_a_redis_nobody_runs_still_starts_and_serves() {
    let up = upstream().await;
    let port = services::free_port();
    let clock = ManualClock::shared();
    let gw = gateway(&config(&up, &on_redis(port, "")), &clock).await;
    let app = postmortem::gateway::server::app(gw);
    for _ in 0..2 {
        let a = post_to(&app, "/v1/chat/completions", KEY_A, chat(json!({}))).await;
        assert_eq!((a.status, a.cache_status()), (200, "miss"), "{}", a.text);
    }
    assert_eq!(calls_to(&up).await.len(), 2);
    let started = Instant::now();
    while health(&app, MASTER).await["response_cache"]["redis"]["last_error"].is_null() {
        assert!(started.elapsed() < Duration::from_secs(10), "no error seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(health(&app, MASTER).await["status"], "degraded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_never_answers_costs_a_request_at_most_the_call_bound() {
    // Never accepted, so never answered: the kernel completes the
    // connection into the listener's backlog, and the command waits there
    // (a Redis too slow to wait for).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let up = upstream().await;
    let gw = gateway(&config(&up, &on_redis(port, "")), &ManualClock::shared()).await;
    let app = postmortem::gateway::server::app(gw);
    for _ in 0..3 {
        let started = Instant::now();
        let a = post_to(&app, "/v1/chat/completions", KEY_A, chat(json!({}))).await;
        assert_eq!((a.status, a.cache_status()), (200, "miss"), "{}", a.text);
        // One bounded read at most (250 ms), then Redis is skipped while down.
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
    assert_eq!(calls_to(&up).await.len(), 3);
    let h = health(&app, MASTER).await;
    assert!(
        h["response_cache"]["redis"]["last_error"].as_str().unwrap_or_default().contains("no answer within 250 ms"),
        "{h}"
    );
    drop(silent);
}

#[tokio::test]
async fn a_redis_cache_with_no_redis_or_a_bad_setting_refuses_the_start_naming_it() {
    let build = |settings: &str| {
        let mut cfg = Config::parse(&format!("litellm_settings: {settings}\n"), "c.yaml").unwrap().config;
        // Whatever this machine's environment says.
        for var in ["REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"] {
            cfg.environment_variables.insert(var.into(), String::new());
        }
        async move { GatewayBuilder::new(cfg).build().await.map(|_| ()).unwrap_err().to_string() }
    };
    let e = build("{cache: true, cache_params: {type: redis}}").await;
    assert!(e.contains("litellm_settings.cache_params.type") && e.contains("needs a Redis"), "{e}");
    let e = build("{cache: true, cache_params: {type: redis, host: 127.0.0.1, port: abc}}").await;
    assert!(e.contains("litellm_settings.cache_params.port") && e.contains("\"abc\""), "{e}");
    let e = build("{cache: true, cache_params: {type: redis, port: 7000, password: test-pw-Qx19}}").await;
    assert!(e.contains("litellm_settings.cache_params.host") && !e.contains("test-pw-Qx19"), "{e}");
    let e = build("{cache: true, cache_params: {type: redis, host: h, password: os.environ/POSTMORTEM_TEST_UNSET_PW}}")
        .await;
    assert!(e.contains("litellm_settings.cache_params.password") && e.contains("POSTMORTEM_TEST_UNSET_PW"), "{e}");
}
