//! Fallback and retry: the routes of a group in order (skipping those at
//! their rpm/tpm or cooling down), then the group's fallback groups; only a
//! retryable failure moves on. Every answer gets LiteLLM's call headers.

use super::admit::{whole_secs, Admitted};
use crate::gateway::auth::Caller;
use crate::gateway::error::ApiError;
use crate::gateway::rate::Exceeded;
use crate::gateway::reliability;
use crate::gateway::routing::Route;
use crate::gateway::state::Gateway;
use axum::http::HeaderValue;
use axum::response::Response;
use std::time::Duration;

fn is_retryable(e: &ApiError) -> bool {
    match e {
        ApiError::BadGateway(_) | ApiError::GatewayTimeout(_) => true,
        ApiError::Upstream { status, .. } => *status == 429 || *status >= 500,
        _ => false,
    }
}

/// Tries the routes in order until one answers; a retryable failure moves on
/// to the next deployment. A deployment at its own rpm/tpm is skipped without
/// counting as an attempt; when every one is, the client gets a 429 that
/// says so, with the soonest `Retry-After`.
async fn with_fallbacks<F, Fut>(gw: &Gateway, routes: &[Route], attempt: &mut F) -> Result<Response, ApiError>
where
    F: FnMut(Route) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let num_retries = gw.config.router_settings.num_retries.or(gw.config.litellm_settings.num_retries);
    let max_attempts = num_retries.map(|n| n as usize + 1).unwrap_or(routes.len()).max(1);
    let now = gw.clock.now();
    let mut last = None;
    let mut limited: Option<(&str, Exceeded)> = None;
    let mut cooling: Option<Duration> = None;
    let mut attempts = 0;
    // A group of one deployment is never cooled down (LiteLLM's rule too):
    // there is nothing to send its requests to instead.
    let cooldowns = gw.cooldowns.enabled && routes.len() > 1;
    for route in routes {
        if attempts == max_attempts {
            break;
        }
        if cooldowns {
            if let Some(left) = route.deployment.health.cooling(now) {
                tracing::debug!(deployment = %route.deployment.id, "deployment cooling down; skipped");
                cooling = Some(cooling.map_or(left, |c| c.min(left)));
                continue;
            }
        }
        if let Err(e) = route.deployment.limits.check_and_record(now) {
            tracing::debug!(deployment = %route.deployment.id, limit = %e.kind, "deployment at its limit; skipped");
            if limited.is_none_or(|(_, soonest)| soonest.retry_after > e.retry_after) {
                limited = Some((&route.deployment.id, e));
            }
            continue;
        }
        attempts += 1;
        let mut result = attempt(route.clone()).await;
        if gw.bugs.retry_client_errors {
            // The known-bad variant: a client error is retried in place.
            for _ in 1..max_attempts {
                match &result {
                    Err(ApiError::Upstream { status, .. }) if (400..500).contains(status) => {
                        result = attempt(route.clone()).await
                    }
                    _ => break,
                }
            }
        }
        match result {
            Ok(r) => return Ok(r),
            Err(e) if is_retryable(&e) => {
                let policy = gw.config.router_settings.retry_policy.as_ref();
                if let Some(allowed) = policy.and_then(|p| reliability::retries_allowed(p, &e)) {
                    // `attempts` so far, so `attempts - 1` retries made.
                    if attempts > allowed as usize {
                        tracing::warn!(deployment = %route.deployment.id, error = %e, retries = allowed, "retry_policy allows no more retries for this failure");
                        return Err(e);
                    }
                }
                tracing::warn!(deployment = %route.deployment.id, error = %e, "deployment failed; trying the next one");
                if cooldowns && route.deployment.health.record_failure(now, &gw.cooldowns) {
                    tracing::warn!(deployment = %route.deployment.id, secs = gw.cooldowns.cooldown.as_secs_f64(), "deployment cooled down");
                }
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = last {
        return Err(e);
    }
    if let (Some(left), None, Some(first)) = (cooling, limited.as_ref(), routes.first()) {
        return Err(ApiError::RateLimited {
            message: format!(
                "no deployment of `{}` is available: each is cooling down after repeated failures; retry after {}s",
                first.deployment.model_name,
                whole_secs(left)
            ),
            retry_after_secs: Some(whole_secs(left)),
        });
    }
    match (limited, routes.first()) {
        (Some((id, e)), Some(first)) => Err(ApiError::RateLimited {
            message: format!(
                "no deployment of `{}` is available: each is over its {} limit (soonest free: `{id}`, {} of {} {} \
                 used in the last 60 s); retry after {}s",
                first.deployment.model_name,
                e.kind.short(),
                e.current,
                e.limit,
                e.kind,
                whole_secs(e.retry_after)
            ),
            retry_after_secs: Some(whole_secs(e.retry_after)),
        }),
        _ => Err(ApiError::Internal("no deployment was tried".into())),
    }
}

/// The headers LiteLLM puts on every answer, which clients and dashboards
/// read: a call id, the deployment that answered, and the key's spend so far.
fn with_call_headers(mut resp: Response, caller: &Caller) -> Response {
    // An identifier, not a secret: the thread's generator, no system call per request.
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut id);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&hex::encode(id)) {
        h.insert("x-litellm-call-id", v);
    }
    if let Some(dep) = h.get("x-postmortem-deployment").cloned() {
        h.insert("x-litellm-model-id", dep);
    }
    if let Caller::Key(k) = caller {
        if let Ok(v) = HeaderValue::from_str(&format!("{:.10}", k.spend())) {
            h.insert("x-litellm-key-spend", v);
        }
    }
    resp
}

/// [`with_fallbacks`] over the requested group, then, when its failure is
/// one a fallback list is for, over each fallback group in order (see
/// `reliability`). A key reaches only fallback groups it may use.
pub(super) async fn with_group_fallbacks<F, Fut>(
    gw: &Gateway,
    a: &Admitted,
    mut attempt: F,
) -> Result<Response, ApiError>
where
    F: FnMut(Route) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let err = match with_fallbacks(gw, &a.routes, &mut attempt).await {
        Ok(r) => return Ok(with_call_headers(r, &a.caller)),
        Err(e) => e,
    };
    let Some(kind) = reliability::classify(&err) else { return Err(err) };
    let chain = gw.fallbacks.chain(&a.group, kind);
    if chain.is_empty() {
        return Err(err);
    }
    let catalog = gw.catalog.current();
    let mut last = err;
    for group in chain {
        if let Caller::Key(k) = &a.caller {
            if !k.access().allows(group, &catalog) {
                tracing::info!(group = %group, "fallback group skipped: the key may not use it");
                continue;
            }
        }
        let routes = gw.router.resolve(group, &catalog);
        if routes.is_empty() {
            tracing::warn!(group = %group, "fallback group has no available deployment");
            continue;
        }
        tracing::info!(from = %a.group, to = %group, ?kind, "falling back");
        match with_fallbacks(gw, &routes, &mut attempt).await {
            Ok(r) => return Ok(with_call_headers(r, &a.caller)),
            Err(e) => last = e,
        }
    }
    Err(last)
}
