//! Loading the 3 MB cost map: parse + validate + index
//! (`catalog::parse_catalog`), as at startup and on every reload. Target:
//! <= 40 ms.
//!
//! `json_only` is serde_json parsing the same bytes into a `Value` and
//! nothing else, to show how much of the load is the JSON parser and how
//! much is validation, typed entries and indexes. `with_previous` adds the
//! shrink check against the map in use, as a reload does.
//!
//! Run: `cargo bench --bench cost_map -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use postmortem::gateway::catalog::{parse_catalog, ValidationLimits, BUNDLED_COST_MAP};

fn cost_map(c: &mut Criterion) {
    let limits = ValidationLimits::default();
    let now = SystemTime::UNIX_EPOCH;
    let previous = parse_catalog(BUNDLED_COST_MAP, "bundled", None, &limits, now).expect("the bundled map validates");

    let mut group = c.benchmark_group("cost_map");
    // Tens of milliseconds per iteration: 20 samples keep a run short
    // without widening the interval much.
    group.sample_size(20);
    group.throughput(Throughput::Bytes(BUNDLED_COST_MAP.len() as u64));
    group.bench_function("load_validate_index", |b| {
        b.iter(|| parse_catalog(black_box(BUNDLED_COST_MAP), "bundled", None, &limits, now).map(|c| c.len()))
    });
    group.bench_function("with_previous", |b| {
        b.iter(|| parse_catalog(black_box(BUNDLED_COST_MAP), "bundled", Some(&previous), &limits, now).map(|c| c.len()))
    });
    group.bench_function("json_only", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(BUNDLED_COST_MAP)).map(|v| v.is_object()))
    });
    group.finish();
}

criterion_group!(benches, cost_map);
criterion_main!(benches);
