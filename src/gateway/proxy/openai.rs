//! The OpenAI entry points: chat completions (to any provider: OpenAI-wire
//! deployments get the body passed through, Claude gets it translated),
//! embeddings, text completions and the Responses API (OpenAI-wire
//! deployments only).

use super::admit::{admit, Admitted};
use super::anthropic::anthropic_chat;
use super::cached::{through_cache, StreamRecorder};
use super::call::{answer_context, openai_stream, passed_on, read_json, read_openai, send, Outgoing};
use super::fallback::with_group_fallbacks;
use super::handles::{self, StreamHandles};
use super::pricing::{charge, estimate_prompt_tokens, openai_usage, with_cost_headers, Price};
use super::stream::{sse_response, stream_error_event, StreamMeter};
use crate::gateway::error::{json_type, ApiError};
use crate::gateway::providers::params::{build_upstream_params, Endpoint};
use crate::gateway::providers::Operation;
use crate::gateway::response_cache::CallType;
use crate::gateway::routing::Route;
use crate::gateway::sse;
use crate::gateway::state::Gateway;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::Value;
use std::sync::Arc;

pub(super) async fn openai_call(
    gw: &Arc<Gateway>,
    a: &Admitted,
    route: Route,
    endpoint: Endpoint,
    path: &'static str,
) -> Result<Response, ApiError> {
    let drop_unsupported = route.deployment.params.drop_params.unwrap_or(gw.drop_params);
    let body = build_upstream_params(
        &a.body,
        route.provider,
        endpoint,
        &route.upstream_model,
        drop_unsupported,
        gw.bugs.null_optional_params,
    )?;
    let op = Operation::OpenAi(path);
    let cx = answer_context(gw, &route, &body);
    let out = Outgoing { op, body, stream: a.stream, betas: &[], anthropic_version: None };
    let (resp, client) = send(gw, &route, out).await?;
    let limits = passed_on(resp.headers());
    if a.stream {
        // Pass the upstream's SSE through event by event (or its module's
        // translation into it); the lease moves into the stream so the
        // client lives until the stream ends.
        let mut meter = StreamMeter::reading_bytes(gw, &a.caller, &a.model, &route);
        let inner = openai_stream(gw, &route, resp, client, op, &cx, meter.tap()).await?;
        let done_after_broken = gw.bugs.done_after_broken_stream;
        let mut handles = (endpoint == Endpoint::Responses).then(|| StreamHandles::new(&route));
        let mut recorder = if endpoint == Endpoint::Chat { StreamRecorder::for_chat(gw, a) } else { None };
        let s = async_stream::stream! {
            futures::pin_mut!(inner);
            // Bytes after the last complete event: held back until the
            // event completes, so a stream that breaks mid-event never
            // hands the client half an event glued to the error event.
            let mut pending: Vec<u8> = Vec::new();
            loop {
                match inner.next().await {
                    Some(Ok(b)) => {
                        pending.extend_from_slice(&b);
                        if let Some(end) = sse::last_event_end(&pending) {
                            let rest = pending.split_off(end);
                            let ready = std::mem::replace(&mut pending, rest);
                            meter.observe_bytes(&ready);
                            if let Some(r) = recorder.as_mut() { r.feed(&ready); }
                            let ready = match handles.as_mut() { Some(h) => h.rewrite(ready), None => ready };
                            yield Ok(Bytes::from(ready));
                        }
                    }
                    Some(Err(_)) if done_after_broken => { yield Ok(Bytes::from_static(b"data: [DONE]\n\n")); break; }
                    Some(Err(e)) => { meter.broke(Some(&e)); yield Ok(stream_error_event(endpoint, &e)); break; }
                    None => {
                        if !pending.iter().all(u8::is_ascii_whitespace) {
                            let e = ApiError::BadGateway(format!("{} ended its stream in the middle of an event", route.provider));
                            meter.broke(Some(&e));
                            yield Ok(stream_error_event(endpoint, &e));
                        } else if let Some(r) = recorder.take() {
                            r.finish().await;
                        }
                        break;
                    }
                }
            }
            drop(meter);
        };
        return Ok(with_cost_headers(sse_response(s), Price::WhenStreamEnds, &route, &limits));
    }
    let status = resp.status().as_u16();
    // Nothing to change in the answer: its bytes go to the client as the
    // provider sent them, read only for the usage (no tree built and
    // serialized again). Traces read the answer's model and id, and the
    // Responses API's ids are rewritten: those take the tree.
    let verbatim = !route.provider.api().translates_openai_answer(op)
        && endpoint != Endpoint::Responses
        && !gw.bugs.estimate_prompt_tokens
        && gw.otel.is_none();
    if verbatim {
        let (bytes, usage) = read_verbatim(gw, &route, resp).await?;
        let cost = charge(gw, &a.caller, &a.model, &route, &usage);
        let mut resp = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), bytes).into_response();
        resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        return Ok(with_cost_headers(resp, cost.into(), &route, &limits));
    }
    let mut v = read_openai(gw, &route, resp, op, &cx).await?;
    if gw.bugs.estimate_prompt_tokens {
        estimate_prompt_tokens(&mut v, &a.body);
    }
    if endpoint == Endpoint::Responses && (200..300).contains(&status) {
        handles::rewrite_body(&route, &mut v);
    }
    let cost = charge(gw, &a.caller, &a.model, &route, &openai_usage(&v));
    let resp = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(v)).into_response();
    Ok(with_cost_headers(resp, cost.into(), &route, &limits))
}

/// An OpenAI-wire answer's bytes, checked to be a JSON object, and its
/// usage. Parsing into this struct reads the whole document (a truncated
/// or malformed body fails here, as it does parsing into a tree) but keeps
/// only `usage`.
async fn read_verbatim(
    gw: &Gateway,
    route: &Route,
    resp: reqwest::Response,
) -> Result<(Bytes, crate::gateway::catalog::Usage), ApiError> {
    #[derive(serde::Deserialize)]
    struct UsageOnly {
        #[serde(default)]
        usage: Option<Value>,
    }
    let provider = route.provider;
    let bytes =
        crate::gateway::upstream::read_capped(resp, gw.upstream_limits.max_answer_bytes, provider.as_str()).await?;
    let light: UsageOnly = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadGateway(format!("{provider} returned a body that is not a JSON object: {e}")))?;
    let usage = openai_usage(&serde_json::json!({ "usage": light.usage }));
    Ok((bytes, usage))
}

pub async fn embeddings(gw: Arc<Gateway>, headers: HeaderMap, raw: Bytes) -> Response {
    openai_only(gw, headers, raw, ("input", Endpoint::Embeddings, "embeddings")).await
}

/// Legacy text completions: passed through to OpenAI-family deployments.
pub async fn completions(gw: Arc<Gateway>, headers: HeaderMap, raw: Bytes) -> Response {
    openai_only(gw, headers, raw, ("prompt", Endpoint::Completions, "completions")).await
}

/// OpenAI's Responses API: passed through to deployments that speak it
/// (OpenAI, Azure OpenAI at its resource's `/openai/v1/responses`, vLLM, the
/// OpenAI-compatible providers). Anthropic-family models do not speak it:
/// they get a 400 naming the provider. `input` is optional (a stored prompt or
/// `previous_response_id` may stand for it) but typed when present.
pub async fn responses(gw: Arc<Gateway>, headers: HeaderMap, raw: Bytes) -> Response {
    let mut a = match admit(&gw, &headers, &raw, &[("model", "a string")]).await {
        Ok(a) => a,
        Err(r) => return super::refused(&gw, r.error.into_response(), &raw, r.caller.as_ref()),
    };
    if let Some(input) = a.body.get("input").filter(|v| !v.is_null()) {
        if !(input.is_string() || input.is_array()) {
            let e = format!("field `input` must be a string or an array, got {}", json_type(input));
            return super::answered(ApiError::BadRequest(e).into_response(), &a);
        }
    }
    // A follow-up to a Response this gateway issued goes to the deployment
    // that stored it, with the provider's own id (`handles`).
    let pinned = a.body.get("previous_response_id").and_then(Value::as_str).and_then(handles::resolve);
    if let Some((tag, id)) = pinned.map(|(t, i)| (t.to_string(), i.to_string())) {
        a.body.insert("previous_response_id".into(), Value::String(id));
        let same: Vec<_> = a.routes.iter().filter(|r| handles::deployment_tag(r) == tag).cloned().collect();
        if same.is_empty() || gw.bugs.unpinned_response_handles {
            tracing::info!(group = %a.group, "previous_response_id names a deployment not in the group; routing as usual");
        } else {
            a.routes = same;
        }
    }
    let result = through_cache(&gw, &a, CallType::Responses, || {
        with_group_fallbacks(&gw, &a, |route| {
            let gw = &gw;
            let a = &a;
            async move {
                if !route.provider.api().serves(Operation::OpenAi("responses"), &route.upstream_model) {
                    return Err(ApiError::BadRequest(format!(
                        "{} deployments are not served on /v1/responses",
                        route.provider
                    )));
                }
                openai_call(gw, a, route, Endpoint::Responses, "responses").await
            }
        })
    })
    .await;
    super::answered(result.unwrap_or_else(IntoResponse::into_response), &a)
}

/// `GET /v1/responses/{id}`: a Response this gateway handed out, read back
/// from the deployment that stored it (the id names it, `handles`). The
/// caller must be allowed that deployment's model; an id this gateway did
/// not issue, or whose deployment is gone, is a 404 as OpenAI answers an
/// unknown id.
pub(crate) async fn retrieve_response(gw: Arc<Gateway>, headers: HeaderMap, id: String) -> Response {
    stored_response(gw, headers, id, http::Method::GET).await
}

/// `DELETE /v1/responses/{id}`: as the read, at the deployment that stored it.
pub(crate) async fn delete_response(gw: Arc<Gateway>, headers: HeaderMap, id: String) -> Response {
    stored_response(gw, headers, id, http::Method::DELETE).await
}

async fn stored_response(gw: Arc<Gateway>, headers: HeaderMap, id: String, method: http::Method) -> Response {
    let caller = match crate::gateway::auth::authenticate(&gw, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let not_found = || ApiError::NotFound(format!("Response with id '{id}' not found.")).into_response();
    let Some((tag, provider_id)) = handles::resolve(&id) else { return not_found() };
    let route = gw.router.deployments().into_iter().find_map(|d| {
        let provider = d.provider?;
        if d.unavailable.is_some() || d.upstream_model.contains('*') {
            return None;
        }
        let route = Route { upstream_model: d.upstream_model.clone(), deployment: d, provider };
        (handles::deployment_tag(&route) == tag).then_some(route)
    });
    let Some(route) = route else { return not_found() };
    if let crate::gateway::auth::Caller::Key(k) = &caller {
        if !k.access().allows(&route.deployment.model_name, &gw.catalog.current()) {
            return not_found();
        }
    }
    let model = route.deployment.model_name.clone();
    let result = async {
        let resp = super::call::stored_response(&gw, &route, provider_id, method).await?;
        let mut v = read_json(&gw, resp, route.provider).await?;
        handles::rewrite_body(&route, &mut v);
        Ok::<_, ApiError>(axum::Json(v).into_response())
    }
    .await;
    super::labelled(result.unwrap_or_else(IntoResponse::into_response), &model)
}

/// An endpoint only the OpenAI family serves: `(the required input field,
/// the endpoint, its path)`. Anthropic-family deployments get a 400 naming it.
async fn openai_only(
    gw: Arc<Gateway>,
    headers: HeaderMap,
    raw: Bytes,
    (input, endpoint, path): (&str, Endpoint, &'static str),
) -> Response {
    let a = match admit(&gw, &headers, &raw, &[("model", "a string"), (input, "a string or an array")]).await {
        Ok(a) => a,
        Err(r) => return super::refused(&gw, r.error.into_response(), &raw, r.caller.as_ref()),
    };
    let call = if endpoint == Endpoint::Embeddings { CallType::Embedding } else { CallType::TextCompletion };
    let result = through_cache(&gw, &a, call, || {
        with_group_fallbacks(&gw, &a, |route| {
            let gw = &gw;
            let a = &a;
            async move {
                if !route.provider.api().serves(Operation::OpenAi(path), &route.upstream_model) {
                    return Err(ApiError::BadRequest(format!("{} does not serve /v1/{path}", route.provider)));
                }
                openai_call(gw, a, route, endpoint, path).await
            }
        })
    })
    .await;
    super::answered(result.unwrap_or_else(IntoResponse::into_response), &a)
}

pub async fn chat_completions(gw: Arc<Gateway>, headers: HeaderMap, raw: Bytes) -> Response {
    let a = match admit(&gw, &headers, &raw, &[("model", "a string"), ("messages", "an array")]).await {
        Ok(a) => a,
        Err(r) => return super::refused(&gw, r.error.into_response(), &raw, r.caller.as_ref()),
    };
    let result = through_cache(&gw, &a, CallType::Chat, || {
        with_group_fallbacks(&gw, &a, |route| {
            let gw = &gw;
            let a = &a;
            let headers = &headers;
            async move {
                if route.provider.speaks_messages(&route.upstream_model) {
                    anthropic_chat(gw, a, route, headers).await
                } else {
                    openai_call(gw, a, route, Endpoint::Chat, "chat/completions").await
                }
            }
        })
    })
    .await;
    super::answered(result.unwrap_or_else(IntoResponse::into_response), &a)
}
