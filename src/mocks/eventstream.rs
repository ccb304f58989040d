//! Bedrock's `application/vnd.amazon.eventstream` framing. In
//! InvokeModelWithResponseStream each Anthropic event travels as a `chunk`
//! event whose JSON payload is `{"bytes": base64(event json), "p": padding}`;
//! in ConverseStream the `:event-type` header names the event
//! (`messageStart`, `contentBlockDelta`, ...) and the payload is the event's
//! own JSON, padded with the same `p` field.
//! Frames are written with aws-smithy-eventstream's own writer, so the CRCs
//! and prelude are exactly what AWS SDK decoders expect.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use base64::Engine;
use serde_json::{json, Value};

/// Bedrock pads chunk payloads with a `p` field of letters so that frame
/// sizes do not reveal token lengths. The mock mimics the field.
const PADDING: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

fn encode(headers: Vec<Header>, payload: Vec<u8>) -> Vec<u8> {
    let message = Message::new_from_parts(headers, payload);
    let mut out = Vec::new();
    // Only fails for headers/payloads over the format's size limits (16 MiB).
    if write_message_to(&message, &mut out).is_err() {
        out.clear();
    }
    out
}

fn string_header(name: &'static str, value: String) -> Header {
    Header::new(name, HeaderValue::String(value.into()))
}

/// The padding of the `seq`th frame of a stream: varies from frame to frame
/// as the real one does (its length is random upstream).
fn padding(seq: usize) -> &'static str {
    &PADDING[..1 + seq % PADDING.len()]
}

fn event_frame(event_type: &str, payload: &Value) -> Vec<u8> {
    encode(
        vec![
            string_header(":event-type", event_type.to_string()),
            string_header(":content-type", "application/json".into()),
            string_header(":message-type", "event".into()),
        ],
        serde_json::to_vec(payload).unwrap_or_default(),
    )
}

/// A `chunk` event carrying one Anthropic streaming event.
pub(crate) fn chunk_frame(event: &Value, seq: usize) -> Vec<u8> {
    let bytes = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(event).unwrap_or_default());
    event_frame("chunk", &json!({"bytes": bytes, "p": padding(seq)}))
}

/// A ConverseStream event: `event_type` in the header, the event object
/// itself as the payload (plus `p`; an object is expected, anything else is
/// sent as it is).
pub(crate) fn converse_frame(event_type: &str, event: &Value, seq: usize) -> Vec<u8> {
    let mut payload = event.clone();
    if let Value::Object(map) = &mut payload {
        map.insert("p".into(), Value::String(padding(seq).into()));
    }
    event_frame(event_type, &payload)
}

/// An exception frame, which Bedrock sends mid-stream after HTTP 200
/// (e.g. `throttlingException`, `modelStreamErrorException`).
pub(crate) fn exception_frame(exception_type: &str, message: &str) -> Vec<u8> {
    encode(
        vec![
            string_header(":exception-type", exception_type.to_string()),
            string_header(":content-type", "application/json".into()),
            string_header(":message-type", "exception".into()),
        ],
        serde_json::to_vec(&json!({"message": message})).unwrap_or_default(),
    )
}
