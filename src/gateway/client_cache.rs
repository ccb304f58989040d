//! The provider client cache: one SDK/HTTP client per (provider, endpoint,
//! credential) key, reused across requests, at most `capacity` of them, each
//! for at most `ttl`.
//!
//! # The ownership rule
//!
//! LiteLLM's client cache (200 entries, 10-minute TTL) began closing clients
//! when it evicted them; requests and streams still using those clients then
//! failed with "client has been closed". Here eviction only drops the
//! *cache's* reference. Every holder — the cache, each request's [`Lease`],
//! a stream, the router — owns one count of a shared wrapper, and the
//! wrapper's `Drop` calls [`Resource::shutdown`] when the last count goes.
//! So shutdown runs exactly once, and never while anyone still holds the
//! client; no code path has to decide "is it safe to close now?".
//!
//! # Why this implementation
//!
//! The cache is our own, about 650 lines on `parking_lot` and std. Lookups
//! go to one of 16 cache-line-aligned shards, each a `RwLock<HashMap>`: a
//! hit is one read lock, one lookup and one `Arc` clone, and threads hitting
//! different keys rarely share a lock word. LRU is lazy: a hit stamps the
//! entry with a global generation number (a plain load and store, skipped
//! when the entry already has the newest), and the least recently used entry
//! is found by a scan over the stamps when an insert meets a full cache. That
//! puts the work on inserts, which build SDK clients and are rare, and keeps
//! it off hits, which happen on every request. Keys are hashed once, with a
//! small seeded multiply-fold hasher, for shard and bucket (SipHash alone
//! costs ~20 ns here). HashDoS does not matter because the table never holds
//! more than `capacity` entries: the worst case is a scan of those.
//!
//! We benchmarked moka 0.12 and quick_cache 0.6 doing the same work
//! (benches/client_cache.rs; on this shared 2-core VM, per operation):
//!
//! | | ours | ours, coarse clock | moka | quick_cache |
//! |---|---|---|---|---|
//! | hit, 1 thread | 47 ns | 21–28 ns | 140–180 ns | 21–23 ns |
//! | hit, 2 threads | 93–190 ns | 48–61 ns | 270–440 ns | 45–65 ns |
//! | insert evicting | 390–700 ns | 360–440 ns | 515–615 ns | 75–100 ns |
//!
//! moka's eviction listener with `Arc` values could express the ownership
//! rule, but its hits are 3–6× slower, its capacity eviction runs later
//! during maintenance, and its TTL reads moka's own clock (injection is
//! crate-private), so expiry could only be tested by sleeping. quick_cache
//! is as fast as ours on hits and faster on inserts, but it has no TTL, its
//! policy is S3-FIFO rather than LRU, and its capacity is approximate: set
//! to 200, it dropped 5 of 200 keys in one run. Either crate would also have to
//! move from dev-dependencies into the gateway. With our cache the clock
//! read dominates a hit: `SystemClock::now` costs ~25 ns here. Passing a
//! coarse clock, one atomic load refreshed every few milliseconds, brings a
//! hit to ~22 ns, and millisecond precision is plenty for a 600 s TTL. The
//! two-thread figures are inflated by other jobs sharing the two cores: on
//! two threads, a bare `SystemClock::now` took ~59 ns per call against 27 ns
//! on one. The coarse-clock variant matches quick_cache there, despite the
//! generation counter that both threads write for exact LRU.
//!
//! # Expiry
//!
//! The TTL runs from insertion (expire-after-write, like LiteLLM): clients
//! are rebuilt periodically even when hot. An entry whose age is `>= ttl` is
//! treated as absent everywhere: `get` misses and evicts it, `remove`
//! returns `false`, `insert` does not count it as a replacement; all of
//! these count it as an `Expired` eviction.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::gateway::clock::SharedClock;

/// Something cached that must be shut down explicitly (an SDK client with a
/// connection pool or background tasks).
pub trait Resource: Send + Sync + 'static {
    /// Releases what the resource holds. Called exactly once, by whichever
    /// holder lets go last, on that holder's thread. It must not panic and
    /// should not block for long; an async shutdown should be spawned.
    fn shutdown(&self);
}

/// Size and lifetime limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Maximum number of cached clients. 0 disables caching: every insert
    /// hands back a lease that is the only holder.
    pub capacity: usize,
    /// Age (since insertion) at which an entry stops being served.
    pub ttl: Duration,
}

impl Default for CacheConfig {
    /// LiteLLM's values: 200 clients, 10 minutes.
    fn default() -> Self {
        CacheConfig { capacity: 200, ttl: Duration::from_secs(600) }
    }
}

/// Counters since the cache was created; `entries`, `capacity` and
/// `ttl_secs` describe it now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Values placed into the cache (by `insert` or `get_or_insert_with`).
    pub inserts: u64,
    pub evictions_capacity: u64,
    pub evictions_expired: u64,
    /// `remove` and replacement by `insert`.
    pub evictions_explicit: u64,
    /// Evictions (any cause) where a lease on the value was alive: these are
    /// the evictions that closed in-use clients in the incident.
    pub evicted_while_in_use: u64,
    /// Times [`Resource::shutdown`] actually ran.
    pub shutdowns: u64,
    pub entries: usize,
    pub capacity: usize,
    pub ttl_secs: u64,
}

/// Why an entry left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Capacity,
    Expired,
    Explicit,
}

/// Counters that must outlive the cache: a [`Slot`] counts its shutdown when
/// its last lease drops, possibly after the cache is gone.
#[derive(Debug, Default)]
struct Counters {
    inserts: AtomicU64,
    evictions_capacity: AtomicU64,
    evictions_expired: AtomicU64,
    evictions_explicit: AtomicU64,
    evicted_while_in_use: AtomicU64,
    shutdowns: AtomicU64,
}

/// The shared wrapper every holder points at. Its `Drop` is the one place a
/// resource is normally shut down.
struct Slot<V: Resource> {
    value: V,
    shut_down: AtomicBool,
    counters: Arc<Counters>,
}

impl<V: Resource> Slot<V> {
    /// Runs `shutdown` unless it already ran (only the known-bad
    /// close-on-evict mode can get here twice).
    fn shut_down_once(&self) {
        if !self.shut_down.swap(true, Ordering::AcqRel) {
            self.value.shutdown();
            self.counters.shutdowns.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<V: Resource> Drop for Slot<V> {
    fn drop(&mut self) {
        self.shut_down_once();
    }
}

/// A holder's handle on a cached resource. Cloning is an `Arc` clone. The
/// resource stays usable for as long as any lease (or the cache) holds it.
pub struct Lease<V: Resource> {
    slot: Arc<Slot<V>>,
}

impl<V: Resource> Lease<V> {
    /// Whether `shutdown` has run. Always `false` while you hold the lease,
    /// unless the known-bad close-on-evict mode is on.
    pub fn is_shut_down(&self) -> bool {
        self.slot.shut_down.load(Ordering::Acquire)
    }

    /// Whether two leases are on the same resource.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.slot, &b.slot)
    }
}

impl<V: Resource> Clone for Lease<V> {
    fn clone(&self) -> Self {
        Lease { slot: Arc::clone(&self.slot) }
    }
}

impl<V: Resource> Deref for Lease<V> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.slot.value
    }
}

impl<V: Resource + fmt::Debug> fmt::Debug for Lease<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease").field("value", &self.slot.value).field("shut_down", &self.is_shut_down()).finish()
    }
}

/// One cached value plus what expiry and LRU need.
struct Entry<V: Resource> {
    slot: Arc<Slot<V>>,
    expires_at: Duration,
    /// Generation of the last insert or hit; the smallest is the LRU entry.
    last_used: AtomicU64,
}

impl<V: Resource> Entry<V> {
    fn expired(&self, now: Duration) -> bool {
        now >= self.expires_at
    }
}

// ---- hashing once -------------------------------------------------------
//
// The shard and the bucket come from one hash. std's HashMap cannot take a
// precomputed hash, so the stored key carries it, hashes as just that u64
// (through `PassThrough`), and lookups borrow it as `dyn Lookup` so a probe
// needs no clone of the key.

/// A key with its hash.
struct Stored<K> {
    hash: u64,
    key: K,
}

/// What a lookup compares: the stored key and a borrowed probe both are one.
trait Lookup<K> {
    fn hash(&self) -> u64;
    fn key(&self) -> &K;
}

impl<K> Lookup<K> for Stored<K> {
    fn hash(&self) -> u64 {
        self.hash
    }
    fn key(&self) -> &K {
        &self.key
    }
}

struct Probe<'a, K> {
    hash: u64,
    key: &'a K,
}

impl<K> Lookup<K> for Probe<'_, K> {
    fn hash(&self) -> u64 {
        self.hash
    }
    fn key(&self) -> &K {
        self.key
    }
}

impl<'a, K: 'a> Borrow<dyn Lookup<K> + 'a> for Stored<K> {
    fn borrow(&self) -> &(dyn Lookup<K> + 'a) {
        self
    }
}

impl<K: Eq> PartialEq for dyn Lookup<K> + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.hash() == other.hash() && self.key() == other.key()
    }
}

impl<K: Eq> Eq for dyn Lookup<K> + '_ {}

impl<K> Hash for dyn Lookup<K> + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(Lookup::hash(self));
    }
}

impl<K: Eq> PartialEq for Stored<K> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}

impl<K: Eq> Eq for Stored<K> {}

impl<K> Hash for Stored<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Hands the precomputed hash to the map unchanged.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `Stored`/`Lookup`; fold anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Seeded multiply-fold hasher in the style of foldhash: 16 bytes per step
/// on two independent lanes, so a 50-byte key costs a few multiplies
/// instead of SipHash's ~20 ns.
struct KeyHasher {
    h: u64,
}

// Digits of pi. K0 and K2, the multipliers, are odd (K2 made so), so the
// low half of a product loses no bit.
const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;
const K2: u64 = 0xa409_3822_299f_31d1;

/// 64x64->128 multiply folded back to 64 bits: the mixing step.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Eight bytes as a little-endian word; callers pass at least eight.
#[inline(always)]
fn read8(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(w)
}

#[inline(always)]
fn read4(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&bytes[..4]);
    u64::from(u32::from_le_bytes(w))
}

/// Up to 16 bytes as two words, by overlapping fixed-size reads (a
/// variable-length copy into a buffer stalls on store forwarding).
#[inline(always)]
fn tail_words(bytes: &[u8]) -> (u64, u64) {
    let len = bytes.len();
    if len >= 8 {
        (read8(bytes), read8(&bytes[len - 8..]))
    } else if len >= 4 {
        (read4(bytes), read4(&bytes[len - 4..]))
    } else if len > 0 {
        let spread = u64::from(bytes[0]) << 16 | u64::from(bytes[len / 2]) << 8;
        (spread | u64::from(bytes[len - 1]), 0)
    } else {
        (0, 0)
    }
}

impl KeyHasher {
    #[inline(always)]
    fn add(&mut self, n: u64) {
        self.h = fold(self.h ^ n, K0);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // The length goes through a multiply, not a plain xor: xoring it
        // into the data lane let "a" + 8 bytes collide with 16 bytes.
        let mut a = fold(self.h ^ bytes.len() as u64, K2);
        let mut b = self.h.rotate_left(29) ^ K1;
        let (x, y) = if bytes.len() <= 16 {
            tail_words(bytes)
        } else {
            let mut rest = bytes;
            while rest.len() > 16 {
                a = fold(a ^ read8(rest), K0);
                b = fold(b ^ read8(&rest[8..]), K2);
                rest = &rest[16..];
            }
            // The last 16 bytes of the key, overlapping what was mixed.
            let last = &bytes[bytes.len() - 16..];
            (read8(last), read8(&last[8..]))
        };
        self.h = fold(a ^ x, b ^ y ^ K1);
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        fold(self.h, K2).rotate_left(17)
    }
}

// ---- shards -------------------------------------------------------------

/// Power of two; enough that two or more threads rarely share a lock word.
const SHARDS: usize = 16;

type Map<K, V> = HashMap<Stored<K>, Entry<V>, BuildHasherDefault<PassThrough>>;

/// One lock, its map and its hit/miss counters on their own cache lines, so
/// a hit writes only memory the read lock already pulled in.
#[repr(align(128))]
struct Shard<K, V: Resource> {
    map: RwLock<Map<K, V>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<K, V: Resource> Shard<K, V> {
    /// A load and a store, not a locked `fetch_add` (see `touch`): two
    /// threads hitting the same shard at the same instant may lose one
    /// count. Hits are for dashboards; misses, rarer, are counted exactly.
    #[inline]
    fn count_hit(&self) {
        let n = self.hits.load(Ordering::Relaxed);
        self.hits.store(n + 1, Ordering::Relaxed);
    }
}

/// State guarded by the writer lock.
struct Writer {
    /// No entry expires before this. Lowered by inserts, recomputed by a
    /// purge, left alone by removals (then merely early, which is safe): it
    /// lets a full-cache insert skip the expiry scan.
    next_expiry: Duration,
}

/// Keeps the global generation counter off the other fields' cache lines.
#[repr(align(128))]
struct Padded<T>(T);

/// A thread-safe, bounded, TTL'd cache of shared resources that are shut
/// down only when their last holder lets go. See the module docs.
pub struct ClientCache<K, V: Resource> {
    shards: Box<[Shard<K, V>]>,
    seed: u64,
    clock: SharedClock,
    config: CacheConfig,
    /// Serializes structural changes (insert, remove, eviction) so the
    /// capacity check and the insert are atomic; hits never take it.
    writer: Mutex<Writer>,
    /// Entries in all shards; changed only under `writer` plus a shard lock.
    len: AtomicUsize,
    generation: Padded<AtomicU64>,
    counters: Arc<Counters>,
    close_on_evict: AtomicBool,
}

impl<K, V> ClientCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Resource,
{
    pub fn new(config: CacheConfig, clock: SharedClock) -> Self {
        let shards = (0..SHARDS)
            .map(|_| Shard { map: RwLock::new(Map::default()), hits: AtomicU64::new(0), misses: AtomicU64::new(0) })
            .collect();
        ClientCache {
            shards,
            seed: RandomState::new().hash_one(0x5eed_u64),
            clock,
            config,
            writer: Mutex::new(Writer { next_expiry: Duration::MAX }),
            len: AtomicUsize::new(0),
            generation: Padded(AtomicU64::new(0)),
            counters: Arc::new(Counters::default()),
            close_on_evict: AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> CacheConfig {
        self.config
    }

    /// A lease on the live entry for `key`, refreshing its recency. An
    /// expired entry is a miss and is evicted (cause `Expired`).
    pub fn get(&self, key: &K) -> Option<Lease<V>> {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let probe = Probe { hash, key };
        let now = self.clock.now();
        {
            let map = shard.map.read();
            match map.get(&probe as &dyn Lookup<K>) {
                Some(entry) if !entry.expired(now) => {
                    self.touch(entry);
                    shard.count_hit();
                    return Some(Lease { slot: Arc::clone(&entry.slot) });
                }
                Some(_) => {}
                None => {
                    shard.misses.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        shard.misses.fetch_add(1, Ordering::Relaxed);
        self.remove_expired_key(&probe, now);
        None
    }

    /// The cached lease for `key`, or a new value from `make` cached and
    /// leased. `make` runs without any cache lock held (building a client
    /// can be slow); if another thread cached `key` meanwhile, its value is
    /// returned and ours is dropped (and so shut down, never having been
    /// shared). An error from `make` is returned and nothing is cached.
    pub fn get_or_insert_with<E>(&self, key: K, make: impl FnOnce() -> Result<V, E>) -> Result<Lease<V>, E> {
        if let Some(lease) = self.get(&key) {
            return Ok(lease);
        }
        let slot = self.new_slot(make()?);
        Ok(self.store(key, slot, false))
    }

    /// Caches `value` under `key` and returns a lease on it. A live entry
    /// already there is evicted (cause `Explicit`); its holders keep it.
    pub fn insert(&self, key: K, value: V) -> Lease<V> {
        let slot = self.new_slot(value);
        self.store(key, slot, true)
    }

    /// Evicts `key` (cause `Explicit`). Returns whether a live entry was
    /// there; an expired one is evicted as `Expired` and gives `false`.
    pub fn remove(&self, key: &K) -> bool {
        let hash = self.hash(key);
        let probe = Probe { hash, key };
        let taken = {
            let _writer = self.writer.lock();
            let now = self.clock.now();
            let mut map = self.shard(hash).map.write();
            map.remove(&probe as &dyn Lookup<K>).map(|entry| {
                let cause = if entry.expired(now) { Cause::Expired } else { Cause::Explicit };
                self.note_removal(&entry.slot, cause);
                (entry, cause)
            })
        };
        match taken {
            Some((entry, cause)) => {
                self.release(entry.slot);
                cause == Cause::Explicit
            }
            None => false,
        }
    }

    /// Evicts every expired entry; returns how many. The gateway calls this
    /// periodically so idle clients do not wait for the next insert to go.
    pub fn evict_expired(&self) -> usize {
        let mut evicted = Vec::new();
        {
            let mut writer = self.writer.lock();
            self.purge_expired(&mut writer, self.clock.now(), &mut evicted);
        }
        let n = evicted.len();
        self.release_all(evicted);
        n
    }

    /// Entries held, including expired ones not yet evicted.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> CacheStats {
        let (hits, misses) = self
            .shards
            .iter()
            .fold((0, 0), |(h, m), s| (h + s.hits.load(Ordering::Relaxed), m + s.misses.load(Ordering::Relaxed)));
        let c = &self.counters;
        CacheStats {
            hits,
            misses,
            inserts: c.inserts.load(Ordering::Relaxed),
            evictions_capacity: c.evictions_capacity.load(Ordering::Relaxed),
            evictions_expired: c.evictions_expired.load(Ordering::Relaxed),
            evictions_explicit: c.evictions_explicit.load(Ordering::Relaxed),
            evicted_while_in_use: c.evicted_while_in_use.load(Ordering::Relaxed),
            shutdowns: c.shutdowns.load(Ordering::Relaxed),
            entries: self.len(),
            capacity: self.config.capacity,
            ttl_secs: self.config.ttl.as_secs(),
        }
    }

    /// Puts the 2026 incident's bug back: on eviction the resource is shut
    /// down immediately, even while held. Only the harness's proof mode
    /// calls this.
    pub fn set_close_on_evict(&self, on: bool) {
        self.close_on_evict.store(on, Ordering::Relaxed);
    }

    // ---- internals ------------------------------------------------------

    fn hash(&self, key: &K) -> u64 {
        let mut hasher = KeyHasher { h: self.seed };
        key.hash(&mut hasher);
        hasher.finish()
    }

    fn shard(&self, hash: u64) -> &Shard<K, V> {
        // Bits 32.. : the map uses the low bits (bucket) and top 7 (tag).
        &self.shards[(hash >> 32) as usize & (SHARDS - 1)]
    }

    fn new_slot(&self, value: V) -> Arc<Slot<V>> {
        Arc::new(Slot { value, shut_down: AtomicBool::new(false), counters: Arc::clone(&self.counters) })
    }

    fn next_generation(&self) -> u64 {
        self.generation.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Marks `entry` most recently used. Skips the shared counter when the
    /// entry already is, so repeated hits on a hot client write nothing
    /// shared. Under concurrency a stamp may land slightly stale: LRU is
    /// approximate there, exact on one thread.
    ///
    /// A load and a store rather than `fetch_add`: a locked instruction
    /// costs ~7 ns here, a quarter of the hit budget. Racing hits may then
    /// share a generation (a tie between two entries), which is harmless.
    #[inline]
    fn touch(&self, entry: &Entry<V>) {
        let newest = self.generation.0.load(Ordering::Relaxed);
        if entry.last_used.load(Ordering::Relaxed) != newest {
            self.generation.0.store(newest + 1, Ordering::Relaxed);
            entry.last_used.store(newest + 1, Ordering::Relaxed);
        }
    }

    /// Counts an entry leaving the cache. Called under the shard lock, so
    /// "in use" means a lease existed at the moment of eviction.
    fn note_removal(&self, slot: &Arc<Slot<V>>, cause: Cause) {
        let c = &self.counters;
        let counter = match cause {
            Cause::Capacity => &c.evictions_capacity,
            Cause::Expired => &c.evictions_expired,
            Cause::Explicit => &c.evictions_explicit,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        // The entry's own reference is one; any more are leases.
        if Arc::strong_count(slot) > 1 {
            c.evicted_while_in_use.fetch_add(1, Ordering::Relaxed);
        }
        self.len.fetch_sub(1, Ordering::Relaxed);
    }

    /// Drops the cache's reference to an evicted value, outside every lock
    /// (the drop may run `shutdown`). In close-on-evict mode, shuts it down
    /// first regardless of holders — the bug.
    fn release(&self, slot: Arc<Slot<V>>) {
        if self.close_on_evict.load(Ordering::Relaxed) {
            slot.shut_down_once();
        }
        drop(slot);
    }

    fn release_all(&self, slots: Vec<Arc<Slot<V>>>) {
        for slot in slots {
            self.release(slot);
        }
    }

    /// `get`'s slow path: evicts `probe`'s entry if it is (still) expired.
    fn remove_expired_key(&self, probe: &Probe<'_, K>, now: Duration) {
        let taken = {
            let _writer = self.writer.lock();
            let mut map = self.shard(probe.hash).map.write();
            let expired = map.get(probe as &dyn Lookup<K>).is_some_and(|e| e.expired(now));
            if expired {
                map.remove(probe as &dyn Lookup<K>).map(|entry| {
                    self.note_removal(&entry.slot, Cause::Expired);
                    entry.slot
                })
            } else {
                None
            }
        };
        if let Some(slot) = taken {
            self.release(slot);
        }
    }

    /// Puts `slot` under `key` and returns a lease on what is cached there
    /// afterwards. With `replace` false a live entry wins over `slot`.
    fn store(&self, key: K, slot: Arc<Slot<V>>, replace: bool) -> Lease<V> {
        if self.config.capacity == 0 {
            return Lease { slot };
        }
        let hash = self.hash(&key);
        let shard = self.shard(hash);
        let mut evicted = Vec::new();
        let lease = 'locked: {
            let mut writer = self.writer.lock();
            let now = self.clock.now();
            let probe = Probe { hash, key: &key };
            let mut map = shard.map.write();
            if !replace {
                let live = map.get(&probe as &dyn Lookup<K>).filter(|e| !e.expired(now));
                if let Some(entry) = live {
                    // Lost a get_or_insert race: serve the cached value. Ours
                    // was never shared; it is dropped (shut down) below,
                    // outside the locks.
                    self.touch(entry);
                    break 'locked Lease { slot: Arc::clone(&entry.slot) };
                }
            }
            if let Some(old) = map.remove(&probe as &dyn Lookup<K>) {
                let cause = if old.expired(now) { Cause::Expired } else { Cause::Explicit };
                self.note_removal(&old.slot, cause);
                evicted.push(old.slot);
            }
            if self.len() >= self.config.capacity {
                drop(map);
                self.make_room(&mut writer, now, &mut evicted);
                map = shard.map.write();
            }
            let expires_at = now.saturating_add(self.config.ttl);
            writer.next_expiry = writer.next_expiry.min(expires_at);
            let entry =
                Entry { slot: Arc::clone(&slot), expires_at, last_used: AtomicU64::new(self.next_generation()) };
            map.insert(Stored { hash, key }, entry);
            self.len.fetch_add(1, Ordering::Relaxed);
            self.counters.inserts.fetch_add(1, Ordering::Relaxed);
            Lease { slot: Arc::clone(&slot) }
        };
        self.release_all(evicted);
        drop(slot);
        lease
    }

    /// Under `writer`: frees one place — expired entries first (all of
    /// them), then the least recently used.
    fn make_room(&self, writer: &mut Writer, now: Duration, evicted: &mut Vec<Arc<Slot<V>>>) {
        self.purge_expired(writer, now, evicted);
        while self.len() >= self.config.capacity {
            // Which shard holds the oldest stamp? (Read locks: hits go on.)
            let oldest = self
                .shards
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let map = s.map.read();
                    map.values().map(|e| e.last_used.load(Ordering::Relaxed)).min().map(|g| (g, i))
                })
                .min();
            let Some((_, index)) = oldest else { return };
            // Evict that shard's oldest now; a concurrent hit may have
            // refreshed the one we saw, which only makes LRU approximate.
            let mut map = self.shards[index].map.write();
            let Some(victim) = map.values().map(|e| e.last_used.load(Ordering::Relaxed)).min() else {
                continue;
            };
            let mut done = false;
            map.retain(|_, e| {
                if done || e.last_used.load(Ordering::Relaxed) != victim {
                    return true;
                }
                done = true;
                self.note_removal(&e.slot, Cause::Capacity);
                evicted.push(Arc::clone(&e.slot));
                false
            });
        }
    }

    /// Evicts every expired entry into `evicted`, unless `next_expiry`
    /// says none can be.
    fn purge_expired(&self, writer: &mut Writer, now: Duration, evicted: &mut Vec<Arc<Slot<V>>>) {
        if now < writer.next_expiry {
            return;
        }
        let mut next_expiry = Duration::MAX;
        for shard in self.shards.iter() {
            let mut map = shard.map.write();
            map.retain(|_, e| {
                if !e.expired(now) {
                    next_expiry = next_expiry.min(e.expires_at);
                    return true;
                }
                self.note_removal(&e.slot, Cause::Expired);
                evicted.push(Arc::clone(&e.slot));
                false
            });
        }
        writer.next_expiry = next_expiry;
    }
}

impl<K, V: Resource> fmt::Debug for ClientCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCache")
            .field("config", &self.config)
            .field("len", &self.len.load(Ordering::Relaxed))
            .field("close_on_evict", &self.close_on_evict.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::clock::{ManualClock, SharedClock};
    use std::sync::atomic::AtomicUsize;

    /// Records how often it was shut down.
    #[derive(Debug)]
    struct Client {
        id: u32,
        shutdowns: Arc<AtomicUsize>,
    }

    impl Resource for Client {
        fn shutdown(&self) {
            self.shutdowns.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn client(id: u32) -> (Client, Arc<AtomicUsize>) {
        let shutdowns = Arc::new(AtomicUsize::new(0));
        (Client { id, shutdowns: Arc::clone(&shutdowns) }, shutdowns)
    }

    fn cache(capacity: usize, ttl_secs: u64) -> (ClientCache<&'static str, Client>, Arc<ManualClock>) {
        let clock = ManualClock::shared();
        let shared: SharedClock = clock.clone();
        let config = CacheConfig { capacity, ttl: Duration::from_secs(ttl_secs) };
        (ClientCache::new(config, shared), clock)
    }

    fn count(c: &AtomicUsize) -> usize {
        c.load(Ordering::SeqCst)
    }

    #[test]
    fn default_config_is_litellms() {
        let c = CacheConfig::default();
        assert_eq!(c.capacity, 200);
        assert_eq!(c.ttl, Duration::from_secs(600));
    }

    #[test]
    fn entry_expires_exactly_at_ttl_and_is_then_evicted() {
        let (cache, clock) = cache(10, 600);
        let (c, downs) = client(1);
        drop(cache.insert("a", c));
        clock.advance(Duration::from_secs(599));
        assert_eq!(cache.get(&"a").map(|l| l.id), Some(1));
        clock.advance(Duration::from_secs(1));
        assert!(cache.get(&"a").is_none(), "age == ttl is expired");
        assert_eq!(cache.len(), 0);
        assert_eq!(count(&downs), 1, "unheld and evicted: shut down");
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.evictions_expired, s.shutdowns), (1, 1, 1, 1));
    }

    #[test]
    fn hits_do_not_extend_the_ttl() {
        let (cache, clock) = cache(10, 10);
        drop(cache.insert("a", client(1).0));
        for _ in 0..9 {
            clock.advance(Duration::from_secs(1));
            assert!(cache.get(&"a").is_some());
        }
        clock.advance(Duration::from_secs(1));
        assert!(cache.get(&"a").is_none());
    }

    #[test]
    fn evict_expired_removes_only_expired_entries() {
        let (cache, clock) = cache(10, 10);
        drop(cache.insert("old", client(1).0));
        clock.advance(Duration::from_secs(6));
        drop(cache.insert("new", client(2).0));
        clock.advance(Duration::from_secs(5));
        assert_eq!(cache.evict_expired(), 1);
        assert!(cache.get(&"old").is_none());
        assert!(cache.get(&"new").is_some());
        assert_eq!(cache.stats().evictions_expired, 1);
    }

    #[test]
    fn full_cache_evicts_least_recently_used() {
        let (cache, _clock) = cache(3, 600);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            drop(cache.insert(k, client(i as u32).0));
        }
        assert!(cache.get(&"a").is_some()); // order now b, c, a
        drop(cache.insert("d", client(3).0)); // evicts b
        assert!(cache.get(&"b").is_none());
        assert!(cache.get(&"c").is_some()); // order a, d, c
        drop(cache.insert("e", client(4).0)); // evicts a
        assert!(cache.get(&"a").is_none());
        for k in ["c", "d", "e"] {
            assert!(cache.get(&k).is_some(), "{k} should be cached");
        }
        assert_eq!(cache.stats().evictions_capacity, 2);
    }

    #[test]
    fn expired_entries_go_before_the_lru_one() {
        let (cache, clock) = cache(2, 10);
        drop(cache.insert("a", client(1).0)); // t = 0
        clock.advance(Duration::from_secs(5));
        drop(cache.insert("b", client(2).0)); // t = 5
        assert!(cache.get(&"a").is_some()); // a most recent, b LRU
        clock.advance(Duration::from_secs(6)); // a expired, b alive
        drop(cache.insert("c", client(3).0));
        assert!(cache.get(&"b").is_some(), "LRU but alive: kept");
        assert!(cache.get(&"c").is_some());
        let s = cache.stats();
        assert_eq!((s.evictions_expired, s.evictions_capacity), (1, 0));
    }

    #[test]
    fn capacity_is_never_exceeded() {
        let (cache, _clock) = cache(3, 600);
        for i in 0..50u32 {
            let key: &'static str = Box::leak(format!("k{i}").into_boxed_str());
            drop(cache.insert(key, client(i).0));
            assert!(cache.len() <= 3);
        }
        let s = cache.stats();
        assert_eq!((s.entries, s.inserts, s.evictions_capacity, s.shutdowns), (3, 50, 47, 47));
    }

    #[test]
    fn stats_count_hits_misses_and_inserts() {
        let (cache, _clock) = cache(10, 600);
        assert!(cache.get(&"a").is_none());
        let made = cache.get_or_insert_with("a", || Ok::<_, ()>(client(1).0));
        assert!(made.is_ok());
        let again = cache.get_or_insert_with("a", || -> Result<Client, ()> { panic!("must hit") });
        assert_eq!(again.map(|l| l.id), Ok(1));
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.inserts, s.entries), (1, 2, 1, 1));
        assert_eq!((s.capacity, s.ttl_secs), (10, 600));
    }

    #[test]
    fn failed_make_caches_nothing() {
        let (cache, _clock) = cache(10, 600);
        let r = cache.get_or_insert_with("a", || Err::<Client, _>("no credentials"));
        assert_eq!(r.err(), Some("no credentials"));
        assert!(cache.is_empty());
        assert_eq!(cache.stats().inserts, 0);
    }

    #[test]
    fn held_lease_survives_eviction_and_shuts_down_once_on_release() {
        let (cache, _clock) = cache(1, 600);
        let (c, downs) = client(1);
        let lease = cache.insert("a", c);
        let second = lease.clone();
        drop(cache.insert("b", client(2).0)); // evicts a while held
        assert!(!lease.is_shut_down());
        assert_eq!(count(&downs), 0);
        assert_eq!(lease.id, 1, "still usable");
        drop(lease);
        assert_eq!(count(&downs), 0, "second lease still holds it");
        drop(second);
        assert_eq!(count(&downs), 1);
        let s = cache.stats();
        assert_eq!((s.evicted_while_in_use, s.shutdowns), (1, 1));
    }

    #[test]
    fn releasing_a_cached_lease_does_not_shut_down() {
        let (cache, _clock) = cache(4, 600);
        let (c, downs) = client(1);
        drop(cache.insert("a", c));
        drop(cache.get(&"a"));
        assert_eq!(count(&downs), 0, "the cache still holds it");
        assert!(cache.remove(&"a"));
        assert_eq!(count(&downs), 1);
        assert!(!cache.remove(&"a"));
        assert_eq!(cache.stats().evictions_explicit, 1);
    }

    #[test]
    fn replacing_evicts_the_old_value_explicitly_but_holders_keep_it() {
        let (cache, _clock) = cache(4, 600);
        let (old, old_downs) = client(1);
        let held = cache.insert("a", old);
        let new = cache.insert("a", client(2).0);
        assert_eq!((held.id, new.id), (1, 2));
        assert!(!Lease::ptr_eq(&held, &new));
        assert_eq!(count(&old_downs), 0);
        let s = cache.stats();
        assert_eq!((s.evictions_explicit, s.evicted_while_in_use, s.entries), (1, 1, 1));
        drop(held);
        assert_eq!(count(&old_downs), 1);
    }

    #[test]
    fn removing_an_expired_entry_counts_as_expiry() {
        let (cache, clock) = cache(4, 10);
        drop(cache.insert("a", client(1).0));
        clock.advance(Duration::from_secs(10));
        assert!(!cache.remove(&"a"));
        let s = cache.stats();
        assert_eq!((s.evictions_expired, s.evictions_explicit, s.entries), (1, 0, 0));
    }

    #[test]
    fn dropping_the_cache_releases_only_its_own_references() {
        let (cache, _clock) = cache(4, 600);
        let (held, held_downs) = client(1);
        let (idle, idle_downs) = client(2);
        let lease = cache.insert("held", held);
        drop(cache.insert("idle", idle));
        drop(cache);
        assert_eq!(count(&idle_downs), 1);
        assert_eq!(count(&held_downs), 0);
        assert!(!lease.is_shut_down());
        drop(lease);
        assert_eq!(count(&held_downs), 1);
    }

    #[test]
    fn zero_capacity_caches_nothing_but_leases_work() {
        let (cache, _clock) = cache(0, 600);
        let (c, downs) = client(1);
        let lease = cache.insert("a", c);
        assert!(cache.is_empty());
        assert_eq!(lease.id, 1);
        drop(lease);
        assert_eq!(count(&downs), 1);
    }

    #[test]
    fn close_on_evict_really_shuts_down_a_held_resource_once() {
        let (cache, _clock) = cache(1, 600);
        cache.set_close_on_evict(true);
        let (c, downs) = client(1);
        let lease = cache.insert("a", c);
        drop(cache.insert("b", client(2).0));
        assert!(lease.is_shut_down(), "the incident: closed while held");
        assert_eq!(count(&downs), 1);
        drop(lease);
        assert_eq!(count(&downs), 1, "the final drop must not shut down again");
        assert_eq!(cache.stats().shutdowns, 1);
    }

    #[test]
    fn key_hash_separates_lengths_and_bytes() {
        // Every key of 0..40 bytes that differs from all-'x' in one byte,
        // across the 8- and 16-byte read boundaries: no two may collide.
        let (cache, _clock) = cache(1, 600);
        let mut hashes = std::collections::HashMap::new();
        for len in 0..40usize {
            for byte in [b'x', b'a', 0u8, 0xff] {
                for pos in 0..len.max(1) {
                    let mut key = vec![b'x'; len];
                    if let Some(b) = key.get_mut(pos) {
                        *b = byte;
                    }
                    let mut hasher = KeyHasher { h: cache.seed };
                    hasher.write(&key);
                    hashes.insert(key, hasher.finish());
                }
            }
        }
        let distinct: std::collections::HashSet<u64> = hashes.values().copied().collect();
        assert_eq!(distinct.len(), hashes.len(), "collisions among {} keys", hashes.len());
    }

    #[test]
    fn keys_spread_over_shards() {
        let (cache, _clock) = cache(1000, 600);
        let mut used = [0usize; SHARDS];
        for i in 0..1000u32 {
            let key: &'static str = Box::leak(format!("openai|key-{i}").into_boxed_str());
            let h = cache.hash(&key);
            used[(h >> 32) as usize & (SHARDS - 1)] += 1;
        }
        assert!(used.iter().all(|&n| n > 30), "{used:?}");
    }
}
