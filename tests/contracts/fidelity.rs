//! The fidelity family: content, tool calls, finish reasons, usage and
//! identity, passed through and across the OpenAI <-> Anthropic translation.

use crate::common::*;
use postmortem::mocks::{AnswerEnd, MockKind};
use serde_json::{json, Value};

/// `v` with the field at `pointer` set (its parent must exist).
fn with(mut v: Value, pointer: &str, x: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    match v.pointer_mut(parent).expect("the parent exists") {
        Value::Object(m) => {
            m.insert(key.to_string(), x);
        }
        Value::Array(a) => a[key.parse::<usize>().expect("an index")] = x,
        _ => panic!("{parent} is not a container"),
    }
    v
}

fn tool_completion(args: &str) -> Value {
    json!({"id": "chatcmpl-2", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o",
           "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
             "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}}]}}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
}

fn tool_message() -> Value {
    json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-x",
           "content": [{"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
           "stop_reason": "tool_use", "stop_sequence": null, "usage": {"input_tokens": 20, "output_tokens": 9}})
}

/// What a correct gateway sends an OpenAI client for `tool_message()`.
fn translated_tools(id: &str, args: &str) -> Value {
    json!({"id": "msg_2", "object": "chat.completion", "created": 1700000001, "model": "claude",
           "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Let me check.",
             "tool_calls": [{"id": id, "type": "function", "function": {"name": "get_weather", "arguments": args}}]}}],
           "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}})
}

/// A Messages answer with one tool call, as a gateway would give a Messages client.
fn anthropic_tool_answer(name: &str, input: Value, stop: &str) -> Value {
    json!({"id": "msg_x", "type": "message", "role": "assistant", "model": "gpt-4o",
           "content": [{"type": "tool_use", "id": "call_1", "name": name, "input": input}],
           "stop_reason": stop, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 5}})
}

/// `/v1/messages` on an OpenAI model, bridged by the gateway to OpenAI's
/// Responses API, whose answer is a `get_weather({"city": "Paris"})` call.
fn via_responses(client: Value) -> postmortem::contracts::Exchange {
    let sent = json!({"model": "gpt-4o", "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]}]});
    let provider = json!({"id": "resp_1", "object": "response", "created_at": 1700000000, "status": "completed", "model": "gpt-4o",
        "output": [{"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}", "status": "completed"}],
        "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}});
    let auth = format!("Bearer {OPENAI_KEY}");
    let call = upstream(
        "openai",
        MockKind::Openai,
        "/v1/responses",
        &[("authorization", &auth)],
        sent,
        json_answer(200, provider),
    );
    let req =
        messages(json!({"model": "gpt-4o", "max_tokens": 64, "messages": [{"role": "user", "content": "weather?"}]}));
    exchange(req, json_response(200, client), vec![call])
}

fn claude_chat() -> postmortem::contracts::ClientRequest {
    chat(json!({"model": "claude", "messages": [{"role": "user", "content": "weather?"}]}))
}

fn translated(client: Value, provider: Value) -> postmortem::contracts::Exchange {
    let sent = json!({"model": "claude-x", "max_tokens": 4096, "messages": [{"role": "user", "content": "weather?"}]});
    exchange(claude_chat(), json_response(200, client), vec![to_anthropic(sent, json_answer(200, provider))])
}

fn passthrough(client: Value, provider: Value) -> postmortem::contracts::Exchange {
    exchange(chat(chat_body()), json_response(200, client), vec![to_openai(chat_body(), json_answer(200, provider))])
}

/// An OpenAI conversation with a system prompt, a tool call and its result,
/// and what the Anthropic provider received for it.
fn conversation(upstream_body: Value) -> postmortem::contracts::Exchange {
    let client = chat(json!({"model": "claude", "max_tokens": 300, "temperature": 0.2, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "user", "content": "and tomorrow?"}]}));
    let answer = json!({"id": "msg_1", "object": "chat.completion", "created": 1, "model": "claude",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}});
    exchange(client, json_response(200, answer), vec![to_anthropic(upstream_body, json_answer(200, message("hi")))])
}

/// An OpenAI client sending an image, then two tool calls whose results come
/// back in the other order, translated for Anthropic into `upstream_body`
/// (the faithful form: `vision_up()`).
fn vision_and_results(upstream_body: Value) -> postmortem::contracts::Exchange {
    let client = chat(json!({"model": "claude", "max_tokens": 300, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what is this, and the weather?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "call_b", "content": "Rome: 21"},
        {"role": "tool", "tool_call_id": "call_a", "content": "Paris: 18"}]}));
    let answer = json!({"id": "msg_1", "object": "chat.completion", "created": 1, "model": "claude",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}});
    exchange(client, json_response(200, answer), vec![to_anthropic(upstream_body, json_answer(200, message("hi")))])
}

/// An OpenAI client's tool call and its result ("Paris: 18"), translated for
/// Bedrock Converse with the result text `sent`.
fn converse_result(sent: &str) -> postmortem::contracts::Exchange {
    let client = chat(json!({"model": "claude", "max_tokens": 300, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "Paris: 18"}]}));
    let converse = json!({"inferenceConfig": {"maxTokens": 300}, "messages": [
        {"role": "user", "content": [{"text": "weather?"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": sent}]}}]}]});
    let provider = json!({"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}}, "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 2, "totalTokens": 12}});
    let answer = json!({"id": "msg_1", "object": "chat.completion", "created": 1, "model": "claude",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}});
    let call = upstream(
        "bedrock",
        MockKind::Bedrock,
        "/model/anthropic.claude-x/converse",
        &[],
        converse,
        json_answer(200, provider),
    );
    exchange(client, json_response(200, answer), vec![call])
}

/// `vision_and_results` faithfully in Messages, the call ids renamed
/// consistently (a gateway may: Bedrock restricts their characters).
fn vision_up() -> Value {
    json!({"model": "claude-x", "max_tokens": 300, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what is this, and the weather?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "Rome: 21"},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Paris: 18"}]}]})
}

/// An OpenAI client declaring a tool, forcing it, refusing parallel calls
/// and setting stop sequences (one whitespace-only), translated for Anthropic
/// into `upstream_body` (the faithful form: `tools_up()`).
fn tool_setup(upstream_body: Value) -> postmortem::contracts::Exchange {
    let client = chat(json!({"model": "claude", "max_tokens": 300, "stop": ["END", " "], "parallel_tool_calls": false,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "messages": [{"role": "user", "content": "weather?"}]}));
    let answer = json!({"id": "msg_1", "object": "chat.completion", "created": 1, "model": "claude",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}});
    exchange(client, json_response(200, answer), vec![to_anthropic(upstream_body, json_answer(200, message("hi")))])
}

fn tools_up() -> Value {
    json!({"model": "claude-x", "max_tokens": 300, "stop_sequences": ["END"],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
        "tools": [{"name": "get_weather", "description": "Weather by city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
        "messages": [{"role": "user", "content": "weather?"}]})
}

/// An OpenAI pass-through whose client set `seed`, `n` and a
/// `response_format`, and whose provider got `upstream_body`.
fn params_passthrough(upstream_body: Value) -> postmortem::contracts::Exchange {
    let client = json!({"model": "gpt-4o", "seed": 7, "n": 1, "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": "hi"}]});
    exchange(
        chat(client),
        json_response(200, completion("Hello")),
        vec![to_openai(upstream_body, json_answer(200, completion("Hello")))],
    )
}

/// `/v1/messages` passed through to Anthropic: the client's body with
/// cache breakpoints, what the provider received, what it answered, what
/// the client got.
fn messages_passthrough(upstream_body: Value, provider: Value, client: Value) -> postmortem::contracts::Exchange {
    exchange(
        messages(cached_body()),
        json_response(200, client),
        vec![to_anthropic(upstream_body, json_answer(200, provider))],
    )
}

fn cached_body() -> Value {
    json!({"model": "claude-x", "max_tokens": 300,
        "system": [{"type": "text", "text": "a long manual", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "question", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]})
}

/// A Message that thought first (a signed thinking block), then answered.
fn thought(signature: &str) -> Value {
    json!({"id": "msg_t", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "thinking", "thinking": "Let me see.", "signature": signature}, {"type": "text", "text": "hi"}],
        "stop_reason": "end_turn", "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 2}})
}

pub fn cases() -> Vec<Case> {
    let count_request = json!({"model": "claude", "messages": [{"role": "user", "content": "count me"}]});
    let count_call = |n: u64| {
        upstream(
            "anthropic",
            MockKind::Anthropic,
            "/v1/messages/count_tokens",
            &[("x-api-key", ANTHROPIC_KEY)],
            json!({"model": "claude-x", "messages": [{"role": "user", "content": "count me"}]}),
            json_answer(200, json!({"input_tokens": n})),
        )
    };
    let ok = completion("Hello");
    let stream_req = json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let sse_text = "a\n\ndata: [DONE]\n\nb";
    let provider_chunks = vec![
        chunk(json!({"role": "assistant", "content": sse_text}), Value::Null),
        chunk(json!({}), json!("stop")),
        json!("[DONE]"),
    ];
    let cached = with(
        with(message("hi"), "/usage/cache_read_input_tokens", json!(100)),
        "/usage/cache_creation_input_tokens",
        json!(5),
    );
    let to_openai_text = |prompt: u64| {
        json!({"id": "msg_1", "object": "chat.completion", "created": 1, "model": "claude",
               "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
               "usage": {"prompt_tokens": prompt, "completion_tokens": 2, "total_tokens": prompt + 2}})
    };
    vec![
        case(
            "content changed in a pass-through",
            Some("fidelity.content"),
            passthrough(completion("Hell0"), ok.clone()),
        ),
        case(
            "streamed text that looks like SSE syntax is cut short",
            Some("fidelity.content"),
            exchange(
                chat(stream_req.clone()),
                sse_response(openai_sse(&[
                    chunk(json!({"role": "assistant", "content": "a"}), Value::Null),
                    chunk(json!({}), json!("stop")),
                    json!("[DONE]"),
                ])),
                vec![to_openai(stream_req.clone(), {
                    let mut a = answer(200, "text/event-stream", openai_sse(&provider_chunks));
                    a.end = AnswerEnd::Complete;
                    a
                })],
            ),
        ),
        case(
            "a stream the gateway gave up on (its timeout) and said so with an error event: the rest is not owed",
            None,
            exchange(
                chat(stream_req.clone()),
                sse_response(openai_sse(&[
                    chunk(json!({"role": "assistant", "content": "a"}), Value::Null),
                    json!({"error": {"message": "upstream sent no stream data within the stream timeout", "type": "timeout_error"}}),
                ])),
                vec![to_openai(stream_req.clone(), answer(200, "text/event-stream", openai_sse(&provider_chunks)))],
            ),
        ),
        case(
            "streamed text that looks like SSE syntax arrives intact",
            None,
            exchange(
                chat(stream_req.clone()),
                sse_response(openai_sse(&provider_chunks)),
                vec![to_openai(stream_req.clone(), answer(200, "text/event-stream", openai_sse(&provider_chunks)))],
            ),
        ),
        case(
            "tool arguments re-serialized in a pass-through",
            Some("fidelity.tool-calls"),
            passthrough(tool_completion(r#"{"city": "Paris"}"#), tool_completion(r#"{"city":"Paris"}"#)),
        ),
        case(
            "a tool call's id replaced",
            Some("fidelity.tool-calls"),
            passthrough(
                with(tool_completion("{}"), "/choices/0/message/tool_calls/0/id", json!("call_X")),
                tool_completion("{}"),
            ),
        ),
        case(
            "tool_use translated to tool_calls faithfully",
            None,
            translated(translated_tools("toolu_1", r#"{"city":"Paris"}"#), tool_message()),
        ),
        case(
            "tool_use translated with a new id",
            Some("fidelity.tool-calls"),
            translated(translated_tools("call_abc", r#"{"city":"Paris"}"#), tool_message()),
        ),
        case(
            "tool_use input translated to other arguments",
            Some("fidelity.tool-calls"),
            translated(translated_tools("toolu_1", r#"{"city":"Lyon"}"#), tool_message()),
        ),
        case(
            "max_tokens becomes stop",
            Some("fidelity.finish-reason"),
            translated(to_openai_text(10), with(message("hi"), "/stop_reason", json!("max_tokens"))),
        ),
        case("end_turn becomes stop", None, translated(to_openai_text(10), message("hi"))),
        case(
            "the conversation translated faithfully",
            None,
            conversation(
                json!({"model": "claude-x", "max_tokens": 300, "temperature": 0.2, "system": [{"type": "text", "text": "be\nbrief"}], "messages": [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}, {"type": "text", "text": "and tomorrow?"}]}]}),
            ),
        ),
        case(
            "a tool result changed on the way up",
            Some("fidelity.request"),
            conversation(
                json!({"model": "claude-x", "max_tokens": 300, "temperature": 0.2, "system": [{"type": "text", "text": "be\nbrief"}], "messages": [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "rainy"}, {"type": "text", "text": "and tomorrow?"}]}]}),
            ),
        ),
        case(
            "the system prompt dropped on the way up",
            Some("fidelity.request"),
            conversation(
                json!({"model": "claude-x", "max_tokens": 300, "temperature": 0.2, "messages": [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}, {"type": "text", "text": "and tomorrow?"}]}]}),
            ),
        ),
        case(
            "a temperature changed on the way up",
            Some("fidelity.request"),
            conversation(
                json!({"model": "claude-x", "max_tokens": 300, "temperature": 1.0, "system": [{"type": "text", "text": "be\nbrief"}], "messages": [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}, {"type": "text", "text": "and tomorrow?"}]}]}),
            ),
        ),
        case(
            "turns reordered on the way up",
            Some("fidelity.request"),
            conversation(
                json!({"model": "claude-x", "max_tokens": 300, "temperature": 0.2, "system": [{"type": "text", "text": "be\nbrief"}], "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]}, {"role": "user", "content": "weather?"}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}, {"type": "text", "text": "and tomorrow?"}]}]}),
            ),
        ),
        case("a tool result translated for Bedrock Converse faithfully", None, converse_result("Paris: 18")),
        case(
            "a tool result changed on the way to Bedrock Converse",
            Some("fidelity.request"),
            converse_result("Paris: 25"),
        ),
        case("an image and tool results translated faithfully (ids renamed)", None, vision_and_results(vision_up())),
        case(
            "tool results made to answer the wrong calls on the way up",
            Some("fidelity.request"),
            vision_and_results(with(vision_up(), "/messages/2/content/0/tool_use_id", json!("toolu_1"))),
        ),
        case(
            "an image dropped on the way up",
            Some("fidelity.request"),
            vision_and_results(with(
                vision_up(),
                "/messages/0/content",
                json!([{"type": "text", "text": "what is this, and the weather?"}]),
            )),
        ),
        case(
            "an image's bytes changed on the way up",
            Some("fidelity.request"),
            vision_and_results(with(vision_up(), "/messages/0/content/1/source/data", json!("AAAA"))),
        ),
        case("tools, tool_choice and stop sequences translated faithfully", None, tool_setup(tools_up())),
        case(
            "a tool's parameter schema changed on the way up",
            Some("fidelity.request"),
            tool_setup(with(tools_up(), "/tools/0/input_schema/required", json!([]))),
        ),
        case(
            "a tool's description changed on the way up",
            Some("fidelity.request"),
            tool_setup(with(tools_up(), "/tools/0/description", json!("Weather"))),
        ),
        case(
            "the client's tools dropped on the way up",
            Some("fidelity.request"),
            tool_setup({
                let mut b = tools_up();
                let m = b.as_object_mut().unwrap();
                m.remove("tools");
                m.remove("tool_choice");
                b
            }),
        ),
        case(
            "a forced tool turned into any tool",
            Some("fidelity.request"),
            tool_setup(with(tools_up(), "/tool_choice", json!({"type": "any", "disable_parallel_tool_use": true}))),
        ),
        case(
            "parallel tool calls allowed against the client's wish",
            Some("fidelity.request"),
            tool_setup(with(tools_up(), "/tool_choice/disable_parallel_tool_use", json!(false))),
        ),
        case(
            "a stop sequence changed on the way up",
            Some("fidelity.request"),
            tool_setup(with(tools_up(), "/stop_sequences", json!(["STOP"]))),
        ),
        case(
            "pass-through parameters arrive as set (and a dropped one is not changed)",
            None,
            params_passthrough(json!({"model": "gpt-4o", "seed": 7, "response_format": {"type": "json_object"},
                "messages": [{"role": "user", "content": "hi"}]})),
        ),
        case(
            "a pass-through parameter changed on the way up",
            Some("fidelity.request"),
            params_passthrough(
                json!({"model": "gpt-4o", "seed": 8, "n": 1, "response_format": {"type": "json_object"},
                "messages": [{"role": "user", "content": "hi"}]}),
            ),
        ),
        case(
            "cache breakpoints and a signed thinking block passed through",
            None,
            messages_passthrough(cached_body(), thought("sig-abc"), thought("sig-abc")),
        ),
        case("a cache breakpoint dropped on the way up", Some("fidelity.request"), {
            let mut up = cached_body();
            up["messages"][0]["content"][0].as_object_mut().unwrap().remove("cache_control");
            messages_passthrough(up, message("hi"), message("hi"))
        }),
        case(
            "a thinking block's signature lost on the way down",
            Some("fidelity.content"),
            messages_passthrough(cached_body(), thought("sig-abc"), thought("")),
        ),
        case("log probabilities passed through", None, {
            let lp = json!({"content": [{"token": "Hello", "logprob": -0.0001, "bytes": [72, 101, 108, 108, 111], "top_logprobs": []}], "refusal": null});
            let with_lp = with(ok.clone(), "/choices/0/logprobs", lp);
            passthrough(with_lp.clone(), with_lp)
        }),
        case("log probabilities passed through without their null fields", None, {
            let lp = json!({"content": [{"token": "Hello", "logprob": -0.0001, "bytes": [72, 101, 108, 108, 111], "top_logprobs": []}], "refusal": null});
            let relayed = json!({"content": [{"token": "Hello", "logprob": -1e-4, "bytes": [72, 101, 108, 108, 111], "top_logprobs": []}]});
            passthrough(with(ok.clone(), "/choices/0/logprobs", relayed), with(ok.clone(), "/choices/0/logprobs", lp))
        }),
        case("a token's log probability changed in a pass-through", Some("fidelity.content"), {
            let lp = json!({"content": [{"token": "Hello", "logprob": -0.0001, "bytes": [72, 101, 108, 108, 111], "top_logprobs": []}]});
            let changed = json!({"content": [{"token": "Hello", "logprob": -0.5, "bytes": [72, 101, 108, 108, 111], "top_logprobs": []}]});
            passthrough(with(ok.clone(), "/choices/0/logprobs", changed), with(ok.clone(), "/choices/0/logprobs", lp))
        }),
        case("log probabilities dropped in a pass-through", Some("fidelity.content"), {
            let lp = json!({"content": [{"token": "Hello", "logprob": -0.0001, "bytes": [72, 101, 108, 108, 111], "top_logprobs": []}], "refusal": null});
            passthrough(ok.clone(), with(ok.clone(), "/choices/0/logprobs", lp))
        }),
        case(
            "a finish reason rewritten in a pass-through",
            Some("fidelity.finish-reason"),
            passthrough(with(ok.clone(), "/choices/0/finish_reason", json!("length")), ok.clone()),
        ),
        case(
            "prompt tokens replaced by an estimate",
            Some("fidelity.usage"),
            passthrough(
                with(with(ok.clone(), "/usage/prompt_tokens", json!(12)), "/usage/total_tokens", json!(14)),
                ok.clone(),
            ),
        ),
        case(
            "usage dropped",
            Some("fidelity.usage"),
            passthrough(
                {
                    let mut c = ok.clone();
                    c.as_object_mut().unwrap().remove("usage");
                    c
                },
                ok.clone(),
            ),
        ),
        case(
            "a Messages client bridged to the Responses API gets the provider's tool call",
            None,
            via_responses(anthropic_tool_answer("get_weather", json!({"city": "Paris"}), "tool_use")),
        ),
        case(
            "a Messages client bridged to the Responses API gets another tool's arguments",
            Some("fidelity.tool-calls"),
            via_responses(anthropic_tool_answer("get_weather", json!({"city": "Lyon"}), "tool_use")),
        ),
        case(
            "a Messages client bridged to the Responses API is told it ended its turn",
            Some("fidelity.finish-reason"),
            via_responses(anthropic_tool_answer("get_weather", json!({"city": "Paris"}), "end_turn")),
        ),
        case("cache tokens added back into prompt_tokens", None, translated(to_openai_text(115), cached.clone())),
        case("cache tokens left out of prompt_tokens", None, translated(to_openai_text(10), cached.clone())),
        case(
            "prompt_tokens that no reading of the cache explains",
            Some("fidelity.usage"),
            translated(to_openai_text(7), cached),
        ),
        case(
            "the id replaced in a pass-through",
            Some("fidelity.identity"),
            passthrough(with(ok.clone(), "/id", json!("chatcmpl-gw")), ok.clone()),
        ),
        case(
            "the model replaced by another name",
            Some("fidelity.identity"),
            passthrough(with(ok.clone(), "/model", json!("gpt-3.5-turbo")), ok.clone()),
        ),
        case(
            "the model reported as the name the client asked for",
            None,
            passthrough(with(ok.clone(), "/model", json!("gpt-4o")), ok.clone()),
        ),
        case(
            "system_fingerprint dropped",
            Some("fidelity.identity"),
            passthrough(
                {
                    let mut c = ok.clone();
                    c.as_object_mut().unwrap().remove("system_fingerprint");
                    c
                },
                ok.clone(),
            ),
        ),
        case(
            "stream chunks with different ids",
            Some("fidelity.identity"),
            exchange(
                chat(stream_req.clone()),
                sse_response(openai_sse(&[
                    with(provider_chunks[0].clone(), "/id", json!("chatcmpl-A")),
                    provider_chunks[1].clone(),
                    json!("[DONE]"),
                ])),
                vec![],
            ),
        ),
        case(
            "base64 from the provider, the same float32s to the client",
            None,
            exchange(
                request("/v1/embeddings", json!({"model": "text-embedding-3-small", "input": "hi"})),
                json_response(
                    200,
                    json!({"object": "list", "model": "m", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.125]}], "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
                ),
                vec![upstream(
                    "openai",
                    MockKind::Openai,
                    "/v1/embeddings",
                    &[("authorization", &format!("Bearer {OPENAI_KEY}"))],
                    json!({}),
                    json_answer(
                        200,
                        json!({"object": "list", "model": "m", "data": [{"object": "embedding", "index": 0, "embedding": "AAAAPwAAAD4="}], "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
                    ),
                )],
            ),
        ),
        case(
            "an embedding vector altered",
            Some("fidelity.content"),
            exchange(
                request("/v1/embeddings", json!({"model": "text-embedding-3-small", "input": "hi"})),
                json_response(
                    200,
                    json!({"object": "list", "model": "m", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}], "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
                ),
                vec![upstream(
                    "openai",
                    MockKind::Openai,
                    "/v1/embeddings",
                    &[("authorization", &format!("Bearer {OPENAI_KEY}"))],
                    json!({}),
                    json_answer(
                        200,
                        json!({"object": "list", "model": "m", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.125]}], "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
                    ),
                )],
            ),
        ),
        case(
            "count_tokens answered with the provider's count",
            None,
            exchange(
                request("/v1/messages/count_tokens", count_request.clone()),
                json_response(200, json!({"input_tokens": 4321})),
                vec![count_call(4321)],
            ),
        ),
        case(
            "count_tokens answered with another number than the provider counted",
            Some("fidelity.usage"),
            exchange(
                request("/v1/messages/count_tokens", count_request.clone()),
                json_response(200, json!({"input_tokens": 3})),
                vec![count_call(4321)],
            ),
        ),
        case(
            "count_tokens for a model on Anthropic's API answered without asking it (a local estimate)",
            Some("fidelity.usage"),
            exchange(
                request("/v1/messages/count_tokens", count_request.clone()),
                json_response(200, json!({"input_tokens": 3, "litellm_count_source": "local_estimate"})),
                Vec::new(),
            ),
        ),
        case(
            "count_tokens for a model whose provider has no count endpoint may be estimated",
            None,
            exchange(
                request(
                    "/v1/messages/count_tokens",
                    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "count me"}]}),
                ),
                json_response(200, json!({"input_tokens": 3})),
                Vec::new(),
            ),
        ),
    ]
}
