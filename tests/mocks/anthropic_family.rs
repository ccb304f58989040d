//! Anthropic, and Claude on Vertex AI and Azure AI: their strict checks and default answers.

use super::*;

#[tokio::test]
async fn anthropic_requires_version_key_and_fields() {
    let m = start(MockKind::Anthropic).await;
    let url = format!("{}/v1/messages", m.url());

    let r = post(&url, &[("x-api-key", "k")], &claude_body()).await;
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j["type"], "error");
    assert_eq!(
        j["error"],
        json!({"type": "invalid_request_error", "message": "anthropic-version: header is required"})
    );
    assert!(j["request_id"].as_str().unwrap().starts_with("req_"));

    let r = post(&url, &[("anthropic-version", "2023-06-01")], &claude_body()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], json!({"type": "authentication_error", "message": "x-api-key header is required"}));

    let mut body = claude_body();
    body.as_object_mut().unwrap().remove("max_tokens");
    let r = post(&url, &ANTHROPIC_HEADERS, &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["message"], "max_tokens: Field required");

    let r = post(&url, &ANTHROPIC_HEADERS, &json!({"model": "c", "max_tokens": 1})).await;
    assert_eq!(r.json()["error"]["message"], "messages: Field required");

    let r = send(&url, &ANTHROPIC_HEADERS, b"{oops".to_vec()).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("The request body is not valid JSON: "));

    // Anthropic itself accepts unknown beta flags.
    let mut h = ANTHROPIC_HEADERS.to_vec();
    h.push(("anthropic-beta", "made-up-2099-01-01"));
    let r = post(&url, &h, &claude_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert!(j["id"].as_str().unwrap().starts_with("msg_01"));
    assert_eq!(j["type"], "message");
    assert_eq!(j["model"], "claude-sonnet-4-5");
    assert_eq!(j["stop_reason"], "end_turn");
    assert!(j["usage"]["input_tokens"].as_u64().unwrap() >= 1);

    let r = post(
        &format!("{}/v1/messages/count_tokens", m.url()),
        &ANTHROPIC_HEADERS,
        &json!({"model": "c", "messages": [{"role": "user", "content": "hello there"}]}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["input_tokens"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn anthropic_default_stream_has_the_real_event_sequence() {
    let m = start(MockKind::Anthropic).await;
    let mut body = claude_body();
    body["stream"] = json!(true);
    let r = post(&format!("{}/v1/messages", m.url()), &ANTHROPIC_HEADERS, &body).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
    let text = r.text();
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    let deltas = names.iter().filter(|n| **n == "content_block_delta").count();
    assert!(deltas >= 2);
    expected.extend(std::iter::repeat_n("content_block_delta", deltas));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    // Every event is `event:` + `data:` + blank line, and data is the same type.
    for block in text.split_terminator("\n\n") {
        let mut lines = block.lines();
        let event = lines.next().unwrap().strip_prefix("event: ").unwrap();
        let data: Value = serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], event);
    }
}

fn vertex_url(m: &MockProvider, verb: &str) -> String {
    format!(
        "{}/v1/projects/p1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:{verb}",
        m.url()
    )
}

fn vertex_body() -> Value {
    json!({"anthropic_version": "vertex-2023-10-16", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn vertex_requires_bearer_version_and_no_model() {
    let m = start(MockKind::VertexAi).await;
    let url = vertex_url(&m, "rawPredict");
    let auth = ("authorization", "Bearer ya29.mock");

    let r = post(&url, &[], &vertex_body()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(r.json()["error"]["code"], 401);

    let mut body = vertex_body();
    body["model"] = json!("claude-sonnet-4-5");
    let r = post(&url, &[auth], &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        json!({"type": "invalid_request_error", "message": "model: Extra inputs are not permitted"})
    );
    assert!(r.json()["request_id"].as_str().unwrap().starts_with("req_vrtx_"));

    let mut body = vertex_body();
    body["anthropic_version"] = json!("bedrock-2023-05-31");
    let r = post(&url, &[auth], &body).await;
    assert_eq!(r.json()["error"]["message"], "anthropic_version: Input should be 'vertex-2023-10-16'");

    let r = post(&url, &[auth], &vertex_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "claude-sonnet-4-5-20250929");
    assert!(r.json()["id"].as_str().unwrap().starts_with("msg_vrtx_"));

    let mut body = vertex_body();
    body["stream"] = json!(true);
    let r = post(&vertex_url(&m, "streamRawPredict"), &[auth], &body).await;
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("event: message_start\ndata: "));
}

#[tokio::test]
async fn vertex_rejects_beta_flags_outside_the_allowlist() {
    let m = start_with_betas(MockKind::VertexAi, &["context-1m-2025-08-07"]).await;
    let url = vertex_url(&m, "rawPredict");
    let auth = ("authorization", "Bearer ya29.mock");
    let r =
        post(&url, &[auth, ("anthropic-beta", "context-1m-2025-08-07,web-search-2025-03-05")], &vertex_body()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        json!({"type": "invalid_request_error", "message": "Unexpected value(s) `web-search-2025-03-05` for the `anthropic-beta` header. Please consult our documentation at docs.anthropic.com or try again without the header."})
    );
    let r = post(&url, &[auth, ("anthropic-beta", "context-1m-2025-08-07")], &vertex_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn azure_ai_accepts_either_key_header_and_checks_version_and_betas() {
    let m = start_with_betas(MockKind::AzureAi, &["prompt-caching-scope-2026-01-05"]).await;
    let url = format!("{}/anthropic/v1/messages", m.url());
    let version = ("anthropic-version", "2023-06-01");

    let r = post(&url, &[version], &claude_body()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "401");

    for key in ["x-api-key", "api-key"] {
        let r = post(&url, &[(key, "k"), version], &claude_body()).await;
        assert_eq!(r.status, 200, "{key}: {}", r.text());
        assert!(r.json()["id"].as_str().unwrap().starts_with("msg_01"));
    }

    let r = post(&url, &[("api-key", "k")], &claude_body()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["message"], "anthropic-version: header is required");

    let r = post(
        &url,
        &[("api-key", "k"), version, ("anthropic-beta", "prompt-caching-scope-2026-01-05,mcp-servers-2025-12-04")],
        &claude_body(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["type"], "error");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("`mcp-servers-2025-12-04`"));

    // Also served at /v1/messages.
    let r = post(&format!("{}/v1/messages", m.url()), &[("api-key", "k"), version], &claude_body()).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn non_strict_mock_accepts_what_strict_rejects() {
    let m = MockProvider::start(MockKind::Bedrock, "lenient", MockOptions { strict: false, beta_allowlist: None })
        .await
        .unwrap();
    let r = post(&format!("{}/model/x/invoke", m.url()), &[], &json!({"model": "x", "messages": []})).await;
    assert_eq!(r.status, 200, "{}", r.text());
}
