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
    .into_iter()
    .chain(encoding_and_models_cases())
    .collect()
}

/// Embeddings in the encoding the client asked for, and model listings.
fn encoding_and_models_cases() -> Vec<Case> {
    // 1.0f32 and 2.0f32, little-endian, in base64.
    let b64 = "AACAPwAAAEA=";
    let embeddings = |embedding: Value| {
        json!({"object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
            "usage": {"prompt_tokens": 1, "total_tokens": 1}})
    };
    let embed = |format: Option<&str>, embedding: Value| {
        let mut body = json!({"model": "text-embedding-3-small", "input": "hello"});
        if let Some(f) = format {
            body["encoding_format"] = json!(f);
        }
        exchange(request("/v1/embeddings", body), json_response(200, embeddings(embedding)), vec![])
    };
    let get = |path: &str, body: Value| {
        let mut r = request(path, json!({}));
        r.method = "GET".into();
        r.body = Vec::new();
        exchange(r, json_response(200, body), vec![])
    };
    let model = json!({"id": "gpt-4o", "object": "model", "created": 1686935002, "owned_by": "openai"});
    vec![
        case("floats when the client set no encoding", None, embed(None, json!([1.0, 2.0]))),
        case("base64 when the client asked for it", None, embed(Some("base64"), json!(b64))),
        case("base64 when the client set no encoding", Some("schema.success-body"), embed(None, json!(b64))),
        case("base64 when the client asked for floats", Some("schema.success-body"), embed(Some("float"), json!(b64))),
        case(
            "floats when the client asked for base64",
            Some("schema.success-body"),
            embed(Some("base64"), json!([1.0, 2.0])),
        ),
        case("base64 that is not float32 values", Some("schema.success-body"), embed(Some("base64"), json!("AAA="))),
        case("a model listing", None, get("/v1/models", json!({"object": "list", "data": [model.clone()]}))),
        case("a model", None, get("/v1/models/gpt-4o", model.clone())),
        case("a model listing whose models lack owned_by", Some("schema.success-body"), {
            let mut m = model.clone();
            m.as_object_mut().unwrap().remove("owned_by");
            get("/v1/models", json!({"object": "list", "data": [m]}))
        }),
        case("a model that is a listing", Some("schema.success-body"), {
            get("/v1/models/gpt-4o", json!({"object": "list", "data": [model]}))
        }),
    ]
}
