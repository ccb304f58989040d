//! The accounting family: a cost the gateway reports for a call is what the
//! model cost map it was given charges for the usage the provider reported.
//!
//! The cost map is LiteLLM's published `model_prices_and_context_window.json`
//! format: per model, a rate per input token, per output token, and (where
//! the provider bills them apart) per cached input token read and per token
//! written to the cache. The provider's answer says how many of each it
//! billed, so the price is determined: a gateway that reports another one
//! (cache tokens charged at the full rate or twice, the output rate for
//! input, prices from a map other than the one it was given) misreports its
//! users' spend.
//!
//! The checks judge only what they can price without doubt: a cost the
//! gateway reports (`x-litellm-response-cost`, LiteLLM's header) on a
//! non-streaming success, the provider's usage in the fields the OpenAI,
//! Anthropic and Bedrock Converse APIs define, and the map's entries for the
//! model called (under any provider prefix, or the model the provider
//! answered with, or a deployment's `base_model`), or the deployment's own
//! `input_cost_per_token`/`output_cost_per_token`. A cost that matches any of
//! them passes. Usage that other rates may apply to (audio, reasoning,
//! one-hour cache writes, server tools, long-context tiers, service tiers) is
//! not judged.

use super::{violation, Exchange, Setup, UpstreamCall, Violation};
use crate::mocks::MockKind;
use serde_json::Value;
use std::collections::HashMap;

/// The header a LiteLLM-style gateway reports a call's cost in, in USD.
pub const COST_HEADER: &str = "x-litellm-response-cost";

/// How far a reported cost may be from the price: rounding in the last
/// digits of a decimal rendering, never a mispriced token class.
const RELATIVE_TOLERANCE: f64 = 1e-3;

/// One model's rates, in USD per token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rates {
    pub input: f64,
    pub output: f64,
    pub cache_read: Option<f64>,
    pub cache_write: Option<f64>,
    /// The entry has long-context tiers (`…_above_128k_tokens`, …).
    pub tiered: bool,
}

impl Rates {
    fn from_entry(e: &Value) -> Option<Rates> {
        let rate = |k: &str| e.get(k).and_then(Value::as_f64).filter(|r| r.is_finite() && *r >= 0.0);
        Some(Rates {
            input: rate("input_cost_per_token")?,
            // Embedding models often state no output rate: they have no output.
            output: rate("output_cost_per_token").unwrap_or(0.0),
            cache_read: rate("cache_read_input_token_cost"),
            cache_write: rate("cache_creation_input_token_cost"),
            tiered: e.as_object().is_some_and(|o| o.keys().any(|k| k.contains("_above_"))),
        })
    }

    /// The price of `u` at these rates, or `None` when a rate it needs is
    /// missing (cache writes with no write rate: not determined).
    fn price(&self, u: &Billed) -> Option<f64> {
        let write = match (u.cache_write, self.cache_write) {
            (0, _) => 0.0,
            (n, Some(r)) => n as f64 * r,
            (_, None) => return None,
        };
        // A cached read without its own rate is an input token (OpenAI's
        // models before prompt caching was priced apart).
        let read = u.cache_read as f64 * self.cache_read.unwrap_or(self.input);
        Some(u.input as f64 * self.input + read + write + u.output as f64 * self.output)
    }
}

/// The rates a deployment sets itself (`litellm_params.input_cost_per_token`,
/// `output_cost_per_token`): each replaces the map's rate for its calls.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnRates {
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub cache_read: Option<f64>,
    pub cache_write: Option<f64>,
}

impl OwnRates {
    /// `map` with these rates in place of its own.
    fn over(&self, map: &Rates) -> Rates {
        Rates {
            input: self.input.unwrap_or(map.input),
            output: self.output.unwrap_or(map.output),
            cache_read: self.cache_read.or(map.cache_read),
            cache_write: self.cache_write.or(map.cache_write),
            ..map.clone()
        }
    }

    /// These rates alone, when input and output are both set (cache tokens
    /// at the own cache rates where set, else as input tokens).
    fn alone(&self) -> Option<Rates> {
        Some(Rates {
            input: self.input?,
            output: self.output?,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
            tiered: false,
        })
    }
}

/// A cost map: model name -> rates (entries without an input rate, such as
/// image or per-second models, are left out).
#[derive(Debug, Clone, Default)]
pub struct Prices {
    entries: HashMap<String, Rates>,
}

impl Prices {
    /// Reads a cost map in LiteLLM's format; `None` when it is not a JSON
    /// object (a gateway given a broken map prices from another one, which
    /// the checks cannot know).
    pub fn parse(bytes: &[u8]) -> Option<Prices> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let entries =
            v.as_object()?.iter().filter_map(|(name, e)| Some((name.clone(), Rates::from_entry(e)?))).collect();
        Some(Prices { entries })
    }

    /// The entries for `name`: the name itself, or the name under a prefix
    /// that starts with one of `providers` (`anthropic/claude-x`,
    /// `bedrock/us-west-2/anthropic.claude-x`), never another platform's
    /// entry for the same model (`azure/eu/gpt-4o` is not OpenAI's price).
    fn matching<'a>(
        &'a self,
        name: &'a str,
        providers: &'a [&'a str],
    ) -> impl Iterator<Item = (&'a String, &'a Rates)> + 'a {
        let suffix = format!("/{name}");
        self.entries.iter().filter(move |(k, _)| {
            k.as_str() == name
                || (k.ends_with(&suffix) && k.split('/').next().is_some_and(|first| providers.contains(&first)))
        })
    }
}

/// Tokens by how the provider bills them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Billed {
    /// Input tokens billed at the input rate (not read from or written to a cache).
    input: u64,
    cache_read: u64,
    cache_write: u64,
    output: u64,
}

impl Billed {
    fn prompt(&self) -> u64 {
        self.input + self.cache_read + self.cache_write
    }
}

fn count(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// What the provider billed for its answer, when the answer says it in a
/// shape these checks price without doubt.
fn billed(call: &UpstreamCall) -> Option<Billed> {
    let answer: Value = serde_json::from_slice(&call.answer.body).ok()?;
    let u = answer.get("usage")?;
    if call.kind == MockKind::Gemini {
        return None;
    }
    // Anthropic's Message (direct, Azure AI, Vertex AI, Bedrock InvokeModel).
    if answer.get("type").and_then(Value::as_str) == Some("message") {
        let one_hour = count(u, "/cache_creation/ephemeral_1h_input_tokens");
        if one_hour > 0 || u.get("server_tool_use").is_some_and(|s| !s.is_null()) {
            return None;
        }
        return Some(Billed {
            input: count(u, "/input_tokens"),
            cache_read: count(u, "/cache_read_input_tokens"),
            cache_write: count(u, "/cache_creation_input_tokens"),
            output: count(u, "/output_tokens"),
        });
    }
    // Bedrock Converse.
    if u.get("inputTokens").is_some() {
        return Some(Billed {
            input: count(u, "/inputTokens"),
            cache_read: count(u, "/cacheReadInputTokens"),
            cache_write: count(u, "/cacheWriteInputTokens"),
            output: count(u, "/outputTokens"),
        });
    }
    // OpenAI: Chat Completions, completions, embeddings (prompt_tokens, with
    // the cached ones among them) and the Responses API (input_tokens).
    let (prompt, cached, output, details) = if u.get("prompt_tokens").is_some() {
        (
            count(u, "/prompt_tokens"),
            count(u, "/prompt_tokens_details/cached_tokens"),
            count(u, "/completion_tokens"),
            [
                "/prompt_tokens_details/audio_tokens",
                "/completion_tokens_details/audio_tokens",
                "/completion_tokens_details/reasoning_tokens",
            ],
        )
    } else if u.get("input_tokens").is_some() {
        (
            count(u, "/input_tokens"),
            count(u, "/input_tokens_details/cached_tokens"),
            count(u, "/output_tokens"),
            [
                "/input_tokens_details/audio_tokens",
                "/output_tokens_details/audio_tokens",
                "/output_tokens_details/reasoning_tokens",
            ],
        )
    } else {
        return None;
    };
    // Audio and reasoning tokens may have rates of their own.
    if details.iter().any(|p| count(u, p) > 0) || cached > prompt {
        return None;
    }
    Some(Billed { input: prompt - cached, cache_read: cached, cache_write: 0, output })
}

/// The model names the call was priced under: the model it asked for (in
/// its body, or in its path for Bedrock, Vertex AI and Azure deployments)
/// and the model the provider answered with.
fn called_models(call: &UpstreamCall) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(m) = call.request.json.as_ref().and_then(|b| b.get("model")).and_then(Value::as_str) {
        names.push(m.to_string());
    }
    let path = crate::mocks::percent_decode(&call.request.path, false);
    for marker in ["/model/", "/models/", "/deployments/"] {
        if let Some(rest) = path.split(marker).nth(1) {
            let id = rest.split('/').next().unwrap_or_default();
            let id = id.split(':').next().filter(|_| call.kind == MockKind::VertexAi).unwrap_or(id);
            if !id.is_empty() {
                names.push(id.to_string());
            }
        }
    }
    if let Some(m) = serde_json::from_slice::<Value>(&call.answer.body)
        .ok()
        .and_then(|a| a.get("model").and_then(Value::as_str).map(str::to_string))
    {
        names.push(m);
    }
    names.sort();
    names.dedup();
    names
}

/// The cost-map prefixes of the platform a mock stands for.
fn platform(kind: MockKind) -> &'static [&'static str] {
    match kind {
        MockKind::Openai => &["openai"],
        MockKind::Azure => &["azure"],
        MockKind::HostedVllm => &["hosted_vllm", "openai"],
        MockKind::Anthropic => &["anthropic"],
        MockKind::Bedrock => &["bedrock"],
        MockKind::VertexAi => &["vertex_ai"],
        MockKind::AzureAi => &["azure_ai"],
        MockKind::Gemini => &["gemini"],
    }
}

/// `accounting.response-cost` on one exchange.
pub(super) fn check(x: &Exchange, setup: &Setup, out: &mut Vec<Violation>) {
    let r = &x.response;
    if x.request.wants_stream() || !(200..300).contains(&r.status) {
        return;
    }
    let Some(reported) = r.header(COST_HEADER).and_then(|c| c.trim().parse::<f64>().ok()) else { return };
    let Some(call) = x.last_model_call() else { return };
    if !call.answer.status.is_some_and(|s| (200..300).contains(&s)) {
        return;
    }
    let Some(usage) = billed(call) else { return };
    let body = x.request.json();
    if body.as_ref().and_then(|b| b.get("service_tier")).is_some_and(|t| !t.is_null()) {
        return;
    }
    let group = body.as_ref().and_then(|b| b.get("model")).and_then(Value::as_str).unwrap_or_default();
    // Candidate prices: the deployments' own rates (which replace the map's
    // for them), then the map's for each name unless every deployment of the
    // model sets its own.
    let own = setup.custom_rates.get(group).map(Vec::as_slice).unwrap_or_default();
    let mut candidates: Vec<(String, Rates)> = own
        .iter()
        .flatten()
        .filter_map(|o| Some((format!("the deployment's own rates for `{group}`"), o.alone()?)))
        .collect();
    let all_own = !own.is_empty() && own.iter().all(Option::is_some);
    if let Some(prices) = &setup.prices {
        let mut names = called_models(call);
        names.extend(setup.base_models.get(group).into_iter().flatten().cloned());
        let mut entries = Vec::new();
        for n in &names {
            entries.extend(prices.matching(n, platform(call.kind)).map(|(k, r)| (k.clone(), r.clone())));
        }
        for (k, map) in entries {
            // A deployment's own input and output rates may be merged into
            // the map's entry, keeping its cache rates (LiteLLM does).
            for o in own.iter().flatten() {
                candidates.push((format!("the deployment's own rates over `{k}`"), o.over(&map)));
            }
            if !all_own {
                candidates.push((format!("cost map entry `{k}`"), map));
            }
        }
    }
    candidates.sort_by(|a, b| a.0.cmp(&b.0));
    candidates.dedup_by(|a, b| a.0 == b.0);
    if candidates.is_empty() || candidates.iter().any(|(_, r)| r.tiered && usage.prompt() > 128_000) {
        return;
    }
    let priced: Vec<(String, f64)> =
        candidates.iter().filter_map(|(name, r)| Some((name.clone(), r.price(&usage)?))).collect();
    if priced.is_empty() {
        return;
    }
    let close = |want: f64| (reported - want).abs() <= (want.abs() * RELATIVE_TOLERANCE).max(1e-12);
    if priced.iter().any(|(_, want)| close(*want)) {
        return;
    }
    let expected: Vec<String> = priced.iter().take(4).map(|(name, want)| format!("${want:.10} ({name})")).collect();
    out.push(violation(
        "accounting.response-cost",
        format!(
            "the gateway reported a cost of ${reported} for `{group}`, but the provider billed {} input, {} cached, {} cache-write and {} output tokens, which the cost map it was given prices at {}",
            usage.input,
            usage.cache_read,
            usage.cache_write,
            usage.output,
            expected.join(" or ")
        ),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_price_each_token_class_at_its_own_rate() {
        let r = Rates { input: 2.5e-6, output: 1e-5, cache_read: Some(1.25e-6), cache_write: None, tiered: false };
        let u = Billed { input: 800, cache_read: 200, cache_write: 0, output: 100 };
        assert!((r.price(&u).unwrap() - 0.00325).abs() < 1e-12);
        // A cache write with no write rate is not determined.
        assert_eq!(r.price(&Billed { cache_write: 5, ..u }), None);
    }

    #[test]
    fn entries_match_under_any_prefix_only() {
        let map = br#"{"claude-x": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
                       "bedrock/us-west-2/claude-x": {"input_cost_per_token": 3e-6, "output_cost_per_token": 4e-6},
                       "claude-x-long": {"input_cost_per_token": 9e-6, "output_cost_per_token": 9e-6},
                       "dall-e": {"output_cost_per_pixel": 1e-8}}"#;
        let p = Prices::parse(map).unwrap();
        let mut names: Vec<&String> = p.matching("claude-x", &["bedrock"]).map(|(k, _)| k).collect();
        names.sort();
        assert_eq!(names, ["bedrock/us-west-2/claude-x", "claude-x"]);
        let names: Vec<&String> = p.matching("claude-x", &["anthropic"]).map(|(k, _)| k).collect();
        assert_eq!(names, ["claude-x"], "another platform's entry is not this one's price");
        assert!(p.matching("dall-e", &["openai"]).next().is_none(), "no per-token rates");
        assert!(Prices::parse(b"[1]").is_none());
    }
}
