//! Secret redaction for cassettes, and the secret patterns `lint` looks for.
//!
//! Two pattern sets on purpose:
//! - redaction (`redact_str`) is broad: a recording must never keep a
//!   secret, and replacing a harmless key-shaped string costs little;
//! - lint ([`find_secrets`]) is precise: it runs over the whole repository and
//!   must not flag the obviously fake credentials scenarios use
//!   (`test-openai-credential`, `TESTACCESSKEYID0000`). Every lint pattern is
//!   covered by a redaction pattern, so a recorded cassette always lints clean.
//!
//! Redaction is deterministic and idempotent: placeholders never match a
//! pattern again. Replay runs the same functions over the requests the
//! gateway sends, so a redacted cassette still matches live traffic.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

use super::cassette::{
    decode_b64, encode_b64, percent_decode, Body, Cassette, HeaderValues, Headers, Interaction, Request, Response,
};

/// Every placeholder starts with this, so `lint` and readers can tell.
pub(crate) const PLACEHOLDER: &str = "[REDACTED]";

/// Headers whose whole value is a credential.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "set-cookie",
    "x-amz-security-token",
];

/// Query parameters that carry credentials (SigV4 presigned URLs, Gemini keys).
const SECRET_QUERY_PARAMS: &[&str] =
    &["x-amz-signature", "x-amz-credential", "x-amz-security-token", "key", "api_key", "api-key", "access_token"];

/// rule -> number of values replaced.
pub(crate) type RedactionLog = BTreeMap<String, u64>;

struct Rule {
    kind: &'static str,
    regex: Regex,
    /// Extra check on the match; regexes in the `regex` crate have no
    /// look-around, so "contains a digit" and similar live here.
    accept: fn(&str) -> bool,
    replacement: &'static str,
}

fn rule(kind: &'static str, pattern: &str, accept: fn(&str) -> bool, replacement: &'static str) -> Rule {
    // The patterns are constants tested below; a typo fails every test.
    let regex = Regex::new(pattern).unwrap_or_else(|e| panic!("secret pattern {kind}: {e}"));
    Rule { kind, regex, accept, replacement }
}

fn any(_: &str) -> bool {
    true
}

fn has_digit(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit())
}

/// Random-looking: upper- and lower-case letters and digits. Real keys are
/// random base62, so they have all three; hand-made fakes (`test-...`) do not.
fn looks_random(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_uppercase()) && s.bytes().any(|b| b.is_ascii_lowercase()) && has_digit(s)
}

fn redaction_rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        vec![
            // Before `openai-key`: its placeholder no longer contains `sk-`.
            rule("anthropic-key", r"\bsk-ant-[A-Za-z0-9_-]{16,}", any, "[REDACTED:anthropic-key]"),
            rule("openai-key", r"\bsk-[A-Za-z0-9_-]{16,}", has_digit, "[REDACTED:openai-key]"),
            rule("aws-access-key-id", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b", any, "[REDACTED:aws-access-key-id]"),
            rule("bearer-token", r"\b[Bb]earer\s+[A-Za-z0-9._~+/-]{8,}=*", any, "Bearer [REDACTED]"),
            rule("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*", any, "[REDACTED:jwt]"),
            rule("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}", any, "[REDACTED:google-api-key]"),
        ]
    })
}

fn lint_rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        vec![
            rule(
                "anthropic-key",
                r"\bsk-ant-[a-z]{2,10}[0-9]{2}-[A-Za-z0-9_-]{32,}",
                |m| looks_random(m.get(7..).unwrap_or("")),
                "",
            ),
            rule(
                "openai-key",
                r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}",
                |m| !m.starts_with("sk-ant-") && looks_random(m),
                "",
            ),
            rule("aws-access-key-id", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b", |m| !m.ends_with("EXAMPLE"), ""),
            rule(
                "bearer-token",
                r"\b[Bb]earer\s+[A-Za-z0-9._~+/-]{20,}=*",
                |m| {
                    let token = m.split_whitespace().nth(1).unwrap_or("");
                    let alnum = token.trim_end_matches('=').bytes().all(|b| b.is_ascii_alphanumeric());
                    looks_random(token)
                        || (alnum
                            && token.len() >= 32
                            && has_digit(token)
                            && token.bytes().any(|b| b.is_ascii_alphabetic()))
                },
                "",
            ),
            rule("jwt", r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", any, ""),
            rule("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}\b", any, ""),
        ]
    })
}

/// One secret found by [`find_secrets`]: byte range in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretHit {
    pub kind: &'static str,
    pub start: usize,
    pub end: usize,
}

/// Precise secret search for `lint`. Overlapping hits (a Bearer JWT) are
/// reported once, by the first rule.
pub fn find_secrets(text: &str) -> Vec<SecretHit> {
    let mut hits: Vec<SecretHit> = Vec::new();
    for r in lint_rules() {
        for m in r.regex.find_iter(text) {
            if !(r.accept)(m.as_str()) {
                continue;
            }
            if hits.iter().any(|h| m.start() < h.end && h.start < m.end()) {
                continue;
            }
            hits.push(SecretHit { kind: r.kind, start: m.start(), end: m.end() });
        }
    }
    hits.sort_by_key(|h| h.start);
    hits
}

/// Shows enough of a secret to find it, never the secret: its first
/// characters (a prefix like `sk-proj-` is not secret) and its length.
pub(crate) fn mask(secret: &str) -> String {
    let shown: String = secret.chars().take(6).collect();
    format!("{shown}… ({} chars)", secret.chars().count())
}

/// Replaces every key-shaped substring. `None` when nothing matched.
pub(crate) fn redact_str(s: &str) -> Option<(String, Vec<&'static str>)> {
    let mut out: Option<String> = None;
    let mut kinds = Vec::new();
    for r in redaction_rules() {
        let current = out.as_deref().unwrap_or(s);
        if !r.regex.is_match(current) {
            continue;
        }
        let mut changed = false;
        let replaced = r.regex.replace_all(current, |c: &regex::Captures| {
            let m = c.get(0).map_or("", |m| m.as_str());
            if (r.accept)(m) {
                changed = true;
                r.replacement.to_string()
            } else {
                m.to_string()
            }
        });
        if changed {
            kinds.push(r.kind);
            out = Some(replaced.into_owned());
        }
    }
    out.map(|o| (o, kinds))
}

/// True when the text holds a placeholder (it came out of redaction).
pub(crate) fn is_placeholder(s: &str) -> bool {
    s.contains("[REDACTED")
}

fn count(log: &mut RedactionLog, rule: String) {
    *log.entry(rule).or_insert(0) += 1;
}

fn redact_string_in_place(s: &mut String, log: &mut RedactionLog) {
    if let Some((new, kinds)) = redact_str(s) {
        for k in kinds {
            count(log, format!("body:{k}"));
        }
        *s = new;
    }
}

/// Redacts every string in a JSON value (object keys are left alone).
pub(crate) fn redact_json(v: &mut Value, log: &mut RedactionLog) {
    match v {
        Value::String(s) => redact_string_in_place(s, log),
        Value::Array(a) => a.iter_mut().for_each(|x| redact_json(x, log)),
        Value::Object(o) => o.values_mut().for_each(|x| redact_json(x, log)),
        _ => {}
    }
}

/// The value a credential header is stored with. The scheme and, for AWS
/// SigV4, the non-secret scope (date, region, service) and the signed header
/// names stay readable; the key id and signature do not.
fn redact_header_value(name: &str, value: &str) -> String {
    if is_placeholder(value) {
        return value.to_string();
    }
    if name == "authorization" || name == "proxy-authorization" {
        if let Some(rest) = value.strip_prefix("AWS4-HMAC-SHA256 ") {
            let parts: Vec<String> = rest
                .split(',')
                .map(|p| {
                    let p = p.trim();
                    if let Some(cred) = p.strip_prefix("Credential=") {
                        let scope = cred.split_once('/').map(|(_, s)| s).unwrap_or("");
                        format!("Credential={PLACEHOLDER}/{scope}")
                    } else if p.starts_with("Signature=") {
                        format!("Signature={PLACEHOLDER}")
                    } else {
                        p.to_string()
                    }
                })
                .collect();
            return format!("AWS4-HMAC-SHA256 {}", parts.join(", "));
        }
        if let Some((scheme, _)) = value.split_once(' ') {
            return format!("{scheme} {PLACEHOLDER}");
        }
    }
    PLACEHOLDER.to_string()
}

/// Redacts credential headers whole and key-shaped strings in the others.
pub(crate) fn redact_headers(headers: &mut Headers, log: &mut RedactionLog) {
    for (name, values) in headers.iter_mut() {
        let secret = SECRET_HEADERS.contains(&name.as_str());
        let redact_one = |v: &mut String, log: &mut RedactionLog| {
            if secret {
                let new = redact_header_value(name, v);
                if new != *v {
                    count(log, format!("header:{name}"));
                    *v = new;
                }
            } else if let Some((new, kinds)) = redact_str(v) {
                for k in kinds {
                    count(log, format!("header:{name}:{k}"));
                }
                *v = new;
            }
        };
        match values {
            HeaderValues::One(v) => redact_one(v, log),
            HeaderValues::Many(vs) => vs.iter_mut().for_each(|v| redact_one(v, log)),
        }
    }
}

/// Redacts credential query parameters (and key-shaped values in the rest),
/// leaving the URL otherwise byte for byte.
pub(crate) fn redact_url(url: &str, log: &mut RedactionLog) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(k, true).to_ascii_lowercase();
            if SECRET_QUERY_PARAMS.contains(&name.as_str()) && !v.is_empty() && !is_placeholder(v) {
                count(log, format!("query:{name}"));
                return format!("{k}={PLACEHOLDER}");
            }
            let decoded = percent_decode(v, true);
            match redact_str(&decoded) {
                Some((new, kinds)) => {
                    for kind in kinds {
                        count(log, format!("query:{name}:{kind}"));
                    }
                    // Placeholders hold `[`, `]`, `:` and spaces; keep the URL valid.
                    format!("{k}={}", new.replace('[', "%5B").replace(']', "%5D").replace(' ', "%20"))
                }
                None => pair.to_string(),
            }
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// Redacts every form a body can take.
pub(crate) fn redact_body(body: &mut Body, log: &mut RedactionLog) {
    if let Some(v) = &mut body.json {
        redact_json(v, log);
    }
    if let Some(t) = &mut body.text {
        redact_string_in_place(t, log);
    }
    if let Some(b) = &mut body.base64 {
        // Binary bodies are scanned when they are text underneath.
        if let Ok(bytes) = decode_b64(b) {
            if let Ok(text) = String::from_utf8(bytes) {
                if let Some((new, kinds)) = redact_str(&text) {
                    for k in kinds {
                        count(log, format!("body:{k}"));
                    }
                    *b = encode_b64(new.as_bytes());
                }
            }
        }
    }
    if let Some(events) = &mut body.sse {
        for e in events {
            for field in [&mut e.data, &mut e.comment, &mut e.id].into_iter().flatten() {
                redact_string_in_place(field, log);
            }
        }
    }
    if let Some(frames) = &mut body.eventstream {
        for f in frames {
            for v in [&mut f.chunk, &mut f.payload].into_iter().flatten() {
                redact_json(v, log);
            }
        }
    }
}

pub(crate) fn redact_request(r: &mut Request, log: &mut RedactionLog) {
    let url = redact_url(&r.url, log);
    r.url = url;
    redact_headers(&mut r.headers, log);
    redact_body(&mut r.body, log);
}

pub(crate) fn redact_response(r: &mut Response, log: &mut RedactionLog) {
    redact_headers(&mut r.headers, log);
    redact_body(&mut r.body, log);
}

pub(crate) fn redact_interaction(i: &mut Interaction, log: &mut RedactionLog) {
    redact_request(&mut i.request, log);
    redact_response(&mut i.response, log);
    if let Some(c) = &mut i.client {
        if let Some(r) = &mut c.request {
            redact_request(r, log);
        }
        if let Some(r) = &mut c.response {
            redact_response(r, log);
        }
    }
}

/// Redacts a whole cassette and adds what was replaced to its metadata.
pub(crate) fn redact_cassette(c: &mut Cassette) {
    let mut log = RedactionLog::new();
    for i in &mut c.interactions {
        redact_interaction(i, &mut log);
    }
    let source = redact_url(&c.metadata.source, &mut log);
    c.metadata.source = source;
    for (k, n) in log {
        *c.metadata.redactions.entry(k).or_insert(0) += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Fake secrets assembled at run time, so this file itself lints clean.
    fn fake_openai() -> String {
        format!("sk-proj-{}", "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF")
    }
    fn fake_anthropic() -> String {
        format!("sk-ant-api03-{}AA", "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa9Zx8Yw7Vu6Ts5Rq4Po3")
    }
    fn fake_akia() -> String {
        format!("AKIA{}", "Q7RZ4JXMV2LNPB5K")
    }
    fn fake_jwt() -> String {
        format!(
            "eyJ{}.eyJ{}.{}",
            "hbGciOiJIUzI1NiJ9", "zdWIiOiIxMjM0NTY3ODkwIn0", "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
        )
    }

    #[test]
    fn key_shapes_are_redacted_in_strings() {
        let text = format!(
            "a {} b {} c {} d Bearer {} e {}",
            fake_openai(),
            fake_anthropic(),
            fake_akia(),
            "abcdefgh12345678",
            fake_jwt()
        );
        let (out, kinds) = redact_str(&text).unwrap();
        for s in [fake_openai(), fake_anthropic(), fake_akia(), fake_jwt()] {
            assert!(!out.contains(&s), "{out}");
        }
        assert!(!out.contains("abcdefgh12345678"));
        assert!(kinds.contains(&"openai-key") && kinds.contains(&"anthropic-key") && kinds.contains(&"jwt"));
        assert_eq!(redact_str(&out), None, "redaction is idempotent");
        assert_eq!(redact_str("task-management sk-learn-pipeline-tutorial"), None);
    }

    #[test]
    fn headers_keep_scheme_and_sigv4_scope() {
        let mut h = Headers::new();
        h.insert("authorization".into(), HeaderValues::One(format!("Bearer {}", fake_openai())));
        h.insert("x-api-key".into(), HeaderValues::One(fake_anthropic()));
        h.insert("x-amz-date".into(), HeaderValues::One("20250101T000000Z".into()));
        let mut aws = Headers::new();
        aws.insert(
            "authorization".into(),
            HeaderValues::One(format!(
                "AWS4-HMAC-SHA256 Credential={}/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123abcd",
                fake_akia()
            )),
        );
        let mut log = RedactionLog::new();
        redact_headers(&mut h, &mut log);
        redact_headers(&mut aws, &mut log);
        assert_eq!(h["authorization"], HeaderValues::One("Bearer [REDACTED]".into()));
        assert_eq!(h["x-api-key"], HeaderValues::One("[REDACTED]".into()));
        assert_eq!(h["x-amz-date"], HeaderValues::One("20250101T000000Z".into()));
        assert_eq!(
            aws["authorization"],
            HeaderValues::One("AWS4-HMAC-SHA256 Credential=[REDACTED]/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=[REDACTED]".into())
        );
        assert_eq!(log["header:authorization"], 2);
    }

    #[test]
    fn query_credentials_are_redacted() {
        let mut log = RedactionLog::new();
        let url =
            format!("https://h/model/x/invoke?X-Amz-Credential={}%2F20250101&X-Amz-Signature=abc&keep=1", fake_akia());
        let out = redact_url(&url, &mut log);
        assert_eq!(out, "https://h/model/x/invoke?X-Amz-Credential=[REDACTED]&X-Amz-Signature=[REDACTED]&keep=1");
        assert_eq!(redact_url(&out, &mut log), out);
    }

    #[test]
    fn lint_is_precise_about_fakes() {
        for fake in [
            "Bearer test-openai-credential",
            "Bearer test-master-key-0006",
            "aws_access_key_id: TESTACCESSKEYID0000",
            "AKIAIOSFODNN7EXAMPLE",
            "sk-...",
            "sk-ant-…",
            "Bearer <token>",
            "eyJ0ZXh0IjoiVGhl",
            "task-management-system-overview-2024",
        ] {
            assert_eq!(find_secrets(fake), vec![], "{fake}");
        }
        for real in [fake_openai(), fake_anthropic(), fake_akia(), fake_jwt(), format!("Bearer {}", fake_jwt())] {
            let hits = find_secrets(&real);
            assert_eq!(hits.len(), 1, "{real}: {hits:?}");
            // Whatever lint finds, redaction removes.
            let (redacted, _) = redact_str(&real).unwrap();
            assert_eq!(find_secrets(&redacted), vec![]);
        }
        assert_eq!(find_secrets(&fake_anthropic())[0].kind, "anthropic-key");
    }

    #[test]
    fn json_bodies_and_cassettes_record_what_was_replaced() {
        let mut c = Cassette::new(
            "test",
            vec![Interaction {
                provider: None,
                request: Request {
                    method: "POST".into(),
                    url: "https://api.openai.com/v1/chat/completions".into(),
                    headers: Headers::new(),
                    body: Body::json(json!({"user": fake_openai(), "messages": [{"content": fake_akia()}]})),
                },
                response: Response { status: 200, headers: Headers::new(), body: Body::default() },
                elapsed_ms: None,
                client: None,
            }],
        );
        redact_cassette(&mut c);
        let yaml = c.to_yaml().unwrap();
        assert!(!yaml.contains(&fake_openai()) && !yaml.contains(&fake_akia()));
        assert_eq!(c.metadata.redactions["body:openai-key"], 1);
        assert_eq!(c.metadata.redactions["body:aws-access-key-id"], 1);
    }
}
