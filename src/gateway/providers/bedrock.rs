//! Claude on AWS Bedrock (InvokeModel / InvokeModelWithResponseStream).
//!
//! Bedrock takes the Anthropic Messages body almost unchanged, with three
//! differences handled here: the model goes in the URL (not the body), the
//! body carries `anthropic_version: "bedrock-2023-05-31"` and the betas as an
//! `anthropic_beta` array (filtered by [`crate::gateway::beta`], because
//! Bedrock rejects unknown flags with HTTP 400), and requests are signed with
//! SigV4. Streams are not SSE but `application/vnd.amazon.eventstream` binary
//! frames whose `chunk` events wrap base64-encoded Anthropic events.

use std::fmt;
use std::time::SystemTime;

#[cfg(test)]
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
#[cfg(test)]
use aws_smithy_types::event_stream::{Header, HeaderValue};
use base64::Engine as _;
use bytes::BytesMut;
use serde_json::{json, Value};

use crate::gateway::error::ApiError;

/// The `anthropic_version` Bedrock requires in the body.
pub(crate) const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// Everything that can go wrong talking to Bedrock, short of HTTP itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BedrockError {
    #[error(
        "AWS credentials for Bedrock are missing ({}): set aws_access_key_id and \
         aws_secret_access_key in the model's litellm_params, or the AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY environment variables (plus AWS_SESSION_TOKEN for temporary credentials)",
        missing.join(", ")
    )]
    MissingCredentials { missing: Vec<&'static str> },
    #[error(
        "AWS region for Bedrock is missing: set aws_region_name in the model's litellm_params, \
         or the AWS_REGION / AWS_DEFAULT_REGION environment variable"
    )]
    MissingRegion,
    #[error("cannot sign the Bedrock request: {0}")]
    Signing(String),
    /// The event-stream framing is broken (bad length, bad CRC, ...).
    #[error("invalid Bedrock event stream frame: {0}")]
    Frame(String),
    /// A well-framed event whose content is not what Bedrock sends.
    #[error("invalid Bedrock event `{field}`: {reason}")]
    InvalidEvent { field: String, reason: String },
    /// Bedrock reported an error inside the stream (HTTP status was already 200).
    #[error("Bedrock {kind}: {message}")]
    StreamException { kind: String, message: String },
    /// The stream ended in the middle of a frame.
    #[error("Bedrock event stream ended inside a frame ({pending_bytes} bytes pending)")]
    TruncatedStream { pending_bytes: usize },
    #[error("cannot encode event stream frame: {0}")]
    Encode(String),
}

impl BedrockError {
    #[cfg(test)]
    /// The HTTP status to report for an in-stream exception, following what
    /// Bedrock returns for the same error on a non-streaming call.
    pub(crate) fn http_status(&self) -> u16 {
        match self {
            BedrockError::StreamException { kind, .. } => match kind.as_str() {
                "throttlingException" => 429,
                "validationException" => 400,
                "accessDeniedException" => 403,
                "resourceNotFoundException" => 404,
                "modelTimeoutException" => 408,
                "modelNotReadyException" | "serviceUnavailableException" => 503,
                "internalServerException" => 500,
                "modelErrorException" => 424,
                _ => 502,
            },
            BedrockError::MissingCredentials { .. }
            | BedrockError::MissingRegion
            | BedrockError::Signing(_)
            | BedrockError::Encode(_) => 500,
            _ => 502,
        }
    }
}

// ---------------------------------------------------------------------------
// URLs and body
// ---------------------------------------------------------------------------

/// `https://bedrock-runtime.{region}.amazonaws.com`.
pub(crate) fn default_endpoint(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// `{base}/model/{model id}/invoke` or `.../invoke-with-response-stream`.
/// The model id is percent-encoded: ids contain `:` (`...-v2:0`) and
/// inference-profile ARNs contain `/`, which must not split the path.
pub(crate) fn invoke_url(endpoint_base: &str, model_id: &str, stream: bool) -> Result<String, super::SegmentError> {
    let action = if stream { "invoke-with-response-stream" } else { "invoke" };
    Ok(format!("{}/model/{}/{action}", endpoint_base.trim_end_matches('/'), super::path_segment(model_id)?))
}

/// Turns an Anthropic Messages body into a Bedrock InvokeModel body: the
/// model is in the URL, the stream in the action, the version and the beta
/// flags in the body.
pub(crate) fn to_bedrock_body(body: &mut super::body::Body<'_>, betas: &[String]) {
    body.remove("model");
    body.remove("stream");
    body.set("anthropic_version", json!(BEDROCK_ANTHROPIC_VERSION));
    if betas.is_empty() {
        body.remove("anthropic_beta");
    } else {
        body.set("anthropic_beta", json!(betas));
    }
}

// ---------------------------------------------------------------------------
// Credentials and SigV4
// ---------------------------------------------------------------------------

/// Static AWS credentials. `Debug` never prints the secret or the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field("session_token", &self.session_token.as_ref().map(|_| "** redacted **"))
            .finish()
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

impl AwsCredentials {
    /// Credentials from the model config, else from the environment as `env`
    /// reads it (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`). Config and environment are never mixed: a
    /// session token only belongs to the key it was issued with.
    pub(crate) fn resolve_with(
        cfg_key: Option<&str>,
        cfg_secret: Option<&str>,
        cfg_token: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<AwsCredentials, BedrockError> {
        let (key, secret, token, names) = match (non_empty(cfg_key), non_empty(cfg_secret)) {
            (None, None) => (
                non_empty(env("AWS_ACCESS_KEY_ID").as_deref()),
                non_empty(env("AWS_SECRET_ACCESS_KEY").as_deref()),
                non_empty(env("AWS_SESSION_TOKEN").as_deref()),
                ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
            ),
            (k, s) => (k, s, non_empty(cfg_token), ["aws_access_key_id", "aws_secret_access_key"]),
        };
        match (key, secret) {
            (Some(access_key_id), Some(secret_access_key)) => {
                Ok(AwsCredentials { access_key_id, secret_access_key, session_token: token })
            }
            (k, s) => {
                let mut missing = Vec::new();
                if k.is_none() {
                    missing.push(names[0]);
                }
                if s.is_none() {
                    missing.push(names[1]);
                }
                Err(BedrockError::MissingCredentials { missing })
            }
        }
    }
}

/// Where a deployment with no region anywhere is sent.
pub(crate) const DEFAULT_REGION: &str = "us-east-1";

/// The region from config, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, as
/// `env` reads them.
pub(crate) fn resolve_region_with(
    cfg_region: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, BedrockError> {
    non_empty(cfg_region)
        .or_else(|| non_empty(env("AWS_REGION").as_deref()))
        .or_else(|| non_empty(env("AWS_DEFAULT_REGION").as_deref()))
        .ok_or(BedrockError::MissingRegion)
}

/// Signs a request with SigV4 and returns the headers to add
/// (`authorization`, `x-amz-date`, and `x-amz-security-token` for temporary
/// credentials). `headers` are the headers that will be sent (all are
/// signed); `url` must be exactly the URL requested, already percent-encoded
/// as [`invoke_url`] produces it. `service` is `bedrock` for Bedrock runtime.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sign(
    method: &str,
    url: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    creds: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, BedrockError> {
    use aws_sigv4::http_request::{sign as sigv4_sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;

    // aws-sigv4 panics on a URI without a host; reject it first.
    let uri: http::Uri = url.parse().map_err(|e| BedrockError::Signing(format!("invalid URL `{url}`: {e}")))?;
    if uri.host().is_none() {
        return Err(BedrockError::Signing(format!("URL `{url}` has no host")));
    }
    let mut header_pairs = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let value =
            value.to_str().map_err(|_| BedrockError::Signing(format!("header `{name}` is not visible ASCII")))?;
        header_pairs.push((name.as_str(), value));
    }
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        None,
        "postmortem",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| BedrockError::Signing(e.to_string()))?
        .into();
    let request = SignableRequest::new(method, url, header_pairs.into_iter(), SignableBody::Bytes(body))
        .map_err(|e| BedrockError::Signing(e.to_string()))?;
    let (instructions, _signature) =
        sigv4_sign(request, &params).map_err(|e| BedrockError::Signing(e.to_string()))?.into_parts();
    Ok(instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

// ---------------------------------------------------------------------------
// Event stream
// ---------------------------------------------------------------------------

/// One decoded event of a Bedrock response stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BedrockStreamEvent {
    /// InvokeModelWithResponseStream `chunk`: the Anthropic event it wraps
    /// (feed it to `StreamTranslator::on_event("", &event)`).
    Anthropic(Value),
    /// Any other event, e.g. ConverseStream's `messageStart`,
    /// `contentBlockDelta`, `metadata`: its `:event-type` and JSON payload.
    Other { event_type: String, payload: Value },
}

/// Incremental decoder for `application/vnd.amazon.eventstream` bodies.
/// Feed bytes as they arrive; frames split across reads are reassembled.
///
/// Errors keep their place in the stream: events decoded before a broken
/// frame or an exception frame are returned first, and the error is returned
/// by the next call ([`feed`](Self::feed) or [`finish`](Self::finish)). After
/// an error the decoder stays failed, since framing cannot be resynchronised.
#[derive(Debug, Default)]
pub(crate) struct EventStreamDecoder {
    buf: BytesMut,
    frames: MessageFrameDecoder,
    /// The frame decoder consumed a prelude but not yet the whole frame.
    mid_frame: bool,
    error: Option<BedrockError>,
}

fn header_str<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

impl EventStreamDecoder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records `err`; returns it now only if nothing was decoded before it.
    fn fail<T>(&mut self, out: Vec<T>, err: BedrockError) -> Result<Vec<T>, BedrockError> {
        self.error = Some(err.clone());
        if out.is_empty() {
            Err(err)
        } else {
            Ok(out)
        }
    }

    /// Decodes every complete frame now available into raw messages.
    pub(crate) fn feed_messages(&mut self, bytes: &[u8]) -> Result<Vec<Message>, BedrockError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let before = self.buf.len();
            match self.frames.decode_frame(&mut self.buf) {
                Ok(DecodedFrame::Complete(m)) => {
                    self.mid_frame = false;
                    out.push(m);
                }
                Ok(DecodedFrame::Incomplete) => {
                    if self.buf.len() < before {
                        self.mid_frame = true;
                    }
                    return Ok(out);
                }
                Err(e) => return self.fail(out, BedrockError::Frame(e.to_string())),
            }
        }
    }

    /// Decodes every complete frame now available into events. An exception
    /// frame becomes `Err(BedrockError::StreamException)`.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Vec<BedrockStreamEvent>, BedrockError> {
        let messages = self.feed_messages(bytes)?;
        let mut out = Vec::with_capacity(messages.len());
        for m in &messages {
            match decode_event(m) {
                Ok(ev) => out.push(ev),
                Err(e) => return self.fail(out, e),
            }
        }
        Ok(out)
    }

    /// Call at end of body: reports a pending error, or a stream that
    /// stopped inside a frame.
    pub(crate) fn finish(&self) -> Result<(), BedrockError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.mid_frame || !self.buf.is_empty() {
            return Err(BedrockError::TruncatedStream { pending_bytes: self.buf.len() });
        }
        Ok(())
    }
}

/// Interprets one event-stream message.
pub(crate) fn decode_event(message: &Message) -> Result<BedrockStreamEvent, BedrockError> {
    let payload = message.payload();
    match header_str(message, ":message-type") {
        Some("event") => {}
        Some("exception") => {
            let kind = header_str(message, ":exception-type").unwrap_or("exception").to_string();
            let text = String::from_utf8_lossy(payload);
            let parsed: Option<Value> = serde_json::from_slice(payload).ok();
            let message = parsed
                .as_ref()
                .and_then(|v| v.get("message").or_else(|| v.get("Message")))
                .and_then(Value::as_str)
                .map_or_else(|| text.to_string(), str::to_string);
            return Err(BedrockError::StreamException { kind, message });
        }
        Some("error") => {
            return Err(BedrockError::StreamException {
                kind: header_str(message, ":error-code").unwrap_or("error").to_string(),
                message: header_str(message, ":error-message").unwrap_or("").to_string(),
            })
        }
        other => {
            return Err(BedrockError::InvalidEvent {
                field: ":message-type".into(),
                reason: format!("unexpected value {other:?}"),
            })
        }
    }
    let event_type = header_str(message, ":event-type")
        .ok_or_else(|| BedrockError::InvalidEvent { field: ":event-type".into(), reason: "missing".into() })?;
    let json: Value = serde_json::from_slice(payload).map_err(|e| BedrockError::InvalidEvent {
        field: format!("{event_type}.payload"),
        reason: format!("not JSON: {e}"),
    })?;
    if event_type != "chunk" {
        return Ok(BedrockStreamEvent::Other { event_type: event_type.to_string(), payload: json });
    }
    let b64 = json.get("bytes").and_then(Value::as_str).ok_or_else(|| BedrockError::InvalidEvent {
        field: "chunk.bytes".into(),
        reason: "missing or not a string".into(),
    })?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| BedrockError::InvalidEvent { field: "chunk.bytes".into(), reason: format!("not base64: {e}") })?;
    let event: Value = serde_json::from_slice(&raw).map_err(|e| BedrockError::InvalidEvent {
        field: "chunk.bytes".into(),
        reason: format!("decoded bytes are not JSON: {e}"),
    })?;
    Ok(BedrockStreamEvent::Anthropic(event))
}

#[cfg(test)]
fn encode(headers: Vec<Header>, payload: Vec<u8>) -> Result<Vec<u8>, BedrockError> {
    let message = Message::new_from_parts(headers, payload);
    let mut out = Vec::new();
    write_message_to(&message, &mut out).map_err(|e| BedrockError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
fn str_header(name: &'static str, value: impl Into<String>) -> Header {
    Header::new(name, HeaderValue::String(value.into().into()))
}

#[cfg(test)]
/// One `chunk` frame wrapping an Anthropic event, as InvokeModelWithResponseStream
/// sends it (used by the Bedrock mock to produce real frames).
pub(crate) fn encode_chunk_frame(anthropic_event: &Value) -> Result<Vec<u8>, BedrockError> {
    let inner = base64::engine::general_purpose::STANDARD.encode(anthropic_event.to_string());
    encode(
        vec![
            str_header(":event-type", "chunk"),
            str_header(":content-type", "application/json"),
            str_header(":message-type", "event"),
        ],
        json!({ "bytes": inner }).to_string().into_bytes(),
    )
}

#[cfg(test)]
/// An exception frame, e.g. `kind = "throttlingException"`.
pub(crate) fn encode_exception_frame(kind: &str, message: &str) -> Result<Vec<u8>, BedrockError> {
    encode(
        vec![
            str_header(":exception-type", kind),
            str_header(":content-type", "application/json"),
            str_header(":message-type", "exception"),
        ],
        json!({ "message": message }).to_string().into_bytes(),
    )
}

// ---------------------------------------------------------------------------
// The provider
// ---------------------------------------------------------------------------

/// How a Bedrock deployment signs its calls: resolved once, at config load.
#[derive(Clone)]
pub struct Signing {
    pub creds: AwsCredentials,
    pub region: String,
}

/// Claude on Bedrock (InvokeModel).
pub struct Bedrock;

impl super::ProviderApi for Bedrock {
    fn endpoint(&self, input: &super::EndpointInput<'_>) -> Result<super::Endpoint, super::EndpointError> {
        let p = input.params;
        // The config's region, else `AWS_REGION` / `AWS_DEFAULT_REGION`, else
        // us-east-1 (boto3's fallback, which LiteLLM inherits).
        let region =
            resolve_region_with(p.aws_region_name.as_deref(), input.env).unwrap_or_else(|_| DEFAULT_REGION.to_string());
        let base = input
            .api_base()
            .or_else(|| p.aws_bedrock_runtime_endpoint.as_deref().map(|e| e.trim_end_matches('/').to_string()))
            .unwrap_or_else(|| default_endpoint(&region));
        let creds = AwsCredentials::resolve_with(
            p.aws_access_key_id.as_deref(),
            p.aws_secret_access_key.as_deref(),
            p.aws_session_token.as_deref(),
            input.env,
        )?;
        let mut ep = super::Endpoint::new(input.provider, base);
        ep.signing = Some(Signing { creds, region });
        Ok(ep)
    }

    fn request(&self, ep: &super::Endpoint, call: super::Call<'_>) -> Result<super::UpstreamRequest, ApiError> {
        use axum::http::HeaderValue as Hv;
        if call.op != super::Operation::Messages {
            return Err(ApiError::Internal("bedrock is called with Messages only".into()));
        }
        let Some(signing) = &ep.signing else {
            return Err(ApiError::Internal("a bedrock endpoint without credentials".into()));
        };
        let mut v = call.body;
        to_bedrock_body(&mut v, call.betas);
        let body = serde_json::to_vec(&v).map_err(|e| ApiError::Internal(e.to_string()))?;
        let url = invoke_url(&ep.url, call.upstream_model, call.stream)?;
        let accept = if call.stream { STREAM_MEDIA_TYPE } else { "application/json" };
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, Hv::from_static("application/json"));
        headers.insert(http::header::ACCEPT, Hv::from_static(accept));
        let signed = sign("POST", &url, &headers, &body, &signing.creds, &signing.region, "bedrock", call.now)
            .map_err(|e| ApiError::Internal(format!("SigV4 signing failed: {e}")))?;
        let mut out: Vec<(http::HeaderName, Hv)> = headers.into_iter().filter_map(|(k, v)| Some((k?, v))).collect();
        for (k, v) in signed {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| ApiError::Internal(format!("SigV4 header `{k}`: {e}")))?;
            let mut value = Hv::from_str(&v).map_err(|e| ApiError::Internal(format!("SigV4 header `{k}`: {e}")))?;
            value.set_sensitive(true);
            out.push((name, value));
        }
        Ok(super::UpstreamRequest { method: http::Method::POST, url, headers: out, body })
    }

    fn speaks_messages(&self, _upstream_model: &str) -> bool {
        true
    }

    fn stream_media_type(&self) -> &'static str {
        STREAM_MEDIA_TYPE
    }

    fn betas(&self) -> Option<(crate::gateway::beta::BetaTarget, crate::gateway::beta::Placement)> {
        // InvokeModel takes the flags in the body (`anthropic_beta`).
        Some((crate::gateway::beta::BetaTarget::Bedrock, crate::gateway::beta::Placement::Body))
    }

    fn events(&self) -> Box<dyn super::EventDecoder> {
        Box::new(AnthropicEvents(EventStreamDecoder::new()))
    }
}

/// The media type of InvokeModelWithResponseStream's answer.
pub(crate) const STREAM_MEDIA_TYPE: &str = "application/vnd.amazon.eventstream";

/// The Anthropic events inside a Bedrock stream's `chunk` frames.
struct AnthropicEvents(EventStreamDecoder);

impl super::EventDecoder for AnthropicEvents {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<(String, Value)>) -> Result<(), ApiError> {
        let events = self.0.feed(chunk).map_err(|e| ApiError::BadGateway(format!("bedrock event stream: {e}")))?;
        for ev in events {
            if let BedrockStreamEvent::Anthropic(ev) = ev {
                let ty = ev.get("type").and_then(Value::as_str).unwrap_or("").to_string();
                out.push((ty, ev));
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ApiError> {
        self.0.finish().map_err(|e| ApiError::BadGateway(format!("bedrock event stream: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn urls() {
        assert_eq!(default_endpoint("eu-west-1"), "https://bedrock-runtime.eu-west-1.amazonaws.com");
        assert_eq!(
            invoke_url("https://bedrock-runtime.us-east-1.amazonaws.com/", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", false)
                .unwrap(),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-3-5-sonnet-20241022-v2%3A0/invoke"
        );
        assert_eq!(
            invoke_url("http://127.0.0.1:9", "arn:aws:bedrock:us-east-1:123:inference-profile/x y", true).unwrap(),
            "http://127.0.0.1:9/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fx%20y/invoke-with-response-stream"
        );
    }

    #[test]
    fn body() {
        let msgs = json!({"model": "m", "stream": true, "max_tokens": 10, "messages": [], "anthropic_beta": ["x"]});
        let msgs = msgs.as_object().cloned().unwrap_or_default();
        let shaped = |betas: &[String]| {
            let mut b = crate::gateway::providers::body::Body::client_without_nulls(&msgs);
            to_bedrock_body(&mut b, betas);
            serde_json::to_value(&b).unwrap()
        };
        assert_eq!(shaped(&[]), json!({"max_tokens": 10, "messages": [], "anthropic_version": "bedrock-2023-05-31"}));
        let out = shaped(&["computer-use-2025-01-24".to_string()]);
        assert_eq!(out["anthropic_beta"], json!(["computer-use-2025-01-24"]));
        assert!(out.get("model").is_none() && out.get("stream").is_none());
    }

    #[test]
    fn credentials_resolution() {
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKIDENV".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("envsecret".to_string()),
            "AWS_SESSION_TOKEN" => Some("envtoken".to_string()),
            _ => None,
        };
        let c = AwsCredentials::resolve_with(Some("AKIDCFG"), Some("cfgsecret"), None, env).unwrap();
        assert_eq!(c.access_key_id, "AKIDCFG");
        assert_eq!(c.session_token, None, "env token must not attach to config key");
        let c = AwsCredentials::resolve_with(None, Some(""), None, env).unwrap();
        assert_eq!(c.session_token.as_deref(), Some("envtoken"));
        let err = AwsCredentials::resolve_with(Some("AKIDCFG"), None, None, env).unwrap_err();
        assert_eq!(err, BedrockError::MissingCredentials { missing: vec!["aws_secret_access_key"] });
        let err = AwsCredentials::resolve_with(None, None, None, |_| None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"), "{msg}");
        let debug = format!("{c:?}");
        assert!(!debug.contains("envsecret") && !debug.contains("envtoken"), "{debug}");

        assert_eq!(resolve_region_with(Some("eu-west-3"), |_| None).unwrap(), "eu-west-3");
        assert_eq!(
            resolve_region_with(None, |k| (k == "AWS_DEFAULT_REGION").then(|| "ap-south-1".into())).unwrap(),
            "ap-south-1"
        );
        assert_eq!(resolve_region_with(Some(" "), |_| None), Err(BedrockError::MissingRegion));
    }

    fn example_creds(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_string),
        }
    }

    /// 2015-08-30T12:36:00Z, the time of AWS's SigV4 test suite.
    fn suite_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    #[test]
    fn sigv4_matches_aws_test_suite_get_vanilla() {
        let headers = sign(
            "GET",
            "https://example.amazonaws.com/",
            &http::HeaderMap::new(),
            b"",
            &example_creds(None),
            "us-east-1",
            "service",
            suite_time(),
        )
        .unwrap();
        let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(
            get("authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn sigv4_for_bedrock_signs_headers_and_token() {
        let mut h = http::HeaderMap::new();
        h.insert("content-type", http::HeaderValue::from_static("application/json"));
        let url = invoke_url(&default_endpoint("us-east-1"), "anthropic.claude-3-haiku-20240307-v1:0", false).unwrap();
        let creds = example_creds(Some("TOKEN"));
        let out = sign("POST", &url, &h, b"{}", &creds, "us-east-1", "bedrock", suite_time()).unwrap();
        let get = |k: &str| out.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let auth = get("authorization").unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, "));
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"), "{auth}");
        assert_eq!(get("x-amz-security-token").as_deref(), Some("TOKEN"));
        // Deterministic for a fixed time, and the body is covered.
        let again = sign("POST", &url, &h, b"{}", &creds, "us-east-1", "bedrock", suite_time()).unwrap();
        assert_eq!(out, again);
        let other = sign("POST", &url, &h, b"{ }", &creds, "us-east-1", "bedrock", suite_time()).unwrap();
        assert_ne!(out, other);
        assert!(!format!("{out:?}").contains("wJalrXUtnFEMI"));
    }

    #[test]
    fn sigv4_rejects_bad_urls() {
        let h = http::HeaderMap::new();
        let c = example_creds(None);
        for url in ["/model/x/invoke", "not a url"] {
            let err = sign("POST", url, &h, b"", &c, "us-east-1", "bedrock", suite_time()).unwrap_err();
            assert!(matches!(err, BedrockError::Signing(_)), "{url}: {err}");
        }
    }

    #[test]
    fn chunk_and_exception_frames_round_trip_across_splits() {
        let events = vec![
            json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 5}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "héllo"}}),
            json!({"type": "message_stop"}),
        ];
        let mut bytes = Vec::new();
        for e in &events {
            bytes.extend(encode_chunk_frame(e).unwrap());
        }
        for size in [1, 3, 17, bytes.len()] {
            let mut d = EventStreamDecoder::new();
            let mut got = Vec::new();
            for piece in bytes.chunks(size) {
                got.extend(d.feed(piece).unwrap());
            }
            d.finish().unwrap();
            let want: Vec<_> = events.iter().cloned().map(BedrockStreamEvent::Anthropic).collect();
            assert_eq!(got, want, "chunk size {size}");
        }

        let frame = encode_exception_frame("throttlingException", "Too many requests").unwrap();
        let mut d = EventStreamDecoder::new();
        let err = d.feed(&frame).unwrap_err();
        assert_eq!(
            err,
            BedrockError::StreamException { kind: "throttlingException".into(), message: "Too many requests".into() }
        );
        assert_eq!(err.http_status(), 429);

        // Events before an exception are delivered first; the error follows and sticks.
        let mut both = encode_chunk_frame(&events[1]).unwrap();
        both.extend(frame);
        let mut d = EventStreamDecoder::new();
        assert_eq!(d.feed(&both).unwrap(), vec![BedrockStreamEvent::Anthropic(events[1].clone())]);
        assert!(matches!(d.feed(b""), Err(BedrockError::StreamException { .. })));
        assert!(matches!(d.finish(), Err(BedrockError::StreamException { .. })));
    }

    #[test]
    fn truncated_and_corrupt_streams_are_errors() {
        let frame = encode_chunk_frame(&json!({"type": "ping"})).unwrap();
        let mut d = EventStreamDecoder::new();
        assert!(d.feed(&frame[..frame.len() - 1]).unwrap().is_empty());
        assert!(matches!(d.finish(), Err(BedrockError::TruncatedStream { .. })));
        let mut d = EventStreamDecoder::new();
        assert!(d.feed(&frame[..5]).unwrap().is_empty());
        assert!(d.finish().is_err());

        let mut corrupt = frame.clone();
        let mid = corrupt.len() / 2;
        corrupt[mid] ^= 0x01;
        assert!(matches!(EventStreamDecoder::new().feed(&corrupt), Err(BedrockError::Frame(_))));

        // A well-framed chunk whose payload is not the expected shape.
        let bad = encode(
            vec![str_header(":event-type", "chunk"), str_header(":message-type", "event")],
            b"{\"bytes\": \"%%%\"}".to_vec(),
        )
        .unwrap();
        let err = EventStreamDecoder::new().feed(&bad).unwrap_err();
        assert!(matches!(err, BedrockError::InvalidEvent { ref field, .. } if field == "chunk.bytes"), "{err}");
    }

    /// The recorded ConverseStream response (real AWS bytes) decodes frame by
    /// frame, whatever the read boundaries.
    #[test]
    fn decodes_recorded_converse_stream() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/cassettes/pydantic-ai/tests/models/cassettes/test_bedrock/test_bedrock_model_stream.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let body = &yaml["interactions"][0]["response"]["body"]["string"];
        let b64: String = match body {
            serde_yaml_ng::Value::Tagged(t) => t.value.as_str().unwrap().to_string(),
            other => other.as_str().unwrap().to_string(),
        };
        let b64: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();

        let decode_all = |size: usize| {
            let mut d = EventStreamDecoder::new();
            let mut out = Vec::new();
            for piece in bytes.chunks(size) {
                out.extend(d.feed(piece).unwrap());
            }
            d.finish().unwrap();
            out
        };
        let events = decode_all(bytes.len());
        for size in [1, 2, 7, 100] {
            assert_eq!(decode_all(size), events);
        }
        let types: Vec<&str> = events
            .iter()
            .map(|e| match e {
                BedrockStreamEvent::Other { event_type, .. } => event_type.as_str(),
                BedrockStreamEvent::Anthropic(_) => "chunk",
            })
            .collect();
        assert_eq!(types.first(), Some(&"messageStart"));
        assert_eq!(&types[types.len() - 3..], ["contentBlockStop", "messageStop", "metadata"]);
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                BedrockStreamEvent::Other { event_type, payload } if event_type == "contentBlockDelta" => {
                    payload["delta"]["text"].as_str().map(str::to_string)
                }
                _ => None,
            })
            .collect();
        assert!(text.starts_with("The capital of France is Paris."), "{text}");
        match events.last() {
            Some(BedrockStreamEvent::Other { payload, .. }) => {
                assert_eq!(payload["usage"]["totalTokens"], 95);
            }
            other => panic!("unexpected last event {other:?}"),
        }
    }
}
