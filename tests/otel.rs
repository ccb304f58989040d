//! OpenTelemetry traces (`callbacks: ["otel"]`) against a mock OTLP/HTTP
//! collector: the real router with wiremock providers, spans flushed
//! explicitly (or by a graceful shutdown), never waited for.
//!
//! Checked: one trace per request; the server span is the parent of one
//! client span per upstream attempt (fallbacks included); the GenAI and HTTP
//! attributes; an inbound `traceparent` is continued and the gateway's own
//! goes upstream; no configured secret, prompt or answer is anywhere in what
//! the collector received (and that check is shown to catch one); a down or
//! hanging collector neither fails nor holds up a request.

use axum::body::Body;
use http_body_util::BodyExt;
use postmortem::gateway::{Config, Gateway, GatewayBuilder};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PROVIDER_KEY: &str = "sk-provider-secret-0123456789";
const BACKUP_KEY: &str = "sk-backup-provider-secret-9876";
const MASTER_KEY: &str = "sk-master-secret-abcdef";
const VIRTUAL_KEY: &str = "sk-virtual-secret-fedcba";
const COLLECTOR_TOKEN: &str = "collector-token-secret-42";
const PROMPT: &str = "PROMPT-TEXT-never-exported";
const ANSWER: &str = "ANSWER-TEXT-never-exported";

fn chat_ok(model: &str) -> Value {
    json!({"id": "chatcmpl-trace-1", "object": "chat.completion", "created": 1, "model": model,
           "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})
}

async fn collector() -> MockServer {
    let c = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&c)
        .await;
    c
}

/// A gateway whose config turns traces on and points them at `endpoint`
/// through its own `environment_variables` (never the process's).
async fn gateway(body: &str, env: &[(&str, &str)]) -> Arc<Gateway> {
    let mut cfg = Config::parse(body, "otel-test.yaml").expect("config parses").config;
    for (k, v) in env {
        cfg.environment_variables.insert(k.to_string(), v.to_string());
    }
    GatewayBuilder::new(cfg).build().await.expect("gateway builds")
}

/// Sends a request through the real router and reads the whole answer, so
/// the server span is finished when this returns.
async fn call(gw: &Arc<Gateway>, uri: &str, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    let app = postmortem::gateway::server::app(gw.clone());
    let mut req = http::Request::post(uri).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app.oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

/// A client's sampled trace context.
const INBOUND: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A chat request for `model` with the master key and `headers` besides; its status.
async fn master_chat(gw: &Arc<Gateway>, headers: &[(&str, &str)], model: &str) -> u16 {
    let bearer = format!("Bearer {MASTER_KEY}");
    let mut all = vec![("authorization", bearer.as_str())];
    all.extend_from_slice(headers);
    call(gw, "/v1/chat/completions", &all, chat(model)).await.0
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": PROMPT}]})
}

/// Every export the collector received: (the body as text, for the secret
/// search; the export in OTLP's JSON shape, decoded from protobuf when it
/// came so).
async fn exports(c: &MockServer) -> Vec<(String, Value)> {
    let reqs = c.received_requests().await.unwrap();
    reqs.iter()
        .map(|r| {
            // Protobuf carries strings as their bytes: a secret shows in the lossy text.
            let raw = String::from_utf8_lossy(&r.body).into_owned();
            let v = match r.headers.get("content-type").unwrap().to_str().unwrap() {
                "application/json" => serde_json::from_str(&raw).expect("OTLP JSON"),
                "application/x-protobuf" => pb::export(&r.body),
                other => panic!("an OTLP/HTTP export has content-type {other}"),
            };
            (raw, v)
        })
        .collect()
}

/// A protobuf reader of the test's own (the oracle shares no code with the
/// gateway's encoder) that turns an `ExportTraceServiceRequest` into the
/// shape of its OTLP JSON encoding, so both protocols are checked alike.
mod pb {
    use serde_json::{json, Map, Value};

    enum Field {
        Varint(u64),
        I64(u64),
        I32(u32),
        Bytes(Vec<u8>),
    }

    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (byte, rest) = b.split_first().expect("a varint ends");
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return v;
            }
        }
        panic!("a varint longer than ten bytes")
    }

    fn take<'a>(b: &mut &'a [u8], n: usize) -> &'a [u8] {
        assert!(b.len() >= n, "a field runs past its message");
        let (head, rest) = b.split_at(n);
        *b = rest;
        head
    }

    fn fields(mut b: &[u8]) -> Vec<(u64, Field)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let f = match key & 7 {
                0 => Field::Varint(varint(&mut b)),
                1 => Field::I64(u64::from_le_bytes(take(&mut b, 8).try_into().unwrap())),
                2 => {
                    let n = varint(&mut b) as usize;
                    Field::Bytes(take(&mut b, n).to_vec())
                }
                5 => Field::I32(u32::from_le_bytes(take(&mut b, 4).try_into().unwrap())),
                w => panic!("wire type {w}"),
            };
            out.push((key >> 3, f));
        }
        out
    }

    fn bytes(f: &Field) -> &[u8] {
        match f {
            Field::Bytes(b) => b,
            _ => panic!("expected a length-delimited field"),
        }
    }

    fn text(f: &Field) -> String {
        String::from_utf8(bytes(f).to_vec()).expect("a protobuf string is UTF-8")
    }

    fn key_value(b: &[u8]) -> Value {
        let mut out = Map::new();
        for (n, f) in fields(b) {
            match n {
                1 => {
                    out.insert("key".into(), json!(text(&f)));
                }
                2 => {
                    let mut any = Map::new();
                    for (n, f) in fields(bytes(&f)) {
                        let (k, v) = match (n, &f) {
                            (1, _) => ("stringValue", json!(text(&f))),
                            (2, Field::Varint(v)) => ("boolValue", json!(*v != 0)),
                            (3, Field::Varint(v)) => ("intValue", json!((*v as i64).to_string())),
                            (4, Field::I64(v)) => ("doubleValue", json!(f64::from_bits(*v))),
                            _ => panic!("AnyValue field {n}"),
                        };
                        any.insert(k.into(), v);
                    }
                    out.insert("value".into(), Value::Object(any));
                }
                _ => panic!("KeyValue field {n}"),
            }
        }
        Value::Object(out)
    }

    fn span(b: &[u8]) -> Value {
        let mut out = Map::new();
        let mut attributes = Vec::new();
        out.insert("status".into(), json!({}));
        for (n, f) in fields(b) {
            let (k, v) = match (n, &f) {
                (1, _) => ("traceId", json!(hex::encode(bytes(&f)))),
                (2, _) => ("spanId", json!(hex::encode(bytes(&f)))),
                (4, _) => ("parentSpanId", json!(hex::encode(bytes(&f)))),
                (5, _) => ("name", json!(text(&f))),
                (6, Field::Varint(k)) => ("kind", json!(k)),
                (7, Field::I64(t)) => ("startTimeUnixNano", json!(t.to_string())),
                (8, Field::I64(t)) => ("endTimeUnixNano", json!(t.to_string())),
                (9, _) => {
                    attributes.push(key_value(bytes(&f)));
                    continue;
                }
                (15, _) => {
                    let mut st = Map::new();
                    for (n, f) in fields(bytes(&f)) {
                        match (n, &f) {
                            (2, _) => st.insert("message".into(), json!(text(&f))),
                            (3, Field::Varint(c)) => st.insert("code".into(), json!(c)),
                            _ => panic!("Status field {n}"),
                        };
                    }
                    ("status", Value::Object(st))
                }
                (16, Field::I32(flags)) => ("flags", json!(flags)),
                _ => panic!("Span field {n}"),
            };
            out.insert(k.into(), v);
        }
        out.insert("attributes".into(), Value::Array(attributes));
        Value::Object(out)
    }

    /// `ExportTraceServiceRequest` → `{"resourceSpans": [...]}`.
    pub fn export(b: &[u8]) -> Value {
        let mut resource_spans = Vec::new();
        for (n, rs) in fields(b) {
            assert_eq!(n, 1, "ExportTraceServiceRequest.resource_spans");
            let mut resource = Vec::new();
            let mut scope_spans = Vec::new();
            for (n, f) in fields(bytes(&rs)) {
                match n {
                    1 => resource.extend(fields(bytes(&f)).iter().map(|(n, kv)| {
                        assert_eq!(*n, 1, "Resource.attributes");
                        key_value(bytes(kv))
                    })),
                    2 => {
                        let mut scope = Map::new();
                        let mut spans = Vec::new();
                        for (n, f) in fields(bytes(&f)) {
                            match n {
                                1 => {
                                    for (n, f) in fields(bytes(&f)) {
                                        let k = if n == 1 { "name" } else { "version" };
                                        scope.insert(k.into(), json!(text(&f)));
                                    }
                                }
                                2 => spans.push(span(bytes(&f))),
                                _ => panic!("ScopeSpans field {n}"),
                            }
                        }
                        scope_spans.push(json!({"scope": scope, "spans": spans}));
                    }
                    _ => panic!("ResourceSpans field {n}"),
                }
            }
            resource_spans.push(json!({"resource": {"attributes": resource}, "scopeSpans": scope_spans}));
        }
        json!({ "resourceSpans": resource_spans })
    }
}

/// Every span of every export.
async fn spans(c: &MockServer) -> Vec<Value> {
    let mut out = Vec::new();
    for (_, v) in exports(c).await {
        for rs in v["resourceSpans"].as_array().unwrap() {
            for ss in rs["scopeSpans"].as_array().unwrap() {
                out.extend(ss["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    out
}

/// A span's attribute, as a JSON value (`intValue` as a number).
fn attr(span: &Value, key: &str) -> Option<Value> {
    let a = span["attributes"].as_array()?.iter().find(|a| a["key"] == key)?;
    let v = &a["value"];
    if let Some(s) = v.get("stringValue") {
        return Some(s.clone());
    }
    if let Some(i) = v.get("intValue") {
        return Some(json!(i.as_str()?.parse::<i64>().ok()?));
    }
    v.get("doubleValue").cloned()
}

fn server_span(spans: &[Value]) -> Value {
    let servers: Vec<&Value> = spans.iter().filter(|s| s["kind"] == 2).collect();
    assert_eq!(servers.len(), 1, "one server span: {spans:#?}");
    servers[0].clone()
}

fn attempts(spans: &[Value]) -> Vec<Value> {
    spans.iter().filter(|s| s["kind"] == 3).cloned().collect()
}

/// The secrets found in `payload` (each as written, in any case).
fn leaked<'a>(payload: &str, secrets: &[&'a str]) -> Vec<&'a str> {
    let lower = payload.to_ascii_lowercase();
    secrets.iter().copied().filter(|s| lower.contains(&s.to_ascii_lowercase())).collect()
}

fn config(primary: &str, backup: &str) -> String {
    format!(
        "model_list:\n\
         \x20 - model_name: primary\n\
         \x20   litellm_params: {{model: openai/gpt-4o, api_base: '{primary}/v1', api_key: {PROVIDER_KEY}}}\n\
         \x20   model_info: {{id: primary-dep}}\n\
         \x20 - model_name: backup\n\
         \x20   litellm_params: {{model: openai/gpt-4o-mini, api_base: '{backup}/v1', api_key: {BACKUP_KEY}}}\n\
         \x20   model_info: {{id: backup-dep}}\n\
         router_settings:\n\
         \x20 fallbacks: [{{primary: [backup]}}]\n\
         litellm_settings:\n\
         \x20 callbacks: [otel, prometheus]\n\
         general_settings:\n\
         \x20 master_key: {MASTER_KEY}\n\
         keys:\n\
         \x20 - {{key: {VIRTUAL_KEY}, alias: team-a, models: ['*']}}\n"
    )
}

/// A primary that fails (quoting its key, as some providers' errors do)
/// and a backup that answers.
async fn upstreams() -> (MockServer, MockServer) {
    let primary = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"error": {"message": format!("internal error for key {PROVIDER_KEY}"), "type": "server_error"}}),
        ))
        .mount(&primary)
        .await;
    let backup = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_ok("gpt-4o-mini-2024-07-18")))
        .mount(&backup)
        .await;
    (primary, backup)
}

/// A collector, the two upstreams and a gateway sending its traces to the
/// collector (with `env` besides).
struct Rig {
    collector: MockServer,
    /// Kept alive: the gateway calls it.
    _primary: MockServer,
    backup: MockServer,
    gw: Arc<Gateway>,
}

async fn rig(env: &[(&str, &str)]) -> Rig {
    let collector = collector().await;
    let (primary, backup) = upstreams().await;
    let uri = collector.uri();
    let mut vars = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", uri.as_str())];
    vars.extend_from_slice(env);
    let gw = gateway(&config(&primary.uri(), &backup.uri()), &vars).await;
    Rig { collector, _primary: primary, backup, gw }
}

#[tokio::test]
async fn a_request_is_one_trace_a_server_span_with_a_client_span_per_attempt() {
    // The default protocol, http/protobuf.
    one_trace_per_request(&[], "application/x-protobuf").await;
}

#[tokio::test]
async fn the_same_trace_over_http_json() {
    one_trace_per_request(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")], "application/json").await;
}

async fn one_trace_per_request(env: &[(&str, &str)], media: &str) {
    let mut env = env.to_vec();
    env.push(("OTEL_SERVICE_NAME", "gw-under-test"));
    let Rig { collector: c, backup, gw, .. } = rig(&env).await;
    let bearer = format!("Bearer {VIRTUAL_KEY}");
    let (status, body) = call(&gw, "/v1/chat/completions", &[("authorization", &bearer)], chat("primary")).await;
    assert_eq!(status, 200, "{body}");
    let stats = gw.flush_traces().await.expect("traces are on");
    assert_eq!((stats.exported, stats.dropped, stats.failed), (3, 0, 0), "{stats:?}");

    let received = c.received_requests().await.unwrap();
    assert!(received.iter().all(|r| r.headers.get("content-type").unwrap() == media && r.url.path() == "/v1/traces"));
    let (_, first) = exports(&c).await.into_iter().next().expect("an export");
    let scope = &first["resourceSpans"][0]["scopeSpans"][0]["scope"];
    assert_eq!(scope["name"], "postmortem");
    let resource = &first["resourceSpans"][0]["resource"]["attributes"];
    assert_eq!(resource[0], json!({"key": "service.name", "value": {"stringValue": "gw-under-test"}}));
    let all = spans(&c).await;
    assert_eq!(all.len(), 3, "{all:#?}");
    let trace = all[0]["traceId"].as_str().unwrap();
    assert_eq!(trace.len(), 32);
    assert!(all.iter().all(|s| s["traceId"] == trace), "one trace per request: {all:#?}");

    let server = server_span(&all);
    assert_eq!(server["name"], "POST /v1/chat/completions");
    assert!(server.get("parentSpanId").is_none(), "a new trace's root: {server}");
    assert_eq!(attr(&server, "http.request.method"), Some(json!("POST")));
    assert_eq!(attr(&server, "http.route"), Some(json!("/v1/chat/completions")));
    assert_eq!(attr(&server, "http.response.status_code"), Some(json!(200)));
    assert_eq!(attr(&server, "gen_ai.operation.name"), Some(json!("chat")));
    assert_eq!(attr(&server, "gen_ai.request.model"), Some(json!("primary")));
    assert_eq!(attr(&server, "gen_ai.response.model"), Some(json!("gpt-4o-mini-2024-07-18")));
    assert_eq!(attr(&server, "gen_ai.usage.input_tokens"), Some(json!(10)));
    assert_eq!(attr(&server, "gen_ai.usage.output_tokens"), Some(json!(2)));
    assert!(attr(&server, "litellm.response_cost").and_then(|c| c.as_f64()).is_some_and(|c| c > 0.0), "{server}");
    assert_eq!(attr(&server, "litellm.model_id"), Some(json!("backup-dep")));
    assert_eq!(attr(&server, "litellm.call_id").and_then(|v| v.as_str().map(str::len)), Some(32));
    assert_eq!(attr(&server, "litellm.caller"), Some(json!("virtual_key")));
    assert_eq!(attr(&server, "litellm.key.alias"), Some(json!("team-a")));
    let hash = attr(&server, "litellm.key.hash").expect("the key's hash");
    assert_eq!(hash.as_str().unwrap().len(), 64);
    assert_eq!(server["status"], json!({}), "a 200 is no error");
    let (start, end) = (&server["startTimeUnixNano"], &server["endTimeUnixNano"]);
    let (start, end): (u64, u64) = (start.as_str().unwrap().parse().unwrap(), end.as_str().unwrap().parse().unwrap());
    assert!(start > 1_600_000_000_000_000_000 && end >= start, "{start} {end}");

    let tries = attempts(&all);
    assert_eq!(tries.len(), 2, "the failed primary and the backup: {tries:#?}");
    for t in &tries {
        assert_eq!(t["parentSpanId"], server["spanId"], "each attempt is the server span's child");
        assert_ne!(t["spanId"], server["spanId"]);
        assert_eq!(attr(t, "gen_ai.provider.name"), Some(json!("openai")));
        assert_eq!(attr(t, "gen_ai.system"), Some(json!("openai")));
        assert_eq!(attr(t, "server.address"), Some(json!("127.0.0.1")));
        assert!(attr(t, "server.port").is_some());
        let (s, e): (u64, u64) = (
            t["startTimeUnixNano"].as_str().unwrap().parse().unwrap(),
            t["endTimeUnixNano"].as_str().unwrap().parse().unwrap(),
        );
        assert!(s >= start && e >= s, "an attempt starts within its request");
    }
    let failed = tries.iter().find(|t| attr(t, "litellm.model_id") == Some(json!("primary-dep"))).unwrap();
    assert_eq!(failed["name"], "chat gpt-4o");
    assert_eq!(attr(failed, "gen_ai.request.model"), Some(json!("gpt-4o")));
    assert_eq!(attr(failed, "http.response.status_code"), Some(json!(500)));
    assert_eq!(attr(failed, "error.type"), Some(json!("500")));
    assert_eq!(failed["status"], json!({"code": 2, "message": "500"}));
    let ok = tries.iter().find(|t| attr(t, "litellm.model_id") == Some(json!("backup-dep"))).unwrap();
    assert_eq!(ok["name"], "chat gpt-4o-mini");
    assert_eq!(attr(ok, "http.response.status_code"), Some(json!(200)));
    assert_eq!(attr(ok, "gen_ai.usage.output_tokens"), Some(json!(2)));
    assert_eq!(attr(ok, "gen_ai.response.id"), Some(json!("chatcmpl-trace-1")));
    assert_eq!(ok["status"], json!({}));

    // The upstream got the gateway's trace context, naming its attempt.
    let sent = &backup.received_requests().await.unwrap()[0];
    let tp = sent.headers.get("traceparent").expect("traceparent upstream").to_str().unwrap().to_string();
    assert_eq!(tp, format!("00-{trace}-{}-01", ok["spanId"].as_str().unwrap()));

    // A second request is a second trace.
    call(&gw, "/v1/chat/completions", &[("authorization", &bearer)], chat("backup")).await;
    gw.flush_traces().await;
    let all = spans(&c).await;
    let traces: std::collections::BTreeSet<&str> = all.iter().map(|s| s["traceId"].as_str().unwrap()).collect();
    assert_eq!((all.len(), traces.len()), (5, 2), "{all:#?}");
}

#[tokio::test]
async fn an_inbound_traceparent_is_continued_and_a_bad_one_is_not_passed_on() {
    let Rig { collector: c, backup, gw, .. } = rig(&[]).await;
    assert_eq!(master_chat(&gw, &[("traceparent", INBOUND)], "backup").await, 200);
    gw.flush_traces().await;
    let all = spans(&c).await;
    let server = server_span(&all);
    assert_eq!(server["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736", "the client's trace continues");
    assert_eq!(server["parentSpanId"], "00f067aa0ba902b7", "under the client's span");
    assert_eq!(attr(&server, "litellm.caller"), Some(json!("master_key")));
    let tries = attempts(&all);
    assert_eq!(tries.len(), 1);
    let tp = backup.received_requests().await.unwrap()[0].headers.get("traceparent").unwrap().clone();
    let want = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", tries[0]["spanId"].as_str().unwrap());
    assert_eq!(tp.to_str().unwrap(), want, "the upstream's parent is the attempt, not the client's span");

    // A malformed header (here with an injected header line's worth of
    // text) starts a new trace, and what goes upstream is the gateway's.
    let before = backup.received_requests().await.unwrap().len();
    let bad = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x-evil";
    master_chat(&gw, &[("traceparent", bad)], "backup").await;
    let sent = &backup.received_requests().await.unwrap()[before];
    let tp = sent.headers.get("traceparent").unwrap().to_str().unwrap().to_string();
    assert!(!tp.contains("4bf92f3577b34da6a3ce929d0e0e4736") && !tp.contains("evil"), "{tp}");
    assert_eq!(tp.len(), 55, "{tp}");
    assert_eq!(sent.headers.get_all("traceparent").iter().count(), 1);

    // A client that says "not sampled" is obeyed: nothing is exported, and
    // the upstream is told the same.
    let exported = spans(&c).await.len();
    let unsampled = "00-11111111111111111111111111111111-2222222222222222-00";
    master_chat(&gw, &[("traceparent", unsampled)], "backup").await;
    gw.flush_traces().await;
    let after = spans(&c).await;
    assert!(after.iter().all(|s| s["traceId"] != "11111111111111111111111111111111"), "unsampled: not exported");
    assert_eq!(after.len(), exported + 2, "only the malformed-header request's two spans were added");
    let last = backup.received_requests().await.unwrap().pop().unwrap();
    let tp = last.headers.get("traceparent").unwrap().to_str().unwrap().to_string();
    assert!(tp.starts_with("00-11111111111111111111111111111111-") && tp.ends_with("-00"), "{tp}");
}

#[tokio::test]
async fn no_configured_secret_prompt_or_answer_reaches_the_collector() {
    let headers = format!("authorization=Bearer%20{COLLECTOR_TOKEN}");
    let Rig { collector: c, gw, .. } = rig(&[("OTEL_EXPORTER_OTLP_HEADERS", &headers)]).await;
    for key in [VIRTUAL_KEY, MASTER_KEY] {
        let bearer = format!("Bearer {key}");
        let (status, body) = call(&gw, "/v1/chat/completions", &[("authorization", &bearer)], chat("primary")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["choices"][0]["message"]["content"], ANSWER);
    }
    // A path no route matches is named by its method alone: the path is the client's text.
    let (status, _) = call(&gw, "/v1/sk-in-a-path-secret/chat/completions", &[], chat("primary")).await;
    assert_eq!(status, 404);
    // A refused request (a key that does not exist) is traced too.
    let (status, _) =
        call(&gw, "/v1/chat/completions", &[("authorization", "Bearer sk-wrong-key-secret-1")], chat("primary")).await;
    assert_eq!(status, 401);
    let stats = gw.flush_traces().await.unwrap();
    assert_eq!(stats.exported, 8, "{stats:?}");

    let secrets = [
        PROVIDER_KEY,
        BACKUP_KEY,
        MASTER_KEY,
        VIRTUAL_KEY,
        COLLECTOR_TOKEN,
        "sk-wrong-key-secret-1",
        "sk-in-a-path-secret",
        PROMPT,
        ANSWER,
    ];
    let received = exports(&c).await;
    assert!(!received.is_empty());
    for (raw, _) in &received {
        assert_eq!(leaked(raw, &secrets), Vec::<&str>::new(), "a secret in the export:\n{raw}");
    }
    // The collector's own credential went where it belongs: the header.
    let reqs = c.received_requests().await.unwrap();
    assert!(reqs.iter().all(|r| r.headers.get("authorization").unwrap() == &format!("Bearer {COLLECTOR_TOKEN}")));
    // The attributes the check ran over were there (an empty export would
    // pass any secret check).
    let all = spans(&c).await;
    assert!(all.iter().any(|s| attr(s, "litellm.key.hash").is_some()));
    let unrouted = all.iter().find(|s| attr(s, "http.response.status_code") == Some(json!(404))).unwrap();
    assert_eq!((unrouted["name"].as_str(), attr(unrouted, "http.route")), (Some("POST"), None));
    let refused = all.iter().find(|s| attr(s, "http.response.status_code") == Some(json!(401))).unwrap();
    assert_eq!(attr(refused, "error.type"), Some(json!("401")));
    assert!(refused.get("status").is_some_and(|s| s == &json!({})), "a 4xx is not the server's failure");
}

#[test]
fn the_secret_check_catches_a_secret_in_a_payload() {
    // A real span's JSON with the provider key planted in one attribute,
    // as a regression that recorded a header would put it.
    let planted = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [
        {"key": "http.request.header.authorization", "value": {"stringValue": format!("Bearer {PROVIDER_KEY}")}}
    ]}]}]}]})
    .to_string();
    assert_eq!(leaked(&planted, &[PROVIDER_KEY, MASTER_KEY]), [PROVIDER_KEY]);
    assert_eq!(leaked(&planted.to_uppercase(), &[PROVIDER_KEY]), [PROVIDER_KEY], "in any case");
    assert!(leaked("{\"spans\": []}", &[PROVIDER_KEY]).is_empty());
}

#[tokio::test]
async fn a_down_collector_neither_fails_nor_slows_requests() {
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (primary, backup) = upstreams().await;
    let gw = gateway(
        &config(&primary.uri(), &backup.uri()),
        &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &format!("http://127.0.0.1:{closed}/v1/traces"))],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(master_chat(&gw, &[], "primary").await, 200);
    }
    let stats = gw.flush_traces().await.unwrap();
    assert_eq!((stats.exported, stats.failed, stats.queued), (0, 9, 0), "{stats:?}");
    // The loss is counted where operators look.
    let app = postmortem::gateway::server::app(gw.clone());
    let resp = app.oneshot(http::Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let page = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(page.contains("postmortem_otel_spans{state=\"failed\"} 9"), "{page}");
}

#[tokio::test]
async fn a_hanging_collector_holds_up_no_request_and_a_flush_only_its_timeout() {
    // A collector that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            keep.lock().await.push(sock);
        }
    });
    let (primary, backup) = upstreams().await;
    let gw = gateway(
        &config(&primary.uri(), &backup.uri()),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://127.0.0.1:{port}")),
            // Every span is a whole batch: the exporter is stuck on the
            // collector from the first request on.
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300"),
        ],
    )
    .await;
    for _ in 0..3 {
        let answered = tokio::time::timeout(Duration::from_secs(10), master_chat(&gw, &[], "backup"))
            .await
            .expect("a request never waits for the collector");
        assert_eq!(answered, 200);
    }
    let flushed = tokio::time::timeout(Duration::from_secs(30), gw.flush_traces()).await;
    let stats = flushed.expect("a flush is bounded by the export timeout").unwrap();
    assert_eq!(stats.exported, 0, "{stats:?}");
    assert!(stats.failed >= 1, "{stats:?}");
    // A flush stops at the first batch that fails: the rest stay queued
    // (the shutdown says how many) rather than each waiting the timeout.
    assert_eq!(stats.failed + stats.dropped + stats.queued, 6, "every span is accounted for: {stats:?}");
    assert!(!held.lock().await.is_empty(), "the exporter did reach the collector");
}

#[tokio::test]
async fn a_stream_is_priced_on_its_server_span_when_it_ends() {
    let c = collector().await;
    let up = MockServer::start().await;
    let sse = [
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": ANSWER}, "finish_reason": null}]}),
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06", "choices": [],
               "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}),
    ]
    .iter()
    .map(|v| format!("data: {v}\n\n"))
    .collect::<String>()
        + "data: [DONE]\n\n";
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream"))
        .mount(&up)
        .await;
    let yaml = format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: {PROVIDER_KEY}}}\n\
         litellm_settings:\n  success_callback: otel\n",
        up.uri()
    );
    let gw = gateway(&yaml, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &c.uri())]).await;
    let mut body = chat("gpt-4o");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, text) = call(&gw, "/v1/chat/completions", &[], body).await;
    assert_eq!(status, 200);
    assert!(text.as_str().unwrap().contains("[DONE]"));
    gw.flush_traces().await;
    let all = spans(&c).await;
    let server = server_span(&all);
    assert_eq!(attr(&server, "gen_ai.usage.input_tokens"), Some(json!(7)));
    assert_eq!(attr(&server, "gen_ai.response.model"), Some(json!("gpt-4o-2024-08-06")));
    assert_eq!(attr(&server, "gen_ai.response.id"), Some(json!("c1")));
    assert_eq!(attr(&server, "gen_ai.usage.output_tokens"), Some(json!(3)));
    assert!(attr(&server, "litellm.response_cost").is_some());
    assert_eq!(attempts(&all).len(), 1);
    for (raw, _) in exports(&c).await {
        assert!(leaked(&raw, &[PROVIDER_KEY, PROMPT, ANSWER]).is_empty(), "{raw}");
    }
}

#[tokio::test]
async fn a_stream_that_breaks_after_its_200_is_an_error_on_its_server_span() {
    let c = collector().await;
    let up = MockServer::start().await;
    let first = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                       "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": null}]});
    // The provider's stream stops in the middle of its second event.
    let cut = format!("data: {first}\n\ndata: {{\"id\": \"c1\", \"choi");
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(cut, "text/event-stream"))
        .mount(&up)
        .await;
    let yaml = format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: {PROVIDER_KEY}}}\n\
         litellm_settings:\n  callbacks: [otel]\n",
        up.uri()
    );
    let gw = gateway(&yaml, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &c.uri())]).await;
    let mut body = chat("gpt-4o");
    body["stream"] = json!(true);
    let (status, text) = call(&gw, "/v1/chat/completions", &[], body).await;
    assert_eq!(status, 200, "the client had its headers before the break");
    assert!(!text.as_str().unwrap().contains("[DONE]"), "a broken stream must not end cleanly");
    gw.flush_traces().await;
    let server = server_span(&spans(&c).await);
    assert_eq!(server["status"]["code"], json!(2), "{server}");
    assert_eq!(attr(&server, "litellm.stream.broken"), Some(json!("true")));
    assert_eq!(attr(&server, "error.type"), Some(json!("bad_gateway")));
}

#[tokio::test]
async fn a_sampler_that_keeps_nothing_still_tells_the_upstream() {
    let Rig { collector: c, backup, gw, .. } = rig(&[("OTEL_TRACES_SAMPLER", "always_off")]).await;
    // always_off is not parent-based: a sampled client trace is not kept either.
    assert_eq!(master_chat(&gw, &[("traceparent", INBOUND)], "backup").await, 200);
    let stats = gw.flush_traces().await.unwrap();
    assert_eq!((stats.exported, stats.dropped, stats.failed), (0, 0, 0));
    assert!(c.received_requests().await.unwrap().is_empty());
    let sent = &backup.received_requests().await.unwrap()[0];
    let tp = sent.headers.get("traceparent").unwrap().to_str().unwrap().to_string();
    assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp.ends_with("-00"), "{tp}");
}

#[tokio::test]
async fn anthropic_messages_are_traced_with_their_provider_and_usage() {
    let c = collector().await;
    let up = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_trace", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": ANSWER}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 11, "output_tokens": 4}})))
        .mount(&up)
        .await;
    let yaml = format!(
        "model_list:\n  - model_name: claude\n    litellm_params: {{model: anthropic/claude-sonnet-4-5, api_base: '{}', api_key: {PROVIDER_KEY}}}\n\
         litellm_settings:\n  callbacks: [otel]\n",
        up.uri()
    );
    let gw = gateway(&yaml, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &c.uri())]).await;
    let body = json!({"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": PROMPT}]});
    let (status, answer) = call(&gw, "/v1/messages", &[("anthropic-version", "2023-06-01")], body).await;
    assert_eq!(status, 200, "{answer}");
    gw.flush_traces().await;
    let all = spans(&c).await;
    let server = server_span(&all);
    assert_eq!(server["name"], "POST /v1/messages");
    assert_eq!(attr(&server, "gen_ai.usage.input_tokens"), Some(json!(11)));
    let tries = attempts(&all);
    assert_eq!(tries.len(), 1);
    let t = &tries[0];
    assert_eq!(t["name"], "chat claude-sonnet-4-5");
    assert_eq!(attr(t, "gen_ai.provider.name"), Some(json!("anthropic")));
    assert_eq!(attr(t, "gen_ai.response.model"), Some(json!("claude-sonnet-4-5-20250929")));
    assert_eq!(attr(t, "gen_ai.usage.output_tokens"), Some(json!(4)));
    let sent = &up.received_requests().await.unwrap()[0];
    let tp = sent.headers.get("traceparent").unwrap().to_str().unwrap().to_string();
    assert_eq!(tp, format!("00-{}-{}-01", t["traceId"].as_str().unwrap(), t["spanId"].as_str().unwrap()));
    for (raw, _) in exports(&c).await {
        assert!(leaked(&raw, &[PROVIDER_KEY, PROMPT, ANSWER]).is_empty(), "{raw}");
    }
}

#[tokio::test]
async fn a_graceful_shutdown_flushes_the_spans() {
    // A schedule far beyond the test: only the shutdown can send them.
    let Rig { collector: c, gw, .. } = rig(&[("OTEL_BSP_SCHEDULE_DELAY", "3600000")]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(postmortem::gateway::server::serve_until(gw.clone(), listener, async move {
        let _ = stop_rx.await;
    }));
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .json(&chat("backup"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The span rides on the body without changing how it is framed.
    assert!(resp.headers().get("content-length").is_some(), "{:?}", resp.headers());
    assert!(resp.headers().get("transfer-encoding").is_none(), "{:?}", resp.headers());
    resp.bytes().await.unwrap();
    assert!(c.received_requests().await.unwrap().is_empty(), "nothing exported before the shutdown");
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    let all = spans(&c).await;
    assert_eq!((server_span(&all)["name"].as_str(), attempts(&all).len()), (Some("POST /v1/chat/completions"), 1));
}

#[tokio::test]
async fn traces_are_off_unless_a_callback_names_otel_and_bad_settings_refuse_the_start() {
    let base = "model_list:\n  - model_name: m\n    litellm_params: {model: openai/m, api_base: 'http://127.0.0.1:9/v1', api_key: k}\n";
    assert!(gateway(base, &[]).await.otel.is_none());
    let prom = format!("{base}litellm_settings:\n  callbacks: [prometheus]\n");
    assert!(gateway(&prom, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")]).await.otel.is_none());
    let on = format!("{base}litellm_settings:\n  failure_callback: [otel]\n");
    assert!(gateway(&on, &[]).await.otel.is_some(), "failure_callback counts as LiteLLM's does");
    for (var, value, words) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "http/json"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/xml", "http/protobuf"),
        ("OTEL_EXPORTER", "console", "otlp_http"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318", "http://"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key", "key=value"),
    ] {
        let mut cfg = Config::parse(&on, "t.yaml").unwrap().config;
        cfg.environment_variables.insert(var.into(), value.into());
        let e = GatewayBuilder::new(cfg).build().await.map(|_| ()).unwrap_err().to_string();
        assert!(e.starts_with("config: otel: ") && e.contains(var) && e.contains(words), "{e}");
    }
}
