//! Errors that reach a client, rendered in OpenAI's shape:
//! `{"error": {"message", "type", "code", "param"}}`.
//!
//! Every failure a request can meet maps to exactly one variant here, so the
//! status code and error type for a situation are decided in one place.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    UnsupportedParam { message: String, param: String },
    /// A client's field the gateway cannot use as sent (a translation
    /// found it missing, mistyped or of an unknown kind): OpenAI names the
    /// field in the error's `param`.
    #[error("{message}")]
    InvalidParam { message: String, param: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    ModelNotFound(String),
    #[error("{0}")]
    NotFound(String),
    #[error("request body is {size} bytes, over the limit of {limit} bytes")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: Option<u64> },
    #[error("{0}")]
    BudgetExceeded(String),
    /// The upstream answered with an error: keep its status and message.
    #[error("{message}")]
    Upstream {
        status: u16,
        message: String,
        provider: String,
        error_type: Option<String>,
        /// The provider's `Retry-After`, passed on to the client as sent.
        retry_after: Option<String>,
    },
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    GatewayTimeout(String),
    #[error("{0}")]
    Internal(String),
    /// Every deployment of the model is unavailable (unknown provider, a
    /// missing credential variable…): a configuration problem, 503.
    #[error("{0}")]
    DeploymentUnavailable(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::UnsupportedParam { .. } | ApiError::InvalidParam { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::ModelNotFound(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BudgetExceeded(_) => StatusCode::BAD_REQUEST,
            ApiError::Upstream { status, .. } => StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::DeploymentUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn kind_and_code(&self) -> (&str, &str) {
        match self {
            ApiError::BadRequest(_) => ("invalid_request_error", "invalid_request"),
            ApiError::UnsupportedParam { .. } => ("invalid_request_error", "unsupported_parameter"),
            ApiError::InvalidParam { .. } => ("invalid_request_error", "invalid_value"),
            ApiError::Unauthorized(_) => ("authentication_error", "invalid_api_key"),
            ApiError::Forbidden(_) => ("permission_error", "model_access_denied"),
            ApiError::ModelNotFound(_) => ("invalid_request_error", "model_not_found"),
            ApiError::NotFound(_) => ("invalid_request_error", "not_found"),
            ApiError::PayloadTooLarge { .. } => ("invalid_request_error", "request_too_large"),
            ApiError::RateLimited { .. } => ("rate_limit_error", "rate_limit_exceeded"),
            ApiError::BudgetExceeded(_) => ("budget_exceeded", "budget_exceeded"),
            ApiError::Upstream { error_type, .. } => {
                (error_type.as_deref().unwrap_or("upstream_error"), "upstream_error")
            }
            ApiError::BadGateway(_) => ("upstream_error", "upstream_connection_error"),
            ApiError::GatewayTimeout(_) => ("timeout_error", "upstream_timeout"),
            ApiError::Internal(_) => ("internal_error", "internal_error"),
            ApiError::DeploymentUnavailable(_) => ("service_unavailable", "deployment_unavailable"),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        let (kind, code) = self.kind_and_code();
        let param = match self {
            ApiError::UnsupportedParam { param, .. } | ApiError::InvalidParam { param, .. } => json!(param),
            _ => serde_json::Value::Null,
        };
        json!({"error": {"message": self.to_string(), "type": kind, "code": code, "param": param}})
    }
}

impl ApiError {
    /// The `Retry-After` the client gets: the gateway's own limit's, or the
    /// provider's.
    pub(crate) fn retry_after(&self) -> Option<String> {
        match self {
            ApiError::RateLimited { retry_after_secs: Some(s), .. } => Some(s.to_string()),
            ApiError::Upstream { retry_after, .. } => retry_after.clone(),
            _ => None,
        }
    }

    /// Adds the headers that go with this error to a response.
    pub(crate) fn add_headers(&self, resp: &mut Response) {
        if let Some(v) = self.retry_after().and_then(|v| HeaderValue::from_str(&v).ok()) {
            resp.headers_mut().insert("retry-after", v);
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (status, axum::Json(self.body())).into_response();
        self.add_headers(&mut resp);
        resp
    }
}

/// Pulls a human message out of an upstream error body of any of the shapes
/// providers use (OpenAI, Anthropic, vLLM, Bedrock), falling back to the raw
/// text so nothing the upstream said is lost.
pub(crate) fn upstream_message(body: &[u8]) -> (String, Option<String>) {
    let text = String::from_utf8_lossy(body);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let msg = v
            .pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("Message"))
            .and_then(|m| m.as_str());
        let ty = v.pointer("/error/type").or_else(|| v.get("type")).and_then(|t| t.as_str()).map(str::to_string);
        if let Some(m) = msg {
            return (m.to_string(), ty);
        }
    }
    let t = text.trim();
    let t = if t.len() > 2000 { &t[..t.char_indices().nth(2000).map(|(i, _)| i).unwrap_or(t.len())] } else { t };
    (if t.is_empty() { "(empty body)".to_string() } else { t.to_string() }, None)
}

/// When a Google API says to retry, in its error body: the `retryDelay` of a
/// `google.rpc.RetryInfo` detail (`"17s"`, `"0.5s"`), as whole seconds
/// rounded up: the `Retry-After` a client understands, where the provider
/// sent no such header.
pub(crate) fn retry_delay(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let details = v.pointer("/error/details")?.as_array()?;
    let delay = details.iter().find_map(|d| {
        let retry_info = d.get("@type").and_then(|t| t.as_str()).is_some_and(|t| t.ends_with("google.rpc.RetryInfo"));
        retry_info.then(|| d.get("retryDelay").and_then(|r| r.as_str())).flatten()
    })?;
    let secs: f64 = delay.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| (secs.ceil() as u64).to_string())
}

/// An error with its causes, `: `-separated (`error sending request: operation timed out`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// How a JSON value's type is named in error messages ("must be a string,
/// got a number").
pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::retry_delay;

    #[test]
    fn a_google_retry_info_is_a_retry_after_in_whole_seconds() {
        let body = |delay: &str| {
            format!(
                r#"{{"error": {{"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
                    {{"@type": "type.googleapis.com/google.rpc.QuotaFailure"}},
                    {{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "{delay}"}}]}}}}"#
            )
        };
        assert_eq!(retry_delay(body("17s").as_bytes()).as_deref(), Some("17"));
        assert_eq!(retry_delay(body("0.2s").as_bytes()).as_deref(), Some("1"));
        for bad in ["soon", "-3s", "NaNs", ""] {
            assert_eq!(retry_delay(body(bad).as_bytes()), None, "{bad}");
        }
        assert_eq!(retry_delay(br#"{"error": {"message": "x"}}"#), None);
        assert_eq!(retry_delay(b"<html>"), None);
    }
}
