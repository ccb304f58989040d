//! Streams: SSE framing, gates that hold a stream, cuts.

use super::*;

/// Reads chunks until the buffer holds `n` complete SSE blocks.
async fn read_blocks(resp: &mut reqwest::Response, buf: &mut String, n: usize) {
    while buf.matches("\n\n").count() < n {
        let chunk =
            tokio::time::timeout(GUARD, resp.chunk()).await.expect("no hang").expect("chunk").expect("more data");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn held_stream_sends_event_zero_then_waits_for_the_gate() {
    let m = start(MockKind::Openai).await;
    let events = vec![
        StubEvent::data(r#"{"n":0}"#),
        StubEvent::comment("OPENROUTER PROCESSING").delay(1),
        StubEvent::data(r#"{"n":1}"#),
        StubEvent::named("error", r#"{"error":{"message":"boom"}}"#),
        StubEvent::data("[DONE]"),
    ];
    m.mount(Stub::new(
        StubMatch::post("/v1/chat/completions"),
        StubResponse::Sse {
            status: 200,
            events,
            hold_before: Some((1, "first-token".into())),
            cut_after: None,
            headers: BTreeMap::new(),
        },
    ))
    .await
    .unwrap();
    let mut body = chat_body();
    body["stream"] = json!(true);
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", m.url()))
        .header("authorization", "Bearer k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream; charset=utf-8");

    let mut got = String::new();
    read_blocks(&mut resp, &mut got, 1).await;
    assert_eq!(got, "data: {\"n\":0}\n\n");

    tokio::time::timeout(GUARD, m.wait_until_held("first-token")).await.expect("stream parks on the gate");
    assert_eq!(m.held_gates(), vec!["first-token".to_string()]);
    // The server has written nothing after event 0, so no data can be ready.
    assert!(resp.chunk().now_or_never().is_none(), "nothing after event 0 before the release");

    m.release("first-token");
    let rest = tokio::time::timeout(GUARD, resp.bytes()).await.expect("no hang").expect("stream completes");
    assert_eq!(
        String::from_utf8_lossy(&rest),
        ": OPENROUTER PROCESSING\n\ndata: {\"n\":1}\n\nevent: error\ndata: {\"error\":{\"message\":\"boom\"}}\n\ndata: [DONE]\n\n"
    );
    assert!(m.held_gates().is_empty());
}

#[tokio::test]
async fn dropping_the_mock_ends_a_held_stream() {
    let m = start(MockKind::Anthropic).await;
    m.mount(Stub::new(
        StubMatch::default(),
        StubResponse::Sse {
            status: 200,
            events: vec![StubEvent::named("ping", r#"{"type":"ping"}"#)],
            hold_before: Some((1, "never".into())),
            cut_after: None,
            headers: BTreeMap::new(),
        },
    ))
    .await
    .unwrap();
    let mut resp =
        client()
            .post(format!("{}/v1/messages", m.url()))
            .headers(reqwest::header::HeaderMap::from_iter(ANTHROPIC_HEADERS.map(|(n, v)| {
                (reqwest::header::HeaderName::from_static(n), reqwest::header::HeaderValue::from_static(v))
            })))
            .json(&claude_body())
            .send()
            .await
            .unwrap();
    let mut got = String::new();
    read_blocks(&mut resp, &mut got, 1).await;
    tokio::time::timeout(GUARD, m.wait_until_held("never")).await.expect("parked");
    drop(m);
    let rest = tokio::time::timeout(GUARD, resp.bytes()).await.expect("the stream ends, not hangs");
    assert!(rest.is_err(), "the body is cut, not completed");
}

#[tokio::test]
async fn cut_stream_delivers_whole_events_then_half_an_event_then_fails() {
    let m = start(MockKind::Openai).await;
    let events = vec![StubEvent::data(r#"{"n":0}"#), StubEvent::data(r#"{"n":1,"long":"xxxxxxxxxxxxxxxx"}"#)];
    m.mount(Stub::new(
        StubMatch::default(),
        StubResponse::Sse { status: 200, events, hold_before: None, cut_after: Some(1), headers: BTreeMap::new() },
    ))
    .await
    .unwrap();
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", m.url()))
        .header("authorization", "Bearer k")
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    let mut got = Vec::new();
    let err = loop {
        match tokio::time::timeout(GUARD, resp.chunk()).await.expect("no hang") {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => panic!("the body ended cleanly; expected a cut"),
            Err(e) => break e,
        }
    };
    assert!(err.is_body() || err.is_decode() || err.is_request(), "{err:?}");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("data: {\"n\":0}\n\ndata: {\"n\":1"), "{text}");
    assert!(!text.ends_with("\n\n"), "second event is incomplete: {text}");
}

#[tokio::test]
async fn openai_default_stream_uses_real_chunk_framing() {
    let m = start(MockKind::Openai).await;
    let mut body = chat_body();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(&format!("{}/v1/chat/completions", m.url()), &[OPENAI_AUTH], &body).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let chunks: Vec<Value> = text
        .split_terminator("\n\n")
        .map(|b| b.strip_prefix("data: ").expect("only data lines"))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, "Hello from the openai mock `m1`.");
}
