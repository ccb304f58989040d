//! The last hour of traffic, minute by minute, for the charts on `/ui`
//! (`GET /ui/activity`): per model (the name the client asked for) and per
//! virtual key, the requests, errors, latency (sum and maximum, to the
//! answer's first byte, as `/metrics` measures it) and spend in USD.
//!
//! Requests are recorded by `metrics::track` (the layer that already times
//! every model route), attributed by the proxy through the [`Attribution`]
//! it puts on the answer; spend is recorded where a call is priced
//! (`proxy::pricing::charge`; a stream when it ends, in the minute it ends).
//! Minutes come from the gateway's clock, so tests move them with
//! `ManualClock` and old minutes roll off without anyone waiting.
//!
//! Memory is bounded: each series is a ring of 60 one-minute buckets, and
//! there are at most `MAX_MODELS` model series and `MAX_KEYS` key series.
//! When a table is full, series silent for an hour make room; if none is,
//! the newcomer is counted under one series named `OTHER`. A request the
//! gateway refused before it knew who called or that the model is served
//! (no valid key, an unknown name, a body it could not read) is counted
//! under `other` too, so clients cannot fill the table, or the public
//! page, with names they made up.
//!
//! The hot path takes one short mutex per table (models, keys) and does no
//! allocation for a series that exists: recording is a hash lookup and a
//! few additions.

use crate::gateway::auth::Caller;
use crate::gateway::clock::SharedClock;
use crate::gateway::keys::KeyRecord;
use foldhash::{HashMap, HashMapExt};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;

/// Minutes kept: the last hour.
pub(crate) const MINUTES: usize = 60;
/// Most model series kept; more are counted under [`OTHER`].
pub(crate) const MAX_MODELS: usize = 200;
/// Most key series kept; more are counted under [`OTHER`].
pub(crate) const MAX_KEYS: usize = 1000;
/// The series everything beyond the caps (and unattributed traffic) is counted under.
pub(crate) const OTHER: &str = "other";

/// Who the answer to a model request is attributed to, put on the answer by
/// the proxy (next to `metrics::RequestedModel`) and read by `metrics::track`.
#[derive(Clone, Debug)]
pub struct Attribution {
    /// The requested model is one the gateway serves: it gets a series of
    /// its own. Otherwise the request counts under `OTHER`.
    pub known_model: bool,
    /// The caller, when it was authenticated.
    pub who: Option<Who>,
}

/// A caller as the key charts know it: never the secret.
#[derive(Clone, Debug)]
pub enum Who {
    Master,
    Key(Arc<KeyRecord>),
}

impl Who {
    /// The key charts' view of a caller: the master key or a virtual key;
    /// an open gateway's anonymous callers have no series.
    pub fn of(caller: &Caller) -> Option<Who> {
        match caller {
            Caller::Master => Some(Who::Master),
            Caller::Key(k) => Some(Who::Key(Arc::clone(k))),
            Caller::Open { .. } => None,
        }
    }
}

/// A key series' identity: the key's hash (or the master key).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum KeyId {
    Master,
    Hash([u8; 32]),
}

/// How a key series is shown: its masked form and alias, as `/key/list`
/// shows them, taken when the series starts (a deleted key keeps them).
#[derive(Clone, Debug, Default)]
struct KeyLabel {
    masked: String,
    alias: Option<String>,
}

/// One minute of one series. `minute` says which minute the bucket holds,
/// so a slot of the ring left from an hour ago reads as empty.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Bucket {
    minute: u64,
    requests: u64,
    errors: u64,
    latency_sum_ms: f64,
    latency_max_ms: f64,
    spend_usd: f64,
}

#[derive(Debug)]
struct Series<L> {
    label: L,
    buckets: Box<[Bucket; MINUTES]>,
    /// The newest minute recorded: a series silent for an hour can go.
    last: u64,
}

impl<L> Series<L> {
    fn new(label: L) -> Self {
        Series { label, buckets: Box::new([Bucket::default(); MINUTES]), last: 0 }
    }

    fn bucket(&mut self, minute: u64) -> &mut Bucket {
        self.last = self.last.max(minute);
        let b = &mut self.buckets[(minute % MINUTES as u64) as usize];
        if b.minute != minute {
            *b = Bucket { minute, ..Bucket::default() };
        }
        b
    }

    fn at(&self, minute: u64) -> Option<&Bucket> {
        let b = &self.buckets[(minute % MINUTES as u64) as usize];
        (b.minute == minute).then_some(b)
    }

    fn silent_since(&self, minute: u64) -> bool {
        self.last + (MINUTES as u64) <= minute
    }
}

/// One dimension (models or keys): its series and the overflow.
#[derive(Debug)]
struct Table<K, L> {
    cap: usize,
    series: HashMap<K, Series<L>>,
    other: Series<L>,
    /// The newest minute seen: a wall clock stepped back never writes
    /// over a newer minute's slot with an older one.
    latest: u64,
}

impl<K: Hash + Eq + Clone, L: Default> Table<K, L> {
    fn new(cap: usize) -> Self {
        Table { cap, series: HashMap::new(), other: Series::new(L::default()), latest: 0 }
    }

    /// The bucket of `id`'s series (or of `other`) for `minute`.
    fn bucket<Q>(&mut self, id: Option<&Q>, minute: u64, label: impl FnOnce() -> L) -> &mut Bucket
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.latest = self.latest.max(minute);
        let minute = self.latest;
        let Some(id) = id else { return self.other.bucket(minute) };
        if !self.series.contains_key(id) {
            if self.series.len() >= self.cap {
                // Full: series silent for an hour make room (a scan only when full).
                self.series.retain(|_, s| !s.silent_since(minute));
            }
            if self.series.len() >= self.cap {
                return self.other.bucket(minute);
            }
            // The only allocation: a series' first minute.
            self.series.insert(id.to_owned(), Series::new(label()));
        }
        match self.series.get_mut(id) {
            Some(s) => s.bucket(minute),
            None => self.other.bucket(minute),
        }
    }
}

/// Looks a key up by its hash (hex), for its current masked form and alias.
pub(crate) type KeyLookup<'a> = &'a dyn Fn(&str) -> Option<Arc<KeyRecord>>;

/// The activity tables. One per gateway (`Gateway::activity`).
#[derive(Debug)]
pub struct Activity {
    clock: SharedClock,
    models: Mutex<Table<String, ()>>,
    keys: Mutex<Table<KeyId, KeyLabel>>,
}

fn key_id(who: &Who) -> KeyId {
    match who {
        Who::Master => KeyId::Master,
        Who::Key(k) => KeyId::Hash(k.hash_bytes()),
    }
}

fn key_label(who: &Who) -> KeyLabel {
    match who {
        Who::Master => KeyLabel { masked: "master key".into(), alias: None },
        Who::Key(k) => KeyLabel { masked: k.masked().to_string(), alias: k.alias().map(str::to_string) },
    }
}

impl Activity {
    pub fn new(clock: SharedClock) -> Self {
        Self::with_caps(clock, MAX_MODELS, MAX_KEYS)
    }

    /// With other caps (tests).
    pub(crate) fn with_caps(clock: SharedClock, models: usize, keys: usize) -> Self {
        Activity { clock, models: Mutex::new(Table::new(models)), keys: Mutex::new(Table::new(keys)) }
    }

    /// The current minute, in minutes since the Unix epoch.
    fn minute(&self) -> u64 {
        crate::gateway::state::unix(self.clock.wall()) / 60
    }

    /// One model request: its model (`None`: counted under `other`), its
    /// caller, whether it failed and how long until its answer started.
    pub fn request(&self, model: Option<&str>, who: Option<&Who>, failed: bool, latency_ms: f64) {
        let minute = self.minute();
        let add = |b: &mut Bucket| {
            b.requests += 1;
            b.errors += u64::from(failed);
            if latency_ms.is_finite() && latency_ms >= 0.0 {
                b.latency_sum_ms += latency_ms;
                b.latency_max_ms = b.latency_max_ms.max(latency_ms);
            }
        };
        add(self.models.lock().bucket(model, minute, || ()));
        if let Some(who) = who {
            add(self.keys.lock().bucket(Some(&key_id(who)), minute, || key_label(who)));
        }
    }

    /// A priced call's cost, charged to its model and caller.
    pub fn spend(&self, model: &str, who: Option<&Who>, usd: f64) {
        if !(usd.is_finite() && usd > 0.0) {
            return;
        }
        let minute = self.minute();
        self.models.lock().bucket(Some(model), minute, || ()).spend_usd += usd;
        if let Some(who) = who {
            self.keys.lock().bucket(Some(&key_id(who)), minute, || key_label(who)).spend_usd += usd;
        }
    }

    /// The minutes shown: the last hour's minute starts, oldest first, in
    /// Unix seconds, ending with the current minute.
    fn window(&self) -> Vec<u64> {
        let now = self.minute();
        (0..MINUTES as u64).rev().map(|ago| now.saturating_sub(ago)).collect()
    }

    /// What `/ui/activity` serves: the minute starts (Unix seconds, oldest
    /// first), the per-model series, and the per-key series only when
    /// `keys` is given (it looks a key up by its hash, for its current
    /// masked form and alias). One window for all, so the columns agree.
    pub fn report(&self, keys: Option<KeyLookup<'_>>) -> Value {
        let window = self.window();
        // One lock at a time: nothing here holds both tables at once.
        let model_cap = self.models.lock().cap;
        let key_cap = self.keys.lock().cap;
        let mut out = json!({
            "minutes": window.iter().map(|m| m * 60).collect::<Vec<_>>(),
            "models": self.models_json(&window),
            "limits": {"models": model_cap, "keys": key_cap},
        });
        if let Some(current) = keys {
            out["keys"] = self.keys_json(&window, current);
        }
        out
    }

    fn models_json(&self, window: &[u64]) -> Value {
        let t = self.models.lock();
        let mut out: Vec<Value> =
            t.series.iter().filter_map(|(name, s)| series_json(s, window, json!({"name": name}))).collect();
        sort_series(&mut out);
        out.extend(series_json(&t.other, window, json!({"name": OTHER, "other": true})));
        Value::Array(out)
    }

    /// The per-key series (masked keys and aliases, never a secret); the
    /// label comes from `current` (the key as it is now) when the key still
    /// exists, else from when the series started.
    fn keys_json(&self, window: &[u64], current: KeyLookup<'_>) -> Value {
        let t = self.keys.lock();
        let mut out: Vec<Value> = t
            .series
            .iter()
            .filter_map(|(id, s)| {
                let label = match id {
                    KeyId::Hash(h) => current(&hex::encode(h))
                        .map(|k| KeyLabel { masked: k.masked().to_string(), alias: k.alias().map(str::to_string) })
                        .unwrap_or_else(|| s.label.clone()),
                    KeyId::Master => s.label.clone(),
                };
                let name = label.alias.clone().unwrap_or_else(|| label.masked.clone());
                series_json(s, window, json!({"name": name, "key": label.masked, "alias": label.alias}))
            })
            .collect();
        sort_series(&mut out);
        out.extend(series_json(&t.other, window, json!({"name": OTHER, "other": true})));
        Value::Array(out)
    }
}

/// A series' columns over `window`, merged into `head`; `None` when it had
/// no traffic in the window (it is not shown).
fn series_json<L>(s: &Series<L>, window: &[u64], mut head: Value) -> Option<Value> {
    let cols: Vec<Bucket> = window.iter().map(|m| s.at(*m).copied().unwrap_or_default()).collect();
    let requests: u64 = cols.iter().map(|b| b.requests).sum();
    let errors: u64 = cols.iter().map(|b| b.errors).sum();
    let spend: f64 = cols.iter().map(|b| b.spend_usd).sum();
    if requests == 0 && spend == 0.0 {
        return None;
    }
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let mean = |b: &Bucket| (b.requests > 0).then(|| round(b.latency_sum_ms / b.requests as f64));
    let max = |b: &Bucket| (b.requests > 0).then(|| round(b.latency_max_ms));
    let latency_sum: f64 = cols.iter().map(|b| b.latency_sum_ms).sum();
    let latency_max = cols.iter().filter(|b| b.requests > 0).map(|b| b.latency_max_ms).reduce(f64::max);
    let o = head.as_object_mut()?;
    o.insert("requests".into(), json!(cols.iter().map(|b| b.requests).collect::<Vec<_>>()));
    o.insert("errors".into(), json!(cols.iter().map(|b| b.errors).collect::<Vec<_>>()));
    o.insert("latency_mean_ms".into(), json!(cols.iter().map(mean).collect::<Vec<_>>()));
    o.insert("latency_max_ms".into(), json!(cols.iter().map(max).collect::<Vec<_>>()));
    o.insert("spend_usd".into(), json!(cols.iter().map(|b| b.spend_usd).collect::<Vec<_>>()));
    o.insert(
        "total".into(),
        json!({
            "requests": requests,
            "errors": errors,
            "spend_usd": spend,
            "latency_mean_ms": (requests > 0).then(|| round(latency_sum / requests as f64)),
            "latency_max_ms": latency_max.map(round),
        }),
    );
    Some(head)
}

/// Biggest spenders first, then the busiest, then by name (a stable order).
fn sort_series(v: &mut [Value]) {
    let key = |s: &Value| {
        (
            s["total"]["spend_usd"].as_f64().unwrap_or(0.0),
            s["total"]["requests"].as_u64().unwrap_or(0),
            s["name"].as_str().unwrap_or_default().to_string(),
        )
    };
    v.sort_by(|a, b| {
        let (sa, ra, na) = key(a);
        let (sb, rb, nb) = key(b);
        sb.total_cmp(&sa).then(rb.cmp(&ra)).then(na.cmp(&nb))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::clock::ManualClock;
    use std::time::Duration;

    fn activity(models: usize) -> (Arc<ManualClock>, Activity) {
        let clock = ManualClock::shared();
        let a = Activity::with_caps(clock.clone(), models, 4);
        (clock, a)
    }

    fn named<'a>(v: &'a Value, name: &str) -> &'a Value {
        v.as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no {name} in {v}"))
    }

    #[test]
    fn a_minute_adds_up_and_rolls_off_after_an_hour() {
        let (clock, a) = activity(10);
        a.request(Some("gpt-4o"), None, false, 100.0);
        a.request(Some("gpt-4o"), None, true, 300.0);
        a.spend("gpt-4o", None, 0.25);
        let v = a.report(None)["models"].clone();
        let s = named(&v, "gpt-4o");
        assert_eq!(s["requests"][MINUTES - 1], 2);
        assert_eq!(s["errors"][MINUTES - 1], 1);
        assert_eq!(s["latency_mean_ms"][MINUTES - 1], 200.0);
        assert_eq!(s["latency_max_ms"][MINUTES - 1], 300.0);
        assert_eq!(s["spend_usd"][MINUTES - 1], 0.25);
        assert_eq!(s["latency_mean_ms"][0], Value::Null, "a minute without requests has no latency");
        assert_eq!(a.report(None)["minutes"].as_array().unwrap().len(), MINUTES);
        assert!(a.report(None).get("keys").is_none());

        // Ten minutes on, the minute moved left by ten columns.
        clock.advance(Duration::from_secs(600));
        a.request(Some("gpt-4o"), None, false, 50.0);
        let v = a.report(None)["models"].clone();
        let s = named(&v, "gpt-4o");
        assert_eq!(s["requests"][MINUTES - 11], 2);
        assert_eq!(s["requests"][MINUTES - 1], 1);
        assert_eq!(s["total"]["requests"], 3);

        // An hour after the last request, nothing is left.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(a.report(None)["models"], json!([]));
    }

    #[test]
    fn a_slot_reused_an_hour_later_starts_empty() {
        let (clock, a) = activity(10);
        a.request(Some("m"), None, false, 10.0);
        clock.advance(Duration::from_secs(3600));
        a.request(Some("m"), None, false, 10.0);
        let v = a.report(None)["models"].clone();
        assert_eq!(named(&v, "m")["total"]["requests"], 1);
    }

    #[test]
    fn past_the_cap_newcomers_count_under_other_until_a_series_falls_silent() {
        let (clock, a) = activity(2);
        a.request(Some("a"), None, false, 1.0);
        a.request(Some("b"), None, false, 1.0);
        a.request(Some("c"), None, false, 1.0);
        a.spend("d", None, 1.0);
        a.request(None, None, true, 1.0);
        let v = a.report(None)["models"].clone();
        let names: Vec<&str> = v.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b", OTHER], "{v}");
        let other = named(&v, OTHER);
        assert_eq!(other["total"]["requests"], 2);
        assert_eq!(other["total"]["errors"], 1);
        assert_eq!(other["total"]["spend_usd"], 1.0);
        assert_eq!(other["other"], true);

        // An hour later the silent series make room.
        clock.advance(Duration::from_secs(3600));
        a.request(Some("c"), None, false, 1.0);
        let v = a.report(None)["models"].clone();
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        assert_eq!(named(&v, "c")["total"]["requests"], 1);
    }

    #[test]
    fn series_come_biggest_spender_first() {
        let (_clock, a) = activity(10);
        a.request(Some("busy"), None, false, 1.0);
        a.request(Some("busy"), None, false, 1.0);
        a.request(Some("dear"), None, false, 1.0);
        a.spend("dear", None, 2.0);
        a.request(Some("quiet"), None, false, 1.0);
        let v = a.report(None)["models"].clone();
        let names: Vec<&str> = v.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["dear", "busy", "quiet"]);
    }

    #[test]
    fn keys_past_their_cap_count_under_other_and_show_masked_and_aliased() {
        use crate::gateway::keys::{KeySpec, KeyStore};
        let (_clock, a) = activity(10);
        let store = KeyStore::new(a.clock.clone());
        let mut secrets = Vec::new();
        for n in 0..6 {
            let spec = KeySpec { alias: (n == 0).then(|| "team-a".to_string()), ..KeySpec::default() };
            let (secret, record) = store.generate(spec, None).unwrap();
            a.request(Some("m"), Some(&Who::Key(record.clone())), false, 1.0);
            a.spend("m", Some(&Who::Key(record)), 0.5);
            secrets.push(secret);
        }
        let current = |hash: &str| store.get(hash);
        let v = a.report(Some(&current))["keys"].clone();
        let list = v.as_array().unwrap();
        assert_eq!(list.len(), 5, "the cap of 4, then other: {v}");
        assert_eq!(named(&v, OTHER)["total"]["requests"], 2);
        assert_eq!(named(&v, OTHER)["total"]["spend_usd"], 1.0);
        let first = named(&v, "team-a");
        assert_eq!(first["alias"], "team-a");
        assert_eq!(first["key"], store.get(&secrets[0]).unwrap().masked());
        let text = v.to_string();
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret in {text}");
        }
        // The models' view names no key.
        let models = a.report(None).to_string();
        assert!(!models.contains("team-a") && !models.contains("..."), "{models}");
    }

    #[test]
    fn the_master_key_has_a_series_of_its_own_and_no_secret() {
        let (_clock, a) = activity(10);
        a.request(Some("m"), Some(&Who::Master), false, 1.0);
        a.spend("m", Some(&Who::Master), 0.5);
        let v = a.report(Some(&|_| None))["keys"].clone();
        let s = named(&v, "master key");
        assert_eq!(s["total"]["spend_usd"], 0.5);
        assert_eq!(s["total"]["requests"], 1);
    }
}
