//! The request body a provider module shapes ([`Body`]): the client's body as
//! admission parsed it, borrowed, less the keys this deployment does not take,
//! plus the module's few edits (the model, the stream flag, an API version),
//! written straight to the upstream bytes.
//!
//! Why a view and not a map: a deployment tried after another one must see the
//! client's body unchanged, so an owned map meant a copy of the whole body per
//! attempt, on the pass-through path where nothing else is rewritten. The view
//! costs a list of skipped keys and the edits. A translation (Claude, Bedrock,
//! Gemini) builds a body of its own anyway and hands it over owned.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// One call's request body (see the module doc).
#[derive(Debug, Clone)]
pub struct Body<'a> {
    base: Base<'a>,
    /// Keys the module set (`Some`) or removed (`None`), the last edit of a
    /// key winning. A key of the base keeps its place; a new one follows the
    /// base's keys.
    edits: Vec<(&'static str, Option<Value>)>,
}

#[derive(Debug, Clone)]
enum Base<'a> {
    /// The client's body without `skip`, then `nulls` written as `null`
    /// (the vLLM incident's bug put back, harness only).
    Client { map: &'a Map<String, Value>, skip: Vec<&'a str>, nulls: Vec<&'static str> },
    /// A body the gateway built (a translation).
    Owned(Map<String, Value>),
}

const NULL: Value = Value::Null;

impl<'a> Body<'a> {
    /// A body the gateway built.
    pub(crate) fn owned(map: Map<String, Value>) -> Self {
        Body { base: Base::Owned(map), edits: Vec::new() }
    }

    /// The client's body less `skip`, with `nulls` (keys the client did not
    /// send) written as `null`.
    pub(crate) fn client(map: &'a Map<String, Value>, skip: Vec<&'a str>, nulls: Vec<&'static str>) -> Self {
        Body { base: Base::Client { map, skip, nulls }, edits: Vec::new() }
    }

    /// The client's body without its `null` members.
    pub(crate) fn client_without_nulls(map: &'a Map<String, Value>) -> Self {
        let skip = map.iter().filter(|(_, v)| v.is_null()).map(|(k, _)| k.as_str()).collect();
        Body::client(map, skip, Vec::new())
    }

    /// Sets `key` (in its place when the base has it).
    pub(crate) fn set(&mut self, key: &'static str, value: Value) {
        self.edits.push((key, Some(value)));
    }

    /// Leaves `key` out.
    pub(crate) fn remove(&mut self, key: &'static str) {
        self.edits.push((key, None));
    }

    /// The value `key` will be sent with.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self.edits.iter().rev().find(|(k, _)| *k == key) {
            Some((_, edit)) => edit.as_ref(),
            None => self.base_get(key),
        }
    }

    fn base_get(&self, key: &str) -> Option<&Value> {
        match &self.base {
            Base::Owned(map) => map.get(key),
            Base::Client { map, skip, nulls } => match map.get(key) {
                Some(_) if skip.contains(&key) => None,
                Some(v) => Some(v),
                None => nulls.contains(&key).then_some(&NULL),
            },
        }
    }

    /// Every member as it will be sent, in order.
    fn members(&self) -> impl Iterator<Item = (&str, &Value)> {
        let (map, skip, nulls): (&Map<String, Value>, &[&str], &[&'static str]) = match &self.base {
            Base::Owned(map) => (map, &[], &[]),
            Base::Client { map, skip, nulls } => (map, skip, nulls),
        };
        let base = map
            .iter()
            .filter(move |(k, _)| !skip.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v))
            .chain(nulls.iter().filter(move |k| !map.contains_key(**k)).map(|k| (*k, &NULL)));
        let edited = base.filter_map(|(k, v)| match self.edits.iter().rev().find(|(e, _)| *e == k) {
            Some((_, edit)) => edit.as_ref().map(|nv| (k, nv)),
            None => Some((k, v)),
        });
        // Keys the module added: each once, at its last edit's value.
        let added = self.edits.iter().enumerate().filter_map(move |(i, (k, edit))| {
            let last = !self.edits[i + 1..].iter().any(|(later, _)| later == k);
            (last && self.base_get(k).is_none()).then_some(()).and(edit.as_ref()).map(|v| (*k, v))
        });
        edited.chain(added)
    }

    /// The body as a map of its own (a translation reads it whole).
    pub(crate) fn into_map(self) -> Map<String, Value> {
        match self.base {
            Base::Owned(map) if self.edits.is_empty() => map,
            base => {
                let body = Body { base, edits: self.edits };
                body.members().map(|(k, v)| (k.to_string(), v.clone())).collect()
            }
        }
    }
}

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(None)?;
        for (k, v) in self.members() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn text(b: &Body<'_>) -> String {
        serde_json::to_string(b).unwrap()
    }

    #[test]
    fn a_view_of_the_clients_body_sends_it_less_skipped_keys_with_edits_in_place() {
        let client = obj(json!({"model": "alias", "messages": [], "user": null, "seed": 1}));
        let mut b = Body::client(&client, vec!["user"], vec!["temperature", "seed"]);
        b.set("model", json!("upstream"));
        b.set("stream", json!(true));
        assert_eq!(text(&b), r#"{"model":"upstream","messages":[],"seed":1,"temperature":null,"stream":true}"#);
        assert_eq!(b.get("model"), Some(&json!("upstream")));
        assert_eq!(b.get("user"), None);
        assert_eq!(b.get("temperature"), Some(&Value::Null));
        // The client's body is what it was: the next deployment reads it whole.
        assert_eq!(client["model"], json!("alias"));
        assert_eq!(b.clone().into_map(), obj(serde_json::from_str(&text(&b)).unwrap()));
    }

    #[test]
    fn the_last_edit_of_a_key_wins_and_a_removed_key_is_not_sent() {
        let client = obj(json!({"model": "m", "stream": true, "x": 1}));
        let mut b = Body::client_without_nulls(&client);
        b.set("stream", json!(false));
        b.remove("stream");
        b.remove("model");
        b.set("new", json!(1));
        b.set("new", json!(2));
        b.remove("gone");
        assert_eq!(text(&b), r#"{"x":1,"new":2}"#);
        assert_eq!(b.get("stream"), None);
        b.set("model", json!("back"));
        assert_eq!(text(&b), r#"{"model":"back","x":1,"new":2}"#);
    }

    #[test]
    fn nulls_are_left_out_of_the_clients_body_on_request() {
        let client = obj(json!({"model": "m", "system": null, "max_tokens": 5}));
        assert_eq!(text(&Body::client_without_nulls(&client)), r#"{"model":"m","max_tokens":5}"#);
    }

    #[test]
    fn an_owned_body_is_handed_back_whole() {
        let map = obj(json!({"a": 1, "b": 2}));
        let mut b = Body::owned(map.clone());
        assert_eq!(b.clone().into_map(), map);
        b.remove("a");
        assert_eq!(b.into_map(), obj(json!({"b": 2})));
    }
}
