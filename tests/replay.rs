//! Record and replay: every fixture cassette imports, every replayable one
//! replays green, a gateway bug shows up as a replay diff, and recording
//! through the proxy redacts secrets while the cassette still replays.
//!
//! No test sleeps: the recorder is finished explicitly, mocks and gateways
//! listen on 127.0.0.1:0.

use std::path::{Path, PathBuf};

use postmortem::gateway::KnownBugs;
use postmortem::mocks::{MockKind, MockOptions, MockProvider};
use postmortem::replay::cassette::{Api, Body, ClientSide};
use postmortem::replay::record::{RecordOptions, Recorder};
use postmortem::replay::{
    load_any, parse_any, replay_cassette, scenario_stubs, Cassette, ReplayOptions, ReplayVerdict, SourceFormat,
};
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("fixtures dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "json")) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("fixtures/cassettes"), &mut out);
    out.sort();
    out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

fn fixture(name: &str) -> PathBuf {
    fixture_files().into_iter().find(|p| p.display().to_string().contains(name)).expect("fixture exists")
}

#[test]
fn every_fixture_cassette_imports_and_round_trips() {
    let files = fixture_files();
    assert_eq!(files.len(), 29, "SOURCES.md lists 29 files");
    for f in &files {
        let (c, format) = load_any(f).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.interactions.is_empty(), "{}", rel(f));
        assert_ne!(c.metadata.provider, "", "{}", rel(f));
        let expected_format =
            if f.extension().is_some_and(|e| e == "json") { SourceFormat::Wiremock } else { SourceFormat::Vcr };
        assert_eq!(format, expected_format, "{}", rel(f));
        // Our YAML reads back to the same cassette.
        let yaml = c.to_yaml().expect("serializes");
        let again = Cassette::parse(&yaml, "again").unwrap_or_else(|e| panic!("{}: {e}\n{yaml}", rel(f)));
        assert_eq!(again, c, "{}", rel(f));
        // Imported cassettes lint clean.
        for line in yaml.lines() {
            assert_eq!(postmortem::replay::redact::find_secrets(line), vec![], "{}: {line}", rel(f));
        }
    }
}

#[test]
fn vcr_variants_are_read_as_intended() {
    // pydantic-ai's parsed_body and an SSE body.string.
    let (c, _) = load_any(&fixture("test_request_stream_fallback_for_high_max_tokens")).unwrap();
    let i = &c.interactions[0];
    assert_eq!(i.api(), Api::Anthropic);
    assert_eq!(i.request.body.json.as_ref().and_then(|b| b.get("max_tokens")), Some(&json!(32000)));
    let events = i.response.body.sse.as_ref().expect("sse");
    assert_eq!(events.iter().filter(|e| e.event.is_some()).count(), 7);
    // vcrpy's body string with a JSON request body.
    let (c, _) = load_any(&fixture("test_tools_streaming_variant_a")).unwrap();
    assert_eq!(c.interactions[0].request.body.json.as_ref().and_then(|b| b.get("stream")), Some(&json!(true)));
    assert!(c.interactions[0].response.body.sse.as_ref().is_some_and(|e| e.len() > 3));
    // !!binary: Bedrock's event stream decodes into frames, headers into text.
    let (c, _) = load_any(&fixture("test_bedrock_model_stream")).unwrap();
    let i = &c.interactions[0];
    assert_eq!(i.request.header("content-type"), Some("application/json"));
    let frames = i.response.body.eventstream.as_ref().expect("eventstream");
    assert!(frames.len() > 5 && frames.iter().all(|f| f.raw_base64.is_none()), "{frames:?}");
    assert_eq!(frames[0].header(":event-type"), Some("messageStart"));
    assert_eq!(frames[0].payload.as_ref().and_then(|p| p.get("role")), Some(&json!("assistant")));
}

const NOT_REPLAYABLE: &[&str] = &[
    "test_background_mode_streaming_vcr",
    "test_openai_responses_model_http_error",
    "TestBedrock.test_titan_v2_with_dimensions",
    "test_bedrock_model.yaml",
    "test_bedrock_model_stream",
    "test_bedrock_error",
    "test_google_model_stream",
    "test_google_tool_output",
    "rate_limit.json",
    "messages_success.json",
    "converse_sucesss.json",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replayable_fixture_replays_green() {
    let mut replayed = 0;
    let mut passed = Vec::new();
    for f in fixture_files() {
        let (c, _) = load_any(&f).unwrap();
        let report = replay_cassette(&c, &rel(&f), &ReplayOptions::default()).await;
        let name = rel(&f);
        if NOT_REPLAYABLE.iter().any(|n| name.contains(n)) {
            assert_eq!(report.verdict, ReplayVerdict::NotReplayable, "{}", report.render());
            assert!(report.reason.as_deref().is_some_and(|r| !r.is_empty()));
            continue;
        }
        assert_eq!(report.verdict, ReplayVerdict::Passed, "{}", report.render());
        replayed += report.replayed();
        passed.push(name);
    }
    assert_eq!(passed.len(), 18, "{passed:#?}");
    assert_eq!(replayed, 27, "interactions replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_cassettes_replay_what_the_gateway_serves() {
    let (c, _) = load_any(&fixture("test_live_fallback_failover_capability_load_and_recovery")).unwrap();
    assert_eq!(c.metadata.provider, "mixed");
    let report = replay_cassette(&c, "mixed", &ReplayOptions::default()).await;
    assert_eq!(report.verdict, ReplayVerdict::Passed, "{}", report.render());
    assert!(report.interactions[0].skipped.as_deref().is_some_and(|r| r.contains("Responses API")));
    assert!(report.interactions[1].passed() && report.interactions[2].passed());
}

/// The embeddings fixture without `encoding_format`, so the client does not
/// send one and the incident-4 bug has something to add.
fn embeddings_without_encoding_format() -> Cassette {
    let (mut c, _) = load_any(&fixture("TestOpenAI.test_query")).unwrap();
    let body = c.interactions[0].request.body.json.as_mut().and_then(Value::as_object_mut).expect("json body");
    body.remove("encoding_format");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_bug_shows_up_as_a_request_diff() {
    let c = embeddings_without_encoding_format();
    let clean = replay_cassette(&c, "embeddings", &ReplayOptions::default()).await;
    assert_eq!(clean.verdict, ReplayVerdict::Passed, "{}", clean.render());

    let bugs = KnownBugs { null_optional_params: true, ..KnownBugs::default() };
    let opts = ReplayOptions { bugs, update: true, ..ReplayOptions::default() };
    let broken = replay_cassette(&c, "embeddings", &opts).await;
    assert_eq!(broken.verdict, ReplayVerdict::Failed, "{}", broken.render());
    let diffs: Vec<_> = broken.differences().collect();
    assert_eq!(diffs.len(), 1, "{}", broken.render());
    assert_eq!(diffs[0].path, "body.encoding_format");
    assert_eq!(diffs[0].recorded, None, "the recording has no such key");
    assert_eq!(diffs[0].replayed, Some(Value::Null), "the bug sends an explicit null");
    let text = broken.render();
    assert!(text.contains("+ body.encoding_format: null (not in the recording)"), "{text}");
    assert!(text.contains("no recorded interaction matches POST /v1/embeddings"), "{text}");
    // The client still got the recorded answer: only the request differs.
    assert_eq!(broken.interactions[0].findings.len(), 1);

    // --update takes the new behaviour in: the bug now matches, the fix does not.
    let updated = broken.updated.clone().expect("an updated cassette");
    let i = &updated.interactions[0];
    assert_eq!(i.request.body.json.as_ref().and_then(|b| b.get("encoding_format")), Some(&Value::Null));
    assert!(i.client.as_ref().and_then(|c| c.request.as_ref()).is_some(), "the client request is kept");
    let again = replay_cassette(&updated, "updated", &ReplayOptions { bugs, ..ReplayOptions::default() }).await;
    assert_eq!(again.verdict, ReplayVerdict::Passed, "{}", again.render());
    let fixed = replay_cassette(&updated, "updated", &ReplayOptions::default()).await;
    assert_eq!(fixed.verdict, ReplayVerdict::Failed);
    assert!(fixed.differences().any(|d| d.path == "body.encoding_format" && d.replayed.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_bug_and_strictness_are_loud() {
    // Incident 4's chat half: six optional params appear as null.
    let (c, _) = load_any(&fixture("test_openai_tool_call_roundtrip_wire_stable")).unwrap();
    let bugs = KnownBugs { null_optional_params: true, ..KnownBugs::default() };
    let r = replay_cassette(&c, "chat", &ReplayOptions { bugs, ..ReplayOptions::default() }).await;
    assert_eq!(r.verdict, ReplayVerdict::Failed);
    for p in ["temperature", "top_p", "max_tokens", "stop", "seed", "n"] {
        assert!(r.differences().any(|d| d.path == format!("body.{p}")), "{p}: {}", r.render());
    }

    // A client request the gateway rejects: the recording goes unused and
    // the client's response differs; both are failures.
    let mut c = embeddings_without_encoding_format();
    let mut client = c.interactions[0].request.clone();
    client.url = "/v1/embeddings".into();
    client.body = Body::json(json!({"model": "text-embedding-3-small"}));
    c.interactions[0].client = Some(ClientSide { request: Some(client), response: None });
    let r = replay_cassette(&c, "unused", &ReplayOptions::default()).await;
    assert_eq!(r.verdict, ReplayVerdict::Failed);
    let text = r.render();
    assert!(text.contains("unused: the gateway never sent this recorded request upstream"), "{text}");
    assert!(text.contains("response.status"), "{text}");
    let lenient =
        replay_cassette(&c, "unused", &ReplayOptions { allow_unused: true, ..ReplayOptions::default() }).await;
    assert_eq!(lenient.interactions[0].warnings.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replay_gives_the_same_verdicts() {
    for name in ["test_openai_tool_call_roundtrip_wire_stable", "test_multiple_parallel_tool_calls"] {
        let (c, _) = load_any(&fixture(name)).unwrap();
        let r = replay_cassette(&c, name, &ReplayOptions { concurrency: 4, ..ReplayOptions::default() }).await;
        assert_eq!(r.verdict, ReplayVerdict::Passed, "{}", r.render());
    }
    // With a bug, each request is still paired with its own recording.
    let (c, _) = load_any(&fixture("test_openai_tool_call_roundtrip_wire_stable")).unwrap();
    let bugs = KnownBugs { null_optional_params: true, ..KnownBugs::default() };
    let r = replay_cassette(&c, "bug", &ReplayOptions { bugs, concurrency: 4, ..ReplayOptions::default() }).await;
    assert_eq!(r.verdict, ReplayVerdict::Failed);
    assert!(r.extra_requests.is_empty(), "{}", r.render());
    for i in &r.interactions {
        assert_eq!(i.findings.len(), 1, "{}", r.render());
        assert!(i.findings[0].differences.iter().all(|d| d.path.starts_with("body.") && d.recorded.is_none()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn har_and_bedrock_invoke_model_replay() {
    let har = json!({"log": {"version": "1.2", "creator": {"name": "test", "version": "1"}, "entries": [{
        "startedDateTime": "2025-01-01T00:00:00Z", "time": 5,
        "request": {"method": "POST", "url": "https://api.openai.com/v1/embeddings", "httpVersion": "HTTP/1.1",
            "headers": [{"name": "content-type", "value": "application/json"}], "queryString": [], "cookies": [],
            "headersSize": -1, "bodySize": -1,
            "postData": {"mimeType": "application/json", "text": "{\"model\":\"text-embedding-3-small\",\"input\":\"hi\"}"}},
        "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1", "cookies": [], "redirectURL": "",
            "headers": [{"name": "content-type", "value": "application/json"}], "headersSize": -1, "bodySize": -1,
            "content": {"size": 10, "mimeType": "application/json",
                "text": "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":[0.5]}],\"model\":\"text-embedding-3-small\",\"usage\":{\"prompt_tokens\":1,\"total_tokens\":1}}"}},
        "cache": {}, "timings": {"send": 0, "wait": 5, "receive": 0}}]}});
    let (c, format) = parse_any(&har.to_string(), "t.har").unwrap();
    assert_eq!(format, SourceFormat::Har);
    let r = replay_cassette(&c, "har", &ReplayOptions::default()).await;
    assert_eq!(r.verdict, ReplayVerdict::Passed, "{}", r.render());

    // InvokeModel (buffered and streamed) through /v1/messages with a bedrock/ deployment.
    let model = "anthropic.claude-3-haiku-20240307-v1%3A0";
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-3-haiku", "stop_reason": null, "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Paris"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
        json!({"type": "message_stop"}),
    ];
    let frames: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"at_ms": i * 10, "headers": {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, "chunk": e, "payload": {"p": "abc"}}))
        .collect();
    let messages = json!([{"role": "user", "content": "Capital of France?"}]);
    let request = |op: &str| {
        json!({
            "method": "POST",
            "url": format!("https://bedrock-runtime.eu-west-1.amazonaws.com/model/{model}/{op}"),
            "headers": {"content-type": "application/json"},
            "body": {"json": {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
                "anthropic_beta": ["context-1m-2025-08-07"], "messages": messages}},
        })
    };
    // The client asks for one flag Bedrock accepts and one it does not.
    let client = |stream: bool| {
        let mut body =
            json!({"model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0", "max_tokens": 50, "messages": messages});
        if stream {
            body["stream"] = json!(true);
        }
        json!({"request": {"method": "POST", "url": "/v1/messages",
            "headers": {"content-type": "application/json", "anthropic-beta": "context-1m-2025-08-07,files-api-2025-04-14"},
            "body": {"json": body}}})
    };
    let cassette = json!({
        "format": "postmortem-cassette/v1",
        "metadata": {"provider": "bedrock", "source": "hand-made for the test"},
        "interactions": [
            {"request": request("invoke"), "client": client(false), "response": {"status": 200, "headers": {"content-type": "application/json"},
                "body": {"json": {"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-3-haiku",
                    "content": [{"type": "text", "text": "Paris"}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": 5, "output_tokens": 2}}}}},
            {"request": request("invoke-with-response-stream"), "client": client(true), "response": {"status": 200,
                "headers": {"content-type": "application/vnd.amazon.eventstream"}, "body": {"eventstream": frames}}},
        ],
    });
    let yaml = serde_yaml_ng::to_string(&cassette).unwrap();
    let c = Cassette::parse(&yaml, "bedrock.yaml").unwrap();
    let r = replay_cassette(&c, "bedrock", &ReplayOptions::default()).await;
    // The bundled beta policy keeps context-1m for Bedrock and drops files-api.
    assert_eq!(r.verdict, ReplayVerdict::Passed, "{}", r.render());
    assert_eq!(r.replayed(), 2);
    let bugs = KnownBugs { forward_all_betas: true, ..KnownBugs::default() };
    let r = replay_cassette(&c, "bedrock", &ReplayOptions { bugs, ..ReplayOptions::default() }).await;
    assert_eq!(r.verdict, ReplayVerdict::Failed);
    assert!(r.differences().any(|d| d.path == "body.anthropic_beta[1]"), "{}", r.render());
}

// Fake secrets assembled at run time so this file lints clean.
fn fake_openai_key() -> String {
    format!("sk-proj-{}", "Qw3eR5tY7uI9oP1aS3dF5gH7jK9lZ2xC4vB6nM8")
}
fn fake_anthropic_key() -> String {
    format!("sk-ant-api03-{}", "Mn8Bv6Cx4Za2Lk0Jh8Gf6Ds4Aq2We0Rt8Yu6Io4Pa2Sd0Fg8Hj6Kl4Zx2Cv0Bn8Mq6Wa4")
}
fn fake_aws_key_id() -> String {
    format!("AKIA{}", "R7TQ2WXKZP4M6N3L")
}
fn fake_jwt() -> String {
    format!(
        "eyJ{}.eyJ{}.{}",
        "hbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9",
        "zdWIiOiJ1c2VyLTEyMyIsImV4cCI6MTk5OTk5OTk5OX0",
        "Kx9vQ2mT5nW8pL1rJ4hF7dS0aG3kE6yU9iO2cB5xZ8v"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_redacts_secrets_and_still_replays() {
    let upstream = MockProvider::start(MockKind::Openai, "upstream", MockOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("recorded.yaml");
    let recorder =
        Recorder::start(RecordOptions { upstream: upstream.url(), listen: "127.0.0.1:0".into(), out: out.clone() })
            .await
            .unwrap();
    let secrets = [fake_openai_key(), fake_anthropic_key(), fake_aws_key_id(), fake_jwt()];
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": format!("my aws key is {} and my token {}", secrets[2], secrets[3])}],
        "user": secrets[1],
        "metadata": {"api_key": secrets[0]},
    });
    let send = |body: Value| {
        http.post(format!("{}/v1/chat/completions", recorder.url()))
            .bearer_auth(&secrets[0])
            .header("x-api-key", &secrets[1])
            .header("cookie", format!("session={}", secrets[3]))
            .json(&body)
            .send()
    };
    let plain = send(body.clone()).await.unwrap();
    assert_eq!(plain.status(), 200);
    let plain: Value = plain.json().await.unwrap();
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let stream = send(streamed).await.unwrap();
    assert_eq!(stream.status(), 200);
    let text = stream.text().await.unwrap();
    assert!(text.contains("data: [DONE]"), "the stream went through the proxy whole: {text}");
    // What the upstream got carries the secrets: the proxy forwards them.
    assert!(upstream.journal()[0].header("authorization").is_some_and(|a| a.contains(&secrets[0])));

    let cassette = recorder.finish().await.unwrap();
    let written = std::fs::read_to_string(&out).unwrap();
    for s in &secrets {
        assert!(!written.contains(s.as_str()), "a secret reached the cassette file");
    }
    assert!(written.contains("Bearer [REDACTED]"));
    assert_eq!(postmortem::cli::lint::lint_file(&out), vec![], "the recording lints clean");
    assert_eq!(cassette.interactions.len(), 2);
    assert!(cassette.metadata.headers_complete);
    for rule in [
        "header:authorization",
        "header:x-api-key",
        "header:cookie",
        "body:openai-key",
        "body:anthropic-key",
        "body:aws-access-key-id",
        "body:jwt",
    ] {
        assert!(cassette.metadata.redactions.contains_key(rule), "{rule}: {:?}", cassette.metadata.redactions);
    }
    let recorded = &cassette.interactions[0];
    assert_eq!(recorded.response.body.json.as_ref().and_then(|b| b.get("id")), plain.get("id"));
    let events = cassette.interactions[1].response.body.sse.as_ref().expect("sse recorded");
    assert!(
        events.iter().all(|e| e.at_ms.is_some()) && events.last().and_then(|e| e.data.as_deref()) == Some("[DONE]")
    );

    // Replay: the redacted cassette still matches the gateway's traffic.
    let reloaded = Cassette::load(&out).unwrap();
    let r = replay_cassette(&reloaded, "recorded", &ReplayOptions::default()).await;
    assert_eq!(r.verdict, ReplayVerdict::Passed, "{}", r.render());

    // As scenario stubs, the recording answers the original, secret-bearing
    // request: matching leaves out what redaction replaced.
    let mock = MockProvider::start(MockKind::Openai, "scenario", MockOptions::default()).await.unwrap();
    for stub in scenario_stubs(&out, MockKind::Openai).unwrap() {
        mock.mount(stub).await.unwrap();
    }
    let again: Value = http
        .post(format!("{}/v1/chat/completions", mock.url()))
        .bearer_auth("test-openai-credential")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again.get("id"), plain.get("id"), "the recorded answer, not the mock's default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_response_shows_up_event_by_event() {
    // What the client should get is the recording, unless `client.response`
    // says otherwise: a tampered expectation must fail at the right event.
    let (mut c, _) = load_any(&fixture("test_request_stream_fallback_for_high_max_tokens")).unwrap();
    let mut expected = c.interactions[0].response.clone();
    let events = expected.body.sse.as_mut().expect("sse");
    let delta = events.iter_mut().find(|e| e.event.as_deref() == Some("content_block_delta")).expect("a delta");
    delta.data = Some(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"3"}}"#.into());
    events[0].event = Some("message_begin".into());
    c.interactions[0].client = Some(ClientSide { request: None, response: Some(expected) });
    let r = replay_cassette(&c, "tampered", &ReplayOptions::default()).await;
    assert_eq!(r.verdict, ReplayVerdict::Failed);
    let paths: Vec<&str> = r.differences().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, vec!["response.events[0].event", "response.events[3].data.delta.text"], "{}", r.render());

    // One event fewer from the gateway than recorded: counted, not ignored.
    let (mut c, _) = load_any(&fixture("test_run_stream_sync_streams_real_model")).unwrap();
    let mut expected = c.interactions[1].response.clone();
    expected.body.sse.as_mut().expect("sse").insert(
        1,
        postmortem::replay::cassette::RecordedEvent { data: Some(r#"{"choices":[]}"#.into()), ..Default::default() },
    );
    c.interactions[1].client = Some(ClientSide { request: None, response: Some(expected) });
    let r = replay_cassette(&c, "extra event", &ReplayOptions::default()).await;
    assert_eq!(r.verdict, ReplayVerdict::Failed);
    assert!(r.differences().any(|d| d.path == "response.events"), "{}", r.render());
    assert!(r.interactions[0].passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_cassettes_replay_across_stub_windows() {
    use postmortem::replay::cassette::{Headers, Interaction, Request, Response};
    // 150 interactions (more than one window of mounted stubs); the same
    // request twice with different answers across a window boundary, as a
    // retry after a 429 would be.
    let interactions: Vec<Interaction> = (0..150)
        .map(|i| {
            let q = if i == 64 { 63 } else { i };
            let (status, body) = if i == 63 {
                (429, json!({"error": {"message": "slow down", "type": "rate_limit"}}))
            } else {
                (200, json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [i]}], "model": "e"}))
            };
            Interaction {
                provider: None,
                request: Request {
                    method: "POST".into(),
                    url: "https://api.openai.com/v1/embeddings".into(),
                    headers: Headers::new(),
                    body: Body::json(json!({"model": "e", "input": format!("text {q}")})),
                },
                response: Response { status, headers: Headers::new(), body: Body::json(body) },
                elapsed_ms: None,
                client: None,
            }
        })
        .collect();
    let c = Cassette::new("long", interactions);
    for concurrency in [1, 8] {
        let r = replay_cassette(&c, "long", &ReplayOptions { concurrency, ..ReplayOptions::default() }).await;
        assert_eq!(r.verdict, ReplayVerdict::Passed, "concurrency {concurrency}: {}", r.render());
        assert_eq!(r.replayed(), 150);
    }
}

#[test]
fn importing_nothing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("empty.json", "[]".to_string()),
        (
            "empty.har",
            r#"{"log": {"version": "1.2", "creator": {"name": "x", "version": "1"}, "entries": []}}"#.to_string(),
        ),
    ];
    for (name, text) in cases {
        let input = dir.path().join(name);
        std::fs::write(&input, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_postmortem"))
            .arg("import")
            .arg(&input)
            .arg("--out")
            .arg(dir.path().join("out.yaml"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no interactions"), "{name}");
        assert!(!dir.path().join("out.yaml").exists(), "{name}: an empty cassette was written");
    }
}

#[test]
fn lint_reports_binary_and_non_utf8_files_among_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir_all(&scenarios).unwrap();
    std::fs::write(scenarios.join("x.bin"), b"a\0b").unwrap();
    std::fs::write(scenarios.join("y.yaml"), b"name: x\n\xff\xfe\n").unwrap();
    let bin = postmortem::cli::lint::lint_file(&scenarios.join("x.bin"));
    assert!(bin.iter().any(|f| f.to_string().contains("binary file")), "{bin:?}");
    let bad = postmortem::cli::lint::lint_file(&scenarios.join("y.yaml"));
    assert!(bad.iter().any(|f| f.to_string().contains(":2: not valid UTF-8")), "{bad:?}");
}
