//! OTLP's `ExportTraceServiceRequest` in the protobuf binary encoding
//! (`http/protobuf`), written by hand: the gateway sends one message with a
//! dozen fields, and a protobuf code generator (prost, tonic) would cost
//! the build far more than these lines (ARCHITECTURE.md, Decisions).
//!
//! Field numbers and types are those of `opentelemetry/proto/trace/v1/
//! trace.proto`, `common/v1/common.proto`, `resource/v1/resource.proto` and
//! `collector/trace/v1/trace_service.proto` (v1, stable). Fields are written
//! in field-number order; empty optional fields are left out, as proto3 does.

use super::export::{AttrValue, SpanData, SpanStatus};

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from(field) << 3 | u64::from(wire));
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A nested message: written to its own buffer first, for its length.
fn message(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    write(&mut inner);
    bytes(out, field, &inner);
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

/// `KeyValue { string key = 1; AnyValue value = 2; }` with `AnyValue`'s
/// `string_value = 1`, `int_value = 3` (int64), `double_value = 4`.
fn key_value(out: &mut Vec<u8>, field: u32, k: &str, v: &AttrValue) {
    message(out, field, |kv| {
        bytes(kv, 1, k.as_bytes());
        message(kv, 2, |any| match v {
            AttrValue::Str(s) => bytes(any, 1, s.as_bytes()),
            AttrValue::Int(n) => {
                key(any, 3, VARINT);
                // int64: a negative number is its two's complement, ten bytes.
                varint(any, *n as u64);
            }
            AttrValue::F64(f) => fixed64(any, 4, f.to_bits()),
        });
    });
}

/// `Span` (trace.proto): trace_id 1, span_id 2, parent_span_id 4, name 5,
/// kind 6, start 7, end 8, attributes 9, status 15, flags 16.
fn span(out: &mut Vec<u8>, s: &SpanData) {
    bytes(out, 1, &s.trace_id);
    bytes(out, 2, &s.span_id);
    if let Some(p) = &s.parent {
        bytes(out, 4, p);
    }
    bytes(out, 5, s.name.as_bytes());
    key(out, 6, VARINT);
    varint(out, s.kind as u64);
    fixed64(out, 7, s.start_unix_nanos);
    fixed64(out, 8, s.end_unix_nanos);
    for (k, v) in &s.attributes {
        key_value(out, 9, k, v);
    }
    // `Status { string message = 2; StatusCode code = 3; }`; unset is empty.
    if let SpanStatus::Error(m) = &s.status {
        message(out, 15, |st| {
            bytes(st, 2, m.as_bytes());
            key(st, 3, VARINT);
            varint(st, 2);
        });
    }
    key(out, 16, FIXED32);
    out.extend_from_slice(&u32::from(s.sampled).to_le_bytes());
}

/// The request body: one `ResourceSpans` (resource 1, scope_spans 2) with
/// one `ScopeSpans` (scope 1, spans 2).
pub(super) fn encode(resource: &[(String, String)], spans: &[SpanData]) -> Vec<u8> {
    let mut out = Vec::new();
    message(&mut out, 1, |rs| {
        message(rs, 1, |res| {
            for (k, v) in resource {
                key_value(res, 1, k, &AttrValue::Str(v.clone()));
            }
        });
        message(rs, 2, |ss| {
            message(ss, 1, |scope| {
                bytes(scope, 1, b"postmortem");
                bytes(scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for s in spans {
                message(ss, 2, |out| span(out, s));
            }
        });
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_keys_are_protobufs() {
        let enc = |v: u64| {
            let mut o = Vec::new();
            varint(&mut o, v);
            o
        };
        // The protobuf documentation's examples.
        assert_eq!(enc(1), [0x01]);
        assert_eq!(enc(150), [0x96, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
        assert_eq!(enc(-1i64 as u64), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        let mut k = Vec::new();
        key(&mut k, 16, FIXED32);
        assert_eq!(k, [0x85, 0x01], "field 16 needs two bytes of key");
    }

    #[test]
    fn a_key_value_is_encoded_byte_for_byte() {
        let mut o = Vec::new();
        key_value(&mut o, 9, "a", &AttrValue::Str("b".into()));
        // 9<<3|2, len 8: (1<<3|2, 1, 'a'), (2<<3|2, len 3: (1<<3|2, 1, 'b'))
        assert_eq!(o, [0x4a, 0x08, 0x0a, 0x01, b'a', 0x12, 0x03, 0x0a, 0x01, b'b']);
        let mut o = Vec::new();
        key_value(&mut o, 1, "n", &AttrValue::Int(300));
        assert_eq!(o, [0x0a, 0x08, 0x0a, 0x01, b'n', 0x12, 0x03, 0x18, 0xac, 0x02]);
        let mut o = Vec::new();
        key_value(&mut o, 1, "f", &AttrValue::F64(1.0));
        let mut want = vec![0x0a, 0x0e, 0x0a, 0x01, b'f', 0x12, 0x09, 0x21];
        want.extend_from_slice(&1.0f64.to_bits().to_le_bytes());
        assert_eq!(o, want);
    }
}
