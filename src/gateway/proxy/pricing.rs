//! Pricing: the usage a provider reported, read in its own spelling; the
//! cost from the catalog (never a silent 0 for an unpriced model); the
//! key's spend, the rate windows' tokens and the spend log; the cost headers.

use crate::gateway::auth::Caller;
use crate::gateway::catalog::Usage;
use crate::gateway::providers::{anthropic, Provider};
use crate::gateway::routing::Route;
use crate::gateway::state::Gateway;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use serde_json::{json, Map, Value};

/// The cost-map names a deployment is priced under, best first:
/// `provider/model`, `model`, then `model_info.base_model` (for deployments
/// whose upstream name the map does not know, e.g. an Azure deployment name).
pub(crate) fn pricing_names(provider: Provider, upstream_model: &str, model_info: Option<&Value>) -> Vec<String> {
    let base_model = model_info.and_then(|m| m.get("base_model")).and_then(Value::as_str).unwrap_or_default();
    [format!("{provider}/{upstream_model}"), upstream_model.to_string(), base_model.to_string()]
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect()
}

/// Prices a call and charges the key, and the model the client asked for
/// (`requested`) and the key in the activity charts. Returns the header
/// value, or None when the model has no price (never a silent 0).
pub(super) fn charge(gw: &Gateway, caller: &Caller, requested: &str, route: &Route, usage: &Usage) -> Option<f64> {
    // Tokens count against rate limits whether or not the model is priced.
    let tokens = usage.input_tokens + usage.output_tokens + usage.cache_read_tokens + usage.cache_creation_tokens;
    let now = gw.clock.now();
    route.deployment.limits.record_tokens(now, tokens);
    if let Caller::Key(k) = caller {
        match &gw.shared_limits {
            Some(shared) => shared.record_tokens(k.clone(), tokens),
            None => k.record_tokens(now, tokens),
        }
    }
    // The known-bad variant: cached reads billed as plain input.
    let bugged;
    let usage = if gw.bugs.cache_reads_at_input_rate {
        bugged = Usage { input_tokens: usage.input_tokens + usage.cache_read_tokens, cache_read_tokens: 0, ..*usage };
        &bugged
    } else {
        usage
    };
    let catalog = gw.catalog.current();
    let candidates = pricing_names(route.provider, &route.upstream_model, route.deployment.model_info.as_ref());
    // A deployment's own rates replace the map's input and output rates
    // (LiteLLM's custom pricing, one or both); the rest are the map's for the
    // model where it has them.
    let params = &route.deployment.params;
    let own = crate::gateway::catalog::OwnPrices {
        input: params.input_cost_per_token,
        output: params.output_cost_per_token,
        cache_read: params.cache_read_input_token_cost,
        cache_write: params.cache_creation_input_token_cost,
    };
    let cost = if own.any() {
        let base = candidates.iter().find_map(|c| catalog.model(c));
        crate::gateway::catalog::Cost::at_rates(usage, &own, base)
    } else {
        candidates.iter().find_map(|c| catalog.cost(c, usage))
    };
    let input = usage.input_tokens + usage.cache_read_tokens + usage.cache_creation_tokens;
    gw.metrics.usage(&route.deployment.model_name, input, usage.output_tokens, cost.as_ref().map(|c| c.total()));
    crate::gateway::otel::usage(input, usage.output_tokens, cost.as_ref().map(|c| c.total()));
    let total = cost?.total();
    if let Caller::Key(k) = caller {
        // Shared with the other instances through Redis when it is
        // configured (buffered while it is down); else this instance's.
        match gw.shared_limits.as_ref().filter(|_| !gw.bugs.local_key_budgets_only) {
            Some(shared) => shared.charge(k, total),
            None => {
                k.add_spend(total);
            }
        }
    }
    gw.activity.spend(requested, crate::gateway::activity::Who::of(caller).as_ref(), total);
    let row = crate::gateway::store::SpendRow {
        at: crate::gateway::state::unix(gw.clock.wall()),
        key_hash: match caller {
            Caller::Key(k) => Some(k.key_hash()),
            _ => None,
        },
        model: route.deployment.model_name.clone(),
        upstream_model: format!("{}/{}", route.provider, route.upstream_model),
        cost_usd: total,
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
    };
    gw.record_spend(row);
    Some(total)
}

/// What an answer's headers say about its price.
pub(super) enum Price {
    /// The call's cost, in USD.
    Cost(f64),
    /// The cost map has no price for the model: said, never a silent 0.
    Unpriced,
    /// A stream: its cost is not known until it ends, so it goes to the
    /// key's spend and the spend log then, not into a header.
    WhenStreamEnds,
}

/// The answer's headers: the provider's rate-limit headers, the price and
/// the deployment that answered.
pub(super) fn with_cost_headers(
    mut resp: Response,
    price: Price,
    route: &Route,
    upstream: &[(HeaderName, HeaderValue)],
) -> Response {
    let h = resp.headers_mut();
    for (k, v) in upstream {
        h.insert(k.clone(), v.clone());
    }
    let status = match price {
        Price::Cost(c) => {
            if let Ok(v) = HeaderValue::from_str(&format!("{c:.10}")) {
                h.insert("x-litellm-response-cost", v.clone());
                h.insert("x-postmortem-response-cost", v);
            }
            None
        }
        Price::Unpriced => Some("unpriced"),
        Price::WhenStreamEnds => Some("priced-when-stream-ends"),
    };
    if let Some(status) = status {
        h.insert("x-postmortem-cost-status", HeaderValue::from_static(status));
    }
    if let Ok(v) = HeaderValue::from_str(&route.deployment.id) {
        h.insert("x-postmortem-deployment", v);
    }
    resp
}

impl From<Option<f64>> for Price {
    fn from(cost: Option<f64>) -> Self {
        cost.map_or(Price::Unpriced, Price::Cost)
    }
}

/// Usage in OpenAI's spellings: Chat Completions' (`prompt_tokens`), or the
/// Responses API's (`input_tokens`), at the top or, in a Responses stream's
/// final event, inside its `response`.
pub(super) fn openai_usage(v: &Value) -> Usage {
    let u = v.get("usage").filter(|u| u.is_object()).or_else(|| v.pointer("/response/usage"));
    let g = |p: &str| u.and_then(|u| u.pointer(p)).and_then(Value::as_u64);
    let prompt = g("/prompt_tokens").or_else(|| g("/input_tokens")).unwrap_or(0);
    let cached =
        g("/prompt_tokens_details/cached_tokens").or_else(|| g("/input_tokens_details/cached_tokens")).unwrap_or(0);
    Usage {
        input_tokens: prompt.saturating_sub(cached),
        output_tokens: g("/completion_tokens").or_else(|| g("/output_tokens")).unwrap_or(0),
        cache_read_tokens: cached,
        cache_creation_tokens: 0,
    }
}

pub(super) fn anthropic_usage(v: &Value) -> Usage {
    let u = anthropic::usage_from_messages(v);
    Usage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cache_read_tokens: u.cache_read_tokens,
        cache_creation_tokens: u.cache_creation_tokens,
    }
}

/// The known-bad variant of usage: the prompt counted by the gateway, 4
/// characters a token, in place of the provider's count.
pub(super) fn estimate_prompt_tokens(v: &mut Value, client_body: &Map<String, Value>) {
    let chars = client_body.get("messages").map(|m| m.to_string().chars().count()).unwrap_or(0) as u64;
    let estimate = chars.div_ceil(4);
    if let Some(u) = v.get_mut("usage").and_then(Value::as_object_mut) {
        let completion = u.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
        u.insert("prompt_tokens".into(), json!(estimate));
        u.insert("total_tokens".into(), json!(estimate + completion));
    }
}
