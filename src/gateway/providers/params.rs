//! Which OpenAI request parameters each provider accepts, and the rule that
//! optional parameters are never sent as JSON null.
//!
//! The vLLM incident: the gateway set `encoding_format = None` explicitly so
//! an SDK would not add its default, and the JSON encoder wrote
//! `"encoding_format": null`, which vLLM rejects. Here the upstream body is
//! built only from keys the client actually sent with non-null values; an
//! absent field has no way to reappear as null.

use super::body::Body;
use super::Provider;
use crate::gateway::error::ApiError;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Embeddings,
    /// Legacy text completions (`/v1/completions`), OpenAI-family only.
    Completions,
    /// The Responses API (`/v1/responses`), OpenAI-family only.
    Responses,
}

/// Fields that are part of the request's shape, not optional params.
const CHAT_REQUIRED: &[&str] = &["model", "messages"];
const EMBED_REQUIRED: &[&str] = &["model", "input"];
const COMPLETIONS_REQUIRED: &[&str] = &["model", "prompt"];
/// `input` may be absent (a stored prompt, `previous_response_id`), so it is
/// an optional parameter: a `null` one is not sent.
const RESPONSES_REQUIRED: &[&str] = &["model"];
/// The Responses API's request parameters (OpenAI API reference,
/// "Create a model response").
const RESPONSES_OPENAI: &[&str] = &[
    "background",
    "conversation",
    "include",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "prompt_cache_key",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
];
/// OpenAI's `/v1/completions` parameters (vLLM accepts them too).
const COMPLETIONS_OPENAI: &[&str] = &[
    "best_of",
    "echo",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "max_tokens",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "suffix",
    "temperature",
    "top_p",
    "user",
];

const CHAT_OPENAI: &[&str] = &[
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "presence_penalty",
    "response_format",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "reasoning_effort",
    "metadata",
    "modalities",
    "prediction",
    "audio",
    "service_tier",
    "store",
    "web_search_options",
];
/// vLLM's OpenAI server accepts the OpenAI set plus its sampling extras.
const CHAT_VLLM_EXTRA: &[&str] = &[
    "top_k",
    "min_p",
    "repetition_penalty",
    "length_penalty",
    "best_of",
    "use_beam_search",
    "ignore_eos",
    "min_tokens",
    "skip_special_tokens",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "chat_template_kwargs",
];
/// What the OpenAI -> Anthropic translation knows how to carry.
const CHAT_ANTHROPIC: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "metadata",
    "response_format",
    "top_k",
];
/// What the OpenAI -> Gemini translation carries (`gemini::translate`):
/// sampling and length into `generationConfig`, stop sequences, candidate
/// count, seed, penalties, JSON output, function tools and the tool choice.
/// Gemini has no `logit_bias`, `logprobs` in OpenAI's shape, `user` or
/// `parallel_tool_calls` switch: those are refused (or dropped with
/// `drop_params`), never silently lost.
const CHAT_GEMINI: &[&str] = &[
    "frequency_penalty",
    "max_completion_tokens",
    "max_tokens",
    "n",
    "presence_penalty",
    "response_format",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_p",
];
const EMBED_OPENAI: &[&str] = &["encoding_format", "dimensions", "user"];
const EMBED_VLLM: &[&str] = &["encoding_format", "dimensions", "user", "truncate_prompt_tokens"];

/// The parameters `provider` accepts on `endpoint`: its module says
/// (`ProviderApi::supported_params`), from the tables here.
pub(crate) fn supported(provider: Provider, endpoint: &Endpoint, upstream_model: &str) -> Vec<&'static str> {
    provider.api().supported_params(provider, *endpoint, upstream_model)
}

/// The parameters of OpenAI's own API on `endpoint`, or, for chat to a
/// model that speaks Messages, what the translation carries: what every
/// provider accepts unless its module says otherwise.
pub(crate) fn standard(endpoint: Endpoint, speaks_messages: bool) -> Vec<&'static str> {
    match endpoint {
        Endpoint::Chat if speaks_messages => CHAT_ANTHROPIC.to_vec(),
        Endpoint::Chat => CHAT_OPENAI.to_vec(),
        Endpoint::Embeddings => EMBED_OPENAI.to_vec(),
        Endpoint::Completions => COMPLETIONS_OPENAI.to_vec(),
        Endpoint::Responses => RESPONSES_OPENAI.to_vec(),
    }
}

/// vLLM's OpenAI server: the OpenAI sets plus its sampling extras for chat
/// and `truncate_prompt_tokens` for embeddings.
pub fn vllm(endpoint: Endpoint) -> Vec<&'static str> {
    match endpoint {
        Endpoint::Chat => CHAT_OPENAI.iter().chain(CHAT_VLLM_EXTRA).copied().collect(),
        Endpoint::Embeddings => EMBED_VLLM.to_vec(),
        other => standard(other, false),
    }
}

/// Gemini: chat only, what its translation carries.
pub fn gemini(endpoint: Endpoint) -> Vec<&'static str> {
    match endpoint {
        Endpoint::Chat => CHAT_GEMINI.to_vec(),
        _ => Vec::new(),
    }
}

/// Builds the parameters to send upstream from the client's body: required
/// fields are kept, nulls are removed, unsupported params are dropped when
/// `drop_params` is on and refused (400 naming the param) otherwise. The
/// result is a view over the client's body, not a copy of it ([`Body`]).
///
/// `null_absent_params` is the vLLM incident's bug put back (known-bad
/// variant, harness only): every supported optional param the client did not
/// send is written as explicit null, as LiteLLM's `optional_params[...] = None` did.
pub(crate) fn build_upstream_params<'a>(
    client: &'a Map<String, Value>,
    provider: Provider,
    endpoint: Endpoint,
    upstream_model: &str,
    drop_params: bool,
    null_absent_params: bool,
) -> Result<Body<'a>, ApiError> {
    let required = match endpoint {
        Endpoint::Chat => CHAT_REQUIRED,
        Endpoint::Embeddings => EMBED_REQUIRED,
        Endpoint::Completions => COMPLETIONS_REQUIRED,
        Endpoint::Responses => RESPONSES_REQUIRED,
    };
    let allowed = supported(provider, &endpoint, upstream_model);
    let mut skip = Vec::new();
    for (k, v) in client {
        if required.contains(&k.as_str()) {
            continue;
        }
        if allowed.contains(&k.as_str()) {
            if v.is_null() {
                skip.push(k.as_str());
            }
            continue;
        }
        if drop_params {
            tracing::debug!(param = %k, provider = %provider, "dropping unsupported param (drop_params)");
            skip.push(k.as_str());
            continue;
        }
        return Err(ApiError::UnsupportedParam {
            message: format!(
                "{provider} does not support parameter `{k}`. Remove it, or set `litellm_settings.drop_params: true` to drop unsupported params"
            ),
            param: k.clone(),
        });
    }
    let mut nulls = Vec::new();
    if null_absent_params {
        let bug_params: &[&'static str] = match endpoint {
            Endpoint::Embeddings => &["encoding_format"],
            Endpoint::Chat | Endpoint::Completions => &["temperature", "top_p", "max_tokens", "stop", "seed", "n"],
            Endpoint::Responses => &["temperature", "top_p", "max_output_tokens"],
        };
        nulls.extend_from_slice(bug_params);
    }
    Ok(Body::client(client, skip, nulls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn absent_and_null_optional_fields_stay_absent() {
        let client = obj(json!({"model": "m", "input": ["a"], "user": null}));
        let out = build_upstream_params(&client, Provider::HostedVllm, Endpoint::Embeddings, "m", false, false)
            .unwrap()
            .into_map();
        assert!(!out.contains_key("encoding_format"));
        assert!(!out.contains_key("user"));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn known_bad_variant_really_writes_null() {
        let client = obj(json!({"model": "m", "input": ["a"]}));
        let out = build_upstream_params(&client, Provider::HostedVllm, Endpoint::Embeddings, "m", false, true).unwrap();
        assert_eq!(serde_json::to_string(&out).unwrap(), r#"{"model":"m","input":["a"],"encoding_format":null}"#);
    }

    #[test]
    fn a_responses_input_of_null_is_not_sent() {
        let client = obj(json!({"model": "m", "input": null, "instructions": "be brief"}));
        let out = build_upstream_params(&client, Provider::Openai, Endpoint::Responses, "m", false, false)
            .unwrap()
            .into_map();
        assert!(!out.contains_key("input"), "{out:?}");
        let client = obj(json!({"model": "m", "input": "hi"}));
        let out = build_upstream_params(&client, Provider::Openai, Endpoint::Responses, "m", false, false)
            .unwrap()
            .into_map();
        assert_eq!(out["input"], json!("hi"));
    }

    #[test]
    fn unsupported_params_are_refused_or_dropped() {
        let client = obj(json!({"model": "m", "messages": [], "top_k": 3}));
        let err = build_upstream_params(&client, Provider::Openai, Endpoint::Chat, "m", false, false).unwrap_err();
        assert!(err.to_string().contains("`top_k`"));
        let ok = build_upstream_params(&client, Provider::Openai, Endpoint::Chat, "m", true, false).unwrap().into_map();
        assert!(!ok.contains_key("top_k"));
        let vllm =
            build_upstream_params(&client, Provider::HostedVllm, Endpoint::Chat, "m", false, false).unwrap().into_map();
        assert_eq!(vllm["top_k"], json!(3));
    }

    #[test]
    fn gemini_takes_what_its_translation_carries() {
        let client = obj(json!({"model": "m", "messages": [], "temperature": 1, "logit_bias": {"1": 1}}));
        let err = build_upstream_params(&client, Provider::Gemini, Endpoint::Chat, "m", false, false).unwrap_err();
        assert!(err.to_string().contains("`logit_bias`"), "{err}");
        let ok = build_upstream_params(&client, Provider::Gemini, Endpoint::Chat, "m", true, false).unwrap().into_map();
        assert_eq!(ok, obj(json!({"model": "m", "messages": [], "temperature": 1})));
    }
}
