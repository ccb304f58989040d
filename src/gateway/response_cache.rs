//! Response caching the LiteLLM way (`litellm_settings.cache: true`,
//! `cache_params.type: local` or `redis`): an identical request is answered
//! from the cache, with no upstream call and no spend.
//!
//! What makes two requests identical (the key, [`Plan`]): the call type, the
//! caller's scope (a virtual key's hash, or the master key, or an open
//! gateway), the model group, and every member of the body except `model`
//! (the group stands for it, so an alias and its group share entries),
//! `stream` and `stream_options` (they change the framing, not the answer: a
//! streamed request is answered from a buffered one, replayed as a stream),
//! `metadata` (LiteLLM leaves it out too) and `cache` (the controls). Objects
//! are hashed with their members sorted, so member order does not matter.
//! A streamed chat answer that ends whole, with its usage, is put back
//! together (`ChatAssembler`) and stored as the buffered answer.
//!
//! Why per caller and not shared as LiteLLM's standard stores are: a shared
//! entry tells one tenant, through the hit and its latency, what another one
//! asked; keys here have no teams to share within. Admission (the key's
//! models, budget and rpm) always runs before the cache is read, so a key
//! that may not call a model never reaches an entry of it either.
//!
//! One cache, two backends (`Backend`): everything above (the key, the
//! scope, the controls, the TTL, the bounds) is the same for both; only
//! where an entry is kept differs.
//!
//! - `local`: this instance's memory. At most [`CAPACITY`] entries of at most
//!   `MAX_ENTRY_BYTES` each (LiteLLM's in-memory limits); a full cache
//!   drops expired entries first, then the least recently used. Not moka or
//!   quick_cache: both keep time on their own clock (quick_cache has no TTL
//!   at all), and a map of 200 entries scanned on a full insert costs nothing
//!   next to an upstream call.
//! - `redis`: one Redis, shared by every instance on it, so an answer one
//!   instance got is a hit on all of them. An entry is one string at
//!   `postmortem:cache:<namespace>:<hash>` ([`Plan::key`] behind
//!   `REDIS_PREFIX`): the answer behind a small header with when it was
//!   stored and when it expires. Bounded by `MAX_ENTRY_BYTES` each way (a
//!   larger answer is not stored, and a read never takes more). Every call
//!   goes through a `RedisLink`, within its 250 ms bound; Redis down or
//!   slow makes a read a miss and a write skipped, never a failed request,
//!   and the link logs once per outage.
//!
//! Time is the gateway's clock for both, so TTLs follow a test's manual
//! clock: in memory its monotonic time, in Redis its wall time (instances
//! compare it, as they do for the shared rate windows), checked on every
//! read. Redis's own `EX` (the TTL and `REDIS_EXPIRY_MARGIN`) only collects
//! entries long past.

use crate::gateway::auth::Caller;
use crate::gateway::clock::SharedClock;
use crate::gateway::config::{CacheStore, Config};
use crate::gateway::redis_link::{Purpose, RedisLink, RedisStatus, RedisTarget};
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// The most entries kept (LiteLLM's in-memory cache holds 200).
pub const CAPACITY: usize = 200;
/// The largest answer kept, bytes (LiteLLM's in-memory cache: 1 MiB).
pub(crate) const MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// How long an answer is kept when neither the config nor the request says
/// (LiteLLM's in-memory default, 10 minutes).
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// The longest TTL or `s-maxage` accepted, seconds (a year): longer is a
/// mistake, and would overflow the clock's arithmetic far beyond it.
pub(crate) const MAX_TTL_SECS: f64 = 31_536_000.0;
/// What every Redis key of the cache starts with.
pub(crate) const REDIS_PREFIX: &str = "postmortem:cache:";
/// How much longer than its TTL Redis keeps an entry (its `EX`): the
/// gateway's clock decides when an entry expires, and instances' clocks a
/// little apart must not see it vanish early.
pub(crate) const REDIS_EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// What the Redis link's log lines say an outage means for the cache.
const REDIS_PURPOSE: Purpose = Purpose {
    down: "responses are neither cached nor answered from the cache until it is back",
    up: "responses are cached in it, shared by the instances on it",
};
/// An entry in Redis: this tag, the time it was stored and the time it
/// expires (milliseconds of the gateway clock's wall time, big-endian), the
/// answer.
const REDIS_ENTRY_TAG: &[u8; 4] = b"pmc1";
const REDIS_HEADER_BYTES: usize = 4 + 8 + 8;

/// The calls that can be cached, under LiteLLM's `supported_call_types` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallType {
    /// `/v1/chat/completions` (`acompletion`).
    Chat,
    /// `/v1/completions` (`atext_completion`).
    TextCompletion,
    /// `/v1/embeddings` (`aembedding`).
    Embedding,
    /// `/v1/responses` (`aresponses`), not streamed.
    Responses,
}

impl CallType {
    const ALL: [CallType; 4] = [CallType::Chat, CallType::TextCompletion, CallType::Embedding, CallType::Responses];

    /// LiteLLM's name for it, sync or async (`completion`, `acompletion`).
    pub(crate) fn from_litellm(name: &str) -> Option<CallType> {
        match name {
            "completion" | "acompletion" => Some(CallType::Chat),
            "text_completion" | "atext_completion" => Some(CallType::TextCompletion),
            "embedding" | "aembedding" => Some(CallType::Embedding),
            "responses" | "aresponses" => Some(CallType::Responses),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CallType::Chat => "acompletion",
            CallType::TextCompletion => "atext_completion",
            CallType::Embedding => "aembedding",
            CallType::Responses => "aresponses",
        }
    }
}

/// A request's own controls: its `cache` member (LiteLLM's dynamic cache
/// controls), taken out of the body before anything is sent upstream.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Controls {
    /// Do not answer from the cache (the fresh answer is still stored).
    pub no_cache: bool,
    /// Do not store this answer.
    pub no_store: bool,
    /// Opt in when `cache_params.mode` is `default_off`.
    pub use_cache: bool,
    /// Keep this answer this long instead of the configured TTL.
    pub ttl: Option<Duration>,
    /// Accept a stored answer only if it is at most this old.
    pub max_age: Option<Duration>,
    /// Store and look up under this namespace instead of the configured one.
    pub namespace: Option<String>,
}

/// A request's `cache` controls that are not understood (the client gets a
/// 400 with this message), naming the control and what was sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ControlsError {
    #[error("field `cache` must be an object such as {{\"no-cache\": true}}, got {got}")]
    NotAnObject { got: &'static str },
    #[error("`cache.{control}` must be a boolean, got {got}")]
    NotABoolean { control: String, got: &'static str },
    #[error("`cache.{control}` must be a number of seconds from 0 to {MAX_TTL_SECS}, got {value}")]
    NotSeconds { control: String, value: Value },
    #[error("`cache.namespace` must be a non-empty string, got {value}")]
    Namespace { value: Value },
    #[error(
        "unknown cache control `{control}`; the controls are `no-cache`, `no-store`, `ttl`, `s-maxage`, \
         `namespace` and `use-cache`"
    )]
    Unknown { control: String },
}

impl Controls {
    /// Takes `cache` out of `body` and reads it. `Err` is the 400's message:
    /// a control that is not understood is refused, not ignored, so a typo
    /// (`no_cache`) never silently serves a cached answer.
    pub(crate) fn take_from(body: &mut Map<String, Value>) -> Result<Controls, ControlsError> {
        // `shift_remove`: the members sent upstream keep the order the client gave them.
        let obj = match body.shift_remove("cache") {
            None | Some(Value::Null) => return Ok(Controls::default()),
            Some(Value::Object(m)) => m,
            Some(other) => return Err(ControlsError::NotAnObject { got: crate::gateway::error::json_type(&other) }),
        };
        let mut c = Controls::default();
        for (k, v) in obj {
            let flag = |v: &Value| {
                v.as_bool().ok_or_else(|| ControlsError::NotABoolean {
                    control: k.clone(),
                    got: crate::gateway::error::json_type(v),
                })
            };
            let secs = |v: &Value| match v.as_f64() {
                Some(s) if s.is_finite() && (0.0..=MAX_TTL_SECS).contains(&s) => Ok(Duration::from_secs_f64(s)),
                _ => Err(ControlsError::NotSeconds { control: k.clone(), value: v.clone() }),
            };
            match k.as_str() {
                "no-cache" => c.no_cache = flag(&v)?,
                "no-store" => c.no_store = flag(&v)?,
                "use-cache" => c.use_cache = flag(&v)?,
                "ttl" => c.ttl = Some(secs(&v)?),
                // LiteLLM reads both spellings.
                "s-maxage" | "s-max-age" => c.max_age = Some(secs(&v)?),
                "namespace" => match v {
                    Value::String(s) if !s.is_empty() && s.len() <= 256 => c.namespace = Some(s),
                    other => return Err(ControlsError::Namespace { value: other }),
                },
                _ => return Err(ControlsError::Unknown { control: k }),
            }
        }
        Ok(c)
    }
}

/// How one request meets the cache: its key and what it may do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `namespace:` + the hex SHA-256 of what identifies the request (the
    /// `x-litellm-cache-key` header on a hit; in Redis, behind
    /// `REDIS_PREFIX`). Names no secret: the scope in it is a key's hash,
    /// and all of it is hashed.
    pub key: String,
    lookup: bool,
    store: bool,
    ttl: Duration,
    max_age: Option<Duration>,
}

struct Entry {
    body: Bytes,
    stored_at: Duration,
    expires_at: Duration,
    last_used: u64,
}

/// The in-memory backend's entries.
#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    tick: u64,
}

/// Where the answers are kept.
enum Backend {
    /// In this instance's memory (`type: local`).
    Local(Mutex<Entries>),
    /// In Redis, shared by every instance on it (`type: redis`).
    Redis(Arc<RedisLink>),
}

/// The response cache (`litellm_settings.cache: true`).
pub struct ResponseCache {
    ttl: Duration,
    namespace: Option<String>,
    calls: Vec<CallType>,
    default_off: bool,
    clock: SharedClock,
    backend: Backend,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What `/health` shows of the cache.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheStats {
    /// `local` or `redis`.
    pub backend: &'static str,
    /// Entries in this instance's memory, and the most it keeps (`local`
    /// only: Redis holds the fleet's, bounded by their TTL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<usize>,
    pub ttl_secs: f64,
    /// Requests answered from the cache, and requests that looked and went
    /// upstream (`no-cache` ones do not look; a read Redis did not answer
    /// is a miss). This instance's.
    pub hits: u64,
    pub misses: u64,
    /// The Redis link (`redis` only): connected, where (admins only), the
    /// last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisStatus>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match &self.backend {
            Backend::Local(_) => "local",
            Backend::Redis(_) => "redis",
        };
        f.debug_struct("ResponseCache")
            .field("backend", &backend)
            .field("ttl", &self.ttl)
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// The link `type: redis` keeps its answers through (connected lazily,
    /// so a gateway starts with Redis down). Must run inside a Tokio runtime.
    pub fn connect(target: RedisTarget) -> Result<Arc<RedisLink>, redis::RedisError> {
        RedisLink::start(target, REDIS_PURPOSE)
    }

    /// The cache a config asks for: `None` when caching is off, or when its
    /// store is not implemented (the config's warning said so). `redis` is
    /// the link of `type: redis` ([`ResponseCache::connect`]); without one
    /// the answers stay in this instance's memory, whatever the type says
    /// (only the known bug `cache_local_only_with_redis` builds it so).
    pub fn from_config(config: &Config, clock: SharedClock, redis: Option<Arc<RedisLink>>) -> Option<ResponseCache> {
        let l = &config.litellm_settings;
        if l.cache != Some(true) {
            return None;
        }
        let p = l.cache_params.clone().unwrap_or_default();
        let store = p.store()?;
        // LiteLLM's Redis cache reads `ttl` alone.
        let in_memory_ttl = if store == CacheStore::Local { p.default_in_memory_ttl } else { None };
        let ttl = in_memory_ttl
            .or(p.ttl)
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= MAX_TTL_SECS)
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_TTL);
        let calls = match &p.supported_call_types {
            None => CallType::ALL.to_vec(),
            Some(names) => {
                let mut v: Vec<CallType> = names.iter().filter_map(|n| CallType::from_litellm(n)).collect();
                v.dedup();
                v
            }
        };
        Some(ResponseCache {
            ttl,
            namespace: p.namespace.filter(|n| !n.is_empty()),
            calls,
            default_off: p.mode.as_deref() == Some("default_off"),
            clock,
            backend: match redis {
                Some(link) => Backend::Redis(link),
                None => Backend::Local(Mutex::new(Entries::default())),
            },
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// How this request meets the cache, or `None` when it does not at all:
    /// a call type not cached, a `default_off` cache the request did not opt
    /// into, or a stream this gateway cannot replay (only chat and text
    /// completions are replayed as streams).
    pub(crate) fn plan(
        &self,
        call: CallType,
        stream: bool,
        controls: &Controls,
        caller: &Caller,
        group: &str,
        body: &Map<String, Value>,
    ) -> Option<Plan> {
        if !self.calls.contains(&call) || (self.default_off && !controls.use_cache) {
            return None;
        }
        if stream && !matches!(call, CallType::Chat | CallType::TextCompletion) {
            return None;
        }
        let scope = match caller {
            Caller::Key(k) => format!("key:{}", k.key_hash()),
            Caller::Master => "master".to_string(),
            Caller::Open { .. } => "open".to_string(),
        };
        let mut h = Sha256::new();
        for part in [call.as_str(), scope.as_str(), group] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let mut members: Vec<(&String, &Value)> = body
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "model" | "stream" | "stream_options" | "metadata" | "cache"))
            .collect();
        members.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in members {
            h.update(k.as_bytes());
            h.update([0]);
            hash_value(&mut h, v);
        }
        let hex = hex::encode(h.finalize());
        let key = match controls.namespace.as_deref().or(self.namespace.as_deref()) {
            Some(ns) => format!("{ns}:{hex}"),
            None => hex,
        };
        Some(Plan {
            key,
            lookup: !controls.no_cache,
            // A stream's body cannot be stored as it passes: it is put back
            // together and stored when it ends whole
            // (`proxy::cached::StreamRecorder`, chat only).
            store: !controls.no_store && !stream,
            ttl: controls.ttl.unwrap_or(self.ttl),
            max_age: controls.max_age,
        })
    }

    /// The stored answer for `plan`, if it may answer: not expired, not older
    /// than the request's `s-maxage`, and the request did not say `no-cache`.
    /// A read Redis does not answer (within its bound) is a miss.
    pub async fn get(&self, plan: &Plan) -> Option<Bytes> {
        if !plan.lookup {
            return None;
        }
        let found = match &self.backend {
            Backend::Local(entries) => self.find_in_memory(entries, plan),
            Backend::Redis(link) => self.find_in_redis(link, plan).await,
        };
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn find_in_memory(&self, entries: &Mutex<Entries>, plan: &Plan) -> Option<Bytes> {
        let now = self.clock.now();
        let mut entries = entries.lock();
        let Entries { map, tick } = &mut *entries;
        let entry = map.get_mut(&plan.key)?;
        if entry.expires_at <= now {
            map.remove(&plan.key);
            return None;
        }
        if !plan.fresh_enough(now, entry.stored_at) {
            return None;
        }
        *tick += 1;
        entry.last_used = *tick;
        Some(entry.body.clone())
    }

    async fn find_in_redis(&self, link: &RedisLink, plan: &Plan) -> Option<Bytes> {
        // Known down: no wait for another failure; the probe says when it is back.
        if link.is_down() {
            return None;
        }
        // One byte more than the largest entry: a longer value is not read
        // whole, and is refused.
        let mut cmd = redis::cmd("GETRANGE");
        cmd.arg(redis_key(plan)).arg(0).arg(REDIS_HEADER_BYTES + MAX_ENTRY_BYTES);
        let raw = match link.call::<Vec<u8>>(&cmd).await {
            Ok(raw) => raw,
            Err(e) => {
                link.went_down(&e);
                return None;
            }
        };
        let (stored_at, expires_at, body) = decode_entry(&raw)?;
        let now = wall(&self.clock);
        (expires_at > now && plan.fresh_enough(now, stored_at)).then(|| Bytes::copy_from_slice(body))
    }

    /// Whether `plan` reads the cache at all (not with `no-cache`).
    pub(crate) fn looks_up(&self, plan: &Plan) -> bool {
        plan.lookup
    }

    /// Whether an answer to `plan` is to be stored (so its body is worth
    /// reading into memory).
    pub(crate) fn stores(&self, plan: &Plan) -> bool {
        plan.store && !plan.ttl.is_zero()
    }

    /// Stores an answer (a successful one, whole; the caller checks), unless
    /// the request said `no-store`, its TTL is 0 or it is too large. A write
    /// Redis does not take (within its bound) is skipped.
    pub async fn put(&self, plan: &Plan, body: Bytes) {
        if !self.stores(plan) || body.len() > MAX_ENTRY_BYTES {
            return;
        }
        match &self.backend {
            Backend::Local(entries) => self.put_in_memory(entries, plan, body),
            Backend::Redis(link) => self.put_in_redis(link, plan, &body).await,
        }
    }

    fn put_in_memory(&self, entries: &Mutex<Entries>, plan: &Plan, body: Bytes) {
        let now = self.clock.now();
        let mut entries = entries.lock();
        let Entries { map, tick } = &mut *entries;
        if !map.contains_key(&plan.key) && map.len() >= CAPACITY {
            map.retain(|_, e| e.expires_at > now);
            if map.len() >= CAPACITY {
                let oldest = map.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        *tick += 1;
        let entry = Entry { body, stored_at: now, expires_at: now.saturating_add(plan.ttl), last_used: *tick };
        map.insert(plan.key.clone(), entry);
    }

    async fn put_in_redis(&self, link: &RedisLink, plan: &Plan, body: &[u8]) {
        if link.is_down() {
            return;
        }
        let now = wall(&self.clock);
        let value = encode_entry(now, now.saturating_add(plan.ttl), body);
        // Whole seconds, rounded up, plus the margin: Redis only collects.
        let ex = plan.ttl.saturating_add(REDIS_EXPIRY_MARGIN).as_secs() + u64::from(plan.ttl.subsec_nanos() > 0);
        let mut cmd = redis::cmd("SET");
        cmd.arg(redis_key(plan)).arg(value).arg("EX").arg(ex);
        if let Err(e) = link.call::<()>(&cmd).await {
            link.went_down(&e);
        }
    }

    pub fn stats(&self) -> CacheStats {
        let (backend, entries, capacity, redis) = match &self.backend {
            Backend::Local(entries) => ("local", Some(entries.lock().map.len()), Some(CAPACITY), None),
            Backend::Redis(link) => {
                let shared = if link.is_connected() { vec!["response_cache"] } else { Vec::new() };
                ("redis", None, None, Some(link.status(shared)))
            }
        };
        CacheStats {
            backend,
            entries,
            capacity,
            ttl_secs: self.ttl.as_secs_f64(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            redis,
        }
    }

    /// Entries held in this instance's memory now (expired ones not yet
    /// dropped included); 0 on Redis.
    pub fn len(&self) -> usize {
        match &self.backend {
            Backend::Local(entries) => entries.lock().map.len(),
            Backend::Redis(_) => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Plan {
    /// Whether an entry stored at `stored_at` is young enough for the
    /// request's `s-maxage`.
    fn fresh_enough(&self, now: Duration, stored_at: Duration) -> bool {
        self.max_age.is_none_or(|m| now.saturating_sub(stored_at) <= m)
    }
}

/// The entry's Redis key: behind the prefix, the plan's key (namespace and
/// hash), which names no secret.
fn redis_key(plan: &Plan) -> String {
    format!("{REDIS_PREFIX}{}", plan.key)
}

/// The gateway clock's wall time since the epoch: what instances sharing a
/// Redis compare.
fn wall(clock: &SharedClock) -> Duration {
    clock.wall().duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn encode_entry(stored_at: Duration, expires_at: Duration, body: &[u8]) -> Vec<u8> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut v = Vec::with_capacity(REDIS_HEADER_BYTES + body.len());
    v.extend_from_slice(REDIS_ENTRY_TAG);
    v.extend_from_slice(&ms(stored_at).to_be_bytes());
    v.extend_from_slice(&ms(expires_at).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// An entry read back: when it was stored, when it expires, the answer.
/// `None` for anything else (no entry, another tag, a body too large).
fn decode_entry(raw: &[u8]) -> Option<(Duration, Duration, &[u8])> {
    let rest = raw.strip_prefix(REDIS_ENTRY_TAG)?;
    let (stored_at, rest) = rest.split_first_chunk::<8>()?;
    let (expires_at, body) = rest.split_first_chunk::<8>()?;
    if body.len() > MAX_ENTRY_BYTES {
        return None;
    }
    let ms = |b: &[u8; 8]| Duration::from_millis(u64::from_be_bytes(*b));
    Some((ms(stored_at), ms(expires_at), body))
}

/// Feeds a JSON value into the hash unambiguously: a type tag, then the
/// value; objects with their members sorted.
fn hash_value(h: &mut Sha256, v: &Value) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"#");
            h.update(n.to_string().as_bytes());
            h.update([0]);
        }
        Value::String(s) => {
            h.update(b"s");
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::Array(a) => {
            h.update(b"[");
            h.update((a.len() as u64).to_le_bytes());
            for x in a {
                hash_value(h, x);
            }
        }
        Value::Object(m) => {
            h.update(b"{");
            h.update((m.len() as u64).to_le_bytes());
            let mut members: Vec<(&String, &Value)> = m.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            for (k, x) in members {
                h.update((k.len() as u64).to_le_bytes());
                h.update(k.as_bytes());
                hash_value(h, x);
            }
        }
    }
}

/// A stored answer replayed as the stream a client asked for: OpenAI's
/// chunk framing (`chat.completion.chunk`, or `text_completion` for text
/// completions), the content of each choice in one chunk, its finish reason
/// in the next, the usage chunk when `stream_options.include_usage` asks for
/// it, then `data: [DONE]`. `None` when the stored body is not an answer of
/// that shape (then the request goes upstream as a miss).
pub(crate) fn replay_as_stream(call: CallType, stored: &[u8], include_usage: bool) -> Option<Vec<Bytes>> {
    let v: Value = serde_json::from_slice(stored).ok()?;
    let choices = v.get("choices")?.as_array()?;
    let (object, chat) = match call {
        CallType::Chat => ("chat.completion.chunk", true),
        CallType::TextCompletion => ("text_completion", false),
        _ => return None,
    };
    let mut head = Map::new();
    head.insert("id".into(), v.get("id")?.clone());
    head.insert("object".into(), Value::String(object.into()));
    head.insert("created".into(), v.get("created").cloned().unwrap_or(Value::from(0)));
    head.insert("model".into(), v.get("model").cloned().unwrap_or(Value::Null));
    if let Some(fp) = v.get("system_fingerprint") {
        head.insert("system_fingerprint".into(), fp.clone());
    }
    let chunk = |choices: Vec<Value>, usage: Option<Value>| {
        let mut c = head.clone();
        c.insert("choices".into(), Value::Array(choices));
        if include_usage {
            c.insert("usage".into(), usage.unwrap_or(Value::Null));
        }
        Bytes::from(format!("data: {}\n\n", Value::Object(c)))
    };
    let mut events = Vec::new();
    let mut finishes = Vec::new();
    for (i, choice) in choices.iter().enumerate() {
        let index = choice.get("index").cloned().unwrap_or(Value::from(i));
        let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        let logprobs = choice.get("logprobs").cloned().unwrap_or(Value::Null);
        let first = if chat {
            let message = choice.get("message")?.as_object()?;
            let mut delta = Map::new();
            delta.insert("role".into(), message.get("role").cloned().unwrap_or(Value::String("assistant".into())));
            for (k, x) in message {
                match k.as_str() {
                    "role" => {}
                    // A delta's tool calls carry their position.
                    "tool_calls" => {
                        let calls = x.as_array().map(|calls| {
                            calls
                                .iter()
                                .enumerate()
                                .map(|(n, call)| {
                                    let mut call = call.as_object().cloned().unwrap_or_default();
                                    call.insert("index".into(), Value::from(n));
                                    Value::Object(call)
                                })
                                .collect::<Vec<_>>()
                        });
                        if let Some(calls) = calls {
                            delta.insert(k.clone(), Value::Array(calls));
                        }
                    }
                    _ => {
                        delta.insert(k.clone(), x.clone());
                    }
                }
            }
            serde_json::json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": null})
        } else {
            let text = choice.get("text").cloned().unwrap_or(Value::String(String::new()));
            serde_json::json!({"index": index, "text": text, "logprobs": logprobs, "finish_reason": null})
        };
        events.push(chunk(vec![first], None));
        finishes.push(if chat {
            serde_json::json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": finish})
        } else {
            serde_json::json!({"index": index, "text": "", "logprobs": null, "finish_reason": finish})
        });
    }
    for f in finishes {
        events.push(chunk(vec![f], None));
    }
    if include_usage {
        events.push(chunk(Vec::new(), Some(v.get("usage").cloned().unwrap_or(Value::Null))));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Some(events)
}

/// A streamed chat completion put back together into the answer a buffered
/// request would have had, so that a streamed miss fills the cache too. It
/// yields an answer only for a stream that is whole: ended by `data: [DONE]`,
/// no error event, every choice finished, and a usage chunk (the client asked
/// `stream_options.include_usage`: an answer without usage is not one a
/// buffered request would get). Holds at most [`MAX_ENTRY_BYTES`] of text.
#[derive(Default)]
pub(crate) struct ChatAssembler {
    parser: crate::gateway::sse::SseParser,
    head: Map<String, Value>,
    choices: std::collections::BTreeMap<u64, AssembledChoice>,
    usage: Option<Value>,
    done: bool,
    spoiled: bool,
    held: usize,
}

#[derive(Default)]
struct AssembledChoice {
    role: Option<Value>,
    content: Option<String>,
    refusal: Option<String>,
    tool_calls: std::collections::BTreeMap<u64, Map<String, Value>>,
    finish_reason: Option<Value>,
}

/// Appends a delta's text to what a choice has so far.
fn append(to: &mut Option<String>, text: Option<&str>) -> usize {
    match text {
        Some(t) => {
            to.get_or_insert_with(String::new).push_str(t);
            t.len()
        }
        None => 0,
    }
}

impl ChatAssembler {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Complete events of the stream, as the client gets them.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.spoiled {
            return;
        }
        let Ok(events) = self.parser.feed(bytes) else {
            self.spoiled = true;
            return;
        };
        for ev in events {
            if ev.data.trim() == "[DONE]" {
                self.done = true;
                continue;
            }
            match serde_json::from_str::<Value>(&ev.data) {
                Ok(chunk) if chunk.get("error").is_none() && ev.event.is_none() && !self.done => self.chunk(&chunk),
                _ => self.spoiled = true,
            }
            if self.held > MAX_ENTRY_BYTES {
                self.spoiled = true;
            }
        }
    }

    fn chunk(&mut self, chunk: &Value) {
        if self.head.is_empty() {
            for k in ["id", "created", "model", "system_fingerprint"] {
                if let Some(v) = chunk.get(k) {
                    self.head.insert(k.into(), v.clone());
                }
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        for c in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let choice = self.choices.entry(index).or_default();
            let delta = c.get("delta");
            let text = |k: &str| delta.and_then(|d| d.get(k)).and_then(Value::as_str);
            if let Some(role) = delta.and_then(|d| d.get("role")).filter(|r| r.is_string()) {
                choice.role = Some(role.clone());
            }
            self.held += append(&mut choice.content, text("content"));
            self.held += append(&mut choice.refusal, text("refusal"));
            for call in delta.and_then(|d| d.get("tool_calls")).and_then(Value::as_array).into_iter().flatten() {
                let n = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                let slot = choice.tool_calls.entry(n).or_default();
                for k in ["id", "type"] {
                    if let Some(v) = call.get(k).filter(|v| v.is_string()) {
                        slot.insert(k.into(), v.clone());
                    }
                }
                let f = call.get("function");
                let function = slot.entry("function").or_insert_with(|| serde_json::json!({}));
                for k in ["name", "arguments"] {
                    if let (Some(part), Some(obj)) =
                        (f.and_then(|f| f.get(k)).and_then(Value::as_str), function.as_object_mut())
                    {
                        let mut so_far = obj.get(k).and_then(Value::as_str).map(str::to_string);
                        self.held += append(&mut so_far, Some(part));
                        obj.insert(k.into(), Value::String(so_far.unwrap_or_default()));
                    }
                }
            }
            if let Some(f) = c.get("finish_reason").filter(|f| !f.is_null()) {
                choice.finish_reason = Some(f.clone());
            }
        }
    }

    /// The assembled answer, as JSON, if the stream was whole.
    pub(crate) fn finish(self) -> Option<Bytes> {
        let whole = self.done && !self.spoiled && !self.choices.is_empty();
        if !whole || self.usage.is_none() || self.choices.values().any(|c| c.finish_reason.is_none()) {
            return None;
        }
        let mut answer = self.head;
        answer.insert("object".into(), Value::String("chat.completion".into()));
        let choices: Vec<Value> = self
            .choices
            .into_iter()
            .map(|(index, c)| {
                let mut message = Map::new();
                message.insert("role".into(), c.role.unwrap_or(Value::String("assistant".into())));
                message.insert("content".into(), c.content.map_or(Value::Null, Value::String));
                message.insert("refusal".into(), c.refusal.map_or(Value::Null, Value::String));
                if !c.tool_calls.is_empty() {
                    let calls = c.tool_calls.into_values().map(Value::Object).collect();
                    message.insert("tool_calls".into(), Value::Array(calls));
                }
                serde_json::json!({"index": index, "message": message, "logprobs": null, "finish_reason": c.finish_reason})
            })
            .collect();
        answer.insert("choices".into(), Value::Array(choices));
        answer.insert("usage".into(), self.usage.unwrap_or(Value::Null));
        serde_json::to_vec(&Value::Object(answer)).ok().map(Bytes::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::clock::ManualClock;
    use serde_json::json;
    use std::sync::Arc;

    fn cache(yaml: &str) -> (ResponseCache, Arc<ManualClock>) {
        let cfg = Config::parse(yaml, "t.yaml").expect("parses").config;
        let clock = Arc::new(ManualClock::new());
        (ResponseCache::from_config(&cfg, clock.clone(), None).expect("cache on"), clock)
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_key_ignores_member_order_stream_and_metadata_but_not_the_content() {
        let (c, _) = cache("litellm_settings: {cache: true}\n");
        let who = Caller::Master;
        let key = |b: Value, stream: bool| {
            c.plan(CallType::Chat, stream, &Controls::default(), &who, "g", &body(b)).unwrap().key
        };
        let a = key(json!({"model": "g", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}), false);
        let b = key(
            json!({"temperature": 0.5, "messages": [{"content": "hi", "role": "user"}], "model": "alias", "stream": true, "metadata": {"x": 1}}),
            true,
        );
        assert_eq!(a, b);
        let c2 = key(json!({"model": "g", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.6}), false);
        assert_ne!(a, c2);
        assert_eq!(a.len(), 64, "{a}");
    }

    #[test]
    fn controls_are_read_and_bad_ones_refused() {
        let mut b = body(json!({"cache": {"no-cache": true, "ttl": 5, "s-max-age": 2, "namespace": "n"}}));
        let c = Controls::take_from(&mut b).unwrap();
        assert!(c.no_cache && !c.no_store);
        assert_eq!((c.ttl, c.max_age), (Some(Duration::from_secs(5)), Some(Duration::from_secs(2))));
        assert!(b.is_empty(), "the controls never go upstream");
        for bad in [
            json!("yes"),
            json!({"ttl": -1}),
            json!({"no-cache": "true"}),
            json!({"no_cache": true}),
            json!({"ttl": 1e300}),
        ] {
            let mut b = body(json!({ "cache": bad }));
            assert!(Controls::take_from(&mut b).is_err(), "{b:?}");
        }
    }

    #[tokio::test]
    async fn entries_expire_on_the_gateways_clock_and_the_cache_stays_bounded() {
        let (c, clock) = cache("litellm_settings: {cache: true, cache_params: {ttl: 10}}\n");
        let plan = |n: usize| {
            c.plan(CallType::Embedding, false, &Controls::default(), &Caller::Master, "g", &body(json!({ "input": n })))
                .unwrap()
        };
        c.put(&plan(0), Bytes::from_static(b"{}")).await;
        clock.advance(Duration::from_secs(9));
        assert!(c.get(&plan(0)).await.is_some());
        clock.advance(Duration::from_secs(1));
        assert!(c.get(&plan(0)).await.is_none(), "expired at its ttl");
        for n in 0..CAPACITY + 50 {
            c.put(&plan(n), Bytes::from_static(b"{}")).await;
        }
        assert_eq!(c.len(), CAPACITY);
        assert!(c.get(&plan(CAPACITY + 49)).await.is_some(), "the newest stays");
        assert!(c.get(&plan(0)).await.is_none(), "the least recently used went");
    }

    #[test]
    fn a_redis_entry_reads_back_and_anything_else_is_no_entry() {
        let (stored, expires) = (Duration::from_millis(1_700_000_000_123), Duration::from_millis(1_700_000_600_123));
        let raw = encode_entry(stored, expires, b"{\"id\":1}");
        assert_eq!(decode_entry(&raw), Some((stored, expires, &b"{\"id\":1}"[..])));
        assert_eq!(decode_entry(b""), None, "GETRANGE of a missing key");
        assert_eq!(decode_entry(&raw[..REDIS_HEADER_BYTES - 1]), None);
        assert_eq!(decode_entry(b"pmc0 and some other value"), None);
        let too_large = encode_entry(stored, expires, &vec![b' '; MAX_ENTRY_BYTES + 1]);
        assert_eq!(decode_entry(&too_large), None);
        let plan = Plan { key: "ns:abc".into(), lookup: true, store: true, ttl: DEFAULT_TTL, max_age: None };
        assert_eq!(redis_key(&plan), "postmortem:cache:ns:abc");
    }

    #[test]
    fn a_whole_stream_is_assembled_back_into_its_answer_and_a_broken_one_is_not() {
        let stored = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
        let events = replay_as_stream(CallType::Chat, stored.to_string().as_bytes(), true).unwrap();
        let mut whole = ChatAssembler::new();
        for e in &events {
            whole.feed(e);
        }
        let back: Value = serde_json::from_slice(&whole.finish().expect("whole")).unwrap();
        assert_eq!(back, stored);
        let mut cut = ChatAssembler::new();
        for e in &events[..events.len() - 1] {
            cut.feed(e);
        }
        assert!(cut.finish().is_none(), "no [DONE]: not whole");
        let without_usage = replay_as_stream(CallType::Chat, stored.to_string().as_bytes(), false).unwrap();
        let mut a = ChatAssembler::new();
        for e in &without_usage {
            a.feed(e);
        }
        assert!(a.finish().is_none(), "no usage: not what a buffered request gets");
    }

    #[test]
    fn a_chat_answer_replays_as_a_chunk_stream_ending_in_done() {
        let stored = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
        let events = replay_as_stream(CallType::Chat, stored.to_string().as_bytes(), true).unwrap();
        let text: String = events.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
        assert!(text.starts_with("data: {") && text.ends_with("data: [DONE]\n\n"), "{text}");
        assert!(text.contains(r#""delta":{"role":"assistant","content":"hi"}"#), "{text}");
        assert!(text.contains(r#""finish_reason":"stop""#) && text.contains(r#""total_tokens":2"#), "{text}");
    }
}
