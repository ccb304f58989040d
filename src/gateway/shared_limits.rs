//! Virtual keys' rpm/tpm windows shared by every instance through Redis
//! (`router_settings.redis_host`/`redis_port`/`redis_password`/`redis_url`,
//! or `REDIS_*`). With Redis reachable, a key's requests and tokens for the
//! current minute live in one Redis hash, checked and counted by one Lua
//! script (no read-modify-write between instances); with Redis unreachable
//! the key's own in-memory window ([`crate::gateway::rate`]) serves, and the
//! link's background task (`crate::gateway::redis_link`) reconnects. Every
//! Redis call is bounded by `CALL_TIMEOUT`: the request path never waits
//! longer on Redis.
//!
//! Windows are named by the gateway clock's wall minute, not by Redis's
//! clock, so a manual clock decides which window counts; `EXPIRE` only
//! collects old windows.
//!
//! Each key's spend is shared the same way: the fleet's total for a key is
//! one Redis value, which every instance adds its priced calls to in
//! batches (a background writer, never on the request path) and reads back
//! before a budget check and for `/key/info`. While Redis is down the calls
//! are buffered here, and added when it is back: exactly once, since each
//! batch carries the instance's sequence number and Redis keeps, per key,
//! the last one it applied from each instance (a batch whose answer was
//! lost in a timeout is sent again and not counted twice). A key's total
//! that Redis no longer has (a Redis restarted without its data) is started
//! again from what this instance knows of it; the durable store stays the
//! record of spend.
//!
//! The same connection carries the reload broadcast: `POST
//! /reload/model_cost_map` on one instance publishes on `RELOAD_CHANNEL`,
//! and every other instance reloads from its own source, validating the
//! map as any reload does (a malformed map is refused by each).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::gateway::clock::SharedClock;
use crate::gateway::keys::{KeyError, KeyRecord, RateLimitKind};
use crate::gateway::redis_link::{
    CallError, Purpose, RedisLink, RedisStatus, RedisTarget, CALL_TIMEOUT, PROBE_INTERVAL,
};

/// A window's hash lives this long after its last write (Redis's clock):
/// longer than the minute it counts, so clocks a little apart agree.
const WINDOW_TTL_SECS: u64 = 120;

/// Where reloads are announced; a message is `model_cost_map <instance>`.
pub(crate) const RELOAD_CHANNEL: &str = "postmortem:reload";

/// What the listener is handed to run for a broadcast reload.
pub(crate) type OnReload =
    Arc<dyn Fn(Reloadable) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// What a reload broadcast names: each instance reloads it from its own
/// source and validates it as any reload does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reloadable {
    /// `POST /reload/model_cost_map`.
    CostMap,
    /// `POST /reload/anthropic_beta_headers`.
    BetaPolicy,
}

impl Reloadable {
    /// The word a broadcast message starts with.
    fn word(self) -> &'static str {
        match self {
            Reloadable::CostMap => "model_cost_map",
            Reloadable::BetaPolicy => "anthropic_beta_headers",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Reloadable::CostMap => "cost map",
            Reloadable::BetaPolicy => "beta-header policy",
        }
    }

    /// The asset a message names, unless it is this instance's own.
    fn of_message(text: &str, own_instance: &str) -> Option<Reloadable> {
        let (word, instance) = text.split_once(' ')?;
        if instance == own_instance {
            return None;
        }
        [Reloadable::CostMap, Reloadable::BetaPolicy].into_iter().find(|r| r.word() == word)
    }
}

/// How long [`SharedLimits::settled`] waits for token writes in flight.
const SETTLE_LIMIT: Duration = Duration::from_secs(2);

/// What the link's log lines say an outage means here.
const PURPOSE: Purpose = Purpose {
    down: "virtual keys' rpm/tpm limits are counted by this instance alone until it is back",
    up: "virtual keys' rpm/tpm limits are shared",
};

/// Admits one request of a key, atomically, in one round trip: reads the
/// key's shared spend and refuses at its budget, then checks the key's
/// minute window and counts the request. KEYS[1] the window, KEYS[2] and
/// KEYS[3] (when the budget is shared) the key's spend total and its last
/// batch applied per instance; ARGV rpm limit, tpm limit (-1: none), the
/// window's TTL, the budget (-1: none), then this instance's spend not yet
/// in a batch, its batch in flight (USD, sequence number; 0 0 for none) and
/// its name. The batch in flight counts only when Redis has not applied it
/// yet: its answer may still be on the way back. Returns {code, current,
/// total, applied}: code 0 counted, 1 at the rpm, 2 the tpm used up, 3 the
/// budget spent; total the shared spend (nil when Redis has none or it was
/// not asked for), applied the sequence number of this instance's last
/// batch in it.
const ADMIT_SCRIPT: &str = r"
local spend = false
local applied = 0
if #KEYS > 1 then
  spend = redis.call('GET', KEYS[2])
  applied = tonumber(redis.call('HGET', KEYS[3], ARGV[8]) or '0')
  local budget = tonumber(ARGV[4])
  local pending = tonumber(ARGV[5])
  if tonumber(ARGV[7]) > applied then pending = pending + tonumber(ARGV[6]) end
  if spend and budget >= 0 and tonumber(spend) + pending >= budget then return {3, 0, spend, applied} end
end
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
if rpm < 0 and tpm < 0 then return {0, 0, spend, applied} end
local v = redis.call('HMGET', KEYS[1], 'r', 't')
local r = tonumber(v[1] or '0')
local t = tonumber(v[2] or '0')
if rpm >= 0 and r >= rpm then return {1, r, spend, applied} end
if tpm >= 0 and t >= tpm then return {2, t, spend, applied} end
redis.call('HINCRBY', KEYS[1], 'r', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {0, r + 1, spend, applied}
";

/// Reads a key's shared spend and the sequence number of this instance's
/// last batch in it, together. KEYS[1] the total, KEYS[2] the batches
/// applied per instance; ARGV[1] the instance. Returns {total, applied}.
const READ_SPEND_SCRIPT: &str = r"
return {redis.call('GET', KEYS[1]), tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')}
";

/// Adds one batch of an instance's spend on a key to the key's total,
/// once. KEYS[1] the total (USD, a float), KEYS[2] the last batch applied
/// per instance; ARGV the batch's USD, its sequence number, the instance,
/// the total to start from when Redis has none, the TTL of KEYS[2].
/// Returns the total.
const SPEND_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[4]) end
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
if tonumber(ARGV[2]) > last then
  redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])
end
redis.call('EXPIRE', KEYS[2], ARGV[5])
return redis.call('GET', KEYS[1])
";

/// How long Redis remembers an instance's last applied batch of a key
/// after its last write: far longer than any outage a buffered batch waits
/// through.
const SPEND_SEQ_TTL_SECS: u64 = 7 * 24 * 3600;

/// A key's spend not yet in the shared total.
struct Unapplied {
    key: Arc<KeyRecord>,
    /// The batch sent and not yet acknowledged: sent again as it is (same
    /// sequence number, same amount) until Redis answers.
    in_flight: Option<(u64, f64)>,
    /// Spent since, not yet in a batch.
    queued: f64,
}

impl Unapplied {
    fn total(&self) -> f64 {
        self.queued + self.in_flight.map_or(0.0, |(_, usd)| usd)
    }

    /// What is not in a shared total that has this instance's batches up
    /// to `applied` in it: the batch in flight counts only when it is not
    /// one of them (Redis may have applied it, its answer still on the way).
    fn beyond(&self, applied: u64) -> f64 {
        self.queued + self.in_flight.filter(|&(seq, _)| seq > applied).map_or(0.0, |(_, usd)| usd)
    }
}

/// The shared windows of one gateway instance.
pub struct SharedLimits {
    link: Arc<RedisLink>,
    /// Tells this instance's broadcasts from the others'.
    instance: String,
    subscribed: std::sync::atomic::AtomicBool,
    clock: SharedClock,
    in_flight: AtomicUsize,
    settled: tokio::sync::Notify,
    /// Spend not yet added to the shared totals, by key.
    unapplied: Mutex<HashMap<[u8; 32], Unapplied>>,
    /// The next batch's sequence number (one counter for every key, so a
    /// key's batches always increase).
    next_batch: AtomicU64,
    /// Wakes the spend writer.
    spend_written: Arc<tokio::sync::Notify>,
    /// Serializes the spend writer's rounds (a batch is acknowledged before
    /// the key's next one is formed).
    writing_spend: tokio::sync::Mutex<()>,
    /// The known-bad variant: spend Redis did not take is dropped.
    drop_unapplied_spend: bool,
}

impl fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLimits").field("link", &self.link).finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// Sets up the (lazy) connection and starts the background probe; never
    /// waits for Redis, so a gateway starts with Redis down. Must run inside
    /// a Tokio runtime.
    pub fn start(
        target: RedisTarget,
        clock: SharedClock,
        drop_unapplied_spend: bool,
    ) -> Result<Arc<SharedLimits>, redis::RedisError> {
        let shared = Arc::new(SharedLimits {
            link: RedisLink::start(target, PURPOSE)?,
            instance: format!("{:016x}", rand::random::<u64>()),
            subscribed: std::sync::atomic::AtomicBool::new(false),
            clock,
            in_flight: AtomicUsize::new(0),
            settled: tokio::sync::Notify::new(),
            unapplied: Mutex::new(HashMap::new()),
            next_batch: AtomicU64::new(1),
            spend_written: Arc::new(tokio::sync::Notify::new()),
            writing_spend: tokio::sync::Mutex::new(()),
            drop_unapplied_spend,
        });
        tokio::spawn(write_spend(Arc::downgrade(&shared)));
        Ok(shared)
    }

    pub fn is_connected(&self) -> bool {
        self.link.is_connected()
    }

    pub fn status(&self) -> RedisStatus {
        let connected = self.is_connected();
        let shared = [
            (connected, "key_rate_limits"),
            (connected, "key_spend"),
            (self.subscribed.load(Ordering::Acquire), "model_cost_map_reloads"),
            (self.subscribed.load(Ordering::Acquire), "anthropic_beta_policy_reloads"),
        ];
        self.link.status(shared.into_iter().filter_map(|(on, what)| on.then_some(what)).collect())
    }

    /// Admits one request of `key` with one Redis round trip: refuses it
    /// when the fleet's spend has reached the key's budget, else counts it
    /// in the shared window or refuses it at its limit (what `share` asks to
    /// go through Redis). Raises the key's spend to the fleet's on the way.
    /// `None` when Redis cannot answer now: the caller uses the key's own
    /// view and window.
    pub async fn admit(&self, key: &KeyRecord, share: Share) -> Option<Result<(), KeyError>> {
        let spec = key.spec();
        let limits = share.limits && (spec.rpm.is_some() || spec.tpm.is_some());
        let budget = spec.max_budget.filter(|_| share.budget);
        if !limits && budget.is_none() {
            return Some(Ok(()));
        }
        if !self.is_connected() {
            return None;
        }
        let (window, retry_after) = self.window(key);
        let limit = |on: bool, l: Option<u64>| l.filter(|_| on).map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let (queued, (batch_seq, batch_usd)) = self
            .unapplied
            .lock()
            .get(&key.hash_bytes())
            .map_or((0.0, (0, 0.0)), |u| (u.queued, u.in_flight.unwrap_or((0, 0.0))));
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ADMIT_SCRIPT).arg(if budget.is_some() { 3 } else { 1 }).arg(&window);
        if budget.is_some() {
            cmd.arg(spend_key(key)).arg(batches_key(key));
        }
        cmd.arg(limit(limits, spec.rpm))
            .arg(limit(limits, spec.tpm))
            .arg(WINDOW_TTL_SECS)
            .arg(budget.map_or_else(|| "-1".to_string(), |b| b.to_string()))
            .arg(queued.to_string())
            .arg(batch_usd.to_string())
            .arg(batch_seq)
            .arg(&self.instance);
        let answer = self.link.call::<(i64, i64, Option<String>, u64)>(&cmd).await.and_then(
            |(code, current, total, applied)| {
                let total = total.map(|t| t.parse::<f64>()).transpose();
                match (code, total) {
                    (0..=3, Ok(total)) => Ok((code, u64::try_from(current).unwrap_or(0), total, applied)),
                    _ => Err(CallError::Answer(format!("to the admission script: {code} {current}"))),
                }
            },
        );
        let (code, current, total, applied) = match answer {
            Ok(a) => a,
            Err(e) => {
                self.link.went_down(&e);
                return None;
            }
        };
        if let Some(total) = total {
            self.raise_to_fleet_total(key, total, applied);
        }
        Some(match code {
            0 => Ok(()),
            3 => Err(KeyError::BudgetExceeded { spend: key.spend(), budget: budget.unwrap_or(0.0) }),
            1 => Err(KeyError::RateLimited {
                kind: RateLimitKind::Rpm,
                limit: spec.rpm.unwrap_or(0),
                current,
                retry_after,
            }),
            _ => Err(KeyError::RateLimited {
                kind: RateLimitKind::Tpm,
                limit: spec.tpm.unwrap_or(0),
                current,
                retry_after,
            }),
        })
    }

    /// Adds a finished request's tokens to the key's shared window, in the
    /// background (the answer is not held for it); when Redis cannot take
    /// them, the key's own window does.
    pub(crate) fn record_tokens(self: &Arc<Self>, key: Arc<KeyRecord>, tokens: u64) {
        if key.spec().tpm.is_none() {
            return;
        }
        let runtime = tokio::runtime::Handle::try_current();
        let (true, Ok(runtime)) = (self.is_connected(), runtime) else {
            key.record_tokens(self.clock.now(), tokens);
            return;
        };
        let (window, _) = self.window(&key);
        let mut pipe = redis::pipe();
        pipe.atomic().hincr(&window, "t", tokens).ignore().expire(&window, WINDOW_TTL_SECS as i64).ignore();
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let me = self.clone();
        runtime.spawn(async move {
            match me.link.call_pipeline::<()>(&pipe).await {
                Ok(()) => {}
                Err(e) => {
                    me.link.went_down(&e);
                    key.record_tokens(me.clock.now(), tokens);
                }
            }
            if me.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
                me.settled.notify_waiters();
            }
        });
    }

    /// Charges `key` a priced call: at once in this instance's view, and in
    /// the shared total by the background writer (buffered while Redis is
    /// down). The key's view and the buffer change together, so the writer
    /// never sees one without the other.
    pub fn charge(&self, key: &Arc<KeyRecord>, usd: f64) {
        let mut unapplied = self.unapplied.lock();
        if !key.add_spend(usd) {
            return;
        }
        unapplied
            .entry(key.hash_bytes())
            .or_insert_with(|| Unapplied { key: key.clone(), in_flight: None, queued: 0.0 })
            .queued += usd;
        drop(unapplied);
        self.spend_written.notify_one();
    }

    /// Raises `key`'s spend to the fleet's total (plus what this instance
    /// has not added to it yet), when Redis answers within the bound; else
    /// the key's view stays what this instance knows.
    pub async fn refresh_spend(&self, key: &KeyRecord) {
        if !self.is_connected() {
            return;
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(READ_SPEND_SCRIPT).arg(2).arg(spend_key(key)).arg(batches_key(key)).arg(&self.instance);
        match self.link.call::<(Option<String>, u64)>(&cmd).await {
            Ok((Some(total), applied)) => match total.parse::<f64>() {
                Ok(total) => self.raise_to_fleet_total(key, total, applied),
                Err(_) => tracing::warn!(value = %total, "a key's shared spend in Redis is not a number; ignored"),
            },
            Ok((None, _)) => {}
            Err(e) => self.link.went_down(&e),
        }
    }

    /// Raises `key`'s view to the fleet's `total` (which has this
    /// instance's batches up to `applied` in it) plus what this instance
    /// has not added to it yet (read under the lock `charge` takes, so a
    /// charge is counted in one of the two, never both or neither: a batch
    /// Redis applied whose answer is still on the way is in the total only).
    fn raise_to_fleet_total(&self, key: &KeyRecord, total: f64, applied: u64) {
        let unapplied = self.unapplied.lock();
        key.raise_spend_to(total + unapplied.get(&key.hash_bytes()).map_or(0.0, |u| u.beyond(applied)));
    }

    /// Spend not yet in the shared totals, USD (all keys).
    pub fn unapplied_spend(&self) -> f64 {
        self.unapplied.lock().values().map(Unapplied::total).sum()
    }

    /// Adds every key's unapplied spend to the shared totals now (bounded
    /// per call); stops at the first failure, keeping the rest for the
    /// next round. Run by the background writer and on graceful shutdown.
    pub async fn write_spend(&self) {
        let _round = self.writing_spend.lock().await;
        let hashes: Vec<[u8; 32]> = self.unapplied.lock().keys().copied().collect();
        for hash in hashes {
            if !self.is_connected() {
                self.drop_unapplied_if_bugged();
                return;
            }
            // The batch: the one sent before, if unacknowledged, else
            // everything queued.
            let batch = {
                let mut unapplied = self.unapplied.lock();
                let Some(u) = unapplied.get_mut(&hash) else { continue };
                if u.in_flight.is_none() && u.queued > 0.0 {
                    u.in_flight = Some((self.next_batch.fetch_add(1, Ordering::AcqRel), u.queued));
                    u.queued = 0.0;
                }
                let Some((seq, usd)) = u.in_flight else {
                    unapplied.remove(&hash);
                    continue;
                };
                // What this instance knows the total to be without its own
                // unapplied spend: where Redis lost the total, it starts there.
                let known = (u.key.spend() - u.total()).max(0.0);
                (u.key.clone(), seq, usd, known)
            };
            let (key, seq, usd, known) = batch;
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(SPEND_SCRIPT)
                .arg(2)
                .arg(spend_key(&key))
                .arg(batches_key(&key))
                .arg(usd.to_string())
                .arg(seq)
                .arg(&self.instance)
                .arg(known.to_string())
                .arg(SPEND_SEQ_TTL_SECS);
            match self.link.call::<String>(&cmd).await {
                Ok(total) => {
                    let mut unapplied = self.unapplied.lock();
                    let mut pending = 0.0;
                    if let Some(u) = unapplied.get_mut(&hash) {
                        if u.in_flight.is_some_and(|(s, _)| s == seq) {
                            u.in_flight = None;
                        }
                        pending = u.total();
                        if pending == 0.0 {
                            unapplied.remove(&hash);
                        }
                    }
                    match total.parse::<f64>() {
                        Ok(total) => key.raise_spend_to(total + pending),
                        Err(_) => tracing::warn!(value = %total, "a key's shared spend in Redis is not a number"),
                    }
                }
                Err(e) => {
                    self.link.went_down(&e);
                    self.drop_unapplied_if_bugged();
                    return;
                }
            }
        }
    }

    /// The known-bad variant: what Redis did not take is forgotten.
    fn drop_unapplied_if_bugged(&self) {
        if self.drop_unapplied_spend {
            self.unapplied.lock().clear();
        }
    }

    /// Tells the other instances to reload their cost map (bounded; a
    /// Redis that is down only gets a warning: this instance reloaded).
    pub(crate) async fn publish_reload(&self, what: Reloadable) {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(RELOAD_CHANNEL).arg(format!("{} {}", what.word(), self.instance));
        match self.link.call::<i64>(&cmd).await {
            Ok(n) => tracing::info!(listeners = n, "{} reload announced to the other instances", what.describe()),
            Err(e) => {
                let message = self.link.describe(&e);
                tracing::warn!(error = %message, "{} reload not announced: Redis did not take it", what.describe());
            }
        }
    }

    /// Listens on [`RELOAD_CHANNEL`] in the background and runs `on_reload`
    /// for each other instance's announcement; reconnects after Redis goes
    /// away; ends when this is dropped.
    pub(crate) fn listen_for_reloads(self: &Arc<Self>, on_reload: OnReload) {
        tokio::spawn(listen(Arc::downgrade(self), on_reload));
    }

    /// Waits (at most 2 s) until the token writes in flight are done, so a
    /// check that follows sees them.
    pub async fn settled(&self) {
        let _ = tokio::time::timeout(SETTLE_LIMIT, async {
            loop {
                let notified = self.settled.notified();
                if self.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }

    /// The key's window for the current minute of the gateway clock, and
    /// the time until the next one starts.
    fn window(&self, key: &KeyRecord) -> (String, Duration) {
        let secs = self.clock.wall().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let minute = secs / 60;
        (format!("postmortem:rl:{}:{minute}", key.key_hash()), Duration::from_secs(60 - secs % 60))
    }
}

/// What [`SharedLimits::admit`] checks through Redis (the known-bad
/// variants keep one or the other to each instance).
#[derive(Debug, Clone, Copy)]
pub struct Share {
    /// The key's rpm/tpm window.
    pub limits: bool,
    /// The key's budget against the fleet's spend.
    pub budget: bool,
}

/// Where a key's fleet-wide spend lives (USD, a float Redis adds to).
fn spend_key(key: &KeyRecord) -> String {
    format!("postmortem:spend:{}", key.key_hash())
}

/// The sequence number of the last batch of each instance applied to a
/// key's total (a hash: instance → sequence number).
fn batches_key(key: &KeyRecord) -> String {
    format!("postmortem:spend-batches:{}", key.key_hash())
}

/// The spend writer: a round whenever a call is charged, and every
/// [`PROBE_INTERVAL`] while spend waits for Redis to come back; ends when
/// the gateway is dropped.
async fn write_spend(shared: Weak<SharedLimits>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        let wake = s.spend_written.clone();
        let woken = wake.notified();
        let waiting = !s.unapplied.lock().is_empty();
        match (waiting, s.is_connected()) {
            (true, true) => s.write_spend().await,
            (true, false) => s.drop_unapplied_if_bugged(),
            _ => {}
        }
        drop(s);
        // Woken by a charge, or after an interval to look again (Redis may
        // be back, or the gateway gone).
        let _ = tokio::time::timeout(PROBE_INTERVAL, woken).await;
    }
}

/// The reload listener: subscribe (bounded), then wait for messages,
/// looking every [`PROBE_INTERVAL`] whether the gateway is still there.
async fn listen(shared: Weak<SharedLimits>, on_reload: OnReload) {
    use futures::StreamExt;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let client = s.link.client().clone();
        let own = s.instance.clone();
        drop(s);
        let subscribed = tokio::time::timeout(CALL_TIMEOUT, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(RELOAD_CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        if let Ok(Ok(pubsub)) = subscribed {
            let mut messages = pubsub.into_on_message();
            set_subscribed(&shared, true);
            loop {
                match tokio::time::timeout(PROBE_INTERVAL, messages.next()).await {
                    Err(_) if shared.strong_count() == 0 => return,
                    Err(_) => continue,
                    // The connection is gone: subscribe again.
                    Ok(None) => break,
                    Ok(Some(msg)) => {
                        let text: String = msg.get_payload().unwrap_or_default();
                        if let Some(what) = Reloadable::of_message(&text, &own) {
                            tracing::info!(
                                "another instance reloaded its {}: reloading from this one's source",
                                what.describe()
                            );
                            on_reload(what).await;
                        }
                    }
                }
            }
            set_subscribed(&shared, false);
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

fn set_subscribed(shared: &Weak<SharedLimits>, on: bool) {
    if let Some(s) = shared.upgrade() {
        s.subscribed.store(on, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::clock::ManualClock;
    use crate::gateway::keys::{KeySpec, KeyStore};

    /// A batch Redis has applied whose answer has not come back yet is in
    /// the fleet's total: raising the key's view to that total must not add
    /// it a second time (a slow or timed-out answer made a fleet read one
    /// call more than was spent); a batch not applied yet is added.
    #[tokio::test]
    async fn a_batch_in_the_total_is_not_counted_again_while_its_answer_is_on_the_way() {
        let clock: SharedClock = Arc::new(ManualClock::new());
        // Nothing listens there: the link is lazy and no call is made.
        let target = RedisTarget::from_url("redis_url", "redis://127.0.0.1:9/0").expect("a Redis URL");
        let shared = SharedLimits::start(target, clock.clone(), false).expect("starts without Redis");
        let store = KeyStore::new(clock);
        let (_, key) = store.generate(KeySpec::default(), None).expect("a key");
        shared.charge(&key, 0.013);
        // The writer forms batch 1 of it, as `write_spend` does.
        {
            let mut unapplied = shared.unapplied.lock();
            let u = unapplied.get_mut(&key.hash_bytes()).expect("the charge is buffered");
            u.in_flight = Some((1, u.queued));
            u.queued = 0.0;
        }
        shared.charge(&key, 0.005);
        // Another instance has spent 0.01. Batch 1 not applied yet: the
        // total is the other instance's alone, and both of ours add to it.
        shared.raise_to_fleet_total(&key, 0.01, 0);
        assert!((key.spend() - 0.028).abs() < 1e-9, "{}", key.spend());
        // Applied (its answer still on the way): the total holds it.
        shared.raise_to_fleet_total(&key, 0.023, 1);
        assert!((key.spend() - 0.028).abs() < 1e-9, "counted twice: {}", key.spend());
        // The fleet spent more meanwhile: the view follows.
        shared.raise_to_fleet_total(&key, 0.033, 1);
        assert!((key.spend() - 0.038).abs() < 1e-9, "{}", key.spend());
    }

    #[test]
    fn a_broadcast_names_what_to_reload_and_an_instance_ignores_its_own() {
        assert_eq!(Reloadable::of_message("model_cost_map a1", "b2"), Some(Reloadable::CostMap));
        assert_eq!(Reloadable::of_message("anthropic_beta_headers a1", "b2"), Some(Reloadable::BetaPolicy));
        assert_eq!(Reloadable::of_message("anthropic_beta_headers b2", "b2"), None);
        assert_eq!(Reloadable::of_message("something_else a1", "b2"), None);
        assert_eq!(Reloadable::of_message("model_cost_map", "b2"), None);
        for r in [Reloadable::CostMap, Reloadable::BetaPolicy] {
            assert_eq!(Reloadable::of_message(&format!("{} x", r.word()), "y"), Some(r));
        }
    }
}
