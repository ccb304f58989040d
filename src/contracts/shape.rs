//! A small vocabulary for "this JSON value has this shape", so the schema
//! contracts read like the specifications they come from. Each check adds
//! a problem, with its JSON pointer, to a list; nothing panics on any input.

use serde_json::{Map, Value};

/// Collects shape problems under a path.
#[derive(Debug, Default)]
pub(crate) struct Shape {
    pub problems: Vec<String>,
}

/// The JSON types a field may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum T {
    Str,
    Int,
    Null,
    Obj,
    Arr,
}

pub(super) fn is(v: &Value, t: T) -> bool {
    match t {
        T::Str => v.is_string(),
        T::Int => v.is_i64() || v.is_u64(),
        T::Null => v.is_null(),
        T::Obj => v.is_object(),
        T::Arr => v.is_array(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn names(ts: &[T]) -> String {
    ts.iter()
        .map(|t| match t {
            T::Str => "string",
            T::Int => "integer",
            T::Null => "null",
            T::Obj => "object",
            T::Arr => "array",
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

impl Shape {
    pub(super) fn problem(&mut self, at: &str, what: impl Into<String>) {
        self.problems.push(format!("{}: {}", if at.is_empty() { "/" } else { at }, what.into()));
    }

    /// The value is an object; returns it.
    pub(super) fn object<'v>(&mut self, v: &'v Value, at: &str) -> Option<&'v Map<String, Value>> {
        match v.as_object() {
            Some(m) => Some(m),
            None => {
                self.problem(at, format!("expected an object, got {}", type_name(v)));
                None
            }
        }
    }

    /// A required field of one of these types; returns it when it is.
    pub(super) fn required<'v>(
        &mut self,
        m: &'v Map<String, Value>,
        at: &str,
        key: &str,
        ts: &[T],
    ) -> Option<&'v Value> {
        match m.get(key) {
            None => {
                self.problem(&format!("{at}/{key}"), format!("missing (expected {})", names(ts)));
                None
            }
            Some(v) => self.typed(v, &format!("{at}/{key}"), ts),
        }
    }

    /// An optional field: absent is fine; present must be one of these types.
    pub(super) fn optional<'v>(
        &mut self,
        m: &'v Map<String, Value>,
        at: &str,
        key: &str,
        ts: &[T],
    ) -> Option<&'v Value> {
        m.get(key).and_then(|v| self.typed(v, &format!("{at}/{key}"), ts))
    }

    fn typed<'v>(&mut self, v: &'v Value, at: &str, ts: &[T]) -> Option<&'v Value> {
        if ts.iter().any(|t| is(v, *t)) {
            Some(v)
        } else {
            self.problem(at, format!("expected {}, got {}", names(ts), type_name(v)));
            None
        }
    }

    /// A required string field equal to one of `allowed`.
    pub(crate) fn one_of(&mut self, m: &Map<String, Value>, at: &str, key: &str, allowed: &[&str]) -> Option<String> {
        let v = self.required(m, at, key, &[T::Str])?.as_str()?.to_string();
        if allowed.contains(&v.as_str()) {
            Some(v)
        } else {
            self.problem(&format!("{at}/{key}"), format!("`{v}` is not one of {}", allowed.join(", ")));
            None
        }
    }

    /// An optional string-or-null field that, when a string, is one of `allowed`.
    pub(crate) fn nullable_one_of(&mut self, m: &Map<String, Value>, at: &str, key: &str, allowed: &[&str]) {
        if let Some(s) = self.optional(m, at, key, &[T::Str, T::Null]).and_then(Value::as_str) {
            if !allowed.contains(&s) {
                self.problem(&format!("{at}/{key}"), format!("`{s}` is not one of {}", allowed.join(", ")));
            }
        }
    }

    /// Each element of a required array, with its path.
    pub(super) fn each<'v>(&mut self, m: &'v Map<String, Value>, at: &str, key: &str) -> Vec<(String, &'v Value)> {
        match self.required(m, at, key, &[T::Arr]).and_then(Value::as_array) {
            Some(a) => a.iter().enumerate().map(|(i, v)| (format!("{at}/{key}/{i}"), v)).collect(),
            None => Vec::new(),
        }
    }

    /// Each element of an optional (possibly null) array.
    pub(crate) fn each_optional<'v>(
        &mut self,
        m: &'v Map<String, Value>,
        at: &str,
        key: &str,
    ) -> Vec<(String, &'v Value)> {
        match self.optional(m, at, key, &[T::Arr, T::Null]).and_then(Value::as_array) {
            Some(a) => a.iter().enumerate().map(|(i, v)| (format!("{at}/{key}/{i}"), v)).collect(),
            None => Vec::new(),
        }
    }
}
