//! The model catalog: LiteLLM's cost map (`model_prices_and_context_window.json`)
//! plus the indexes derived from it, and the store that reloads it.
//!
//! Two real LiteLLM incidents shaped this module:
//!
//! * **Stale derived indexes** (Feb 2026): a reload replaced the cost map but did
//!   not rebuild the per-provider model sets derived from it, so a key limited to
//!   `anthropic/*` was refused the new bare model `claude-sonnet-4-6`. Here a
//!   [`Catalog`] can only be built by a constructor that derives its indexes from
//!   the same models, and the store swaps the whole `Catalog` (map + indexes) as
//!   one value.
//! * **Silent fallback** (Jan 2026): a cost map with an extra `{` made LiteLLM
//!   fall back, with only a warning, to an old bundled copy, so new models were
//!   priced at 0. Here a refused reload keeps the current map and marks the
//!   status stale with the reason; start-up falls back to the bundled copy only
//!   loudly (`stale = true`, `using_bundled = true`, an error log).
//!
//! [`CatalogBugs`] re-creates both mechanisms on purpose, for the regression
//! harness only.

use foldhash::{HashMap, HashMapExt};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::gateway::error::json_type;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The cost map compiled into the binary: the packaged backup of LiteLLM 1.109.1
/// (see `fixtures/litellm/PROVENANCE.md`). Used only when no source is configured
/// or the configured source fails at start-up.
pub static BUNDLED_COST_MAP: &[u8] = include_bytes!("../../fixtures/litellm/model_prices_and_context_window.json");

/// The `source` name reported for [`BUNDLED_COST_MAP`].
pub(crate) const BUNDLED_SOURCE: &str = "bundled:model_prices_and_context_window.json";

/// Whether a source name denotes the bundled copy ([`BUNDLED_SOURCE`], or the
/// short `bundled` a caller may pass when reloading it).
pub(crate) fn is_bundled_source(source: &str) -> bool {
    source == BUNDLED_SOURCE || source == "bundled"
}

/// Top-level keys of the cost map that are not models (LiteLLM's
/// `RESERVED_TOP_LEVEL_KEYS`). They are neither counted nor indexed.
pub(crate) const RESERVED_KEYS: [&str; 2] = ["sample_spec", "fallback_generalizations"];

/// Upper bound on a fetched cost map; the real one is ~3 MB. Protects the
/// gateway from a runaway or hostile source.
pub(crate) const MAX_COST_MAP_BYTES: usize = 64 * 1024 * 1024;

/// Fetch timeout used by `CatalogStore::load_startup_with` (LiteLLM uses 5 s too).
pub(crate) const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a cost map was not adopted (or could not be fetched).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogError {
    #[error("cost map is not valid JSON (line {line}, column {column}): {message}")]
    Parse { line: usize, column: usize, message: String },
    #[error("cost map must be a JSON object at the top level, found {found}")]
    NotAnObject { found: &'static str },
    #[error("cost map entry {model:?} must be a JSON object, found {found}")]
    EntryNotAnObject { model: String, found: &'static str },
    #[error("cost map has {count} models, fewer than the minimum of {min}")]
    TooFewModels { count: usize, min: usize },
    #[error(
        "cost map shrank to {count} models from {previous} (minimum allowed is {ratio} x {previous} = {min_allowed:.0})"
    )]
    Shrunk { count: usize, previous: usize, ratio: f64, min_allowed: f64 },
    #[error("model {model:?}: cost field {field:?} must be a number, found {found}")]
    CostNotNumber { model: String, field: String, found: &'static str },
    #[error("model {model:?}: cost field {field:?} must not be negative, found {value}")]
    NegativeCost { model: String, field: String, value: f64 },
    #[error("model {model:?}: invalid entry: {problem}")]
    InvalidEntry { model: String, problem: FieldError },
    #[error("could not fetch cost map from {origin}: {message}")]
    Fetch { origin: String, message: String },
    #[error("cost map from {origin} is larger than the limit of {limit} bytes")]
    TooLarge { origin: String, limit: usize },
    /// The blocking task that parses a reload did not finish (it panicked,
    /// or the runtime is shutting down); the current map stays.
    #[error("cost map reload did not finish: {0}")]
    ReloadTask(String),
}

// ---------------------------------------------------------------------------
// Model entries
// ---------------------------------------------------------------------------

/// One model of the cost map. The fields the gateway uses are typed; everything
/// else is kept in `extra` so nothing is lost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelEntry {
    pub litellm_provider: Option<String>,
    pub mode: Option<String>,
    /// Token limits are informational, so they are read leniently: integers,
    /// integral floats and numeric strings are accepted; anything else (e.g. the
    /// descriptive text in `sample_spec`) becomes `None` instead of failing the map.
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub max_tokens: Option<u64>,
    /// Prices are money, so they are strict: a non-number refuses the whole map
    /// (checked before deserialising, so the error names the model and field).
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    pub cache_read_input_token_cost: Option<f64>,
    pub cache_creation_input_token_cost: Option<f64>,
    /// The string items of `aliases`.
    pub(crate) aliases: Vec<String>,
    /// Every other field, as the compact JSON text of an object: text, not a
    /// tree, because the map's 4,500 entries' trees held several MB that
    /// nothing on the request path reads.
    pub(crate) extra: Box<str>,
}

/// A cost-map entry's typed field holding another JSON type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{field}` must be {expected}, got {got}")]
pub struct FieldError {
    pub field: &'static str,
    pub expected: &'static str,
    pub got: &'static str,
}

impl ModelEntry {
    /// Builds an entry from its JSON fields, taking the typed ones out and
    /// keeping the rest in `extra`. Same rules as the serde derive, without
    /// its `flatten` buffering, which doubled the time to load the 3 MB map.
    pub(crate) fn from_fields(mut fields: Map<String, Value>) -> Result<ModelEntry, FieldError> {
        fn text(fields: &mut Map<String, Value>, name: &'static str) -> Result<Option<String>, FieldError> {
            match fields.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(FieldError { field: name, expected: "a string", got: json_type(&other) }),
            }
        }
        fn tokens(fields: &mut Map<String, Value>, name: &str) -> Option<u64> {
            fields.remove(name).and_then(lenient_value)
        }
        fn cost(fields: &mut Map<String, Value>, name: &'static str) -> Result<Option<f64>, FieldError> {
            match fields.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => Ok(n.as_f64()),
                Some(other) => Err(FieldError { field: name, expected: "a number", got: json_type(&other) }),
            }
        }
        Ok(ModelEntry {
            litellm_provider: text(&mut fields, "litellm_provider")?,
            mode: text(&mut fields, "mode")?,
            max_input_tokens: tokens(&mut fields, "max_input_tokens"),
            max_output_tokens: tokens(&mut fields, "max_output_tokens"),
            max_tokens: tokens(&mut fields, "max_tokens"),
            input_cost_per_token: cost(&mut fields, "input_cost_per_token")?,
            output_cost_per_token: cost(&mut fields, "output_cost_per_token")?,
            cache_read_input_token_cost: cost(&mut fields, "cache_read_input_token_cost")?,
            cache_creation_input_token_cost: cost(&mut fields, "cache_creation_input_token_cost")?,
            aliases: fields
                .get("aliases")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
            // A map of JSON values always serializes.
            extra: serde_json::to_string(&fields).unwrap_or_default().into_boxed_str(),
        })
    }

    /// Alternative names listed under `aliases` (LiteLLM's `_expand_model_aliases`).
    /// Non-string items are ignored.
    pub(crate) fn aliases(&self) -> impl Iterator<Item = &str> {
        self.aliases.iter().map(String::as_str)
    }

    /// The entry's other fields (those not typed above, `aliases` included),
    /// as the map had them.
    pub fn extra(&self) -> Map<String, Value> {
        serde_json::from_str(&self.extra).unwrap_or_default()
    }
}

/// A token limit from any JSON value: integers, integral floats and numeric
/// strings; anything else is `None`.
fn lenient_value(v: Value) -> Option<u64> {
    fn from_f64(f: f64) -> Option<u64> {
        (f.is_finite() && f >= 0.0 && f <= u64::MAX as f64).then_some(f as u64)
    }
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(from_f64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>().ok().or_else(|| s.parse::<f64>().ok().and_then(from_f64))
        }
        _ => None,
    }
}

/// A field holds a per-token price if its name says so; such fields must be numbers.
fn is_token_cost_field(name: &str) -> bool {
    name.contains("cost_per_token") || name.contains("token_cost")
}

// ---------------------------------------------------------------------------
// Cost
// ---------------------------------------------------------------------------

/// Token counts of one request. `input_tokens` excludes cached tokens (Anthropic
/// reports it that way; for OpenAI subtract `cached_tokens` from `prompt_tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
}

/// The USD cost of one request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    pub total_usd: f64,
    pub breakdown: CostBreakdown,
}

impl Cost {
    /// `usage` at a deployment's own rates (any may be unset), over the
    /// rates of `base` (the map's entry for the model, as LiteLLM merges a
    /// deployment's prices into it, key by key); cache tokens without a rate
    /// are input tokens. `None` when a rate the usage needs is missing.
    pub(crate) fn at_rates(usage: &Usage, own: &OwnPrices, base: Option<&ModelEntry>) -> Option<Cost> {
        let needed = |tokens: u64, rate: Option<f64>| if tokens == 0 { Some(rate.unwrap_or(0.0)) } else { rate };
        let cached = usage.cache_read_tokens + usage.cache_creation_tokens;
        let input = needed(usage.input_tokens + cached, own.input.or(base.and_then(|e| e.input_cost_per_token)))?;
        let output = needed(usage.output_tokens, own.output.or(base.and_then(|e| e.output_cost_per_token)))?;
        let read = own.cache_read.or(base.and_then(|e| e.cache_read_input_token_cost));
        let write = own.cache_write.or(base.and_then(|e| e.cache_creation_input_token_cost));
        let breakdown = CostBreakdown {
            input_usd: usage.input_tokens as f64 * input,
            output_usd: usage.output_tokens as f64 * output,
            cache_read_usd: usage.cache_read_tokens as f64 * read.unwrap_or(input),
            cache_creation_usd: usage.cache_creation_tokens as f64 * write.unwrap_or(input),
            cache_priced_as_input: (usage.cache_read_tokens > 0 && read.is_none())
                || (usage.cache_creation_tokens > 0 && write.is_none()),
        };
        let total_usd =
            breakdown.input_usd + breakdown.output_usd + breakdown.cache_read_usd + breakdown.cache_creation_usd;
        Some(Cost { total_usd, breakdown })
    }

    /// Total USD.
    pub fn total(&self) -> f64 {
        self.total_usd
    }
}

/// A deployment's own per-token prices, USD (`litellm_params`): each one
/// set replaces the map's rate of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct OwnPrices {
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub cache_read: Option<f64>,
    pub cache_write: Option<f64>,
}

impl OwnPrices {
    /// Whether any is set (else the map prices the call alone).
    pub(crate) fn any(&self) -> bool {
        self.input.is_some() || self.output.is_some() || self.cache_read.is_some() || self.cache_write.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostBreakdown {
    pub input_usd: f64,
    pub output_usd: f64,
    pub cache_read_usd: f64,
    pub cache_creation_usd: f64,
    /// Cache tokens were billed at the input price because the entry has no
    /// cache price (never at 0).
    pub cache_priced_as_input: bool,
}

// ---------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------

/// Indexes derived from the `litellm_provider` of every entry (LiteLLM's
/// per-provider model sets). Kept behind an `Arc` only so that the known-bad
/// variant can carry an old one over; production always rebuilds it.
#[derive(Debug, Default)]
struct ProviderIndex {
    /// provider -> model names (canonical keys and aliases).
    by_provider: HashMap<String, BTreeSet<String>>,
    /// lowercased name -> provider. Direct keys first, then aliases, then the
    /// `rest` of `prefix/rest` keys; the first one in file order wins.
    name_to_provider: HashMap<String, String>,
}

impl ProviderIndex {
    fn build(models: &[(String, ModelEntry)]) -> Self {
        let mut idx = ProviderIndex::default();
        let with_provider = || models.iter().filter_map(|(k, e)| e.litellm_provider.as_deref().map(|p| (k, e, p)));
        for (key, entry, provider) in with_provider() {
            let set = idx.by_provider.entry(provider.to_string()).or_default();
            set.insert(key.clone());
            set.extend(entry.aliases().map(str::to_string));
            idx.name_to_provider.entry(key.to_lowercase()).or_insert_with(|| provider.to_string());
        }
        for (_, entry, provider) in with_provider() {
            for alias in entry.aliases() {
                idx.name_to_provider.entry(alias.to_lowercase()).or_insert_with(|| provider.to_string());
            }
        }
        for (key, _, provider) in with_provider() {
            if let Some((_, rest)) = key.split_once('/') {
                idx.name_to_provider.entry(rest.to_lowercase()).or_insert_with(|| provider.to_string());
            }
        }
        idx
    }
}

/// An immutable, validated cost map together with its derived indexes.
///
/// There is deliberately no way to change the models of a `Catalog` without
/// building a new one, and every public constructor derives the indexes from the
/// models it is given, so they can never disagree.
///
/// Cloning is cheap: the models and indexes are shared, so a catalog can be
/// stamped with another load time (see `parse_bundled`) without copying
/// thousands of entries.
#[derive(Debug, Clone)]
pub struct Catalog {
    tables: Arc<Tables>,
    providers: Arc<ProviderIndex>,
    source: String,
    loaded_at: SystemTime,
}

/// The models and their name indexes, built together and never changed.
#[derive(Debug)]
struct Tables {
    /// In file order; keys unique.
    models: Vec<(String, ModelEntry)>,
    /// exact key -> position.
    exact: HashMap<String, usize>,
    /// lowercased key or alias -> position (first in file order wins).
    lookup: HashMap<String, usize>,
}

impl Catalog {
    /// Builds a catalog and its indexes from `models` (a later duplicate key
    /// replaces the earlier value, as in JSON). No validation: see [`parse_catalog`].
    pub fn new(models: impl IntoIterator<Item = (String, ModelEntry)>, source: &str, loaded_at: SystemTime) -> Catalog {
        let models = dedup(models);
        let providers = Arc::new(ProviderIndex::build(&models));
        Self::assemble(models, providers, source, loaded_at)
    }

    /// An empty catalog (every lookup fails, every cost is `None`).
    pub fn empty(source: &str, loaded_at: SystemTime) -> Catalog {
        Self::new(Vec::new(), source, loaded_at)
    }

    /// KNOWN-BAD: new models with an old provider index. Only reachable through
    /// [`CatalogBugs::stale_index_on_reload`].
    fn with_stale_provider_index(fresh: Catalog, old: &Catalog) -> Catalog {
        Catalog { providers: Arc::clone(&old.providers), ..fresh }
    }

    fn assemble(
        models: Vec<(String, ModelEntry)>,
        providers: Arc<ProviderIndex>,
        source: &str,
        loaded_at: SystemTime,
    ) -> Catalog {
        let mut exact = HashMap::with_capacity(models.len());
        let mut lookup = HashMap::with_capacity(models.len());
        for (i, (key, _)) in models.iter().enumerate() {
            exact.insert(key.clone(), i);
            lookup.entry(key.to_lowercase()).or_insert(i);
        }
        for (i, (_, entry)) in models.iter().enumerate() {
            for alias in entry.aliases() {
                lookup.entry(alias.to_lowercase()).or_insert(i);
            }
        }
        Catalog { tables: Arc::new(Tables { models, exact, lookup }), providers, source: source.to_string(), loaded_at }
    }

    /// Number of models (reserved keys and aliases not counted).
    pub fn len(&self) -> usize {
        self.tables.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.models.is_empty()
    }

    /// The entry for `name`: exact key first, then case-insensitive key or alias.
    pub fn model(&self, name: &str) -> Option<&ModelEntry> {
        let i = match self.tables.exact.get(name) {
            Some(i) => *i,
            None => *self.tables.lookup.get(&name.to_lowercase())?,
        };
        self.tables.models.get(i).map(|(_, e)| e)
    }

    /// Canonical key of `name` (resolving case and aliases).
    pub(crate) fn canonical_name(&self, name: &str) -> Option<&str> {
        let i = match self.tables.exact.get(name) {
            Some(i) => *i,
            None => *self.tables.lookup.get(&name.to_lowercase())?,
        };
        self.tables.models.get(i).map(|(k, _)| k.as_str())
    }

    /// The provider of a model name, bare (`claude-sonnet-4-6`) or prefixed
    /// (`azure/gpt-5.2`), case-insensitively. A name that is not in the map but
    /// whose `prefix/` is a provider of the map resolves to that prefix.
    pub fn provider_of(&self, name: &str) -> Option<&str> {
        // Names are usually lowercase already: look them up without the
        // allocation `to_lowercase` makes (this runs on every request).
        let hit = if name.bytes().any(|b| b.is_ascii_uppercase()) || !name.is_ascii() {
            self.providers.name_to_provider.get(&name.to_lowercase())
        } else {
            self.providers.name_to_provider.get(name)
        };
        if let Some(p) = hit {
            return Some(p.as_str());
        }
        let (prefix, _) = name.split_once('/')?;
        self.providers.by_provider.get_key_value(prefix).map(|(k, _)| k.as_str())
    }

    #[cfg(test)]
    /// Model names (keys and aliases) whose `litellm_provider` is `provider`.
    pub(crate) fn models_for_provider(&self, provider: &str) -> Option<&BTreeSet<String>> {
        self.providers.by_provider.get(provider)
    }

    /// All providers named by some entry.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.providers.by_provider.keys().map(String::as_str)
    }

    /// Model names in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tables.models.iter().map(|(k, _)| k.as_str())
    }

    /// `(name, entry)` in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ModelEntry)> {
        self.tables.models.iter().map(|(k, e)| (k.as_str(), e))
    }

    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// Where the map came from (URLs are shown without credentials or query).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The USD cost of `usage` on `model`. `None` when the model is unknown, has
    /// no per-token prices, or lacks the input/output price a non-zero count
    /// needs: an unpriced request is never silently free. Cache tokens without a
    /// cache price are billed at the input price (flagged in the breakdown).
    /// Tiered prices (`*_above_200k_tokens`, batches, priority) are not applied.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<Cost> {
        let e = self.model(model)?;
        if e.input_cost_per_token.is_none() && e.output_cost_per_token.is_none() {
            return None;
        }
        let priced = |tokens: u64, price: Option<f64>| -> Option<f64> {
            if tokens == 0 {
                Some(0.0)
            } else {
                price.map(|p| tokens as f64 * p)
            }
        };
        let input_usd = priced(usage.input_tokens, e.input_cost_per_token)?;
        let output_usd = priced(usage.output_tokens, e.output_cost_per_token)?;
        let mut cache_priced_as_input = false;
        let mut cache_price = |tokens: u64, price: Option<f64>| -> Option<f64> {
            if tokens > 0 && price.is_none() {
                cache_priced_as_input = true;
            }
            priced(tokens, price.or(e.input_cost_per_token))
        };
        let cache_read_usd = cache_price(usage.cache_read_tokens, e.cache_read_input_token_cost)?;
        let cache_creation_usd = cache_price(usage.cache_creation_tokens, e.cache_creation_input_token_cost)?;
        Some(Cost {
            total_usd: input_usd + output_usd + cache_read_usd + cache_creation_usd,
            breakdown: CostBreakdown {
                input_usd,
                output_usd,
                cache_read_usd,
                cache_creation_usd,
                cache_priced_as_input,
            },
        })
    }
}

fn dedup(models: impl IntoIterator<Item = (String, ModelEntry)>) -> Vec<(String, ModelEntry)> {
    let mut out: Vec<(String, ModelEntry)> = Vec::new();
    let mut pos: HashMap<String, usize> = HashMap::new();
    for (k, e) in models {
        match pos.get(&k) {
            Some(&i) => out[i].1 = e,
            None => {
                pos.insert(k.clone(), out.len());
                out.push((k, e));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Parsing and validation
// ---------------------------------------------------------------------------

/// Integrity checks a new map must pass (LiteLLM's `GetModelCostMap` defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidationLimits {
    /// Fewest models (reserved keys excluded) a map may have.
    pub min_models: usize,
    /// A new map with fewer than `max_shrink_ratio x current count` models is refused.
    pub max_shrink_ratio: f64,
}

impl Default for ValidationLimits {
    fn default() -> Self {
        ValidationLimits { min_models: 50, max_shrink_ratio: 0.5 }
    }
}

/// Parses and validates a cost map. `previous` is the map currently in use (for
/// the shrink check). Never panics on bad input; every error names where.
/// [`parse_catalog`] for a map compiled into the binary, memoised per
/// process: the bundled 3 MB map takes ~40 ms to parse (far more in debug
/// builds), and every gateway built in the process (each scenario, each
/// replayed cassette, each test) starts from it. The result is the same
/// immutable catalog stamped with `loaded_at`. Failures are not memoised.
pub(crate) fn parse_bundled(
    bytes: &'static [u8],
    limits: &ValidationLimits,
    loaded_at: SystemTime,
) -> Result<Catalog, CatalogError> {
    type Memo = Vec<(usize, usize, ValidationLimits, Catalog)>;
    static MEMO: Mutex<Memo> = Mutex::new(Vec::new());
    let key = (bytes.as_ptr() as usize, bytes.len());
    let hit = MEMO.lock().iter().find(|(p, n, l, _)| (*p, *n) == key && l == limits).map(|m| m.3.clone());
    if let Some(cat) = hit {
        return Ok(Catalog { loaded_at, ..cat });
    }
    // Parsed outside the lock: two first callers may both parse; one wins.
    let cat = parse_catalog(bytes, BUNDLED_SOURCE, None, limits, loaded_at)?;
    let mut memo = MEMO.lock();
    if !memo.iter().any(|(p, n, l, _)| (*p, *n) == key && l == limits) {
        memo.push((key.0, key.1, *limits, cat.clone()));
    }
    Ok(cat)
}

pub fn parse_catalog(
    bytes: &[u8],
    source: &str,
    previous: Option<&Catalog>,
    limits: &ValidationLimits,
    loaded_at: SystemTime,
) -> Result<Catalog, CatalogError> {
    // The map is read entry by entry, each validated and turned into its
    // `ModelEntry` as it comes, never as one tree: the tree of the 3 MB map
    // held ~10 MB at once, which the allocator then kept. The first
    // entry's problem is kept and reported after the count checks, in the
    // order a whole-tree read checked them.
    let mut read = EntriesRead::default();
    let parsed = {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        serde::de::DeserializeSeed::deserialize(&mut read, &mut de).and_then(|()| de.end())
    };
    if let Err(e) = parsed {
        // Valid JSON of another type: named (only on this failure path is
        // the document read a second time).
        if let Ok(other) = serde_json::from_slice::<Value>(bytes) {
            if !other.is_object() {
                return Err(CatalogError::NotAnObject { found: json_type(&other) });
            }
        }
        let (line, column) = (e.line(), e.column());
        let full = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        return Err(CatalogError::Parse { line, column, message });
    }
    let models = dedup(read.models);
    let count = models.len();
    if count < limits.min_models {
        return Err(CatalogError::TooFewModels { count, min: limits.min_models });
    }
    if let Some(prev) = previous {
        let min_allowed = limits.max_shrink_ratio * prev.len() as f64;
        if (count as f64) < min_allowed {
            return Err(CatalogError::Shrunk {
                count,
                previous: prev.len(),
                ratio: limits.max_shrink_ratio,
                min_allowed,
            });
        }
    }
    if let Some(problem) = read.problem {
        return Err(problem);
    }
    Ok(Catalog::new(models, &display_source(source), loaded_at))
}

/// What reading a cost map entry by entry found: the entries (file order,
/// duplicates not yet merged) and the first entry's problem.
#[derive(Default)]
struct EntriesRead {
    models: Vec<(String, ModelEntry)>,
    problem: Option<CatalogError>,
}

impl EntriesRead {
    fn entry(&mut self, model: String, v: Value) {
        if RESERVED_KEYS.contains(&model.as_str()) {
            return;
        }
        if self.problem.is_none() {
            match self.model_entry(&model, v) {
                Ok(entry) => {
                    self.models.push((model, entry));
                    return;
                }
                Err(problem) => self.problem = Some(problem),
            }
        }
        // Only counted from here on: the map is refused anyway.
        self.models.push((model, ModelEntry::default()));
    }

    fn model_entry(&self, model: &str, v: Value) -> Result<ModelEntry, CatalogError> {
        let Value::Object(fields) = v else {
            return Err(CatalogError::EntryNotAnObject { found: json_type(&v), model: model.to_string() });
        };
        check_costs(model, &fields)?;
        ModelEntry::from_fields(fields)
            .map_err(|problem| CatalogError::InvalidEntry { model: model.to_string(), problem })
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for &mut EntriesRead {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for &mut EntriesRead {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object of model entries")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(model) = map.next_key::<String>()? {
            let v: Value = map.next_value()?;
            self.entry(model, v);
        }
        Ok(())
    }
}

fn check_costs(model: &str, fields: &Map<String, Value>) -> Result<(), CatalogError> {
    for (field, v) in fields.iter().filter(|(f, _)| is_token_cost_field(f)) {
        match v {
            Value::Null => {}
            Value::Number(n) => {
                let value = n.as_f64().unwrap_or(0.0);
                if value < 0.0 {
                    return Err(CatalogError::NegativeCost { model: model.to_string(), field: field.clone(), value });
                }
            }
            other => {
                return Err(CatalogError::CostNotNumber {
                    model: model.to_string(),
                    field: field.clone(),
                    found: json_type(other),
                })
            }
        }
    }
    Ok(())
}

/// A source name safe to show and log: URLs lose user info and query string
/// (either may carry a token). File paths are returned unchanged.
pub(crate) fn display_source(src: &str) -> String {
    if !is_url(src) {
        return src.to_string();
    }
    match reqwest::Url::parse(src) {
        Ok(mut url) => {
            // Both only fail for URLs that cannot have credentials.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => "<unparsable URL>".to_string(),
    }
}

fn is_url(src: &str) -> bool {
    let lower = src.get(..8).unwrap_or(src).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

// ---------------------------------------------------------------------------
// Fetching
// ---------------------------------------------------------------------------

/// Reads a cost map from a file path (optionally `file://`) or an http(s) URL,
/// within `timeout` and [`MAX_COST_MAP_BYTES`]. Only fetches; validation is
/// [`parse_catalog`].
pub(crate) async fn fetch_source(src: &str, timeout: Duration) -> Result<Vec<u8>, CatalogError> {
    let origin = display_source(src);
    let fail = |message: String| CatalogError::Fetch { origin: origin.clone(), message };
    if is_url(src) {
        return match tokio::time::timeout(timeout, fetch_http(src, timeout, &origin)).await {
            Ok(r) => r,
            Err(_) => Err(fail(format!("timed out after {timeout:?}"))),
        };
    }
    let path = src.strip_prefix("file://").unwrap_or(src);
    let read = async {
        let meta = tokio::fs::metadata(path).await.map_err(|e| fail(e.to_string()))?;
        if meta.len() > MAX_COST_MAP_BYTES as u64 {
            return Err(CatalogError::TooLarge { origin: origin.clone(), limit: MAX_COST_MAP_BYTES });
        }
        tokio::fs::read(path).await.map_err(|e| fail(e.to_string()))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(fail(format!("timed out after {timeout:?}"))),
    }
}

async fn fetch_http(url: &str, timeout: Duration, origin: &str) -> Result<Vec<u8>, CatalogError> {
    let fail = |message: String| CatalogError::Fetch { origin: origin.to_string(), message };
    let too_large = || CatalogError::TooLarge { origin: origin.to_string(), limit: MAX_COST_MAP_BYTES };
    let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| fail(e.without_url().to_string()))?;
    let mut resp = client.get(url).send().await.map_err(|e| fail(e.without_url().to_string()))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(fail(format!("HTTP status {status}")));
    }
    if resp.content_length().is_some_and(|n| n > MAX_COST_MAP_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.without_url().to_string()))? {
        if body.len() + chunk.len() > MAX_COST_MAP_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

// ---------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------

/// Known-bad behaviours that re-create the two incidents. ONLY the regression
/// harness sets these (via [`CatalogStore::set_known_bugs`]) to prove that its
/// scenarios catch the bugs; no production code path sets them, and the
/// default is all-off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogBugs {
    /// A reload adopts the new models but keeps the OLD provider indexes
    /// (LiteLLM's reload without `add_known_models()`).
    pub stale_index_on_reload: bool,
    /// A reload that fails validation adopts the bundled copy and reports
    /// success, not stale; a refused start-up map falls back to the bundled
    /// copy with no log line and no stale flag (LiteLLM's silent fallback).
    pub silent_fallback_to_bundled: bool,
}

/// Outcome of an adopted reload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReloadReport {
    pub source: String,
    pub model_count: usize,
    pub previous_model_count: usize,
    /// Models in the new map but not the previous one.
    pub added: usize,
    /// Models in the previous map but not the new one.
    pub removed: usize,
    /// Unix seconds.
    #[serde(serialize_with = "unix_secs")]
    pub loaded_at: SystemTime,
}

impl ReloadReport {
    fn between(prev: &Catalog, new: &Catalog) -> ReloadReport {
        let added = new.names().filter(|n| !prev.tables.exact.contains_key(*n)).count();
        let removed = prev.names().filter(|n| !new.tables.exact.contains_key(*n)).count();
        ReloadReport {
            source: new.source.clone(),
            model_count: new.len(),
            previous_model_count: prev.len(),
            added,
            removed,
            loaded_at: new.loaded_at,
        }
    }
}

/// What an operator needs to see about the catalog. All times are unix seconds
/// when serialised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogStatus {
    /// The map in use is not what was asked for (a reload or the start-up
    /// source failed); `reason` says why.
    pub stale: bool,
    pub reason: Option<String>,
    #[serde(serialize_with = "unix_secs")]
    pub loaded_at: SystemTime,
    pub source: String,
    pub model_count: usize,
    #[serde(serialize_with = "unix_secs")]
    pub last_attempt_at: SystemTime,
    pub last_attempt_ok: bool,
    /// The map in use is the bundled copy compiled into the binary.
    pub using_bundled: bool,
}

fn unix_secs<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

#[derive(Debug, Clone)]
struct StoreState {
    stale: bool,
    reason: Option<String>,
    last_attempt_at: SystemTime,
    last_attempt_ok: bool,
    using_bundled: bool,
}

/// Holds the current [`Catalog`] and swaps it atomically on reload. Readers call
/// [`CatalogStore::current`] and keep the `Arc` for the whole request, so a
/// request never sees half of one map and half of another.
#[derive(Debug)]
pub struct CatalogStore {
    current: ArcSwap<Catalog>,
    /// Held while swapping `current`, so `status()` is consistent with it.
    state: Mutex<StoreState>,
    /// Serialises reloads (validation + swap + status).
    reload_lock: Mutex<()>,
    limits: ValidationLimits,
    bundled: &'static [u8],
    bugs: Mutex<CatalogBugs>,
}

impl CatalogStore {
    /// A store starting from `initial`, default limits, [`BUNDLED_COST_MAP`].
    pub fn new(initial: Catalog) -> CatalogStore {
        Self::with_options(initial, ValidationLimits::default(), BUNDLED_COST_MAP)
    }

    pub fn with_options(initial: Catalog, limits: ValidationLimits, bundled: &'static [u8]) -> CatalogStore {
        let state = StoreState {
            stale: false,
            reason: None,
            last_attempt_at: initial.loaded_at,
            last_attempt_ok: true,
            using_bundled: is_bundled_source(&initial.source),
        };
        CatalogStore {
            current: ArcSwap::from_pointee(initial),
            state: Mutex::new(state),
            reload_lock: Mutex::new(()),
            limits,
            bundled,
            bugs: Mutex::new(CatalogBugs::default()),
        }
    }

    #[cfg(test)]
    /// Start-up load at wall time `now`. With a `source`, fetch it (within
    /// [`DEFAULT_FETCH_TIMEOUT`]) and validate it (the shrink check is against
    /// the bundled copy, as in LiteLLM); if that fails, start from the bundled
    /// copy and say so loudly: error log, `stale = true`, `using_bundled = true`,
    /// `reason`. Without a source, the bundled copy is the intended map (not
    /// stale). Never fails: if even the bundled copy is unusable the store
    /// starts empty and stale.
    pub(crate) async fn load_startup(
        source: Option<&str>,
        bundled: &'static [u8],
        limits: &ValidationLimits,
        now: SystemTime,
    ) -> CatalogStore {
        Self::load_startup_with(source, bundled, limits, now, DEFAULT_FETCH_TIMEOUT, CatalogBugs::default()).await
    }

    /// [`CatalogStore::load_startup`] with an explicit fetch timeout and the
    /// known-bad behaviours to put back (regression harness only; with
    /// `silent_fallback_to_bundled` a refused start-up map falls back to the
    /// bundled copy without a log line or a stale flag, as LiteLLM did).
    pub(crate) async fn load_startup_with(
        source: Option<&str>,
        bundled: &'static [u8],
        limits: &ValidationLimits,
        now: SystemTime,
        timeout: Duration,
        bugs: CatalogBugs,
    ) -> CatalogStore {
        // The block's `return`s leave the block, so every path gets the bugs.
        let store = async {
            let limits = *limits;
            let bundled_catalog = parse_bundled(bundled, &limits, now);
            let Some(src) = source else {
                return match bundled_catalog {
                    Ok(cat) => Self::with_options(cat, limits, bundled),
                    Err(e) => Self::broken_start(bundled, limits, now, format!("bundled cost map is invalid: {e}")),
                };
            };
            let fetched = match fetch_source(src, timeout).await {
                Ok(bytes) => parse_catalog(&bytes, src, bundled_catalog.as_ref().ok(), &limits, now),
                Err(e) => Err(e),
            };
            let source_err = match fetched {
                Ok(cat) => {
                    tracing::info!(source = %cat.source(), models = cat.len(), "cost map loaded");
                    return Self::with_options(cat, limits, bundled);
                }
                Err(e) => e,
            };
            let shown = display_source(src);
            match bundled_catalog {
                Ok(cat) if bugs.silent_fallback_to_bundled => Self::with_options(cat, limits, bundled),
                Ok(cat) => {
                    let reason = format!("start-up cost map {shown} refused, using the bundled copy: {source_err}");
                    tracing::error!(source = %shown, error = %source_err, "{reason}");
                    let store = Self::with_options(cat, limits, bundled);
                    {
                        let mut st = store.state.lock();
                        st.stale = true;
                        st.reason = Some(reason);
                        st.last_attempt_ok = false;
                        st.using_bundled = true;
                    }
                    store
                }
                Err(bundled_err) => Self::broken_start(
                    bundled,
                    limits,
                    now,
                    format!(
                    "start-up cost map {shown} refused ({source_err}) and the bundled copy is invalid ({bundled_err})"
                ),
                ),
            }
        }
        .await;
        store.set_known_bugs(bugs);
        store
    }

    /// Neither the source nor the bundled copy is usable: an empty catalog,
    /// every model unknown (priced `None`), flagged stale.
    fn broken_start(bundled: &'static [u8], limits: ValidationLimits, now: SystemTime, reason: String) -> CatalogStore {
        tracing::error!("{reason}; starting with an EMPTY model catalog");
        let store = Self::with_options(Catalog::empty("none", now), limits, bundled);
        {
            let mut st = store.state.lock();
            st.stale = true;
            st.reason = Some(reason);
            st.last_attempt_ok = false;
        }
        store
    }

    /// The catalog in use. Keep the `Arc` for the whole request.
    pub fn current(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    pub fn limits(&self) -> ValidationLimits {
        self.limits
    }

    /// Regression harness only; see [`CatalogBugs`].
    pub fn set_known_bugs(&self, bugs: CatalogBugs) {
        *self.bugs.lock() = bugs;
    }

    /// Validates `bytes` and, if they pass, adopts them (models and indexes in
    /// one swap) and clears any stale flag. Otherwise keeps the current map,
    /// marks the status stale with the reason, logs an error and returns it.
    pub fn try_reload(&self, bytes: &[u8], source: &str, now: SystemTime) -> Result<ReloadReport, CatalogError> {
        let _serial = self.reload_lock.lock();
        let bugs = *self.bugs.lock();
        let prev = self.current.load_full();
        match parse_catalog(bytes, source, Some(&prev), &self.limits, now) {
            Ok(fresh) => {
                let fresh =
                    if bugs.stale_index_on_reload { Catalog::with_stale_provider_index(fresh, &prev) } else { fresh };
                let report = ReloadReport::between(&prev, &fresh);
                self.adopt(fresh, now, is_bundled_source(source));
                tracing::info!(
                    source = %report.source,
                    models = report.model_count,
                    added = report.added,
                    removed = report.removed,
                    "cost map reloaded"
                );
                Ok(report)
            }
            Err(err) => {
                if bugs.silent_fallback_to_bundled {
                    if let Ok(b) = parse_bundled(self.bundled, &self.limits, now) {
                        tracing::warn!(error = %err, "cost map invalid, using bundled copy");
                        let report = ReloadReport::between(&prev, &b);
                        self.adopt(b, now, true);
                        return Ok(report);
                    }
                }
                self.mark_failed(&prev, source, now, &err);
                Err(err)
            }
        }
    }

    #[cfg(test)]
    /// Fetches `src` and reloads from it; a fetch failure is recorded like a
    /// validation failure (current map kept, status stale).
    pub(crate) async fn reload_from_source(
        &self,
        src: &str,
        timeout: Duration,
        now: SystemTime,
    ) -> Result<ReloadReport, CatalogError> {
        match fetch_source(src, timeout).await {
            Ok(bytes) => self.try_reload(&bytes, src, now),
            Err(err) => {
                self.record_failed_fetch(&err, now);
                Err(err)
            }
        }
    }

    /// Records that fetching the cost map failed (before any bytes could be
    /// validated): the current map stays, the status turns stale with `err`.
    pub(crate) fn record_failed_fetch(&self, err: &CatalogError, now: SystemTime) {
        let _serial = self.reload_lock.lock();
        let prev = self.current.load_full();
        let origin = match err {
            CatalogError::Fetch { origin, .. } | CatalogError::TooLarge { origin, .. } => origin.as_str(),
            _ => "the configured source",
        };
        self.mark_failed(&prev, origin, now, err);
    }

    fn adopt(&self, catalog: Catalog, now: SystemTime, using_bundled: bool) {
        let mut st = self.state.lock();
        self.current.store(Arc::new(catalog));
        st.stale = false;
        st.reason = None;
        st.last_attempt_at = now;
        st.last_attempt_ok = true;
        st.using_bundled = using_bundled;
    }

    fn mark_failed(&self, kept: &Catalog, source: &str, now: SystemTime, err: &CatalogError) {
        let shown = display_source(source);
        let reason =
            format!("reload from {shown} refused; keeping {} models from {}: {err}", kept.len(), kept.source());
        tracing::error!(source = %shown, error = %err, "{reason}");
        let mut st = self.state.lock();
        st.stale = true;
        st.reason = Some(reason);
        st.last_attempt_at = now;
        st.last_attempt_ok = false;
    }

    pub fn status(&self) -> CatalogStatus {
        let st = self.state.lock();
        let cat = self.current.load();
        CatalogStatus {
            stale: st.stale,
            reason: st.reason.clone(),
            loaded_at: cat.loaded_at,
            source: cat.source.clone(),
            model_count: cat.len(),
            last_attempt_at: st.last_attempt_at,
            last_attempt_ok: st.last_attempt_ok,
            using_bundled: st.using_bundled,
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_770_000_000)
    }

    fn fixture() -> &'static Catalog {
        static CAT: OnceLock<Catalog> = OnceLock::new();
        CAT.get_or_init(|| {
            parse_catalog(BUNDLED_COST_MAP, BUNDLED_SOURCE, None, &ValidationLimits::default(), t0())
                .expect("the bundled fixture is a valid cost map")
        })
    }

    fn fixture_text() -> &'static str {
        std::str::from_utf8(BUNDLED_COST_MAP).expect("fixture is UTF-8")
    }

    fn relaxed() -> ValidationLimits {
        ValidationLimits { min_models: 1, max_shrink_ratio: 0.5 }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn full_fixture_has_4551_models_and_skips_reserved_keys() {
        let cat = fixture();
        assert_eq!(cat.len(), 4551);
        assert!(cat.model("sample_spec").is_none());
        assert!(cat.model("fallback_generalizations").is_none());
        assert_eq!(cat.source(), BUNDLED_SOURCE);
        assert_eq!(cat.loaded_at(), t0());
        assert_eq!(cat.models_for_provider("anthropic").map(|s| s.len()), Some(22));
    }

    #[test]
    fn typed_fields_and_extra_are_read_from_the_real_entry() {
        let e = fixture().model("gpt-4o").expect("gpt-4o is in the fixture");
        assert_eq!(e.litellm_provider.as_deref(), Some("openai"));
        assert_eq!(e.mode.as_deref(), Some("chat"));
        assert_eq!(e.max_input_tokens, Some(128_000));
        assert_eq!(e.max_output_tokens, Some(16_384));
        assert_eq!(e.input_cost_per_token, Some(2.5e-6));
        assert_eq!(e.output_cost_per_token, Some(1e-5));
        assert_eq!(e.cache_read_input_token_cost, Some(1.25e-6));
        assert_eq!(e.cache_creation_input_token_cost, None);
        assert_eq!(e.extra().get("supports_vision"), Some(&Value::Bool(true)));
        assert!(!e.extra().contains_key("input_cost_per_token"));
    }

    #[test]
    fn cost_matches_hand_computed_values() {
        let cat = fixture();
        // gpt-4o: 1000 x 2.5e-6 + 500 x 1e-5 + 2000 x 1.25e-6 = 0.0025 + 0.005 + 0.0025
        let u = Usage { input_tokens: 1000, output_tokens: 500, cache_read_tokens: 2000, cache_creation_tokens: 0 };
        let c = cat.cost("gpt-4o", &u).expect("gpt-4o is priced");
        assert!(close(c.breakdown.input_usd, 0.0025));
        assert!(close(c.breakdown.output_usd, 0.005));
        assert!(close(c.breakdown.cache_read_usd, 0.0025));
        assert!(close(c.total_usd, 0.01), "{}", c.total_usd);
        assert!(!c.breakdown.cache_priced_as_input);

        // claude-sonnet-4-5: 10k x 3e-6 + 2k x 1.5e-5 + 100k x 3e-7 + 4k x 3.75e-6
        //                  = 0.03 + 0.03 + 0.03 + 0.015
        let u = Usage {
            input_tokens: 10_000,
            output_tokens: 2_000,
            cache_read_tokens: 100_000,
            cache_creation_tokens: 4_000,
        };
        let c = cat.cost("claude-sonnet-4-5", &u).expect("priced");
        assert!(close(c.breakdown.cache_creation_usd, 0.015));
        assert!(close(c.total_usd, 0.105), "{}", c.total_usd);

        // azure/gpt-5.2: 1M x 1.75e-6 + 100k x 1.4e-5 = 1.75 + 1.4
        let u = Usage { input_tokens: 1_000_000, output_tokens: 100_000, ..Usage::default() };
        let c = cat.cost("azure/gpt-5.2", &u).expect("priced");
        assert!(close(c.total_usd, 3.15), "{}", c.total_usd);
    }

    #[test]
    fn cost_is_never_silently_zero() {
        let cat = fixture();
        let u = Usage { input_tokens: 10, output_tokens: 10, ..Usage::default() };
        assert_eq!(cat.cost("no-such-model-xyz", &u), None);
        let unpriced = cat
            .iter()
            .find(|(_, e)| e.input_cost_per_token.is_none() && e.output_cost_per_token.is_none())
            .map(|(n, _)| n)
            .expect("the fixture has models without per-token prices");
        assert_eq!(cat.cost(unpriced, &u), None);
        // gpt-4o has no cache-creation price: billed at the input price, flagged.
        let u = Usage { cache_creation_tokens: 1000, ..Usage::default() };
        let c = cat.cost("gpt-4o", &u).expect("priced");
        assert!(close(c.total_usd, 0.0025));
        assert!(c.breakdown.cache_priced_as_input);
    }

    #[test]
    fn cost_is_none_when_a_needed_price_is_missing() {
        let entry = ModelEntry {
            litellm_provider: Some("x".into()),
            output_cost_per_token: Some(1.0),
            ..ModelEntry::default()
        };
        let cat = Catalog::new([("m".to_string(), entry)], "t", t0());
        let out_only = Usage { output_tokens: 2, ..Usage::default() };
        assert_eq!(cat.cost("m", &out_only).map(|c| c.total_usd), Some(2.0));
        let with_input = Usage { input_tokens: 1, ..out_only };
        assert_eq!(cat.cost("m", &with_input), None);
    }

    #[test]
    fn lookup_is_case_insensitive_and_direct_keys_win_provider_resolution() {
        let cat = fixture();
        assert!(cat.model("GPT-4o").is_some());
        assert_eq!(cat.canonical_name("GPT-4O"), Some("gpt-4o"));
        assert_eq!(cat.provider_of("claude-sonnet-4-6"), Some("anthropic"));
        assert_eq!(cat.provider_of("Claude-Sonnet-4-6"), Some("anthropic"));
        // Both `gpt-5.2` (openai) and `azure/gpt-5.2` exist: the direct key wins.
        assert_eq!(cat.provider_of("gpt-5.2"), Some("openai"));
        assert_eq!(cat.provider_of("azure/gpt-5.2"), Some("azure"));
        // Unknown model under a known provider prefix.
        assert_eq!(cat.provider_of("anthropic/claude-future-9"), Some("anthropic"));
        assert_eq!(cat.provider_of("anthropic-evil/claude-future-9"), None);
        assert_eq!(cat.provider_of("claude-future-9"), None);
    }

    #[test]
    fn prefixed_keys_and_aliases_map_bare_names() {
        let json = br#"{
            "sample_spec": {"max_tokens": "text"},
            "anthropic/claude-new": {"litellm_provider": "anthropic", "input_cost_per_token": 1e-6,
                                     "aliases": ["claude-new-latest", 7]},
            "bedrock/us.claude-x": {"litellm_provider": "bedrock"}
        }"#;
        let cat = parse_catalog(json, "t", None, &relaxed(), t0()).expect("valid");
        assert_eq!(cat.len(), 2);
        assert_eq!(cat.provider_of("claude-new"), Some("anthropic"));
        assert_eq!(cat.provider_of("claude-new-latest"), Some("anthropic"));
        assert_eq!(cat.provider_of("us.claude-x"), Some("bedrock"));
        assert!(cat.model("CLAUDE-NEW-LATEST").is_some());
        assert_eq!(cat.canonical_name("claude-new-latest"), Some("anthropic/claude-new"));
        let set = cat.models_for_provider("anthropic").expect("indexed");
        assert!(set.contains("anthropic/claude-new") && set.contains("claude-new-latest"));
    }

    #[test]
    fn token_limits_are_lenient() {
        let json = br#"{
            "a": {"max_input_tokens": "128000", "max_output_tokens": 4096.0, "max_tokens": "lots"},
            "b": {"max_input_tokens": null, "max_output_tokens": -1, "max_tokens": 1.5e3}
        }"#;
        let cat = parse_catalog(json, "t", None, &relaxed(), t0()).expect("valid");
        let a = cat.model("a").expect("a");
        assert_eq!((a.max_input_tokens, a.max_output_tokens, a.max_tokens), (Some(128_000), Some(4096), None));
        let b = cat.model("b").expect("b");
        assert_eq!((b.max_input_tokens, b.max_output_tokens, b.max_tokens), (None, None, Some(1500)));
    }

    #[test]
    fn cost_fields_must_be_numbers_and_the_error_names_model_and_field() {
        let json = br#"{"ok": {"input_cost_per_token": 1}, "bad": {"output_cost_per_token": "0.00001"}}"#;
        let err = parse_catalog(json, "t", None, &relaxed(), t0()).unwrap_err();
        assert_eq!(
            err,
            CatalogError::CostNotNumber {
                model: "bad".into(),
                field: "output_cost_per_token".into(),
                found: "a string"
            }
        );
        assert!(err.to_string().contains("\"bad\"") && err.to_string().contains("output_cost_per_token"));

        let json = br#"{"m": {"cache_read_input_token_cost_priority": true}}"#;
        let err = parse_catalog(json, "t", None, &relaxed(), t0()).unwrap_err();
        assert!(
            matches!(err, CatalogError::CostNotNumber { ref field, .. } if field == "cache_read_input_token_cost_priority")
        );

        let json = br#"{"m": {"input_cost_per_token": -1e-6}}"#;
        let err = parse_catalog(json, "t", None, &relaxed(), t0()).unwrap_err();
        assert!(matches!(err, CatalogError::NegativeCost { .. }), "{err}");
    }

    #[test]
    fn extra_brace_reports_line_and_column() {
        // Incident 6: commit 562f0a0 added an extra `{`.
        let text = fixture_text();
        let needle = "    \"gpt-4o\": {\n";
        let at = text.find(needle).expect("gpt-4o entry");
        let line = text[..at].matches('\n').count() + 1;
        let broken = format!("{}{{{}", &text[..at + needle.len() - 1], &text[at + needle.len() - 1..]);
        let err = parse_catalog(broken.as_bytes(), "t", None, &ValidationLimits::default(), t0()).unwrap_err();
        match &err {
            CatalogError::Parse { line: l, column, message } => {
                assert_eq!(*l, line);
                assert_eq!(*column, needle.len());
                assert_eq!(message, "key must be a string");
            }
            other => panic!("expected a parse error, got {other}"),
        }
        assert_eq!(
            err.to_string(),
            format!("cost map is not valid JSON (line {line}, column {}): key must be a string", needle.len())
        );
    }

    #[test]
    fn truncated_empty_and_non_object_maps_are_refused() {
        let half = &BUNDLED_COST_MAP[..BUNDLED_COST_MAP.len() / 2];
        let err = parse_catalog(half, "t", None, &ValidationLimits::default(), t0()).unwrap_err();
        assert!(matches!(err, CatalogError::Parse { line, .. } if line > 1), "{err}");

        let err = parse_catalog(b"", "t", None, &ValidationLimits::default(), t0()).unwrap_err();
        assert!(matches!(err, CatalogError::Parse { line: 1, column: 0, .. }), "{err}");

        let err = parse_catalog(b"{}", "t", None, &ValidationLimits::default(), t0()).unwrap_err();
        assert_eq!(err, CatalogError::TooFewModels { count: 0, min: 50 });

        let err = parse_catalog(b"[1]", "t", None, &ValidationLimits::default(), t0()).unwrap_err();
        assert_eq!(err, CatalogError::NotAnObject { found: "an array" });

        let err = parse_catalog(br#"{"m": 3}"#, "t", None, &relaxed(), t0()).unwrap_err();
        assert!(matches!(err, CatalogError::EntryNotAnObject { ref model, .. } if model == "m"));

        let err = parse_catalog(br#"{"m": {"litellm_provider": 5}}"#, "t", None, &relaxed(), t0()).unwrap_err();
        assert!(matches!(err, CatalogError::InvalidEntry { ref model, .. } if model == "m"), "{err}");
    }

    /// Read entry by entry, the map is judged as a whole-tree read judged
    /// it: a top-level value of another type named, the count checked before
    /// an entry's problem, a repeated name's last entry kept in the first
    /// one's place, and an entry's other fields kept.
    #[test]
    fn the_entry_by_entry_read_judges_the_map_as_a_whole() {
        for (json, found) in
            [(&b"\"x\""[..], "a string"), (b"true", "a boolean"), (b"7", "a number"), (b"null", "null")]
        {
            let err = parse_catalog(json, "t", None, &relaxed(), t0()).unwrap_err();
            assert_eq!(err, CatalogError::NotAnObject { found }, "{}", String::from_utf8_lossy(json));
        }
        let limits = ValidationLimits { min_models: 3, max_shrink_ratio: 0.5 };
        let err = parse_catalog(br#"{"a": 3, "b": {}}"#, "t", None, &limits, t0()).unwrap_err();
        assert_eq!(err, CatalogError::TooFewModels { count: 2, min: 3 });
        let err = parse_catalog(br#"{"a": 3, "b": {}, "c": {}}"#, "t", None, &limits, t0()).unwrap_err();
        assert!(matches!(err, CatalogError::EntryNotAnObject { ref model, .. } if model == "a"), "{err}");
        let err = parse_catalog(br#"{"a": {}, "b": {}} {"#, "t", None, &relaxed(), t0()).unwrap_err();
        assert!(matches!(err, CatalogError::Parse { line: 1, .. }), "{err}");

        let json = br#"{"a": {"mode": "chat"}, "b": {"input_cost_per_token": 1e-6, "supports_vision": true, "aliases": ["b2", 3], "tiers": [{"x": 1}]}, "a": {"mode": "embedding"}}"#;
        let cat = parse_catalog(json, "t", None, &relaxed(), t0()).unwrap();
        assert_eq!(cat.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(cat.model("a").and_then(|e| e.mode.as_deref()), Some("embedding"));
        let b = cat.model("b").unwrap();
        assert_eq!(b.aliases().collect::<Vec<_>>(), ["b2"]);
        assert_eq!(
            Value::Object(b.extra()),
            serde_json::json!({"supports_vision": true, "aliases": ["b2", 3], "tiers": [{"x": 1}]})
        );
        assert_eq!(cat.model("b2").and_then(|e| e.input_cost_per_token), Some(1e-6));
    }

    #[test]
    fn reserved_keys_do_not_count_towards_the_minimum() {
        let json = br#"{"sample_spec": {}, "fallback_generalizations": {}, "m": {}}"#;
        let limits = ValidationLimits { min_models: 2, max_shrink_ratio: 0.5 };
        let err = parse_catalog(json, "t", None, &limits, t0()).unwrap_err();
        assert_eq!(err, CatalogError::TooFewModels { count: 1, min: 2 });
    }

    #[test]
    fn a_map_shrunk_to_a_tenth_is_refused() {
        let full: Map<String, Value> = serde_json::from_slice(BUNDLED_COST_MAP).expect("fixture parses");
        let tenth: Map<String, Value> =
            full.into_iter().enumerate().filter(|(i, _)| i % 10 == 0).map(|(_, kv)| kv).collect();
        let bytes = serde_json::to_vec(&tenth).expect("serialises");
        let err = parse_catalog(&bytes, "t", Some(fixture()), &ValidationLimits::default(), t0()).unwrap_err();
        assert!(matches!(err, CatalogError::Shrunk { previous: 4551, .. }), "{err}");
        // On its own (no previous map) the same map would be acceptable.
        assert!(parse_catalog(&bytes, "t", None, &ValidationLimits::default(), t0()).is_ok());
    }

    #[test]
    fn display_source_hides_credentials() {
        assert_eq!(display_source("https://user:pw@example.com/map.json?token=abc#x"), "https://example.com/map.json");
        assert_eq!(display_source("/etc/map.json"), "/etc/map.json");
    }

    #[test]
    fn failed_reload_marks_stale_and_a_good_one_clears_it() {
        let store = CatalogStore::new(fixture().clone());
        let t1 = t0() + Duration::from_secs(60);
        let err = store.try_reload(b"{", "remote", t1).unwrap_err();
        let st = store.status();
        // The initial catalog is the bundled copy, and still is.
        assert!(st.stale && !st.last_attempt_ok && st.using_bundled);
        assert_eq!(st.last_attempt_at, t1);
        assert_eq!(st.loaded_at, t0());
        assert_eq!(st.model_count, 4551);
        let reason = st.reason.expect("reason");
        assert!(reason.contains(&err.to_string()) && reason.contains("remote"), "{reason}");

        let t2 = t1 + Duration::from_secs(60);
        let report = store.try_reload(BUNDLED_COST_MAP, "remote", t2).expect("good map");
        assert_eq!((report.added, report.removed, report.model_count), (0, 0, 4551));
        let st = store.status();
        assert!(!st.stale && st.last_attempt_ok && st.reason.is_none() && !st.using_bundled);
        assert_eq!((st.loaded_at, st.source.as_str()), (t2, "remote"));
        let json = serde_json::to_value(&st).expect("serialises");
        assert_eq!(json["loaded_at"], serde_json::json!(1_770_000_120u64));
    }

    #[test]
    fn silent_fallback_bug_adopts_bundled_and_reports_not_stale() {
        let small = br#"{"m1": {"litellm_provider": "openai", "input_cost_per_token": 1e-6}}"#;
        let limits = ValidationLimits { min_models: 1, max_shrink_ratio: 0.0 };
        let initial = parse_catalog(small, "remote", None, &limits, t0()).expect("valid");
        let store = CatalogStore::with_options(initial, limits, BUNDLED_COST_MAP);
        store.set_known_bugs(CatalogBugs { silent_fallback_to_bundled: true, ..CatalogBugs::default() });
        assert!(store.try_reload(b"{{", "remote", t0()).is_ok());
        let st = store.status();
        assert!(!st.stale && st.reason.is_none());
        assert_eq!(st.model_count, 4551);
        assert!(store.current().model("m1").is_none());
    }

    #[tokio::test]
    async fn startup_falls_back_to_bundled_loudly() {
        let store = CatalogStore::load_startup(
            Some("/nonexistent/cost-map.json"),
            BUNDLED_COST_MAP,
            &ValidationLimits::default(),
            t0(),
        )
        .await;
        let st = store.status();
        assert!(st.stale && st.using_bundled && !st.last_attempt_ok);
        assert!(st.reason.as_deref().is_some_and(|r| r.contains("/nonexistent/cost-map.json")));
        assert_eq!((st.model_count, st.source.as_str()), (4551, BUNDLED_SOURCE));

        let store = CatalogStore::load_startup(None, BUNDLED_COST_MAP, &ValidationLimits::default(), t0()).await;
        let st = store.status();
        assert!(!st.stale && st.using_bundled && st.reason.is_none());
    }

    #[tokio::test]
    async fn startup_from_a_good_file_and_a_later_good_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("map.json");
        std::fs::write(&path, BUNDLED_COST_MAP).expect("write");
        let src = path.to_str().expect("utf-8 path");
        let store = CatalogStore::load_startup(Some(src), BUNDLED_COST_MAP, &ValidationLimits::default(), t0()).await;
        let st = store.status();
        assert!(!st.stale && !st.using_bundled);
        assert_eq!(st.source, src);

        let now = t0();
        assert!(store.reload_from_source("/nonexistent.json", Duration::from_secs(5), now).await.is_err());
        assert!(store.status().stale);
        store.reload_from_source(src, Duration::from_secs(5), now).await.expect("good reload");
        assert!(!store.status().stale);
    }

    #[tokio::test]
    async fn fetch_source_over_http() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/map.json"))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(b"{\"m\": {}}".to_vec()))
            .mount(&server)
            .await;
        let url = format!("{}/map.json", server.uri());
        let body = fetch_source(&url, Duration::from_secs(5)).await.expect("fetched");
        assert_eq!(body, b"{\"m\": {}}");

        let missing = format!("{}/other.json?token=secret", server.uri());
        let err = fetch_source(&missing, Duration::from_secs(5)).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("404") && !text.contains("secret"), "{text}");
    }
}
