//! The schema family: success bodies, error bodies, media types.

use crate::common::*;
use serde_json::{json, Value};

pub fn cases() -> Vec<Case> {
    let ok = completion("hi");
    let text_completion = json!({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "gpt-4o",
        "choices": [{"text": "hi", "index": 0, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
    vec![
        case(
            "a text completion, whole",
            None,
            exchange(
                request("/v1/completions", json!({"model": "gpt-4o", "prompt": "x"})),
                json_response(200, text_completion.clone()),
                vec![],
            ),
        ),
        case(
            "a text completion answered with a chat completion",
            Some("schema.success-body"),
            exchange(
                request("/v1/completions", json!({"model": "gpt-4o", "prompt": "x"})),
                json_response(200, ok.clone()),
                vec![],
            ),
        ),
        case(
            "a text completion streamed as text_completion chunks",
            None,
            exchange(
                request("/v1/completions", json!({"model": "gpt-4o", "prompt": "x", "stream": true})),
                sse_response(openai_sse(&[
                    json!({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "gpt-4o", "choices": [{"text": "hi", "index": 0, "logprobs": null, "finish_reason": null}]}),
                    json!("[DONE]"),
                ])),
                vec![],
            ),
        ),
        case(
            "a text completion streamed as chat chunks",
            Some("stream.framing"),
            exchange(
                request("/v1/completions", json!({"model": "gpt-4o", "prompt": "x", "stream": true})),
                sse_response(openai_sse(&[chunk(json!({"content": "hi"}), Value::Null), json!("[DONE]")])),
                vec![],
            ),
        ),
        case(
            "a chat completion passed through unchanged",
            None,
            exchange(
                chat(chat_body()),
                json_response(200, ok.clone()),
                vec![to_openai(chat_body(), json_answer(200, ok.clone()))],
            ),
        ),
        case(
            "a 200 that is not a chat.completion object",
            Some("schema.success-body"),
            exchange(
                chat(chat_body()),
                json_response(
                    200,
                    json!({"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}),
                ),
                vec![],
            ),
        ),
        case(
            "a 200 whose finish_reason is outside the enum",
            Some("schema.success-body"),
            exchange(
                chat(chat_body()),
                json_response(200, {
                    let mut b = ok.clone();
                    b["choices"][0]["finish_reason"] = json!("done");
                    b
                }),
                vec![],
            ),
        ),
        case(
            "an error without an error object",
            Some("schema.error-body"),
            exchange(chat(chat_body()), json_response(400, json!({"detail": "bad request"})), vec![]),
        ),
        case(
            "an OpenAI-shaped error on /v1/messages",
            Some("schema.error-body"),
            exchange(
                messages(json!({"model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})),
                json_response(404, json!({"error": {"message": "no such model", "type": "invalid_request_error"}})),
                vec![],
            ),
        ),
        case(
            "an Anthropic error on /v1/messages",
            None,
            exchange(
                messages(json!({"model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})),
                json_response(
                    404,
                    json!({"type": "error", "error": {"type": "not_found_error", "message": "no such model"}}),
                ),
                vec![],
            ),
        ),
        case(
            "an error in OpenAI's shape with any wording and code",
            None,
            exchange(
                chat(chat_body()),
                json_response(
                    404,
                    json!({"error": {"message": "litellm.NotFoundError: nope", "type": null, "param": null, "code": "404"}}),
                ),
                vec![],
            ),
        ),
        case(
            "a JSON answer labelled text/plain",
            Some("schema.media-type"),
            exchange(
                chat(chat_body()),
                {
                    let mut r = json_response(200, ok.clone());
                    r.headers = vec![("content-type".into(), "text/plain".into())];
                    r
                },
                vec![],
            ),
        ),
        case(
            "a Message that is not one",
            Some("schema.success-body"),
            exchange(
                messages(json!({"model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})),
                json_response(200, json!({"type": "message", "content": "hi"})),
                vec![],
            ),
        ),
    ]
}
