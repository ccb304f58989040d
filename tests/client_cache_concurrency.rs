//! The incident's workload: many concurrent requests using provider clients
//! while a capacity-1 cache churns, so clients are evicted while requests
//! still use them. Each request uses its client twice (as a streamed
//! response would), yielding in between; a client that has been shut down
//! answers "client has been closed", which the request counts as a failure.
//!
//! Two phases per run:
//! - lockstep rounds: every task takes its lease, waits at a barrier until
//!   all tasks hold one, then uses it. Tasks want different keys, so with
//!   capacity 1 some clients are certainly evicted while held — every round,
//!   whatever the scheduling. This is what makes the failing variant fail
//!   deterministically.
//! - free-running churn: the same requests without the barrier.
//!
//! With the fixed cache there must be zero failures and every client must be
//! shut down exactly once in the end. With `set_close_on_evict(true)` (the
//! bug put back) the same workload must fail, proving the check can fail.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use postmortem::gateway::client_cache::{CacheConfig, CacheStats, ClientCache, Resource};
use postmortem::gateway::clock::{ManualClock, SharedClock};
use tokio::sync::Barrier;

const TASKS: usize = 12;
const KEYS: usize = 3;
const ROUNDS: usize = 40;
const CHURN_REQUESTS: usize = 200;

/// Stands in for an SDK client: refuses work once shut down.
struct Client {
    closed: AtomicBool,
    shutdowns: Arc<AtomicUsize>,
}

impl Client {
    fn call(&self) -> Result<(), &'static str> {
        if self.closed.load(Ordering::SeqCst) {
            return Err("client has been closed");
        }
        Ok(())
    }
}

impl Resource for Client {
    fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.shutdowns.fetch_add(1, Ordering::SeqCst);
    }
}

/// Every client ever built, by its shutdown counter.
#[derive(Default)]
struct Registry {
    shutdowns: Mutex<Vec<Arc<AtomicUsize>>>,
}

impl Registry {
    fn build(&self) -> Client {
        let shutdowns = Arc::new(AtomicUsize::new(0));
        self.shutdowns.lock().push(Arc::clone(&shutdowns));
        Client { closed: AtomicBool::new(false), shutdowns }
    }
}

struct World {
    cache: ClientCache<usize, Client>,
    registry: Registry,
    failures: AtomicUsize,
    requests: AtomicUsize,
}

/// One request: lease a client, use it, (wait for everyone,) yield, use it
/// again, release it.
async fn request(world: &World, key: usize, barrier: Option<&Barrier>) {
    world.requests.fetch_add(1, Ordering::Relaxed);
    let lease = match world.cache.get_or_insert_with(key, || Ok::<_, Infallible>(world.registry.build())) {
        Ok(lease) => lease,
        Err(never) => match never {},
    };
    let first = lease.call();
    if let Some(barrier) = barrier {
        barrier.wait().await;
    }
    tokio::task::yield_now().await;
    let second = lease.call();
    if first.is_err() || second.is_err() {
        world.failures.fetch_add(1, Ordering::Relaxed);
    }
    drop(lease);
    if let Some(barrier) = barrier {
        // Nobody starts the next round before this one's uses are done.
        barrier.wait().await;
    }
}

struct Outcome {
    failures: usize,
    requests: usize,
    stats: CacheStats,
    /// Shutdown count of every client built, after everything was dropped.
    shutdowns: Vec<usize>,
}

async fn run_workload(close_on_evict: bool) -> Outcome {
    let clock: SharedClock = ManualClock::shared();
    let config = CacheConfig { capacity: 1, ttl: Duration::from_secs(600) };
    let world = Arc::new(World {
        cache: ClientCache::new(config, clock),
        registry: Registry::default(),
        failures: AtomicUsize::new(0),
        requests: AtomicUsize::new(0),
    });
    world.cache.set_close_on_evict(close_on_evict);

    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (world, barrier) = (Arc::clone(&world), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                request(&world, (task + round) % KEYS, Some(&barrier)).await;
            }
            for i in 0..CHURN_REQUESTS {
                request(&world, (task * 7 + i) % KEYS, None).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("request task panicked");
    }

    let stats = world.cache.stats();
    let world = Arc::into_inner(world).expect("all tasks are done");
    let World { cache, registry, failures, requests } = world;
    drop(cache);
    let shutdowns = registry.shutdowns.lock().iter().map(|c| c.load(Ordering::SeqCst)).collect();
    Outcome { failures: failures.into_inner(), requests: requests.into_inner(), stats, shutdowns }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churning_cache_never_closes_a_client_in_use() {
    let out = run_workload(false).await;
    assert_eq!(out.requests, TASKS * (ROUNDS + CHURN_REQUESTS));
    assert_eq!(out.failures, 0, "requests saw a closed client; stats: {:?}", out.stats);
    // The danger really occurred: clients were evicted while in use.
    assert!(out.stats.evicted_while_in_use >= ROUNDS as u64, "{:?}", out.stats);
    assert!(out.stats.entries <= 1);
    // Every client built was shut down exactly once, once nobody held it.
    assert!(!out.shutdowns.is_empty());
    for (i, n) in out.shutdowns.iter().enumerate() {
        assert_eq!(*n, 1, "client {i} shut down {n} times");
    }
    // Before the cache was dropped, all but the cached ones were shut down.
    assert_eq!(out.stats.shutdowns as usize + out.stats.entries, out.shutdowns.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_on_evict_fails_the_same_workload() {
    let out = run_workload(true).await;
    // Each lockstep round leases all KEYS keys but ends with one cached, so
    // at least KEYS - 1 clients are evicted while held, and so closed.
    assert!(out.failures >= ROUNDS, "only {} failures; stats: {:?}", out.failures, out.stats);
    // Even the buggy mode shuts each client down only once.
    for (i, n) in out.shutdowns.iter().enumerate() {
        assert_eq!(*n, 1, "client {i} shut down {n} times");
    }
}
