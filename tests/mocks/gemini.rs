//! Gemini on Google AI Studio: its key, its model check, its body checks,
//! its default answers and streams, and scenario stubs served for it.

use super::*;

const KEY: (&str, &str) = ("x-goog-api-key", "AIza-mock");

fn gemini_body() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
}

#[tokio::test]
async fn gemini_checks_its_key_then_the_model_then_the_body() {
    let m = start(MockKind::Gemini).await;
    let url = |model: &str, verb: &str| format!("{}/v1beta/models/{model}:{verb}", m.url());

    let r = post(&url("gemini-2.5-flash", "generateContent"), &[], &gemini_body()).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["status"], "PERMISSION_DENIED");
    // An API key sent as a bearer token is no OAuth token.
    let r = post(&url("gemini-2.5-flash", "generateContent"), &[("authorization", "Bearer AIza-mock")], &gemini_body())
        .await;
    assert_eq!((r.status, r.json()["error"]["status"].as_str()), (401, Some("UNAUTHENTICATED")));

    let r = post(&url("gpt-4o", "generateContent"), &[KEY], &gemini_body()).await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("models/gpt-4o is not found"), "{}", r.text());

    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "messages": [], "generationConfig": {"max_tokens": 1}});
    let r = post(&url("gemini-2.5-flash", "generateContent"), &[KEY], &body).await;
    assert_eq!(r.status, 400);
    let e = r.json()["error"].clone();
    assert_eq!(e["status"], "INVALID_ARGUMENT");
    assert_eq!(
        e["message"],
        "Invalid JSON payload received. Unknown name \"messages\": Cannot find field.\n\
         Invalid JSON payload received. Unknown name \"max_tokens\" at 'generation_config': Cannot find field."
    );
    assert_eq!(e["details"][0]["fieldViolations"][1]["field"], "generation_config");

    let body = json!({"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]});
    let r = post(&url("gemini-2.5-flash", "generateContent"), &[KEY], &body).await;
    assert_eq!((r.status, r.json()["error"]["message"].as_str()), (400, Some("Please use a valid role: user, model.")));

    // The key in the query is Google's other way of sending it.
    let r = post(&format!("{}?key=AIza-mock", url("gemini-2.5-flash", "generateContent")), &[], &gemini_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn gemini_answers_a_generate_content_response() {
    let m = start(MockKind::Gemini).await;
    let url = format!("{}/v1beta/models/gemini-2.5-flash:generateContent", m.url());
    let mut body = gemini_body();
    body["generationConfig"] = json!({"candidateCount": 2, "temperature": 0.3});
    let r = post(&url, &[KEY], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["candidates"].as_array().map(Vec::len), Some(2));
    assert_eq!(j["candidates"][1]["index"], 1);
    assert_eq!(j["candidates"][0]["finishReason"], "STOP");
    assert_eq!(j["candidates"][0]["content"]["role"], "model");
    assert!(j["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap().contains("gemini mock `m1`"));
    assert_eq!(j["modelVersion"], "gemini-2.5-flash");
    assert!(j["responseId"].as_str().is_some_and(|id| !id.is_empty()));
    let u = &j["usageMetadata"];
    let n = |k: &str| u[k].as_u64().unwrap();
    assert_eq!(n("promptTokenCount") + n("candidatesTokenCount"), n("totalTokenCount"));
}

#[tokio::test]
async fn gemini_streams_sse_with_alt_sse_and_a_json_array_without() {
    let m = start(MockKind::Gemini).await;
    let url = format!("{}/v1beta/models/gemini-2.5-flash:streamGenerateContent", m.url());
    let r = post(&format!("{url}?alt=sse"), &[KEY], &gemini_body()).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
    let events: Vec<Value> = r
        .text()
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(events.len() > 1, "{}", r.text());
    let (last, rest) = events.split_last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert!(rest.iter().all(|e| e["candidates"][0].get("finishReason").is_none()));
    let text: String =
        events.iter().map(|e| e["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap()).collect();
    assert!(text.contains("gemini mock `m1`"), "{text}");
    assert!(!r.text().contains("[DONE]"), "Gemini's streams have no terminator");

    let r = post(&url, &[KEY], &gemini_body()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json().as_array().map(Vec::len), Some(events.len()));
}

#[tokio::test]
async fn scenario_stubs_serve_gemini_streams_and_faults() {
    let m = start(MockKind::Gemini).await;
    let chunk = r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": "Once"}]}, "index": 0}]}"#;
    m.mount(Stub::new(
        StubMatch::post("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
        StubResponse::Sse {
            status: 200,
            events: vec![StubEvent::data(chunk)],
            hold_before: None,
            cut_after: None,
            headers: BTreeMap::new(),
        },
    ))
    .await
    .unwrap();
    m.mount(Stub::new(
        StubMatch::post("/v1beta/models/gemini-2.0-flash:generateContent"),
        StubResponse::Fault(Fault::RateLimited { retry_after_secs: 9 }),
    ))
    .await
    .unwrap();
    let r = post(
        &format!("{}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", m.url()),
        &[KEY],
        &gemini_body(),
    )
    .await;
    assert_eq!(r.text(), format!("data: {chunk}\n\n"));
    let r = post(&format!("{}/v1beta/models/gemini-2.0-flash:generateContent", m.url()), &[KEY], &gemini_body()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("9"));
    assert_eq!(r.json()["error"]["status"], "RESOURCE_EXHAUSTED");
    // The strict profile still runs first: a stub cannot answer a request
    // the service refuses.
    let r = post(&format!("{}/v1beta/models/gemini-2.0-flash:generateContent", m.url()), &[], &gemini_body()).await;
    assert_eq!(r.status, 403);
}
