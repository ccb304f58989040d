//! An incremental Server-Sent Events parser, shared by every provider whose
//! streaming responses are `text/event-stream` (OpenAI, Anthropic, Vertex, ...).
//!
//! Upstream bytes arrive in arbitrary chunks: an event, a line, or even a
//! multi-byte UTF-8 character can be split across two reads. The parser keeps
//! only the unfinished line and the event being assembled, so memory stays
//! bounded by the largest event (capped by `SseParser::with_max_event_bytes`).
//!
//! It follows the WHATWG "event stream interpretation" rules: lines end with
//! `\r\n`, `\n` or `\r`; a blank line dispatches the event; lines starting
//! with `:` are comments (keep-alives); `data` lines are joined with `\n`;
//! one space after the colon is removed; a leading byte-order mark is ignored.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, when the server sent one. `None` means the spec's
    /// default type, `message` (OpenAI streams never name their events).
    pub event: Option<String>,
    /// All `data:` lines of the event, joined with `\n`.
    pub data: String,
    /// The `id:` field, when present.
    pub id: Option<String>,
}

impl SseEvent {
    #[cfg(test)]
    /// The event type, defaulting to `message` as the spec says.
    pub(crate) fn event_type(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

/// Errors from [`SseParser`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SseError {
    /// One event (or one line) grew past the limit: a broken or hostile
    /// upstream must not make the gateway buffer without bound.
    #[error("server-sent event larger than {limit} bytes")]
    EventTooLarge { limit: usize },
}

/// Default cap on the size of one event: far above any real LLM chunk.
pub(crate) const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Incremental SSE parser: [`feed`](SseParser::feed) bytes as they arrive,
/// collect the complete events, and call [`finish`](SseParser::finish) at EOF.
#[derive(Debug)]
pub(crate) struct SseParser {
    /// Bytes of the current, unterminated line.
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` at the start of the next
    /// chunk belongs to the same line ending.
    last_was_cr: bool,
    /// Nothing has been parsed yet (a BOM is only skipped at the very start).
    at_start: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    max_event_bytes: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    pub(crate) fn new() -> Self {
        SseParser {
            line: Vec::new(),
            last_was_cr: false,
            at_start: true,
            event: None,
            data: String::new(),
            has_data: false,
            id: None,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }

    #[cfg(test)]
    /// Caps the size of one event (and of one line).
    pub(crate) fn with_max_event_bytes(mut self, limit: usize) -> Self {
        self.max_event_bytes = limit;
        self
    }

    /// Feeds the next chunk of the stream and returns the events it completed.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if self.at_start && !rest.is_empty() {
            // The BOM may itself be split; only strip it when whole.
            self.line.extend_from_slice(rest);
            if self.line.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.line) {
                return Ok(out);
            }
            self.at_start = false;
            let buffered = std::mem::take(&mut self.line);
            let start = if buffered.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
            self.feed_bytes(&buffered[start..], &mut out)?;
            return Ok(out);
        }
        if rest.is_empty() {
            return Ok(out);
        }
        if rest[0] == b'\n' && self.last_was_cr {
            rest = &rest[1..];
        }
        self.last_was_cr = false;
        self.feed_bytes(rest, &mut out)?;
        Ok(out)
    }

    fn feed_bytes(&mut self, mut rest: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        while let Some(pos) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.line.extend_from_slice(&rest[..pos]);
            self.check_size()?;
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
            let is_cr = rest[pos] == b'\r';
            rest = &rest[pos + 1..];
            if is_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.last_was_cr = true,
                }
            }
        }
        self.line.extend_from_slice(rest);
        self.check_size()
    }

    fn check_size(&self) -> Result<(), SseError> {
        if self.line.len() + self.data.len() > self.max_event_bytes {
            return Err(SseError::EventTooLarge { limit: self.max_event_bytes });
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        // '\r' and '\n' never occur inside a multi-byte UTF-8 sequence, so a
        // complete line is a complete string; invalid bytes become U+FFFD.
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.find(':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // The spec ignores ids containing NUL.
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            // `retry` and unknown fields do not matter to a proxy.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if !self.has_data {
            // Per spec an event without data is not dispatched.
            return;
        }
        self.has_data = false;
        out.push(SseEvent {
            event: event.filter(|e| !e.is_empty()),
            data: std::mem::take(&mut self.data),
            id: self.id.clone(),
        });
    }

    /// Ends the stream. The spec discards an event not followed by a blank
    /// line; a gateway is better served by seeing it (a truncated JSON payload
    /// then fails to parse loudly instead of vanishing), so a pending event
    /// with data, including an unterminated last line, is returned.
    pub(crate) fn finish(mut self) -> Option<SseEvent> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            let start = if self.at_start && line.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
            self.process_line(&line[start..], &mut out);
        }
        self.dispatch(&mut out);
        out.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(p.feed(c).expect("feed"));
        }
        out.extend(p.finish());
        out
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent { event: event.map(str::to_string), data: data.to_string(), id: None }
    }

    #[test]
    fn basic_events_and_comments() {
        let text = b": keep-alive\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\ndata: a\ndata:b\n\n";
        assert_eq!(parse_all(&[text]), vec![ev(Some("ping"), "{\"type\": \"ping\"}"), ev(None, "a\nb")]);
    }

    #[test]
    fn crlf_and_cr_line_endings() {
        let crlf = b"event: x\r\ndata: 1\r\n\r\ndata: 2\r\r";
        assert_eq!(parse_all(&[crlf]), vec![ev(Some("x"), "1"), ev(None, "2")]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let text: &[u8] =
            "\u{feff}event: a\r\ndata: héllo\r\n\r\n: c\ndata:  two spaces\n\nevent: b\rdata: x\rdata: y\r\r"
                .as_bytes();
        let whole = parse_all(&[text]);
        assert_eq!(whole, vec![ev(Some("a"), "héllo"), ev(None, " two spaces"), ev(Some("b"), "x\ny")]);
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let got = parse_all(&[&text[..i], &text[i..j], &text[j..]]);
                assert_eq!(got, whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let text = b"event: message_start\ndata: {\"a\":1}\n\nevent: message_stop\ndata: {}\n\n";
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        let got = parse_all(&chunks);
        assert_eq!(got, vec![ev(Some("message_start"), "{\"a\":1}"), ev(Some("message_stop"), "{}")]);
    }

    #[test]
    fn event_without_data_is_not_dispatched_and_type_resets() {
        let got = parse_all(&[b"event: lonely\n\ndata: d\n\n"]);
        assert_eq!(got, vec![ev(None, "d")]);
        assert_eq!(got[0].event_type(), "message");
    }

    #[test]
    fn field_without_colon_and_empty_data() {
        let got = parse_all(&[b"data\n\ndata:\ndata\n\n"]);
        assert_eq!(got, vec![ev(None, ""), ev(None, "\n")]);
    }

    #[test]
    fn id_is_kept() {
        let got = parse_all(&[b"id: 7\ndata: x\n\n"]);
        assert_eq!(got[0].id.as_deref(), Some("7"));
    }

    #[test]
    fn unterminated_last_event_is_returned_by_finish() {
        let got = parse_all(&[b"data: {\"trunc"]);
        assert_eq!(got, vec![ev(None, "{\"trunc")]);
        assert_eq!(parse_all(&[b"event: x\n"]), vec![]);
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut p = SseParser::new().with_max_event_bytes(16);
        assert!(p.feed(b"data: 0123456789\n").is_ok());
        assert_eq!(p.feed(b"data: 0123456789\n"), Err(SseError::EventTooLarge { limit: 16 }));
        let mut p = SseParser::new().with_max_event_bytes(8);
        assert!(p.feed(b"data: 0123456789").is_err());
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let got = parse_all(&[b"data: \xff\n\n"]);
        assert_eq!(got, vec![ev(None, "\u{fffd}")]);
    }
}

/// The index just past the last complete event in `buf` (after its blank
/// line: `\n\n`, `\r\n\r\n` or `\r\r`), if `buf` holds one.
pub(crate) fn last_event_end(buf: &[u8]) -> Option<usize> {
    let mut end = None;
    let mut i = 0;
    while i + 1 < buf.len() {
        let two = &buf[i..i + 2];
        if two == b"\n\n" || two == b"\r\r" {
            end = Some(i + 2);
            i += 2;
        } else if buf[i..].starts_with(b"\r\n\r\n") {
            end = Some(i + 4);
            i += 4;
        } else {
            i += 1;
        }
    }
    end
}

#[cfg(test)]
mod boundary_tests {
    use super::last_event_end;

    #[test]
    fn the_last_complete_event_ends_after_its_blank_line() {
        assert_eq!(last_event_end(b"data: a"), None);
        assert_eq!(last_event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(last_event_end(b"data: a\n\ndata: b\n\n"), Some(18));
        assert_eq!(last_event_end(b"data: a\r\n\r\ndata"), Some(11));
        assert_eq!(last_event_end(b"data: a\r\rx"), Some(9));
        assert_eq!(last_event_end(b"data: a\n"), None);
    }
}
