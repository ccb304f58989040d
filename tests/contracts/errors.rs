//! The errors family: retries, status classes, messages, Retry-After,
//! invalid requests.

use crate::common::*;
use serde_json::json;

fn openai_error(message: &str) -> serde_json::Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})
}

pub fn cases() -> Vec<Case> {
    let bad_temp = "Invalid value for 'temperature'";
    let upstream_400 = || to_openai(chat_body(), json_answer(400, openai_error(bad_temp)));
    let mut limited = json_answer(429, openai_error("Rate limit reached"));
    limited.headers.push(("retry-after".into(), "7".into()));
    let mut client_429 = json_response(429, openai_error("openai: Rate limit reached"));
    let no_model = json!({"messages": [{"role": "user", "content": "hi"}]});
    vec![
        case(
            "a body without `model` answered 200 on /v1/chat/completions",
            Some("errors.invalid-request-is-4xx"),
            exchange(chat(no_model.clone()), json_response(200, completion("hi")), vec![]),
        ),
        case(
            "a body without `model` on Azure's deployment path, where the path names it",
            None,
            exchange(
                request("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", no_model),
                json_response(200, completion("hi")),
                vec![],
            ),
        ),
        case(
            "a completion without `prompt` answered 200",
            Some("errors.invalid-request-is-4xx"),
            exchange(
                request("/v1/completions", json!({"model": "gpt-4o"})),
                json_response(
                    200,
                    json!({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "gpt-4o",
                           "choices": [{"text": "hi", "index": 0, "logprobs": null, "finish_reason": "stop"}]}),
                ),
                vec![],
            ),
        ),
        case(
            "a 400 retried",
            Some("errors.client-error-not-retried"),
            exchange(
                chat(chat_body()),
                json_response(400, openai_error(bad_temp)),
                vec![upstream_400(), upstream_400(), upstream_400()],
            ),
        ),
        case("a gateway's own model lookups beside the client's call are no retries", None, {
            let auth = format!("Bearer {OPENAI_KEY}");
            let lookup = || {
                let mut call = upstream(
                    "openai",
                    postmortem::mocks::MockKind::Openai,
                    "/v1/models",
                    &[("authorization", &auth)],
                    serde_json::Value::Null,
                    json_answer(404, openai_error("Not found")),
                );
                call.request.method = "GET".into();
                call.request.body.clear();
                call
            };
            exchange(
                chat(chat_body()),
                json_response(200, completion("Hello")),
                vec![lookup(), lookup(), to_openai(chat_body(), json_answer(200, completion("Hello")))],
            )
        }),
        case(
            "a 400 passed on once",
            None,
            exchange(chat(chat_body()), json_response(400, openai_error(bad_temp)), vec![upstream_400()]),
        ),
        case(
            "a provider's 400 answered 500",
            Some("errors.status-class"),
            exchange(chat(chat_body()), json_response(500, openai_error("internal error")), vec![upstream_400()]),
        ),
        case(
            "a provider's 401 (the deployment's key) answered as the gateway's 502",
            None,
            exchange(
                chat(chat_body()),
                json_response(502, openai_error("the deployment's credential was refused")),
                vec![to_openai(chat_body(), json_answer(401, openai_error("Incorrect API key provided")))],
            ),
        ),
        case(
            "a provider's 401 tried again after a token refresh",
            None,
            exchange(
                chat(chat_body()),
                json_response(200, completion("hi")),
                vec![
                    to_openai(chat_body(), json_answer(401, openai_error("token expired"))),
                    to_openai(chat_body(), json_answer(200, completion("hi"))),
                ],
            ),
        ),
        case(
            "a provider's 429 answered 503",
            Some("errors.status-class"),
            exchange(
                chat(chat_body()),
                json_response(503, openai_error("unavailable")),
                vec![to_openai(chat_body(), limited.clone())],
            ),
        ),
        case(
            "a provider's 500 answered 400",
            Some("errors.status-class"),
            exchange(
                chat(chat_body()),
                json_response(400, openai_error("bad")),
                vec![to_openai(chat_body(), json_answer(500, openai_error("boom")))],
            ),
        ),
        case(
            "a provider's message lost",
            Some("errors.upstream-message"),
            exchange(chat(chat_body()), json_response(400, openai_error("Bad request")), vec![upstream_400()]),
        ),
        case(
            "a provider's message inside the gateway's own wording",
            None,
            exchange(
                chat(chat_body()),
                json_response(400, openai_error(&format!("litellm.BadRequestError: OpenAIException - {bad_temp}"))),
                vec![upstream_400()],
            ),
        ),
        case(
            "a provider's message inside Python quoting",
            None,
            exchange(
                chat(chat_body()),
                json_response(
                    400,
                    openai_error(
                        "litellm.BadRequestError: Error code: 400 - {'message': 'Invalid value for \\'temperature\\''}",
                    ),
                ),
                vec![upstream_400()],
            ),
        ),
        case(
            "Retry-After dropped",
            Some("errors.retry-after"),
            exchange(chat(chat_body()), client_429.clone(), vec![to_openai(chat_body(), limited.clone())]),
        ),
        case("Retry-After kept", None, {
            client_429.headers.push(("retry-after".into(), "7".into()));
            exchange(chat(chat_body()), client_429, vec![to_openai(chat_body(), limited)])
        }),
        case(
            "a body that is not JSON answered 500",
            Some("errors.invalid-request-is-4xx"),
            exchange(
                {
                    let mut r = chat(json!({}));
                    r.body = b"{\"model\": \"gpt-4o\", \"messages\": [}".to_vec();
                    r
                },
                json_response(500, openai_error("Expecting value: line 1 column 35")),
                vec![],
            ),
        ),
        case(
            "a numeric model answered 200",
            Some("errors.invalid-request-is-4xx"),
            exchange(
                chat(json!({"model": 42, "messages": [{"role": "user", "content": "hi"}]})),
                json_response(200, completion("hi")),
                vec![],
            ),
        ),
        case(
            "a string temperature answered 500",
            Some("errors.invalid-request-is-4xx"),
            exchange(
                chat(json!({"model": "gpt-4o", "temperature": "hot", "messages": [{"role": "user", "content": "hi"}]})),
                json_response(500, openai_error("TypeError")),
                vec![],
            ),
        ),
        case(
            "missing messages answered 400 in any wording",
            None,
            exchange(chat(json!({"model": "gpt-4o"})), json_response(422, openai_error("field required")), vec![]),
        ),
        case(
            "a null temperature is no fault",
            None,
            exchange(
                chat(json!({"model": "gpt-4o", "temperature": null, "messages": [{"role": "user", "content": "hi"}]})),
                json_response(200, completion("hi")),
                vec![],
            ),
        ),
        case(
            "an HTML page answered with 200 upstream becomes the client's 400",
            Some("errors.status-class"),
            exchange(
                chat(chat_body()),
                json_response(400, json!({"error": {"message": "Invalid request format: <html>maintenance</html>"}})),
                vec![to_openai(chat_body(), answer(200, "text/html", b"<html>maintenance</html>".to_vec()))],
            ),
        ),
        case(
            "an HTML page answered with 200 upstream becomes a 502",
            None,
            exchange(
                chat(chat_body()),
                json_response(502, json!({"error": {"message": "openai returned a body that is not JSON"}})),
                vec![to_openai(chat_body(), answer(200, "text/html", b"<html>maintenance</html>".to_vec()))],
            ),
        ),
        case(
            "a connection reset upstream becomes the client's 400",
            Some("errors.status-class"),
            exchange(
                chat(chat_body()),
                json_response(400, json!({"error": {"message": "Connection error."}})),
                vec![to_openai(chat_body(), {
                    let mut a = answer(200, "application/json", Vec::new());
                    a.status = None;
                    a.end = postmortem::mocks::AnswerEnd::Reset;
                    a
                })],
            ),
        ),
    ]
}
