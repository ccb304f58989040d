//! Property-based conformance: generated provider answers (text full of
//! SSE and JSON syntax, control characters and non-ASCII, tool calls with
//! odd argument strings, arbitrary usage counts and stop reasons) and
//! generated client bodies (valid and invalid), sent through our gateway to
//! strict mocks; every exchange must keep every contract. Seeded and
//! reproducible (proptest's persistence and `PROPTEST_SEED`), so each run
//! explores more than the fixed conformance scenarios.

use postmortem::contracts::{self, Attribution, ClientRequest, ClientResponse, Exchange, Setup, UpstreamCall};
use postmortem::gateway::{Config, GatewayBuilder};
use postmortem::mocks::{MockKind, MockOptions, MockProvider, Stub};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

const OPENAI_KEY: &str = "test-openai-credential";
const ANTHROPIC_KEY: &str = "test-anthropic-credential";
const GEMINI_KEY: &str = "test-gemini-credential";

/// One gateway and two mocks for every case; stubs are swapped per case.
struct Rig {
    rt: tokio::runtime::Runtime,
    openai: MockProvider,
    anthropic: MockProvider,
    gemini: MockProvider,
    base: String,
    http: reqwest::Client,
    setup: Setup,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let (openai, anthropic, gemini, base, setup) = rt.block_on(async {
            let openai = MockProvider::start(MockKind::Openai, "openai", MockOptions::default()).await.expect("mock");
            let anthropic =
                MockProvider::start(MockKind::Anthropic, "anthropic", MockOptions::default()).await.expect("mock");
            let gemini = MockProvider::start(MockKind::Gemini, "gemini", MockOptions::default()).await.expect("mock");
            let config = json!({
                "model_list": [
                    {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_base": format!("{}/v1", openai.url()), "api_key": OPENAI_KEY}},
                    {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_base": anthropic.url(), "api_key": ANTHROPIC_KEY}},
                    {"model_name": "gemini", "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_base": gemini.url(), "api_key": GEMINI_KEY}},
                ],
                "router_settings": {"num_retries": 0},
            });
            let yaml = serde_yaml_ng::to_string(&config).expect("yaml");
            let cfg = Config::parse(&yaml, "props.yaml").expect("config").config;
            let gw = GatewayBuilder::new(cfg).build().await.expect("gateway");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let base = format!("http://{}", listener.local_addr().expect("addr"));
            tokio::spawn(postmortem::gateway::server::serve(gw, listener));
            let mocks: BTreeMap<String, String> = [
                ("openai".to_string(), openai.url()),
                ("anthropic".to_string(), anthropic.url()),
                ("gemini".to_string(), gemini.url()),
            ]
            .into();
            let setup = Setup::from_config(&config, &mocks, &BTreeMap::new());
            (openai, anthropic, gemini, base, setup)
        });
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(20)).build().expect("client");
        Rig { rt, openai, anthropic, gemini, base, http, setup }
    })
}

/// Sends one request with `stub` mounted on `mock`, and checks the exchange
/// (and its status, when one is required: a property over answers must not
/// pass because no answer came).
fn exchange(mock: &str, stub: Value, path: &str, body: Vec<u8>, want: Option<u16>) -> Result<(), String> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let r = rig();
    r.rt.block_on(async {
        let stub: Stub = serde_json::from_value(stub).map_err(|e| format!("stub: {e}"))?;
        for m in [&r.openai, &r.anthropic, &r.gemini] {
            m.reset().await;
            m.clear_journal();
        }
        let target = match mock {
            "openai" => &r.openai,
            "gemini" => &r.gemini,
            _ => &r.anthropic,
        };
        target.mount(stub).await.map_err(|e| e.to_string())?;
        let resp = r
            .http
            .post(format!("{}{path}", r.base))
            .header("content-type", "application/json")
            .header("anthropic-version", "2023-06-01")
            .body(body.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers =
            resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
        let (body_in, complete) = match resp.bytes().await {
            Ok(b) => (b.to_vec(), true),
            Err(_) => (Vec::new(), false),
        };
        let mut upstream = Vec::new();
        for (name, m) in [("openai", &r.openai), ("anthropic", &r.anthropic), ("gemini", &r.gemini)] {
            for (request, answer) in m.exchanges() {
                upstream.push(UpstreamCall { provider: name.into(), kind: m.kind(), request, answer });
            }
        }
        upstream.sort_by_key(|c| c.answer.seq);
        let x = Exchange {
            request: ClientRequest { method: "POST".into(), path: path.into(), headers: vec![], body },
            response: ClientResponse { status, headers, body: body_in, complete, elapsed: None },
            upstream,
            attribution: Attribution::Exact,
            egress: Vec::new(),
        };
        if want.is_some_and(|w| w != status) || x.upstream.is_empty() && want.is_some() {
            return Err(format!(
                "expected {want:?} from the provider's answer, got {status}: {}",
                String::from_utf8_lossy(&x.response.body)
            ));
        }
        let found = contracts::check(&x, &r.setup);
        if found.is_empty() {
            Ok(())
        } else {
            Err(format!("{found:#?}\nclient got {status}: {}", String::from_utf8_lossy(&x.response.body)))
        }
    })
}

/// Text that stresses framing and escaping.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("data: [DONE]\n\n".to_string()),
            Just("event: message_stop\n".to_string()),
            Just("\r\n".to_string()),
            Just("\"}]}".to_string()),
            Just("\\u0000".to_string()),
            Just("🚀 déjà".to_string()),
            "[ -~]{0,12}",
            "\\PC{0,6}",
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

fn openai_finish() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("stop"), Just("length"), Just("content_filter")]
}

fn anthropic_stop() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("end_turn"), Just("max_tokens"), Just("stop_sequence")]
}

/// Splits `s` into up to `n` pieces at char boundaries.
fn pieces(s: &str, cuts: &[usize]) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
    points.push(0);
    points.push(chars.len());
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| chars[w[0]..w[1]].iter().collect()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn openai_answers_pass_through_unchanged(
        content in text(), finish in openai_finish(), prompt in 0u64..100_000, completion in 0u64..10_000,
        args in text(), with_tool in any::<bool>(), stream in any::<bool>(), cuts in prop::collection::vec(0usize..64, 0..4),
    ) {
        let model = "gpt-4o-2024-08-06";
        let tool_calls = with_tool.then(|| json!([{"id": "call_p1", "type": "function", "function": {"name": "f", "arguments": args}}]));
        let stub = if stream {
            let mut events: Vec<Value> = pieces(&content, &cuts).into_iter().enumerate().map(|(i, p)| {
                let delta = if i == 0 { json!({"role": "assistant", "content": p}) } else { json!({"content": p}) };
                json!({"data": json!({"id": "chatcmpl-p", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": null}]}).to_string()})
            }).collect();
            if let Some(tc) = &tool_calls {
                let mut t = tc[0].clone();
                t["index"] = json!(0);
                events.push(json!({"data": json!({"id": "chatcmpl-p", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [{"index": 0, "delta": {"tool_calls": [t]}, "finish_reason": null}]}).to_string()}));
            }
            events.push(json!({"data": json!({"id": "chatcmpl-p", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}).to_string()}));
            events.push(json!({"data": "[DONE]"}));
            json!({"response": {"sse": {"events": events}}})
        } else {
            let mut message = json!({"role": "assistant", "content": content});
            if let Some(tc) = tool_calls { message["tool_calls"] = tc; }
            json!({"response": {"json": {"body": {"id": "chatcmpl-p", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}}}})
        };
        let body = json!({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        let result = exchange("openai", stub, "/v1/chat/completions", serde_json::to_vec(&body).unwrap(), Some(200));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn anthropic_answers_survive_translation(
        content in text(), stop in anthropic_stop(), input in 0u64..100_000, output in 0u64..10_000,
        cache_read in prop::option::of(0u64..50_000), city in text(), with_tool in any::<bool>(),
        stream in any::<bool>(), messages_api in any::<bool>(), cuts in prop::collection::vec(0usize..64, 0..4),
    ) {
        let mut usage = json!({"input_tokens": input, "output_tokens": output});
        if let Some(c) = cache_read { usage["cache_read_input_tokens"] = json!(c); }
        let stop = if with_tool { "tool_use" } else { stop };
        let stub = if stream {
            let mut start_usage = usage.clone();
            start_usage["output_tokens"] = json!(1);
            let mut events = vec![json!({"type": "message_start", "message": {"id": "msg_p", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})];
            for p in pieces(&content, &cuts) {
                events.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}));
            }
            events.push(json!({"type": "content_block_stop", "index": 0}));
            if with_tool {
                let input_json = json!({"city": city}).to_string();
                events.push(json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_p", "name": "f", "input": {}}}));
                for p in pieces(&input_json, &cuts) {
                    events.push(json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": p}}));
                }
                events.push(json!({"type": "content_block_stop", "index": 1}));
            }
            events.push(json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": output}}));
            events.push(json!({"type": "message_stop"}));
            let events: Vec<Value> = events.into_iter().map(|e| json!({"event": e["type"], "data": e.to_string()})).collect();
            json!({"response": {"sse": {"events": events}}})
        } else {
            let mut content_blocks = vec![json!({"type": "text", "text": content})];
            if with_tool { content_blocks.push(json!({"type": "tool_use", "id": "toolu_p", "name": "f", "input": {"city": city}})); }
            json!({"response": {"json": {"body": {"id": "msg_p", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": content_blocks, "stop_reason": stop, "stop_sequence": null, "usage": usage}}}})
        };
        let (path, body) = if messages_api {
            ("/v1/messages", json!({"model": "claude", "max_tokens": 1024, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}))
        } else {
            ("/v1/chat/completions", json!({"model": "claude", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}))
        };
        let result = exchange("anthropic", stub, path, serde_json::to_vec(&body).unwrap(), Some(200));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn gemini_answers_survive_translation(
        content in text(), finish in prop_oneof![Just("STOP"), Just("MAX_TOKENS"), Just("SAFETY")],
        prompt in 0u64..100_000, candidates in 0u64..10_000, thoughts in prop::option::of(0u64..5_000),
        cached in prop::option::of(0u64..50_000), city in text(), with_tool in any::<bool>(),
        stream in any::<bool>(), messages_api in any::<bool>(), cuts in prop::collection::vec(0usize..64, 0..4),
    ) {
        let mut usage = json!({"promptTokenCount": prompt + cached.unwrap_or(0), "candidatesTokenCount": candidates});
        if let Some(t) = thoughts { usage["thoughtsTokenCount"] = json!(t); }
        if let Some(c) = cached { usage["cachedContentTokenCount"] = json!(c); }
        usage["totalTokenCount"] = json!(prompt + cached.unwrap_or(0) + candidates + thoughts.unwrap_or(0));
        // Gemini says STOP when it calls a function.
        let finish = if with_tool { "STOP" } else { finish };
        let call = json!({"functionCall": {"name": "f", "args": {"city": city}}});
        let response = |parts: Value, last: bool| {
            let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
            if last { candidate["finishReason"] = json!(finish); }
            let meta = if last { usage.clone() } else { json!({"promptTokenCount": prompt}) };
            json!({"candidates": [candidate], "usageMetadata": meta, "modelVersion": "gemini-2.5-flash", "responseId": "resp-p"})
        };
        let stub = if stream {
            let mut events: Vec<Value> = pieces(&content, &cuts).into_iter()
                .map(|p| json!({"data": response(json!([{"text": p}]), false).to_string()}))
                .collect();
            let last = if with_tool { json!([call]) } else { json!([{"text": ""}]) };
            events.push(json!({"data": response(last, true).to_string()}));
            json!({"response": {"sse": {"events": events}}})
        } else {
            let mut parts = vec![json!({"text": content})];
            if with_tool { parts.push(call); }
            json!({"response": {"json": {"body": response(Value::Array(parts), true)}}})
        };
        let (path, body) = if messages_api {
            ("/v1/messages", json!({"model": "gemini", "max_tokens": 1024, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}))
        } else {
            ("/v1/chat/completions", json!({"model": "gemini", "stream": stream, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]}))
        };
        let body = if stream || messages_api { body } else {
            let mut b = body; b.as_object_mut().unwrap().remove("stream_options"); b
        };
        let result = exchange("gemini", stub, path, serde_json::to_vec(&body).unwrap(), Some(200));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn conversations_reach_the_provider_as_sent(
        system in prop::option::of(text()), turns in prop::collection::vec(text(), 1..6),
        temperature in prop::option::of(0.0f64..1.0), max_tokens in prop::option::of(1u64..4096),
        to_claude in any::<bool>(), stream in any::<bool>(),
    ) {
        // Each provider's own range: Claude takes 0..1 (and refuses more,
        // as the strict mock does), OpenAI 0..2.
        let temperature = temperature.map(|t| if to_claude { t } else { t * 2.0 });
        let mut messages: Vec<Value> = system.iter().map(|s| json!({"role": "system", "content": s})).collect();
        for (i, t) in turns.iter().enumerate() {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            // Anthropic refuses empty text turns; a real client would too.
            let t = if t.trim().is_empty() { format!("turn {i}") } else { t.clone() };
            messages.push(json!({"role": role, "content": t}));
        }
        if messages.last().and_then(|m| m["role"].as_str()) != Some("user") {
            messages.push(json!({"role": "user", "content": "go on"}));
        }
        let mut body = json!({"model": if to_claude { "claude" } else { "gpt-4o" }, "stream": stream, "messages": messages});
        if let Some(t) = temperature { body["temperature"] = json!(t); }
        if let Some(m) = max_tokens { body["max_tokens"] = json!(m); }
        // No stub: the mock's default answer.
        let stub = json!({"match": {"path": "/nothing-matches"}, "response": {"json": {"body": {}}}});
        let mock = if to_claude { "anthropic" } else { "openai" };
        let result = exchange(mock, stub, "/v1/chat/completions", serde_json::to_vec(&body).unwrap(), Some(200));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn conversations_reach_gemini_as_sent(
        system in prop::option::of(text()), turns in prop::collection::vec(text(), 1..6),
        temperature in prop::option::of(0.0f64..2.0), max_tokens in prop::option::of(1u64..4096),
        stop in prop::option::of(text()), stream in any::<bool>(),
    ) {
        let mut messages: Vec<Value> = system.iter().map(|s| json!({"role": "system", "content": s})).collect();
        for (i, t) in turns.iter().enumerate() {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            // A turn with nothing in it has no parts to send, and Gemini
            // refuses empty parts; a real client says something.
            let t = if t.is_empty() { format!("turn {i}") } else { t.clone() };
            messages.push(json!({"role": role, "content": t}));
        }
        if messages.last().and_then(|m| m["role"].as_str()) != Some("user") {
            messages.push(json!({"role": "user", "content": "go on"}));
        }
        let mut body = json!({"model": "gemini", "stream": stream, "messages": messages});
        if let Some(t) = temperature { body["temperature"] = json!(t); }
        if let Some(m) = max_tokens { body["max_tokens"] = json!(m); }
        if let Some(s) = stop { body["stop"] = json!([s]); }
        let stub = json!({"match": {"path": "/nothing-matches"}, "response": {"json": {"body": {}}}});
        let result = exchange("gemini", stub, "/v1/chat/completions", serde_json::to_vec(&body).unwrap(), Some(200));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn invalid_client_bodies_are_client_errors(
        field in prop::sample::select(vec!["model", "messages", "temperature", "max_tokens", "stream", "top_p", "n", "tools"]),
        value in prop_oneof![Just(json!("text")), Just(json!(42)), Just(json!(-1.5)), Just(json!({"a": 1})), Just(json!([1, "x"])), Just(json!(true))],
        drop_model in any::<bool>(), raw in prop::option::of("[ -~]{0,40}"),
    ) {
        let mut body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
        body[field] = value;
        if drop_model { body.as_object_mut().unwrap().remove("model"); }
        let bytes = match raw { Some(r) => r.into_bytes(), None => serde_json::to_vec(&body).unwrap() };
        let stub = json!({"response": {"json": {"body": {"id": "chatcmpl-v", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}}}});
        let result = exchange("openai", stub, "/v1/chat/completions", bytes, None);
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}
