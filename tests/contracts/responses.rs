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
        case("a Responses stream whose terminal event names another Response", Some("stream.framing"), {
            let mut e = events();
            e[3]["response"]["id"] = json!("resp_other");
            streamed(&e, AnswerEnd::Complete)
        }),
        // The client also lost that part of the text.
        Case {
            also: vec!["fidelity.content"],
            ..case("a Responses event without its delta", Some("stream.framing"), {
                let mut e = events();
                e[1].as_object_mut().unwrap().remove("delta");
                streamed(&e, AnswerEnd::Complete)
            })
        },
        case("a Responses stream whose deltas were altered, its final Response not", Some("fidelity.content"), {
            let mut e = events();
            e[2]["delta"] = json!("lo!");
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

/// A turn of a conversation: the client sends `previous` (if any), the call
/// reaches `mock` with `sent_previous` (and `store`), the mock answers
/// Response `provider_id` and the client gets `client_id`.
fn turn(
    previous: Option<&str>,
    mock: &str,
    sent_previous: Option<&str>,
    provider_id: &str,
    client_id: &str,
) -> postmortem::contracts::Exchange {
    let mut client = body(false);
    let mut sent = body(false);
    if let Some(p) = previous {
        client["previous_response_id"] = json!(p);
    }
    if let Some(p) = sent_previous {
        sent["previous_response_id"] = json!(p);
    }
    let (mut answer, mut got) = (response("Hello"), response("Hello"));
    answer["id"] = json!(provider_id);
    got["id"] = json!(client_id);
    let auth = format!("Bearer {OPENAI_KEY}");
    let call =
        upstream(mock, MockKind::Openai, "/v1/responses", &[("authorization", &auth)], sent, json_answer(200, answer));
    exchange(request("/v1/responses", client), json_response(200, got), vec![call])
}

fn handle_violations(turns: &[postmortem::contracts::Exchange]) -> Vec<String> {
    let mut handles = postmortem::contracts::Handles::default();
    turns.iter().flat_map(|x| handles.check(x)).map(|v| format!("{}: {}", v.contract, v.detail)).collect()
}

#[test]
fn handles_a_follow_up_resolved_at_the_deployment_that_stored_it_passes() {
    let turns = [
        turn(None, "east", None, "resp_1", "gw_1"),
        turn(Some("gw_1"), "east", Some("resp_1"), "resp_2", "gw_2"),
        // A branch, and a gateway that rebuilt the context itself (no id upstream).
        turn(Some("gw_1"), "west", None, "resp_3", "gw_3"),
        // An id the gateway never gave is not this contract's business.
        turn(Some("resp_elsewhere"), "west", Some("resp_elsewhere"), "resp_4", "gw_4"),
    ];
    assert_eq!(handle_violations(&turns), Vec::<String>::new());
}

#[test]
fn handles_a_follow_up_sent_to_another_deployment_is_reported() {
    let turns =
        [turn(None, "east", None, "resp_1", "gw_1"), turn(Some("gw_1"), "west", Some("resp_1"), "resp_2", "gw_2")];
    let found = handle_violations(&turns);
    assert!(
        found.len() == 1 && found[0].starts_with("fidelity.response-handle") && found[0].contains("went to west"),
        "{found:?}"
    );
}

#[test]
fn handles_the_gateways_own_id_forwarded_upstream_is_reported() {
    let turns =
        [turn(None, "east", None, "resp_1", "gw_1"), turn(Some("gw_1"), "east", Some("gw_1"), "resp_2", "gw_2")];
    let found = handle_violations(&turns);
    assert!(found.len() == 1 && found[0].contains("issued it as \"resp_1\""), "{found:?}");
}

#[test]
fn handles_a_response_stored_against_the_clients_wish_or_not_stored_against_it() {
    let mut unstored = turn(None, "east", None, "resp_1", "gw_1");
    let mut sent = unstored.upstream[0].request.json.clone().unwrap();
    sent["store"] = json!(false);
    unstored.upstream[0].request.body = serde_json::to_vec(&sent).unwrap();
    unstored.upstream[0].request.json = Some(sent);
    let found = handle_violations(&[unstored.clone()]);
    assert!(found.len() == 1 && found[0].contains("store: false"), "{found:?}");
    // The client's own `store: false` passed on is what it asked for.
    let mut asked = unstored;
    let mut client = asked.request.json().unwrap();
    client["store"] = json!(false);
    asked.request.body = serde_json::to_vec(&client).unwrap();
    assert_eq!(handle_violations(&[asked]), Vec::<String>::new());
}

#[test]
fn handles_are_learnt_from_streams_too() {
    let ids = postmortem::contracts::response_ids(&anthropic_sse(&events()));
    assert_eq!(ids, vec!["resp_1".to_string()]);
}

/// `GET /v1/responses/{client_id}`, read upstream from `mock` as `/v1/responses/{read}`.
fn read_back(client_id: &str, mock: &str, read: &str) -> postmortem::contracts::Exchange {
    let mut client = request(&format!("/v1/responses/{client_id}"), json!({}));
    client.method = "GET".into();
    client.body = Vec::new();
    let auth = format!("Bearer {OPENAI_KEY}");
    let mut stored = response("Hello");
    stored["id"] = json!(read);
    let mut call = upstream(
        mock,
        MockKind::Openai,
        &format!("/v1/responses/{read}"),
        &[("authorization", &auth)],
        json!({}),
        json_answer(200, stored.clone()),
    );
    call.request.method = "GET".into();
    call.request.body = Vec::new();
    call.request.json = None;
    stored["id"] = json!(client_id);
    exchange(client, json_response(200, stored), vec![call])
}

#[test]
fn handles_a_response_read_back_from_the_deployment_that_stored_it_passes_and_from_another_is_reported() {
    let first = turn(None, "east", None, "resp_1", "gw_1");
    assert_eq!(handle_violations(&[first.clone(), read_back("gw_1", "east", "resp_1")]), Vec::<String>::new());
    let found = handle_violations(&[first.clone(), read_back("gw_1", "west", "resp_1")]);
    assert!(found.len() == 1 && found[0].contains("asked west"), "{found:?}");
    let found = handle_violations(&[first, read_back("gw_1", "east", "gw_1")]);
    assert!(found.len() == 1 && found[0].contains("for \"gw_1\""), "{found:?}");
}

/// A Responses request bridged to Anthropic's Messages API: what reached
/// Claude is judged like any translation.
pub fn bridged_cases() -> Vec<Case> {
    let client = json!({"model": "claude", "instructions": "be brief", "input": "weather in Paris?", "max_output_tokens": 64,
        "tools": [{"type": "function", "name": "get_weather", "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "function", "name": "get_weather"}});
    let faithful = json!({"model": "claude-sonnet-4-5", "system": "be brief", "max_tokens": 64,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]}],
        "tools": [{"name": "get_weather", "description": "Current weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "tool", "name": "get_weather"}});
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 5, "output_tokens": 2}});
    let bridged = |sent: Value| {
        let call = upstream(
            "anthropic",
            MockKind::Anthropic,
            "/v1/messages",
            &[("x-api-key", ANTHROPIC_KEY)],
            sent,
            json_answer(200, answer.clone()),
        );
        exchange(request("/v1/responses", client.clone()), json_response(200, response("Hello")), vec![call])
    };
    let without = |path: &str| {
        let mut sent = faithful.clone();
        let (parent, key) = path.rsplit_once('/').unwrap();
        sent.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key);
        sent
    };
    vec![
        case("a Responses request bridged to Claude as asked", None, bridged(faithful.clone())),
        case(
            "a bridged Responses request that lost its instructions",
            Some("fidelity.request"),
            bridged(without("/system")),
        ),
        case("a bridged Responses request whose tool's description changed", Some("fidelity.request"), {
            let mut sent = faithful.clone();
            sent["tools"][0]["description"] = json!("Weather");
            bridged(sent)
        }),
        case(
            "a bridged Responses request whose tool lost its description",
            Some("fidelity.request"),
            bridged(without("/tools/0/description")),
        ),
        case("a bridged Responses request whose forced tool became any tool", Some("fidelity.request"), {
            let mut sent = faithful.clone();
            sent["tool_choice"] = json!({"type": "any"});
            bridged(sent)
        }),
        case("a bridged Responses request whose max_output_tokens changed", Some("fidelity.request"), {
            let mut sent = faithful;
            sent["max_tokens"] = json!(4096);
            bridged(sent)
        }),
    ]
}

/// A read of a Response the provider no longer has (its 404), answered as
/// the client sees it.
fn read_of_gone(client_status: u16) -> postmortem::contracts::Exchange {
    let mut x = read_back("gw_1", "openai", "resp_1");
    let gone = json!({"error": {"message": "Response with id 'resp_1' not found.", "type": "invalid_request_error", "param": null, "code": null}});
    x.upstream[0].answer = json_answer(404, gone.clone());
    let body = if client_status == 404 {
        gone
    } else {
        json!({"error": {"message": "Internal server error", "type": "internal_server_error"}})
    };
    x.response = json_response(client_status, body);
    x
}

#[test]
fn a_gone_response_is_the_clients_404_never_a_5xx() {
    let names = |x: &postmortem::contracts::Exchange| -> Vec<String> {
        postmortem::contracts::check(x, &setup()).into_iter().map(|v| v.contract.to_string()).collect()
    };
    assert!(!names(&read_of_gone(404)).contains(&"errors.status-class".to_string()));
    let found = names(&read_of_gone(500));
    assert!(found.contains(&"errors.status-class".to_string()), "{found:?}");
    let mut deleted = read_of_gone(500);
    deleted.request.method = "DELETE".into();
    deleted.upstream[0].request.method = "DELETE".into();
    assert!(names(&deleted).contains(&"errors.status-class".to_string()));
}
