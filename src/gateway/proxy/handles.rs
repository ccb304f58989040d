//! Response handles. A Responses API `id` is a handle the client sends back
//! (`previous_response_id`), and only the deployment that stored the
//! Response can resolve it: in a group of several deployments (other
//! accounts, other regions) a follow-up routed anywhere else is a 400
//! `previous_response_not_found`. So the id a client gets names the
//! deployment that made it, `resp_pm_<deployment>_<the provider's id>`, and a
//! follow-up carrying one goes to that deployment with the provider's own id.
//!
//! Why in the id and not in a table: the id survives a restart and means the
//! same on every instance of a fleet, with nothing to store or expire.
//! LiteLLM does the same (it encodes its `model_id` into the id).
//!
//! `<deployment>` is 12 hex digits of SHA-256 over what makes a deployment
//! another store of Responses: its group, its upstream model, its provider,
//! its base URL and its credential's fingerprint (never the credential).
//! A handle only narrows the routes the client's group already offers: it
//! can never send a call to a deployment the caller could not reach anyway.

use crate::gateway::routing::Route;
use sha2::{Digest, Sha256};

const PREFIX: &str = "resp_pm_";
const DEPLOYMENT_HEX: usize = 12;

/// The deployment part of the handles this route issues.
pub(super) fn deployment_tag(route: &Route) -> String {
    let mut h = Sha256::new();
    for part in [route.deployment.model_name.as_str(), route.upstream_model.as_str(), route.provider.as_str()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    if let Ok(reach) = route.deployment.reach(route.provider) {
        h.update(reach.client_key.api_base.as_bytes());
        h.update([0]);
        h.update(reach.client_key.credential_fingerprint.as_bytes());
    }
    h.finalize().iter().take(DEPLOYMENT_HEX / 2).map(|b| format!("{b:02x}")).collect()
}

/// The id the client gets for the provider's `id`.
pub(super) fn issue(route: &Route, provider_id: &str) -> String {
    format!("{PREFIX}{}_{provider_id}", deployment_tag(route))
}

/// A handle's deployment tag and the provider's id, or `None` for an id
/// this gateway did not issue (passed on unchanged).
pub(super) fn resolve(handle: &str) -> Option<(&str, &str)> {
    let rest = handle.strip_prefix(PREFIX)?;
    let (tag, id) = (rest.get(..DEPLOYMENT_HEX)?, rest.get(DEPLOYMENT_HEX..)?.strip_prefix('_')?);
    (tag.bytes().all(|b| b.is_ascii_hexdigit()) && !id.is_empty()).then_some((tag, id))
}

/// Rewrites the provider's Response ids into handles in a stream, event
/// block by event block: the ids are learnt from the lifecycle events
/// (`response.created` and the rest carry the whole `response`), then each
/// JSON string token equal to one is replaced. A token can only be an id:
/// text holding the same characters is escaped inside its own string.
pub(super) struct StreamHandles {
    tag: String,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl StreamHandles {
    pub(super) fn new(route: &Route) -> Self {
        StreamHandles { tag: deployment_tag(route), pairs: Vec::new() }
    }

    pub(super) fn rewrite(&mut self, block: Vec<u8>) -> Vec<u8> {
        let text = String::from_utf8_lossy(&block);
        for data in text.lines().filter_map(|l| l.strip_prefix("data:")).filter(|d| d.contains("\"response\"")) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else { continue };
            for field in ["id", "previous_response_id"] {
                if let Some(id) = v.pointer(&format!("/response/{field}")).and_then(|i| i.as_str()) {
                    self.learn(id);
                }
            }
        }
        let mut out = block;
        for (from, to) in &self.pairs {
            out = replace_all(&out, from, to);
        }
        out
    }

    fn learn(&mut self, id: &str) {
        if resolve(id).is_some() {
            return;
        }
        let from = serde_json::to_vec(id).unwrap_or_default();
        if !self.pairs.iter().any(|(f, _)| *f == from) {
            let to = serde_json::to_vec(&format!("{PREFIX}{}_{id}", self.tag)).unwrap_or_default();
            self.pairs.push((from, to));
        }
    }
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        // A quote after an odd run of backslashes is inside a string.
        let escaped = hay[..i].iter().rev().take_while(|b| **b == b'\\').count() % 2 == 1;
        if !escaped && hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// In a whole Response: its `id`, and the `previous_response_id` it echoes.
pub(super) fn rewrite_body(route: &Route, v: &mut serde_json::Value) {
    for field in ["id", "previous_response_id"] {
        if let Some(id) = v.get(field).and_then(|i| i.as_str()).filter(|id| resolve(id).is_none()) {
            let handle = issue(route, id);
            v[field] = serde_json::Value::String(handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_resolves_to_its_parts_and_nothing_else_does() {
        assert_eq!(resolve("resp_pm_0123456789ab_resp_abc_def"), Some(("0123456789ab", "resp_abc_def")));
        for not_ours in [
            "resp_abc",
            "resp_pm_0123456789ab",
            "resp_pm_0123456789ab_",
            "resp_pm_0123456789zz_x",
            "resp_pm_é23456789abc_x",
        ] {
            assert_eq!(resolve(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn tokens_are_replaced_only_where_they_are_whole_strings() {
        let got =
            replace_all(br#"{"id":"resp_1","text":"\"resp_1\" resp_1","t":"say \"resp_1"}"#, br#""resp_1""#, br#""X""#);
        assert_eq!(got, br#"{"id":"X","text":"\"resp_1\" resp_1","t":"say \"resp_1"}"#.to_vec());
    }
}
