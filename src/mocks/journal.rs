//! What a mock received. Both servers (front and inner wiremock) describe a
//! request with [`RecordedRequest`], so the strict profiles and default bodies
//! run on the same view whichever server evaluates them.

use serde::{Serialize, Serializer};
use serde_json::Value;

/// One request as it arrived on the wire.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path as sent (still percent-encoded), without the query string.
    pub path: String,
    /// Raw query string without the `?`.
    pub query: Option<String>,
    /// In arrival order; names are lower-case.
    pub headers: Vec<(String, String)>,
    #[serde(serialize_with = "lossy_text")]
    pub body: Vec<u8>,
    /// The body parsed as JSON, when it is JSON.
    pub json: Option<Value>,
}

fn lossy_text<S: Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(body))
}

impl RecordedRequest {
    /// Whether this is a model call (every model API call is a POST), not a
    /// gateway's own lookup on the side (LiteLLM 1.105+ sends a provider
    /// `GET /v1/models` while it serves). The contracts and the scenarios'
    /// `expect_provider` count only model calls.
    pub(crate) fn is_model_call(&self) -> bool {
        self.method.eq_ignore_ascii_case("POST") && !self.is_token_request()
    }

    /// An OAuth token request (`POST /token` with a form, Google's token
    /// endpoint as the Vertex mock serves it): how a gateway gets the
    /// access token its model calls carry, not a model call.
    pub(crate) fn is_token_request(&self) -> bool {
        self.path == "/token"
            && self.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    }

    pub fn new(
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> RecordedRequest {
        let json = if body.is_empty() { None } else { serde_json::from_slice(&body).ok() };
        RecordedRequest {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            query: query.map(str::to_string),
            headers: headers.into_iter().map(|(n, v)| (n.to_ascii_lowercase(), v)).collect(),
            body,
            json,
        }
    }

    /// Converts what wiremock hands to `Match`/`Respond` impls.
    pub(crate) fn from_wiremock(req: &wiremock::Request) -> RecordedRequest {
        let headers = req
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        RecordedRequest::new(req.method.as_str(), req.url.path(), req.url.query(), headers, req.body.clone())
    }

    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of this header, in order.
    pub(crate) fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// First query parameter with this name, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (query_decode(k) == name).then(|| query_decode(v))
        })
    }

    /// A top-level field of the JSON body.
    pub(crate) fn json_field(&self, key: &str) -> Option<&Value> {
        self.json.as_ref().and_then(|j| j.get(key))
    }

    /// The comma-separated flags of every `anthropic-beta` header.
    pub(crate) fn beta_header_flags(&self) -> Vec<String> {
        self.header_all("anthropic-beta")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// Decodes `%XX` escapes (paths: `+` stays `+`). Invalid escapes are kept
/// as they are; invalid UTF-8 is replaced.
pub(crate) fn percent_decode(s: &str) -> String {
    decode(s, false)
}

/// Decodes a query-string component: `%XX` escapes and `+` as a space.
pub(crate) fn query_decode(s: &str) -> String {
    decode(s, true)
}

/// Decodes `%XX` escapes (invalid ones stay as they are); `+` is a space
/// when `plus_is_space` (query strings). The harness's one URL decoder.
pub(crate) fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            let escaped = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(decoded) = escaped {
                out.push(decoded);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
