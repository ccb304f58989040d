//! Handler tests through the real router against wiremock upstreams: the
//! exact upstream request (URL, headers, body) per provider and endpoint,
//! and the client-facing behaviour for errors, auth and streaming.

use axum::body::Body;
use http_body_util::BodyExt;
use postmortem::gateway::{Config, GatewayBuilder};
use serde_json::{json, Value};
use tower::ServiceExt;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn app(config_yaml: &str) -> axum::Router {
    let cfg = Config::parse(config_yaml, "test.yaml").expect("config parses").config;
    let gw = GatewayBuilder::new(cfg).build().await.expect("gateway builds");
    postmortem::gateway::server::app(gw)
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, Value, http::HeaderMap) {
    let mut req = http::Request::builder().method(method).uri(uri).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v, headers)
}

fn chat_ok() -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})
}

async fn only_request(server: &MockServer) -> wiremock::Request {
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1, "expected exactly one upstream request");
    reqs.into_iter().next().unwrap()
}

#[tokio::test]
async fn openai_chat_sends_exactly_what_the_client_sent() {
    let up = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer test-upstream-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_ok()))
        .mount(&up)
        .await;
    let app = app(&format!("model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: test-upstream-key}}\n", up.uri())).await;
    let (status, body, headers) = call(
        &app,
        "POST",
        "/v1/chat/completions",
        &[],
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "hi");
    // 10 * 2.5e-6 + 2 * 1e-5 from the bundled catalog's gpt-4o prices.
    let cost: f64 = headers["x-litellm-response-cost"].to_str().unwrap().parse().unwrap();
    assert!((cost - 4.5e-5).abs() < 1e-12, "{cost}");
    let sent: Value = serde_json::from_slice(&only_request(&up).await.body).unwrap();
    assert_eq!(sent, json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}));
}

#[tokio::test]
async fn azure_uses_deployment_url_api_version_and_api_key() {
    let up = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/prod-gpt4o/chat/completions"))
        .and(query_param("api-version", "2024-06-01"))
        .and(header("api-key", "test-azure-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_ok()))
        .mount(&up)
        .await;
    let app = app(&format!("model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: azure/prod-gpt4o, api_base: '{}', api_key: test-azure-key, api_version: '2024-06-01'}}\n", up.uri())).await;
    let (status, body, _) = call(
        &app,
        "POST",
        "/chat/completions",
        &[],
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.1}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent: Value = serde_json::from_slice(&only_request(&up).await.body).unwrap();
    assert_eq!(sent, json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.1}));
}

#[tokio::test]
async fn vllm_embeddings_never_send_absent_or_null_params() {
    let up = MockServer::start().await;
    Mock::given(method("POST")).and(path("/v1/embeddings"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}], "model": "bge", "usage": {"prompt_tokens": 1, "total_tokens": 1}})))
        .mount(&up).await;
    let app = app(&format!(
        "model_list:\n  - model_name: bge\n    litellm_params: {{model: hosted_vllm/BAAI/bge, api_base: '{}/v1'}}\n",
        up.uri()
    ))
    .await;
    let (status, _, _) =
        call(&app, "POST", "/v1/embeddings", &[], json!({"model": "bge", "input": ["x"], "user": null})).await;
    assert_eq!(status, 200);
    let sent: Value = serde_json::from_slice(&only_request(&up).await.body).unwrap();
    assert_eq!(sent, json!({"model": "BAAI/bge", "input": ["x"]}));
}

#[tokio::test]
async fn anthropic_chat_is_translated_with_version_and_key_headers() {
    let up = MockServer::start().await;
    Mock::given(method("POST")).and(path("/v1/messages")).and(header("x-api-key", "test-anthropic-key")).and(header("anthropic-version", "2023-06-01"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn", "usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 4}})))
        .mount(&up).await;
    let app = app(&format!("model_list:\n  - model_name: claude\n    litellm_params: {{model: anthropic/claude-sonnet-4-5, api_base: '{}', api_key: test-anthropic-key}}\n", up.uri())).await;
    let (status, body, _) = call(&app, "POST", "/v1/chat/completions", &[], json!({"model": "claude", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "hello");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 14);
    let sent: Value = serde_json::from_slice(&only_request(&up).await.body).unwrap();
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(sent["system"], "be brief");
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(sent["messages"], json!([{"role": "user", "content": "hi"}]));
    assert!(sent.get("temperature").is_none());
}

#[tokio::test]
async fn bedrock_invoke_is_signed_and_carries_betas_in_the_body() {
    let up = MockServer::start().await;
    Mock::given(method("POST")).and(path("/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "x",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}})))
        .mount(&up).await;
    let app = app(&format!("model_list:\n  - model_name: claude\n    litellm_params: {{model: bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0, aws_bedrock_runtime_endpoint: '{}', aws_region_name: eu-west-1, aws_access_key_id: TESTKEYID, aws_secret_access_key: test-secret}}\n", up.uri())).await;
    let (status, body, _) = call(
        &app,
        "POST",
        "/v1/messages",
        &[("anthropic-beta", "context-1m-2025-08-07,not-a-real-flag")],
        json!({"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let req = only_request(&up).await;
    let auth = req.headers.get("authorization").unwrap().to_str().unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=TESTKEYID/"), "{auth}");
    assert!(auth.contains("/eu-west-1/bedrock/aws4_request"), "{auth}");
    assert!(req.headers.get("anthropic-beta").is_none());
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(sent["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(sent["anthropic_beta"], json!(["context-1m-2025-08-07"]));
    assert!(sent.get("model").is_none());
}

#[tokio::test]
async fn upstream_errors_keep_status_and_message_and_transport_errors_map_to_502_504() {
    let up = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(429)
                .set_body_json(json!({"error": {"message": "Rate limit reached for gpt-4o", "type": "requests"}})),
        )
        .mount(&up)
        .await;
    let slow = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(chat_ok()).set_delay(std::time::Duration::from_millis(1500)),
        )
        .mount(&slow)
        .await;
    let app = app(&format!(
        "model_list:\n  - model_name: a\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: k}}\n  - model_name: dead\n    litellm_params: {{model: openai/gpt-4o, api_base: 'http://127.0.0.1:9/v1', api_key: k}}\n  - model_name: slow\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: k, timeout: 0.2}}\n",
        up.uri(), slow.uri()
    )).await;
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let (s, b, _) = call(&app, "POST", "/v1/chat/completions", &[], json!({"model": "a", "messages": msgs})).await;
    assert_eq!(s, 429);
    assert!(b["error"]["message"].as_str().unwrap().contains("Rate limit reached for gpt-4o"), "{b}");
    let (s, b, _) = call(&app, "POST", "/v1/chat/completions", &[], json!({"model": "dead", "messages": msgs})).await;
    assert_eq!(s, 502, "{b}");
    let (s, b, _) = call(&app, "POST", "/v1/chat/completions", &[], json!({"model": "slow", "messages": msgs})).await;
    assert_eq!(s, 504, "{b}");
}

/// Data-driven bad input: each case is a 4xx in OpenAI's shape, never a 500.
#[tokio::test]
async fn bad_input_gets_clear_openai_style_errors() {
    let app = app("model_list:\n  - model_name: m\n    litellm_params: {model: openai/m, api_base: 'http://127.0.0.1:9/v1'}\ngeneral_settings: {master_key: test-master-key-9999, max_request_size_mb: 0.001}\n").await;
    let auth = [("authorization", "Bearer test-master-key-9999")];
    // (case, headers, body, expected status, expected text in error.message)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("malformed json", auth.to_vec(), "{\"model\": ".into(), 400, "not valid JSON"),
        ("array body", auth.to_vec(), "[]".into(), 400, "must be a JSON object"),
        ("missing model", auth.to_vec(), json!({"messages": []}).to_string(), 400, "missing required field `model`"),
        ("wrong type", auth.to_vec(), json!({"model": 1, "messages": []}).to_string(), 400, "`model` must be a string"),
        (
            "stream not bool",
            auth.to_vec(),
            json!({"model": "m", "messages": [], "stream": "yes"}).to_string(),
            400,
            "`stream` must be a boolean",
        ),
        ("unknown model", auth.to_vec(), json!({"model": "zzz", "messages": []}).to_string(), 404, "zzz"),
        (
            "too large",
            auth.to_vec(),
            json!({"model": "m", "messages": [], "pad": "x".repeat(5000)}).to_string(),
            413,
            "over the limit",
        ),
        ("no key", vec![], json!({"model": "m", "messages": []}).to_string(), 401, "missing API key"),
        (
            "wrong key",
            vec![("authorization", "Bearer nope-nope-nope")],
            json!({"model": "m", "messages": []}).to_string(),
            401,
            "invalid API key",
        ),
    ];
    for (name, headers, body, want, text) in cases {
        let mut req = http::Request::builder().method("POST").uri("/v1/chat/completions");
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let resp = app.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{name}: body is not JSON: {bytes:?}"));
        assert_eq!(status, want, "{name}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(text), "{name}: {msg}");
        assert!(v["error"]["type"].is_string(), "{name}: {v}");
    }
}

/// The first SSE event reaches the client while the upstream still holds
/// the rest: the stream is passed through, not buffered.
#[tokio::test]
async fn streaming_passes_chunks_through_as_they_arrive() {
    use tokio::sync::oneshot;
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let upstream = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let release_rx = release_rx.clone();
            async move {
                let stream = async_stream::stream! {
                    yield Ok::<_, std::io::Error>(bytes::Bytes::from("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"first\"}}]}\n\n"));
                    if let Some(rx) = release_rx.lock().await.take() { let _ = rx.await; }
                    yield Ok(bytes::Bytes::from("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"last\"}}]}\n\ndata: [DONE]\n\n"));
                };
                ([("content-type", "text/event-stream")], Body::from_stream(stream))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, upstream).await.unwrap() });
    let app = app(&format!("model_list:\n  - model_name: m\n    litellm_params: {{model: openai/m, api_base: 'http://{addr}/v1', api_key: k}}\n")).await;
    let req = http::Request::builder()
        .method("POST")
        .uri("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(json!({"model": "m", "stream": true, "messages": []}).to_string()))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("first"), "first chunk arrived before the upstream sent the rest");
    release_tx.send(()).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("last") && rest.contains("[DONE]"), "{rest}");
}

#[tokio::test]
async fn routes_answer_under_a_multi_segment_root_path() {
    let app = app("model_list: []\ngeneral_settings: {server_root_path: /api/v1/gateway}\n").await;
    for (uri, want) in [
        ("/api/v1/gateway/health", 200),
        ("/api/v1/gateway/ui", 200),
        ("/api/v1/gateway/ui/assets/app.css", 200),
        ("/api/v1/gateway/docs", 200),
        ("/health", 404),
    ] {
        let resp = app.clone().oneshot(http::Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{uri}");
    }
    let resp =
        app.oneshot(http::Request::get("/api/v1/gateway/openapi.json").body(Body::empty()).unwrap()).await.unwrap();
    let v: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["servers"][0]["url"], "/api/v1/gateway");
}

/// `POST /key/generate` → use the key → `/key/info` shows its spend →
/// `POST /key/delete` → the key is refused. Only the master key manages keys.
#[tokio::test]
async fn virtual_key_lifecycle() {
    let up = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_ok()))
        .mount(&up)
        .await;
    let app = app(&format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: k}}\ngeneral_settings: {{master_key: test-master-key-keys}}\n",
        up.uri()
    ))
    .await;
    let master = [("authorization", "Bearer test-master-key-keys")];
    let (s, gen, _) =
        call(&app, "POST", "/key/generate", &master, json!({"models": ["gpt-4o"], "max_budget": 1.0})).await;
    assert_eq!(s, 200, "{gen}");
    let key = gen["key"].as_str().expect("the secret is returned once").to_string();
    assert!(key.starts_with("sk-") && key.len() > 20, "{key}");
    let bearer = format!("Bearer {key}");
    let as_key = [("authorization", bearer.as_str())];
    let (s, _, _) = call(&app, "POST", "/key/generate", &as_key, json!({})).await;
    assert_eq!(s, 403, "a virtual key cannot create keys");
    let (s, b, _) =
        call(&app, "POST", "/v1/chat/completions", &as_key, json!({"model": "gpt-4o", "messages": []})).await;
    assert_eq!(s, 200, "{b}");
    let req = http::Request::get("/key/info").header("authorization", bearer.as_str()).body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let info: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let spend = info["info"]["spend"].as_f64().unwrap();
    assert!((spend - 4.5e-5).abs() < 1e-12, "{info}");
    assert!(!info.to_string().contains(&key), "info never shows the secret: {info}");
    let (s, _, _) = call(&app, "POST", "/key/delete", &master, json!({"keys": [key]})).await;
    assert_eq!(s, 200);
    let (s, _, _) =
        call(&app, "POST", "/v1/chat/completions", &as_key, json!({"model": "gpt-4o", "messages": []})).await;
    assert_eq!(s, 401, "a deleted key is refused");
}

#[tokio::test]
async fn model_info_shows_prices_from_the_map_in_use_and_never_credentials() {
    let app = app(
        "model_list:\n\
         \x20 - model_name: gpt-4o\n\
         \x20   litellm_params: {model: openai/gpt-4o, api_base: http://127.0.0.1:9/v1, api_key: test-secret-credential-0001}\n\
         \x20 - model_name: in-house\n\
         \x20   litellm_params: {model: openai/in-house-model, api_base: http://127.0.0.1:9/v1}\n\
         \x20 - model_name: azure-prod\n\
         \x20   litellm_params: {model: azure/prod-deployment, api_base: http://127.0.0.1:9, api_key: k}\n\
         \x20   model_info: {id: az-1, base_model: gpt-4o-mini}\n\
         \x20 - model_name: gpt-4o-contract\n\
         \x20   litellm_params: {model: openai/gpt-4o, api_base: http://127.0.0.1:9/v1, api_key: k, input_cost_per_token: 0.000003}\n\
         general_settings: {master_key: sk-test-master-0012}\n",
    )
    .await;
    let (status, _, _) = call(&app, "GET", "/v1/model/info", &[], json!(null)).await;
    assert_eq!(status, 401, "the deployment list is not public");
    let auth = [("authorization", "Bearer sk-test-master-0012")];
    let (status, v, _) = call(&app, "GET", "/v1/model/info", &auth, json!(null)).await;
    assert_eq!(status, 200, "{v}");
    assert!(!v.to_string().contains("test-secret-credential"), "credentials leaked: {v}");
    let by_name = |name: &str| -> Value {
        v["data"].as_array().unwrap().iter().find(|d| d["model_name"] == name).cloned().unwrap()
    };
    let gpt = by_name("gpt-4o");
    assert_eq!(gpt["litellm_params"]["model"], "openai/gpt-4o");
    assert_eq!(gpt["model_info"]["key"], "gpt-4o");
    assert!(gpt["model_info"]["input_cost_per_token"].as_f64().unwrap() > 0.0, "{gpt}");
    // Unknown to the map: unpriced (null), never 0.
    let in_house = by_name("in-house");
    assert_eq!(in_house["model_info"]["key"], Value::Null);
    assert_eq!(in_house["model_info"]["input_cost_per_token"], Value::Null);
    // An Azure deployment name is priced through `base_model`.
    let azure = by_name("azure-prod");
    assert_eq!(azure["model_info"]["id"], "az-1");
    assert_eq!(azure["model_info"]["key"], "gpt-4o-mini");
    // A deployment's own rate is what its calls cost; the rate it does not
    // set is the map's.
    let contract = by_name("gpt-4o-contract");
    assert_eq!(contract["model_info"]["input_cost_per_token"], json!(0.000003), "{contract}");
    assert_eq!(contract["model_info"]["output_cost_per_token"], gpt["model_info"]["output_cost_per_token"]);
    let (_, same, _) = call(&app, "GET", "/model/info", &auth, json!(null)).await;
    assert_eq!(same, v);
}

#[tokio::test]
async fn an_empty_master_key_is_refused_at_start_up() {
    // Literally empty, blank, or an environment variable that is empty:
    // each would make an empty `Authorization:` header the master key.
    for master in [
        "master_key: ''",
        "master_key: '   '",
        "master_key: os.environ/PM_TEST_EMPTY_MASTER_KEY\nenvironment_variables: {PM_TEST_EMPTY_MASTER_KEY: ''}",
    ] {
        let (settings, env) = master.split_once('\n').unwrap_or((master, ""));
        let yaml = format!("model_list: []\ngeneral_settings:\n  {settings}\n{env}\n");
        let cfg = Config::parse(&yaml, "test.yaml").expect("config parses").config;
        let err = GatewayBuilder::new(cfg).build().await.expect_err("an empty master key must not start");
        let err = err.to_string();
        assert!(err.contains("general_settings.master_key") && err.contains("empty"), "{master}: {err}");
    }
}

#[tokio::test]
async fn an_empty_authorization_header_is_no_credential() {
    let app = app("model_list: []\ngeneral_settings: {master_key: sk-test-master-0102}\n").await;
    for auth in ["", "Bearer ", "Bearer", "   "] {
        let (status, body, _) = call(&app, "POST", "/key/generate", &[("authorization", auth)], json!({})).await;
        assert_eq!(status, 401, "Authorization: {auth:?} -> {body}");
    }
    for header in ["x-api-key", "api-key"] {
        let (status, body, _) = call(&app, "GET", "/key/list", &[(header, "")], json!({})).await;
        assert_eq!(status, 401, "{header}: \"\" -> {body}");
    }
}

#[tokio::test]
async fn a_model_name_never_changes_the_upstream_path_or_query() {
    let up = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200).set_body_json(chat_ok())).mount(&up).await;
    let app = app(&format!(
        "model_list:\n  - model_name: 'azure/*'\n    litellm_params: {{model: 'azure/*', api_base: '{0}', api_key: test-azure-key}}\n  - model_name: 'vertex_ai/*'\n    litellm_params: {{model: 'vertex_ai/*', api_base: '{0}', api_key: test-vertex-token, vertex_project: p1, vertex_location: us-east5}}\n  - model_name: 'bedrock/*'\n    litellm_params: {{model: 'bedrock/*', api_base: '{0}', aws_access_key_id: AKIDEXAMPLE, aws_secret_access_key: test-secret, aws_region_name: us-east-1}}\n",
        up.uri()
    ))
    .await;
    let hostile = ["../../../admin?x=1#", "..%2F..%2Fadmin", "a/../../admin", "x?api-version=evil", "x#frag"];
    for provider in ["azure", "vertex_ai", "bedrock"] {
        for name in hostile {
            let model = format!("{provider}/{name}");
            let body = json!({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]});
            let (status, reply, _) = call(&app, "POST", "/v1/chat/completions", &[], body).await;
            assert!(status < 500 || status == 502, "{model}: {status} {reply}");
        }
        for name in ["..", "."] {
            let model = format!("{provider}/{name}");
            let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
            let (status, reply, _) = call(&app, "POST", "/v1/chat/completions", &[], body).await;
            assert_eq!(status, 400, "{model}: {reply}");
        }
    }
    let received = up.received_requests().await.unwrap();
    assert!(!received.is_empty());
    for r in &received {
        let path = r.url.path();
        let allowed =
            ["/openai/deployments/", "/v1/projects/p1/locations/us-east5/publishers/anthropic/models/", "/model/"];
        assert!(allowed.iter().any(|p| path.starts_with(p)), "upstream path escaped its prefix: {}", r.url);
        assert_eq!(
            path.matches('/').count(),
            if path.starts_with("/openai/") {
                5
            } else if path.starts_with("/model/") {
                3
            } else {
                9
            },
            "{}",
            r.url
        );
        let query = r.url.query().unwrap_or("");
        assert!(query.is_empty() || query.starts_with("api-version=") && !query.contains("evil"), "{}", r.url);
        assert!(r.url.fragment().is_none(), "{}", r.url);
    }
}

#[tokio::test]
async fn configs_built_in_parallel_each_see_their_own_environment_variables() {
    // Each config names the same variable with its own value; with a
    // process-wide `set_var` the first build would win for both.
    let build = |value: &'static str| async move {
        let yaml = format!(
            "environment_variables: {{PM_TEST_PARALLEL_MASTER: sk-parallel-{value}}}\nmodel_list: []\ngeneral_settings: {{master_key: os.environ/PM_TEST_PARALLEL_MASTER}}\n"
        );
        let cfg = Config::parse(&yaml, "test.yaml").expect("config parses").config;
        postmortem::gateway::server::app(GatewayBuilder::new(cfg).build().await.expect("builds"))
    };
    let (a, b) = tokio::join!(build("aaaaaaaa"), build("bbbbbbbb"));
    for (app, own, other) in [(&a, "aaaaaaaa", "bbbbbbbb"), (&b, "bbbbbbbb", "aaaaaaaa")] {
        let (status, body, _) =
            call(app, "GET", "/key/list", &[("authorization", &format!("Bearer sk-parallel-{own}"))], json!({})).await;
        assert_eq!(status, 200, "{body}");
        let (status, _, _) =
            call(app, "GET", "/key/list", &[("authorization", &format!("Bearer sk-parallel-{other}"))], json!({}))
                .await;
        assert_eq!(status, 401);
    }
    assert!(std::env::var("PM_TEST_PARALLEL_MASTER").is_err(), "the process environment was written");
}

#[tokio::test]
async fn transport_errors_name_the_provider_never_its_address_or_os_error() {
    let app = app("model_list:\n  - model_name: dead\n    litellm_params: {model: openai/gpt-4o, api_base: 'http://127.0.0.1:9/v1', api_key: test-key, connect_timeout: 1}\n").await;
    let body = json!({"model": "dead", "messages": [{"role": "user", "content": "hi"}]});
    let (status, reply, _) = call(&app, "POST", "/v1/chat/completions", &[], body).await;
    assert_eq!(status, 502, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("openai") && message.contains("connect"), "{message}");
    for leak in ["127.0.0.1", ":9", "os error", "http://"] {
        assert!(!message.contains(leak), "{leak} in {message}");
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = app("model_list: []\ngeneral_settings: {master_key: sk-test-master-0102}\n").await;
    for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
        let (status, body, _) =
            call(&app, "GET", "/key/list", &[("authorization", &format!("{scheme} sk-test-master-0102"))], json!({}))
                .await;
        assert_eq!(status, 200, "{scheme}: {body}");
    }
}

#[tokio::test]
async fn a_wildcard_key_lists_only_the_patterns_it_grants() {
    let app = app(
        "model_list:\n  - model_name: 'anthropic/*'\n    litellm_params: {model: 'anthropic/*', api_base: 'http://127.0.0.1:9', api_key: k1}\n  - model_name: 'openai/*'\n    litellm_params: {model: 'openai/*', api_base: 'http://127.0.0.1:9/v1', api_key: k2}\n  - model_name: '*'\n    litellm_params: {model: '*', api_base: 'http://127.0.0.1:9/v1', api_key: k3}\n  - model_name: gpt-4o\n    litellm_params: {model: openai/gpt-4o, api_base: 'http://127.0.0.1:9/v1', api_key: k2}\ngeneral_settings: {master_key: sk-test-master-0102}\nkeys:\n  - {key: test-key-anthropic-only, models: ['anthropic/*']}\n",
    )
    .await;
    let (status, body, _) =
        call(&app, "GET", "/v1/models", &[("authorization", "Bearer test-key-anthropic-only")], json!({})).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, vec!["anthropic/*"], "{body}");
    let (_, all, _) =
        call(&app, "GET", "/v1/models", &[("authorization", "Bearer sk-test-master-0102")], json!({})).await;
    assert_eq!(all["data"].as_array().map(Vec::len), Some(4), "{all}");
}

#[tokio::test]
async fn health_shows_where_deployments_point_only_to_an_admin() {
    let app = app("model_list:\n  - model_name: gpt-4o\n    litellm_params: {model: openai/gpt-4o, api_base: 'http://10.1.2.3:8000/v1', api_key: k}\ngeneral_settings: {master_key: sk-test-master-0102}\n").await;
    let (status, anon, _) = call(&app, "GET", "/health", &[], json!({})).await;
    assert_eq!(status, 200);
    assert!(!anon.to_string().contains("10.1.2.3"), "{anon}");
    assert_eq!(anon["deployments"][0]["model_name"], "gpt-4o");
    let (_, admin, _) =
        call(&app, "GET", "/health", &[("authorization", "Bearer sk-test-master-0102")], json!({})).await;
    assert_eq!(admin["deployments"][0]["api_base"], "http://10.1.2.3:8000/v1", "{admin}");
}

#[tokio::test]
async fn a_stream_whose_headers_never_come_is_bounded_and_falls_back() {
    // The first deployment answers only after 30 s; its stream_timeout is
    // 0.3 s, so the gateway gives up on it and the second one answers.
    let stalled = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(30)))
        .mount(&stalled)
        .await;
    let healthy = MockServer::start().await;
    let sse = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream"))
        .mount(&healthy)
        .await;
    let app = app(&format!(
        "model_list:\n  - model_name: m\n    litellm_params: {{model: openai/m, api_base: '{}/v1', api_key: k, stream_timeout: 0.3}}\n  - model_name: m\n    litellm_params: {{model: openai/m, api_base: '{}/v1', api_key: k}}\n",
        stalled.uri(),
        healthy.uri()
    ))
    .await;
    let started = std::time::Instant::now();
    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (status, reply, _) = call(&app, "POST", "/v1/chat/completions", &[], body).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply.as_str().unwrap_or_default().contains("[DONE]"), "{reply}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "waited {:?}", started.elapsed());
    assert_eq!(stalled.received_requests().await.unwrap().len(), 1, "the stalled deployment was tried first");
}

#[tokio::test]
async fn a_client_that_sends_the_whole_body_first_gets_the_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cfg =
        Config::parse("model_list: []\ngeneral_settings: {max_request_size_mb: 0.01}\n", "t.yaml").unwrap().config;
    let gw = GatewayBuilder::new(cfg).build().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(postmortem::gateway::server::serve(gw, listener));
    // 20 MB (more than the sockets buffer), written in full before anything is read, as Python's http.client does.
    for declared in [true, false] {
        let body = format!("{{\"model\": \"m\", \"pad\": \"{}\"}}", "x".repeat(20_000_000));
        let head = if declared {
            format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len())
        } else {
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_string()
        };
        let payload = if declared { body.clone() } else { format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()) };
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(payload.as_bytes()).await.expect("the gateway reads the body it refuses");
        let mut answer = vec![0u8; 4096];
        let n =
            tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut answer)).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(text.starts_with("HTTP/1.1 413"), "declared={declared}: {text}");
    }
}

#[tokio::test]
async fn upstream_answers_are_read_within_a_bound() {
    // An error body of 5 MB: the client gets a bounded message, at once.
    let up = MockServer::start().await;
    let huge = format!("{{\"error\": {{\"message\": \"{}\"}}}}", "x".repeat(5_000_000));
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_raw(huge, "application/json"))
        .mount(&up)
        .await;
    let app = app(&format!(
        "model_list:\n  - model_name: m\n    litellm_params: {{model: openai/m, api_base: '{}/v1', api_key: k}}\n",
        up.uri()
    ))
    .await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let (status, reply, _) = call(&app, "POST", "/v1/chat/completions", &[], body).await;
    assert_eq!(status, 400);
    assert!(reply.to_string().len() < 100_000, "{} bytes", reply.to_string().len());
    // A success body over the cap is refused, not held.
    let big = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("y".repeat(2000), "application/json"))
        .mount(&big)
        .await;
    let resp = reqwest::Client::new().post(format!("{}/x", big.uri())).send().await.unwrap();
    let err = postmortem::gateway::upstream::read_capped(resp, 1000, "test").await.unwrap_err();
    assert!(err.to_string().contains("more than 1000 bytes"), "{err}");
    let resp = reqwest::Client::new().post(format!("{}/x", big.uri())).send().await.unwrap();
    assert_eq!(postmortem::gateway::upstream::read_capped(resp, 4000, "test").await.unwrap().len(), 2000);
}

/// Secure by default: with no master key the models are open (with a loud
/// warning and a banner), but admin routes are refused unless
/// `allow_unauthenticated_admin: true`; `LITELLM_MASTER_KEY` (here from the
/// config's `environment_variables`, which overlay the process environment)
/// is a master key like `general_settings.master_key`.
#[tokio::test]
async fn without_a_master_key_admin_routes_stay_closed_unless_opened_on_purpose() {
    let models = "model_list:\n  - model_name: m\n    litellm_params: {model: openai/m, api_base: 'http://127.0.0.1:9/v1', api_key: k}\n";
    struct Case {
        extra: &'static str,
        bearer: Option<&'static str>,
        generate: u16,
        health_open: bool,
    }
    let cases = [
        Case { extra: "", bearer: None, generate: 403, health_open: true },
        Case {
            extra: "general_settings: {allow_unauthenticated_admin: true}\n",
            bearer: None,
            generate: 200,
            health_open: true,
        },
        Case {
            extra: "environment_variables: {LITELLM_MASTER_KEY: test-env-master-0001}\n",
            bearer: None,
            generate: 401,
            health_open: false,
        },
        Case {
            extra: "environment_variables: {LITELLM_MASTER_KEY: test-env-master-0001}\n",
            bearer: Some("test-env-master-0001"),
            generate: 200,
            health_open: false,
        },
    ];
    for c in cases {
        let app = app(&format!("{models}{}", c.extra)).await;
        let auth = c.bearer.map(|b| format!("Bearer {b}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let (_, h, _) = call(&app, "GET", "/health", &[], Value::Null).await;
        assert_eq!(h["auth"]["open"], json!(c.health_open), "{}: {h}", c.extra);
        let resp = app.clone().oneshot(http::Request::get("/ui").body(Body::empty()).unwrap()).await.unwrap();
        let page = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert_eq!(page.contains("id=\"open-banner\""), c.health_open, "{}: the /ui banner", c.extra);
        let (s, b, _) = call(&app, "POST", "/key/generate", &headers, json!({})).await;
        assert_eq!(s, c.generate, "{} / {:?}: {b}", c.extra, c.bearer);
        if s == 403 {
            assert!(b.to_string().contains("master key"), "the refusal says what to do: {b}");
        }
    }
}

/// LiteLLM's answer headers (a call id, the deployment, the key's spend so
/// far, the cost) and the provider's rate-limit headers, passed on as sent.
#[tokio::test]
async fn answers_carry_litellm_headers_and_the_providers_rate_limit_headers() {
    let up = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(chat_ok())
                .insert_header("x-ratelimit-remaining-requests", "99")
                .insert_header("x-ratelimit-reset-tokens", "6ms"),
        )
        .mount(&up)
        .await;
    let app = app(&format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: k}}\n    model_info: {{id: dep-east}}\n\
         keys:\n  - {{key: sk-test-headers-0001}}\n",
        up.uri()
    ))
    .await;
    let auth = [("authorization", "Bearer sk-test-headers-0001")];
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let (s, _, h1) = call(&app, "POST", "/v1/chat/completions", &auth, body.clone()).await;
    assert_eq!(s, 200);
    let (_, _, h2) = call(&app, "POST", "/v1/chat/completions", &auth, body).await;
    let get = |h: &http::HeaderMap, k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert_eq!(get(&h1, "x-ratelimit-remaining-requests"), "99");
    assert_eq!(get(&h1, "x-ratelimit-reset-tokens"), "6ms");
    assert_eq!(get(&h1, "x-litellm-model-id"), "dep-east");
    assert_eq!(get(&h1, "x-litellm-call-id").len(), 32);
    assert_ne!(get(&h1, "x-litellm-call-id"), get(&h2, "x-litellm-call-id"), "one id per call");
    let spend = |h: &http::HeaderMap| get(h, "x-litellm-key-spend").parse::<f64>().unwrap();
    assert!((spend(&h2) - 2.0 * spend(&h1)).abs() < 1e-12 && spend(&h1) > 0.0, "the key's spend so far");
}

/// A body over the limit on Anthropic's routes is refused in Anthropic's
/// error shape (the Anthropic SDK raises its typed error), on OpenAI's in
/// OpenAI's.
#[tokio::test]
async fn a_413_speaks_the_routes_own_error_shape() {
    let app = app("model_list: []\ngeneral_settings: {max_request_size_mb: 0.001}\n").await;
    let big = json!({"model": "m", "pad": "x".repeat(5_000)});
    let (s, b, _) = call(&app, "POST", "/v1/messages", &[("anthropic-version", "2023-06-01")], big.clone()).await;
    assert_eq!(s, 413, "{b}");
    assert_eq!(b["type"], "error", "{b}");
    assert_eq!(b["error"]["type"], "request_too_large", "{b}");
    let (s, b, _) = call(&app, "POST", "/v1/chat/completions", &[], big).await;
    assert_eq!(s, 413, "{b}");
    assert!(b["error"]["message"].is_string() && b.get("type").is_none(), "{b}");
}

/// `GET /metrics`: requests by model, route and status (failures apart),
/// their latency, the tokens the provider reported and the spend, under
/// LiteLLM's names; the state of the cost map and the deployments; no key.
#[tokio::test]
async fn metrics_count_requests_tokens_and_spend_under_litellms_names() {
    let up = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_ok()))
        .mount(&up)
        .await;
    let app = app(&format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: test-upstream-key}}\n  - model_name: broken\n    litellm_params: {{model: unknownprovider/x}}\n",
        up.uri()
    ))
    .await;
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        assert_eq!(call(&app, "POST", "/v1/chat/completions", &[], body.clone()).await.0, 200);
    }
    // Names the gateway does not serve get no series of their own: anyone
    // can send made-up names, and each would be a series kept forever.
    for i in 0..20 {
        let (status, _, _) =
            call(&app, "POST", "/v1/chat/completions", &[], json!({"model": format!("nope-{i}"), "messages": []}))
                .await;
        assert_eq!(status, 404);
    }
    let req = http::Request::builder().uri("/metrics").body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let line = |prefix: &str| {
        text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in\n{text}")).to_string()
    };
    let ok = r#"{requested_model="gpt-4o",route="chat_completions",status_code="200"}"#;
    assert!(line(&format!("litellm_proxy_total_requests_metric_total{ok}")).ends_with(" 2"));
    let missing = r#"{requested_model="other",route="chat_completions",status_code="404"}"#;
    assert!(line(&format!("litellm_proxy_failed_requests_metric_total{missing}")).ends_with(" 20"));
    assert!(!text.contains("nope-"), "no made-up name on the page");
    assert!(!text.contains(&format!("litellm_proxy_failed_requests_metric_total{ok}")), "a 200 is no failure");
    assert!(line(&format!("litellm_request_total_latency_metric_count{ok}")).ends_with(" 2"));
    assert!(line(r#"litellm_input_tokens_metric_total{model="gpt-4o"}"#).ends_with(" 20"));
    assert!(line(r#"litellm_output_tokens_metric_total{model="gpt-4o"}"#).ends_with(" 4"));
    let spend: f64 = line(r#"litellm_spend_metric_total{model="gpt-4o"}"#).rsplit(' ').next().unwrap().parse().unwrap();
    assert!(spend > 0.0, "gpt-4o is priced in the bundled cost map");
    assert!(line(r#"postmortem_deployments{state="unavailable"}"#).ends_with(" 1"));
    assert!(line("postmortem_cost_map_stale").ends_with(" 0"));
    assert!(!text.contains("test-upstream-key") && !text.contains("sk-"), "no credential or key on the page");
}

/// A Response id names the deployment that stored it: the id the client
/// gets is the gateway's handle, reading it back goes to that deployment
/// with the provider's id, a key without access to its model (or an id the
/// gateway never issued) gets a 404, and a follow-up is pinned.
#[tokio::test]
async fn a_response_handle_reads_back_from_its_deployment_and_only_for_keys_allowed_its_model() {
    let (east, west) = (MockServer::start().await, MockServer::start().await);
    let stored = json!({"id": "resp_east_1", "object": "response", "created_at": 1, "status": "completed", "model": "gpt-4o",
        "output": [], "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}});
    for s in [&east, &west] {
        Mock::given(method("POST"))
            .and(path("/v1/responses"))
            .respond_with(ResponseTemplate::new(200).set_body_json(&stored))
            .mount(s)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/v1/responses/resp_east_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&stored))
        .mount(&east)
        .await;
    let yaml = format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: ke}}\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: kw}}\n  - model_name: other\n    litellm_params: {{model: openai/other, api_base: '{}/v1', api_key: ke}}\ngeneral_settings: {{master_key: sk-test-master-0103}}\nkeys:\n  - {{key: test-key-other-only, models: [other]}}\n",
        east.uri(),
        west.uri(),
        east.uri()
    );
    let app = app(&yaml).await;
    let master = [("authorization", "Bearer sk-test-master-0103")];
    let (status, first, _) =
        call(&app, "POST", "/v1/responses", &master, json!({"model": "gpt-4o", "input": "hi"})).await;
    assert_eq!(status, 200, "{first}");
    let handle = first["id"].as_str().unwrap().to_string();
    assert!(handle.starts_with("resp_pm_") && handle.ends_with("_resp_east_1"), "{handle}");
    let stored_at = if east.received_requests().await.unwrap().is_empty() { &west } else { &east };
    // Two follow-ups: round robin alone would send one of them elsewhere.
    for _ in 0..2 {
        let (status, _, _) = call(
            &app,
            "POST",
            "/v1/responses",
            &master,
            json!({"model": "gpt-4o", "input": "more", "previous_response_id": handle}),
        )
        .await;
        assert_eq!(status, 200);
    }
    let posts: Vec<Value> = stored_at
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(posts.len(), 3, "both follow-ups went to the deployment that stored the first");
    assert!(posts[1..].iter().all(|b| b["previous_response_id"] == "resp_east_1"), "{posts:?}");
    if std::ptr::eq(stored_at, &east) {
        let (status, read, _) = call(&app, "GET", &format!("/v1/responses/{handle}"), &master, Value::Null).await;
        assert_eq!((status, read["id"].as_str()), (200, Some(handle.as_str())), "{read}");
    }
    let other = [("authorization", "Bearer test-key-other-only")];
    for (id, who) in [(handle.as_str(), &other), ("resp_never_issued", &master)] {
        let (status, body, _) = call(&app, "GET", &format!("/v1/responses/{id}"), who, Value::Null).await;
        assert_eq!(status, 404, "{id}: {body}");
    }
}
