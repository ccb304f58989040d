//! Durable state: virtual keys made at run time, every key's spend, and the
//! spend log. Embedded SQLite by default (a file, or `:memory:`).
//!
//! What lives here and what does not: the [`KeyStore`](crate::gateway::keys::KeyStore)
//! stays the in-memory authority the request path reads (a hash lookup, no
//! I/O); this module is where its changes are made durable. Key creation and
//! deletion are written through before the admin call answers (a key handed
//! out must survive a `kill -9` the next instant). Spend is queued on the
//! request path and written in batches by [`SpendQueue::flush`] (every
//! `general_settings.proxy_batch_write_at` seconds, and on graceful shutdown),
//! so a crash loses at most one interval of spend and a request never waits
//! for a disk.
//!
//! Why `rusqlite` (bundled) and not `sqlx`: the gateway needs a handful of
//! statements, no compile-time query checking and no async driver for an
//! embedded file; `rusqlite` builds SQLite itself (no system library) and adds
//! far less to a 2-core build than `sqlx`'s macro stack.
//!
//! Architecture invariant: no secret is ever stored. Keys are stored under the
//! SHA-256 of their secret with the masked form, as in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// Where the embedded database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// Nothing survives the process (tests, in-process harness gateways).
    Memory,
    File(PathBuf),
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

    pub fn describe(&self) -> String {
        match self {
            DatabaseLocation::Memory => ":memory:".into(),
            DatabaseLocation::File(p) => p.display().to_string(),
        }
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

/// Schema migrations, applied in order; the index + 1 is the version.
/// Never edit one that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: keys made at run time, spend per key (config keys too), the spend log.
    "CREATE TABLE keys (
         hash TEXT PRIMARY KEY,
         masked TEXT NOT NULL,
         spec TEXT NOT NULL,
         created_at INTEGER NOT NULL
     );
     CREATE TABLE key_spend (
         hash TEXT PRIMARY KEY,
         spend REAL NOT NULL
     );
     CREATE TABLE spend_log (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         at INTEGER NOT NULL,
         key_hash TEXT,
         model TEXT NOT NULL,
         upstream_model TEXT NOT NULL,
         cost_usd REAL NOT NULL,
         input_tokens INTEGER NOT NULL,
         output_tokens INTEGER NOT NULL
     );
     CREATE INDEX spend_log_key ON spend_log(key_hash, at);",
];

/// The embedded store. Statements are short; callers on the async runtime
/// use `spawn_blocking` for them (see [`SpendQueue::flush`]).
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    location: DatabaseLocation,
}

impl Store {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(location: DatabaseLocation) -> Result<Store, StoreError> {
        let described = location.describe();
        let err = |source| StoreError::Sqlite { location: described.clone(), source };
        let conn = match &location {
            DatabaseLocation::Memory => Connection::open_in_memory().map_err(err)?,
            DatabaseLocation::File(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|source| StoreError::Directory { location: described.clone(), source })?;
                }
                let c = Connection::open(p).map_err(err)?;
                // WAL: readers never block the writer; NORMAL sync is durable
                // at each transaction boundary against a process crash.
                c.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
                c.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
                c
            }
        };
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        let store = Store { conn: Mutex::new(conn), location };
        store.migrate()?;
        Ok(store)
    }

    pub fn location(&self) -> &DatabaseLocation {
        &self.location
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite { location: self.location.describe(), source }
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn.lock().pragma_query_value(None, "user_version", |r| r.get(0)).map_err(self.err())
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        let mut conn = self.conn.lock();
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(self.err())?;
        if found > known {
            return Err(StoreError::TooNew { location: self.location.describe(), found, known });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = conn.transaction().map_err(self.err())?;
            tx.execute_batch(sql).map_err(self.err())?;
            tx.pragma_update(None, "user_version", i as i64 + 1).map_err(self.err())?;
            tx.commit().map_err(self.err())?;
        }
        Ok(())
    }

    /// Keys made at run time, oldest first.
    pub fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare("SELECT hash, masked, spec, created_at FROM keys ORDER BY created_at, hash")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredKey {
                    hash: r.get(0)?,
                    masked: r.get(1)?,
                    spec_json: r.get(2)?,
                    created_at: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Every key's stored spend.
    pub fn load_spend(&self) -> Result<Vec<(String, f64)>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT hash, spend FROM key_spend").map_err(self.err())?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Stores a key made at run time (written through before the admin call answers).
    pub fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        self.conn
            .lock()
            .execute(
                "INSERT INTO keys (hash, masked, spec, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![key.hash, key.masked, key.spec_json, key.created_at as i64],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// A run-time key's new spec; `false` if no such key is stored.
    pub fn update_key(&self, hash: &str, spec_json: &str) -> Result<bool, StoreError> {
        self.conn
            .lock()
            .execute("UPDATE keys SET spec = ?2 WHERE hash = ?1", params![hash, spec_json])
            .map(|n| n > 0)
            .map_err(self.err())
    }

    /// A key's new secret: the new row in, its spend moved over, the old row
    /// out, in one transaction.
    pub fn replace_key(&self, old_hash: &str, new: &StoredKey) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(self.err())?;
        tx.execute(
            "INSERT INTO keys (hash, masked, spec, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![new.hash, new.masked, new.spec_json, new.created_at as i64],
        )
        .map_err(self.err())?;
        tx.execute("UPDATE key_spend SET hash = ?2 WHERE hash = ?1", params![old_hash, new.hash])
            .map_err(self.err())?;
        tx.execute("DELETE FROM keys WHERE hash = ?1", [old_hash]).map_err(self.err())?;
        tx.commit().map_err(self.err())
    }

    /// Removes a key and its spend; `true` if a run-time key was stored.
    pub fn delete_key(&self, hash: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(self.err())?;
        let n = tx.execute("DELETE FROM keys WHERE hash = ?1", [hash]).map_err(self.err())?;
        tx.execute("DELETE FROM key_spend WHERE hash = ?1", [hash]).map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok(n > 0)
    }

    /// Adds a batch of priced requests in one transaction: each key's spend
    /// grows by the sum of its rows and every row joins the log. All or nothing.
    pub fn record_spend(&self, rows: &[SpendRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(self.err())?;
        {
            let mut log = tx
                .prepare_cached(
                    "INSERT INTO spend_log (at, key_hash, model, upstream_model, cost_usd, input_tokens, output_tokens)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(self.err())?;
            let mut spend = tx
                .prepare_cached(
                    "INSERT INTO key_spend (hash, spend) VALUES (?1, ?2)
                     ON CONFLICT(hash) DO UPDATE SET spend = spend + excluded.spend",
                )
                .map_err(self.err())?;
            for r in rows {
                log.execute(params![
                    r.at as i64,
                    r.key_hash,
                    r.model,
                    r.upstream_model,
                    r.cost_usd,
                    r.input_tokens as i64,
                    r.output_tokens as i64
                ])
                .map_err(self.err())?;
                if let Some(h) = &r.key_hash {
                    spend.execute(params![h, r.cost_usd]).map_err(self.err())?;
                }
            }
        }
        tx.commit().map_err(self.err())
    }

    /// The newest `limit` spend-log rows (optionally of one key), newest first.
    pub fn spend_log(&self, key_hash: Option<&str>, limit: usize) -> Result<Vec<SpendRow>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare(
                "SELECT at, key_hash, model, upstream_model, cost_usd, input_tokens, output_tokens FROM spend_log
                 WHERE (?1 IS NULL OR key_hash = ?1) ORDER BY id DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![key_hash, limit as i64], |r| {
                Ok(SpendRow {
                    at: r.get::<_, i64>(0)?.max(0) as u64,
                    key_hash: r.get(1)?,
                    model: r.get(2)?,
                    upstream_model: r.get(3)?,
                    cost_usd: r.get(4)?,
                    input_tokens: r.get::<_, i64>(5)?.max(0) as u64,
                    output_tokens: r.get::<_, i64>(6)?.max(0) as u64,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// The stored spend of one key (`0` when none was recorded).
    pub fn key_spend(&self, hash: &str) -> Result<f64, StoreError> {
        self.conn
            .lock()
            .query_row("SELECT spend FROM key_spend WHERE hash = ?1", [hash], |r| r.get(0))
            .optional()
            .map(|v| v.unwrap_or(0.0))
            .map_err(self.err())
    }
}

/// Spend waiting to be written. Pushing never blocks on I/O; a failed flush
/// puts its rows back, so nothing is dropped while the disk is unhappy.
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
pub const SPEND_QUEUE_HIGH_WATER: usize = 1024;

impl SpendQueue {
    /// Queues a row; `true` when the queue has reached
    /// [`SPEND_QUEUE_HIGH_WATER`] and should be written now.
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

    /// Writes everything queued in one transaction (off the async runtime).
    pub async fn flush(&self, store: &Arc<Store>) -> Result<FlushReport, StoreError> {
        let _one_at_a_time = self.flushing.lock().await;
        let rows = std::mem::take(&mut *self.pending.lock());
        if rows.is_empty() {
            return Ok(FlushReport::default());
        }
        let store2 = Arc::clone(store);
        let result = tokio::task::spawn_blocking(move || {
            let r = store2.record_spend(&rows);
            (rows, r)
        })
        .await;
        let (rows, r) = match result {
            Ok(v) => v,
            // The blocking task panicked: the rows went with it. Cannot happen
            // without a bug in rusqlite; say so rather than pretend.
            Err(e) => {
                tracing::error!(error = %e, "spend flush task failed; its batch is lost");
                return Ok(FlushReport { written: 0, pending: self.len() });
            }
        };
        match r {
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
pub fn default_path_for(config: &Path) -> PathBuf {
    config.parent().unwrap_or_else(|| Path::new(".")).join("postmortem.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: Option<&str>, cost: f64) -> SpendRow {
        SpendRow {
            at: 1,
            key_hash: key.map(str::to_string),
            model: "m".into(),
            upstream_model: "openai/m".into(),
            cost_usd: cost,
            input_tokens: 3,
            output_tokens: 4,
        }
    }

    #[test]
    fn keys_and_spend_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.db");
        {
            let s = Store::open(DatabaseLocation::File(path.clone())).unwrap();
            s.insert_key(&StoredKey {
                hash: "aa".into(),
                masked: "sk-...".into(),
                spec_json: "{}".into(),
                created_at: 5,
            })
            .unwrap();
            s.record_spend(&[row(Some("aa"), 0.25), row(Some("aa"), 0.5), row(None, 1.0)]).unwrap();
        }
        let s = Store::open(DatabaseLocation::File(path)).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(s.load_keys().unwrap().len(), 1);
        assert_eq!(s.key_spend("aa").unwrap(), 0.75);
        assert_eq!(s.spend_log(None, 10).unwrap().len(), 3);
        assert_eq!(s.spend_log(Some("aa"), 10).unwrap().len(), 2);
        assert!(s.delete_key("aa").unwrap());
        assert_eq!(s.key_spend("aa").unwrap(), 0.0);
        assert!(!s.delete_key("aa").unwrap());
    }

    #[test]
    fn a_newer_schema_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(DatabaseLocation::File(path.clone())).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let e = Store::open(DatabaseLocation::File(path)).unwrap_err();
        assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e}");
    }

    #[test]
    fn a_duplicate_key_is_an_error_and_a_batch_is_all_or_nothing() {
        let s = Store::open(DatabaseLocation::Memory).unwrap();
        let k = StoredKey { hash: "h".into(), masked: "m".into(), spec_json: "{}".into(), created_at: 0 };
        s.insert_key(&k).unwrap();
        assert!(s.insert_key(&k).is_err());
        s.record_spend(&[row(Some("h"), 1.0)]).unwrap();
        assert_eq!(s.key_spend("h").unwrap(), 1.0);
    }

    #[tokio::test]
    async fn a_failed_flush_keeps_its_rows_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(DatabaseLocation::File(dir.path().join("s.db"))).unwrap());
        // Break the table the flush writes to.
        store.conn.lock().execute_batch("DROP TABLE spend_log").unwrap();
        let q = SpendQueue::default();
        q.push(row(Some("a"), 1.0));
        q.push(row(Some("a"), 2.0));
        assert!(q.flush(&store).await.is_err());
        assert_eq!(q.len(), 2);
        assert_eq!(q.pending.lock()[0].cost_usd, 1.0);
        // Nothing half-written: the spend update rolled back with the log insert.
        assert_eq!(store.key_spend("a").unwrap(), 0.0);
    }
}
