//! Gemini (Google AI Studio) read by the contracts: its answers and streams
//! (`generateContent`, `streamGenerateContent` as SSE and as a JSON array),
//! its requests (`contents`, `systemInstruction`, `functionCall` and
//! `functionResponse` parts, `generationConfig`, `toolConfig`) and its key
//! (`x-goog-api-key`). One violating and one clean case per reader path.

use crate::common::*;
use postmortem::contracts::{Exchange, Setup, UpstreamCall};
use postmortem::mocks::{MockKind, RecordedRequest};
use serde_json::{json, Value};

pub const GEMINI_KEY: &str = "test-gemini-credential";

/// The `gemini` mock with its key, the `openai` one, and a master key.
fn gemini_setup() -> Setup {
    let config = json!({
        "model_list": [
            {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:1001/v1", "api_key": OPENAI_KEY}},
            {"model_name": "gemini", "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_base": "http://127.0.0.1:1004", "api_key": GEMINI_KEY}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
    });
    let mocks = [
        ("openai".to_string(), "http://127.0.0.1:1001".to_string()),
        ("gemini".to_string(), "http://127.0.0.1:1004".to_string()),
    ]
    .into_iter()
    .collect();
    Setup::from_config(&config, &mocks, &Default::default())
}

/// A Gemini deployment without `api_key`: its key comes from the config's
/// `environment_variables` (GEMINI_API_KEY), as LiteLLM reads it.
fn env_key_setup() -> Setup {
    let config = json!({
        "model_list": [
            {"model_name": "gemini", "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_base": "http://127.0.0.1:1004/v1beta"}},
        ],
        "environment_variables": {"GEMINI_API_KEY": "AIza-from-the-environment"},
        "general_settings": {"master_key": MASTER_KEY},
    });
    let mocks = [("gemini".to_string(), "http://127.0.0.1:1004".to_string())].into_iter().collect();
    Setup::from_config(&config, &mocks, &Default::default())
}

fn gcase(name: &'static str, expect: Option<&'static str>, exchange: Exchange) -> Case {
    Case { name, exchange, setup: gemini_setup(), expect, also: Vec::new() }
}

/// A call to the `gemini` mock: `verb` is `generateContent` or
/// `streamGenerateContent` (asked as SSE), `key` the header it carried.
fn to_gemini(verb: &str, key: &str, body: Value, a: postmortem::mocks::MockAnswer) -> UpstreamCall {
    let query = (verb == "streamGenerateContent").then_some("alt=sse");
    let path = format!("/v1beta/models/gemini-2.5-flash:{verb}");
    let headers = vec![("x-goog-api-key".to_string(), key.to_string())];
    UpstreamCall {
        provider: "gemini".into(),
        kind: MockKind::Gemini,
        request: RecordedRequest::new("POST", &path, query, headers, serde_json::to_vec(&body).unwrap()),
        answer: a,
    }
}

fn contents_hi() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
}

fn gemini_chat(stream: bool) -> Value {
    json!({"model": "gemini", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// Gemini's answer: one candidate with `parts`, its finish reason and usage.
fn gemini_answer(parts: Value, finish: &str, usage: Value) -> Value {
    json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
           "usageMetadata": usage, "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"})
}

fn small_usage() -> Value {
    json!({"promptTokenCount": 10, "candidatesTokenCount": 2, "totalTokenCount": 12})
}

/// What an OpenAI client gets: `message`, `finish`, `usage`.
fn client_completion(message: Value, finish: &str, usage: Value) -> Value {
    json!({"id": "resp-1", "object": "chat.completion", "created": 1700000000, "model": "gemini-2.5-flash",
           "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})
}

fn whole(client: Value, provider: Value) -> Exchange {
    let call = to_gemini("generateContent", GEMINI_KEY, contents_hi(), json_answer(200, provider));
    exchange(chat(gemini_chat(false)), json_response(200, client), vec![call])
}

/// Gemini's stream: one `data:` response per event, as `alt=sse` sends it.
fn gemini_sse(responses: &[Value]) -> Vec<u8> {
    responses.iter().map(|r| format!("data: {r}\r\n\r\n")).collect::<String>().into_bytes()
}

fn streamed(client: Vec<u8>, provider: Vec<u8>) -> Exchange {
    let call =
        to_gemini("streamGenerateContent", GEMINI_KEY, contents_hi(), answer(200, "text/event-stream", provider));
    exchange(chat(gemini_chat(true)), sse_response(client), vec![call])
}

fn hello_stream(finished: bool) -> Vec<Value> {
    let mut last = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}, "index": 0}],
                          "usageMetadata": small_usage(), "responseId": "resp-1"});
    if finished {
        last["candidates"][0]["finishReason"] = json!("STOP");
    }
    vec![
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}],
               "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10}, "responseId": "resp-1"}),
        last,
    ]
}

fn client_hello(done: bool) -> Vec<u8> {
    let mut events = vec![
        chunk(json!({"role": "assistant", "content": "Hel"}), Value::Null),
        chunk(json!({"content": "lo"}), Value::Null),
        chunk(json!({}), json!("stop")),
    ];
    if done {
        events.push(json!("[DONE]"));
    }
    openai_sse(&events)
}

/// An OpenAI conversation (system prompt, a tool call and its result)
/// and what Gemini received for it.
fn conversation(upstream_body: Value) -> Exchange {
    conversation_with_result("sunny", upstream_body)
}

/// `conversation`, the tool's result being `result`.
fn conversation_with_result(result: &str, upstream_body: Value) -> Exchange {
    let client = chat(json!({"model": "gemini", "temperature": 0.2, "max_tokens": 50, "tool_choice": "required",
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": result}]}));
    let provider = gemini_answer(json!([{"text": "Sunny."}]), "STOP", small_usage());
    let answer = client_completion(
        json!({"role": "assistant", "content": "Sunny."}),
        "stop",
        json!({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}),
    );
    let call = to_gemini("generateContent", GEMINI_KEY, upstream_body, json_answer(200, provider));
    exchange(client, json_response(200, answer), vec![call])
}

/// The faithful form of `conversation`'s request, in snake_case where the
/// API allows it (as some gateways write it).
fn conversation_up() -> Value {
    json!({
        "system_instruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "weather?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"function_response": {"name": "get_weather", "response": {"content": "sunny"}}}]}],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "d", "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generation_config": {"temperature": 0.2, "maxOutputTokens": 50}
    })
}

fn set(mut v: Value, pointer: &str, x: Value) -> Value {
    *v.pointer_mut(pointer).expect("the field exists") = x;
    v
}

pub fn cases() -> Vec<Case> {
    let hello = gemini_answer(
        json!([{"text": "thinking", "thought": true}, {"text": "Hel"}, {"text": "lo"}]),
        "STOP",
        small_usage(),
    );
    let said = |text: &str| json!({"role": "assistant", "content": text});
    let usage12 = json!({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12});
    let call = json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]);
    let tool_calls = |args: &str| {
        json!({"role": "assistant", "content": null,
               "tool_calls": [{"id": "call_x", "type": "function", "function": {"name": "get_weather", "arguments": args}}]})
    };
    let rich_usage = json!({"promptTokenCount": 40, "candidatesTokenCount": 12, "thoughtsTokenCount": 5, "cachedContentTokenCount": 16, "totalTokenCount": 57});
    let client_usage = |completion: u64| {
        json!({"prompt_tokens": 40, "completion_tokens": completion, "total_tokens": 40 + completion,
               "prompt_tokens_details": {"cached_tokens": 16}})
    };
    vec![
        gcase(
            "gemini: text parts joined (thoughts left out) reach the client",
            None,
            whole(client_completion(said("Hello"), "stop", usage12.clone()), hello.clone()),
        ),
        gcase(
            "gemini: text changed on the way",
            Some("fidelity.content"),
            whole(client_completion(said("Hello!"), "stop", usage12.clone()), hello.clone()),
        ),
        gcase(
            "gemini: a function call becomes a tool call that stopped for tool_calls",
            None,
            whole(
                client_completion(tool_calls("{\"city\":\"Paris\"}"), "tool_calls", usage12.clone()),
                gemini_answer(call.clone(), "STOP", small_usage()),
            ),
        ),
        gcase(
            "gemini: a function call's arguments changed",
            Some("fidelity.tool-calls"),
            whole(
                client_completion(tool_calls("{\"city\":\"Rome\"}"), "tool_calls", usage12.clone()),
                gemini_answer(call.clone(), "STOP", small_usage()),
            ),
        ),
        gcase(
            "gemini: MAX_TOKENS reported as stop",
            Some("fidelity.finish-reason"),
            whole(
                client_completion(said("Hello"), "stop", usage12.clone()),
                set(hello.clone(), "/candidates/0/finishReason", json!("MAX_TOKENS")),
            ),
        ),
        gcase(
            "gemini: SAFETY is content_filter",
            None,
            whole(
                client_completion(said("Hello"), "content_filter", usage12.clone()),
                set(hello.clone(), "/candidates/0/finishReason", json!("SAFETY")),
            ),
        ),
        gcase(
            "gemini: thinking tokens count as completion, cached tokens as cached",
            None,
            whole(
                client_completion(said("Hello"), "stop", client_usage(17)),
                set(hello.clone(), "/usageMetadata", rich_usage.clone()),
            ),
        ),
        gcase(
            "gemini: thinking tokens dropped from the completion count",
            Some("fidelity.usage"),
            whole(
                client_completion(said("Hello"), "stop", client_usage(12)),
                set(hello.clone(), "/usageMetadata", rich_usage.clone()),
            ),
        ),
        gcase(
            "gemini: a stream translated and ended with [DONE]",
            None,
            streamed(client_hello(true), gemini_sse(&hello_stream(true))),
        ),
        gcase(
            "gemini: a stream without its finishReason ended with [DONE]",
            Some("stream.no-false-completion"),
            streamed(client_hello(true), gemini_sse(&hello_stream(false))),
        ),
        gcase(
            "gemini: a stream without its finishReason ended with an error event",
            None,
            streamed(
                openai_sse(&[
                    chunk(json!({"role": "assistant", "content": "Hel"}), Value::Null),
                    json!({"error": {"message": "gemini ended its stream before its answer was complete"}}),
                ]),
                gemini_sse(&hello_stream(false)),
            ),
        ),
        gcase(
            "gemini: an error reported mid-stream ended with [DONE]",
            Some("stream.no-false-completion"),
            streamed(
                client_hello(true),
                gemini_sse(&[
                    hello_stream(true)[0].clone(),
                    json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}),
                ]),
            ),
        ),
        gcase("gemini: a JSON-array stream (no alt=sse) folded into the same answer", None, {
            let body = serde_json::to_vec(&Value::Array(hello_stream(true))).unwrap();
            let mut call =
                to_gemini("streamGenerateContent", GEMINI_KEY, contents_hi(), answer(200, "application/json", body));
            call.request.query = None;
            exchange(chat(gemini_chat(true)), sse_response(client_hello(true)), vec![call])
        }),
        gcase(
            "gemini: a conversation sent faithfully (snake_case spellings too)",
            None,
            conversation(conversation_up()),
        ),
        gcase(
            "gemini: the system prompt lost on the way",
            Some("fidelity.request"),
            conversation({
                let mut up = conversation_up();
                up.as_object_mut().unwrap().remove("system_instruction");
                up
            }),
        ),
        gcase(
            "gemini: a tool result answering another function",
            Some("fidelity.request"),
            conversation(set(conversation_up(), "/contents/2/parts/0/function_response/name", json!("get_time"))),
        ),
        gcase(
            "gemini: a JSON tool result sent as the object it spells (its spacing is not kept)",
            None,
            conversation_with_result(
                "{\"temperature\": 21, \"sky\": \"clear\"}",
                set(
                    conversation_up(),
                    "/contents/2/parts/0/function_response/response",
                    json!({"temperature": 21, "sky": "clear"}),
                ),
            ),
        ),
        gcase(
            "gemini: a JSON tool result whose value changed on the way",
            Some("fidelity.request"),
            conversation_with_result(
                "{\"temperature\": 21, \"sky\": \"clear\"}",
                set(
                    conversation_up(),
                    "/contents/2/parts/0/function_response/response",
                    json!({"temperature": 12, "sky": "clear"}),
                ),
            ),
        ),
        gcase(
            "gemini: a required tool choice loosened to AUTO",
            Some("fidelity.request"),
            conversation(set(conversation_up(), "/toolConfig/functionCallingConfig/mode", json!("AUTO"))),
        ),
        gcase(
            "gemini: max_tokens changed on the way",
            Some("fidelity.request"),
            conversation(set(conversation_up(), "/generation_config/maxOutputTokens", json!(5))),
        ),
        gcase("gemini: another key in x-goog-api-key", Some("security.credential-not-replaced"), {
            let call =
                to_gemini("generateContent", "AIza-some-other-key", contents_hi(), json_answer(200, hello.clone()));
            exchange(
                chat(gemini_chat(false)),
                json_response(200, client_completion(said("Hello"), "stop", usage12.clone())),
                vec![call],
            )
        }),
        Case {
            name: "gemini: the environment's GEMINI_API_KEY reaches its deployment's host",
            setup: env_key_setup(),
            expect: None,
            also: Vec::new(),
            exchange: {
                let call = to_gemini(
                    "generateContent",
                    "AIza-from-the-environment",
                    contents_hi(),
                    json_answer(200, hello.clone()),
                );
                exchange(
                    chat(gemini_chat(false)),
                    json_response(200, client_completion(said("Hello"), "stop", usage12.clone())),
                    vec![call],
                )
            },
        },
        Case {
            name: "gemini: another key in place of the environment's GEMINI_API_KEY",
            setup: env_key_setup(),
            expect: Some("security.credential-not-replaced"),
            also: Vec::new(),
            exchange: {
                let call =
                    to_gemini("generateContent", "AIza-someone-elses", contents_hi(), json_answer(200, hello.clone()));
                exchange(
                    chat(gemini_chat(false)),
                    json_response(200, client_completion(said("Hello"), "stop", usage12.clone())),
                    vec![call],
                )
            },
        },
        gcase(
            "gemini: the client's gateway key sent as the key in the URL",
            Some("security.client-key-not-forwarded"),
            {
                let mut call = to_gemini("generateContent", GEMINI_KEY, contents_hi(), json_answer(200, hello.clone()));
                call.request.query = Some(format!("key={MASTER_KEY}"));
                exchange(
                    chat(gemini_chat(false)),
                    json_response(200, client_completion(said("Hello"), "stop", usage12.clone())),
                    vec![call],
                )
            },
        ),
        gcase("gemini: a function call through the Messages bridge is a tool_use", None, {
            let client = messages(
                json!({"model": "gemini", "max_tokens": 64, "messages": [{"role": "user", "content": "weather?"}]}),
            );
            let up = json!({"contents": [{"role": "user", "parts": [{"text": "weather?"}]}], "generationConfig": {"maxOutputTokens": 64}});
            let provider = gemini_answer(call.clone(), "STOP", small_usage());
            let got = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "gemini",
                    "content": [{"type": "tool_use", "id": "call_x", "name": "get_weather", "input": {"city": "Paris"}}],
                    "stop_reason": "tool_use", "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 2}});
            exchange(
                client,
                json_response(200, got),
                vec![to_gemini("generateContent", GEMINI_KEY, up, json_answer(200, provider))],
            )
        }),
        gcase(
            "gemini: a function call through the Messages bridge reported as end_turn",
            Some("fidelity.finish-reason"),
            {
                let client = messages(
                    json!({"model": "gemini", "max_tokens": 64, "messages": [{"role": "user", "content": "weather?"}]}),
                );
                let up = json!({"contents": [{"role": "user", "parts": [{"text": "weather?"}]}], "generationConfig": {"maxOutputTokens": 64}});
                let provider = gemini_answer(call, "STOP", small_usage());
                let got = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "gemini",
                    "content": [{"type": "tool_use", "id": "call_x", "name": "get_weather", "input": {"city": "Paris"}}],
                    "stop_reason": "end_turn", "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 2}});
                exchange(
                    client,
                    json_response(200, got),
                    vec![to_gemini("generateContent", GEMINI_KEY, up, json_answer(200, provider))],
                )
            },
        ),
    ]
}
