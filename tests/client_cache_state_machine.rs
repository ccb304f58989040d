//! The client cache against a reference model, for any interleaving of get,
//! get-or-insert, insert, hold/clone/release of leases, clock advances,
//! explicit removal and expiry sweeps. After every step:
//!
//! - no held resource has been shut down;
//! - every resource that is out of the cache and no longer held has been
//!   shut down exactly once (and no other resource at all);
//! - the cache never holds more than its capacity;
//! - each operation returned what the model says (which resource, whether
//!   a removal found a live entry, how many entries a sweep evicted);
//! - `stats()` equals the model's counters.
//!
//! Teardown drops the cache, then the leases, and checks every resource was
//! shut down exactly once overall.
//!
//! The seed is fixed so the run is deterministic; set PROPTEST_CASES (and
//! PROPTEST_RNG_SEED) to search longer or elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postmortem::gateway::client_cache::{CacheConfig, CacheStats, ClientCache, Lease, Resource};
use postmortem::gateway::clock::{ManualClock, SharedClock};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

const CAPACITY: usize = 3;
const TTL_SECS: u64 = 10;
const KEYS: u8 = 5;

/// A test client: which one it is, and how often it was shut down.
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

#[derive(Clone, Debug)]
enum Transition {
    /// `get`; with `hold`, keep the lease if it hit.
    Get {
        key: u8,
        hold: bool,
    },
    GetOrInsert {
        key: u8,
        hold: bool,
    },
    Insert {
        key: u8,
        hold: bool,
    },
    /// Take a second lease on an already held resource.
    CloneHeld {
        index: usize,
    },
    /// Drop a held lease (index taken modulo the number held).
    Release {
        index: usize,
    },
    Advance {
        secs: u64,
    },
    Remove {
        key: u8,
    },
    EvictExpired,
}

/// What the last operation should have returned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    Nothing,
    /// The resource id a get-like operation returns, or none on a miss.
    Lease(Option<u32>),
    Removed(bool),
    Swept(usize),
}

#[derive(Clone, Debug)]
struct ModelEntry {
    id: u32,
    inserted_at: u64,
    last_used: u64,
}

#[derive(Clone, Debug)]
struct Model {
    now: u64,
    generation: u64,
    entries: BTreeMap<u8, ModelEntry>,
    /// Resource id of every held lease, in the order taken.
    held: Vec<u32>,
    /// Resources created so far; ids are 0..created in creation order.
    created: u32,
    shut_down: BTreeSet<u32>,
    stats: CacheStats,
    expect: Expect,
}

#[derive(Clone, Copy)]
enum Cause {
    Capacity,
    Expired,
    Explicit,
}

impl Model {
    fn expired(&self, e: &ModelEntry) -> bool {
        self.now - e.inserted_at >= TTL_SECS
    }

    fn touch(&mut self, key: u8) {
        self.generation += 1;
        let generation = self.generation;
        if let Some(e) = self.entries.get_mut(&key) {
            e.last_used = generation;
        }
    }

    fn evict(&mut self, key: u8, cause: Cause) {
        let Some(e) = self.entries.remove(&key) else { return };
        match cause {
            Cause::Capacity => self.stats.evictions_capacity += 1,
            Cause::Expired => self.stats.evictions_expired += 1,
            Cause::Explicit => self.stats.evictions_explicit += 1,
        }
        if self.held.contains(&e.id) {
            self.stats.evicted_while_in_use += 1;
        }
    }

    fn expired_keys(&self) -> Vec<u8> {
        self.entries.iter().filter(|(_, e)| self.expired(e)).map(|(k, _)| *k).collect()
    }

    /// The live entry's id, evicting an expired one as the cache does.
    fn lookup(&mut self, key: u8) -> Option<u32> {
        let e = self.entries.get(&key)?;
        if self.expired(e) {
            self.evict(key, Cause::Expired);
            return None;
        }
        let id = e.id;
        self.touch(key);
        Some(id)
    }

    fn insert_new(&mut self, key: u8) -> u32 {
        let id = self.created;
        self.created += 1;
        if let Some(old) = self.entries.get(&key) {
            let cause = if self.expired(old) { Cause::Expired } else { Cause::Explicit };
            self.evict(key, cause);
        } else if self.entries.len() >= CAPACITY {
            for k in self.expired_keys() {
                self.evict(k, Cause::Expired);
            }
            while self.entries.len() >= CAPACITY {
                let lru = self.entries.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| *k);
                let Some(lru) = lru else { break };
                self.evict(lru, Cause::Capacity);
            }
        }
        self.generation += 1;
        let entry = ModelEntry { id, inserted_at: self.now, last_used: self.generation };
        self.entries.insert(key, entry);
        self.stats.inserts += 1;
        id
    }

    /// A resource neither cached nor held is shut down (once, for good).
    fn settle(&mut self) {
        for id in 0..self.created {
            let cached = self.entries.values().any(|e| e.id == id);
            if !cached && !self.held.contains(&id) {
                self.shut_down.insert(id);
            }
        }
        self.stats.shutdowns = self.shut_down.len() as u64;
        self.stats.entries = self.entries.len();
    }
}

struct CacheModel;

impl ReferenceStateMachine for CacheModel {
    type State = Model;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<Model> {
        let stats = CacheStats { capacity: CAPACITY, ttl_secs: TTL_SECS, ..CacheStats::default() };
        Just(Model {
            now: 0,
            generation: 0,
            entries: BTreeMap::new(),
            held: Vec::new(),
            created: 0,
            shut_down: BTreeSet::new(),
            stats,
            expect: Expect::Nothing,
        })
        .boxed()
    }

    fn transitions(_state: &Model) -> BoxedStrategy<Transition> {
        let key = 0..KEYS;
        prop_oneof![
            4 => (key.clone(), any::<bool>()).prop_map(|(key, hold)| Transition::Get { key, hold }),
            4 => (key.clone(), any::<bool>())
                .prop_map(|(key, hold)| Transition::GetOrInsert { key, hold }),
            3 => (key.clone(), any::<bool>()).prop_map(|(key, hold)| Transition::Insert { key, hold }),
            1 => any::<usize>().prop_map(|index| Transition::CloneHeld { index }),
            3 => any::<usize>().prop_map(|index| Transition::Release { index }),
            2 => (0..=TTL_SECS + 2).prop_map(|secs| Transition::Advance { secs }),
            1 => key.prop_map(|key| Transition::Remove { key }),
            1 => Just(Transition::EvictExpired),
        ]
        .boxed()
    }

    fn apply(mut m: Model, t: &Transition) -> Model {
        m.expect = Expect::Nothing;
        match *t {
            Transition::Get { key, hold } => {
                let id = m.lookup(key);
                match id {
                    Some(id) => {
                        m.stats.hits += 1;
                        if hold {
                            m.held.push(id);
                        }
                    }
                    None => m.stats.misses += 1,
                }
                m.expect = Expect::Lease(id);
            }
            Transition::GetOrInsert { key, hold } => {
                let id = match m.lookup(key) {
                    Some(id) => {
                        m.stats.hits += 1;
                        id
                    }
                    None => {
                        m.stats.misses += 1;
                        m.insert_new(key)
                    }
                };
                if hold {
                    m.held.push(id);
                }
                m.expect = Expect::Lease(Some(id));
            }
            Transition::Insert { key, hold } => {
                let id = m.insert_new(key);
                if hold {
                    m.held.push(id);
                }
                m.expect = Expect::Lease(Some(id));
            }
            Transition::CloneHeld { index } => {
                if !m.held.is_empty() {
                    let id = m.held[index % m.held.len()];
                    m.held.push(id);
                }
            }
            Transition::Release { index } => {
                if !m.held.is_empty() {
                    let i = index % m.held.len();
                    m.held.remove(i);
                }
            }
            Transition::Advance { secs } => m.now += secs,
            Transition::Remove { key } => {
                let live = match m.entries.get(&key) {
                    Some(e) => {
                        let expired = m.expired(e);
                        m.evict(key, if expired { Cause::Expired } else { Cause::Explicit });
                        !expired
                    }
                    None => false,
                };
                m.expect = Expect::Removed(live);
            }
            Transition::EvictExpired => {
                let keys = m.expired_keys();
                for &k in &keys {
                    m.evict(k, Cause::Expired);
                }
                m.expect = Expect::Swept(keys.len());
            }
        }
        m.settle();
        m
    }
}

/// The real cache plus what the test holds.
struct System {
    cache: ClientCache<u8, Client>,
    clock: Arc<ManualClock>,
    held: Vec<Lease<Client>>,
    /// Shutdown counter of resource `id` at index `id`.
    shutdowns: Vec<Arc<AtomicUsize>>,
}

impl System {
    fn make(&mut self) -> Client {
        let shutdowns = Arc::new(AtomicUsize::new(0));
        self.shutdowns.push(Arc::clone(&shutdowns));
        Client { id: (self.shutdowns.len() - 1) as u32, shutdowns }
    }

    fn keep(&mut self, lease: Lease<Client>, hold: bool) -> Expect {
        let id = lease.id;
        if hold {
            self.held.push(lease);
        }
        Expect::Lease(Some(id))
    }
}

struct CacheTest;

impl StateMachineTest for CacheTest {
    type SystemUnderTest = System;
    type Reference = CacheModel;

    fn init_test(_model: &Model) -> System {
        let clock = ManualClock::shared();
        let shared: SharedClock = clock.clone();
        let config = CacheConfig { capacity: CAPACITY, ttl: Duration::from_secs(TTL_SECS) };
        System { cache: ClientCache::new(config, shared), clock, held: Vec::new(), shutdowns: Vec::new() }
    }

    fn apply(mut sys: System, model: &Model, t: Transition) -> System {
        let got = match t {
            Transition::Get { key, hold } => match sys.cache.get(&key) {
                Some(lease) => sys.keep(lease, hold),
                None => Expect::Lease(None),
            },
            Transition::GetOrInsert { key, hold } => {
                // The next id, registered only if `make` really runs.
                let shutdowns = Arc::new(AtomicUsize::new(0));
                let id = sys.shutdowns.len() as u32;
                let mut made = false;
                let result = sys.cache.get_or_insert_with(key, || {
                    made = true;
                    Ok::<_, Infallible>(Client { id, shutdowns: Arc::clone(&shutdowns) })
                });
                if made {
                    sys.shutdowns.push(shutdowns);
                }
                match result {
                    Ok(lease) => sys.keep(lease, hold),
                    Err(never) => match never {},
                }
            }
            Transition::Insert { key, hold } => {
                let client = sys.make();
                let lease = sys.cache.insert(key, client);
                sys.keep(lease, hold)
            }
            Transition::CloneHeld { index } => {
                if !sys.held.is_empty() {
                    let lease = sys.held[index % sys.held.len()].clone();
                    sys.held.push(lease);
                }
                Expect::Nothing
            }
            Transition::Release { index } => {
                if !sys.held.is_empty() {
                    let i = index % sys.held.len();
                    drop(sys.held.remove(i));
                }
                Expect::Nothing
            }
            Transition::Advance { secs } => {
                sys.clock.advance(Duration::from_secs(secs));
                Expect::Nothing
            }
            Transition::Remove { key } => Expect::Removed(sys.cache.remove(&key)),
            Transition::EvictExpired => Expect::Swept(sys.cache.evict_expired()),
        };
        assert_eq!(got, model.expect, "result of {t:?}");
        sys
    }

    fn check_invariants(sys: &System, model: &Model) {
        assert!(sys.cache.len() <= CAPACITY, "capacity exceeded: {}", sys.cache.len());
        assert_eq!(sys.cache.len(), model.entries.len(), "entries");
        assert_eq!(sys.shutdowns.len(), model.created as usize, "resources created");
        let held: Vec<u32> = sys.held.iter().map(|l| l.id).collect();
        assert_eq!(held, model.held, "held leases");
        for lease in &sys.held {
            assert!(!lease.is_shut_down(), "held resource {} was shut down", lease.id);
        }
        for (id, count) in sys.shutdowns.iter().enumerate() {
            let expected = usize::from(model.shut_down.contains(&(id as u32)));
            assert_eq!(count.load(Ordering::SeqCst), expected, "shutdowns of resource {id}");
        }
        assert_eq!(sys.cache.stats(), model.stats, "stats");
    }

    fn teardown(sys: System) {
        let System { cache, held, shutdowns, .. } = sys;
        drop(cache);
        for lease in &held {
            assert!(!lease.is_shut_down(), "dropping the cache shut down held {}", lease.id);
        }
        drop(held);
        for (id, count) in shutdowns.iter().enumerate() {
            assert_eq!(count.load(Ordering::SeqCst), 1, "resource {id} not shut down exactly once");
        }
    }
}

/// 400 cases from a fixed seed, unless PROPTEST_CASES / PROPTEST_RNG_SEED
/// say otherwise (proptest's default config reads them).
fn config() -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 400;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x00c1_1e47_cac4_e5ed);
    }
    config.failure_persistence = None;
    config
}

prop_state_machine! {
    #![proptest_config(config())]

    #[test]
    fn client_cache_matches_its_model(sequential 1..60 => CacheTest);
}
