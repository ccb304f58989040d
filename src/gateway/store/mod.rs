//! Durable state: virtual keys made at run time, every key's spend, and the
//! spend log. Embedded SQLite by default (a file, or `:memory:`, see
//! [`sqlite`]); Postgres when `general_settings.database_url` (or
//! `DATABASE_URL`) names one, so every instance of a fleet sees every key
//! (see [`postgres`]).
//!
//! What lives here and what does not: the [`KeyStore`](crate::gateway::keys::KeyStore)
//! stays the in-memory authority the request path reads (a hash lookup, no
//! I/O); this module is where its changes are made durable. Key creation and
//! deletion are written through before the admin call answers (a key handed
//! out must survive a `kill -9` the next instant). Spend is queued on the
//! request path and written in batches by [`SpendQueue::flush`] (every
//! `general_settings.proxy_batch_write_at` seconds, and on graceful shutdown),
//! so a crash loses at most one interval of spend and a request never waits
//! for a database.
//!
//! Why an enum over the two backends and not a trait: there are exactly two,
//! both known here; an enum needs no boxed futures or `async-trait`, its
//! `match` is exhaustive (a third backend is a compile error at every
//! method, not a forgotten default), and the SQLite side keeps its plain
//! synchronous code, moved onto `spawn_blocking` in one place (`blocking`).
//!
//! Architecture invariant: no secret is ever stored. Keys are stored under the
//! SHA-256 of their secret with the masked form, as in memory; a Postgres URL
//! is only ever shown with its password masked ([`PostgresUrl`]).

pub mod postgres;
pub mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

pub(crate) use postgres::PgStore;
pub use postgres::PostgresUrl;
pub(crate) use sqlite::SqliteStore;

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// Nothing survives the process (tests, in-process harness gateways).
    Memory,
    File(PathBuf),
    /// A Postgres server shared by every instance of a fleet.
    Postgres(PostgresUrl),
}

impl DatabaseLocation {
    /// `:memory:` or a path.
    pub fn parse(s: &str) -> DatabaseLocation {
        if s == ":memory:" {
            DatabaseLocation::Memory
        } else {
            DatabaseLocation::File(PathBuf::from(s))
        }
    }

    /// Where it is, for logs and `/health`: a Postgres URL's password masked.
    pub(crate) fn describe(&self) -> String {
        match self {
            DatabaseLocation::Memory => ":memory:".into(),
            DatabaseLocation::File(p) => p.display().to_string(),
            DatabaseLocation::Postgres(u) => u.describe(),
        }
    }

    /// What survives this process.
    pub(crate) fn is_durable(&self) -> bool {
        !matches!(self, DatabaseLocation::Memory)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {location}: {source}")]
    Sqlite {
        location: String,
        #[source]
        source: rusqlite::Error,
    },
    /// A Postgres error, with its causes spelled out (tokio-postgres shows
    /// only "db error" at the top).
    #[error("database {location}: {reason}")]
    Postgres { location: String, reason: String },
    #[error("database {location}: no connection within {secs} s (is the server up and reachable?)")]
    ConnectTimeout { location: String, secs: u64 },
    /// A Postgres operation that did not finish in time; its connection is
    /// dropped (the server rolls back what it had begun).
    #[error(
        "database {location}: no answer within {secs} s; the connection is dropped and made again on the next use"
    )]
    Timeout { location: String, secs: u64 },
    /// A `database_url` this gateway cannot use; never shows the password.
    #[error("general_settings.database_url (or DATABASE_URL): {0}")]
    Url(String),
    #[error("database {location}: cannot create its directory: {source}")]
    Directory {
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "database {location}: schema version {found} is newer than this gateway knows ({known}); refusing to touch it"
    )]
    TooNew { location: String, found: i64, known: i64 },
    #[error("database {location}: stored key {hash} is unreadable: {reason}")]
    BadRow { location: String, hash: String, reason: String },
    /// The blocking task that ran a SQLite statement died (a bug).
    #[error("database {location}: the database task failed: {reason}")]
    Task { location: String, reason: String },
}

/// A key made at run time, as stored: never the secret.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    /// Hex SHA-256 of the secret.
    pub hash: String,
    pub masked: String,
    /// The [`KeySpec`](crate::gateway::keys::KeySpec) as JSON.
    pub spec_json: String,
    pub created_at: u64,
}

/// One priced request, as the spend log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendRow {
    /// Unix seconds.
    pub at: u64,
    /// Hex hash of the key, or `None` for the master key / an open gateway.
    pub key_hash: Option<String>,
    /// The model name the client asked for.
    pub model: String,
    /// The deployment's upstream model.
    pub upstream_model: String,
    pub cost_usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The store: one of two backends, the same operations and the same
/// meaning on both (`tests/persistence.rs` runs its storage tests on each).
#[derive(Debug)]
pub enum Store {
    Sqlite(Arc<SqliteStore>),
    Postgres(Box<PgStore>),
}

/// Runs a SQLite call off the async workers.
async fn blocking<T: Send + 'static>(
    s: &Arc<SqliteStore>,
    f: impl FnOnce(&SqliteStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let s = Arc::clone(s);
    let location = s.location().describe();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .unwrap_or_else(|e| Err(StoreError::Task { location, reason: e.to_string() }))
}

impl Store {
    /// Opens (creating if needed) and migrates the database. A Postgres
    /// server that does not answer fails within the connect timeout.
    pub async fn open(location: DatabaseLocation) -> Result<Store, StoreError> {
        match location {
            DatabaseLocation::Postgres(url) => Ok(Store::Postgres(Box::new(PgStore::connect(url).await?))),
            local => {
                let described = local.describe();
                tokio::task::spawn_blocking(move || SqliteStore::open(local))
                    .await
                    .unwrap_or_else(|e| Err(StoreError::Task { location: described, reason: e.to_string() }))
                    .map(|s| Store::Sqlite(Arc::new(s)))
            }
        }
    }

    pub fn location(&self) -> &DatabaseLocation {
        match self {
            Store::Sqlite(s) => s.location(),
            Store::Postgres(p) => p.location(),
        }
    }

    /// `sqlite` or `postgres`, for `/health`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Whether other gateway instances may write here too (then keys made
    /// or deleted elsewhere must be looked up; see `Gateway::sync_store`).
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, |s| s.schema_version()).await,
            Store::Postgres(p) => p.bounded(p.schema_version()).await,
        }
    }

    /// Keys made at run time, oldest first.
    pub async fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, |s| s.load_keys()).await,
            Store::Postgres(p) => p.bounded(p.load_keys()).await,
        }
    }

    /// One run-time key by its hex hash.
    pub async fn find_key(&self, hash: &str) -> Result<Option<StoredKey>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let hash = hash.to_string();
                blocking(s, move |s| s.find_key(&hash)).await
            }
            Store::Postgres(p) => p.bounded(p.find_key(hash)).await,
        }
    }

    /// Every key's stored spend.
    pub async fn load_spend(&self) -> Result<Vec<(String, f64)>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, |s| s.load_spend()).await,
            Store::Postgres(p) => p.bounded(p.load_spend()).await,
        }
    }

    /// Stores a key made at run time (written through before the admin call answers).
    pub async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => {
                let key = key.clone();
                blocking(s, move |s| s.insert_key(&key)).await
            }
            Store::Postgres(p) => p.bounded(p.insert_key(key)).await,
        }
    }

    /// A run-time key's new spec; `false` if no such key is stored.
    pub async fn update_key(&self, hash: &str, spec_json: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let (hash, spec) = (hash.to_string(), spec_json.to_string());
                blocking(s, move |s| s.update_key(&hash, &spec)).await
            }
            Store::Postgres(p) => p.bounded(p.update_key(hash, spec_json)).await,
        }
    }

    /// A key's new secret: the new row in, its spend moved over, the old row
    /// out, in one transaction.
    pub async fn replace_key(&self, old_hash: &str, new: &StoredKey) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => {
                let (old, new) = (old_hash.to_string(), new.clone());
                blocking(s, move |s| s.replace_key(&old, &new)).await
            }
            Store::Postgres(p) => p.bounded(p.replace_key(old_hash, new)).await,
        }
    }

    /// Removes a key and its spend in one transaction; `true` if a run-time
    /// key was stored.
    pub async fn delete_key(&self, hash: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let hash = hash.to_string();
                blocking(s, move |s| s.delete_key(&hash)).await
            }
            Store::Postgres(p) => p.bounded(p.delete_key(hash)).await,
        }
    }

    /// Adds a batch of priced requests in one transaction: each key's spend
    /// grows by the sum of its rows and every row joins the log. All or nothing.
    pub async fn record_spend(&self, rows: &[SpendRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite(s) => {
                let rows = rows.to_vec();
                blocking(s, move |s| s.record_spend(&rows)).await
            }
            Store::Postgres(p) => p.bounded(p.record_spend(rows)).await,
        }
    }

    /// The last write of a gateway dropped without a graceful shutdown: at
    /// once on SQLite; on Postgres handed to the runtime it is dropped in
    /// (if any), best effort, since a drop cannot wait for the network.
    pub(crate) fn record_spend_on_drop(&self, rows: Vec<SpendRow>) {
        match self {
            Store::Sqlite(s) => {
                if let Err(e) = s.record_spend(&rows) {
                    tracing::error!(error = %e, rows = rows.len(), "spend could not be written when the gateway was dropped");
                }
            }
            Store::Postgres(p) => p.record_spend_detached(rows),
        }
    }

    /// The newest `limit` spend-log rows (optionally of one key), newest first.
    pub async fn spend_log(&self, key_hash: Option<&str>, limit: usize) -> Result<Vec<SpendRow>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let hash = key_hash.map(str::to_string);
                blocking(s, move |s| s.spend_log(hash.as_deref(), limit)).await
            }
            Store::Postgres(p) => p.bounded(p.spend_log(key_hash, limit)).await,
        }
    }

    /// The stored spend of one key (`0` when none was recorded).
    pub async fn key_spend(&self, hash: &str) -> Result<f64, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let hash = hash.to_string();
                blocking(s, move |s| s.key_spend(&hash)).await
            }
            Store::Postgres(p) => p.bounded(p.key_spend(hash)).await,
        }
    }
}

/// Spend waiting to be written. Pushing never blocks on I/O; a failed flush
/// puts its rows back, so nothing is dropped while the database is unhappy.
#[derive(Debug, Default)]
pub struct SpendQueue {
    pending: Mutex<Vec<SpendRow>>,
    /// Serializes flushes so rows are written in the order they were queued.
    flushing: tokio::sync::Mutex<()>,
}

/// What a flush did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct FlushReport {
    pub written: usize,
    /// Rows still queued after a failed write.
    pub pending: usize,
}

/// Queued rows that start a write at once, whatever the interval: bounds the
/// queue's memory when the periodic writer is slow or not running (a gateway
/// embedded in the harness has no timer).
pub(crate) const SPEND_QUEUE_HIGH_WATER: usize = 1024;

impl SpendQueue {
    /// Queues a row; `true` when the queue has reached
    /// `SPEND_QUEUE_HIGH_WATER` and should be written now.
    pub fn push(&self, row: SpendRow) -> bool {
        let mut p = self.pending.lock();
        p.push(row);
        p.len() >= SPEND_QUEUE_HIGH_WATER
    }

    pub fn len(&self) -> usize {
        self.pending.lock().len()
    }

    /// Everything queued, taken out (for a last synchronous write).
    pub fn take_all(&self) -> Vec<SpendRow> {
        std::mem::take(&mut *self.pending.lock())
    }

    pub fn is_empty(&self) -> bool {
        self.pending.lock().is_empty()
    }

    /// The queued spend of one key (hex hash), not yet written.
    pub fn pending_for(&self, hash: &str) -> f64 {
        self.pending.lock().iter().filter(|r| r.key_hash.as_deref() == Some(hash)).map(|r| r.cost_usd).sum()
    }

    /// Writes everything queued in one transaction (off the async workers).
    pub async fn flush(&self, store: &Store) -> Result<FlushReport, StoreError> {
        let _one_at_a_time = self.flushing.lock().await;
        let rows = std::mem::take(&mut *self.pending.lock());
        if rows.is_empty() {
            return Ok(FlushReport::default());
        }
        match store.record_spend(&rows).await {
            Ok(()) => Ok(FlushReport { written: rows.len(), pending: self.len() }),
            Err(e) => {
                let mut pending = self.pending.lock();
                let newer = std::mem::replace(&mut *pending, rows);
                pending.extend(newer);
                Err(e)
            }
        }
    }
}

/// The default database file for a config file: `postmortem.db` beside it.
pub(crate) fn default_path_for(config: &Path) -> PathBuf {
    config.parent().unwrap_or_else(|| Path::new(".")).join("postmortem.db")
}
