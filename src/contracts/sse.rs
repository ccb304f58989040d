//! The contract checks' own reading of `text/event-stream` bodies, after
//! the WHATWG HTML standard's "event stream interpretation": lines end in
//! CRLF, LF or CR; `data:` lines (one optional space after the colon)
//! join with `\n`; a line starting with `:` is a comment; a blank line
//! dispatches the event. It is deliberately not the gateway's parser: an
//! oracle that shared the implementation's parser would share its bugs.
//!
//! It also decodes AWS event-stream frames (Bedrock's streaming answers),
//! for the same reason independently of the gateway's decoder.

use serde_json::Value;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field, if the event had one.
    pub event: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// A parsed event stream.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub events: Vec<Event>,
    /// Lines that are neither fields nor comments nor blank (a framing error).
    pub stray_lines: Vec<String>,
    /// Field lines after the last blank line: an event that was never
    /// dispatched because the stream ended mid-event.
    pub unterminated: bool,
}

pub fn parse(body: &[u8]) -> Parsed {
    let text = String::from_utf8_lossy(body);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = Parsed::default();
    let mut event: Option<String> = None;
    let mut data: Option<Vec<String>> = None;
    let mut pending = false;
    let mut lines: Vec<&str> = normalized.split('\n').collect();
    if normalized.ends_with('\n') {
        lines.pop(); // the split's empty tail after a final newline
    }
    for line in lines {
        if line.is_empty() {
            if let Some(d) = data.take() {
                out.events.push(Event { event: event.take(), data: d.join("\n") });
            }
            event = None;
            pending = false;
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        pending = true;
        match field {
            "data" => data.get_or_insert_with(Vec::new).push(value.to_string()),
            "event" => event = Some(value.to_string()),
            "id" | "retry" => {}
            _ => out.stray_lines.push(line.to_string()),
        }
    }
    out.unterminated = pending;
    out
}

/// Parses an event stream body.
pub fn events(body: &[u8]) -> Parsed {
    parse(body)
}

/// One AWS event-stream message: its headers and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct EventStreamMessage {
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl EventStreamMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Decodes AWS event-stream frames (prelude: total length, headers length,
/// CRC; headers; payload; CRC). Returns the messages and whether the bytes
/// ended exactly at a frame boundary. CRCs are not verified: the checks
/// judge content, and a corrupted frame shows up as a content difference.
pub fn eventstream(bytes: &[u8]) -> (Vec<EventStreamMessage>, bool) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= 16 {
        let total = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let headers_len = u32::from_be_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]) as usize;
        if total < 16 + headers_len || at + total > bytes.len() {
            return (out, false);
        }
        let headers = parse_headers(&bytes[at + 12..at + 12 + headers_len]);
        let payload = bytes[at + 12 + headers_len..at + total - 4].to_vec();
        out.push(EventStreamMessage { headers, payload });
        at += total;
    }
    (out, at == bytes.len())
}

fn parse_headers(mut b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some((&name_len, rest)) = b.split_first() {
        let name_len = name_len as usize;
        if rest.len() < name_len + 1 {
            break;
        }
        let name = String::from_utf8_lossy(&rest[..name_len]).into_owned();
        let kind = rest[name_len];
        let rest = &rest[name_len + 1..];
        // Type 7 is a string: 2-byte length then bytes. Other types are
        // skipped by their fixed sizes; bytes (6) and string share a layout.
        let (value, rest) = match kind {
            0 | 1 => (String::new(), rest),
            2 => (String::new(), rest.get(1..).unwrap_or(&[])),
            3 => (String::new(), rest.get(2..).unwrap_or(&[])),
            4 => (String::new(), rest.get(4..).unwrap_or(&[])),
            5 | 8 => (String::new(), rest.get(8..).unwrap_or(&[])),
            9 => (String::new(), rest.get(16..).unwrap_or(&[])),
            6 | 7 if rest.len() >= 2 => {
                let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                let Some(v) = rest.get(2..2 + len) else { break };
                (String::from_utf8_lossy(v).into_owned(), &rest[2 + len..])
            }
            _ => break,
        };
        out.push((name, value));
        b = rest;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_follow_the_standard() {
        let p = events(b"data: a\ndata:b\n\n: comment\nevent: x\ndata: {\"k\":1}\r\n\r\ndata:\n\ndata: tail");
        assert_eq!(p.events.len(), 3);
        assert_eq!(p.events[0], Event { event: None, data: "a\nb".into() });
        assert_eq!(p.events[1].event.as_deref(), Some("x"));
        assert_eq!(p.events[2].data, "");
        assert!(p.unterminated);
        assert!(p.stray_lines.is_empty());
        let p = events(b"data: [DONE]\n\n");
        assert!(!p.unterminated);
        assert_eq!(p.events[0].data, "[DONE]");
        let p = events(b"garbage\n\n");
        assert_eq!(p.stray_lines, vec!["garbage".to_string()]);
        let p = events(b"data: a\n\ndata:\ndata:\n\n");
        assert_eq!(p.events[1].data, "\n");
    }
}
