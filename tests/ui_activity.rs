//! `GET /ui/activity` through the real router: priced requests to a
//! wiremock upstream land in the current minute per model (the name the
//! client asked for) and per key, a streamed call is charged when it ends,
//! made-up model names and calls without a key count under "other", key
//! data goes only to the master key, and the gateway's manual clock rolls an hour off.

use axum::body::Body;
use http_body_util::BodyExt;
use postmortem::gateway::clock::{ManualClock, SharedClock};
use postmortem::gateway::{Config, GatewayBuilder};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MASTER: &str = "sk-activity-master-0001";
/// gpt-4o's price in the bundled cost map for 10 prompt and 2 completion tokens.
const CALL_USD: f64 = 10.0 * 2.5e-6 + 2.0 * 1e-5;

fn chat_ok() -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})
}

fn stream_ok() -> String {
    [
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#,
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}}"#,
        "[DONE]",
    ]
    .iter()
    .map(|d| format!("data: {d}\n\n"))
    .collect()
}

async fn call(app: &axum::Router, method: &str, uri: &str, bearer: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = http::Request::builder().method(method).uri(uri).header("content-type", "application/json");
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

fn series<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no series {name} in {list}"))
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-12)
}

#[tokio::test]
async fn activity_per_model_and_key_for_the_last_hour_and_keys_only_for_the_master_key() {
    let up = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"stream": true})))
        .respond_with(ResponseTemplate::new(200).set_body_raw(stream_ok(), "text/event-stream"))
        .with_priority(1)
        .mount(&up)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_ok()))
        .mount(&up)
        .await;
    let yaml = format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: up-key}}\n\
         general_settings: {{master_key: {MASTER}}}\n",
        up.uri()
    );
    let cfg = Config::parse(&yaml, "activity.yaml").expect("config parses").config;
    let clock = ManualClock::shared();
    let gw = GatewayBuilder::new(cfg).clock(clock.clone() as SharedClock).build().await.expect("gateway builds");
    let app = postmortem::gateway::server::app(Arc::clone(&gw));

    let (status, made) =
        call(&app, "POST", "/key/generate", Some(MASTER), Some(json!({"key_alias": "team-a", "models": ["gpt-4o"]})))
            .await;
    assert_eq!(status, 200, "{made}");
    let key = made["key"].as_str().unwrap().to_string();
    let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        assert_eq!(call(&app, "POST", "/v1/chat/completions", Some(&key), Some(chat.clone())).await.0, 200);
    }
    let streamed = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = call(&app, "POST", "/v1/chat/completions", Some(&key), Some(streamed)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(call(&app, "POST", "/v1/chat/completions", Some(MASTER), Some(chat.clone())).await.0, 200);
    // A made-up name is refused and counted under "other", never a series
    // of its own; the refusal is the key's error.
    let made_up = json!({"model": "<made-up>", "messages": []});
    assert_eq!(call(&app, "POST", "/v1/chat/completions", Some(&key), Some(made_up)).await.0, 403);
    // No key: counted under "other" (the name was not the caller's to
    // choose for the public charts), and under no key.
    let (status, _) = call(&app, "POST", "/v1/chat/completions", None, Some(chat.clone())).await;
    assert_eq!(status, 401);

    // Anonymous: the models, no key data at all.
    let (status, anon) = call(&app, "GET", "/ui/activity", None, None).await;
    assert_eq!(status, 200, "{anon}");
    assert_eq!(anon["minutes"].as_array().unwrap().len(), 60);
    assert!(anon.get("keys").is_none(), "an anonymous caller got key data: {anon}");
    let text = anon.to_string();
    let masked = format!("{}...{}", &key[..3], &key[key.len() - 4..]);
    for secret in [key.as_str(), MASTER, masked.as_str(), "team-a", made["key_hash"].as_str().unwrap()] {
        assert!(!text.contains(secret), "{secret} in the anonymous answer: {text}");
    }
    assert!(!text.contains("<made-up>"), "a made-up model name got a series: {text}");
    let gpt = series(&anon["models"], "gpt-4o");
    assert_eq!(gpt["requests"][59], 4, "{gpt}");
    assert_eq!(gpt["errors"][59], 0);
    assert!(close(&gpt["total"]["spend_usd"], 4.0 * CALL_USD), "four priced calls, the stream too: {gpt}");
    assert!(gpt["latency_max_ms"][59].as_f64().unwrap() >= gpt["latency_mean_ms"][59].as_f64().unwrap());
    let other = series(&anon["models"], "other");
    assert_eq!(other["total"]["requests"], 2, "the made-up name and the call without a key: {other}");
    assert_eq!(other["total"]["errors"], 2);

    // The master key: per key too, masked and aliased.
    let (status, admin) = call(&app, "GET", "/ui/activity", Some(MASTER), None).await;
    assert_eq!(status, 200, "{admin}");
    let team = series(&admin["keys"], "team-a");
    assert_eq!(team["key"], masked);
    assert_eq!(team["total"]["requests"], 4, "three answered and one made-up name: {team}");
    assert_eq!(team["total"]["errors"], 1);
    assert!(close(&team["total"]["spend_usd"], 3.0 * CALL_USD), "{team}");
    let master = series(&admin["keys"], "master key");
    assert!(close(&master["total"]["spend_usd"], CALL_USD), "{master}");
    assert!(!admin.to_string().contains(&key), "a whole key in the answer");

    // A virtual key is not the master key; a wrong key is refused, not served the models.
    assert_eq!(call(&app, "GET", "/ui/activity", Some(&key), None).await.0, 403);
    assert_eq!(call(&app, "GET", "/ui/activity", Some("sk-wrong"), None).await.0, 401);

    // Thirty minutes on the minute has moved left; an hour on it is gone.
    clock.advance(Duration::from_secs(30 * 60));
    let (_, later) = call(&app, "GET", "/ui/activity", Some(MASTER), None).await;
    assert_eq!(series(&later["models"], "gpt-4o")["requests"][29], 4);
    clock.advance(Duration::from_secs(30 * 60));
    let (_, gone) = call(&app, "GET", "/ui/activity", Some(MASTER), None).await;
    assert_eq!(gone["models"], json!([]), "{gone}");
    assert_eq!(gone["keys"], json!([]), "{gone}");
}

#[tokio::test]
async fn the_openapi_document_lists_the_activity_route() {
    let cfg = Config::parse("model_list: []\n", "empty.yaml").unwrap().config;
    let gw = GatewayBuilder::new(cfg).build().await.unwrap();
    let app = postmortem::gateway::server::app(gw);
    let (status, doc) = call(&app, "GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/ui/activity"]["get"].is_object(), "{doc}");
    // An open gateway without admin: models for everyone, no keys.
    let (status, v) = call(&app, "GET", "/ui/activity", None, None).await;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("keys").is_none(), "{v}");
}
