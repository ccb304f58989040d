//! Response caching (`litellm_settings.cache: true`, `cache_params.type:
//! local`) through the real router against a wiremock upstream: hits cost no
//! upstream call and no spend, the per-request controls, TTLs on the manual
//! clock, one key never reads another's entries, stream hits replayed.

use axum::body::Body;
use http_body_util::BodyExt;
use postmortem::gateway::clock::ManualClock;
use postmortem::gateway::{Config, GatewayBuilder};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

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
    let yaml = format!(
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
    );
    let cfg = Config::parse(&yaml, "cache.yaml").expect("config parses").config;
    let clock = Arc::new(ManualClock::new());
    let gw = GatewayBuilder::new(cfg).clock(clock.clone()).build().await.expect("gateway builds");
    Rig { app: postmortem::gateway::server::app(gw), clock, up }
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
    let req = http::Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = rig.app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
    Answer { status, headers, text }
}

async fn upstream_calls(rig: &Rig) -> Vec<Value> {
    let reqs = rig.up.received_requests().await.unwrap();
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

    let req =
        http::Request::get("/health").header("authorization", format!("Bearer {MASTER}")).body(Body::empty()).unwrap();
    let health: Value = serde_json::from_slice(
        &rig.app.clone().oneshot(req).await.unwrap().into_body().collect().await.unwrap().to_bytes(),
    )
    .unwrap();
    assert_eq!(
        health["response_cache"],
        json!({"entries": 2, "capacity": 200, "ttl_secs": 60.0, "hits": 1, "misses": 2})
    );
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
    let l = parse("{cache: true, cache_params: {type: redis, host: localhost, password: test-redis-secret}}").unwrap();
    assert!(
        l.warnings.iter().any(|w| w.contains("litellm_settings.cache_params.type `redis` is not implemented")),
        "{:?}",
        l.warnings
    );
    assert!(l.warnings.iter().all(|w| !w.contains("test-redis-secret")));
    let clock: postmortem::gateway::clock::SharedClock = Arc::new(ManualClock::new());
    assert!(postmortem::gateway::response_cache::ResponseCache::from_config(&l.config, clock.clone()).is_none());
    let l = parse("{cache: true}").unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert!(
        postmortem::gateway::response_cache::ResponseCache::from_config(&l.config, clock).is_some(),
        "local by default"
    );
    let l = parse("{cache_params: {type: local}}").unwrap();
    assert!(l.warnings.iter().any(|w| w.contains("cache_params is ignored")), "{:?}", l.warnings);
    let l = parse("{cache: true, cache_params: {supported_call_types: [acompletion, atranscription]}}").unwrap();
    assert!(l.warnings.iter().any(|w| w.contains("`atranscription` is not cached")), "{:?}", l.warnings);
    for (bad, words) in [
        ("{cache: true, cache_params: {ttl: -5}}", "litellm_settings.cache_params.ttl"),
        ("{cache: true, cache_params: {mode: sometimes}}", "default_on"),
        ("{cache: \"yes\"}", "litellm_settings.cache"),
    ] {
        let e = parse(bad).expect_err(bad).to_string();
        assert!(e.contains(words), "{bad}: {e}");
    }
}
