//! Streams the front serves itself: SSE and Bedrock event streams, one
//! HTTP chunk per event, with per-event delays, a gate that holds the
//! stream, and a cut in the middle of an event.

use std::time::Duration;

use super::answer::AnswerEnd;
use super::eventstream;
use super::front::Shared;
use super::gates::Gates;
use super::http1::Conn;
use super::stub::{EventStreamEvent, StubEvent};

/// One event already rendered to bytes.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub bytes: Vec<u8>,
    pub delay_ms: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct StreamPlan {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub frames: Vec<Frame>,
    pub hold_before: Option<(usize, String)>,
    pub cut_after: Option<usize>,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The terminating chunk was sent; the connection can serve more requests.
    Complete,
    /// Cut on purpose, or the client went away: close the connection.
    Closed,
}

/// `event: x\ndata: line\n...\n\n`, or `: comment\n\n`.
pub(crate) fn render_sse(e: &StubEvent) -> Vec<u8> {
    let mut out = String::new();
    if e.comment {
        for line in e.data.split('\n') {
            out.push_str(": ");
            out.push_str(line);
            out.push('\n');
        }
    } else {
        if let Some(name) = &e.event {
            out.push_str("event: ");
            out.push_str(name);
            out.push('\n');
        }
        for line in e.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    out.into_bytes()
}

pub(crate) fn sse_frames(events: &[StubEvent]) -> Vec<Frame> {
    events.iter().map(|e| Frame { bytes: render_sse(e), delay_ms: e.delay_ms }).collect()
}

pub(crate) fn eventstream_frames(events: &[EventStreamEvent]) -> Vec<Frame> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let bytes = match (&e.chunk, &e.event, &e.exception) {
                (Some(chunk), _, _) => eventstream::chunk_frame(chunk, i),
                (None, Some(name), _) => {
                    let payload = e.payload.clone().unwrap_or_else(|| serde_json::json!({}));
                    eventstream::converse_frame(name, &payload, i)
                }
                (None, None, Some(ex)) => eventstream::exception_frame(&ex.exception_type, &ex.message),
                // Rejected by `Stub::validate`.
                (None, None, None) => Vec::new(),
            };
            Frame { bytes, delay_ms: e.delay_ms }
        })
        .collect()
}

/// Default headers of an SSE response; stub headers override them.
pub(crate) fn sse_headers() -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "text/event-stream; charset=utf-8".into()),
        ("cache-control".into(), "no-cache".into()),
    ]
}

pub(crate) const EVENTSTREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

pub(crate) fn eventstream_headers() -> Vec<(String, String)> {
    vec![
        ("content-type".into(), EVENTSTREAM_CONTENT_TYPE.into()),
        ("x-amzn-bedrock-content-type".into(), "application/json".into()),
    ]
}

/// Writes the plan to the connection, recording each part in the answer to
/// request `index` just before it is written. A held gate also ends (with
/// `Closed`) if the client hangs up while it waits.
pub(crate) async fn run(conn: &mut Conn, plan: &StreamPlan, gates: &Gates, shared: &Shared, index: usize) -> Ended {
    shared.answer(index, |a| {
        a.status = Some(plan.status);
        a.headers = plan.headers.clone();
    });
    let closed = |end: AnswerEnd| {
        shared.answer(index, |a| a.end = end);
        Ended::Closed
    };
    if conn.write_stream_head(plan.status, &plan.headers).await.is_err() {
        return closed(AnswerEnd::PeerClosed);
    }
    for (i, frame) in plan.frames.iter().enumerate() {
        if !hold(conn, plan, i, gates).await {
            return closed(AnswerEnd::PeerClosed);
        }
        if frame.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(frame.delay_ms)).await;
        }
        if plan.cut_after == Some(i) {
            let half = (frame.bytes.len() / 2).max(1).min(frame.bytes.len());
            shared.answer(index, |a| a.body.extend_from_slice(&frame.bytes[..half]));
            let _ = conn.write_chunk(&frame.bytes[..half]).await;
            return closed(AnswerEnd::Cut);
        }
        shared.answer(index, |a| a.body.extend_from_slice(&frame.bytes));
        if conn.write_chunk(&frame.bytes).await.is_err() {
            return closed(AnswerEnd::PeerClosed);
        }
    }
    if !hold(conn, plan, plan.frames.len(), gates).await {
        return closed(AnswerEnd::PeerClosed);
    }
    shared.answer(index, |a| a.end = AnswerEnd::Complete);
    match conn.write_last_chunk().await {
        Ok(()) => Ended::Complete,
        Err(_) => closed(AnswerEnd::PeerClosed),
    }
}

/// Waits on the plan's gate if it sits before event `i`. False when the
/// client closed the connection meanwhile.
async fn hold(conn: &mut Conn, plan: &StreamPlan, i: usize, gates: &Gates) -> bool {
    match &plan.hold_before {
        Some((at, gate)) if *at == i => {
            tokio::select! {
                _ = gates.wait(gate) => true,
                _ = conn.peer_closed() => false,
            }
        }
        _ => true,
    }
}

/// A JSON object `bytes` long, `{"padding":"xxx…"}`, in pieces of 1 MiB.
pub(crate) fn huge_json(bytes: u64) -> Vec<Frame> {
    const PIECE: usize = 1024 * 1024;
    let total = bytes.max(16) as usize;
    let (head, tail) = (b"{\"padding\":\"".as_slice(), b"\"}".as_slice());
    let mut left = total - head.len() - tail.len();
    let mut frames = vec![Frame { bytes: head.to_vec(), delay_ms: 0 }];
    while left > 0 {
        let n = left.min(PIECE);
        frames.push(Frame { bytes: vec![b'x'; n], delay_ms: 0 });
        left -= n;
    }
    frames.push(Frame { bytes: tail.to_vec(), delay_ms: 0 });
    frames
}
