//! Admission: authenticate the caller, parse the body once, check the
//! fields every entry point needs with typed errors, authorize the model
//! (and the key's budget and limits), and resolve the routes.

use crate::gateway::auth::{authenticate, Caller};
use crate::gateway::error::{json_type, ApiError};
use crate::gateway::keys::KeyError;
use crate::gateway::rate::RATE_WINDOW;
use crate::gateway::response_cache::Controls;
use crate::gateway::routing::Route;
use crate::gateway::shared_limits::Share;
use crate::gateway::state::Gateway;
use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Map, Value};
use std::time::Duration;

/// What every entry point knows after the front half.
pub(super) struct Admitted {
    pub caller: Caller,
    pub body: Map<String, Value>,
    pub model: String,
    /// The model group serving it: `model`, or what its alias stands for.
    pub group: String,
    pub routes: Vec<Route>,
    pub stream: bool,
    /// The request's `cache` controls, taken out of `body` (never sent
    /// upstream, whether or not this gateway caches).
    pub cache: Controls,
}

fn parse_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => {
            Err(ApiError::BadRequest(format!("request body must be a JSON object, got {}", json_type(&other))))
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "request body is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

fn require_field<'a>(m: &'a Map<String, Value>, field: &str, want: &str) -> Result<&'a Value, ApiError> {
    let v = m.get(field).ok_or_else(|| ApiError::BadRequest(format!("missing required field `{field}`")))?;
    let ok = match want {
        "a string" => v.is_string(),
        "an array" => v.is_array(),
        "a string or an array" => v.is_string() || v.is_array(),
        _ => true,
    };
    if ok {
        Ok(v)
    } else {
        Err(ApiError::BadRequest(format!("field `{field}` must be {want}, got {}", json_type(v))))
    }
}

/// A request refused before it was admitted, with its caller when the
/// refusal came after authentication (the key's activity counts it).
pub(super) struct Refused {
    pub error: ApiError,
    pub caller: Option<Caller>,
}

pub(super) async fn admit(
    gw: &Gateway,
    headers: &HeaderMap,
    raw: &Bytes,
    shape: &[(&str, &str)],
) -> Result<Admitted, Refused> {
    let caller = authenticate(gw, headers).map_err(|error| Refused { error, caller: None })?;
    admit_as(gw, caller.clone(), raw, shape).await.map_err(|error| Refused { error, caller: Some(caller) })
}

async fn admit_as(gw: &Gateway, caller: Caller, raw: &Bytes, shape: &[(&str, &str)]) -> Result<Admitted, ApiError> {
    let mut body = parse_object(raw)?;
    let cache = Controls::take_from(&mut body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    for (field, want) in shape {
        require_field(&body, field, want)?;
    }
    let model = body.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::BadRequest(format!("field `stream` must be a boolean, got {}", json_type(other))))
        }
    };
    let catalog = gw.catalog.current();
    let group = gw.fallbacks.alias(&model).unwrap_or(&model).to_string();
    if let Caller::Key(k) = &caller {
        // A key granted the alias or the group it stands for may call it.
        if !k.access().allows(&model, &catalog) && !k.access().allows(&group, &catalog) {
            return Err(ApiError::Forbidden(k.access().denial_message(&model)));
        }
        // What this instance knows first; then, through Redis when it
        // answers, the fleet's spend against the budget and the shared
        // window (one round trip); else this instance's own window.
        k.check_budget().map_err(|e| ApiError::BudgetExceeded(e.to_string()))?;
        let share = Share { limits: !gw.bugs.local_key_limits_only, budget: !gw.bugs.local_key_budgets_only };
        let shared = match &gw.shared_limits {
            Some(s) => s.admit(k, share).await,
            None => None,
        };
        let verdict = match shared {
            Some(Ok(())) if share.limits => Ok(()),
            Some(Err(e)) => Err(e),
            // Redis did not answer, or the window is this instance's.
            Some(Ok(())) | None => k.check_and_record_request(gw.clock.now()),
        };
        verdict.map_err(|e| match e {
            KeyError::BudgetExceeded { .. } => ApiError::BudgetExceeded(e.to_string()),
            KeyError::RateLimited { retry_after, .. } => {
                ApiError::RateLimited { message: e.to_string(), retry_after_secs: Some(whole_secs(retry_after)) }
            }
            _ => ApiError::RateLimited { message: e.to_string(), retry_after_secs: Some(RATE_WINDOW.as_secs()) },
        })?;
    }
    let routes = gw.router.resolve(&group, &catalog);
    if routes.is_empty() {
        let unavailable = gw.router.unavailable_for(&group);
        if !unavailable.is_empty() {
            let reasons: Vec<String> = unavailable
                .iter()
                .map(|d| format!("{}: {}", d.id, d.unavailable.as_deref().unwrap_or("unavailable")))
                .collect();
            return Err(ApiError::DeploymentUnavailable(format!(
                "model `{model}` has no available deployment ({})",
                reasons.join("; ")
            )));
        }
        return Err(ApiError::ModelNotFound(format!(
            "model `{model}` is not served by this gateway (no model_list entry or wildcard matches it). Served: {}",
            gw.router.model_names().join(", ")
        )));
    }
    Ok(Admitted { caller, body, model, group, routes, stream, cache })
}

/// Whole seconds, rounded up, at least 1 (for `Retry-After`).
pub(super) fn whole_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}
