//! Faults (resets, latency, status answers) and the wire level.

use super::bedrock::{bedrock_body, bedrock_post};
use super::*;

#[tokio::test]
async fn reset_fault_drops_the_connection_without_a_response() {
    let m = start(MockKind::Openai).await;
    m.mount(Stub::new(StubMatch::default(), StubResponse::Fault(Fault::Reset)).times(1)).await.unwrap();
    let result = tokio::time::timeout(
        GUARD,
        client()
            .post(format!("{}/v1/chat/completions", m.url()))
            .header("authorization", "Bearer k")
            .json(&chat_body())
            .send(),
    )
    .await
    .expect("no hang");
    let err = result.expect_err("no response");
    assert!(err.is_request() || err.is_connect(), "{err:?}");
    assert_eq!(m.request_count(), 1, "the request was read and recorded");
    // `times: 1`: the next request is answered normally.
    let r = post(&format!("{}/v1/chat/completions", m.url()), &[OPENAI_AUTH], &chat_body()).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn rate_limited_fault_sends_429_with_retry_after() {
    let m = start(MockKind::Openai).await;
    m.mount(Stub::new(StubMatch::default(), StubResponse::Fault(Fault::RateLimited { retry_after_secs: 2 })))
        .await
        .unwrap();
    let r = post(&format!("{}/v1/chat/completions", m.url()), &[OPENAI_AUTH], &chat_body()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("2"));
    assert_eq!(
        r.json(),
        json!({"error": {"message": "Rate limit reached for requests. Please try again later.", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}})
    );

    let b = start(MockKind::Bedrock).await;
    b.mount(Stub::new(StubMatch::default(), StubResponse::Fault(Fault::RateLimited { retry_after_secs: 7 })))
        .await
        .unwrap();
    let r = bedrock_post(&b, "invoke", &[], &bedrock_body()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("7"));
    assert!(r.header("x-amzn-errortype").unwrap().starts_with("ThrottlingException"));
}

#[tokio::test]
async fn status_fault_uses_the_providers_error_shape() {
    let m = start(MockKind::Anthropic).await;
    m.mount(Stub::new(StubMatch::default(), StubResponse::Fault(Fault::Status { code: 529 }))).await.unwrap();
    let r = post(&format!("{}/v1/messages", m.url()), &ANTHROPIC_HEADERS, &claude_body()).await;
    assert_eq!(r.status, 529);
    assert_eq!(r.json()["error"], json!({"type": "overloaded_error", "message": "Overloaded"}));
}

#[tokio::test]
async fn malformed_fault_sends_200_with_broken_json() {
    let m = start(MockKind::Openai).await;
    m.mount(Stub::new(StubMatch::default(), StubResponse::Fault(Fault::Malformed))).await.unwrap();
    let r = post(&format!("{}/v1/chat/completions", m.url()), &[OPENAI_AUTH], &chat_body()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    assert!(r.text().starts_with("{\"id\":\"chatcmpl-"));
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());
}

#[tokio::test]
async fn latency_wraps_any_response() {
    let m = start(MockKind::Openai).await;
    let inner = StubResponse::Raw {
        status: 502,
        body: b"<html>502</html>".to_vec(),
        content_type: "text/html".into(),
        headers: BTreeMap::new(),
    };
    m.mount(Stub::new(StubMatch::default(), StubResponse::Fault(Fault::Latency { ms: 1, then: Box::new(inner) })))
        .await
        .unwrap();
    let r = post(&format!("{}/v1/chat/completions", m.url()), &[OPENAI_AUTH], &chat_body()).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type").as_deref(), Some("text/html"));
    assert_eq!(r.text(), "<html>502</html>");
}

async fn raw_exchange(url: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(GUARD, s.read_to_end(&mut out)).await.expect("no hang").unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn front_reads_chunked_bodies_and_refuses_garbage() {
    let m = start(MockKind::HostedVllm).await;
    let body = r#"{"model":"bge","input":"hi"}"#;
    let (a, b) = body.split_at(10);
    let req = format!(
        "POST /v1/embeddings HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let resp = raw_exchange(&m.url(), req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert_eq!(m.journal()[0].json, Some(serde_json::from_str(body).unwrap()));

    let resp = raw_exchange(&m.url(), b"NONSENSE\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{resp}");
    assert_eq!(m.request_count(), 1, "unparseable requests are not journaled");
}

/// OpenAI's Responses API: a `response` object, its named-event stream
/// ending in `response.completed` (which carries the whole response), and
/// the strict profile's `input` check. vLLM has no such route.
#[tokio::test]
async fn openai_serves_the_responses_api_whole_and_streamed() {
    let m = start(MockKind::Openai).await;
    let url = format!("{}/v1/responses", m.url());
    let auth = [("authorization", "Bearer sk-test")];
    let r = post(&url, &auth, &json!({"model": "gpt-4o", "input": "hi"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert!(v["usage"]["input_tokens"].as_u64().is_some());

    let r = post(&url, &auth, &json!({"model": "gpt-4o", "input": "hi", "stream": true})).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    assert!(names.contains(&"response.output_text.delta"));
    assert!(!text.contains("[DONE]"), "the Responses API has no [DONE]");

    let r = post(&url, &auth, &json!({"model": "gpt-4o"})).await;
    assert_eq!(r.status, 400, "input is required: {}", r.text());

    // `previous_response_id` resolves against this mock's stored Responses
    // only (whole or streamed); not stored (`store: false`) or unknown ids
    // get OpenAI's 400.
    let first = v["id"].as_str().unwrap().to_string();
    let streamed_id = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .find_map(|d| {
            serde_json::from_str::<serde_json::Value>(d).ok()?.pointer("/response/id")?.as_str().map(str::to_string)
        })
        .unwrap();
    for id in [&first, &streamed_id] {
        let r = post(&url, &auth, &json!({"model": "gpt-4o", "input": "more", "previous_response_id": id})).await;
        assert_eq!(r.status, 200, "{id}: {}", r.text());
    }
    let unstored = post(&url, &auth, &json!({"model": "gpt-4o", "input": "hi", "store": false})).await.json();
    let other = start(MockKind::Openai).await;
    let other_url = format!("{}/v1/responses", other.url());
    for (url, id) in [(&url, unstored["id"].as_str().unwrap()), (&url, "resp_made_up"), (&other_url, first.as_str())] {
        let r = post(url, &auth, &json!({"model": "gpt-4o", "input": "more", "previous_response_id": id})).await;
        assert_eq!(r.status, 400, "{id}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "previous_response_not_found");
        assert_eq!(r.json()["error"]["message"], format!("Previous response with id '{id}' not found."));
    }
    // A stored Response is read back by its id (a streamed one in its
    // completed state); an id it does not have is OpenAI's 404.
    for id in [&first, &streamed_id] {
        let r =
            client().get(format!("{url}/{id}")).header("authorization", "Bearer sk-test").send().await.expect("sent");
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["id"], id.as_str());
        assert_eq!(v["status"], "completed", "{v}");
    }
    let r =
        client().get(format!("{url}/resp_nope")).header("authorization", "Bearer sk-test").send().await.expect("sent");
    assert_eq!(r.status(), 404);
    let vllm = start(MockKind::HostedVllm).await;
    let r = post(&format!("{}/v1/responses", vllm.url()), &[], &json!({"model": "m", "input": "hi"})).await;
    assert_eq!(r.status, 404);
}
