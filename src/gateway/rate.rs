//! Requests-per-minute and tokens-per-minute limits over a sliding 60 s
//! window, for virtual keys and for deployments (`litellm_params.rpm/tpm`).
//! Driven by the injectable monotonic clock, so tests move time instead of
//! sleeping.

use std::fmt;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

/// Length of the rate-limit window.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Which rate limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitKind {
    Rpm,
    Tpm,
}

impl RateLimitKind {
    /// `rpm` or `tpm`, as configs spell the limit.
    pub fn short(self) -> &'static str {
        match self {
            RateLimitKind::Rpm => "rpm",
            RateLimitKind::Tpm => "tpm",
        }
    }
}

impl fmt::Display for RateLimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RateLimitKind::Rpm => "requests per minute",
            RateLimitKind::Tpm => "tokens per minute",
        })
    }
}

/// A limit that is used up: how much, and when the window frees room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exceeded {
    pub kind: RateLimitKind,
    pub limit: u64,
    pub current: u64,
    pub retry_after: Duration,
}

/// Optional rpm and tpm limits with their live window.
#[derive(Debug)]
pub struct RateLimiter {
    rpm: Option<u64>,
    tpm: Option<u64>,
    window: Mutex<RateWindow>,
}

impl RateLimiter {
    pub fn new(rpm: Option<u64>, tpm: Option<u64>) -> RateLimiter {
        RateLimiter { rpm, tpm, window: Mutex::new(RateWindow::new()) }
    }

    /// Counts one request at `now` (the gateway clock's `now()`) unless the
    /// rpm is reached or the tpm used up; then nothing is counted.
    pub(crate) fn check_and_record(&self, now: Duration) -> Result<(), Exceeded> {
        if self.rpm.is_none() && self.tpm.is_none() {
            return Ok(());
        }
        let sec = now.as_secs();
        let mut w = self.window.lock();
        let (requests, tokens) =
            w.live(sec).fold((0u64, 0u64), |(r, t), b| (r.saturating_add(b.requests), t.saturating_add(b.tokens)));
        for (kind, limit, current) in [(RateLimitKind::Rpm, self.rpm, requests), (RateLimitKind::Tpm, self.tpm, tokens)]
        {
            if let Some(limit) = limit.filter(|l| current >= *l) {
                let retry_after = match kind {
                    RateLimitKind::Rpm => w.retry_after(now, |b| b.requests > 0),
                    RateLimitKind::Tpm => w.retry_after(now, |b| b.tokens > 0),
                };
                return Err(Exceeded { kind, limit, current, retry_after });
            }
        }
        let b = w.bucket(sec);
        b.requests = b.requests.saturating_add(1);
        Ok(())
    }

    /// Records tokens used by a finished request (they count against tpm).
    pub(crate) fn record_tokens(&self, now: Duration, n: u64) {
        if self.tpm.is_none() {
            return;
        }
        let mut w = self.window.lock();
        let b = w.bucket(now.as_secs());
        b.tokens = b.tokens.saturating_add(n);
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    requests: u64,
    tokens: u64,
}

/// Sixty one-second buckets: a sliding 60 s window with 1 s resolution and
/// constant memory.
#[derive(Debug)]
struct RateWindow {
    buckets: [Bucket; 60],
}

impl RateWindow {
    fn new() -> Self {
        RateWindow { buckets: [Bucket::default(); 60] }
    }

    fn live(&self, sec: u64) -> impl Iterator<Item = &Bucket> {
        self.buckets.iter().filter(move |b| b.second <= sec && sec - b.second < RATE_WINDOW.as_secs())
    }

    fn bucket(&mut self, sec: u64) -> &mut Bucket {
        let b = &mut self.buckets[(sec % 60) as usize];
        if b.second != sec {
            *b = Bucket { second: sec, requests: 0, tokens: 0 };
        }
        b
    }

    /// Time until the oldest bucket with something in it leaves the window.
    fn retry_after(&self, now: Duration, used: impl Fn(&Bucket) -> bool) -> Duration {
        let sec = now.as_secs();
        self.live(sec)
            .filter(|b| used(b))
            .map(|b| b.second)
            .min()
            .map_or(Duration::ZERO, |oldest| (Duration::from_secs(oldest) + RATE_WINDOW).saturating_sub(now))
    }
}
