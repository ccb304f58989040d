//! Comparing what happened with what a scenario expects. Each check returns
//! a message that shows expected against actual, so a failure explains itself.

use serde_json::Value;

/// What a check found instead of what the scenario expects: a verdict on
/// the gateway under test (the step fails with this text), never a problem
/// of the harness's own.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Mismatch(pub String);

impl Mismatch {
    /// The same finding, under `at` (`json: …`, `steps[2]: …`).
    pub fn within(self, at: impl std::fmt::Display) -> Mismatch {
        Mismatch(format!("{at}: {}", self.0))
    }
}

/// `expected` is contained in `actual`: objects by subset, arrays by equal
/// length with each element contained, scalars by equality.
pub(crate) fn json_contains(expected: &Value, actual: &Value, at: &str) -> Result<(), Mismatch> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => json_contains(ev, av, &format!("{at}/{k}"))?,
                    None => return Err(Mismatch(format!("{at}/{k}: missing (expected {})", short(ev)))),
                }
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(Mismatch(format!("{at}: expected {} items, got {}", e.len(), a.len())));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                json_contains(ev, av, &format!("{at}/{i}"))?;
            }
            Ok(())
        }
        (e, a) if numbers_equal(e, a) || e == a => Ok(()),
        (e, a) => {
            Err(Mismatch(format!("{}: expected {}, got {}", if at.is_empty() { "/" } else { at }, short(e), short(a))))
        }
    }
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if (x - y).abs() <= f64::EPSILON * x.abs().max(1.0))
}

pub fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        format!("{}… ({} chars)", &s[..s.char_indices().nth(300).map(|(i, _)| i).unwrap_or(s.len())], s.len())
    } else {
        s
    }
}

/// Checks a value against a stats expectation: plain values compare equal;
/// strings `>=N`, `<=N`, `>N`, `<N`, `==N` compare numbers; `contains:TEXT`
/// looks for a substring in the value's text.
pub(crate) fn check_stat(pointer: &str, expected: &Value, actual: Option<&Value>) -> Result<(), Mismatch> {
    let actual_v = actual.cloned().unwrap_or(Value::Null);
    if let Some(s) = expected.as_str() {
        if let Some(text) = s.strip_prefix("contains:") {
            let hay = match &actual_v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return if hay.contains(text.trim()) {
                Ok(())
            } else {
                Err(Mismatch(format!("{pointer}: expected to contain {:?}, got {}", text.trim(), short(&actual_v))))
            };
        }
        for op in [">=", "<=", "==", ">", "<"] {
            if let Some(num) = s.strip_prefix(op) {
                let want: f64 =
                    num.trim().parse().map_err(|_| Mismatch(format!("{pointer}: `{s}` is not a number comparison")))?;
                let got = actual_v
                    .as_f64()
                    .ok_or_else(|| Mismatch(format!("{pointer}: expected a number ({s}), got {}", short(&actual_v))))?;
                let ok = match op {
                    ">=" => got >= want,
                    "<=" => got <= want,
                    "==" => (got - want).abs() < 1e-12,
                    ">" => got > want,
                    _ => got < want,
                };
                return if ok { Ok(()) } else { Err(Mismatch(format!("{pointer}: expected {s}, got {got}"))) };
            }
        }
    }
    json_contains(expected, &actual_v, pointer)
}

/// A header value's media type: what comes before any `;` parameter,
/// trimmed and lowercased (`Text/Event-Stream; charset=utf-8` is
/// `text/event-stream`).
pub fn media_type(value: &str) -> String {
    value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Checks a header's media type against the expected one (see [`media_type`]).
pub(crate) fn check_media_type(name: &str, want: &str, got: Option<&str>) -> Result<(), Mismatch> {
    match got {
        Some(got) if media_type(got) == media_type(want) => Ok(()),
        Some(got) => Err(Mismatch(format!("header {name}: expected media type {want:?}, got {got:?}"))),
        None => Err(Mismatch(format!("header {name}: missing (expected media type {want:?})"))),
    }
}

/// The error message of an OpenAI-style (`{"error": {"message": …}}`) or
/// Anthropic-style (`{"type": "error", "error": {"message": …}}`) error body.
pub(crate) fn error_message(body: &Value) -> Option<&str> {
    body.pointer("/error/message").and_then(Value::as_str)
}

/// `href` and `src` attribute values in an HTML document.
pub(crate) fn html_links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            if let Some(end) = rest.find('"') {
                out.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    out
}

/// Whether an SSE body ended cleanly: an OpenAI `[DONE]` or an Anthropic
/// `message_stop`, and no error event anywhere.
pub(crate) fn stream_verdict(body: &str) -> Result<(), Mismatch> {
    // Read as events (the contracts' SSE reader), not searched as text: a
    // `[DONE]` inside a chunk's content is no terminator.
    let parsed = crate::contracts::sse::events(body.as_bytes());
    for e in &parsed.events {
        let v = e.json();
        let is_error = e.event.as_deref() == Some("error")
            || v.as_ref()
                .is_some_and(|v| v.get("error").is_some() || v.get("type").and_then(Value::as_str) == Some("error"));
        if is_error {
            let shown = v.as_ref().map(short).unwrap_or_else(|| e.data.clone());
            return Err(Mismatch(format!("the stream carried an error event: {shown}")));
        }
    }
    let last = parsed.events.iter().rev().find(|e| {
        e.json().and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string)).as_deref() != Some("ping")
    });
    let terminated = last.is_some_and(|e| {
        e.data.trim() == "[DONE]"
            || e.json()
                .and_then(|v| v.get("type").and_then(Value::as_str).map(|t| t == "message_stop"))
                .unwrap_or(false)
    });
    if terminated && !parsed.unterminated {
        Ok(())
    } else {
        let tail: String = body.chars().rev().take(200).collect::<Vec<_>>().into_iter().rev().collect();
        Err(Mismatch(format!("the stream ended without [DONE] or message_stop; it ended with: {tail:?}")))
    }
}

/// Checks a gateway's output lines against an `expect_output` step. The
/// regular expressions were validated when the scenario was loaded.
pub fn check_output(e: &super::model::OutputExpect, lines: &[String]) -> Result<(), Mismatch> {
    let compile =
        |re: &str| regex::Regex::new(re).map_err(|err| Mismatch(format!("invalid regular expression {re:?}: {err}")));
    if let Some(re) = &e.line_matches {
        let r = compile(re)?;
        if !lines.iter().any(|l| r.is_match(l)) {
            return Err(Mismatch(format!(
                "no line of the gateway's output matches /{re}/ ({} lines read{})",
                lines.len(),
                last_lines(lines)
            )));
        }
    }
    if let Some(re) = &e.no_line_matches {
        let r = compile(re)?;
        if let Some(l) = lines.iter().find(|l| r.is_match(l)) {
            return Err(Mismatch(format!("the gateway's output has a line matching /{re}/: {l}")));
        }
    }
    Ok(())
}

fn last_lines(lines: &[String]) -> String {
    let tail: Vec<&str> = lines.iter().rev().take(5).rev().map(String::as_str).collect();
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last: {}", tail.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_matching_reports_the_path() {
        let a = json!({"a": {"b": [1, {"c": 2}]}, "x": 1});
        assert!(json_contains(&json!({"a": {"b": [1, {}]}}), &a, "").is_ok());
        let e = json_contains(&json!({"a": {"b": [1, {"c": 3}]}}), &a, "").unwrap_err().to_string();
        assert!(e.contains("/a/b/1/c"), "{e}");
    }

    #[test]
    fn stat_comparisons() {
        assert!(check_stat("/n", &json!(">=2"), Some(&json!(3))).is_ok());
        assert!(check_stat("/n", &json!(">=4"), Some(&json!(3))).is_err());
        assert!(check_stat("/r", &json!("contains:line 1"), Some(&json!("at line 1 column 2"))).is_ok());
        assert!(check_stat("/b", &json!(true), Some(&json!(false))).is_err());
    }

    #[test]
    fn output_checks() {
        use crate::scenario::model::OutputExpect;
        let lines: Vec<String> =
            ["INFO started", "ERROR start-up cost map http://x refused, using the bundled copy: line 1"]
                .map(String::from)
                .to_vec();
        let want = |re: &str| OutputExpect { line_matches: Some(re.into()), no_line_matches: None };
        let never = |re: &str| OutputExpect { line_matches: None, no_line_matches: Some(re.into()) };
        assert!(check_output(&want("(?i)cost map.*refus"), &lines).is_ok());
        let e = check_output(&want("Falling back"), &lines).unwrap_err().to_string();
        assert!(e.contains("2 lines read") && e.contains("last: INFO started"), "{e}");
        assert!(check_output(&want("x"), &[]).unwrap_err().to_string().contains("0 lines read"));
        assert!(check_output(&never("panicked"), &lines).is_ok());
        assert!(check_output(&never("refused"), &lines).unwrap_err().to_string().contains("ERROR start-up"));
    }

    #[test]
    fn media_types_ignore_parameters_and_case() {
        assert_eq!(media_type("Text/Event-Stream; charset=utf-8"), "text/event-stream");
        assert!(check_media_type("content-type", "text/event-stream", Some("text/event-stream")).is_ok());
        assert!(check_media_type("content-type", "text/event-stream", Some("text/event-stream;charset=UTF-8")).is_ok());
        let e =
            check_media_type("content-type", "text/event-stream", Some("application/json")).unwrap_err().to_string();
        assert!(e.contains("application/json"), "{e}");
        assert!(check_media_type("content-type", "text/event-stream", None)
            .unwrap_err()
            .to_string()
            .contains("missing"));
    }

    #[test]
    fn error_messages_of_both_shapes() {
        assert_eq!(error_message(&json!({"error": {"message": "bad", "type": "x"}})), Some("bad"));
        assert_eq!(error_message(&json!({"type": "error", "error": {"type": "x", "message": "m"}})), Some("m"));
        assert_eq!(error_message(&json!({"error": "bad"})), None);
        assert_eq!(error_message(&json!({"error": {"message": 3}})), None);
        assert_eq!(error_message(&json!({"detail": "Not Found"})), None);
    }

    #[test]
    fn stream_verdicts() {
        assert!(stream_verdict("data: {\"x\":1}\n\ndata: [DONE]\n\n").is_ok());
        assert!(stream_verdict("data: {\"x\":1}\n\n").is_err());
        assert!(stream_verdict("data: {\"error\":{\"message\":\"closed\"}}\n\ndata: [DONE]\n\n").is_err());
    }
}

#[cfg(test)]
mod stream_verdict_tests {
    use super::stream_verdict;

    #[test]
    fn a_stream_is_complete_only_when_its_last_event_terminates_it() {
        assert!(stream_verdict("data: {\"choices\":[]}\n\ndata: [DONE]\n\n").is_ok());
        assert!(stream_verdict("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n").is_ok());
        // `[DONE]` as a chunk's text is no terminator.
        let text_only = "data: {\"choices\":[{\"delta\":{\"content\":\"data: [DONE]\"}}]}\n\n";
        assert!(stream_verdict(text_only).is_err());
        assert!(stream_verdict("data: [DONE]\n\ndata: {\"choices\":[]}\n\n").is_err());
        let error = "data: {\"error\":{\"message\":\"x\"}}\n\ndata: [DONE]\n\n";
        assert!(stream_verdict(error).unwrap_err().to_string().contains("error event"));
    }
}
