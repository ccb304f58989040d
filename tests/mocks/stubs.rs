//! Stubs (matching, `times`, ordering) and the journal.

use super::bedrock::event_stream;
use super::*;

#[tokio::test]
async fn stub_matches_on_body_subset_and_header_and_runs_out_after_times() {
    let m = start(MockKind::Openai).await;
    let stub = Stub {
        matcher: StubMatch {
            method: Some("post".into()),
            path: Some("/v1/chat/completions".into()),
            body_contains_json: Some(json!({"model": "gpt-4o-mini", "messages": [{"role": "user"}]})),
            header: Some(("X-Tenant".into(), "blue".into())),
            ..StubMatch::default()
        },
        response: StubResponse::Json {
            status: 201,
            body: json!({"stubbed": true}),
            headers: BTreeMap::from([("x-stub".into(), "yes".into())]),
        },
        times: Some(2),
    };
    m.mount(stub).await.unwrap();
    let url = format!("{}/v1/chat/completions", m.url());

    // Wrong header value: default answer.
    let r = post(&url, &[OPENAI_AUTH, ("x-tenant", "red")], &chat_body()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["object"], "chat.completion");

    for _ in 0..2 {
        let r = post(&url, &[OPENAI_AUTH, ("x-tenant", "blue")], &chat_body()).await;
        assert_eq!(r.status, 201);
        assert_eq!(r.json(), json!({"stubbed": true}));
        assert_eq!(r.header("x-stub").as_deref(), Some("yes"));
    }
    // Used up: falls through to the default.
    let r = post(&url, &[OPENAI_AUTH, ("x-tenant", "blue")], &chat_body()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["object"], "chat.completion");
    assert_eq!(m.request_count(), 4);
}

#[tokio::test]
async fn explicit_null_in_a_matcher_only_matches_an_explicit_null() {
    let m = start(MockKind::Openai).await;
    let stub = Stub::new(
        StubMatch { body_contains_json: Some(json!({"encoding_format": null})), ..StubMatch::default() },
        StubResponse::Json { status: 418, body: json!({}), headers: BTreeMap::new() },
    );
    m.mount(stub).await.unwrap();
    let url = format!("{}/v1/embeddings", m.url());
    let r = post(&url, &[OPENAI_AUTH], &json!({"model": "e", "input": "x"})).await;
    assert_eq!(r.status, 200);
    let r = post(&url, &[OPENAI_AUTH], &json!({"model": "e", "input": "x", "encoding_format": null})).await;
    assert_eq!(r.status, 418);
}

#[tokio::test]
async fn strict_profile_runs_before_stubs() {
    let m = start(MockKind::Anthropic).await;
    m.mount(Stub::new(
        StubMatch::post("/v1/messages"),
        StubResponse::Json { status: 200, body: json!({"ok": 1}), headers: BTreeMap::new() },
    ))
    .await
    .unwrap();
    let r = post(&format!("{}/v1/messages", m.url()), &[("x-api-key", "k")], &claude_body()).await;
    assert_eq!(r.status, 400, "a request the provider rejects never reaches a stub");
}

#[tokio::test]
async fn journal_records_every_request_as_sent() {
    let m = start(MockKind::Azure).await;
    let url = format!("{}/openai/deployments/d1/chat/completions?api-version=2024-10-21&x=a%20b", m.url());
    post(&url, &[("API-Key", "k"), ("X-Trace", "t1")], &json!({"messages": [{"role": "user", "content": "hi"}]})).await;
    post(&format!("{}/other", m.url()), &[], &json!({})).await;
    let j = m.journal();
    assert_eq!(j.len(), 2);
    let first = &j[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/openai/deployments/d1/chat/completions");
    assert_eq!(first.query.as_deref(), Some("api-version=2024-10-21&x=a%20b"));
    assert_eq!(first.query_param("x").as_deref(), Some("a b"));
    assert_eq!(first.header("api-key"), Some("k"));
    assert!(first.headers.iter().any(|(n, v)| n == "x-trace" && v == "t1"), "names are lower-case");
    assert_eq!(first.json, Some(json!({"messages": [{"role": "user", "content": "hi"}]})));
    assert_eq!(serde_json::from_slice::<Value>(&first.body).unwrap(), first.json.clone().unwrap());
    // Rejected requests are recorded too.
    assert_eq!(j[1].path, "/other");
    m.clear_journal();
    assert_eq!(m.request_count(), 0);
}

#[tokio::test]
async fn reset_removes_stubs() {
    let m = start(MockKind::Openai).await;
    m.mount(Stub::new(StubMatch::default(), StubResponse::Fault(Fault::Status { code: 500 }))).await.unwrap();
    let url = format!("{}/v1/chat/completions", m.url());
    assert_eq!(post(&url, &[OPENAI_AUTH], &chat_body()).await.status, 500);
    m.reset().await;
    assert_eq!(post(&url, &[OPENAI_AUTH], &chat_body()).await.status, 200);
    // The strict profile is back after the reset.
    assert_eq!(post(&url, &[], &chat_body()).await.status, 401);
}

#[tokio::test]
async fn invalid_stubs_are_refused_with_the_field_named() {
    let m = start(MockKind::Openai).await;
    let bad =
        Stub::new(StubMatch::default(), StubResponse::Json { status: 42, body: json!({}), headers: BTreeMap::new() });
    let err = m.mount(bad).await.unwrap_err();
    assert!(matches!(err, MockError::InvalidStub { .. }));
    assert!(err.to_string().contains("response.status"), "{err}");
    let bad = Stub::new(
        StubMatch::default(),
        StubResponse::Sse {
            status: 200,
            events: vec![StubEvent::data("x")],
            hold_before: None,
            cut_after: Some(1),
            headers: BTreeMap::new(),
        },
    );
    assert!(m.mount(bad).await.unwrap_err().to_string().contains("cut_after"));
    // An event-stream frame is one of chunk, named event or exception.
    for (event, want) in [
        (EventStreamEvent::default(), "events[0]: set exactly one of"),
        (
            EventStreamEvent { chunk: Some(json!({})), event: Some("messageStart".into()), ..Default::default() },
            "events[0]: set exactly one of",
        ),
        (
            EventStreamEvent { chunk: Some(json!({})), payload: Some(json!({})), ..Default::default() },
            "`payload` goes with `event`",
        ),
    ] {
        let bad = Stub::new(StubMatch::default(), event_stream(vec![event]));
        let err = m.mount(bad).await.unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn stubs_deserialize_from_scenario_yaml_and_deny_unknown_fields() {
    let yaml = r#"
matcher: { method: POST, path: /v1/messages, header: [anthropic-beta, x] }
response:
  sse:
    events:
      - { event: message_start, data: '{"type":"message_start"}' }
      - { comment: true, data: keep-alive, delay_ms: 5 }
      - { event: error, data: '{"type":"error"}' }
    hold_before: [1, g1]
    cut_after: 2
times: 3
"#;
    let stub: Stub = serde_yaml_ng::from_str(yaml).unwrap();
    assert_eq!(stub.times, Some(3));
    let StubResponse::Sse { events, hold_before, cut_after, .. } = &stub.response else { panic!("sse") };
    assert_eq!(events[1], StubEvent::comment("keep-alive").delay(5));
    assert_eq!(hold_before, &Some((1, "g1".to_string())));
    assert_eq!(*cut_after, Some(2));

    let fault: Stub =
        serde_yaml_ng::from_str("response: { fault: { latency: { ms: 0, then: { fault: reset } } } }").unwrap();
    assert_eq!(
        fault.response,
        StubResponse::Fault(Fault::Latency { ms: 0, then: Box::new(StubResponse::Fault(Fault::Reset)) })
    );
    let raw: Stub = serde_yaml_ng::from_str(
        "response: { raw: { status: 502, body: '<html>bad gateway</html>', content_type: text/html } }",
    )
    .unwrap();
    assert!(matches!(raw.response, StubResponse::Raw { ref body, .. } if body == b"<html>bad gateway</html>"));

    let err = serde_yaml_ng::from_str::<Stub>("response: { json: { body: {}, stauts: 200 } }").unwrap_err();
    assert!(err.to_string().contains("stauts"), "{err}");
    let err = serde_yaml_ng::from_str::<Stub>("matcher: { pth: /x }\nresponse: { fault: reset }").unwrap_err();
    assert!(err.to_string().contains("pth"), "{err}");
    assert_eq!("vertex_ai".parse::<MockKind>().unwrap(), MockKind::VertexAi);
    assert_eq!(serde_yaml_ng::from_str::<MockKind>("hosted_vllm").unwrap(), MockKind::HostedVllm);
}

#[test]
fn stubs_also_accept_yaml_tags_and_json() {
    let tagged: Stub =
        serde_yaml_ng::from_str("response: !fault\n  rate_limited: { retry_after_secs: 3 }\ntimes: 1").unwrap();
    assert_eq!(tagged.response, StubResponse::Fault(Fault::RateLimited { retry_after_secs: 3 }));
    let tagged: Stub = serde_yaml_ng::from_str("response: !json { status: 503, body: { a: 1 } }").unwrap();
    assert!(matches!(tagged.response, StubResponse::Json { status: 503, .. }));

    let json: Stub = serde_json::from_value(json!({
        "matcher": {"path_contains": "/messages"},
        "response": {"fault": {"latency": {"ms": 5, "then": {"fault": "malformed"}}}}
    }))
    .unwrap();
    assert_eq!(
        json.response,
        StubResponse::Fault(Fault::Latency { ms: 5, then: Box::new(StubResponse::Fault(Fault::Malformed)) })
    );
    // Round trip through the serializer.
    let back: Stub = serde_json::from_value(serde_json::to_value(&json).unwrap()).unwrap();
    assert_eq!(back, json);
    let err = serde_json::from_value::<Stub>(json!({"response": {"fault": "explode"}})).unwrap_err();
    assert!(err.to_string().contains("explode"), "{err}");
}
