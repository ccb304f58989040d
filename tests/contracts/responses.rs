//! The Responses API (`/v1/responses`) across the families: its Response
//! object, its stream's event grammar, no false completion, and fidelity
//! of text, identity and parameters in a pass-through.

use crate::common::*;
use postmortem::mocks::{AnswerEnd, MockKind};
use serde_json::{json, Value};

fn body(stream: bool) -> Value {
    json!({"model": "gpt-4o", "input": "hi", "instructions": "be brief", "max_output_tokens": 64, "stream": stream})
}

fn response(text: &str) -> Value {
    json!({"id": "resp_1", "object": "response", "created_at": 1700000000, "status": "completed", "model": "gpt-4o-2024-08-06",
        "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}})
}

/// A complete stream saying "Hello", as OpenAI sends it.
fn events() -> Vec<Value> {
    let mut created = response("");
    created["status"] = json!("in_progress");
    created["output"] = json!([]);
    created["usage"] = Value::Null;
    vec![
        json!({"type": "response.created", "sequence_number": 0, "response": created}),
        json!({"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hel"}),
        json!({"type": "response.output_text.delta", "sequence_number": 2, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "lo"}),
        json!({"type": "response.completed", "sequence_number": 3, "response": response("Hello")}),
    ]
}

fn to_responses(sent: Value, a: postmortem::mocks::MockAnswer) -> postmortem::contracts::UpstreamCall {
    let auth = format!("Bearer {OPENAI_KEY}");
    upstream("openai", MockKind::Openai, "/v1/responses", &[("authorization", &auth)], sent, a)
}

fn whole(client: Value, sent: Value) -> postmortem::contracts::Exchange {
    exchange(
        request("/v1/responses", body(false)),
        json_response(200, client),
        vec![to_responses(sent, json_answer(200, response("Hello")))],
    )
}

fn streamed(client: &[Value], end: AnswerEnd) -> postmortem::contracts::Exchange {
    let mut a = answer(200, "text/event-stream", anthropic_sse(&events()));
    a.end = end;
    exchange(
        request("/v1/responses", body(true)),
        sse_response(anthropic_sse(client)),
        vec![to_responses(body(true), a)],
    )
}

pub fn cases() -> Vec<Case> {
    let mut missing_output = response("Hello");
    missing_output.as_object_mut().unwrap().remove("output");
    let mut renamed = events();
    renamed.swap(1, 0);
    vec![
        case("a Response passed through", None, whole(response("Hello"), body(false))),
        // Without its output the client also lost the provider's text.
        Case {
            also: vec!["fidelity.content"],
            ..case("a Response without output", Some("schema.success-body"), whole(missing_output, body(false)))
        },
        case("a Response whose text changed", Some("fidelity.content"), whole(response("Hello there"), body(false))),
        // The id is a handle the gateway may issue (and resolve) itself.
        case("a Response with the gateway's own id", None, {
            let mut r = response("Hello");
            r["id"] = json!("resp_bGl0ZWxsbTpyZXNwXzE=");
            whole(r, body(false))
        }),
        case("a Response with another model", Some("fidelity.identity"), {
            let mut r = response("Hello");
            r["model"] = json!("gpt-3.5-turbo");
            whole(r, body(false))
        }),
        case("instructions rewritten on the way up", Some("fidelity.request"), {
            let mut sent = body(false);
            sent["instructions"] = json!("be verbose");
            whole(response("Hello"), sent)
        }),
        case("a Responses stream passed through", None, streamed(&events(), AnswerEnd::Complete)),
        case(
            "a Responses stream without its terminal event",
            Some("stream.termination"),
            streamed(&events()[..3], AnswerEnd::Complete),
        ),
        case("a Responses stream that does not open with response.created", Some("stream.termination"), {
            streamed(&renamed, AnswerEnd::Complete)
        }),
        case("an event after response.completed", Some("stream.termination"), {
            let mut e = events();
            e.push(e[1].clone());
            streamed(&e, AnswerEnd::Complete)
        }),
        case(
            "a cut Responses stream that the client saw complete",
            Some("stream.no-false-completion"),
            streamed(&events(), AnswerEnd::Cut),
        ),
        case("a cut Responses stream reported as failed", None, {
            let mut e = events()[..3].to_vec();
            e.push(json!({"type": "error", "sequence_number": 3, "message": "upstream stream broke", "code": "server_error"}));
            streamed(&e, AnswerEnd::Cut)
        }),
        case("a Responses event without its delta", Some("stream.framing"), {
            let mut e = events();
            e[1].as_object_mut().unwrap().remove("delta");
            streamed(&e, AnswerEnd::Complete)
        }),
        case(
            "a Responses body that is not a valid input is refused with a 500",
            Some("errors.invalid-request-is-4xx"),
            {
                exchange(
                    request("/v1/responses", json!({"model": "gpt-4o", "input": 42})),
                    json_response(500, json!({"error": {"message": "boom"}})),
                    vec![],
                )
            },
        ),
    ]
}

/// Embeddings and text completions passed through: the client's input and
/// parameters reach the provider as set.
pub fn passthrough_cases() -> Vec<Case> {
    let embed = |sent: Value| {
        let client = json!({"model": "text-embedding-3-small", "input": "hello", "dimensions": 8});
        let vectors = json!({"object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "usage": {"prompt_tokens": 1, "total_tokens": 1}});
        let auth = format!("Bearer {OPENAI_KEY}");
        let call = upstream(
            "openai",
            MockKind::Openai,
            "/v1/embeddings",
            &[("authorization", &auth)],
            sent,
            json_answer(200, vectors.clone()),
        );
        exchange(request("/v1/embeddings", client), json_response(200, vectors), vec![call])
    };
    vec![
        case(
            "an embeddings input sent as a list of itself, base64 asked upstream",
            None,
            embed(
                json!({"model": "text-embedding-3-small", "input": ["hello"], "dimensions": 8, "encoding_format": "base64"}),
            ),
        ),
        case(
            "an embeddings input changed on the way up",
            Some("fidelity.request"),
            embed(json!({"model": "text-embedding-3-small", "input": "hello world", "dimensions": 8})),
        ),
        case(
            "embedding dimensions changed on the way up",
            Some("fidelity.request"),
            embed(json!({"model": "text-embedding-3-small", "input": "hello", "dimensions": 1536})),
        ),
    ]
}
