//! Semantic comparison of requests and responses with the recording.
//!
//! JSON is compared as data: key order is ignored, `1` equals `1.0`, and a key
//! that is absent is different from a key that is `null` (the vLLM incident:
//! a newly sent `"encoding_format": null` is a regression even though both
//! "mean nothing"). Noise is removed before comparing, by rules that are few
//! and named (docs/cassettes.md lists them):
//! - requests: only semantic headers are compared (`content-type` media type,
//!   `anthropic-version`, `anthropic-beta` as a set of flags); the Anthropic
//!   SDK's `?beta=true` marker and SigV4 query parameters are ignored; a
//!   top-level `"stream": false` equals no `stream` key (the API default);
//! - responses: the values (not the presence) of `id`, `created` and
//!   `created_at` keys are ignored; SSE comments (keep-alives) are ignored;
//!   errors are compared by status and by the provider's message appearing in
//!   the gateway's error, since the gateway re-shapes error bodies on purpose.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::cassette::{percent_decode, Headers, RecordedEvent};

/// One difference at a path like `body.messages[0].content`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub path: String,
    /// The recorded value; `None` when the recording has no such thing.
    pub recorded: Option<Value>,
    /// The replayed value; `None` when the replay has no such thing.
    pub replayed: Option<Value>,
    /// Extra explanation (a unified text diff, a count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Difference {
    pub fn new(path: impl Into<String>, recorded: Option<Value>, replayed: Option<Value>) -> Difference {
        Difference { path: path.into(), recorded, replayed, note: None }
    }

    pub(crate) fn note(path: impl Into<String>, note: impl Into<String>) -> Difference {
        Difference { path: path.into(), recorded: None, replayed: None, note: Some(note.into()) }
    }
}

/// Compact JSON, cut at 160 characters.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.recorded, &self.replayed) {
            (None, Some(v)) => write!(f, "+ {}: {} (not in the recording)", self.path, short(v))?,
            (Some(r), None) => write!(f, "- {}: {} (in the recording, missing now)", self.path, short(r))?,
            (Some(r), Some(v)) => write!(f, "~ {}: {} -> {}", self.path, short(r), short(v))?,
            (None, None) => write!(f, "! {}", self.path)?,
        }
        if let Some(n) = &self.note {
            let mut lines = n.lines();
            if let Some(first) = lines.next() {
                write!(f, ": {first}")?;
            }
            for l in lines {
                write!(f, "\n    {l}")?;
            }
        }
        Ok(())
    }
}

fn child(path: &str, key: &str) -> String {
    let simple = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (path.is_empty(), simple) {
        (true, true) => key.to_string(),
        (true, false) => format!("[{key:?}]"),
        (false, true) => format!("{path}.{key}"),
        (false, false) => format!("{path}[{key:?}]"),
    }
}

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    if a == b {
        return true;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Structural JSON diff (see the module doc for the rules).
pub(crate) fn json_diff(recorded: &Value, replayed: &Value, path: &str, out: &mut Vec<Difference>) {
    diff_with(recorded, replayed, path, &[], out);
}

/// [`json_diff`] of responses: the values of id and timestamp keys are
/// ignored (not their presence), at any depth, without copying the values.
pub(crate) fn response_json_diff(recorded: &Value, replayed: &Value, path: &str, out: &mut Vec<Difference>) {
    diff_with(recorded, replayed, path, IGNORED_VALUE_KEYS, out);
}

fn diff_with(recorded: &Value, replayed: &Value, path: &str, ignored: &[&str], out: &mut Vec<Difference>) {
    match (recorded, replayed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, av) in a {
                match b.get(k) {
                    Some(bv) if ignored.contains(&k.as_str()) && is_scalar(av) && is_scalar(bv) => {}
                    Some(bv) => diff_with(av, bv, &child(path, k), ignored, out),
                    None => out.push(Difference::new(child(path, k), Some(av.clone()), None)),
                }
            }
            for (k, bv) in b {
                if !a.contains_key(k) {
                    out.push(Difference::new(child(path, k), None, Some(bv.clone())));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (av, bv)) in a.iter().zip(b).enumerate() {
                diff_with(av, bv, &format!("{path}[{i}]"), ignored, out);
            }
            for (i, av) in a.iter().enumerate().skip(b.len()) {
                out.push(Difference::new(format!("{path}[{i}]"), Some(av.clone()), None));
            }
            for (i, bv) in b.iter().enumerate().skip(a.len()) {
                out.push(Difference::new(format!("{path}[{i}]"), None, Some(bv.clone())));
            }
        }
        (Value::Number(a), Value::Number(b)) if numbers_equal(a, b) => {}
        (a, b) if a == b => {}
        (a, b) => out.push(Difference::new(path, Some(a.clone()), Some(b.clone()))),
    }
}

fn is_scalar(v: &Value) -> bool {
    !v.is_object() && !v.is_array()
}

/// A canonical text form: equal exactly when [`json_diff`] finds nothing.
/// Used as a hash key to match requests in O(1).
pub(crate) fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out, false);
    out
}

/// The canonical form of a request body as replay matches it: redacted
/// (every string through `redact_str`) and without a top-level
/// `"stream": false`, computed without copying the body.
pub(crate) fn request_body_key(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if m.get("stream") == Some(&Value::Bool(false)) => {
            write_object(m.iter().filter(|(k, _)| k.as_str() != "stream"), &mut out, true);
        }
        other => write_canonical(other, &mut out, true),
    }
    out
}

fn write_object<'a>(entries: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut String, redact: bool) {
    let mut entries: Vec<(&String, &Value)> = entries.collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(k, out);
        out.push(':');
        write_canonical(v, out, redact);
    }
    out.push('}');
}

fn write_str(s: &str, out: &mut String) {
    // JSON string escaping, so that distinct strings stay distinct.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn write_canonical(v: &Value, out: &mut String, redact: bool) {
    match v {
        Value::Object(m) => write_object(m.iter(), out, redact),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out, redact);
            }
            out.push(']');
        }
        Value::Number(n) => match n.as_f64() {
            // 1 and 1.0 are one number; integers too large for f64 keep their text.
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => out.push_str(&format!("{}", f as i64)),
            Some(f) => out.push_str(&format!("{f:?}")),
            None => out.push_str(&n.to_string()),
        },
        Value::String(s) if redact => match super::redact::redact_str(s) {
            Some((r, _)) => write_str(&r, out),
            None => write_str(s, out),
        },
        Value::String(s) => write_str(s, out),
        other => out.push_str(&other.to_string()),
    }
}

/// Request-body noise: a top-level `"stream": false` is the default.
pub(crate) fn normalize_request_body(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        if o.get("stream") == Some(&Value::Bool(false)) {
            o.remove("stream");
        }
    }
    v
}

/// Keys whose values (not presence) responses may change from run to run.
const IGNORED_VALUE_KEYS: &[&str] = &["id", "created", "created_at"];

/// Query parameters that are compared: all but the ignored ones, decoded,
/// sorted.
pub(crate) fn normalized_query(query: Option<&str>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k, true);
        let lower = k.to_ascii_lowercase();
        if lower == "beta" || lower.starts_with("x-amz-") {
            continue;
        }
        out.entry(k).or_default().push(percent_decode(v, true));
    }
    out
}

/// The request headers replay compares.
pub(crate) const SEMANTIC_HEADERS: &[&str] = &["content-type", "anthropic-version", "anthropic-beta"];

fn header_values(h: &Headers, name: &str) -> Option<String> {
    h.get(name).map(|v| v.iter().collect::<Vec<_>>().join(","))
}

fn semantic_value(name: &str, v: &str) -> Value {
    match name {
        "content-type" => Value::String(v.split(';').next().unwrap_or("").trim().to_ascii_lowercase()),
        "anthropic-beta" => {
            let mut flags: Vec<&str> = v.split(',').map(str::trim).filter(|f| !f.is_empty()).collect();
            flags.sort_unstable();
            flags.dedup();
            Value::Array(flags.into_iter().map(|f| Value::String(f.into())).collect())
        }
        _ => Value::String(v.trim().to_string()),
    }
}

/// Header differences. A header the recording lacks is only compared when
/// the recording kept all headers (`complete`), except `anthropic-beta`,
/// which the gateway must never add on its own.
pub(crate) fn header_diff(recorded: &Headers, replayed: &Headers, complete: bool, out: &mut Vec<Difference>) {
    for name in SEMANTIC_HEADERS {
        let r = header_values(recorded, name);
        let p = header_values(replayed, name);
        if r.is_none() && !complete && *name != "anthropic-beta" {
            continue;
        }
        let r = r.map(|v| semantic_value(name, &v));
        let p = p.map(|v| semantic_value(name, &v));
        if r != p {
            out.push(Difference::new(format!("headers.{name}"), r, p));
        }
    }
}

/// A unified diff of two texts, cut to 40 lines.
pub(crate) fn text_diff(path: &str, recorded: &str, replayed: &str) -> Option<Difference> {
    if recorded == replayed {
        return None;
    }
    let diff = similar::TextDiff::from_lines(recorded, replayed);
    let mut text = diff.unified_diff().context_radius(2).header("recorded", "replayed").to_string();
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() > 40 {
        text = format!("{}\n… ({} more lines)", lines[..40].join("\n"), lines.len() - 40);
    }
    Some(Difference::note(path, format!("text differs\n{text}")))
}

/// An event as compared: its name and its data (JSON when it parses).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ComparedEvent {
    pub event: Option<String>,
    pub data: Value,
}

impl ComparedEvent {
    pub(crate) fn from_sse(e: &RecordedEvent) -> Option<ComparedEvent> {
        if e.comment.is_some() {
            return None;
        }
        let raw = e.data.clone().unwrap_or_default();
        let data = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
        Some(ComparedEvent { event: e.event.clone(), data })
    }
}

/// Event-by-event comparison of two streams.
pub(crate) fn events_diff(recorded: &[ComparedEvent], replayed: &[ComparedEvent], out: &mut Vec<Difference>) {
    for (i, (r, p)) in recorded.iter().zip(replayed).enumerate() {
        if r.event != p.event {
            out.push(Difference::new(
                format!("events[{i}].event"),
                r.event.clone().map(Value::String),
                p.event.clone().map(Value::String),
            ));
        }
        response_json_diff(&r.data, &p.data, &format!("events[{i}].data"), out);
    }
    if recorded.len() != replayed.len() {
        let mut d = Difference::note(
            "events",
            format!("the recording has {} events, the replay {}", recorded.len(), replayed.len()),
        );
        let n = recorded.len().min(replayed.len());
        d.recorded = recorded.get(n).map(|e| e.data.clone());
        d.replayed = replayed.get(n).map(|e| e.data.clone());
        out.push(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_number_form_do_not_matter_but_null_does() {
        let mut out = Vec::new();
        json_diff(&json!({"a": 1, "b": [1.0, 2]}), &json!({"b": [1, 2.0], "a": 1.0}), "body", &mut out);
        assert_eq!(out, vec![]);
        json_diff(&json!({"a": 1}), &json!({"a": 1, "encoding_format": null}), "body", &mut out);
        assert_eq!(out, vec![Difference::new("body.encoding_format", None, Some(Value::Null))]);
        assert_eq!(out[0].to_string(), "+ body.encoding_format: null (not in the recording)");
        assert_eq!(canonical(&json!({"b": [1.0], "a": null})), canonical(&json!({"a": null, "b": [1]})));
        assert_ne!(canonical(&json!({"a": null})), canonical(&json!({})));
    }

    #[test]
    fn noise_rules() {
        assert_eq!(normalize_request_body(&json!({"stream": false, "x": 1})), json!({"x": 1}));
        assert_eq!(normalize_request_body(&json!({"stream": true})), json!({"stream": true}));
        let mut out = Vec::new();
        let (a, b) = (
            json!({"id": "a", "choices": [{"created": 5, "x": 1}]}),
            json!({"id": "b", "choices": [{"created": 6, "x": 1}]}),
        );
        response_json_diff(&a, &b, "body", &mut out);
        assert_eq!(out, vec![]);
        response_json_diff(&a, &json!({"choices": [{"created": 6, "x": 1}]}), "body", &mut out);
        assert_eq!(out, vec![Difference::new("body.id", Some(json!("a")), None)], "presence still counts");
        assert_eq!(request_body_key(&json!({"stream": false, "b": 1, "a": 1.0})), r#"{"a":1,"b":1}"#);
        assert_eq!(request_body_key(&json!({"stream": false})), "{}");
        let q = normalized_query(Some("beta=true&api-version=2024-10-21&X-Amz-Date=1"));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn headers_are_compared_semantically() {
        let mut rec = Headers::new();
        rec.insert("content-type".into(), super::super::cassette::HeaderValues::One("application/json".into()));
        let mut rep = Headers::new();
        rep.insert(
            "content-type".into(),
            super::super::cassette::HeaderValues::One("application/json; charset=utf-8".into()),
        );
        rep.insert("anthropic-version".into(), super::super::cassette::HeaderValues::One("2023-06-01".into()));
        let mut out = Vec::new();
        header_diff(&rec, &rep, false, &mut out);
        assert_eq!(out, vec![], "a header the partial recording lacks is not compared");
        header_diff(&rec, &rep, true, &mut out);
        assert_eq!(out.len(), 1);
        rep.insert("anthropic-beta".into(), super::super::cassette::HeaderValues::One("a,b".into()));
        let mut out = Vec::new();
        header_diff(&rec, &rep, false, &mut out);
        assert_eq!(out[0].path, "headers.anthropic-beta");
    }
}
