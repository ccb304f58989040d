//! The gateway's shared state and how it is built from a config.

use crate::gateway::beta::BetaPolicy;
use crate::gateway::catalog::{self, CatalogBugs, CatalogStore, ValidationLimits};
use crate::gateway::client_cache::{CacheConfig, ClientCache, Lease};
use crate::gateway::clock::{CoarseClock, SharedClock};
use crate::gateway::config::{Config, ConfigError};
use crate::gateway::error::ApiError;
use crate::gateway::keys::{KeyRecord, KeySpec, KeyStore};
use crate::gateway::known_bugs::KnownBugs;
use crate::gateway::reliability::{CooldownPolicy, FallbackPolicy};
use crate::gateway::routing::{ModelRouter, RouteError};
use crate::gateway::store::{DatabaseLocation, PostgresUrl, SpendQueue, SpendRow, Store, StoreError, StoredKey};
use crate::gateway::upstream::{ClientKey, UpstreamClient};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("config: {0}")]
    Route(#[from] RouteError),
    #[error("anthropic beta policy: {0}")]
    Beta(String),
    #[error("config: keys: {0}")]
    Keys(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("config: {0}")]
    Reliability(#[from] crate::gateway::reliability::FallbackError),
    /// OpenTelemetry settings that cannot be honoured (a protocol other
    /// than OTLP/HTTP JSON, a malformed endpoint or header list).
    #[error("config: otel: {0}")]
    Otel(#[from] crate::gateway::otel::OtelError),
    /// The Redis client could not be set up from a valid address.
    #[error("config: redis: {0}")]
    Redis(String),
}

/// Where the anthropic-beta policy came from and whether the last reload worked.
#[derive(Debug, Clone, Serialize)]
pub struct BetaStatus {
    pub source: String,
    pub stale: bool,
    pub reason: Option<String>,
    pub loaded_at_unix: u64,
}

pub struct Gateway {
    pub config: Config,
    pub root_path: String,
    pub router: ModelRouter,
    pub catalog: CatalogStore,
    pub keys: KeyStore,
    pub clients: ClientCache<ClientKey, UpstreamClient>,
    pub beta: ArcSwap<BetaPolicy>,
    pub beta_status: Mutex<BetaStatus>,
    pub clock: SharedClock,
    pub bugs: KnownBugs,
    pub drop_params: bool,
    pub max_body_bytes: usize,
    pub upstream_limits: crate::gateway::upstream::UpstreamLimits,
    pub started_at: SystemTime,
    /// Run-time keys, spend and the spend log, made durable.
    pub store: Arc<Store>,
    /// Spend waiting for the next batch write.
    pub spend: Arc<SpendQueue>,
    /// Held by the key admin calls and by [`Gateway::sync_store`]'s
    /// reconciliation, so a sync never lays an older stored spec over a
    /// change this instance is making.
    key_writes: tokio::sync::Mutex<()>,
    /// Fallbacks between groups and aliases (`router_settings`/`litellm_settings`).
    pub fallbacks: FallbackPolicy,
    pub cooldowns: CooldownPolicy,
    /// What `GET /metrics` shows.
    pub metrics: crate::gateway::metrics::Metrics,
    /// The last hour per model and key, for the charts on `/ui`.
    pub activity: crate::gateway::activity::Activity,
    /// OpenTelemetry traces, when a callback names `otel`.
    pub otel: Option<crate::gateway::otel::Otel>,
    /// Cached answers, when `litellm_settings.cache: true` asks for a store
    /// this gateway has (in memory, or Redis).
    pub response_cache: Option<crate::gateway::response_cache::ResponseCache>,
    /// Virtual keys' rpm/tpm windows in Redis, shared with the other
    /// instances, when Redis is configured (`router_settings.redis_*`).
    pub shared_limits: Option<Arc<crate::gateway::shared_limits::SharedLimits>>,
    /// Monotonic time of the next periodic cost-map reload.
    next_cost_map_reload: Mutex<Option<Duration>>,
}

/// A gateway dropped without a graceful shutdown (embedded, in tests) still
/// writes its queued spend: nothing is lost because nobody called `flush`.
impl Drop for Gateway {
    fn drop(&mut self) {
        let rows = self.spend.take_all();
        if !rows.is_empty() {
            self.store.record_spend_on_drop(rows);
        }
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("root_path", &self.root_path).finish_non_exhaustive()
    }
}

pub struct GatewayBuilder {
    config: Config,
    clock: SharedClock,
    bugs: KnownBugs,
    database: Option<DatabaseLocation>,
}

/// How often the production clock is refreshed. Every use of it (rate
/// windows of a minute, cooldowns of seconds, client-cache TTLs, reload
/// intervals) is far coarser; each refresh is a wake-up of an idle gateway
/// (measured: at 1 ms, 2.8% of a core idle; BENCHMARKS.md, seventh run).
pub(crate) const COARSE_CLOCK_RESOLUTION: Duration = Duration::from_millis(10);

impl GatewayBuilder {
    pub fn new(config: Config) -> Self {
        GatewayBuilder {
            config,
            clock: CoarseClock::start(COARSE_CLOCK_RESOLUTION),
            bugs: KnownBugs::default(),
            database: None,
        }
    }

    /// Where the database is when the config does not say
    /// (`general_settings.database_url`, then `database_path`, win).
    /// Default `:memory:`.
    pub(crate) fn default_database(mut self, location: DatabaseLocation) -> Self {
        self.database = Some(location);
        self
    }

    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Puts incidents' bugs back. For the regression harness's proofs only.
    pub(crate) fn known_bugs(mut self, bugs: KnownBugs) -> Self {
        self.bugs = bugs;
        self
    }

    pub async fn build(self) -> Result<Arc<Gateway>, BuildError> {
        let GatewayBuilder { mut config, clock, bugs, database } = self;
        config.resolve_env("config")?;
        let root_path = config.root_path()?;
        // Before anything slow: a tracing setting that cannot be honoured
        // refuses the start at once, with the variable it came from.
        let otel = crate::gateway::otel::Otel::from_config(&config)?;
        let redis = config.redis_target("config")?;
        let cache_redis = config.cache_redis_target("config")?;

        let limits = cost_map_limits(&config);
        let source = cost_map_source(&config);
        let catalog_bugs = CatalogBugs {
            stale_index_on_reload: bugs.stale_wildcard_index,
            silent_fallback_to_bundled: bugs.silent_cost_map_fallback,
        };
        let catalog = CatalogStore::load_startup_with(
            source.as_deref(),
            catalog::BUNDLED_COST_MAP,
            &limits,
            clock.wall(),
            catalog::DEFAULT_FETCH_TIMEOUT,
            catalog_bugs,
        )
        .await;

        let fallbacks = FallbackPolicy::from_config(&config)?;
        let cooldowns = CooldownPolicy::from_config(&config);
        // After the cost map: it tells the provider of bare model names.
        let router = ModelRouter::from_config_with(&config, Some(&catalog.current()))?;

        let keys = KeyStore::new(clock.clone());
        for (i, k) in config.keys.iter().enumerate() {
            let spec = KeySpec {
                models: k.models.clone(),
                max_budget: k.max_budget,
                rpm: k.rpm,
                tpm: k.tpm,
                metadata: k.metadata.clone().unwrap_or(serde_json::Value::Null),
                alias: k.alias.clone(),
                ..KeySpec::default()
            };
            keys.insert_from_config(&k.key, spec).map_err(|e| BuildError::Keys(format!("keys[{i}]: {e}")))?;
        }
        let location = match (&config.general_settings.database_url, &config.general_settings.database_path) {
            (Some(url), _) => DatabaseLocation::Postgres(PostgresUrl::parse(url)?),
            (None, Some(p)) => DatabaseLocation::parse(p),
            (None, None) => database.unwrap_or(DatabaseLocation::Memory),
        };
        let store = Arc::new(Store::open(location).await?);
        tracing::debug!(backend = store.backend(), database = %store.location().describe(), "database ready");
        restore_keys(&store, &keys).await?;
        if config.general_settings.master_key.is_none() && keys.is_empty() {
            tracing::warn!(
                admin_routes_open = config.general_settings.allow_unauthenticated_admin,
                "NO MASTER KEY: anyone who can reach this gateway may call its models. Set \
                 general_settings.master_key or LITELLM_MASTER_KEY. Admin routes are {}.",
                if config.general_settings.allow_unauthenticated_admin {
                    "OPEN to anyone (allow_unauthenticated_admin: true)"
                } else {
                    "closed"
                }
            );
        }

        let cache_config = CacheConfig {
            capacity: config.general_settings.client_cache_capacity.unwrap_or(200),
            ttl: Duration::from_secs(config.general_settings.client_cache_ttl_secs.unwrap_or(600)),
        };
        let clients = ClientCache::new(cache_config, clock.clone());
        clients.set_close_on_evict(bugs.close_evicted_clients);

        let beta_source = beta_source(&config);
        let (policy, beta_status) = match &beta_source {
            Some(src) => {
                let bytes = catalog::fetch_source(src, Duration::from_secs(10))
                    .await
                    .map_err(|e| BuildError::Beta(e.to_string()))?;
                let text = String::from_utf8_lossy(&bytes);
                let p = BetaPolicy::from_json(&text, src).map_err(|e| BuildError::Beta(e.to_string()))?;
                (p, status_now(src, &clock))
            }
            None => (BetaPolicy::bundled(), status_now("bundled", &clock)),
        };

        let reload_interval = config.general_settings.model_cost_map_reload_interval_secs.map(Duration::from_secs);
        let drop_params = config.litellm_settings.drop_params;
        let max_body_bytes = config.max_body_bytes();
        let upstream_limits = crate::gateway::upstream::UpstreamLimits::from_config(&config);
        let activity = crate::gateway::activity::Activity::new(clock.clone());
        // As the shared limits: never waits for Redis. The known bug keeps
        // `type: redis` answers in this instance's memory.
        let cache_link = match cache_redis.filter(|_| !bugs.cache_local_only_with_redis) {
            Some(target) => Some(
                crate::gateway::response_cache::ResponseCache::connect(target)
                    .map_err(|e| BuildError::Redis(e.to_string()))?,
            ),
            None => None,
        };
        let response_cache =
            crate::gateway::response_cache::ResponseCache::from_config(&config, clock.clone(), cache_link);
        // Never waits for Redis: a gateway starts with Redis down and counts
        // on its own until the background probe reaches it.
        let shared_limits = match redis {
            Some(target) => Some(
                crate::gateway::shared_limits::SharedLimits::start(
                    target,
                    clock.clone(),
                    bugs.drop_spend_while_redis_down,
                )
                .map_err(|e| BuildError::Redis(e.to_string()))?,
            ),
            None => None,
        };
        let gw = Arc::new(Gateway {
            next_cost_map_reload: Mutex::new(reload_interval.map(|i| clock.now() + i)),
            config,
            root_path,
            router,
            catalog,
            keys,
            clients,
            beta: ArcSwap::from_pointee(policy),
            beta_status: Mutex::new(beta_status),
            started_at: clock.wall(),
            clock,
            bugs,
            drop_params,
            max_body_bytes,
            upstream_limits,
            store,
            spend: Arc::new(SpendQueue::default()),
            key_writes: tokio::sync::Mutex::new(()),
            fallbacks,
            cooldowns,
            metrics: crate::gateway::metrics::Metrics::new(),
            activity,
            otel,
            response_cache,
            shared_limits,
        });
        if let Some(shared) = &gw.shared_limits {
            // A weak handle: the listener must not keep a dropped gateway alive.
            let weak = Arc::downgrade(&gw);
            shared.listen_for_reloads(Arc::new(move |what| {
                let weak = weak.clone();
                Box::pin(async move {
                    use crate::gateway::shared_limits::Reloadable;
                    let Some(gw) = weak.upgrade() else { return };
                    // Validated as any reload: a bad map or policy is refused
                    // here too, and the status says why.
                    let result = match what {
                        Reloadable::CostMap => gw.reload_cost_map().await,
                        Reloadable::BetaPolicy => gw.reload_beta_policy().await,
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = %e, ?what, "broadcast reload refused");
                    }
                })
            }));
        }
        Ok(gw)
    }
}

/// `spec` with `patch` laid over it (LiteLLM's field names accepted;
/// `duration` sets `expires_at` from `now`; unknown fields refused).
fn patched_spec(
    spec: &KeySpec,
    mut patch: serde_json::Map<String, serde_json::Value>,
    now: u64,
) -> Result<KeySpec, ApiError> {
    let bad = |m: String| ApiError::BadRequest(format!("invalid key spec: {m}"));
    if let Some(d) = patch.remove("duration") {
        let expires = match d {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => {
                Some(now.saturating_add(crate::gateway::keys::parse_duration(&s).map_err(|e| bad(e.to_string()))?))
            }
            other => return Err(bad(format!("duration must be a string such as \"30d\", got {other}"))),
        };
        patch.insert("expires_at".into(), serde_json::json!(expires));
    }
    if patch.contains_key("budget_duration") {
        return Err(bad("budget_duration (periodic budget resets) is not supported yet".into()));
    }
    let mut v = serde_json::to_value(spec).map_err(|e| bad(e.to_string()))?;
    if let Some(obj) = v.as_object_mut() {
        for (k, val) in patch {
            let k = match k.as_str() {
                "rpm_limit" => "rpm".to_string(),
                "tpm_limit" => "tpm".to_string(),
                "key_alias" => "alias".to_string(),
                _ => k,
            };
            obj.insert(k, val);
        }
    }
    serde_json::from_value(v).map_err(|e| bad(e.to_string()))
}

/// Puts back the run-time keys and every key's spend from the store.
async fn restore_keys(store: &Store, keys: &KeyStore) -> Result<(), BuildError> {
    for stored in store.load_keys().await? {
        keys.insert_stored(&stored).map_err(|e| BuildError::Keys(format!("stored key {}: {e}", stored.hash)))?;
    }
    for (hash, spend) in store.load_spend().await? {
        // Spend of a config key that has since left the config stays stored
        // (it is history) but belongs to no key now.
        if let Some(k) = keys.get(&hash) {
            k.restore_spend(spend);
        }
    }
    Ok(())
}

fn status_now(source: &str, clock: &SharedClock) -> BetaStatus {
    BetaStatus { source: source.to_string(), stale: false, reason: None, loaded_at_unix: unix(clock.wall()) }
}

pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn cost_map_limits(config: &Config) -> ValidationLimits {
    let mut l = ValidationLimits::default();
    if let Some(n) = config.general_settings.model_cost_map_min_models {
        l.min_models = n;
    }
    if let Some(r) = config.general_settings.model_cost_map_max_shrink_ratio {
        l.max_shrink_ratio = r;
    }
    l
}

fn cost_map_source(config: &Config) -> Option<String> {
    config
        .general_settings
        .model_cost_map
        .clone()
        .or_else(|| config.env_var("LITELLM_MODEL_COST_MAP_URL").filter(|s| !s.is_empty()))
}

fn beta_source(config: &Config) -> Option<String> {
    config
        .general_settings
        .anthropic_beta_headers
        .clone()
        .or_else(|| config.env_var("LITELLM_ANTHROPIC_BETA_HEADERS_URL").filter(|s| !s.is_empty()))
}

impl Gateway {
    /// Creates a key and stores it before answering: a key handed out
    /// survives a crash the next instant.
    /// `body` is `/key/generate`'s: the spec's fields (LiteLLM's names too),
    /// `duration`, and an optional `key` (the secret to use).
    pub(crate) async fn generate_key(
        &self,
        mut body: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(String, crate::gateway::keys::KeyInfo), ApiError> {
        let secret = match body.remove("key") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(other) => {
                return Err(ApiError::BadRequest(format!("invalid key spec: `key` must be a string, got {other}")))
            }
        };
        let spec = patched_spec(&KeySpec::default(), body, unix(self.clock.wall()))?;
        let _writing = self.key_writes.lock().await;
        let (secret, record) = self.keys.generate(spec, secret).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        match self.store.insert_key(&record.to_stored()).await {
            Ok(()) => Ok((secret, record.info())),
            Err(e) => {
                self.keys.delete(&record.key_hash());
                tracing::error!(error = %e, "could not store a new key; it was not created");
                Err(ApiError::Internal("the key could not be stored; it was not created".into()))
            }
        }
    }

    /// Changes a run-time key: `patch` holds the spec fields to set (LiteLLM's
    /// names too: `rpm_limit`, `key_alias`, `duration`…); with `new_secret`
    /// the key gets that secret and the old one stops working. Written to the
    /// store first, then swapped in memory; spend and creation time stay.
    pub(crate) async fn change_key(
        &self,
        secret_or_hash: &str,
        patch: serde_json::Map<String, serde_json::Value>,
        new_secret: Option<String>,
    ) -> Result<crate::gateway::keys::KeyInfo, ApiError> {
        let _writing = self.key_writes.lock().await;
        let Some(old) = self.lookup_key(secret_or_hash).await else {
            return Err(ApiError::NotFound("key not found".into()));
        };
        if !old.is_runtime() {
            return Err(ApiError::BadRequest(
                "this key comes from the config file: change it there (keys made with /key/generate can be changed here)"
                    .into(),
            ));
        }
        let now = unix(self.clock.wall());
        let spec = patched_spec(old.spec(), patch, now)?;
        if new_secret.is_some() {
            // Queued spend names the old hash: write it before the hash moves.
            self.flush_spend().await.map_err(|e| {
                tracing::error!(error = %e, "spend write before a key regeneration failed");
                ApiError::Internal("the key's spend could not be written; it was not regenerated".into())
            })?;
        }
        let record =
            self.keys.replace(&old, spec, new_secret.as_deref()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let (old_hash, stored) = (old.key_hash(), record.to_stored());
        let written = if new_secret.is_some() {
            self.store.replace_key(&old_hash, &stored).await
        } else {
            self.store.update_key(&old_hash, &stored.spec_json).await.map(drop)
        };
        match written {
            Ok(()) => Ok(record.info()),
            Err(e) => {
                // Put the old record back: memory must match the store.
                let _ = self.keys.replace(&record, old.spec().clone(), None);
                tracing::error!(error = %e, "could not store a key change; it was not made");
                Err(ApiError::Internal("the change could not be stored; the key is unchanged".into()))
            }
        }
    }

    /// Deletes a key (by secret or hash) from the store, then from memory;
    /// `Ok(false)` when there is no such key.
    pub async fn delete_key(&self, secret_or_hash: &str) -> Result<bool, ApiError> {
        let _writing = self.key_writes.lock().await;
        let Some(record) = self.lookup_key(secret_or_hash).await else {
            return Ok(false);
        };
        let hash = record.key_hash();
        match self.store.delete_key(&hash).await {
            Ok(_) => Ok(self.keys.delete(&hash)),
            Err(e) => {
                tracing::error!(error = %e, "could not delete a key from the database; it stays");
                Err(ApiError::Internal("the key could not be deleted from the database; it stays".into()))
            }
        }
    }

    /// A key by secret or hash: from memory, else (on a shared database) from
    /// the database, where another instance may have made it; a key found
    /// there joins memory with its stored spend. A database error is a miss
    /// (logged): the caller answers 401/404 as for an unknown key.
    pub(crate) async fn lookup_key(&self, secret_or_hash: &str) -> Option<Arc<KeyRecord>> {
        if let Some(r) = self.keys.get(secret_or_hash) {
            return Some(r);
        }
        if !self.store.is_shared() || secret_or_hash.is_empty() || self.bugs.adopt_no_shared_keys {
            return None;
        }
        for hash in crate::gateway::keys::candidate_hashes(secret_or_hash) {
            match self.store.find_key(&hash).await {
                Ok(Some(stored)) => return self.adopt_stored_key(&stored).await,
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "key lookup in the shared database failed; treating it as unknown");
                    return None;
                }
            }
        }
        None
    }

    /// Puts a key read from the shared database into memory, with its spend.
    async fn adopt_stored_key(&self, stored: &StoredKey) -> Option<Arc<KeyRecord>> {
        let spend = match self.store.key_spend(&stored.hash).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "reading a key's spend failed; the key is not adopted now");
                return None;
            }
        };
        match self.keys.insert_stored(stored) {
            Ok(r) => {
                r.restore_spend(spend);
                Some(r)
            }
            // Adopted meanwhile by a concurrent request: use that one.
            Err(_) => self.keys.get(&stored.hash),
        }
    }

    /// Writes queued spend, then, on a shared database, brings memory in line
    /// with what every instance wrote: keys made elsewhere are adopted, keys
    /// deleted or regenerated elsewhere stop working here, changed specs are
    /// taken, and each key's spend becomes the stored total plus what is still
    /// queued here (never less than what this instance counted). Run by the
    /// periodic spend writer, so another instance's change is seen here within
    /// `proxy_batch_write_at` seconds (a key it made is seen at once: see
    /// `Gateway::lookup_key`).
    pub async fn sync_store(&self) -> Result<crate::gateway::store::FlushReport, StoreError> {
        let report = self.flush_spend().await?;
        if !self.store.is_shared() {
            return Ok(report);
        }
        let _writing = self.key_writes.lock().await;
        let stored = self.store.load_keys().await?;
        let spend = self.store.load_spend().await?;
        let live: std::collections::HashSet<&str> = stored.iter().map(|k| k.hash.as_str()).collect();
        for info in self.keys.list() {
            let gone = !live.contains(info.key_hash.as_str());
            if gone && self.keys.get(&info.key_hash).is_some_and(|r| r.is_runtime()) {
                self.keys.delete(&info.key_hash);
            }
        }
        for k in &stored {
            match self.keys.get(&k.hash) {
                None => {
                    let _ = self.keys.insert_stored(k);
                }
                Some(r) if r.to_stored().spec_json != k.spec_json => {
                    let spent = r.spend();
                    self.keys.delete(&k.hash);
                    if let Ok(n) = self.keys.insert_stored(k) {
                        n.restore_spend(spent);
                    }
                }
                Some(_) => {}
            }
        }
        for (hash, usd) in spend {
            if let Some(r) = self.keys.get(&hash) {
                r.raise_spend_to(usd + self.spend.pending_for(&hash));
            }
        }
        Ok(report)
    }

    /// Queues a priced request's spend for the next batch write.
    pub fn record_spend(&self, row: SpendRow) {
        if self.spend.push(row) {
            let (queue, store) = (Arc::clone(&self.spend), Arc::clone(&self.store));
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = queue.flush(&store).await {
                        tracing::error!(error = %e, "spend write failed; the rows stay queued");
                    }
                });
            }
        }
    }

    /// Writes queued spend now. Called by the periodic task, on graceful
    /// shutdown, and by tests.
    pub async fn flush_spend(&self) -> Result<crate::gateway::store::FlushReport, StoreError> {
        let written = self.spend.flush(&self.store).await;
        if written.is_err() && self.bugs.drop_unwritten_spend {
            self.spend.take_all();
        }
        written
    }

    /// Sends the finished spans now (graceful shutdown; tests); `None`
    /// when traces are off.
    pub async fn flush_traces(&self) -> Option<crate::gateway::otel::ExportStats> {
        match &self.otel {
            Some(o) => Some(o.flush().await),
            None => None,
        }
    }

    /// Seconds between spend writes.
    pub(crate) fn spend_flush_interval(&self) -> Duration {
        Duration::from_secs(self.config.general_settings.proxy_batch_write_at.unwrap_or(10).max(1))
    }

    /// A client for `key` from the cache (or a new one). The returned lease
    /// keeps the client alive for as long as the caller holds it.
    pub fn client(&self, key: ClientKey) -> Result<Lease<UpstreamClient>, ApiError> {
        let k = key.clone();
        let limits = self.upstream_limits;
        self.clients.get_or_insert_with(key, move || UpstreamClient::new(&k, &limits))
    }

    /// Re-fetches the cost map from its configured source and adopts it only
    /// if it validates. The outcome (adopted, or stale with the reason) is in
    /// `catalog.status()`.
    pub(crate) async fn reload_cost_map(self: &Arc<Self>) -> Result<serde_json::Value, ApiError> {
        let source = cost_map_source(&self.config).unwrap_or_else(|| "bundled".into());
        let bytes = if source == "bundled" {
            Ok(catalog::BUNDLED_COST_MAP.to_vec())
        } else {
            catalog::fetch_source(&source, Duration::from_secs(10)).await
        };
        let result = match bytes {
            Ok(b) => {
                // Parsing, validating and indexing the 3 MB map takes ~40 ms
                // of CPU: on a blocking thread, not an async worker that is
                // also serving requests.
                let gw = Arc::clone(self);
                let (src, now) = (source.clone(), self.clock.wall());
                // The reload's log lines go where the caller's would.
                let log = tracing::dispatcher::get_default(|d| d.clone());
                tokio::task::spawn_blocking(move || {
                    tracing::dispatcher::with_default(&log, || gw.catalog.try_reload(&b, &src, now).map(|_| ()))
                })
                .await
                .unwrap_or_else(|e| Err(catalog::CatalogError::ReloadTask(e.to_string())))
            }
            Err(e) => {
                self.catalog.record_failed_fetch(&e, self.clock.wall());
                Err(e)
            }
        };
        let status = serde_json::to_value(self.catalog.status()).unwrap_or_default();
        match result {
            Ok(()) => Ok(serde_json::json!({"status": "success", "catalog": status})),
            Err(e) => Err(ApiError::Upstream {
                status: 422,
                message: format!("cost map from {source} was not adopted (the previous map stays in use): {e}"),
                provider: "cost_map".into(),
                retry_after: None,
                error_type: Some("cost_map_invalid".into()),
            }),
        }
    }

    pub(crate) async fn reload_beta_policy(&self) -> Result<serde_json::Value, ApiError> {
        let source = beta_source(&self.config);
        let parsed = match &source {
            None => Ok(BetaPolicy::bundled()),
            Some(src) => match catalog::fetch_source(src, Duration::from_secs(10)).await {
                Ok(bytes) => BetaPolicy::from_json(&String::from_utf8_lossy(&bytes), src).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        };
        let src = source.unwrap_or_else(|| "bundled".into());
        let mut st = self.beta_status.lock();
        match parsed {
            Ok(p) => {
                self.beta.store(Arc::new(p));
                *st = status_now(&src, &self.clock);
                Ok(serde_json::json!({"status": "success", "beta_policy": *st}))
            }
            Err(e) => {
                tracing::error!(source = %src, error = %e, "anthropic beta policy reload failed; keeping the policy in use");
                st.stale = true;
                st.reason = Some(e.clone());
                Err(ApiError::Upstream {
                    status: 422,
                    message: format!("beta policy from {src} was not adopted: {e}"),
                    provider: "beta_policy".into(),
                    retry_after: None,
                    error_type: Some("beta_policy_invalid".into()),
                })
            }
        }
    }

    /// Runs the periodic cost-map reload if it is due by the gateway's
    /// clock. Called by the background ticker in production and by the
    /// harness after it advances a manual clock.
    pub(crate) async fn run_due_tasks(self: &Arc<Self>) {
        let interval = match self.config.general_settings.model_cost_map_reload_interval_secs {
            Some(s) => Duration::from_secs(s),
            None => return,
        };
        let now = self.clock.now();
        let due = {
            let mut next = self.next_cost_map_reload.lock();
            match *next {
                Some(t) if now >= t => {
                    *next = Some(now + interval);
                    true
                }
                _ => false,
            }
        };
        if due {
            if let Err(e) = self.reload_cost_map().await {
                tracing::error!(error = %e, "periodic cost map reload failed");
            }
        }
    }
}
