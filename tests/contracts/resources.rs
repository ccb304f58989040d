//! The resources family, for single exchanges: a deployment's configured
//! `timeout` bounds how long a client waits for a non-streaming answer.

use crate::common::*;
use postmortem::contracts::Setup;
use serde_json::json;
use std::time::Duration;

/// `gpt-4o` on the `openai` mock with a 1 s timeout.
fn timed() -> Setup {
    let config = json!({"model_list": [
        {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:1001/v1", "api_key": OPENAI_KEY, "timeout": 1}},
    ]});
    let mocks = [("openai".to_string(), "http://127.0.0.1:1001".to_string())].into_iter().collect();
    Setup::from_config(&config, &mocks, &Default::default())
}

/// A pass-through chat answer that reached the client after `secs` seconds.
fn answered_after(secs: f64, stream: bool) -> postmortem::contracts::Exchange {
    let body = if stream {
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
    } else {
        chat_body()
    };
    let mut response = if stream {
        sse_response(openai_sse(&[
            chunk(json!({"role": "assistant", "content": "Hello"}), json!("stop")),
            json!("[DONE]"),
        ]))
    } else {
        json_response(200, completion("Hello"))
    };
    response.elapsed = Some(Duration::from_secs_f64(secs));
    let upstream = if stream {
        answer(
            200,
            "text/event-stream",
            openai_sse(&[chunk(json!({"role": "assistant", "content": "Hello"}), json!("stop")), json!("[DONE]")]),
        )
    } else {
        json_answer(200, completion("Hello"))
    };
    exchange(chat(body.clone()), response, vec![to_openai(body, upstream)])
}

fn timed_case(name: &'static str, expect: Option<&'static str>, exchange: postmortem::contracts::Exchange) -> Case {
    Case { name, exchange, setup: timed(), expect, also: Vec::new() }
}

pub fn cases() -> Vec<Case> {
    vec![
        timed_case(
            "a model with a 1 s timeout kept the client waiting 30 s",
            Some("resources.timeout-honoured"),
            answered_after(30.0, false),
        ),
        timed_case("a model with a 1 s timeout answered within it", None, answered_after(0.8, false)),
        timed_case("a long stream is not bounded by the timeout as a whole", None, answered_after(30.0, true)),
        case("a model without a timeout may take its time", None, answered_after(30.0, false)),
    ]
}
