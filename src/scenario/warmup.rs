//! Warming a target process up before its scenario's steps are timed.
//!
//! A gateway process's first request on a route can cost seconds that no
//! later one does: LiteLLM imports a provider's SDK, builds its HTTP
//! transport and its router caches on first use, and on a loaded two-core
//! machine that first call took 3 to 7 s where the same call later took a
//! few hundred milliseconds. The fault matrix times exactly those first
//! calls (each fault scenario starts a process of its own), so without a
//! warm-up a timing verdict would measure the target's cold start, not how
//! it bounds a fault: a false alarm.
//!
//! So in target mode the rendered config gets one extra deployment per
//! provider family the scenario uses, named `postmortem-warm-up-*` and
//! pointed at a closed local port (127.0.0.1:9: nothing listens, so no mock
//! journal, contract or egress check ever sees these calls), and each is
//! called once through the entry points the scenario's deployments serve
//! before the first step. The answers (connection errors) are ignored; every
//! call is bounded. Our own gateway starts warm, so it is not warmed.

use serde_json::{json, Value};
use std::time::Duration;

const CLOSED: &str = "http://127.0.0.1:9";
/// Each warm-up call's bound (a target retrying a refused connection with
/// back-off must not hold the scenario up).
const CALL_BOUND: Duration = Duration::from_secs(10);

/// One warm-up call: path and body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WarmUpCall {
    pub path: &'static str,
    pub body: Value,
}

/// The config with the warm-up deployments added, and the calls that warm
/// each up. A config without a `model_list` is returned as it is.
pub(crate) fn with_warm_up(config_json: &str) -> (String, Vec<WarmUpCall>) {
    let Ok(mut config) = serde_json::from_str::<Value>(config_json) else {
        return (config_json.to_string(), Vec::new());
    };
    let Some(list) = config.get_mut("model_list").and_then(Value::as_array_mut) else {
        return (config_json.to_string(), Vec::new());
    };
    let providers: std::collections::BTreeSet<String> = list
        .iter()
        .filter_map(|d| d.pointer("/litellm_params/model").and_then(Value::as_str))
        .filter_map(|m| m.split_once('/').map(|(p, _)| p.to_string()))
        .collect();
    let mut calls = Vec::new();
    for provider in &providers {
        let Some(params) = deployment(provider) else { continue };
        let name = format!("postmortem-warm-up-{provider}");
        list.push(json!({"model_name": name, "litellm_params": params}));
        let messages = json!([{"role": "user", "content": "warm-up"}]);
        calls.push(WarmUpCall {
            path: "/v1/chat/completions",
            body: json!({"model": name, "max_tokens": 1, "messages": messages}),
        });
        calls.push(WarmUpCall {
            path: "/v1/messages",
            body: json!({"model": name, "max_tokens": 1, "messages": messages}),
        });
        if matches!(provider.as_str(), "openai" | "azure" | "hosted_vllm") {
            calls.push(WarmUpCall { path: "/v1/embeddings", body: json!({"model": name, "input": "warm-up"}) });
        }
    }
    match serde_json::to_string_pretty(&config) {
        Ok(text) => (text, calls),
        Err(_) => (config_json.to_string(), Vec::new()),
    }
}

/// A deployment of `provider` pointed at the closed port, with placeholder
/// credentials too short to count as secrets.
fn deployment(provider: &str) -> Option<Value> {
    Some(match provider {
        "openai" | "hosted_vllm" => {
            json!({"model": format!("{provider}/warm-up"), "api_base": format!("{CLOSED}/v1"), "api_key": "warmup"})
        }
        "anthropic" | "azure_ai" => {
            json!({"model": format!("{provider}/warm-up"), "api_base": CLOSED, "api_key": "warmup"})
        }
        "azure" => {
            json!({"model": "azure/warm-up", "api_base": CLOSED, "api_key": "warmup", "api_version": "2024-10-21"})
        }
        "bedrock" => json!({
            "model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
            "aws_bedrock_runtime_endpoint": CLOSED,
            "aws_region_name": "us-east-1",
            "aws_access_key_id": "warmup",
            "aws_secret_access_key": "warmup",
        }),
        // Vertex AI would need Google credentials for a closed port; its
        // first call stays cold.
        _ => return None,
    })
}

/// Sends each warm-up call to the target at `base` (root path included)
/// with `key` if it has one, ignoring the answers.
pub(crate) async fn warm_up(http: &reqwest::Client, base: &str, key: Option<&str>, calls: &[WarmUpCall]) {
    for call in calls {
        let mut req = http.post(format!("{base}{}", call.path)).json(&call.body).timeout(CALL_BOUND);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if call.path == "/v1/messages" {
            req = req.header("anthropic-version", "2023-06-01");
        }
        let _ = req.send().await.map(|r| r.bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warm_deployment_per_provider_family_on_a_closed_port() {
        let config = json!({"model_list": [
            {"model_name": "a", "litellm_params": {"model": "openai/gpt-4o"}},
            {"model_name": "b", "litellm_params": {"model": "openai/gpt-4o-mini"}},
            {"model_name": "c", "litellm_params": {"model": "anthropic/claude"}},
            {"model_name": "v", "litellm_params": {"model": "vertex_ai/claude"}},
        ], "general_settings": {"master_key": "sk-x"}});
        let (text, calls) = with_warm_up(&config.to_string());
        let v: Value = serde_json::from_str(&text).unwrap();
        let names: Vec<&str> =
            v["model_list"].as_array().unwrap().iter().filter_map(|d| d["model_name"].as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "v", "postmortem-warm-up-anthropic", "postmortem-warm-up-openai"]);
        assert!(v["model_list"][4]["litellm_params"]["api_base"].as_str().unwrap().starts_with(CLOSED));
        assert_eq!(v["general_settings"]["master_key"], "sk-x");
        let paths: Vec<&str> = calls.iter().map(|c| c.path).collect();
        assert_eq!(
            paths,
            ["/v1/chat/completions", "/v1/messages", "/v1/chat/completions", "/v1/messages", "/v1/embeddings"]
        );
    }

    #[test]
    fn a_config_without_models_is_left_alone() {
        let (text, calls) = with_warm_up("{\"general_settings\": {}}");
        assert_eq!(text, "{\"general_settings\": {}}");
        assert!(calls.is_empty());
    }
}
