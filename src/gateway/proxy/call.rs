//! The upstream call, through the provider's module: the request shaped by
//! `ProviderApi::request` on the deployment's endpoint (resolved at load),
//! sent on the deployment's cached client within its bound; a failed answer
//! becomes the upstream's error, and a stream that is not the provider's
//! event stream fails before the client has a byte.

use crate::gateway::client_cache::Lease;
use crate::gateway::error::{retry_delay, upstream_message, ApiError};
use crate::gateway::otel;
use crate::gateway::providers::body::Body;
use crate::gateway::providers::{AnswerContext, Call, EventDecoder, Operation, Provider};
use crate::gateway::routing::Route;
use crate::gateway::state::Gateway;
use crate::gateway::upstream::{Bound, UpstreamClient, DEFAULT_TIMEOUT, MAX_ERROR_BYTES};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use futures::StreamExt;
use serde_json::Value;
use std::time::Duration;

/// A stream's bound, to its headers and between its chunks: the
/// deployment's `stream_timeout`, else its `timeout`, else the default (as
/// LiteLLM, where `stream_timeout` stands in for `timeout` on streams).
pub(super) fn stream_bound(route: &Route) -> Duration {
    route.deployment.stream_timeout.or(route.deployment.timeout).unwrap_or(DEFAULT_TIMEOUT)
}

/// How long the upstream call may take before it is a 504 (and the next
/// deployment is tried): never unbounded.
fn upstream_bound(route: &Route, stream: bool) -> Bound {
    if stream {
        Bound::Headers(stream_bound(route))
    } else {
        Bound::Whole(route.deployment.timeout.unwrap_or(DEFAULT_TIMEOUT))
    }
}

/// What the proxy hands the provider module for one call.
pub(super) struct Outgoing<'a> {
    pub op: Operation,
    pub body: Body<'a>,
    pub stream: bool,
    pub betas: &'a [String],
    pub anthropic_version: Option<&'a str>,
}

/// Shapes the call with the provider's module and sends it. Returns the
/// (2xx) response and the client lease, which a stream must hold until it
/// ends.
pub(super) async fn send(
    gw: &Gateway,
    route: &Route,
    out: Outgoing<'_>,
) -> Result<(reqwest::Response, Lease<UpstreamClient>), ApiError> {
    let reach = route.deployment.reach(route.provider).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let api = route.provider.api();
    let call = Call {
        op: out.op,
        upstream_model: &route.upstream_model,
        body: out.body,
        stream: out.stream,
        betas: out.betas,
        anthropic_version: out.anthropic_version,
        now: gw.clock.wall(),
    };
    let req = api.request(&reach.endpoint, call)?;
    let client = gw.client(reach.client_key.clone())?;
    let traceparent = otel::upstream_request(&req.method, &req.url);
    let mut rb = client.request(req.method, req.url).body(req.body);
    for (k, v) in req.headers {
        rb = rb.header(k, v);
    }
    // The gateway's own trace context (traces on): built from ids, never
    // copied from the client's headers.
    if let Some(tp) = traceparent {
        rb = rb.header("traceparent", tp);
    }
    if let Some(google) = &reach.endpoint.google {
        let token = google.token(&client.http, gw.clock.wall()).await?;
        let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            ApiError::BadGateway("vertex_ai: the token endpoint issued a token that is not a header value".into())
        })?;
        v.set_sensitive(true);
        rb = rb.header(http::header::AUTHORIZATION, v);
    }
    let resp = client.send(rb, upstream_bound(route, out.stream)).await?;
    if !resp.status().is_success() {
        return Err(upstream_error(route.provider, resp, gw.bugs.drop_upstream_retry_after).await);
    }
    if out.stream {
        expect_event_stream(&resp, route.provider, api.stream_media_type())?;
    }
    Ok((resp, client))
}

/// Reads (`GET`) or deletes (`DELETE`) a stored Response at the deployment
/// that made it (`/v1/responses/{id}`), within the deployment's bound.
pub(super) async fn stored_response(
    gw: &Gateway,
    route: &Route,
    id: &str,
    method: http::Method,
) -> Result<reqwest::Response, ApiError> {
    let reach = route.deployment.reach(route.provider).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut req = route
        .provider
        .api()
        .retrieve_response(&reach.endpoint, id)
        .ok_or_else(|| ApiError::BadRequest(format!("{} deployments do not store Responses", route.provider)))?;
    req.method = method;
    let client = gw.client(reach.client_key.clone())?;
    let traceparent = otel::upstream_request(&req.method, &req.url);
    let mut rb = client.http.request(req.method, req.url);
    for (k, v) in req.headers {
        rb = rb.header(k, v);
    }
    if let Some(tp) = traceparent {
        rb = rb.header("traceparent", tp);
    }
    let resp = client.send(rb, upstream_bound(route, false)).await?;
    if !resp.status().is_success() {
        return Err(upstream_error(route.provider, resp, gw.bugs.drop_upstream_retry_after).await);
    }
    Ok(resp)
}

/// Turns a non-2xx upstream response into an error that keeps its status
/// and message.
async fn upstream_error(provider: Provider, resp: reqwest::Response, drop_retry_after: bool) -> ApiError {
    let status = resp.status().as_u16();
    let header = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string());
    let body = crate::gateway::upstream::read_prefix(resp, MAX_ERROR_BYTES).await;
    // Google's APIs may say when to retry only in the body (`RetryInfo`).
    let retry_after = header.or_else(|| retry_delay(&body)).filter(|_| !drop_retry_after);
    let (message, error_type) = upstream_message(&body);
    ApiError::Upstream {
        status,
        message: format!("{provider} error ({status}): {message}"),
        provider: provider.to_string(),
        error_type,
        retry_after,
    }
}

/// A streaming answer that is not the provider's event stream (an HTML
/// error page, a JSON body) is a failed call, found before the client has a
/// byte, so the next deployment can still be tried.
fn expect_event_stream(resp: &reqwest::Response, provider: Provider, wanted: &str) -> Result<(), ApiError> {
    let media = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if media.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(wanted) {
        Ok(())
    } else {
        Err(ApiError::BadGateway(format!(
            "{provider} answered a streaming request with `{media}`, not an event stream"
        )))
    }
}

/// The incoming `anthropic-beta` header values, filtered by the policy for
/// this provider (or, with the incident's bug put back, all of them).
pub(super) fn betas_for(gw: &Gateway, route: &Route, headers: &HeaderMap) -> Vec<String> {
    let incoming: Vec<&str> = headers.get_all("anthropic-beta").iter().filter_map(|v| v.to_str().ok()).collect();
    if gw.bugs.forward_all_betas {
        let mut all: Vec<String> = incoming
            .iter()
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        all.dedup();
        return all;
    }
    let Some((target, placement)) = route.provider.api().betas() else { return Vec::new() };
    gw.beta.load().filter_for(target, placement, &incoming).kept
}

/// A stream of Anthropic events (type, data) decoded from the provider's
/// stream format by its module (SSE for most, AWS event stream for Bedrock).
pub(super) async fn anthropic_events(
    gw: &Gateway,
    route: &Route,
    resp: reqwest::Response,
    client: Lease<UpstreamClient>,
) -> Result<impl futures::Stream<Item = Result<(String, Value), ApiError>> + Send + 'static, ApiError> {
    let mut decoder: Box<dyn EventDecoder> = route.provider.api().events();
    let inner = upstream_stream(gw, route, resp, client).await?;
    Ok(async_stream::stream! {
        futures::pin_mut!(inner);
        while let Some(chunk) = inner.next().await {
            let chunk = match chunk { Ok(c) => c, Err(e) => { yield Err(e); return; } };
            let mut events = Vec::new();
            let result = decoder.feed(&chunk, &mut events);
            for ev in events { yield Ok(ev); }
            if let Err(e) = result { yield Err(e); return; }
        }
        if let Err(e) = decoder.finish() { yield Err(e); }
    })
}

/// A streamed answer's body, bounded between chunks by the deployment's
/// stream bound and in total by `max_stream_duration_secs`, holding the
/// client lease, with its first chunk already
/// received. The first chunk is awaited before the client gets a byte: a
/// provider that sends its headers and then nothing, an error or an empty
/// body fails here, while the fallback loop can still try the next
/// deployment and the client can still get an error status; after the
/// first byte it could only get an error event.
pub(super) async fn upstream_stream(
    gw: &Gateway,
    route: &Route,
    resp: reqwest::Response,
    client: Lease<UpstreamClient>,
) -> Result<futures::stream::BoxStream<'static, Result<bytes::Bytes, ApiError>>, ApiError> {
    let idle = Some(stream_bound(route));
    let total = gw.upstream_limits.max_stream_duration;
    let mut inner = Box::pin(client.guard_stream(resp.bytes_stream(), idle, total, client.clone()));
    drop(client);
    match inner.next().await {
        Some(Ok(first)) => Ok(futures::stream::once(async move { Ok(first) }).chain(inner).boxed()),
        Some(Err(e)) => Err(e),
        None => Err(ApiError::BadGateway(format!("{} ended its stream before its first event", route.provider))),
    }
}

/// What an OpenAI-wire answer's translation needs: the upstream model, the
/// clock's time, and whether the body sent upstream asks for the usage chunk.
pub(super) fn answer_context<'a>(gw: &Gateway, route: &'a Route, sent: &Body<'_>) -> AnswerContext<'a> {
    let include_usage =
        sent.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    AnswerContext {
        upstream_model: &route.upstream_model,
        created: crate::gateway::state::unix(gw.clock.wall()),
        include_usage,
    }
}

/// The buffered answer to an OpenAI-wire call, as OpenAI's answer: as the
/// provider sent it, or translated by its module when it speaks its own API
/// behind OpenAI's (`ProviderApi::openai_answer`).
pub(super) async fn read_openai(
    gw: &Gateway,
    route: &Route,
    resp: reqwest::Response,
    op: Operation,
    cx: &AnswerContext<'_>,
) -> Result<Value, ApiError> {
    let v = read_json(gw, resp, route.provider).await?;
    route.provider.api().openai_answer(op, v, cx)
}

/// The streamed answer to an OpenAI-wire call as Chat Completions SSE bytes
/// (its first chunk already received, as `upstream_stream`): as the provider
/// sent it, or translated by its module (`ProviderApi::openai_stream`). A
/// translated stream's usage reaches `tap` whether or not the client asked
/// for the usage chunk, so the stream is charged either way.
pub(super) async fn openai_stream(
    gw: &Gateway,
    route: &Route,
    resp: reqwest::Response,
    client: Lease<UpstreamClient>,
    op: Operation,
    cx: &AnswerContext<'_>,
    tap: super::stream::UsageTap,
) -> Result<futures::stream::BoxStream<'static, Result<bytes::Bytes, ApiError>>, ApiError> {
    let translator = route.provider.api().openai_stream(op, cx);
    let mut inner = upstream_stream(gw, route, resp, client).await?;
    let Some(mut tr) = translator else { return Ok(inner) };
    // The first chunk is translated before the client has a byte too: a
    // failure the provider reports at once is still an error status (and
    // the next deployment may be tried), not an error event after a 200.
    let mut first = Vec::new();
    let mut failed = None;
    if let Some(chunk) = inner.next().await {
        if let Err(e) = tr.feed(&chunk?, &mut first) {
            if first.is_empty() {
                return Err(e);
            }
            failed = Some(e);
        }
        tap.set(tr.usage());
    }
    Ok(async_stream::stream! {
        if !first.is_empty() { yield Ok(bytes::Bytes::from(first)); }
        if let Some(e) = failed { yield Err(e); return; }
        while let Some(chunk) = inner.next().await {
            let chunk = match chunk { Ok(c) => c, Err(e) => { yield Err(e); return; } };
            let mut out = Vec::new();
            let result = tr.feed(&chunk, &mut out);
            tap.set(tr.usage());
            if !out.is_empty() { yield Ok(bytes::Bytes::from(out)); }
            if let Err(e) = result { yield Err(e); return; }
        }
        let mut out = Vec::new();
        let result = tr.finish(&mut out);
        if !out.is_empty() { yield Ok(bytes::Bytes::from(out)); }
        if let Err(e) = result { yield Err(e); }
    }
    .boxed())
}

/// A buffered upstream answer (capped at the gateway's
/// `max_upstream_response_mb`) as JSON.
pub(super) async fn read_json(gw: &Gateway, resp: reqwest::Response, provider: Provider) -> Result<Value, ApiError> {
    let limit = gw.upstream_limits.max_answer_bytes;
    let bytes = crate::gateway::upstream::read_capped(resp, limit, provider.as_str()).await?;
    let v = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadGateway(format!("{provider} returned a body that is not JSON: {e}")))?;
    otel::upstream_answer(&v);
    Ok(v)
}

/// The provider's rate-limit headers, passed on to the client as sent
/// (OpenAI's `x-ratelimit-*`, Anthropic's `anthropic-ratelimit-*`), so a
/// client can pace itself as it would against the provider.
pub(super) fn passed_on(headers: &reqwest::header::HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k.starts_with("x-ratelimit-") || k.starts_with("anthropic-ratelimit-")
        })
        .filter_map(|(k, v)| {
            Some((HeaderName::from_bytes(k.as_str().as_bytes()).ok()?, HeaderValue::from_bytes(v.as_bytes()).ok()?))
        })
        .collect()
}
