//! Virtual keys: who may call the gateway, which models they may use, how much
//! they may spend and how fast.
//!
//! Secrets are never stored: a key is kept under the SHA-256 of its secret, and
//! only a masked form (`sk-...abcd`) is ever shown. Model access is compiled
//! once into hash sets so a check costs a few hash lookups however many patterns
//! a key has. A bare model name is matched against `provider/*` patterns through
//! the CURRENT catalog's provider index (incident 2: an index that lagged the
//! cost map refused `claude-sonnet-4-6` to an `anthropic/*` key).

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::gateway::catalog::Catalog;
use crate::gateway::clock::SharedClock;
use crate::gateway::rate::RateLimiter;
use crate::gateway::store::StoredKey;

pub(crate) use crate::gateway::rate::RateLimitKind;

/// Random characters after `sk-` in a generated key (6 bits each: 192 bits).
pub(crate) const GENERATED_SECRET_LEN: usize = 32;

const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyError {
    /// Deliberately says nothing about the presented value.
    #[error("invalid or missing API key")]
    Unauthorized,
    /// LiteLLM's wording, so clients and runbooks that match on it keep working.
    #[error(
        "key not allowed to access model. This key can only access models={}. Tried to access {model}",
        python_list(.allowed)
    )]
    ModelDenied { allowed: Vec<String>, model: String },
    #[error("Budget has been exceeded! Current cost: {spend}, Max budget: {budget}")]
    BudgetExceeded { spend: f64, budget: f64 },
    #[error(
        "rate limit exceeded: {current} of {limit} {kind} used in the last 60 s; retry after {}s",
        .retry_after.as_secs()
    )]
    RateLimited { kind: RateLimitKind, limit: u64, current: u64, retry_after: Duration },
    #[error("invalid model pattern {pattern:?}: {reason}")]
    InvalidPattern { pattern: String, reason: &'static str },
    #[error("invalid key spec: {0}")]
    InvalidSpec(String),
    #[error("a key with this secret already exists")]
    DuplicateKey,
}

/// `['a', 'b']`, as Python prints a list of strings.
fn python_list(items: &[String]) -> String {
    let inner: Vec<String> =
        items.iter().map(|s| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))).collect();
    format!("[{}]", inner.join(", "))
}

// ---------------------------------------------------------------------------
// Spec and access list
// ---------------------------------------------------------------------------

/// How a key is configured (config file or `/key/generate` body).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// Allowed models: exact names, `provider/*`, prefix patterns like
    /// `bedrock/us.*`, or `*`. Empty means all models (as in LiteLLM).
    #[serde(default)]
    pub models: Vec<String>,
    /// USD; requests are refused once spend reaches it.
    #[serde(default)]
    pub max_budget: Option<f64>,
    /// Also accepted as `rpm_limit` (LiteLLM's name).
    #[serde(default, alias = "rpm_limit")]
    pub rpm: Option<u64>,
    /// Also accepted as `tpm_limit` (LiteLLM's name).
    #[serde(default, alias = "tpm_limit")]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub metadata: Value,
    /// Also accepted as `key_alias` (LiteLLM's name).
    #[serde(default, alias = "key_alias")]
    pub alias: Option<String>,
    /// Who the key is for (LiteLLM's fields; recorded, shown, not enforced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// Unix seconds after which the key is refused (from `duration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// A blocked key is refused until unblocked (`/key/block`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
}

/// LiteLLM's key `duration`: `30s`, `30m`, `30h`, `30d` (a bare number is
/// seconds), as seconds.
pub(crate) fn parse_duration(s: &str) -> Result<u64, KeyError> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 =
        num.parse().map_err(|_| KeyError::InvalidSpec(format!("duration {s:?}: expected e.g. 30s, 30m, 30h, 30d")))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(KeyError::InvalidSpec(format!("duration {s:?}: the unit must be s, m, h or d"))),
    };
    n.checked_mul(unit).ok_or_else(|| KeyError::InvalidSpec(format!("duration {s:?} is too long")))
}

/// A key's model patterns compiled for constant-cost checks.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessList {
    patterns: Vec<String>,
    all: bool,
    exact: HashSet<String>,
    /// `P` for every `P/*` pattern: grants bare names the catalog maps to `P`.
    provider_wildcards: HashSet<String>,
    /// Literal text before a trailing `*` (`anthropic/`, `bedrock/us.`).
    prefixes: HashSet<String>,
    /// Distinct lengths of `prefixes`, ascending.
    prefix_lens: Vec<usize>,
}

impl AccessList {
    /// Compiles `models`. A `*` is only allowed as the last character; anything
    /// else is refused rather than guessed at.
    pub fn compile(models: &[String]) -> Result<AccessList, KeyError> {
        let mut list = AccessList {
            patterns: models.to_vec(),
            all: models.is_empty(),
            exact: HashSet::new(),
            provider_wildcards: HashSet::new(),
            prefixes: HashSet::new(),
            prefix_lens: Vec::new(),
        };
        let invalid = |pattern: &str, reason| KeyError::InvalidPattern { pattern: pattern.to_string(), reason };
        for p in models {
            if p.is_empty() || p.trim() != p {
                return Err(invalid(p, "empty or surrounded by whitespace"));
            }
            let Some(prefix) = p.strip_suffix('*') else {
                if p.contains('*') {
                    return Err(invalid(p, "'*' is only allowed at the end"));
                }
                list.exact.insert(p.clone());
                continue;
            };
            if prefix.contains('*') {
                return Err(invalid(p, "'*' is only allowed at the end"));
            }
            if prefix.is_empty() {
                list.all = true;
                continue;
            }
            if let Some(provider) = prefix.strip_suffix('/') {
                if !provider.is_empty() && !provider.contains('/') {
                    list.provider_wildcards.insert(provider.to_string());
                }
            }
            list.prefixes.insert(prefix.to_string());
        }
        let mut lens: Vec<usize> = list.prefixes.iter().map(String::len).collect();
        lens.sort_unstable();
        lens.dedup();
        list.prefix_lens = lens;
        Ok(list)
    }

    /// Whether `model` may be called. `provider/rest` needs a pattern whose
    /// literal text is a prefix of it (so `anthropic/*` grants neither
    /// `openai/x` nor `anthropic-evil/x`); a bare name needs `P/*` where `P` is
    /// the provider the CURRENT `catalog` gives it.
    pub fn allows(&self, model: &str, catalog: &Catalog) -> bool {
        if self.all || self.exact.contains(model) {
            return true;
        }
        for &len in &self.prefix_lens {
            if len > model.len() {
                break;
            }
            if model.get(..len).is_some_and(|p| self.prefixes.contains(p)) {
                return true;
            }
        }
        if !model.contains('/') && !self.provider_wildcards.is_empty() {
            if let Some(provider) = catalog.provider_of(model) {
                return self.provider_wildcards.contains(provider);
            }
        }
        false
    }

    /// [`AccessList::allows`] as a `Result` with LiteLLM's denial message
    /// (the tests' shorthand; production asks `allows`, then `denial_message`).
    #[cfg(test)]
    pub fn check(&self, model: &str, catalog: &Catalog) -> Result<(), KeyError> {
        if self.allows(model, catalog) {
            Ok(())
        } else {
            Err(self.denial(model))
        }
    }

    /// The [`KeyError::ModelDenied`] for `model`.
    pub fn denial(&self, model: &str) -> KeyError {
        KeyError::ModelDenied { allowed: self.patterns.clone(), model: model.to_string() }
    }

    /// LiteLLM's text: `key not allowed to access model. This key can only
    /// access models=['anthropic/*']. Tried to access claude-sonnet-4-6`.
    pub(crate) fn denial_message(&self, model: &str) -> String {
        self.denial(model).to_string()
    }
}

// ---------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------

type KeyHash = [u8; 32];

fn hash_secret(secret: &str) -> KeyHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// `sk-...abcd`: the `sk-` prefix if present, and the last four characters only
/// when the secret is long enough that they give nothing useful away.
fn mask(secret: &str) -> String {
    let prefix = if secret.starts_with("sk-") { "sk-" } else { "" };
    let chars: Vec<char> = secret.chars().collect();
    let tail: String = if chars.len() >= 20 { chars[chars.len() - 4..].iter().collect() } else { String::new() };
    format!("{prefix}...{tail}")
}

/// What may be shown about a key: never the secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyInfo {
    /// Hex SHA-256 of the secret (LiteLLM's hashed `token`).
    pub key_hash: String,
    /// e.g. `sk-...abcd`.
    pub masked: String,
    pub alias: Option<String>,
    pub models: Vec<String>,
    pub max_budget: Option<f64>,
    pub spend: f64,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub metadata: Value,
    /// Unix seconds, from the store's clock.
    pub created_at: u64,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub expires_at: Option<u64>,
    pub blocked: bool,
}

/// One authenticated key with its live counters.
#[derive(Debug)]
pub struct KeyRecord {
    hash: KeyHash,
    masked: String,
    spec: KeySpec,
    access: AccessList,
    created_at: u64,
    spend: Mutex<f64>,
    limits: RateLimiter,
    /// Made at run time (stored), not from the config file.
    runtime: bool,
}

impl KeyRecord {
    fn new(secret: &str, spec: KeySpec, created_at: u64) -> Result<KeyRecord, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::InvalidSpec("the secret is empty".into()));
        }
        KeyRecord::assemble(hash_secret(secret), mask(secret), spec, created_at)
    }

    /// A key read back from the store: its hash, not its secret.
    fn from_stored(stored: &StoredKey) -> Result<KeyRecord, KeyError> {
        let hash = parse_hash(&stored.hash)
            .ok_or_else(|| KeyError::InvalidSpec(format!("stored key hash {:?} is not 64 hex digits", stored.hash)))?;
        let spec: KeySpec = serde_json::from_str(&stored.spec_json)
            .map_err(|e| KeyError::InvalidSpec(format!("stored key {}: {e}", stored.hash)))?;
        let mut record = KeyRecord::assemble(hash, stored.masked.clone(), spec, stored.created_at)?;
        record.runtime = true;
        Ok(record)
    }

    /// The one place a record is built: the spec is checked and compiled
    /// here, whatever the key came from (config, `/key/generate`, the store,
    /// `/key/update`).
    fn assemble(hash: KeyHash, masked: String, spec: KeySpec, created_at: u64) -> Result<KeyRecord, KeyError> {
        if let Some(b) = spec.max_budget {
            if !b.is_finite() || b < 0.0 {
                return Err(KeyError::InvalidSpec(format!("max_budget must be a non-negative number, got {b}")));
            }
        }
        Ok(KeyRecord {
            hash,
            masked,
            access: AccessList::compile(&spec.models)?,
            limits: RateLimiter::new(spec.rpm, spec.tpm),
            spec,
            created_at,
            spend: Mutex::new(0.0),
            runtime: false,
        })
    }

    /// What the store keeps of this key (never the secret).
    pub(crate) fn to_stored(&self) -> StoredKey {
        StoredKey {
            hash: self.key_hash(),
            masked: self.masked.clone(),
            spec_json: serde_json::to_string(&self.spec).unwrap_or_else(|_| "{}".into()),
            created_at: self.created_at,
        }
    }

    /// Made at run time (`/key/generate`), as opposed to the config file.
    pub(crate) fn is_runtime(&self) -> bool {
        self.runtime
    }

    /// Why the key may not be used at `now_unix`, if it may not.
    pub fn refusal(&self, now_unix: u64) -> Option<String> {
        if self.spec.blocked {
            return Some("this key is blocked".into());
        }
        match self.spec.expires_at {
            Some(t) if now_unix >= t => Some(format!("this key expired at {t} (unix seconds)")),
            _ => None,
        }
    }

    /// Sets the spend read back from the store at start-up.
    pub(crate) fn restore_spend(&self, usd: f64) {
        if usd.is_finite() && usd >= 0.0 {
            *self.spend.lock() = usd;
        }
    }

    /// Spend raised to what the shared database says this key has spent
    /// (with what is still queued here); never lowered, since spend only grows.
    pub(crate) fn raise_spend_to(&self, usd: f64) {
        if usd.is_finite() {
            let mut s = self.spend.lock();
            if usd > *s {
                *s = usd;
            }
        }
    }

    pub fn key_hash(&self) -> String {
        hex::encode(self.hash)
    }

    /// The SHA-256 of the secret, as bytes (a map key without the hex).
    pub(crate) fn hash_bytes(&self) -> [u8; 32] {
        self.hash
    }

    pub fn masked(&self) -> &str {
        &self.masked
    }

    pub fn spec(&self) -> &KeySpec {
        &self.spec
    }

    pub fn alias(&self) -> Option<&str> {
        self.spec.alias.as_deref()
    }

    pub fn access(&self) -> &AccessList {
        &self.access
    }

    /// Adds a request's cost. Negative or non-finite amounts are ignored (and
    /// logged) so a pricing bug cannot refund a key; says whether it counted.
    pub fn add_spend(&self, usd: f64) -> bool {
        if !usd.is_finite() || usd < 0.0 {
            tracing::warn!(key = %self.masked, usd, "ignoring invalid spend amount");
            return false;
        }
        *self.spend.lock() += usd;
        true
    }

    pub fn spend(&self) -> f64 {
        *self.spend.lock()
    }

    /// Refuses once spend has reached `max_budget` (LiteLLM uses `>=` too).
    pub(crate) fn check_budget(&self) -> Result<(), KeyError> {
        let Some(budget) = self.spec.max_budget else {
            return Ok(());
        };
        let spend = self.spend();
        if spend >= budget {
            Err(KeyError::BudgetExceeded { spend, budget })
        } else {
            Ok(())
        }
    }

    /// Counts one request at `now` (pass `clock.now()` of the gateway's
    /// `SharedClock`) unless the key is already at its rpm, or its tpm is used up.
    pub fn check_and_record_request(&self, now: Duration) -> Result<(), KeyError> {
        self.limits.check_and_record(now).map_err(|e| KeyError::RateLimited {
            kind: e.kind,
            limit: e.limit,
            current: e.current,
            retry_after: e.retry_after,
        })
    }

    /// Records tokens used by a finished request (they count against tpm).
    pub(crate) fn record_tokens(&self, now: Duration, n: u64) {
        self.limits.record_tokens(now, n);
    }

    pub fn info(&self) -> KeyInfo {
        KeyInfo {
            key_hash: self.key_hash(),
            masked: self.masked.clone(),
            alias: self.spec.alias.clone(),
            models: self.spec.models.clone(),
            max_budget: self.spec.max_budget,
            spend: self.spend(),
            rpm: self.spec.rpm,
            tpm: self.spec.tpm,
            metadata: self.spec.metadata.clone(),
            created_at: self.created_at,
            user_id: self.spec.user_id.clone(),
            team_id: self.spec.team_id.clone(),
            expires_at: self.spec.expires_at,
            blocked: self.spec.blocked,
        }
    }
}

// ---------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------

/// All virtual keys, indexed by the hash of their secret. Thread-safe.
#[derive(Debug)]
pub struct KeyStore {
    keys: RwLock<HashMap<KeyHash, Arc<KeyRecord>>>,
    /// Stamps `created_at`. Rate limits take `now` from the caller (pass
    /// `clock.now()` of the same clock).
    clock: SharedClock,
}

impl KeyStore {
    pub fn new(clock: SharedClock) -> KeyStore {
        KeyStore { keys: RwLock::new(HashMap::new()), clock }
    }

    /// Adds a key whose secret comes from configuration.
    pub fn insert_from_config(&self, secret: &str, spec: KeySpec) -> Result<KeyInfo, KeyError> {
        let record = KeyRecord::new(secret, spec, self.now_unix())?;
        Ok(self.insert(record)?.info())
    }

    /// Adds a record unless a key with its secret exists.
    fn insert(&self, record: KeyRecord) -> Result<Arc<KeyRecord>, KeyError> {
        let record = Arc::new(record);
        let mut keys = self.keys.write();
        if keys.contains_key(&record.hash) {
            return Err(KeyError::DuplicateKey);
        }
        keys.insert(record.hash, Arc::clone(&record));
        Ok(record)
    }

    fn now_unix(&self) -> u64 {
        self.clock.wall().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    /// Adds a key read back from the store (a run-time key of an earlier start).
    pub(crate) fn insert_stored(&self, stored: &StoredKey) -> Result<Arc<KeyRecord>, KeyError> {
        self.insert(KeyRecord::from_stored(stored)?)
    }

    /// Creates a run-time key: the given secret (LiteLLM's `key` field), or
    /// a fresh `sk-` + 32 URL-safe random characters (from the OS RNG). The
    /// secret is returned once and never stored.
    pub fn generate(&self, spec: KeySpec, secret: Option<String>) -> Result<(String, Arc<KeyRecord>), KeyError> {
        let secret = match secret {
            Some(s) if s.len() < 8 => return Err(KeyError::InvalidSpec("a key must be at least 8 characters".into())),
            Some(s) => s,
            None => new_secret(),
        };
        let mut record = KeyRecord::new(&secret, spec, self.now_unix())?;
        record.runtime = true;
        Ok((secret, self.insert(record)?))
    }

    /// A run-time key with a new spec (or, with `secret`, a new secret too),
    /// keeping its spend and creation time; the old record stops working.
    pub fn replace(&self, old: &KeyRecord, spec: KeySpec, secret: Option<&str>) -> Result<Arc<KeyRecord>, KeyError> {
        let mut record = match secret {
            Some(s) => KeyRecord::new(s, spec, old.created_at)?,
            None => KeyRecord::assemble(old.hash, old.masked.clone(), spec, old.created_at)?,
        };
        record.runtime = true;
        *record.spend.lock() = old.spend();
        let record = Arc::new(record);
        let mut keys = self.keys.write();
        keys.remove(&old.hash);
        keys.insert(record.hash, Arc::clone(&record));
        Ok(record)
    }

    /// The key for a presented secret. Looked up by hash, then the hashes are
    /// compared in constant time.
    pub fn authenticate(&self, presented: &str) -> Option<Arc<KeyRecord>> {
        if presented.is_empty() {
            return None;
        }
        let hash = hash_secret(presented);
        let keys = self.keys.read();
        let record = keys.get(&hash)?;
        bool::from(record.hash.ct_eq(&hash)).then(|| Arc::clone(record))
    }

    /// [`KeyStore::authenticate`] as a `Result` (the unit tests'; the
    /// gateway's authentication answers with its own errors).
    #[cfg(test)]
    pub(crate) fn authenticate_or_err(&self, presented: &str) -> Result<Arc<KeyRecord>, KeyError> {
        self.authenticate(presented).ok_or(KeyError::Unauthorized)
    }

    /// A key by its secret or by its hex hash.
    pub fn get(&self, secret_or_hash: &str) -> Option<Arc<KeyRecord>> {
        let keys = self.keys.read();
        parse_hash(secret_or_hash)
            .and_then(|h| keys.get(&h))
            .or_else(|| keys.get(&hash_secret(secret_or_hash)))
            .cloned()
    }

    /// Removes a key (by secret or hex hash); `true` if it existed.
    pub fn delete(&self, secret_or_hash: &str) -> bool {
        let mut keys = self.keys.write();
        if let Some(h) = parse_hash(secret_or_hash) {
            if keys.remove(&h).is_some() {
                return true;
            }
        }
        keys.remove(&hash_secret(secret_or_hash)).is_some()
    }

    /// All keys, sorted by hash for a stable order. No secrets.
    pub fn list(&self) -> Vec<KeyInfo> {
        let mut out: Vec<KeyInfo> = self.keys.read().values().map(|r| r.info()).collect();
        out.sort_by(|a, b| a.key_hash.cmp(&b.key_hash));
        out
    }

    /// How many keys (the unit tests'; production asks only `is_empty`).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.keys.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.read().is_empty()
    }
}

/// `sk-` + 32 URL-safe random characters from the OS RNG (192 bits).
pub(crate) fn new_secret() -> String {
    let mut bytes = [0u8; GENERATED_SECRET_LEN];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let random: String = bytes.iter().map(|b| char::from(URL_SAFE[usize::from(b & 63)])).collect();
    format!("sk-{random}")
}

/// The hex hashes a key given by secret or by hash may be stored under:
/// the string itself when it is a hash, and the hash of it as a secret.
pub(crate) fn candidate_hashes(secret_or_hash: &str) -> Vec<String> {
    let mut out: Vec<String> = parse_hash(secret_or_hash).map(hex::encode).into_iter().collect();
    out.push(hex::encode(hash_secret(secret_or_hash)));
    out
}

fn parse_hash(s: &str) -> Option<KeyHash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::catalog::{ModelEntry, ValidationLimits};
    use crate::gateway::clock::{Clock, ManualClock, SystemClock};
    use crate::gateway::rate::RATE_WINDOW;
    use std::time::{SystemTime, UNIX_EPOCH};

    fn spec(models: &[&str]) -> KeySpec {
        KeySpec { models: models.iter().map(|s| s.to_string()).collect(), ..KeySpec::default() }
    }

    fn entry(provider: &str) -> ModelEntry {
        ModelEntry { litellm_provider: Some(provider.to_string()), ..ModelEntry::default() }
    }

    fn small_catalog() -> Catalog {
        Catalog::new(
            [
                ("claude-sonnet-4-6".to_string(), entry("anthropic")),
                ("gpt-4o".to_string(), entry("openai")),
                ("bedrock/us.anthropic.claude-x".to_string(), entry("bedrock")),
                ("bedrock_converse/nova-pro".to_string(), entry("bedrock_converse")),
                ("nova-lite".to_string(), entry("bedrock_converse")),
            ],
            "test",
            UNIX_EPOCH,
        )
    }

    fn access(models: &[&str]) -> AccessList {
        AccessList::compile(&spec(models).models).expect("valid patterns")
    }

    #[test]
    fn wildcards_grant_exactly_what_they_say() {
        let cat = small_catalog();
        let a = access(&["anthropic/*"]);
        assert!(a.allows("anthropic/claude-anything", &cat));
        assert!(a.allows("claude-sonnet-4-6", &cat));
        assert!(!a.allows("openai/gpt-4o", &cat));
        assert!(!a.allows("gpt-4o", &cat));
        assert!(!a.allows("anthropic-evil/claude-sonnet-4-6", &cat));
        assert!(!a.allows("anthropic", &cat));
        assert!(!a.allows("unknown-bare-model", &cat));

        let b = access(&["bedrock/*"]);
        assert!(b.allows("bedrock/anything", &cat));
        assert!(!b.allows("bedrock_converse/nova-pro", &cat));
        assert!(!b.allows("nova-lite", &cat));
        assert!(b.allows("us.anthropic.claude-x", &cat));

        let us = access(&["bedrock/us.*"]);
        assert!(us.allows("bedrock/us.anthropic.claude-x", &cat));
        assert!(!us.allows("bedrock/eu.anthropic.claude-x", &cat));
        assert!(!us.allows("us.anthropic.claude-x", &cat));

        assert!(access(&["*"]).allows("anything/at-all", &cat));
        assert!(access(&[]).allows("anything", &cat));
        let exact = access(&["gpt-4o"]);
        assert!(exact.allows("gpt-4o", &cat));
        assert!(!exact.allows("gpt-4o-mini", &cat));
        assert!(!exact.allows("openai/gpt-4o", &cat));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in ["", " gpt-4o", "openai/*-mini", "**", "*/gpt-4o"] {
            let err = AccessList::compile(&[p.to_string()]).unwrap_err();
            assert!(matches!(err, KeyError::InvalidPattern { .. }), "{p:?}: {err}");
        }
    }

    #[test]
    fn denial_message_matches_litellm() {
        let list = access(&["anthropic/*"]);
        let err = list.check("claude-sonnet-4-6", &Catalog::empty("t", UNIX_EPOCH)).unwrap_err();
        let want = "key not allowed to access model. This key can only access models=['anthropic/*']. Tried to access claude-sonnet-4-6";
        assert_eq!(err.to_string(), want);
        assert_eq!(list.denial_message("claude-sonnet-4-6"), want);
        assert_eq!(
            access(&["a/*", "b"]).denial_message("c"),
            "key not allowed to access model. This key can only access models=['a/*', 'b']. Tried to access c"
        );
    }

    #[test]
    fn keys_are_stored_hashed_and_listed_masked() {
        let store = KeyStore::new(SystemClock::shared());
        let (secret, record) = store.generate(spec(&["gpt-4o"]), None).expect("generated");
        let info = record.info();
        assert_eq!(secret.len(), 3 + GENERATED_SECRET_LEN);
        assert!(secret.starts_with("sk-"));
        assert!(secret[3..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(info.masked, format!("sk-...{}", &secret[secret.len() - 4..]));
        assert_eq!(info.key_hash, hex::encode(Sha256::digest(secret.as_bytes())));

        let listed = serde_json::to_string(&store.list()).expect("serialises");
        assert!(!listed.contains(&secret));
        assert!(!format!("{:?}", store).contains(&secret));

        assert!(store.authenticate(&secret).is_some());
        assert!(store.authenticate(&format!("{secret}x")).is_none());
        assert!(store.authenticate("").is_none());
        assert_eq!(store.authenticate_or_err("nope").unwrap_err(), KeyError::Unauthorized);

        assert_eq!(store.get(&info.key_hash).map(|r| r.info().masked), Some(info.masked.clone()));
        assert!(store.get(&secret).is_some());
        assert!(store.delete(&info.key_hash));
        assert!(!store.delete(&secret));
        assert!(store.authenticate(&secret).is_none());
    }

    #[test]
    fn config_keys_short_secrets_and_duplicates() {
        let store = KeyStore::new(SystemClock::shared());
        let info = store.insert_from_config("sk-1234", spec(&[])).expect("inserted");
        assert_eq!(info.masked, "sk-...");
        assert_eq!(store.insert_from_config("sk-1234", spec(&[])).unwrap_err(), KeyError::DuplicateKey);
        assert!(matches!(store.insert_from_config("", spec(&[])), Err(KeyError::InvalidSpec(_))));
        let bad_budget = KeySpec { max_budget: Some(f64::NAN), ..KeySpec::default() };
        assert!(store.insert_from_config("sk-other", bad_budget).is_err());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn spec_rejects_unknown_fields() {
        let ok: KeySpec = serde_json::from_str(r#"{"models": ["anthropic/*"], "max_budget": 10}"#).expect("valid spec");
        assert_eq!(ok.max_budget, Some(10.0));
        let aliased: KeySpec = serde_json::from_str(r#"{"key_alias": "ci"}"#).expect("valid");
        assert_eq!(aliased.alias.as_deref(), Some("ci"));
        let err = serde_json::from_str::<KeySpec>(r#"{"model": ["x"]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `model`"), "{err}");
    }

    #[test]
    fn budget_is_enforced_once_reached() {
        let store = KeyStore::new(SystemClock::shared());
        let s = KeySpec { max_budget: Some(1.0), ..KeySpec::default() };
        store.insert_from_config("sk-budget", s).expect("inserted");
        let key = store.authenticate("sk-budget").expect("auth");
        key.add_spend(0.6);
        assert!(key.check_budget().is_ok());
        key.add_spend(-5.0);
        key.add_spend(f64::NAN);
        assert_eq!(key.spend(), 0.6);
        key.add_spend(0.4);
        let err = key.check_budget().unwrap_err();
        assert_eq!(err, KeyError::BudgetExceeded { spend: 1.0, budget: 1.0 });
        assert_eq!(err.to_string(), "Budget has been exceeded! Current cost: 1, Max budget: 1");
        assert_eq!(store.get("sk-budget").map(|r| r.spend()), Some(1.0));
    }

    #[test]
    fn rpm_window_slides_with_the_manual_clock() {
        let clock = ManualClock::shared();
        let store = KeyStore::new(clock.clone());
        let s = KeySpec { rpm: Some(2), ..KeySpec::default() };
        let info = store.insert_from_config("sk-rpm", s).expect("inserted");
        let wall = clock.wall().duration_since(UNIX_EPOCH).expect("after 1970");
        assert_eq!(info.created_at, wall.as_secs());
        let key = store.authenticate("sk-rpm").expect("auth");
        assert!(key.check_and_record_request(clock.now()).is_ok());
        clock.advance(Duration::from_secs(30));
        assert!(key.check_and_record_request(clock.now()).is_ok());
        let err = key.check_and_record_request(clock.now()).unwrap_err();
        assert_eq!(
            err,
            KeyError::RateLimited {
                kind: RateLimitKind::Rpm,
                limit: 2,
                current: 2,
                retry_after: Duration::from_secs(30)
            }
        );
        clock.advance(Duration::from_millis(29_999));
        assert!(key.check_and_record_request(clock.now()).is_err());
        clock.advance(Duration::from_millis(1));
        // The request at t=0 has left the window; the one at t=30 s has not.
        assert!(key.check_and_record_request(clock.now()).is_ok());
        assert!(key.check_and_record_request(clock.now()).is_err());
    }

    #[test]
    fn tpm_counts_recorded_tokens() {
        let clock = ManualClock::shared();
        let store = KeyStore::new(clock.clone());
        let s = KeySpec { tpm: Some(1000), ..KeySpec::default() };
        store.insert_from_config("sk-tpm", s).expect("inserted");
        let key = store.authenticate("sk-tpm").expect("auth");
        assert!(key.check_and_record_request(clock.now()).is_ok());
        key.record_tokens(clock.now(), 999);
        assert!(key.check_and_record_request(clock.now()).is_ok());
        key.record_tokens(clock.now(), 1);
        let err = key.check_and_record_request(clock.now()).unwrap_err();
        assert!(matches!(err, KeyError::RateLimited { kind: RateLimitKind::Tpm, current: 1000, .. }));
        clock.advance(RATE_WINDOW);
        assert!(key.check_and_record_request(clock.now()).is_ok());
    }

    #[test]
    fn bare_name_access_follows_the_catalog_in_use() {
        let limits = ValidationLimits { min_models: 1, max_shrink_ratio: 0.0 };
        let old = crate::gateway::catalog::parse_catalog(
            br#"{"gpt-4o": {"litellm_provider": "openai"}}"#,
            "old",
            None,
            &limits,
            SystemTime::UNIX_EPOCH,
        )
        .expect("valid");
        let a = access(&["anthropic/*"]);
        assert!(!a.allows("claude-sonnet-4-6", &old));
        assert!(a.allows("claude-sonnet-4-6", &small_catalog()));
    }
}
