//! The Postgres backend of the [store](super), for fleets: every gateway
//! instance on one `database_url` reads and writes the same keys and spend.
//!
//! Why `tokio-postgres` (default features off, `runtime` only) and not
//! `sqlx` or the sync `postgres` crate: the store runs a dozen fixed
//! statements, so `sqlx`'s compile-time checking and macro stack would only
//! slow a 2-core build; the sync `postgres` crate blocks on its own runtime
//! and panics when called inside Tokio. No TLS is compiled in: `sslmode`
//! `disable` and `prefer` (the default, which falls back to plain TCP) are
//! accepted, anything that demands TLS is refused at start with a clear error.
//!
//! One connection per gateway, behind an async mutex: a transaction needs
//! the connection to itself, the store's traffic is a write per admin call
//! and one batch per flush interval, and a pool would be one more crate.
//! A connection that dropped is made again on the next use.

use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row};

use super::{DatabaseLocation, SpendRow, StoreError, StoredKey};

/// How long a connection attempt may take before the start (or a
/// reconnect) fails, unless the URL's `connect_timeout` says otherwise.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one store operation (waiting for the connection included) may
/// take: a server that stops answering mid-query (a dead link, a full disk)
/// must not hold admin calls, lookups and spend flushes forever.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// Schema migrations, applied in order; the index + 1 is the version.
/// Never edit one that has shipped: add the next. The same tables as
/// SQLite's, in Postgres types.
const MIGRATIONS: &[&str] = &[
    // 1: keys made at run time, spend per key (config keys too), the spend log.
    "CREATE TABLE keys (
         hash TEXT PRIMARY KEY,
         masked TEXT NOT NULL,
         spec TEXT NOT NULL,
         created_at BIGINT NOT NULL
     );
     CREATE TABLE key_spend (
         hash TEXT PRIMARY KEY,
         spend DOUBLE PRECISION NOT NULL
     );
     CREATE TABLE spend_log (
         id BIGSERIAL PRIMARY KEY,
         at BIGINT NOT NULL,
         key_hash TEXT,
         model TEXT NOT NULL,
         upstream_model TEXT NOT NULL,
         cost_usd DOUBLE PRECISION NOT NULL,
         input_tokens BIGINT NOT NULL,
         output_tokens BIGINT NOT NULL
     );
     CREATE INDEX spend_log_key ON spend_log(key_hash, at);",
];

/// Taken for the migration transaction, so instances starting together
/// migrate one after the other (an arbitrary constant: "postmortem").
const MIGRATION_LOCK: i64 = 0x706f_7374_6d6f_7274;

/// A `postgres://` URL, checked; its password never leaves through
/// `Debug`, `describe` or an error.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    url: String,
    described: String,
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PostgresUrl").field(&self.described).finish()
    }
}

impl PostgresUrl {
    /// Accepts `postgres://` or `postgresql://` URLs whose `sslmode` needs
    /// no TLS; anything else is a clear error that does not repeat the URL.
    pub fn parse(url: &str) -> Result<PostgresUrl, StoreError> {
        let url = url.trim();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Url("expected a postgres:// or postgresql:// URL".into()));
        }
        let query = url.split_once('?').map_or("", |(_, q)| q);
        let sslmode = query.split('&').find_map(|kv| kv.strip_prefix("sslmode=")).unwrap_or("prefer");
        let config: Option<Config> = url.parse().ok();
        let plain = config.as_ref().is_none_or(|c| matches!(c.get_ssl_mode(), SslMode::Disable | SslMode::Prefer));
        if !matches!(sslmode, "disable" | "prefer") || !plain {
            return Err(StoreError::Url(format!(
                "sslmode={sslmode} requires TLS, which this gateway does not support yet: use sslmode=disable or \
                 prefer (reach the server over a private network, or through a local TLS-terminating proxy)"
            )));
        }
        let config: Config =
            url.parse().map_err(|e| StoreError::Url(format!("not a usable Postgres URL: {}", reason(&e))))?;
        if config.get_hosts().is_empty() {
            return Err(StoreError::Url("the URL names no host".into()));
        }
        Ok(PostgresUrl { url: url.to_string(), described: describe(&config) })
    }

    /// `postgres://user:***@host:port/db`: what logs and `/health` show.
    pub(crate) fn describe(&self) -> String {
        self.described.clone()
    }

    fn config(&self) -> Result<Config, StoreError> {
        let mut config: Config =
            self.url.parse().map_err(|e| StoreError::Url(format!("not a usable Postgres URL: {}", reason(&e))))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("postmortem");
        Ok(config)
    }
}

fn describe(c: &Config) -> String {
    let user = c.get_user().unwrap_or("");
    let password = if c.get_password().is_some() { ":***" } else { "" };
    let at = if user.is_empty() && password.is_empty() { "" } else { "@" };
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(s) => s.clone(),
                Host::Unix(p) => p.display().to_string(),
            };
            match c.get_ports().get(i).or(c.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    format!("postgres://{user}{password}{at}{}/{}", hosts.join(","), c.get_dbname().unwrap_or(""))
}

/// A tokio-postgres error with its causes (its `Display` alone says only
/// "db error" or "error connecting to server").
fn reason(e: &tokio_postgres::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn stored_key(r: &Row) -> StoredKey {
    StoredKey { hash: r.get(0), masked: r.get(1), spec_json: r.get(2), created_at: r.get::<_, i64>(3).max(0) as u64 }
}

/// The Postgres store. See the module doc.
pub struct PgStore {
    location: DatabaseLocation,
    config: Config,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("location", &self.location).finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects (within the connect timeout) and migrates.
    pub async fn connect(url: PostgresUrl) -> Result<PgStore, StoreError> {
        let config = url.config()?;
        let store =
            PgStore { location: DatabaseLocation::Postgres(url), config, client: tokio::sync::Mutex::new(None) };
        store.bounded(store.migrate()).await?;
        Ok(store)
    }

    /// `op` within `OP_TIMEOUT`; past it the connection is dropped, so the
    /// next use starts clean.
    pub async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(OP_TIMEOUT, op).await {
            Ok(r) => r,
            Err(_) => {
                // Busy means another operation holds it; that one is bounded
                // too and drops it when its own time runs out.
                if let Ok(mut client) = self.client.try_lock() {
                    *client = None;
                }
                Err(StoreError::Timeout { location: self.location.describe(), secs: OP_TIMEOUT.as_secs() })
            }
        }
    }

    pub fn location(&self) -> &DatabaseLocation {
        &self.location
    }

    fn err(&self) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        move |e| StoreError::Postgres { location: self.location.describe(), reason: reason(&e) }
    }

    /// The connection, made (again) if there is none or it closed.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, StoreError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            // The driver's connect timeout bounds each host; this bounds the
            // whole attempt, whatever the URL lists.
            let limit = self.config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT) + Duration::from_secs(1);
            let (client, connection) = tokio::time::timeout(limit, self.config.connect(NoTls))
                .await
                .map_err(|_| StoreError::ConnectTimeout { location: self.location.describe(), secs: limit.as_secs() })?
                .map_err(self.err())?;
            let location = self.location.describe();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(database = %location, error = %reason(&e), "postgres connection lost; the next use reconnects");
                }
            });
            *guard = Some(client);
        }
        Ok(guard)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| self.closed())?;
        let tx = client.transaction().await.map_err(self.err())?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(self.err())?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS postmortem_schema (version BIGINT NOT NULL)")
            .await
            .map_err(self.err())?;
        let found: i64 = tx
            .query_opt("SELECT version FROM postmortem_schema", &[])
            .await
            .map_err(self.err())?
            .map_or(0, |r| r.get(0));
        if found > known {
            return Err(StoreError::TooNew { location: self.location.describe(), found, known });
        }
        for sql in MIGRATIONS.iter().skip(found as usize) {
            tx.batch_execute(sql).await.map_err(self.err())?;
        }
        if found < known {
            tx.execute("DELETE FROM postmortem_schema", &[]).await.map_err(self.err())?;
            tx.execute("INSERT INTO postmortem_schema (version) VALUES ($1)", &[&known]).await.map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())
    }

    fn closed(&self) -> StoreError {
        StoreError::Postgres { location: self.location.describe(), reason: "no connection".into() }
    }

    /// One statement on the connection; no transaction needed.
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.closed())?;
        client.query(sql, params).await.map_err(self.err())
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(|| self.closed())?;
        client.execute(sql, params).await.map_err(self.err())
    }

    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let rows = self.query("SELECT version FROM postmortem_schema", &[]).await?;
        Ok(rows.first().map_or(0, |r| r.get(0)))
    }

    pub async fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows = self.query("SELECT hash, masked, spec, created_at FROM keys ORDER BY created_at, hash", &[]).await?;
        Ok(rows.iter().map(stored_key).collect())
    }

    pub async fn find_key(&self, hash: &str) -> Result<Option<StoredKey>, StoreError> {
        let rows = self.query("SELECT hash, masked, spec, created_at FROM keys WHERE hash = $1", &[&hash]).await?;
        Ok(rows.first().map(stored_key))
    }

    pub async fn load_spend(&self) -> Result<Vec<(String, f64)>, StoreError> {
        let rows = self.query("SELECT hash, spend FROM key_spend", &[]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO keys (hash, masked, spec, created_at) VALUES ($1, $2, $3, $4)",
            &[&key.hash, &key.masked, &key.spec_json, &(key.created_at as i64)],
        )
        .await
        .map(drop)
    }

    pub async fn update_key(&self, hash: &str, spec_json: &str) -> Result<bool, StoreError> {
        self.execute("UPDATE keys SET spec = $2 WHERE hash = $1", &[&hash, &spec_json]).await.map(|n| n > 0)
    }

    pub async fn replace_key(&self, old_hash: &str, new: &StoredKey) -> Result<(), StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| self.closed())?;
        let tx = client.transaction().await.map_err(self.err())?;
        tx.execute(
            "INSERT INTO keys (hash, masked, spec, created_at) VALUES ($1, $2, $3, $4)",
            &[&new.hash, &new.masked, &new.spec_json, &(new.created_at as i64)],
        )
        .await
        .map_err(self.err())?;
        tx.execute("UPDATE key_spend SET hash = $2 WHERE hash = $1", &[&old_hash, &new.hash])
            .await
            .map_err(self.err())?;
        tx.execute("DELETE FROM keys WHERE hash = $1", &[&old_hash]).await.map_err(self.err())?;
        tx.commit().await.map_err(self.err())
    }

    pub async fn delete_key(&self, hash: &str) -> Result<bool, StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| self.closed())?;
        let tx = client.transaction().await.map_err(self.err())?;
        let n = tx.execute("DELETE FROM keys WHERE hash = $1", &[&hash]).await.map_err(self.err())?;
        tx.execute("DELETE FROM key_spend WHERE hash = $1", &[&hash]).await.map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(n > 0)
    }

    pub async fn record_spend(&self, rows: &[SpendRow]) -> Result<(), StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| self.closed())?;
        let tx = client.transaction().await.map_err(self.err())?;
        let log = tx
            .prepare(
                "INSERT INTO spend_log (at, key_hash, model, upstream_model, cost_usd, input_tokens, output_tokens)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .await
            .map_err(self.err())?;
        let spend = tx
            .prepare(
                "INSERT INTO key_spend (hash, spend) VALUES ($1, $2)
                 ON CONFLICT (hash) DO UPDATE SET spend = key_spend.spend + EXCLUDED.spend",
            )
            .await
            .map_err(self.err())?;
        // Pipelined on the one connection (a batch is up to 1,024 rows: one
        // round trip each would hold it for seconds on a distant server),
        // and one spend update per key, not per row.
        let numbers: Vec<[i64; 3]> =
            rows.iter().map(|r| [r.at as i64, r.input_tokens as i64, r.output_tokens as i64]).collect();
        let inserts = rows.iter().zip(&numbers).map(|(r, [at, input, output])| {
            let params: [&(dyn ToSql + Sync); 7] =
                [at, &r.key_hash, &r.model, &r.upstream_model, &r.cost_usd, input, output];
            tx.execute_raw(&log, params)
        });
        futures::future::try_join_all(inserts).await.map_err(self.err())?;
        let mut per_key: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
        for r in rows {
            if let Some(h) = &r.key_hash {
                *per_key.entry(h).or_default() += r.cost_usd;
            }
        }
        let updates = per_key.iter().map(|(h, usd)| {
            let params: [&(dyn ToSql + Sync); 2] = [h, usd];
            tx.execute_raw(&spend, params)
        });
        futures::future::try_join_all(updates).await.map_err(self.err())?;
        tx.commit().await.map_err(self.err())
    }

    /// A last write from a `Drop`: on the runtime it is dropped in, if any.
    pub(crate) fn record_spend_detached(&self, rows: Vec<SpendRow>) {
        let n = rows.len();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                rows = n,
                "spend not written: the gateway was dropped outside a runtime without a shutdown flush"
            );
            return;
        };
        let (config, location) = (self.config.clone(), self.location.clone());
        rt.spawn(async move {
            let store = PgStore { location, config, client: tokio::sync::Mutex::new(None) };
            if let Err(e) = store.record_spend(&rows).await {
                tracing::error!(error = %e, rows = n, "spend could not be written when the gateway was dropped");
            }
        });
    }

    pub async fn spend_log(&self, key_hash: Option<&str>, limit: usize) -> Result<Vec<SpendRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "SELECT at, key_hash, model, upstream_model, cost_usd, input_tokens, output_tokens FROM spend_log
                 WHERE ($1::TEXT IS NULL OR key_hash = $1) ORDER BY id DESC LIMIT $2",
                &[&key_hash, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SpendRow {
                at: r.get::<_, i64>(0).max(0) as u64,
                key_hash: r.get(1),
                model: r.get(2),
                upstream_model: r.get(3),
                cost_usd: r.get(4),
                input_tokens: r.get::<_, i64>(5).max(0) as u64,
                output_tokens: r.get::<_, i64>(6).max(0) as u64,
            })
            .collect())
    }

    pub async fn key_spend(&self, hash: &str) -> Result<f64, StoreError> {
        let rows = self.query("SELECT spend FROM key_spend WHERE hash = $1", &[&hash]).await?;
        Ok(rows.first().map_or(0.0, |r| r.get(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_described_without_its_password() {
        let u = PostgresUrl::parse("postgres://app:s3cr%40t@db.internal:6543/keys?sslmode=disable").unwrap();
        assert_eq!(u.describe(), "postgres://app:***@db.internal:6543/keys");
        assert!(!format!("{u:?}").contains("s3cr"));
        let u = PostgresUrl::parse("postgresql://127.0.0.1/x").unwrap();
        assert_eq!(u.describe(), "postgres://127.0.0.1:5432/x");
    }

    #[test]
    fn urls_that_cannot_be_used_are_refused_without_repeating_them() {
        for (url, want) in [
            ("mysql://u:hunter2@h/db", "expected a postgres://"),
            ("postgres://u:hunter2@h/db?sslmode=require", "sslmode=require requires TLS"),
            ("postgres://u:hunter2@h/db?sslmode=verify-full", "sslmode=verify-full requires TLS"),
            ("postgres://u:hunter2@h/db?bogus_option=1", "not a usable Postgres URL"),
            ("postgres://u:hunter2@h:notaport/db", "not a usable Postgres URL"),
        ] {
            let e = PostgresUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_fast_with_a_clear_error() {
        // A port nobody listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = PostgresUrl::parse(&format!("postgres://u:hunter2@127.0.0.1:{port}/db?connect_timeout=2")).unwrap();
        let e = PgStore::connect(url).await.unwrap_err().to_string();
        assert!(e.contains(&format!("127.0.0.1:{port}")) && e.contains("connect"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[tokio::test]
    async fn a_server_that_accepts_and_never_answers_is_a_timeout_not_a_hang() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                open.push(s);
            }
        });
        let url = PostgresUrl::parse(&format!("postgres://u@127.0.0.1:{port}/db?connect_timeout=1")).unwrap();
        let e = PgStore::connect(url).await.unwrap_err();
        assert!(matches!(e, StoreError::ConnectTimeout { secs: 2, .. }), "{e}");
        held.abort();
    }
}
