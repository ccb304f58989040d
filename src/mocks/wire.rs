//! A fully buffered HTTP response, the common currency between the strict
//! profiles, the default bodies, the stubs and the two servers.

use serde_json::Value;

/// Status, headers (lower-case names) and body of one response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Buffered {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Buffered {
    /// A JSON response with `content-type: application/json`.
    pub(crate) fn json(status: u16, body: &Value) -> Buffered {
        Buffered {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            // Serializing a `Value` cannot fail (all keys are strings).
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    /// Adds a header, replacing any header with the same name.
    pub(crate) fn with_header(mut self, name: &str, value: impl Into<String>) -> Buffered {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }
}
