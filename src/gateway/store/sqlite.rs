//! The embedded SQLite backend of the [store](super): a file, or `:memory:`.
//!
//! Why `rusqlite` (bundled) and not `sqlx`: the gateway needs a handful of
//! statements, no compile-time query checking and no async driver for an
//! embedded file; `rusqlite` builds SQLite itself (no system library) and adds
//! far less to a 2-core build than `sqlx`'s macro stack. Its calls are
//! synchronous: [`Store`](super::Store) runs them on `spawn_blocking`.

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};

use super::{DatabaseLocation, SpendRow, StoreError, StoredKey};

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

/// A `keys` row selected as `hash, masked, spec, created_at`.
fn stored_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredKey> {
    Ok(StoredKey {
        hash: r.get(0)?,
        masked: r.get(1)?,
        spec_json: r.get(2)?,
        created_at: r.get::<_, i64>(3)?.max(0) as u64,
    })
}

/// The embedded store. Statements are short; callers on the async runtime
/// use `spawn_blocking` for them (see [`Store`](super::Store)).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    location: DatabaseLocation,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(location: DatabaseLocation) -> Result<SqliteStore, StoreError> {
        let described = location.describe();
        let err = |source| StoreError::Sqlite { location: described.clone(), source };
        let conn = match &location {
            DatabaseLocation::Memory => Connection::open_in_memory().map_err(err)?,
            DatabaseLocation::Postgres(_) => {
                return Err(StoreError::Url("a postgres:// URL is not a SQLite database path".into()))
            }
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
        let store = SqliteStore { conn: Mutex::new(conn), location };
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
        let rows = stmt.query_map([], stored_key).map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// One run-time key by its hex hash.
    pub fn find_key(&self, hash: &str) -> Result<Option<StoredKey>, StoreError> {
        self.conn
            .lock()
            .query_row("SELECT hash, masked, spec, created_at FROM keys WHERE hash = ?1", [hash], stored_key)
            .optional()
            .map_err(self.err())
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

// Tests: `tests/persistence.rs` runs the storage tests on SQLite and Postgres alike.
