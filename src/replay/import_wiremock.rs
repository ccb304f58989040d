//! WireMock JSON stub mappings: one mapping (`request`/`response`), a list,
//! or `{"mappings": [...]}`. They are hand-written answers, not recordings:
//! the request side usually has no body, so they import (for reading,
//! diffing and as scenario stubs) but do not replay.

use serde::Deserialize;
use serde_json::Value;

use super::cassette::{push_header, Body, Cassette, Headers, Interaction, Request, Response};
use super::redact::redact_cassette;
use super::CassetteError;

#[derive(Deserialize)]
#[serde(untagged)]
enum Document {
    Wrapped { mappings: Vec<Mapping> },
    Many(Vec<Mapping>),
    One(Box<Mapping>),
}

#[derive(Deserialize)]
struct Mapping {
    #[serde(default)]
    id: Option<String>,
    request: MappingRequest,
    response: MappingResponse,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MappingRequest {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_path: Option<String>,
    #[serde(default)]
    url_pattern: Option<String>,
    #[serde(default)]
    url_path_pattern: Option<String>,
    #[serde(default)]
    body_patterns: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MappingResponse {
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    #[serde(default)]
    json_body: Option<Value>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    base64_body: Option<String>,
}

fn ok() -> u16 {
    200
}

/// Imports WireMock mapping JSON text.
pub(crate) fn import(text: &str, file: &str) -> Result<Cassette, CassetteError> {
    let doc: Document = serde_json::from_str(text).map_err(|e| CassetteError::json(file, &e))?;
    let mappings = match doc {
        Document::Wrapped { mappings } | Document::Many(mappings) => mappings,
        Document::One(m) => vec![*m],
    };
    let mut notes = Vec::new();
    let mut interactions = Vec::with_capacity(mappings.len());
    for (i, m) in mappings.into_iter().enumerate() {
        let r = &m.request;
        let url = match (&r.url, &r.url_path, &r.url_path_pattern, &r.url_pattern) {
            (Some(u), _, _, _) | (None, Some(u), _, _) => u.clone(),
            (None, None, Some(p), _) | (None, None, None, Some(p)) => {
                notes.push(format!("interactions[{i}]: the request URL is a pattern (`{p}`)"));
                p.clone()
            }
            _ => "/".to_string(),
        };
        let method = r.method.clone().unwrap_or_else(|| "ANY".into()).to_ascii_uppercase();
        let method = if method == "ANY" { "POST".to_string() } else { method };
        // `equalToJson` is the one body pattern that is a whole body.
        let req_body = r
            .body_patterns
            .iter()
            .find_map(|p| p.get("equalToJson"))
            .map(|j| match j {
                Value::String(s) => serde_json::from_str(s).map(Body::json).unwrap_or_else(|_| Body::text(s.clone())),
                other => Body::json(other.clone()),
            })
            .unwrap_or_default();
        let mut headers = Headers::new();
        for (k, v) in &m.response.headers {
            match v {
                Value::String(s) => push_header(&mut headers, k, s.clone()),
                Value::Array(a) => {
                    a.iter().filter_map(Value::as_str).for_each(|s| push_header(&mut headers, k, s.into()))
                }
                other => push_header(&mut headers, k, other.to_string()),
            }
        }
        let ct = super::cassette::header(&headers, "content-type").map(str::to_string);
        let body = match (&m.response.json_body, &m.response.body, &m.response.base64_body) {
            (Some(j), _, _) => Body::json(j.clone()),
            (None, Some(b), _) => Body::from_bytes(ct.as_deref(), b.as_bytes()),
            (None, None, Some(b)) => Body { base64: Some(b.clone()), ..Body::default() },
            _ => Body::default(),
        };
        if let Some(id) = &m.id {
            notes.push(format!("interactions[{i}]: WireMock mapping `{id}`"));
        }
        interactions.push(Interaction {
            provider: None,
            request: Request { method, url, headers: Headers::new(), body: req_body },
            response: Response { status: m.response.status, headers, body },
            elapsed_ms: None,
            client: None,
        });
    }
    let mut c = Cassette::new(format!("wiremock {file}"), interactions);
    c.metadata.notes = notes;
    c.metadata.notes.push("hand-written stub mappings, not a recording".into());
    c.validate().map_err(|m| CassetteError::within(file, &m))?;
    redact_cassette(&mut c);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_wrapped_mappings_import() {
        let one = r#"{"request": {"method": "POST", "url": "/v1/chat/completions"},
            "response": {"status": 429, "headers": {"Retry-After": "2"}, "jsonBody": {"error": {"message": "slow"}}}}"#;
        let c = import(one, "m.json").unwrap();
        assert_eq!(c.interactions[0].response.status, 429);
        assert_eq!(c.interactions[0].response.header("retry-after"), Some("2"));
        assert_eq!(c.metadata.provider, "openai");
        let wrapped =
            r#"{"mappings": [{"request": {"urlPathPattern": "/model/[^/]+/converse"}, "response": {"body": "hi"}}]}"#;
        let c = import(wrapped, "m.json").unwrap();
        assert_eq!(c.interactions[0].response.body.text.as_deref(), Some("hi"));
        assert_eq!(c.metadata.provider, "bedrock");
    }
}
