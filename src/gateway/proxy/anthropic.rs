//! The Anthropic side: `/v1/messages` and `count_tokens` (passed through
//! to Claude deployments, bridged to Chat Completions on OpenAI-wire ones),
//! and OpenAI chat translated for Claude.

use super::admit::{admit, Admitted};
use super::call::{
    answer_context, anthropic_events, betas_for, openai_stream, passed_on, read_json, read_openai, send, Outgoing,
};
use super::fallback::with_group_fallbacks;
use super::pricing::{anthropic_usage, charge, openai_usage, with_cost_headers, Price};
use super::stream::{sse_error_event, sse_response, StreamMeter};
use crate::gateway::error::{upstream_message, ApiError};
use crate::gateway::providers::anthropic;
use crate::gateway::providers::body::Body;
use crate::gateway::providers::params::{build_upstream_params, Endpoint};
use crate::gateway::providers::Operation;
use crate::gateway::routing::Route;
use crate::gateway::sse::SseParser;
use crate::gateway::state::{unix, Gateway};
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The `loosen_forced_tool_choice` known bug (harness proofs only): a
/// forced tool becomes "any tool", as a translation that maps every
/// non-string `tool_choice` to `any` would.
fn loosen_forced_tool_choice(body: &mut Map<String, Value>) {
    if let Some(tc) = body.get_mut("tool_choice").and_then(Value::as_object_mut) {
        if tc.get("type").and_then(Value::as_str) == Some("tool") {
            tc.insert("type".into(), json!("any"));
            tc.remove("name");
        }
    }
}

pub(super) async fn anthropic_chat(
    gw: &Arc<Gateway>,
    a: &Admitted,
    route: Route,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let drop_unsupported = route.deployment.params.drop_params.unwrap_or(gw.drop_params);
    let params = build_upstream_params(
        &a.body,
        route.provider,
        Endpoint::Chat,
        &route.upstream_model,
        drop_unsupported,
        gw.bugs.null_optional_params,
    )?;
    let translated =
        anthropic::chat_to_messages(&Value::Object(params.into_map()), &route.upstream_model).map_err(|e| {
            match e.field() {
                Some(param) => ApiError::InvalidParam { message: e.to_string(), param: param.to_string() },
                None => ApiError::BadRequest(e.to_string()),
            }
        })?;
    let Value::Object(mut body) = translated else {
        return Err(ApiError::Internal("the translation to Claude made a body that is not an object".into()));
    };
    if gw.bugs.loosen_forced_tool_choice {
        loosen_forced_tool_choice(&mut body);
    }
    let body = Body::owned(body);
    let betas = betas_for(gw, &route, headers);
    let out = Outgoing { op: Operation::Messages, body, stream: a.stream, betas: &betas, anthropic_version: None };
    let (resp, client) = send(gw, &route, out).await?;
    let limits = passed_on(resp.headers());
    if a.stream {
        let events = anthropic_events(gw, &route, resp, client).await?;
        let model = a.model.clone();
        let include_usage =
            a.body.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
        let mut meter = StreamMeter::fed(gw, &a.caller, &a.model, &route);
        let created = unix(gw.clock.wall());
        let provider = route.provider;
        let s = async_stream::stream! {
            let mut tr = anthropic::StreamTranslator::new(&model, "", created).with_usage_chunk(include_usage);
            futures::pin_mut!(events);
            while let Some(ev) = events.next().await {
                if let Ok((ty, data)) = &ev {
                    meter.observe_event(ty, data);
                }
                match ev {
                    Ok((ty, data)) => match tr.on_event(&ty, &data) {
                        Ok(chunks) => for c in chunks { yield Ok(Bytes::from(format!("data: {c}\n\n"))); },
                        Err(e) => { meter.broke(None); yield Ok(sse_error_event(&ApiError::BadGateway(e.to_string()))); return; }
                    },
                    Err(e) => { meter.broke(Some(&e)); yield Ok(sse_error_event(&e)); return; }
                }
            }
            // Only a stream the provider said was complete (`message_stop`)
            // ends cleanly; one that just stopped is an error, never `[DONE]`.
            if tr.is_finished() {
                yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
            } else {
                let e = ApiError::BadGateway(format!("{provider} ended its stream before message_stop"));
                meter.broke(Some(&e));
                yield Ok(sse_error_event(&e));
            }
            drop(meter);
        };
        return Ok(with_cost_headers(sse_response(s), Price::WhenStreamEnds, &route, &limits));
    }
    let v = read_json(gw, resp, route.provider).await?;
    let cost = charge(gw, &a.caller, &a.model, &route, &anthropic_usage(&v));
    let out = anthropic::messages_to_chat(&v, &a.model, unix(gw.clock.wall()))
        .map_err(|e| ApiError::BadGateway(e.to_string()))?;
    drop(client);
    Ok(with_cost_headers(axum::Json(out).into_response(), cost.into(), &route, &limits))
}

/// The two Anthropic-native calls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Native {
    Messages,
    CountTokens,
}

/// `POST /v1/messages`: Anthropic-native in, Anthropic-native out.
pub async fn messages(gw: Arc<Gateway>, headers: HeaderMap, raw: Bytes) -> Response {
    native(gw, headers, raw, Native::Messages).await
}

/// `POST /v1/messages/count_tokens`: Anthropic and Azure AI serve it next to
/// messages; Bedrock and Vertex AI have no such endpoint here, which is a
/// clear 400, not a guess.
pub async fn count_tokens(gw: Arc<Gateway>, headers: HeaderMap, raw: Bytes) -> Response {
    native(gw, headers, raw, Native::CountTokens).await
}

async fn native(gw: Arc<Gateway>, headers: HeaderMap, raw: Bytes, call: Native) -> Response {
    let a = match admit(&gw, &headers, &raw, &[("model", "a string"), ("messages", "an array")]).await {
        Ok(a) => a,
        Err(r) => return super::refused(&gw, anthropic_error(r.error), &raw, r.caller.as_ref()),
    };
    let client_version = headers.get("anthropic-version").and_then(|v| v.to_str().ok()).map(str::to_string);
    let result = with_group_fallbacks(&gw, &a, |route| {
        let gw = &gw;
        let a = &a;
        let headers = &headers;
        let client_version = client_version.clone();
        async move {
            if !route.provider.speaks_messages(&route.upstream_model) {
                if call == Native::CountTokens {
                    return Err(ApiError::BadRequest(format!(
                        "model `{}` routes to {}, which has no count_tokens endpoint",
                        a.model, route.provider
                    )));
                }
                return messages_via_chat(gw, a, route).await;
            }
            let op = if call == Native::CountTokens { Operation::CountTokens } else { Operation::Messages };
            if !route.provider.api().serves(op, &route.upstream_model) {
                return Err(ApiError::BadRequest(format!(
                    "model `{}` routes to {}, which has no count_tokens endpoint",
                    a.model, route.provider
                )));
            }
            if op == Operation::CountTokens && gw.bugs.estimate_count_tokens {
                let chars = a.body.get("messages").map(|m| m.to_string().chars().count()).unwrap_or(0) as u64;
                let estimate = json!({"input_tokens": chars.div_ceil(4), "count_source": "local_estimate"});
                return Ok(axum::Json(estimate).into_response());
            }
            let stream = a.stream && call == Native::Messages;
            let body = Body::client_without_nulls(&a.body);
            let betas = betas_for(gw, &route, headers);
            let out = Outgoing { op, body, stream, betas: &betas, anthropic_version: client_version.as_deref() };
            let (resp, client) = send(gw, &route, out).await?;
            let limits = passed_on(resp.headers());
            if stream {
                let events = anthropic_events(gw, &route, resp, client).await?;
                let mut meter = StreamMeter::fed(gw, &a.caller, &a.model, &route);
                let s = async_stream::stream! {
                    futures::pin_mut!(events);
                    while let Some(ev) = events.next().await {
                        if let Ok((ty, data)) = &ev {
                            meter.observe_event(ty, data);
                        }
                        match ev {
                            Ok((ty, data)) => yield Ok(Bytes::from(format!("event: {ty}\ndata: {data}\n\n"))),
                            Err(e) => {
                                meter.broke(Some(&e));
                                let err = json!({"type": "error", "error": {"type": "api_error", "message": e.to_string()}});
                                yield Ok(Bytes::from(format!("event: error\ndata: {err}\n\n")));
                                return;
                            }
                        }
                    }
                    drop(meter);
                };
                return Ok(with_cost_headers(sse_response(s), Price::WhenStreamEnds, &route, &limits));
            }
            let v = read_json(gw, resp, route.provider).await?;
            drop(client);
            if call == Native::CountTokens {
                return Ok(axum::Json(v).into_response());
            }
            let cost = charge(gw, &a.caller, &a.model, &route, &anthropic_usage(&v));
            Ok(with_cost_headers(axum::Json(v).into_response(), cost.into(), &route, &limits))
        }
    })
    .await;
    super::answered(result.unwrap_or_else(anthropic_error), &a)
}

/// `/v1/messages` on an OpenAI-family deployment: the request translated to
/// Chat Completions, the answer (or stream) back to Messages
/// (`providers::messages_bridge`).
async fn messages_via_chat(gw: &Arc<Gateway>, a: &Admitted, route: Route) -> Result<Response, ApiError> {
    use crate::gateway::providers::messages_bridge as bridge;
    let body = bridge::messages_to_chat_request(&a.body, &route.upstream_model)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let op = Operation::OpenAi("chat/completions");
    let body = Body::owned(body);
    let cx = answer_context(gw, &route, &body);
    let out = Outgoing { op, body, stream: a.stream, betas: &[], anthropic_version: None };
    let (resp, client) = send(gw, &route, out).await?;
    let limits = passed_on(resp.headers());
    if a.stream {
        let mut meter = StreamMeter::fed(gw, &a.caller, &a.model, &route);
        let inner = openai_stream(gw, &route, resp, client, op, &cx, meter.tap()).await?;
        let model = a.model.clone();
        let provider = route.provider;
        let s = async_stream::stream! {
            futures::pin_mut!(inner);
            let mut sse = SseParser::new();
            let mut tr = bridge::ChunkTranslator::new(&model);
            let event = |name: &str, data: &Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
            let error = |message: String| {
                let err = json!({"type": "error", "error": {"type": "api_error", "message": message}});
                Bytes::from(format!("event: error\ndata: {err}\n\n"))
            };
            loop {
                match inner.next().await {
                    Some(Ok(b)) => {
                        let events = match sse.feed(&b) {
                            Ok(evs) => evs,
                            Err(e) => { meter.broke(None); yield Ok(error(format!("{provider} stream: {e}"))); break; }
                        };
                        for ev in events {
                            let data = ev.data.trim();
                            if data == "[DONE]" { tr.on_done(); continue; }
                            if data.is_empty() { continue; }
                            match serde_json::from_str::<Value>(data) {
                                Ok(v) if v.get("error").is_some() => {
                                    meter.broke(None);
                                    yield Ok(error(upstream_message(data.as_bytes()).0));
                                    return;
                                }
                                Ok(v) => {
                                    meter.observe_chunk(&v);
                                    for (name, d) in tr.on_chunk(&v) { yield Ok(event(name, &d)); }
                                }
                                Err(e) => { meter.broke(None); yield Ok(error(format!("{provider}: stream chunk is not JSON: {e}"))); return; }
                            }
                        }
                    }
                    Some(Err(e)) => { meter.broke(Some(&e)); yield Ok(error(e.to_string())); return; }
                    None => break,
                }
            }
            // A provider stream that ended without saying it was complete
            // (no `[DONE]`) was cut: say so, never a clean `message_stop`.
            if tr.complete() {
                for (name, d) in tr.finish() { yield Ok(event(name, &d)); }
            } else {
                meter.broke(None);
                yield Ok(error(format!("{provider} ended its stream before it was complete")));
            }
            drop(meter);
        };
        return Ok(with_cost_headers(sse_response(s), Price::WhenStreamEnds, &route, &limits));
    }
    let v = read_openai(gw, &route, resp, op, &cx).await?;
    let cost = charge(gw, &a.caller, &a.model, &route, &openai_usage(&v));
    let out = bridge::chat_to_messages_response(&v, &a.model).map_err(|e| ApiError::BadGateway(e.to_string()))?;
    Ok(with_cost_headers(axum::Json(out).into_response(), cost.into(), &route, &limits))
}

/// Errors on the Anthropic-native route use Anthropic's error shape, so the
/// Anthropic SDK raises its typed exceptions.
pub(crate) fn anthropic_error(e: ApiError) -> Response {
    let status = e.status();
    // Anthropic's error types by status (its "Errors" page).
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    let mut resp = (status, axum::Json(json!({"type": "error", "error": {"type": kind, "message": e.to_string()}})))
        .into_response();
    e.add_headers(&mut resp);
    resp
}
