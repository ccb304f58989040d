//! The soak's faults and its oracle: which fault the upstream injects into
//! a request, what the client must then get, and the check that tells an
//! expected answer from an *unexpected error*.
//!
//! The fault of a request is written into the request itself (a marker,
//! `soak-fault:KIND`, in the user message), chosen by the soak client from
//! a seeded generator keyed by the request's number. The bench upstream,
//! started with `--faults`, obeys the marker. So a run is reproducible (the
//! same seed gives every request number the same fault, mode and model),
//! the client knows exactly what each request must get without asking the
//! upstream, and a retry by the gateway meets the same fault again instead
//! of turning it into a success the accounting would miss (the upstream also
//! counts its calls per kind, which the soak compares with what it sent).

use serde::{Deserialize, Serialize};

/// What the upstream does with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Fault {
    /// A normal answer.
    #[serde(rename = "none")]
    None,
    /// 500 with an OpenAI error body.
    #[serde(rename = "500")]
    Status500,
    /// 503 with an OpenAI error body.
    #[serde(rename = "503")]
    Status503,
    /// 429 with `Retry-After: 1`.
    #[serde(rename = "429")]
    Status429,
    /// The connection is closed after the request is read, before any
    /// status line.
    #[serde(rename = "reset")]
    Reset,
    /// The answer breaks off: a stream after its first events, a buffered
    /// answer halfway through its declared length.
    #[serde(rename = "cut")]
    Cut,
    /// A complete 200 answer whose body is JSON cut short (a stream request
    /// gets it too, as `application/json`: not an event stream).
    #[serde(rename = "malformed")]
    Malformed,
}

impl Fault {
    pub const ALL: [Fault; 7] =
        [Fault::None, Fault::Status500, Fault::Status503, Fault::Status429, Fault::Reset, Fault::Cut, Fault::Malformed];
    /// The faults a faulted request draws from, equally likely.
    pub(crate) const INJECTED: [Fault; 6] =
        [Fault::Status500, Fault::Status503, Fault::Status429, Fault::Reset, Fault::Cut, Fault::Malformed];

    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Status500 => "500",
            Fault::Status503 => "503",
            Fault::Status429 => "429",
            Fault::Reset => "reset",
            Fault::Cut => "cut",
            Fault::Malformed => "malformed",
        }
    }

    /// Its place in [`Fault::ALL`] (the upstream's counters are an array).
    pub fn index(self) -> usize {
        Fault::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }

    /// The marker the soak writes into a faulted request's user message.
    pub(crate) fn marker(self) -> String {
        match self {
            Fault::None => String::new(),
            f => format!("{MARKER}{}", f.name()),
        }
    }

    /// The fault a request body asks for (none without a known marker).
    pub(crate) fn in_body(body: &[u8]) -> Fault {
        let m = MARKER.as_bytes();
        let Some(at) = body.windows(m.len()).position(|w| w == m) else { return Fault::None };
        let rest = &body[at + m.len()..];
        let end = rest.iter().position(|b| !b.is_ascii_alphanumeric()).unwrap_or(rest.len());
        let name = std::str::from_utf8(&rest[..end]).unwrap_or("");
        Fault::INJECTED.into_iter().find(|f| f.name() == name).unwrap_or(Fault::None)
    }

    /// What the client must get, in words (for the report).
    pub fn expected(self, stream: bool) -> &'static str {
        match (self, stream) {
            (Fault::None, false) => "200 with a JSON chat completion",
            (Fault::None, true) => "200 event stream ending with `data: [DONE]`, no error event",
            (Fault::Status429, _) => "429 with Retry-After",
            (Fault::Cut, true) => "5xx, or 200 whose stream ends without `[DONE]` (an error event or a broken body)",
            (_, _) => "5xx",
        }
    }
}

const MARKER: &str = "soak-fault:";

/// What one request is: drawn from the seed and its number alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub stream: bool,
    pub fault: Fault,
    /// Index of the deployment (model `soak-N`) it asks for.
    pub deployment: usize,
}

/// How requests are drawn.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub seed: u64,
    pub stream_fraction: f64,
    pub fault_fraction: f64,
    /// Deployments in the config (`soak-0` …).
    pub deployments: usize,
    /// The first `hot` deployments take all requests but a `cold_share` of
    /// them; the others are drawn uniformly from all deployments, so their
    /// clients miss the cache and evict others.
    pub hot: usize,
    pub cold_share: f64,
}

/// SplitMix64 (Steele, Lea, Flood 2014): one 64-bit state step. Its own
/// few lines rather than `rand`'s `StdRng`, whose output may change between
/// `rand` versions: a soak's seed must name the same run on every build.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) from 53 bits.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

impl Mix {
    /// Request `n`'s plan. Each draw hashes (seed, n, draw), so plans do not
    /// depend on which worker sends which request.
    pub(crate) fn plan(&self, n: u64) -> Plan {
        let base = splitmix64(self.seed ^ splitmix64(n));
        let draw = |i: u64| splitmix64(base.wrapping_add(i));
        let stream = unit(draw(1)) < self.stream_fraction;
        let fault = if unit(draw(2)) < self.fault_fraction {
            Fault::INJECTED[(draw(3) % Fault::INJECTED.len() as u64) as usize]
        } else {
            Fault::None
        };
        let deployments = self.deployments.max(1) as u64;
        let hot = self.hot.clamp(1, self.deployments.max(1)) as u64;
        let deployment = if unit(draw(4)) < self.cold_share { draw(5) % deployments } else { draw(5) % hot };
        Plan { stream, fault, deployment: deployment as usize }
    }
}

/// What the client got for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No answer within the per-request bound.
    Timeout,
    /// The connection failed before a status line.
    Transport(String),
    Answer {
        status: u16,
        retry_after: bool,
        body: bytes::Bytes,
        /// The body ended with a transport error, not its proper end.
        broken: bool,
    },
}

/// Why an answer was not what the request's fault calls for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unexpected {
    /// `timeout`, `transport`, `status`, `no-retry-after`, `clean-end-of-cut-stream`,
    /// `bad-body`.
    pub kind: &'static str,
    pub detail: String,
}

fn unexpected(kind: &'static str, detail: String) -> Result<(), Unexpected> {
    Err(Unexpected { kind, detail })
}

/// How an event stream ended: `[DONE]` as its last data, and whether an
/// error event came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamEnd {
    pub done: bool,
    pub error_event: bool,
    pub events: usize,
}

/// Reads the `data:` lines of an event stream (enough for the oracle: the
/// gateway's error events are `data: {"error": …}`, or for the Responses
/// API `event: error`).
pub(crate) fn stream_end(body: &[u8]) -> StreamEnd {
    let mut end = StreamEnd { done: false, error_event: false, events: 0 };
    for line in body.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"event: error" {
            end.error_event = true;
        }
        let Some(data) = line.strip_prefix(b"data:") else { continue };
        let data = data.trim_ascii();
        end.events += 1;
        end.done = data == b"[DONE]";
        if data.starts_with(b"{\"error\"") {
            end.error_event = true;
        }
    }
    end
}

fn excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(160)]).into_owned();
    if body.len() > 160 {
        format!("{s}…")
    } else {
        s
    }
}

/// The oracle: is `got` what a request with `fault` (streamed or not) must
/// get? Client-side faults only (a request with a deleted key is judged by
/// `check_status`).
pub fn check(fault: Fault, stream: bool, got: &Outcome) -> Result<(), Unexpected> {
    let (status, retry_after, body, broken) = match got {
        Outcome::Timeout => return unexpected("timeout", "no answer within the request bound".into()),
        Outcome::Transport(e) => {
            return unexpected("transport", format!("connection failed before a status (fault {}): {e}", fault.name()))
        }
        Outcome::Answer { status, retry_after, body, broken } => (*status, *retry_after, body, *broken),
    };
    match fault {
        Fault::None => {
            if status != 200 {
                return unexpected("status", format!("{status} for a request without a fault: {}", excerpt(body)));
            }
            if broken {
                return unexpected("bad-body", "the answer broke off".into());
            }
            if stream {
                let end = stream_end(body);
                if end.error_event || !end.done {
                    return unexpected(
                        "bad-body",
                        format!("stream without a fault ended badly ({end:?}): {}", excerpt(body)),
                    );
                }
            } else if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err()
                || !body.windows(9).any(|w| w == b"\"choices\"")
            {
                return unexpected("bad-body", format!("not a chat completion: {}", excerpt(body)));
            }
            Ok(())
        }
        Fault::Status429 => match (status, retry_after) {
            (429, true) => Ok(()),
            (429, false) => unexpected("no-retry-after", "429 without the upstream's Retry-After".into()),
            _ => unexpected("status", format!("{status} for an upstream 429: {}", excerpt(body))),
        },
        Fault::Cut if stream && status == 200 => {
            let end = stream_end(body);
            if end.done && !broken {
                unexpected("clean-end-of-cut-stream", format!("a cut stream ended with [DONE]: {}", excerpt(body)))
            } else {
                Ok(())
            }
        }
        f => {
            if (500..600).contains(&status) {
                Ok(())
            } else {
                unexpected("status", format!("{status} for an upstream fault `{}`: {}", f.name(), excerpt(body)))
            }
        }
    }
}

/// A request whose answer must be exactly `want` (401 for a deleted key).
pub(crate) fn check_status(want: u16, got: &Outcome) -> Result<(), Unexpected> {
    match got {
        Outcome::Answer { status, .. } if *status == want => Ok(()),
        Outcome::Answer { status, body, .. } => {
            unexpected("status", format!("{status}, not {want}: {}", excerpt(body)))
        }
        Outcome::Timeout => unexpected("timeout", "no answer within the request bound".into()),
        Outcome::Transport(e) => unexpected("transport", e.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn answer(status: u16, body: &str) -> Outcome {
        Outcome::Answer { status, retry_after: false, body: Bytes::from(body.to_string()), broken: false }
    }

    const DONE: &str = "data: {\"choices\":[]}\n\ndata: [DONE]\n\n";
    const ERRORED: &str = "data: {\"choices\":[]}\n\ndata: {\"error\":{\"message\":\"cut\"}}\n\n";

    #[test]
    fn markers_round_trip_and_unknown_ones_are_no_fault() {
        for f in Fault::INJECTED {
            let body = format!(r#"{{"messages":[{{"role":"user","content":"hi {}"}}]}}"#, f.marker());
            assert_eq!(Fault::in_body(body.as_bytes()), f);
        }
        assert_eq!(Fault::in_body(b"soak-fault:bogus"), Fault::None);
        assert_eq!(Fault::in_body(b"plain"), Fault::None);
        assert_eq!(Fault::ALL[Fault::Cut.index()], Fault::Cut);
    }

    #[test]
    fn plans_are_reproducible_and_follow_the_fractions() {
        let mix = Mix { seed: 7, stream_fraction: 0.5, fault_fraction: 0.1, deployments: 64, hot: 4, cold_share: 0.02 };
        assert_eq!(mix.plan(12345), mix.plan(12345));
        let plans: Vec<Plan> = (0..100_000).map(|n| mix.plan(n)).collect();
        let share = |f: &dyn Fn(&Plan) -> bool| plans.iter().filter(|p| f(p)).count() as f64 / plans.len() as f64;
        assert!((share(&|p| p.stream) - 0.5).abs() < 0.01);
        assert!((share(&|p| p.fault != Fault::None) - 0.1).abs() < 0.01);
        for f in Fault::INJECTED {
            assert!((share(&|p| p.fault == f) - 0.1 / 6.0).abs() < 0.005, "{f:?}");
        }
        assert!(share(&|p| p.deployment >= 4) > 0.015 && share(&|p| p.deployment >= 4) < 0.025);
        assert!(plans.iter().all(|p| p.deployment < 64));
        let other = Mix { seed: 8, ..mix };
        assert!((0..100).any(|n| other.plan(n) != mix.plan(n)), "another seed is another run");
    }

    #[test]
    fn answers_that_match_their_fault_pass() {
        assert_eq!(check(Fault::None, false, &answer(200, r#"{"choices":[{"index":0}]}"#)), Ok(()));
        assert_eq!(check(Fault::None, true, &answer(200, DONE)), Ok(()));
        assert_eq!(check(Fault::Status500, true, &answer(500, "{}")), Ok(()));
        assert_eq!(check(Fault::Reset, false, &answer(502, "{}")), Ok(()));
        assert_eq!(check(Fault::Malformed, true, &answer(502, "{}")), Ok(()));
        let rate = Outcome::Answer { status: 429, retry_after: true, body: Bytes::new(), broken: false };
        assert_eq!(check(Fault::Status429, false, &rate), Ok(()));
        assert_eq!(check(Fault::Cut, true, &answer(200, ERRORED)), Ok(()));
        let broken =
            Outcome::Answer { status: 200, retry_after: false, body: Bytes::from("data: {}\n\n"), broken: true };
        assert_eq!(check(Fault::Cut, true, &broken), Ok(()));
        assert_eq!(check(Fault::Cut, false, &answer(502, "{}")), Ok(()));
        assert_eq!(check_status(401, &answer(401, "{}")), Ok(()));
    }

    #[test]
    fn answers_that_hide_or_invent_a_fault_are_unexpected() {
        let kind = |r: Result<(), Unexpected>| r.err().map(|u| u.kind);
        // A 200 for a faulted request: the fault was swallowed.
        assert_eq!(kind(check(Fault::Status503, false, &answer(200, r#"{"choices":[]}"#))), Some("status"));
        assert_eq!(kind(check(Fault::Malformed, false, &answer(200, "{\"choices\""))), Some("status"));
        // A cut stream that the client sees end cleanly.
        assert_eq!(kind(check(Fault::Cut, true, &answer(200, DONE))), Some("clean-end-of-cut-stream"));
        // A 429 whose Retry-After was dropped, and a 429 turned into a 500.
        assert_eq!(kind(check(Fault::Status429, false, &answer(429, "{}"))), Some("no-retry-after"));
        assert_eq!(kind(check(Fault::Status429, false, &answer(500, "{}"))), Some("status"));
        // Failures of requests without a fault.
        assert_eq!(kind(check(Fault::None, false, &answer(502, "{}"))), Some("status"));
        assert_eq!(kind(check(Fault::None, true, &answer(200, ERRORED))), Some("bad-body"));
        assert_eq!(kind(check(Fault::None, true, &answer(200, "data: {}\n\n"))), Some("bad-body"));
        assert_eq!(kind(check(Fault::None, false, &answer(200, "{\"choi"))), Some("bad-body"));
        assert_eq!(kind(check(Fault::None, false, &Outcome::Transport("reset".into()))), Some("transport"));
        // A faulted request must still get an answer, never a hang.
        assert_eq!(kind(check(Fault::Reset, false, &Outcome::Timeout)), Some("timeout"));
        assert_eq!(kind(check(Fault::Reset, false, &Outcome::Transport("closed".into()))), Some("transport"));
        // A deleted key that still works.
        assert_eq!(kind(check_status(401, &answer(200, "{}"))), Some("status"));
    }

    #[test]
    fn stream_ends_are_read_from_data_lines() {
        assert_eq!(stream_end(DONE.as_bytes()), StreamEnd { done: true, error_event: false, events: 2 });
        assert!(stream_end(ERRORED.as_bytes()).error_event);
        assert!(stream_end(b"event: error\ndata: {\"type\":\"error\"}\n\n").error_event);
        assert!(!stream_end(b"data: [DONE]\n\ndata: {}\n\n").done, "[DONE] must be the last data");
    }
}
