//! Requests through an in-process gateway's real router (`server::app`),
//! without a socket: for tests that build gateways against mock upstreams.

#![allow(dead_code)]

use axum::body::Body;
use http_body_util::BodyExt;
use postmortem::gateway::Gateway;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

/// One request with a bearer token and an optional JSON body: the status
/// and the JSON answer (`null` when it is not JSON).
pub async fn call(gw: &Arc<Gateway>, method: &str, uri: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {bearer}"));
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let resp = postmortem::gateway::server::app(gw.clone()).oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}
