//! What a mock sent back for each request it received: the other half of
//! the journal. The harness's contract checks compare what a provider
//! answered with what the gateway's client got, so every answer is kept
//! as it went on the wire (a stream as the bytes written so far, and how
//! it ended).

use serde::Serialize;

/// How the mock's answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerEnd {
    /// Still being written (a held or slow stream), or a latency fault
    /// still sleeping.
    InProgress,
    /// Everything was written, including a stream's terminating chunk.
    Complete,
    /// The mock cut the stream mid-event on purpose (`cut_after`).
    Cut,
    /// The connection was reset before any byte of the answer (`fault: reset`).
    Reset,
    /// The gateway closed the connection before the answer was complete
    /// (it gave up, or its client did and it passed that on).
    PeerClosed,
}

/// One answer as the mock wrote it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MockAnswer {
    /// `None` while nothing was written (a reset, or a latency fault).
    pub status: Option<u16>,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    /// The body bytes written, de-chunked.
    #[serde(serialize_with = "lossy_text")]
    pub body: Vec<u8>,
    pub end: AnswerEnd,
    /// Arrival order of the request across every mock in the process: the
    /// harness sorts one exchange's upstream calls by it.
    pub seq: u64,
}

static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn lossy_text<S: serde::Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(body))
}

impl MockAnswer {
    pub(crate) fn pending() -> MockAnswer {
        MockAnswer { status: None, headers: Vec::new(), body: Vec::new(), end: AnswerEnd::InProgress, seq: 0 }
    }

    /// A pending answer stamped with the next arrival number.
    pub(crate) fn arrived() -> MockAnswer {
        MockAnswer { seq: SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, ..MockAnswer::pending() }
    }

    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, when it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}
