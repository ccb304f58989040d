//! Bedrock: SigV4, InvokeModel and Converse checks, binary event streams.

use super::*;

const AMZ_DATE: &str = "20250101T000000Z";

fn sigv4() -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDMOCKMOCK/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={}",
        "ab".repeat(32)
    )
}

pub(super) fn bedrock_body() -> Value {
    json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
}

pub(super) async fn bedrock_post(m: &MockProvider, op: &str, extra: &[(&str, &str)], body: &Value) -> Reply {
    let auth = sigv4();
    let mut h = vec![("authorization", auth.as_str()), ("x-amz-date", AMZ_DATE)];
    h.extend_from_slice(extra);
    let url = format!("{}/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/{op}", m.url());
    post(&url, &h, body).await
}

#[tokio::test]
async fn bedrock_requires_sigv4_and_x_amz_date() {
    let m = start(MockKind::Bedrock).await;
    let url = format!("{}/model/anthropic.claude-3-haiku-20240307-v1:0/invoke", m.url());

    let r = post(&url, &[], &bedrock_body()).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json(), json!({"message": "Missing Authentication Token"}));
    assert!(r.header("x-amzn-errortype").unwrap().starts_with("MissingAuthenticationTokenException"));

    let r = post(&url, &[("authorization", "Bearer abc"), ("x-amz-date", AMZ_DATE)], &bedrock_body()).await;
    assert_eq!(r.status, 403);
    assert!(r.json()["message"].as_str().unwrap().contains("Authorization header requires 'Credential' parameter."));

    let auth = sigv4();
    let r = post(&url, &[("authorization", auth.as_str())], &bedrock_body()).await;
    assert_eq!(r.status, 403);
    assert!(r.json()["message"].as_str().unwrap().contains("'X-Amz-Date'"));

    let wrong_service = auth.replace("/bedrock/", "/s3/");
    let r = post(&url, &[("authorization", wrong_service.as_str()), ("x-amz-date", AMZ_DATE)], &bedrock_body()).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], "Credential should be scoped to correct service: 'bedrock'. ");

    let r = post(&url, &[("authorization", auth.as_str()), ("x-amz-date", AMZ_DATE)], &bedrock_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["type"], "message");
    assert_eq!(j["model"], "claude-3-haiku-20240307");
    assert!(r.header("x-amzn-bedrock-input-token-count").is_some());
}

#[tokio::test]
async fn bedrock_rejects_model_in_body_and_wrong_version() {
    let m = start(MockKind::Bedrock).await;
    let mut body = bedrock_body();
    body["model"] = json!("claude");
    let r = bedrock_post(&m, "invoke", &[], &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"message": "Malformed input request: #: extraneous key [model] is not permitted, please reformat your input and try again."})
    );
    assert!(r.header("x-amzn-errortype").unwrap().starts_with("ValidationException"));

    let mut body = bedrock_body();
    body.as_object_mut().unwrap().remove("anthropic_version");
    let r = bedrock_post(&m, "invoke", &[], &body).await;
    assert_eq!(
        r.json()["message"],
        "Malformed input request: #: required key [anthropic_version] not found, please reformat your input and try again."
    );

    let mut body = bedrock_body();
    body["anthropic_version"] = json!("2023-06-01");
    let r = bedrock_post(&m, "invoke", &[], &body).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("#/anthropic_version: 2023-06-01"));
}

#[tokio::test]
async fn bedrock_rejects_beta_flags_outside_the_allowlist() {
    let m = start_with_betas(MockKind::Bedrock, &["computer-use-2025-01-24"]).await;
    let invalid = json!({"message": "The model returned the following errors: invalid beta flag"});

    let mut body = bedrock_body();
    body["anthropic_beta"] = json!(["computer-use-2025-01-24", "prompt-caching-scope-2026-01-05"]);
    let r = bedrock_post(&m, "invoke", &[], &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), invalid);

    let r =
        bedrock_post(&m, "invoke", &[("anthropic-beta", "computer-use-2025-01-24,unknown-header")], &bedrock_body())
            .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), invalid);

    let mut body = bedrock_body();
    body["anthropic_beta"] = json!(["computer-use-2025-01-24"]);
    let r = bedrock_post(&m, "invoke", &[("anthropic-beta", "computer-use-2025-01-24")], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Splits a Bedrock event stream into (headers, payload) messages with the
/// AWS decoder; panics on a corrupt frame.
fn decode_frames(body: &[u8]) -> Vec<(BTreeMap<String, String>, Vec<u8>)> {
    let mut buf = bytes::Bytes::copy_from_slice(body);
    let mut decoder = MessageFrameDecoder::new();
    let mut out = Vec::new();
    while let DecodedFrame::Complete(msg) = decoder.decode_frame(&mut buf).expect("valid frame") {
        let headers = msg
            .headers()
            .iter()
            .map(|h| {
                let value = h.value().as_string().map(|s| s.as_str().to_string());
                (h.name().as_str().to_string(), value.unwrap_or_default())
            })
            .collect();
        out.push((headers, msg.payload().to_vec()));
    }
    assert!(bytes::Buf::remaining(&buf) == 0, "trailing bytes after the last frame");
    out
}

#[tokio::test]
async fn bedrock_stream_is_binary_eventstream_with_base64_anthropic_events() {
    let m = start(MockKind::Bedrock).await;
    let r = bedrock_post(&m, "invoke-with-response-stream", &[], &bedrock_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type").unwrap(), "application/vnd.amazon.eventstream");
    let frames = decode_frames(&r.body);
    let mut types = Vec::new();
    for (headers, payload) in &frames {
        assert_eq!(headers[":event-type"], "chunk");
        assert_eq!(headers[":message-type"], "event");
        assert_eq!(headers[":content-type"], "application/json");
        let outer: Value = serde_json::from_slice(payload).unwrap();
        let inner = base64::engine::general_purpose::STANDARD.decode(outer["bytes"].as_str().unwrap()).unwrap();
        let event: Value = serde_json::from_slice(&inner).unwrap();
        types.push(event["type"].as_str().unwrap().to_string());
        if event["type"] == "message_stop" {
            assert!(event["amazon-bedrock-invocationMetrics"]["outputTokenCount"].as_u64().is_some());
        }
    }
    assert_eq!(types.first().map(String::as_str), Some("message_start"));
    assert_eq!(types.last().map(String::as_str), Some("message_stop"));
    assert!(!types.iter().any(|t| t == "ping"), "Bedrock sends no ping");
}

/// A Bedrock `throttlingException` frame, as a stream's failure mid-way.
fn throttling() -> EventStreamEvent {
    EventStreamEvent {
        exception: Some(EventStreamException {
            exception_type: "throttlingException".into(),
            message: "Too many tokens".into(),
        }),
        ..Default::default()
    }
}

/// An `event_stream` stub response with `events` and no holds or cuts.
pub(super) fn event_stream(events: Vec<EventStreamEvent>) -> StubResponse {
    StubResponse::EventStream { status: 200, events, hold_before: None, cut_after: None, headers: BTreeMap::new() }
}

#[tokio::test]
async fn bedrock_eventstream_stub_can_fail_mid_stream() {
    let m = start(MockKind::Bedrock).await;
    let stub = Stub::new(
        StubMatch { path_contains: Some("invoke-with-response-stream".into()), ..StubMatch::default() },
        event_stream(vec![
            EventStreamEvent { chunk: Some(json!({"type": "message_start", "message": {}})), ..Default::default() },
            throttling(),
        ]),
    );
    m.mount(stub).await.unwrap();
    let r = bedrock_post(&m, "invoke-with-response-stream", &[], &bedrock_body()).await;
    let frames = decode_frames(&r.body);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1].0[":message-type"], "exception");
    assert_eq!(frames[1].0[":exception-type"], "throttlingException");
    assert_eq!(serde_json::from_slice::<Value>(&frames[1].1).unwrap(), json!({"message": "Too many tokens"}));
}

const INVALID_BETA: &str = "The model returned the following errors: invalid beta flag";

/// What LiteLLM sends for an OpenAI chat request to a `bedrock/` Claude model.
fn converse_body() -> Value {
    json!({
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "system": [{"text": "be brief"}],
        "inferenceConfig": {"maxTokens": 64},
        "additionalModelRequestFields": {}
    })
}

fn with_betas(betas: Value) -> Value {
    let mut body = converse_body();
    body["additionalModelRequestFields"] = json!({"anthropic_beta": betas});
    body
}

#[tokio::test]
async fn bedrock_converse_default_answer_has_the_real_shape() {
    let m = start(MockKind::Bedrock).await;
    let r = bedrock_post(&m, "converse", &[], &converse_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(r.header("x-amzn-requestid").map(|id| id.len()), Some(36), "a uuid");
    assert!(r.header("x-amzn-bedrock-input-token-count").is_none(), "Converse reports usage in the body");
    let j = r.json();
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["output", "stopReason", "usage", "metrics"]);
    assert_eq!(
        j["output"],
        json!({"message": {"role": "assistant", "content": [{"text": "Hello from the bedrock mock `m1`."}]}})
    );
    assert_eq!(j["stopReason"], "end_turn");
    let (input, output) = (j["usage"]["inputTokens"].as_u64().unwrap(), j["usage"]["outputTokens"].as_u64().unwrap());
    assert!(input > 0 && output > 0);
    assert_eq!(j["usage"]["totalTokens"].as_u64(), Some(input + output));
    assert!(j["metrics"]["latencyMs"].is_u64());

    // The same reply as InvokeModel's, so a scenario does not care which API the gateway picks.
    let invoke = bedrock_post(&m, "invoke", &[], &bedrock_body()).await.json();
    assert_eq!(invoke["content"][0]["text"], j["output"]["message"]["content"][0]["text"]);
}

#[tokio::test]
async fn bedrock_converse_stream_sends_the_five_event_types_in_order_without_a_bytes_wrapper() {
    let m = start(MockKind::Bedrock).await;
    let r = bedrock_post(&m, "converse-stream", &[], &converse_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type").as_deref(), Some("application/vnd.amazon.eventstream"));
    assert!(r.header("x-amzn-requestid").is_some());
    let mut kinds: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut events = BTreeMap::new();
    for (headers, payload) in decode_frames(&r.body) {
        assert_eq!(headers[":message-type"], "event");
        assert_eq!(headers[":content-type"], "application/json");
        let event: Value = serde_json::from_slice(&payload).unwrap();
        assert!(event.get("bytes").is_none(), "Converse events are not wrapped: {event}");
        let kind = headers[":event-type"].clone();
        if kind == "contentBlockDelta" {
            assert_eq!(event["contentBlockIndex"], 0);
            text.push_str(event["delta"]["text"].as_str().unwrap());
        }
        if kinds.last() != Some(&kind) {
            kinds.push(kind.clone());
        }
        events.insert(kind, event);
    }
    assert_eq!(kinds, ["messageStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"]);
    assert_eq!(text, "Hello from the bedrock mock `m1`.");
    assert_eq!(events["messageStart"]["role"], "assistant");
    assert_eq!(events["contentBlockStop"]["contentBlockIndex"], 0);
    assert_eq!(events["messageStop"]["stopReason"], "end_turn");
    let usage = &events["metadata"]["usage"];
    assert_eq!(
        usage["totalTokens"].as_u64(),
        Some(usage["inputTokens"].as_u64().unwrap() + usage["outputTokens"].as_u64().unwrap())
    );
    assert!(events["metadata"]["metrics"]["latencyMs"].is_u64());

    // The same usage as the buffered answer.
    let buffered = bedrock_post(&m, "converse", &[], &converse_body()).await.json();
    assert_eq!(&buffered["usage"], usage);
}

#[tokio::test]
async fn bedrock_converse_requires_the_same_sigv4_as_invoke() {
    let m = start(MockKind::Bedrock).await;
    let url = |op: &str| format!("{}/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/{op}", m.url());
    let invoke = post(&url("invoke"), &[], &bedrock_body()).await;
    assert_eq!(invoke.status, 403);
    let wrong_service = sigv4().replace("/bedrock/", "/s3/");
    let invoke_s3 =
        post(&url("invoke"), &[("authorization", &wrong_service), ("x-amz-date", AMZ_DATE)], &bedrock_body()).await;
    for op in ["converse", "converse-stream"] {
        let r = post(&url(op), &[], &converse_body()).await;
        assert_eq!((r.status, r.json()), (invoke.status, invoke.json()), "{op} without auth");
        assert_eq!(r.header("x-amzn-errortype"), invoke.header("x-amzn-errortype"));
        let r = post(&url(op), &[("authorization", &wrong_service), ("x-amz-date", AMZ_DATE)], &converse_body()).await;
        assert_eq!((r.status, r.json()), (invoke_s3.status, invoke_s3.json()), "{op} scoped to s3");
    }
}

#[tokio::test]
async fn bedrock_converse_rejects_what_bedrock_rejects() {
    let m = start_with_betas(MockKind::Bedrock, &["computer-use-2025-01-24"]).await;
    let body = |patch: Value| {
        let mut b = converse_body();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        serde_json::to_vec(&b).unwrap()
    };
    let user = |content: Value| json!({"role": "user", "content": content});
    let assistant = json!({"role": "assistant", "content": [{"text": "ok"}]});
    // (case, `anthropic-beta` header, body, the exact message or the part of it that matters)
    let cases = vec![
        ("body not JSON", None, b"{not json".to_vec(), "Malformed input request, please reformat your input and try again."),
        ("body not an object", None, b"[1]".to_vec(), "Malformed input request, please reformat your input and try again."),
        (
            "string content (OpenAI style)",
            None,
            body(json!({"messages": [user(json!("hi"))]})),
            "The format of the value at messages.0.content is invalid. Provide a list for the field and try again.",
        ),
        ("string system", None, body(json!({"system": "be brief"})), "The format of the value at system is invalid."),
        (
            "maxTokens 0",
            None,
            body(json!({"inferenceConfig": {"maxTokens": 0}})),
            "1 validation error detected: Value '0' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1",
        ),
        (
            "maxTokens not an integer",
            None,
            body(json!({"inferenceConfig": {"maxTokens": 1.5}})),
            "The format of the value at inferenceConfig.maxTokens is invalid.",
        ),
        (
            "system role and a negative maxTokens",
            None,
            body(json!({"messages": [{"role": "system", "content": [{"text": "x"}]}], "inferenceConfig": {"maxTokens": -1}})),
            "2 validation errors detected: Value 'system' at 'messages.1.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]; Value '-1' at",
        ),
        ("no messages", None, body(json!({"messages": []})), "A conversation must start with a user message."),
        ("assistant first", None, body(json!({"messages": [assistant]})), "A conversation must start with a user message."),
        (
            "two user turns",
            None,
            body(json!({"messages": [user(json!([{"text": "a"}])), user(json!([{"text": "b"}]))]})),
            "A conversation must alternate between user and assistant roles.",
        ),
        ("empty content", None, body(json!({"messages": [user(json!([]))]})), "The content field in the Message object at messages.0 is empty."),
        (
            "empty text",
            None,
            body(json!({"messages": [user(json!([{"text": "a"}, {"text": ""}]))]})),
            "The text field in the ContentBlock object at messages.0.content.1 is blank.",
        ),
        (
            "whitespace-only text",
            None,
            body(json!({"messages": [user(json!([{"text": " \n"}]))]})),
            "The model returned the following errors: messages: text content blocks must contain non-whitespace text",
        ),
        (
            "anthropic_beta not a list",
            None,
            serde_json::to_vec(&with_betas(json!("computer-use-2025-01-24"))).unwrap(),
            "Malformed input request: #/anthropic_beta: expected type: JSONArray, found: String, please reformat your input and try again.",
        ),
        (
            "beta flag outside the allowlist in additionalModelRequestFields",
            None,
            serde_json::to_vec(&with_betas(json!(["computer-use-2025-01-24", "prompt-caching-scope-2026-01-05"]))).unwrap(),
            INVALID_BETA,
        ),
        (
            "beta flag outside the allowlist in the header",
            Some("computer-use-2025-01-24,unknown-header"),
            serde_json::to_vec(&converse_body()).unwrap(),
            INVALID_BETA,
        ),
    ];
    for op in ["converse", "converse-stream"] {
        for (case, beta_header, body, message) in &cases {
            let auth = sigv4();
            let mut h =
                vec![("content-type", "application/json"), ("authorization", auth.as_str()), ("x-amz-date", AMZ_DATE)];
            h.extend(beta_header.map(|flags| ("anthropic-beta", flags)));
            let url = format!("{}/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/{op}", m.url());
            let r = send(&url, &h, body.clone()).await;
            assert_eq!(r.status, 400, "{op}: {case}: {}", r.text());
            let errortype = r.header("x-amzn-errortype").unwrap_or_default();
            assert_eq!(
                errortype, "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
                "{op}: {case}"
            );
            let got = r.json();
            let got = got["message"].as_str().unwrap_or_default();
            assert!(got.starts_with(message), "{op}: {case}: {got}");
            if *message == INVALID_BETA {
                assert_eq!(r.json(), json!({"message": INVALID_BETA}), "{op}: {case}: the invoke path's exact body");
            }
        }
    }

    // Allowed flags pass, from the body and the header.
    let r = bedrock_post(
        &m,
        "converse",
        &[("anthropic-beta", "computer-use-2025-01-24")],
        &with_betas(json!(["computer-use-2025-01-24"])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = bedrock_post(&m, "converse-stream", &[], &with_betas(json!(["computer-use-2025-01-24"]))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A conversation that alternates, with a null member (absent in AWS's JSON protocol).
    let mut body = converse_body();
    body["messages"] = json!([
        {"role": "user", "content": [{"text": "a"}]},
        {"role": "assistant", "content": [{"text": "b"}]},
        {"role": "user", "content": [{"text": "c"}]}
    ]);
    body["toolConfig"] = Value::Null;
    let r = bedrock_post(&m, "converse", &[], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn bedrock_unknown_operations_still_get_unknown_operation_404() {
    let m = start(MockKind::Bedrock).await;
    for op in ["converse-streams", "conversation", "invoke/converse"] {
        let r = bedrock_post(&m, op, &[], &converse_body()).await;
        assert_eq!(r.status, 404, "{op}");
        assert_eq!(r.json()["Output"]["__type"], "com.amazon.coral.service#UnknownOperationException", "{op}");
    }
}

#[tokio::test]
async fn bedrock_stubs_and_faults_answer_on_converse_routes() {
    let m = start(MockKind::Bedrock).await;
    m.mount(Stub::new(
        StubMatch { path_contains: Some("/converse-stream".into()), ..StubMatch::default() },
        event_stream(vec![
            EventStreamEvent {
                event: Some("messageStart".into()),
                payload: Some(json!({"role": "assistant"})),
                ..Default::default()
            },
            throttling(),
        ]),
    ))
    .await
    .unwrap();
    m.mount(Stub {
        matcher: StubMatch {
            body_contains_json: Some(json!({"system": [{"text": "stub me"}]})),
            ..StubMatch::default()
        },
        response: StubResponse::Json { status: 200, body: json!({"stubbed": true}), headers: BTreeMap::new() },
        times: Some(1),
    })
    .await
    .unwrap();
    m.mount(Stub::new(
        StubMatch { path_contains: Some("/converse".into()), ..StubMatch::default() },
        StubResponse::Fault(Fault::Malformed),
    ))
    .await
    .unwrap();

    let r = bedrock_post(&m, "converse-stream", &[], &converse_body()).await;
    let frames = decode_frames(&r.body);
    assert_eq!(frames.len(), 2);
    // A named Converse event: its type in the header, its JSON as the payload.
    assert_eq!(frames[0].0[":event-type"], "messageStart");
    let payload: Value = serde_json::from_slice(&frames[0].1).unwrap();
    assert_eq!(payload["role"], "assistant");
    assert_eq!(frames[1].0[":exception-type"], "throttlingException");

    let mut body = converse_body();
    body["system"] = json!([{"text": "stub me"}]);
    let r = bedrock_post(&m, "converse", &[], &body).await;
    assert_eq!(r.json(), json!({"stubbed": true}));

    // The malformed fault cuts the route's own default body in half.
    let r = bedrock_post(&m, "converse", &[], &converse_body()).await;
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("{\"output\":{\"message\":"), "{}", r.text());
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    // The strict profile still answers first.
    let r = post(&format!("{}/model/m/converse", m.url()), &[], &converse_body()).await;
    assert_eq!(r.status, 403);
}
