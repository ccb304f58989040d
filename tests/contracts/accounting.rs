//! `accounting.response-cost`: a reported cost is the cost map's price of
//! the provider's usage. Prices here are round numbers per million tokens.

use crate::common::*;
use postmortem::contracts::{ClientResponse, Prices, COST_HEADER};
use serde_json::{json, Value};
use std::sync::Arc;

/// gpt-4o: $2.50 in, $10 out, $1.25 cached read per million tokens;
/// claude-x: $3 in, $15 out, $0.30 read, $3.75 written.
const MAP: &str = r#"{
  "gpt-4o": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-6, "output_cost_per_token": 1e-5, "cache_read_input_token_cost": 1.25e-6},
  "anthropic/claude-x": {"litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5, "cache_read_input_token_cost": 3e-7, "cache_creation_input_token_cost": 3.75e-6}
}"#;

fn priced(name: &'static str, expect: Option<&'static str>, exchange: postmortem::contracts::Exchange) -> Case {
    let mut c = case(name, expect, exchange);
    c.setup.prices = Some(Arc::new(Prices::parse(MAP.as_bytes()).expect("the test map parses")));
    c
}

fn with_cost(body: Value, cost: &str) -> ClientResponse {
    let mut r = json_response(200, body);
    r.headers.push((COST_HEADER.into(), cost.into()));
    r
}

/// gpt-4o answering with 1000 prompt tokens, 200 of them cached, and 100 completion tokens.
fn openai_cached() -> Value {
    let mut c = completion("priced");
    c["usage"] = json!({"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100,
                        "prompt_tokens_details": {"cached_tokens": 200}});
    c
}

/// Claude answering with 100 input tokens, 1000 written to the cache, 2000 read, 50 output.
fn claude_cached() -> Value {
    let mut m = message("priced");
    m["usage"] = json!({"input_tokens": 100, "cache_creation_input_tokens": 1000,
                        "cache_read_input_tokens": 2000, "output_tokens": 50});
    m
}

fn openai_case(name: &'static str, expect: Option<&'static str>, cost: &str) -> Case {
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let up = to_openai(body.clone(), json_answer(200, openai_cached()));
    priced(name, expect, exchange(chat(body), with_cost(openai_cached(), cost), vec![up]))
}

fn claude_case(name: &'static str, expect: Option<&'static str>, cost: &str) -> Case {
    let body = json!({"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
    let up_body = json!({"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
    let up = to_anthropic(up_body, json_answer(200, claude_cached()));
    priced(name, expect, exchange(messages(body), with_cost(claude_cached(), cost), vec![up]))
}

pub fn cases() -> Vec<Case> {
    let mut out = vec![
        // 800 × 2.5e-6 + 200 × 1.25e-6 + 100 × 1e-5
        openai_case("cached prompt tokens at their own rate", None, "0.00325"),
        openai_case("a rendering rounded in its last digits", None, "3.2500001e-03"),
        openai_case("cached prompt tokens charged at the full input rate", Some("accounting.response-cost"), "0.0035"),
        openai_case("input and output rates swapped", Some("accounting.response-cost"), "0.01025"),
        openai_case("a priced call reported free", Some("accounting.response-cost"), "0"),
        // 100 × 3e-6 + 1000 × 3.75e-6 + 2000 × 3e-7 + 50 × 1.5e-5
        claude_case("cache writes and reads at their own rates", None, "0.0054"),
        claude_case("cache writes charged as plain input", Some("accounting.response-cost"), "0.00465"),
        claude_case("cache reads charged twice", Some("accounting.response-cost"), "0.006"),
    ];
    // No cost reported: nothing to judge (a gateway need not report one).
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let up = to_openai(body.clone(), json_answer(200, openai_cached()));
    out.push(priced(
        "no cost reported",
        None,
        exchange(chat(body.clone()), json_response(200, openai_cached()), vec![up]),
    ));
    // A model the map does not price: not judged.
    let mut unknown = openai_cached();
    unknown["model"] = json!("unpriced-model");
    let up_body = json!({"model": "unpriced-model", "messages": [{"role": "user", "content": "hi"}]});
    let up = to_openai(up_body, json_answer(200, unknown.clone()));
    out.push(priced(
        "a model the map does not price",
        None,
        exchange(chat(body.clone()), with_cost(unknown, "1"), vec![up]),
    ));
    // Without a known map, nothing is judged.
    let mut c = openai_case("no map known", None, "0.0035");
    c.setup.prices = None;
    out.push(c);
    // A deployment's own rates replace the map's: 1100 tokens at $1 per million.
    let own = || {
        vec![Some(postmortem::contracts::OwnRates {
            input: Some(1e-6),
            output: Some(1e-6),
            cache_read: None,
            cache_write: None,
        })]
    };
    let mut c = openai_case("the deployment's own rates", None, "0.0011");
    c.setup.custom_rates.insert("gpt-4o".into(), own());
    out.push(c);
    let mut c =
        openai_case("the map's price where the deployment sets its own", Some("accounting.response-cost"), "0.00325");
    c.setup.custom_rates.insert("gpt-4o".into(), own());
    out.push(c);
    // Only the input rate set: the map's output and cache rates stay
    // (800 × 1e-6 + 200 × 1.25e-6 + 100 × 1e-5).
    let mut c = openai_case("the deployment's own input rate over the map's entry", None, "0.00205");
    c.setup.custom_rates.insert(
        "gpt-4o".into(),
        vec![Some(postmortem::contracts::OwnRates {
            input: Some(1e-6),
            output: None,
            cache_read: None,
            cache_write: None,
        })],
    );
    out.push(c);
    out
}
