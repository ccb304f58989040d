//! OpenAI Chat Completions <-> Anthropic Messages translation, the work the
//! proxy adds on `/v1/chat/completions` for a Claude deployment.
//!
//! - `request`: `chat_to_messages` on a realistic agent turn: system prompt,
//!   a user question, an assistant turn with two parallel tool calls, their
//!   two results, an assistant answer and a follow-up, with three tools
//!   (JSON Schema parameters), `tool_choice`, `temperature` and `max_tokens`.
//! - `request_from_bytes`: the same from the raw body to the bytes sent
//!   upstream (parse, translate, serialize), as the proxy does it.
//! - `response`: `messages_to_chat` on a reply with text, a tool call and
//!   cache usage.
//!
//! Run: `cargo bench --bench translate -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use postmortem::gateway::providers::anthropic::{chat_to_messages, messages_to_chat};
use serde_json::{json, Value};

const MODEL: &str = "claude-sonnet-4-5";

fn tool(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({"type": "function", "function": {
        "name": name,
        "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required},
    }})
}

fn request() -> Value {
    let tools = json!([
        tool(
            "read_file",
            "Read a file from the repository and return its contents with line numbers.",
            json!({"path": {"type": "string", "description": "Path relative to the repository root"},
                   "offset": {"type": "integer", "minimum": 0}, "limit": {"type": "integer", "minimum": 1}}),
            &["path"],
        ),
        tool(
            "grep",
            "Search the repository for a regular expression.",
            json!({"pattern": {"type": "string"}, "glob": {"type": "string"},
                   "case_insensitive": {"type": "boolean", "default": false}}),
            &["pattern"],
        ),
        tool(
            "run_tests",
            "Run the test suite, or the tests matching a filter, and return the summary.",
            json!({"filter": {"type": "string"}, "timeout_secs": {"type": "integer", "maximum": 600}}),
            &[],
        ),
    ]);
    json!({
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a careful senior engineer working in a Rust repository. \
                Use the tools to read code before answering. Keep answers short and cite file paths."},
            {"role": "user", "content": "Why does the gateway refuse claude-sonnet-4-6 for a key with anthropic/*? \
                It worked before the cost map reload."},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_01", "type": "function",
                 "function": {"name": "grep", "arguments": "{\"pattern\":\"provider_of\",\"glob\":\"src/**/*.rs\"}"}},
                {"id": "call_02", "type": "function",
                 "function": {"name": "read_file", "arguments": "{\"path\":\"src/gateway/keys.rs\",\"offset\":180,\"limit\":40}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_01", "content": "src/gateway/catalog.rs:327: pub fn provider_of(&self, name: &str)\n\
                src/gateway/keys.rs:201: if let Some(provider) = catalog.provider_of(model) {\n\
                src/gateway/routing.rs:160: if let Some(p) = catalog.provider_of(requested) {"},
            {"role": "tool", "tool_call_id": "call_02", "content": "180 /// Whether `model` may be called.\n\
                181 pub fn allows(&self, model: &str, catalog: &Catalog) -> bool {\n\
                182     if self.all || self.exact.contains(model) {\n183         return true;\n184     }\n\
                ... (36 more lines)"},
            {"role": "assistant", "content": "The key check resolves bare names through the catalog's provider index. \
                If the index lagged the new map after a reload, `claude-sonnet-4-6` had no provider and was refused."},
            {"role": "user", "content": "Run the catalog tests to confirm the index is rebuilt on reload."},
        ],
        "tools": tools,
        "tool_choice": "auto",
        "temperature": 0.2,
        "max_tokens": 2048,
        "user": "dev-42",
    })
}

fn response() -> Value {
    json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [
            {"type": "text", "text": "I'll run the catalog tests, filtered to the reload path."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "run_tests",
             "input": {"filter": "catalog::tests::reload", "timeout_secs": 300}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": {"input_tokens": 412, "output_tokens": 61,
                  "cache_read_input_tokens": 2980, "cache_creation_input_tokens": 0},
    })
}

fn translate(c: &mut Criterion) {
    let req = request();
    let raw = serde_json::to_vec(&req).expect("serializes");
    let resp = response();
    let translated = chat_to_messages(&req, MODEL).expect("the request translates");
    assert_eq!(translated["messages"].as_array().map(Vec::len), Some(5), "{translated}");
    let back = messages_to_chat(&resp, MODEL, 1).expect("the response translates");
    assert_eq!(back["choices"][0]["finish_reason"], "tool_calls");

    let mut group = c.benchmark_group("translate");
    group.bench_function("request", |b| b.iter(|| chat_to_messages(black_box(&req), MODEL)));
    group.throughput(Throughput::Bytes(raw.len() as u64));
    group.bench_function("request_from_bytes", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_slice(black_box(&raw)).expect("valid JSON");
            let out = chat_to_messages(&v, MODEL).expect("translates");
            serde_json::to_vec(&out).expect("serializes")
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("response", |b| b.iter(|| messages_to_chat(black_box(&resp), MODEL, 1)));
    group.finish();
}

criterion_group!(benches, translate);
criterion_main!(benches);
