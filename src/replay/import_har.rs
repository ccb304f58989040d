//! HAR 1.2 files (browser devtools, mitmproxy, Charles): `log.entries[]` with
//! a request (`postData`) and a response (`content`, maybe base64).
//!
//! HAR has no per-event timing, so streams imported from HAR have no
//! `at_ms`. HTTP/2 pseudo-headers (`:authority`, ...) are dropped: they are
//! the URL again.

use anyhow::anyhow;
use serde::Deserialize;

use super::cassette::{decode_b64, push_header, Body, Cassette, Headers, Interaction, Request, Response};
use super::redact::redact_cassette;
use super::CassetteError;

#[derive(Deserialize)]
struct Har {
    log: Log,
}

#[derive(Deserialize)]
struct Log {
    #[serde(default)]
    version: Option<String>,
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(default)]
    started_date_time: Option<String>,
    #[serde(default)]
    time: Option<f64>,
    request: HarRequest,
    response: HarResponse,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HarRequest {
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    post_data: Option<PostData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostData {
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    text: Option<String>,
    /// Not in HAR 1.2, but some tools write it for binary request bodies.
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Deserialize)]
struct HarResponse {
    status: u16,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Content {
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Deserialize)]
struct NameValue {
    name: String,
    value: String,
}

fn headers(list: &[NameValue]) -> Headers {
    let mut h = Headers::new();
    for nv in list.iter().filter(|nv| !nv.name.starts_with(':')) {
        push_header(&mut h, &nv.name, nv.value.clone());
    }
    h
}

fn body(text: Option<&str>, encoding: Option<&str>, mime: Option<&str>, at: &str) -> anyhow::Result<Body> {
    let Some(text) = text else { return Ok(Body::default()) };
    let bytes = match encoding {
        Some(e) if e.eq_ignore_ascii_case("base64") => decode_b64(text).map_err(|e| anyhow!("{at}: base64: {e}"))?,
        _ => text.as_bytes().to_vec(),
    };
    Ok(Body::from_bytes(mime, &bytes))
}

/// Imports HAR JSON text.
pub(crate) fn import(text: &str, file: &str) -> Result<Cassette, CassetteError> {
    let har: Har = serde_json::from_str(text).map_err(|e| CassetteError::json(file, &e))?;
    if let Some(v) = &har.log.version {
        if !v.starts_with('1') {
            return Err(CassetteError::invalid(file, format!("log.version: HAR {v} is not supported (1.x is)")));
        }
    }
    let mut interactions = Vec::with_capacity(har.log.entries.len());
    for (i, e) in har.log.entries.iter().enumerate() {
        let at = format!("log.entries[{i}]");
        let req_headers = headers(&e.request.headers);
        let mime = e.request.post_data.as_ref().and_then(|p| p.mime_type.clone());
        let req_ct = mime.or_else(|| super::cassette::header(&req_headers, "content-type").map(str::to_string));
        let req_body = match &e.request.post_data {
            Some(p) => {
                body(p.text.as_deref(), p.encoding.as_deref(), req_ct.as_deref(), &format!("{at}.request.postData"))
                    .map_err(|m| CassetteError::within(file, &m))?
            }
            None => Body::default(),
        };
        let resp_headers = headers(&e.response.headers);
        let content = e.response.content.as_ref();
        let resp_ct = content
            .and_then(|c| c.mime_type.clone())
            .filter(|m| !m.is_empty())
            .or_else(|| super::cassette::header(&resp_headers, "content-type").map(str::to_string));
        let resp_body = body(
            content.and_then(|c| c.text.as_deref()),
            content.and_then(|c| c.encoding.as_deref()),
            resp_ct.as_deref(),
            &format!("{at}.response.content"),
        )
        .map_err(|m| CassetteError::within(file, &m))?;
        if http::Method::from_bytes(e.request.method.as_bytes()).is_err() {
            return Err(CassetteError::invalid(file, format!("{at}.request.method: `{}`", e.request.method)));
        }
        interactions.push(Interaction {
            provider: None,
            request: Request {
                method: e.request.method.to_ascii_uppercase(),
                url: e.request.url.clone(),
                headers: req_headers,
                body: req_body,
            },
            response: Response { status: e.response.status, headers: resp_headers, body: resp_body },
            elapsed_ms: e.time.filter(|t| t.is_finite() && *t >= 0.0).map(|t| t.round() as u64),
            client: None,
        });
    }
    let mut c = Cassette::new(format!("har {file}"), interactions);
    c.metadata.recorded_at = har.log.entries.first().and_then(|e| e.started_date_time.clone());
    // Browsers and proxies export every header they saw.
    c.metadata.headers_complete = true;
    redact_cassette(&mut c);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_become_interactions() {
        let har = r#"{"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": [{
            "startedDateTime": "2025-01-01T00:00:00.000Z", "time": 12.4,
            "request": {"method": "POST", "url": "https://api.openai.com/v1/embeddings", "httpVersion": "HTTP/2",
                "headers": [{"name": ":authority", "value": "api.openai.com"}, {"name": "Content-Type", "value": "application/json"}],
                "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 20,
                "postData": {"mimeType": "application/json", "text": "{\"model\":\"m\",\"input\":\"x\"}"}},
            "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/2", "cookies": [],
                "headers": [{"name": "content-type", "value": "application/json"}],
                "content": {"size": 2, "mimeType": "application/json", "text": "e30=", "encoding": "base64"},
                "redirectURL": "", "headersSize": -1, "bodySize": 2},
            "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}]}}"#;
        let c = import(har, "t.har").unwrap();
        assert_eq!(c.metadata.provider, "openai");
        assert_eq!(c.metadata.recorded_at.as_deref(), Some("2025-01-01T00:00:00.000Z"));
        let i = &c.interactions[0];
        assert_eq!(i.request.header("content-type"), Some("application/json"));
        assert!(!i.request.headers.contains_key(":authority"));
        assert_eq!(i.response.body.json, Some(serde_json::json!({})));
        assert_eq!(i.elapsed_ms, Some(12));
    }

    #[test]
    fn type_errors_name_the_line() {
        let err = import("{\"log\": {\n\"entries\": [{\"request\": 5}]}}", "t.har").unwrap_err().to_string();
        assert!(err.starts_with("t.har:2:"), "{err}");
    }
}
