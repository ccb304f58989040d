//! Fallback and retry: the routes of a group in order (skipping those at
//! their rpm/tpm or cooling down), then the group's fallback groups; only a
//! retryable failure moves on. Every answer gets LiteLLM's call headers.

use super::admit::{whole_secs, Admitted};
use crate::gateway::auth::Caller;
use crate::gateway::error::ApiError;
use crate::gateway::otel;
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

/// The longest the gateway waits before retrying a deployment in place
/// (the OpenAI SDK's and LiteLLM's cap on exponential backoff).
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// How long to wait before retrying, in place, a deployment that failed:
/// the provider's `Retry-After` when it gave one within [`MAX_BACKOFF`],
/// else 0.5 s doubling per retry up to the cap, less up to a quarter of
/// jitter (so clients retrying together spread out), and never less than
/// `router_settings.retry_after`. `None` when the provider asked for a
/// longer wait than the gateway holds a request for: the client gets the
/// failure and its `Retry-After` at once and can wait itself.
fn backoff(retries_in_place: u32, failure: &ApiError, minimum: Duration) -> Option<Duration> {
    let asked = match failure {
        ApiError::Upstream { retry_after: Some(v), .. } => {
            v.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s > 0.0)
        }
        _ => None,
    };
    let wait = match asked {
        Some(secs) if Duration::from_secs_f64(secs.min(86_400.0)) > MAX_BACKOFF => return None,
        Some(secs) => Duration::from_secs_f64(secs),
        None => {
            let exp = Duration::from_millis(500).saturating_mul(1u32 << retries_in_place.min(5)).min(MAX_BACKOFF);
            let jitter = 1.0 - 0.25 * rand::Rng::gen::<f64>(&mut rand::thread_rng());
            exp.mul_f64(jitter)
        }
    };
    Some(wait.max(minimum))
}

/// Tries the routes in order until one answers; a retryable failure moves on
/// to the next deployment. A deployment at its own rpm/tpm is skipped without
/// counting as an attempt; when every one is, the client gets a 429 that
/// says so, with the soonest `Retry-After`. With `num_retries` set, the
/// group is gone round again until the attempts are used up, so a group of
/// one deployment is retried in place (as LiteLLM does), after a backoff
/// ([`backoff`]); moving on to another deployment waits for nothing.
async fn with_fallbacks<F, Fut>(gw: &Gateway, routes: &[Route], attempt: &mut F) -> Result<Response, ApiError>
where
    F: FnMut(Route) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let num_retries = gw.config.router_settings.num_retries.or(gw.config.litellm_settings.num_retries);
    let max_attempts = num_retries.map(|n| n as usize + 1).unwrap_or(routes.len()).max(1);
    let min_wait = gw.config.router_settings.retry_after.map(Duration::from_secs_f64).unwrap_or_default();
    let mut last = None;
    let mut limited: Option<(&str, Exceeded)> = None;
    let mut cooling: Option<Duration> = None;
    let mut attempts = 0;
    let mut retries_in_place = 0;
    // Which deployments failed this request: trying one again is a retry
    // in place, after a backoff.
    let mut failed = vec![false; routes.len()];
    // A group of one deployment is never cooled down (LiteLLM's rule too):
    // there is nothing to send its requests to instead.
    let cooldowns = gw.cooldowns.enabled && routes.len() > 1;
    'rounds: loop {
        let mut attempted = false;
        for (index, route) in routes.iter().enumerate() {
            if attempts == max_attempts {
                break 'rounds;
            }
            let now = gw.clock.now();
            if cooldowns {
                if let Some(left) = route.deployment.health.cooling(now) {
                    tracing::debug!(deployment = %route.deployment.id, "deployment cooling down; skipped");
                    cooling = Some(cooling.map_or(left, |c| c.min(left)));
                    continue;
                }
            }
            if failed[index] {
                let Some(e) = last.take() else { break 'rounds };
                match backoff(retries_in_place, &e, min_wait) {
                    Some(wait) => {
                        tracing::info!(deployment = %route.deployment.id, wait_ms = wait.as_millis() as u64, "retrying the deployment in place after a backoff");
                        retries_in_place += 1;
                        tokio::time::sleep(wait).await;
                        last = Some(e);
                    }
                    None => {
                        tracing::info!(deployment = %route.deployment.id, "the provider asked for a longer wait than a retry in place holds the request: the client gets its Retry-After");
                        return Err(e);
                    }
                }
            }
            if let Err(e) = route.deployment.limits.check_and_record(gw.clock.now()) {
                tracing::debug!(deployment = %route.deployment.id, limit = %e.kind, "deployment at its limit; skipped");
                if limited.is_none_or(|(_, soonest)| soonest.retry_after > e.retry_after) {
                    limited = Some((&route.deployment.id, e));
                }
                continue;
            }
            attempts += 1;
            attempted = true;
            // Each attempt (retries and fallbacks too) is a client span of its own.
            let mut result = otel::attempt(route, attempt(route.clone())).await;
            if gw.bugs.retry_client_errors {
                // The known-bad variant: a client error is retried in place.
                for _ in 1..max_attempts {
                    match &result {
                        Err(ApiError::Upstream { status, .. }) if (400..500).contains(status) => {
                            result = otel::attempt(route, attempt(route.clone())).await
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
                    tracing::warn!(deployment = %route.deployment.id, error = %e, "deployment failed; trying again");
                    if cooldowns && route.deployment.health.record_failure(gw.clock.now(), &gw.cooldowns) {
                        tracing::warn!(deployment = %route.deployment.id, secs = gw.cooldowns.cooldown.as_secs_f64(), "deployment cooled down");
                    }
                    failed[index] = true;
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        // Round again only when retries were asked for and this round
        // could try something (not everything cooling or at its limit).
        if num_retries.is_none() || !attempted {
            break;
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
pub(super) fn with_call_headers(mut resp: Response, caller: &Caller) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(retry_after: Option<&str>) -> ApiError {
        ApiError::Upstream {
            status: 429,
            message: "slow down".into(),
            provider: "openai".into(),
            error_type: None,
            retry_after: retry_after.map(str::to_string),
        }
    }

    #[test]
    fn backoff_follows_the_providers_retry_after_within_the_cap() {
        assert_eq!(backoff(0, &limited(Some("2")), Duration::ZERO), Some(Duration::from_secs(2)));
        assert_eq!(backoff(3, &limited(Some(" 0.5 ")), Duration::ZERO), Some(Duration::from_millis(500)));
        // Longer than a retry in place holds a request: the client waits instead.
        assert_eq!(backoff(0, &limited(Some("30")), Duration::ZERO), None);
        assert_eq!(backoff(0, &limited(Some("1e300")), Duration::ZERO), None);
    }

    #[test]
    fn backoff_without_retry_after_doubles_with_jitter_up_to_the_cap() {
        let server = ApiError::BadGateway("reset".into());
        for (retry, base) in [(0, 500), (1, 1000), (2, 2000), (3, 4000), (4, 8000), (9, 8000)] {
            let wait = backoff(retry, &server, Duration::ZERO).expect("always retried");
            let base = Duration::from_millis(base);
            assert!(wait <= base && wait >= base.mul_f64(0.75), "retry {retry}: {wait:?}");
        }
        // A date, a negative or a non-number is no usable Retry-After: the backoff applies.
        for odd in ["Wed, 21 Oct 2026 07:28:00 GMT", "-3", "soon", "NaN"] {
            let wait = backoff(0, &limited(Some(odd)), Duration::ZERO).expect("retried");
            assert!(wait <= Duration::from_millis(500), "{odd}: {wait:?}");
        }
        assert_eq!(backoff(0, &server, Duration::from_secs(3)), Some(Duration::from_secs(3)));
    }
}
