//! Export off the request path: finished spans go into a bounded queue (a
//! full queue drops the span and counts it, a request never waits), and a
//! background task sends them in batches over OTLP/HTTP (protobuf, see
//! `protobuf`, or the JSON mapping of `ExportTraceServiceRequest`, here),
//! each export bounded by the configured timeout. `Exporter::flush` sends what is queued now (graceful
//! shutdown, tests).

use super::settings::{display_endpoint, OtelSettings, Protocol};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// An attribute's value (OTLP's `AnyValue`, the kinds the gateway writes).
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    F64(f64),
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::Str(s.to_string())
    }
}
impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::Str(s)
    }
}
impl From<i64> for AttrValue {
    fn from(n: i64) -> Self {
        AttrValue::Int(n)
    }
}
impl From<u64> for AttrValue {
    fn from(n: u64) -> Self {
        AttrValue::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
impl From<f64> for AttrValue {
    fn from(n: f64) -> Self {
        AttrValue::F64(n)
    }
}

/// OTLP's `Span.SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Server = 2,
    Client = 3,
}

/// OTLP's `Status`: the message is a short category the gateway chose
/// (never an upstream's error text, which may quote a key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpanStatus {
    Unset,
    Error(String),
}

/// A finished span.
#[derive(Debug, Clone)]
pub struct SpanData {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    pub status: SpanStatus,
    pub sampled: bool,
}

/// Finished spans waiting for export, at most `cap`.
pub(crate) struct Queue {
    spans: Mutex<VecDeque<SpanData>>,
    cap: usize,
    batch: usize,
    /// Woken when a whole batch is waiting.
    ready: tokio::sync::Notify,
    dropped: AtomicU64,
}

impl Queue {
    pub(super) fn new(cap: usize, batch: usize) -> Queue {
        Queue {
            spans: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
            batch: batch.clamp(1, cap.max(1)),
            ready: tokio::sync::Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues a span, or drops and counts it when the queue is full: the
    /// request that made it never waits for the collector.
    pub(super) fn push(&self, span: SpanData) -> bool {
        let mut q = self.spans.lock();
        if q.len() >= self.cap {
            drop(q);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        q.push_back(span);
        let full_batch = q.len() >= self.batch;
        drop(q);
        if full_batch {
            self.ready.notify_one();
        }
        true
    }

    /// Up to one batch, oldest first.
    fn take_batch(&self) -> Vec<SpanData> {
        let mut q = self.spans.lock();
        let n = q.len().min(self.batch);
        q.drain(..n).collect()
    }

    fn len(&self) -> usize {
        self.spans.lock().len()
    }

    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What the exporter did so far (shown on `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans the collector accepted (a 2xx answer).
    pub exported: u64,
    /// Spans dropped because the queue was full.
    pub dropped: u64,
    /// Spans lost to a failed export (unreachable, timed out, non-2xx).
    pub failed: u64,
    /// Spans waiting now.
    pub queued: u64,
}

/// Sends batches to the collector.
pub(crate) struct Exporter {
    pub queue: Arc<Queue>,
    client: reqwest::Client,
    settings: OtelSettings,
    /// One export at a time, so a flush also waits for the batch the
    /// background task is sending.
    sending: tokio::sync::Mutex<()>,
    exported: AtomicU64,
    failed: AtomicU64,
    /// Whether the last export failed: the log says so once per outage,
    /// not once per batch.
    failing: AtomicBool,
}

impl Exporter {
    /// The exporter and its background task (which ends once the exporter
    /// is dropped). Needs a Tokio runtime.
    pub(super) fn start(settings: OtelSettings) -> Result<Arc<Exporter>, super::settings::OtelError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| super::settings::OtelError::Client { reason: e.to_string() })?;
        let exporter = Arc::new(Exporter {
            queue: Arc::new(Queue::new(settings.max_queue, settings.max_batch)),
            client,
            settings,
            sending: tokio::sync::Mutex::new(()),
            exported: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        });
        tracing::info!(
            endpoint = %display_endpoint(&exporter.settings.endpoint),
            headers = exporter.settings.headers.len(),
            service = %exporter.settings.resource.first().map(|(_, v)| v.as_str()).unwrap_or(""),
            protocol = ?exporter.settings.protocol,
            "OpenTelemetry traces on: OTLP/HTTP"
        );
        let queue = Arc::clone(&exporter.queue);
        let delay = exporter.settings.schedule_delay;
        tokio::spawn(background(Arc::downgrade(&exporter), queue, delay));
        Ok(exporter)
    }

    pub(super) fn stats(&self) -> ExportStats {
        ExportStats {
            exported: self.exported.load(Ordering::Relaxed),
            dropped: self.queue.dropped(),
            failed: self.failed.load(Ordering::Relaxed),
            queued: self.queue.len() as u64,
        }
    }

    /// Sends everything queued now, batch by batch, each within the export
    /// timeout, stopping at the first that fails (so a down collector costs
    /// a shutdown at most two timeouts: the batch in flight and one more);
    /// returns the stats after, `queued` saying what was not sent.
    pub(super) async fn flush(&self) -> ExportStats {
        self.send_queued().await;
        self.stats()
    }

    /// Sends what is queued, batch by batch, until a batch fails: the
    /// collector is then down or slow, and each further batch would wait
    /// the whole timeout too (a shutdown's flush would take that many
    /// timeouts). What is left waits for the next round, while the queue
    /// has room.
    async fn send_queued(&self) {
        let _one = self.sending.lock().await;
        loop {
            let batch = self.queue.take_batch();
            if batch.is_empty() || !self.send(batch).await {
                return;
            }
        }
    }

    /// One export; whether the collector took it.
    async fn send(&self, batch: Vec<SpanData>) -> bool {
        let n = batch.len() as u64;
        let (media, body) = match self.settings.protocol {
            Protocol::Protobuf => ("application/x-protobuf", super::protobuf::encode(&self.settings.resource, &batch)),
            Protocol::Json => ("application/json", encode(&self.settings.resource, &batch).to_string().into_bytes()),
        };
        let mut req =
            self.client.post(self.settings.endpoint.clone()).header(http::header::CONTENT_TYPE, media).body(body);
        for (k, v) in &self.settings.headers {
            req = req.header(k, v);
        }
        let outcome = match req.send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!("the collector answered {}", resp.status())),
            // Without the URL: it may carry a credential.
            Err(e) if e.is_timeout() => Err(format!("no answer within {} ms", self.settings.timeout.as_millis())),
            Err(e) => Err(e.without_url().to_string()),
        };
        match outcome {
            Ok(()) => {
                self.exported.fetch_add(n, Ordering::Relaxed);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(endpoint = %display_endpoint(&self.settings.endpoint), "OTLP export works again");
                }
                true
            }
            Err(reason) => {
                self.failed.fetch_add(n, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        endpoint = %display_endpoint(&self.settings.endpoint),
                        spans = n,
                        %reason,
                        "OTLP export failed; spans are dropped (and counted) until the collector answers again"
                    );
                } else {
                    tracing::debug!(spans = n, %reason, "OTLP export failed again");
                }
                false
            }
        }
    }
}

/// Wakes when a batch is full or the schedule delay has passed, and sends
/// what is queued; ends when the exporter is gone.
async fn background(exporter: Weak<Exporter>, queue: Arc<Queue>, delay: Duration) {
    loop {
        let _ = tokio::time::timeout(delay, queue.ready.notified()).await;
        let Some(exporter) = exporter.upgrade() else { return };
        exporter.send_queued().await;
    }
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn attr_json(key: &str, value: &AttrValue) -> Value {
    let v = match value {
        AttrValue::Str(s) => json!({ "stringValue": s }),
        // proto3's JSON mapping writes 64-bit integers as strings.
        AttrValue::Int(n) => json!({ "intValue": n.to_string() }),
        AttrValue::F64(f) if f.is_finite() => json!({ "doubleValue": f }),
        AttrValue::F64(f) => json!({ "stringValue": f.to_string() }),
    };
    json!({ "key": key, "value": v })
}

/// One `ExportTraceServiceRequest` in OTLP's JSON encoding: ids as hex
/// (not base64, the OTLP exception to proto3's JSON mapping), 64-bit
/// numbers as strings, enums as numbers.
pub fn encode(resource: &[(String, String)], spans: &[SpanData]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": hex(&s.trace_id),
                "spanId": hex(&s.span_id),
                "name": s.name,
                "kind": s.kind as i32,
                "startTimeUnixNano": s.start_unix_nanos.to_string(),
                "endTimeUnixNano": s.end_unix_nanos.to_string(),
                "attributes": s.attributes.iter().map(|(k, v)| attr_json(k, v)).collect::<Vec<_>>(),
                // W3C trace flags (sampled) in the low byte.
                "flags": u32::from(s.sampled),
            });
            if let Some(p) = s.parent {
                span["parentSpanId"] = json!(hex(&p));
            }
            span["status"] = match &s.status {
                SpanStatus::Unset => json!({}),
                SpanStatus::Error(m) => json!({ "code": 2, "message": m }),
            };
            span
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": {
                "attributes": resource.iter().map(|(k, v)| attr_json(k, &AttrValue::Str(v.clone()))).collect::<Vec<_>>()
            },
            "scopeSpans": [{
                "scope": { "name": "postmortem", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(n: u8) -> SpanData {
        SpanData {
            trace_id: [n; 16],
            span_id: [n; 8],
            parent: None,
            name: format!("s{n}"),
            kind: SpanKind::Server,
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            attributes: vec![],
            status: SpanStatus::Unset,
            sampled: true,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_never_grows() {
        let q = Queue::new(2, 10);
        assert!(q.push(span(1)) && q.push(span(2)));
        assert!(!q.push(span(3)), "the third span is dropped");
        assert_eq!((q.len(), q.dropped()), (2, 1));
        let b = q.take_batch();
        assert_eq!(b.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["s1", "s2"], "oldest first");
        assert!(q.push(span(4)), "room again once a batch is taken");
    }

    #[test]
    fn a_batch_is_at_most_the_batch_size() {
        let q = Queue::new(10, 3);
        for i in 0..7 {
            q.push(span(i));
        }
        assert_eq!(q.take_batch().len(), 3);
        assert_eq!(q.take_batch().len(), 3);
        assert_eq!(q.take_batch().len(), 1);
        assert!(q.take_batch().is_empty());
    }

    #[test]
    fn the_json_encoding_follows_otlp() {
        let mut s = span(0xab);
        s.parent = Some([0xcd; 8]);
        s.kind = SpanKind::Client;
        s.start_unix_nanos = u64::MAX;
        s.attributes = vec![
            ("a.str", "x".into()),
            ("a.int", AttrValue::Int(-3)),
            ("a.f64", AttrValue::F64(0.25)),
            ("a.nan", AttrValue::F64(f64::NAN)),
        ];
        s.status = SpanStatus::Error("500".into());
        let v = encode(&[("service.name".into(), "gw".into())], &[s]);
        let rs = &v["resourceSpans"][0];
        assert_eq!(rs["resource"]["attributes"][0], json!({"key": "service.name", "value": {"stringValue": "gw"}}));
        let sp = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(sp["traceId"], "abababababababababababababababab");
        assert_eq!(sp["spanId"], "abababababababab");
        assert_eq!(sp["parentSpanId"], "cdcdcdcdcdcdcdcd");
        assert_eq!(sp["kind"], 3);
        assert_eq!(sp["startTimeUnixNano"], "18446744073709551615");
        assert_eq!(sp["attributes"][1]["value"], json!({"intValue": "-3"}));
        assert_eq!(sp["attributes"][2]["value"], json!({"doubleValue": 0.25}));
        assert_eq!(sp["attributes"][3]["value"], json!({"stringValue": "NaN"}));
        assert_eq!(sp["status"], json!({"code": 2, "message": "500"}));
        assert_eq!(sp["flags"], 1);
    }
}
