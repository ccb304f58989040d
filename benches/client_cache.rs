//! The provider client cache against moka and quick_cache doing the same
//! work, side by side in one group per scenario:
//!
//! - `get_hit_1_thread`: hits cycling over a full cache of 200 keys.
//! - `get_hit_2_threads`: the same on two threads at once (offset by half
//!   the keys); the time is per get per thread.
//! - `insert_evicting`: inserts of new keys into a full cache, each evicting.
//!
//! `ours` reads `CoarseClock` (one atomic load, refreshed every millisecond
//! by a background thread), as the gateway does by default;
//! `ours_system_clock` reads the system clock on every get, to show what
//! that read costs. quick_cache has no TTL; moka is configured
//! with the same 600 s TTL.
//!
//! Run: `cargo bench --bench client_cache -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use postmortem::gateway::client_cache::{CacheConfig, ClientCache, Resource};
use postmortem::gateway::clock::{CoarseClock, SharedClock, SystemClock};

const CAPACITY: usize = 200;
const TTL: Duration = Duration::from_secs(600);

/// A stand-in SDK client; shutdown does nothing so only the cache is timed.
struct Client {
    id: usize,
}

impl Resource for Client {
    fn shutdown(&self) {}
}

/// Realistic keys: provider, endpoint and a credential fingerprint.
fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("openai|https://api.openai.com/v1|{i:016x}")).collect()
}

fn config() -> CacheConfig {
    CacheConfig { capacity: CAPACITY, ttl: TTL }
}

fn ours(clock: SharedClock, keys: &[String]) -> ClientCache<String, Client> {
    let cache = ClientCache::new(config(), clock);
    for (id, k) in keys.iter().enumerate() {
        drop(cache.insert(k.clone(), Client { id }));
    }
    cache
}

fn moka_cache(keys: &[String]) -> moka::sync::Cache<String, Arc<Client>> {
    let cache = moka::sync::Cache::builder().max_capacity(CAPACITY as u64).time_to_live(TTL).build();
    for (id, k) in keys.iter().enumerate() {
        cache.insert(k.clone(), Arc::new(Client { id }));
    }
    cache.run_pending_tasks();
    cache
}

/// quick_cache's capacity is per shard and approximate: at exactly 200 it
/// already drops a few of 200 keys, so the hit scenarios give it headroom.
fn quick(keys: &[String], capacity: usize) -> quick_cache::sync::Cache<String, Arc<Client>> {
    let cache = quick_cache::sync::Cache::new(capacity);
    for (id, k) in keys.iter().enumerate() {
        cache.insert(k.clone(), Arc::new(Client { id }));
    }
    cache
}

/// The three caches behind one interface, so every scenario runs the same
/// loop on each.
trait Subject: Sync {
    // `ClientCache::get` takes `&K`, here `&String`.
    #[allow(clippy::ptr_arg)]
    fn hit(&self, key: &String) -> usize;
    fn put(&self, key: String, id: usize);
}

impl Subject for ClientCache<String, Client> {
    fn hit(&self, key: &String) -> usize {
        self.get(key).map_or(usize::MAX, |c| c.id)
    }
    fn put(&self, key: String, id: usize) {
        drop(self.insert(key, Client { id }));
    }
}

impl Subject for moka::sync::Cache<String, Arc<Client>> {
    fn hit(&self, key: &String) -> usize {
        self.get(key).map_or(usize::MAX, |c| c.id)
    }
    fn put(&self, key: String, id: usize) {
        self.insert(key, Arc::new(Client { id }));
    }
}

impl Subject for quick_cache::sync::Cache<String, Arc<Client>> {
    fn hit(&self, key: &String) -> usize {
        self.get(key).map_or(usize::MAX, |c| c.id)
    }
    fn put(&self, key: String, id: usize) {
        self.insert(key, Arc::new(Client { id }));
    }
}

fn subjects(keys: &[String], quick_capacity: usize) -> Vec<(&'static str, Box<dyn Subject>)> {
    let coarse: SharedClock = CoarseClock::start(Duration::from_millis(1));
    vec![
        ("ours", Box::new(ours(coarse, keys))),
        ("ours_system_clock", Box::new(ours(SystemClock::shared(), keys))),
        ("moka", Box::new(moka_cache(keys))),
        ("quick_cache", Box::new(quick(keys, quick_capacity))),
    ]
}

/// `iters` hits cycling through `keys` from `start`.
fn hit_loop(cache: &dyn Subject, keys: &[String], start: usize, iters: u64) {
    let mut i = start;
    for _ in 0..iters {
        black_box(cache.hit(black_box(&keys[i])));
        i += 1;
        if i == keys.len() {
            i = 0;
        }
    }
}

fn get_hit(c: &mut Criterion) {
    let keys = keys(CAPACITY);
    let subjects = subjects(&keys, 2 * CAPACITY);
    for (name, cache) in &subjects {
        // Every key must be a hit, or we would time misses.
        let misses = keys.iter().filter(|k| cache.hit(k) == usize::MAX).count();
        assert_eq!(misses, 0, "{name}: a full cache must hit every key");
    }

    let mut group = c.benchmark_group("get_hit_1_thread");
    for (name, cache) in &subjects {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                hit_loop(cache.as_ref(), &keys, 0, iters);
                start.elapsed()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("get_hit_2_threads");
    for (name, cache) in &subjects {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..2 {
                        let (cache, keys) = (cache.as_ref(), &keys);
                        s.spawn(move || hit_loop(cache, keys, t * CAPACITY / 2, iters));
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn insert_evicting(c: &mut Criterion) {
    // Twice the capacity, inserted round-robin: every insert is a new key
    // into a full cache, so every insert evicts.
    let keys = keys(2 * CAPACITY);
    let subjects = subjects(&keys[..CAPACITY], CAPACITY);
    let mut group = c.benchmark_group("insert_evicting");
    for (name, cache) in &subjects {
        let mut i = CAPACITY;
        group.bench_function(*name, |b| {
            b.iter(|| {
                cache.put(keys[i].clone(), i);
                i = (i + 1) % keys.len();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, get_hit, insert_evicting);
criterion_main!(benches);
