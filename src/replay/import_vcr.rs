//! VCR.py cassettes (YAML, `interactions:`, `version: 1`), including the two
//! variants real projects write:
//! - vcrpy's own: `request.body` a string, `response.body.string` a string;
//! - pydantic-ai's serializer: a structured `parsed_body:` in place of the
//!   body when it is JSON, lower-cased and filtered headers.
//!
//! Either may hold YAML `!!binary` values (base64): Bedrock's binary event
//! stream bodies and some botocore request headers. serde_yaml_ng resolves
//! `!!binary` to a plain string and loses the tag, so the text is rewritten to
//! a local `!binary` tag first, which it keeps.

use anyhow::anyhow;
use std::sync::OnceLock;

use regex::Regex;
use serde_yaml_ng::Value as Yaml;

use super::cassette::{decode_b64, push_header, Body, Cassette, Headers, Interaction, Request, Response};
use super::redact::redact_cassette;
use super::CassetteError;

/// Rewrites the `!!binary` tag (and only tags: after `key: `, `- ` or at the
/// start of a line) to `!binary`.
pub(crate) fn untag_binary(text: &str) -> std::borrow::Cow<'_, str> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"(?m)(^[ \t]*|:[ \t]+|-[ \t]+)!!binary\b").unwrap_or_else(|e| panic!("binary tag pattern: {e}"))
    });
    if !text.contains("!!binary") {
        return std::borrow::Cow::Borrowed(text);
    }
    re.replace_all(text, "${1}!binary")
}

/// Imports VCR.py YAML text (the tests' shorthand: production reads the
/// document once in `replay::load` and calls [`import_value`]).
#[cfg(test)]
fn import(text: &str, file: &str) -> Result<Cassette, CassetteError> {
    let yaml = untag_binary(text);
    let v: Yaml = serde_yaml_ng::from_str(&yaml).map_err(|e| CassetteError::yaml(file, &e))?;
    import_value(&v, text, file)
}

/// Imports an already parsed VCR document; `text` is only used to find the
/// line of each interaction for error messages.
pub(crate) fn import_value(v: &Yaml, text: &str, file: &str) -> Result<Cassette, CassetteError> {
    let lines = item_lines(text);
    let items = v
        .get("interactions")
        .and_then(Yaml::as_sequence)
        .ok_or_else(|| CassetteError::invalid(file, "interactions: expected a list"))?;
    let mut interactions = Vec::with_capacity(items.len());
    let mut recorded_at = None;
    for (i, item) in items.iter().enumerate() {
        let at = format!("interactions[{i}]");
        let err = |e: anyhow::Error| {
            let message = format!("{e:#}");
            match lines.get(i) {
                Some(line) => CassetteError::AtLine { file: file.to_string(), line: *line, message },
                None => CassetteError::Invalid { file: file.to_string(), message },
            }
        };
        let interaction = interaction(item, &at).map_err(err)?;
        if recorded_at.is_none() {
            recorded_at = interaction.response.header("date").and_then(http_date_to_rfc3339);
        }
        interactions.push(interaction);
    }
    let mut c = Cassette::new(format!("vcr {file}"), interactions);
    c.metadata.recorded_at = recorded_at;
    c.metadata.headers_complete = false;
    if items.iter().any(|i| i.get("request").and_then(|r| r.get("parsed_body")).is_some()) {
        c.metadata.notes.push("pydantic-ai serializer: JSON bodies were stored as parsed_body".into());
    }
    redact_cassette(&mut c);
    Ok(c)
}

fn interaction(item: &Yaml, at: &str) -> anyhow::Result<Interaction> {
    let req = item.get("request").ok_or_else(|| anyhow!("{at}.request: missing"))?;
    let resp = item.get("response").ok_or_else(|| anyhow!("{at}.response: missing"))?;
    let method = str_field(req, "method", &format!("{at}.request"))?.to_ascii_uppercase();
    let url = str_field(req, "uri", &format!("{at}.request"))?;
    let req_headers = headers(req.get("headers"), &format!("{at}.request.headers"))?;
    let req_ct = super::cassette::header(&req_headers, "content-type").map(str::to_string);
    let req_body = match req.get("parsed_body") {
        Some(p) => Body::json(to_json(p, &format!("{at}.request.parsed_body"))?),
        None => body(req.get("body"), req_ct.as_deref(), &format!("{at}.request.body"))?,
    };
    let status = match resp.get("status") {
        Some(Yaml::Mapping(m)) => m.get("code").and_then(Yaml::as_u64),
        Some(other) => other.as_u64(),
        None => None,
    }
    .and_then(|c| u16::try_from(c).ok())
    .ok_or_else(|| anyhow!("{at}.response.status: expected `{{code: N}}` or a number"))?;
    let resp_headers = headers(resp.get("headers"), &format!("{at}.response.headers"))?;
    let resp_ct = super::cassette::header(&resp_headers, "content-type").map(str::to_string);
    let resp_body = match resp.get("parsed_body") {
        Some(p) => Body::json(to_json(p, &format!("{at}.response.parsed_body"))?),
        None => {
            // vcrpy: `body: {string: ...}`; some writers: `body: "..."`.
            let b = match resp.get("body") {
                Some(Yaml::Mapping(m)) => m.get("string"),
                other => other,
            };
            body(b, resp_ct.as_deref(), &format!("{at}.response.body"))?
        }
    };
    Ok(Interaction {
        provider: None,
        request: Request { method, url, headers: req_headers, body: req_body },
        response: Response { status, headers: resp_headers, body: resp_body },
        elapsed_ms: None,
        client: None,
    })
}

fn str_field(m: &Yaml, key: &str, at: &str) -> anyhow::Result<String> {
    match m.get(key) {
        Some(Yaml::String(s)) => Ok(s.clone()),
        Some(_) => Err(anyhow!("{at}.{key}: expected a string")),
        None => Err(anyhow!("{at}.{key}: missing")),
    }
}

/// A scalar as bytes: strings as UTF-8, `!binary` decoded from base64.
fn scalar_bytes(v: &Yaml, at: &str) -> anyhow::Result<Option<Vec<u8>>> {
    match v {
        Yaml::Null => Ok(None),
        Yaml::String(s) => Ok(Some(s.as_bytes().to_vec())),
        Yaml::Number(n) => Ok(Some(n.to_string().into_bytes())),
        Yaml::Bool(b) => Ok(Some(b.to_string().into_bytes())),
        Yaml::Tagged(t) if t.tag == "binary" => match &t.value {
            Yaml::String(s) => decode_b64(s).map(Some).map_err(|e| anyhow!("{at}: !!binary is not base64: {e}")),
            _ => Err(anyhow!("{at}: !!binary must hold a base64 string")),
        },
        Yaml::Tagged(t) => Err(anyhow!("{at}: unsupported YAML tag {}", t.tag)),
        _ => Err(anyhow!("{at}: expected a string")),
    }
}

fn headers(v: Option<&Yaml>, at: &str) -> anyhow::Result<Headers> {
    let mut out = Headers::new();
    let Some(v) = v else { return Ok(out) };
    let map = match v {
        Yaml::Null => return Ok(out),
        Yaml::Mapping(m) => m,
        _ => return Err(anyhow!("{at}: expected a mapping of header name to values")),
    };
    for (k, vals) in map {
        let name = k.as_str().ok_or_else(|| anyhow!("{at}: header names must be strings"))?;
        let values: Vec<&Yaml> = match vals {
            Yaml::Sequence(s) => s.iter().collect(),
            other => vec![other],
        };
        for (n, val) in values.into_iter().enumerate() {
            if let Some(bytes) = scalar_bytes(val, &format!("{at}.{name}[{n}]"))? {
                push_header(&mut out, name, String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    Ok(out)
}

fn body(v: Option<&Yaml>, content_type: Option<&str>, at: &str) -> anyhow::Result<Body> {
    match v {
        None => Ok(Body::default()),
        Some(v) => Ok(scalar_bytes(v, at)?.map(|b| Body::from_bytes(content_type, &b)).unwrap_or_default()),
    }
}

fn to_json(v: &Yaml, at: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| anyhow!("{at}: cannot be read as JSON: {e}"))
}

/// Line (1-based) of each top-level list item under `interactions:`.
fn item_lines(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut in_list = false;
    let mut indent = None;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("interactions:") {
            in_list = true;
            continue;
        }
        if !in_list {
            continue;
        }
        let trimmed = line.trim_start();
        let this_indent = line.len() - trimmed.len();
        if trimmed.starts_with("- ") || trimmed == "-" {
            match indent {
                None => {
                    indent = Some(this_indent);
                    out.push(n + 1);
                }
                Some(i) if i == this_indent => out.push(n + 1),
                _ => {}
            }
        } else if this_indent == 0 && !trimmed.is_empty() {
            // The next top-level key ends the list.
            in_list = false;
        }
    }
    out
}

/// `Tue, 22 Jul 2025 10:00:00 GMT` -> `2025-07-22T10:00:00Z`.
fn http_date_to_rfc3339(s: &str) -> Option<String> {
    let t = aws_smithy_types::DateTime::from_str(s, aws_smithy_types::date_time::Format::HttpDate).ok()?;
    t.fmt(aws_smithy_types::date_time::Format::DateTime).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_tags_are_kept_and_decoded() {
        let text = "interactions:\n- request:\n    body: '{\"a\": 1}'\n    headers:\n      content-type:\n      - !!binary |\n        YXBwbGljYXRpb24vanNvbg==\n    method: POST\n    uri: https://bedrock-runtime.us-east-1.amazonaws.com/model/m/invoke\n  response:\n    body:\n      string: !!binary |\n        AAEC\n    headers: {}\n    status:\n      code: 200\n      message: OK\nversion: 1\n";
        let c = import(text, "t.yaml").unwrap();
        let i = &c.interactions[0];
        assert_eq!(i.request.header("content-type"), Some("application/json"));
        assert_eq!(i.request.body.json, Some(serde_json::json!({"a": 1})));
        assert_eq!(i.response.body.base64.as_deref(), Some("AAEC"));
        assert_eq!(c.metadata.provider, "bedrock");
    }

    #[test]
    fn errors_name_the_line_of_the_interaction() {
        let text = "interactions:\n- request:\n    method: POST\n    uri: https://x/v1/a\n  response:\n    status: {code: 200}\n- request:\n    method: POST\n  response:\n    status: {code: 200}\nversion: 1\n";
        let err = import(text, "t.yaml").unwrap_err().to_string();
        assert!(err.starts_with("t.yaml:7: interactions[1].request.uri: missing"), "{err}");
    }

    #[test]
    fn http_dates_convert() {
        assert_eq!(http_date_to_rfc3339("Tue, 22 Jul 2025 10:00:00 GMT").as_deref(), Some("2025-07-22T10:00:00Z"));
        assert_eq!(http_date_to_rfc3339("yesterday"), None);
    }
}
