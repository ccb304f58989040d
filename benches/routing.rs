//! Route + authorize: the per-request work the proxy does before it calls an
//! upstream (`ModelRouter::resolve` and `KeyRecord::access().allows`),
//! against the full bundled cost map (4,551 models).
//!
//! - `route_authorize/*`: one request kind each (exact name, `provider/*`
//!   wildcard, bare name reaching `anthropic/*` through the catalog's
//!   provider index, Bedrock prefix, catch-all), then `mixed`, cycling over
//!   100 (key, model) pairs, one per key. Target: <= 150 ns.
//!   `mixed_authorize_only` and `mixed_resolve_only` split `mixed` in two.
//! - `route_authorize_patterns/{real_lengths,one_length}/N`: `mixed` again
//!   with N extra wildcard patterns both in the router and in every key.
//!   `real_lengths` patterns are cut from real model names, so their
//!   prefixes have realistic, varied lengths; `one_length` ones
//!   (`team-00042/*`) all have one. Patterns that would change the routing
//!   of the benchmark requests are skipped, so every N makes the same
//!   decisions. The lookup probes one hash per distinct prefix length, so
//!   the cost follows the number of distinct lengths (printed at setup;
//!   bounded by the longest name), not N.
//!
//! Run: `cargo bench --bench routing -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use postmortem::gateway::catalog::{parse_catalog, Catalog, ValidationLimits, BUNDLED_COST_MAP};
use postmortem::gateway::clock::SystemClock;
use postmortem::gateway::config::{Config, LitellmParams, ModelDeployment};
use postmortem::gateway::keys::{KeyRecord, KeySpec, KeyStore};
use postmortem::gateway::routing::ModelRouter;

const KEYS: usize = 100;

/// The benchmark requests, one per routing path.
const EXACT: &str = "gpt-4o";
const PROVIDER_WILDCARD: &str = "anthropic/claude-sonnet-4-5";
const BARE_VIA_CATALOG: &str = "claude-sonnet-4-6";
const BEDROCK: &str = "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0";
const CATCH_ALL: &str = "vertex_ai/gemini-2.5-pro";
const REQUESTS: [&str; 5] = [EXACT, PROVIDER_WILDCARD, BARE_VIA_CATALOG, BEDROCK, CATCH_ALL];

fn catalog() -> Catalog {
    let limits = ValidationLimits::default();
    let catalog = parse_catalog(BUNDLED_COST_MAP, "bundled", None, &limits, SystemTime::UNIX_EPOCH)
        .expect("the bundled cost map validates");
    assert_eq!(catalog.len(), 4_551, "the bench is sized for the full bundled map");
    catalog
}

fn deployment(model_name: &str, model: &str) -> ModelDeployment {
    ModelDeployment {
        model_name: model_name.to_string(),
        litellm_params: LitellmParams {
            model: model.to_string(),
            api_base: Some("http://127.0.0.1:9/v1".into()),
            ..LitellmParams::default()
        },
        ..ModelDeployment::default()
    }
}

/// A production-shaped router: exact names (two of them load-balanced over
/// two deployments), provider wildcards and a catch-all, plus `extra`
/// wildcard patterns.
fn router(extra: &[String]) -> ModelRouter {
    let mut list = vec![
        deployment("gpt-4o", "openai/gpt-4o"),
        deployment("gpt-4o", "azure/gpt-4o"),
        deployment("gpt-4o-mini", "openai/gpt-4o-mini"),
        deployment("gpt-4.1", "openai/gpt-4.1"),
        deployment("o3", "openai/o3"),
        deployment("claude-sonnet-4-5", "anthropic/claude-sonnet-4-5"),
        deployment("claude-sonnet-4-5", "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        deployment("claude-opus-4-1", "anthropic/claude-opus-4-1"),
        deployment("claude-haiku-4-5", "vertex_ai/claude-haiku-4-5"),
        deployment("text-embedding-3-small", "openai/text-embedding-3-small"),
        deployment("anthropic/*", "anthropic/*"),
        deployment("bedrock/*", "bedrock/*"),
        deployment("openai/*", "openai/*"),
        deployment("azure_ai/*", "azure_ai/*"),
        deployment("*", "*"),
    ];
    list.extend(extra.iter().map(|p| deployment(p, "hosted_vllm/*")));
    let config = Config { model_list: list, ..Config::default() };
    ModelRouter::from_config(&config).expect("the bench router config is valid")
}

/// 100 keys in four shapes LiteLLM deployments commonly hand out, each
/// also holding `extra` patterns.
fn keys(extra: &[String]) -> Vec<Arc<KeyRecord>> {
    let store = KeyStore::new(SystemClock::shared());
    (0..KEYS)
        .map(|i| {
            let mut models: Vec<String> = match i % 4 {
                0 => vec!["anthropic/*".into(), "gpt-4o-mini".into()],
                1 => vec!["bedrock/*".into(), "bedrock/us.*".into()],
                2 => vec!["gpt-4o".into(), "gpt-4o-mini".into(), "claude-sonnet-4-5".into(), "o3".into()],
                _ => vec!["*".into()],
            };
            models.extend_from_slice(extra);
            let secret = format!("sk-bench-{i:04}-0123456789abcdef");
            store.insert_from_config(&secret, KeySpec { models, ..KeySpec::default() }).expect("valid key spec");
            store.authenticate(&secret).expect("the key just inserted authenticates")
        })
        .collect()
}

/// Pairs every key with a request it is allowed to make, cycling through
/// the request kinds so the mix covers every routing path.
fn pairs(keys: &[Arc<KeyRecord>], catalog: &Catalog) -> Vec<(Arc<KeyRecord>, &'static str)> {
    let mut next = 0;
    keys.iter()
        .map(|k| {
            let model = (0..REQUESTS.len())
                .map(|j| REQUESTS[(next + j) % REQUESTS.len()])
                .find(|m| k.access().allows(m, catalog))
                .expect("every key is allowed at least one request");
            next += 1;
            (k.clone(), model)
        })
        .collect()
}

/// The proxy's work for one request (see `proxy::admit::admit`).
#[inline]
fn route_and_authorize(router: &ModelRouter, catalog: &Catalog, key: &KeyRecord, model: &str) -> usize {
    let allowed = key.access().allows(model, catalog);
    let routes = router.resolve(model, catalog);
    usize::from(allowed) + routes.len()
}

/// `n` wildcard patterns cut from real model names at a `-`, `.` or `/`
/// boundary, skipping any that would match a benchmark request.
fn generated_patterns(catalog: &Catalog, n: usize) -> Vec<String> {
    let mut out = BTreeSet::new();
    for name in catalog.names() {
        if out.len() == n {
            break;
        }
        // Cut after the last separator but one: `gpt-4o-mini-2024` -> `gpt-4o-mini-`.
        let cuts: Vec<usize> = name.match_indices(['-', '.', '/']).map(|(i, _)| i + 1).collect();
        let Some(&cut) = cuts.iter().rev().nth(1).or(cuts.first()) else { continue };
        let prefix = &name[..cut];
        if prefix.contains('*') || REQUESTS.iter().any(|r| r.starts_with(prefix)) {
            continue;
        }
        out.insert(format!("{prefix}*"));
    }
    // Not enough distinct cuts: number the rest (same shapes, new text).
    let mut i = 0;
    while out.len() < n {
        out.insert(format!("team-{i}/model-*"));
        i += 1;
    }
    out.into_iter().collect()
}

/// Builds `n` extra wildcard patterns.
type PatternMaker = fn(&Catalog, usize) -> Vec<String>;

/// `n` patterns whose prefixes all have one length (`team-00042/*`): the
/// same count as [`generated_patterns`] without the spread of lengths.
fn one_length_patterns(_: &Catalog, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("team-{i:05}/*")).collect()
}

fn route_authorize(c: &mut Criterion) {
    let catalog = catalog();
    let router = router(&[]);
    let keys = keys(&[]);
    let pairs = pairs(&keys, &catalog);
    for (k, m) in &pairs {
        assert!(route_and_authorize(&router, &catalog, k, m) >= 2, "{m} must route and be allowed");
    }

    let mut group = c.benchmark_group("route_authorize");
    let single = [
        ("exact", EXACT),
        ("provider_wildcard", PROVIDER_WILDCARD),
        ("bare_via_catalog", BARE_VIA_CATALOG),
        ("bedrock_prefix", BEDROCK),
        ("catch_all", CATCH_ALL),
    ];
    for (name, model) in single {
        let (key, _) = pairs.iter().find(|(_, m)| *m == model).expect("some key makes this request");
        group.bench_function(name, |b| {
            b.iter(|| route_and_authorize(&router, &catalog, key, black_box(model)));
        });
    }
    group.bench_function("mixed", |b| {
        let mut i = 0;
        b.iter(|| {
            let (key, model) = &pairs[i];
            i = (i + 1) % pairs.len();
            route_and_authorize(&router, &catalog, key, black_box(model))
        });
    });
    // The two halves of `mixed`, to see where the time goes.
    group.bench_function("mixed_authorize_only", |b| {
        let mut i = 0;
        b.iter(|| {
            let (key, model) = &pairs[i];
            i = (i + 1) % pairs.len();
            key.access().allows(black_box(model), &catalog)
        });
    });
    group.bench_function("mixed_resolve_only", |b| {
        let mut i = 0;
        b.iter(|| {
            let (_, model) = &pairs[i];
            i = (i + 1) % pairs.len();
            router.resolve(black_box(model), &catalog)
        });
    });
    group.finish();
}

fn route_authorize_patterns(c: &mut Criterion) {
    let catalog = catalog();
    let mut group = c.benchmark_group("route_authorize_patterns");
    let shapes: [(&str, PatternMaker); 2] = [("real_lengths", generated_patterns), ("one_length", one_length_patterns)];
    for ((shape, make), n) in shapes.into_iter().flat_map(|s| [10, 1_000, 10_000].map(|n| (s, n))) {
        let extra = make(&catalog, n);
        let lengths: BTreeSet<usize> = extra.iter().map(|p| p.len() - 1).collect();
        eprintln!("{shape}/{n}: {} distinct prefix lengths", lengths.len());
        let router = router(&extra);
        let keys = keys(&extra);
        let pairs = pairs(&keys, &catalog);
        group.bench_with_input(BenchmarkId::new(shape, n), &pairs, |b, pairs| {
            let mut i = 0;
            b.iter(|| {
                let (key, model) = &pairs[i];
                i = (i + 1) % pairs.len();
                route_and_authorize(&router, &catalog, key, black_box(model))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, route_authorize, route_authorize_patterns);
criterion_main!(benches);
