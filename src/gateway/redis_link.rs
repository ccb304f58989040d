//! Where Redis is ([`RedisTarget`], resolved from the config and the
//! environment by `Config::redis_target`) and one bounded link to it
//! ([`RedisLink`]), as every part of the gateway that uses Redis needs it:
//! the shared rate limits ([`crate::gateway::shared_limits`]) and the
//! response cache's `type: redis` ([`crate::gateway::response_cache`]).
//!
//! A link is `redis`'s `ConnectionManager` (one multiplexed connection,
//! reconnected after a failure, built lazily so a gateway starts with Redis
//! down), every call bounded by [`CALL_TIMEOUT`] whatever the manager's own
//! timeouts do, what was last seen of Redis (up, down, the last error with
//! the password put out of sight), one log line per change (not per request)
//! and a background `PING` every [`PROBE_INTERVAL`] that notices both ways.
//! Each user has a link of its own, so its log lines say what an outage
//! means for it.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo};
use serde::Serialize;

use crate::gateway::config::ConfigError;

/// The bound on every Redis call on the request path (and on the
/// background pings). Short: a Redis slower than this is treated as down,
/// and what uses it goes on without it.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_millis(250);

/// How often the background task checks Redis (reconnects when it is
/// down, notices when it went away while idle).
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// A Redis setting that cannot be used; names the field, never the password.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub(crate) struct RedisConfigError {
    pub field: &'static str,
    pub problem: String,
}

impl RedisConfigError {
    fn new(field: &'static str, problem: impl Into<String>) -> RedisConfigError {
        RedisConfigError { field, problem: problem.into() }
    }

    pub(crate) fn into_config_error(self, file: &str) -> ConfigError {
        ConfigError::Field { file: file.to_string(), field: self.field.to_string(), message: self.problem }
    }
}

/// Where Redis is, resolved from the config and the environment.
#[derive(Clone)]
pub struct RedisTarget {
    info: redis::ConnectionInfo,
    /// `redis://host:port/db`, without credentials: what `/health` and the
    /// logs show.
    display: String,
    password: Option<String>,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget").field("address", &self.display).finish_non_exhaustive()
    }
}

impl RedisTarget {
    /// A `redis://` URL (`redis_url`/`REDIS_URL`); `rediss://` needs TLS,
    /// which this build does not have.
    pub(crate) fn from_url(field: &'static str, url: &str) -> Result<RedisTarget, RedisConfigError> {
        let url = url.trim();
        if !url.starts_with("redis://") {
            return Err(RedisConfigError::new(field, "is not a redis:// URL (no TLS: rediss:// is not supported)"));
        }
        // The parser's error never quotes the URL (and so its password).
        let info = url
            .into_connection_info()
            .map_err(|e| RedisConfigError::new(field, format!("is not a usable redis:// URL ({e})")))?;
        let password = info.redis_settings().password().map(str::to_string);
        let display = match info.addr() {
            ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}/{}", info.redis_settings().db()),
            _ => "redis://(other address)".to_string(),
        };
        Ok(RedisTarget { info, display, password })
    }

    /// Host, port (default 6379) and password, as LiteLLM's settings give them.
    /// `host_field` and the port's field name the setting in errors.
    pub(crate) fn from_parts(
        host_field: &'static str,
        host: &str,
        port: Option<(&'static str, &str)>,
        password: Option<&str>,
    ) -> Result<RedisTarget, RedisConfigError> {
        let host = host.trim();
        if host.is_empty() {
            return Err(RedisConfigError::new(host_field, "is empty"));
        }
        let port =
            match port.map(|(f, p)| (f, p.trim())).filter(|(_, p)| !p.is_empty()) {
                None => 6379,
                Some((field, p)) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    RedisConfigError::new(field, format!("must be a port number (1-65535), got {p:?}"))
                })?,
            };
        let addr = ConnectionAddr::Tcp(host.to_string(), port);
        let mut info = addr
            .into_connection_info()
            .map_err(|e| RedisConfigError::new(host_field, format!("is not a usable host ({e})")))?;
        let password = password.filter(|p| !p.is_empty()).map(str::to_string);
        if let Some(p) = &password {
            let settings = info.redis_settings().clone().set_password(p);
            info = info.set_redis_settings(settings);
        }
        Ok(RedisTarget { info, display: format!("redis://{host}:{port}/0"), password })
    }

    /// Where Redis is, without credentials.
    pub fn address(&self) -> &str {
        &self.display
    }

    /// `text` with the password put out of sight (an error message that
    /// might quote it).
    fn scrub(&self, text: &str) -> String {
        match &self.password {
            Some(p) if !p.is_empty() => text.replace(p.as_str(), "***"),
            _ => text.to_string(),
        }
    }
}

/// What `/health` shows of a link.
#[derive(Debug, Clone, Serialize)]
pub struct RedisStatus {
    pub configured: bool,
    pub connected: bool,
    /// `redis://host:port/db`, never the password (admins only on `/health`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub last_error: Option<String>,
    /// What goes through Redis now (`key_rate_limits`,
    /// `model_cost_map_reloads`, `anthropic_beta_policy_reloads`, `response_cache`).
    pub shared: Vec<&'static str>,
}

impl RedisStatus {
    pub(crate) fn not_configured() -> RedisStatus {
        RedisStatus { configured: false, connected: false, address: None, last_error: None, shared: Vec::new() }
    }
}

/// What a link's log lines say an outage and a recovery mean for its user
/// ("Redis unreachable: {down}", "Redis reachable: {up}").
#[derive(Debug, Clone, Copy)]
pub struct Purpose {
    pub down: &'static str,
    pub up: &'static str,
}

/// Reachability as last seen: not yet known (no call or ping has ended),
/// answering, or not.
const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Why a Redis call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no answer within {} ms", CALL_TIMEOUT.as_millis())]
    Timeout,
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// An answer of a shape the caller did not expect.
    #[error("unexpected answer {0}")]
    Answer(String),
}

/// One bounded connection to Redis and what was last seen of it.
pub struct RedisLink {
    target: RedisTarget,
    client: redis::Client,
    conn: ConnectionManager,
    purpose: Purpose,
    state: AtomicU8,
    last_error: Mutex<Option<String>>,
}

impl fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLink").field("target", &self.target).finish_non_exhaustive()
    }
}

impl RedisLink {
    /// Sets up the (lazy) connection and starts the background probe; never
    /// waits for Redis, so a gateway starts with Redis down. Must run inside
    /// a Tokio runtime.
    pub fn start(target: RedisTarget, purpose: Purpose) -> Result<Arc<RedisLink>, redis::RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(PROBE_INTERVAL);
        let client = redis::Client::open(target.info.clone())?;
        let conn = client.get_connection_manager_lazy(config)?;
        let link = Arc::new(RedisLink {
            target,
            client,
            conn,
            purpose,
            state: AtomicU8::new(UNKNOWN),
            last_error: Mutex::new(None),
        });
        tokio::spawn(probe(Arc::downgrade(&link)));
        Ok(link)
    }

    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// The client, for connections of their own (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The last call or ping was answered.
    pub fn is_connected(&self) -> bool {
        self.state.load(Ordering::Acquire) == UP
    }

    /// The last call or ping failed: callers that would rather not wait for
    /// another failure skip Redis until the probe sees it back.
    pub(crate) fn is_down(&self) -> bool {
        self.state.load(Ordering::Acquire) == DOWN
    }

    /// What `/health` shows; `shared` says what goes through it now.
    pub fn status(&self, shared: Vec<&'static str>) -> RedisStatus {
        RedisStatus {
            configured: true,
            connected: self.is_connected(),
            address: Some(self.target.address().to_string()),
            last_error: self.last_error.lock().clone(),
            shared,
        }
    }

    /// One command, within [`CALL_TIMEOUT`].
    pub async fn call<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, CallError> {
        let mut conn = self.conn.clone();
        bounded(cmd.query_async::<T>(&mut conn)).await
    }

    /// One pipeline (a `MULTI` when it is atomic), within [`CALL_TIMEOUT`].
    pub(crate) async fn call_pipeline<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, CallError> {
        let mut conn = self.conn.clone();
        bounded(pipe.query_async::<T>(&mut conn)).await
    }

    /// A call failed: marks Redis down, logging the first failure of an
    /// outage only.
    pub(crate) fn went_down(&self, e: &CallError) {
        let message = self.target.scrub(&e.to_string());
        let before = self.state.swap(DOWN, Ordering::AcqRel);
        *self.last_error.lock() = Some(message.clone());
        if before != DOWN {
            tracing::warn!(
                redis = %self.target.address(),
                error = %message,
                "Redis unreachable: {}",
                self.purpose.down
            );
        }
    }

    fn came_up(&self) {
        if self.state.swap(UP, Ordering::AcqRel) != UP {
            tracing::info!(redis = %self.target.address(), "Redis reachable: {}", self.purpose.up);
        }
    }

    /// A call's error with the password put out of sight.
    pub(crate) fn describe(&self, e: &CallError) -> String {
        self.target.scrub(&e.to_string())
    }
}

async fn bounded<T>(call: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, CallError> {
    tokio::time::timeout(CALL_TIMEOUT, call).await.map_err(|_| CallError::Timeout)?.map_err(CallError::Redis)
}

/// The background task: a bounded `PING` every [`PROBE_INTERVAL`]; ends
/// when the link is dropped.
async fn probe(link: Weak<RedisLink>) {
    loop {
        let Some(l) = link.upgrade() else { return };
        match l.call::<String>(&redis::cmd("PING")).await {
            Ok(_) => l.came_up(),
            Err(e) => l.went_down(&e),
        }
        drop(l);
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_that_is_not_a_number_names_the_field() {
        let part =
            |port| RedisTarget::from_parts("REDIS_HOST", "127.0.0.1", Some(("router_settings.redis_port", port)), None);
        let e = part("abc").unwrap_err();
        assert_eq!(e.to_string(), "router_settings.redis_port: must be a port number (1-65535), got \"abc\"");
        assert!(part("0").is_err());
        assert!(part("70000").is_err());
        assert_eq!(
            RedisTarget::from_parts("REDIS_HOST", "h", Some(("REDIS_PORT", "")), None).unwrap().address(),
            "redis://h:6379/0"
        );
    }

    #[test]
    fn the_password_is_never_shown() {
        let t = RedisTarget::from_parts("REDIS_HOST", "h", Some(("REDIS_PORT", "7000")), Some("s3cret-pw")).unwrap();
        assert_eq!(t.address(), "redis://h:7000/0");
        assert!(!format!("{t:?}").contains("s3cret-pw"));
        assert_eq!(t.scrub("auth s3cret-pw failed"), "auth *** failed");
        let u = RedisTarget::from_url("router_settings.redis_url", "redis://:s3cret-pw@h:7001/2").unwrap();
        assert_eq!(u.address(), "redis://h:7001/2");
        let bad = RedisTarget::from_url("router_settings.redis_url", "rediss://:s3cret-pw@h:7001").unwrap_err();
        assert!(!bad.to_string().contains("s3cret-pw"), "{bad}");
    }
}
