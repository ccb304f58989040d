//! The per-request work of a virtual key's limits and spend, local and
//! through a real Redis (`postmortem::services::Redis`, a throwaway
//! `redis-server` on 127.0.0.1): what `--redis` adds to a request in
//! `postmortem bench`, taken apart.
//!
//! - `rate_check/local`: the key's own rpm/tpm window (`KeyRecord::check_and_record_request`);
//! - `rate_check/redis`: the budget against the fleet's spend and the shared window, one `EVAL`
//!   round trip (`SharedLimits::admit`);
//! - `spend/local`: adding a call's cost to the key (`KeyRecord::add_spend`);
//! - `spend/redis`: charging a call and writing it to the shared total at once
//!   (`SharedLimits::charge` + `write_spend`: one batch per call, the case
//!   with no batching; under load the writer coalesces a key's calls);
//! - `spend/refresh`: the budget check's read of the shared total (`refresh_spend`, one `GET`);
//! - `spend_log/sqlite_100_rows`: queuing 100 spend rows and writing them in one
//!   transaction to the embedded SQLite store (`Gateway::record_spend` + `flush_spend`).
//!
//! Without `redis-server` on the PATH the Redis benches are skipped, saying so.
//!
//! Run: `cargo bench --bench shared_state -- --warm-up-time 1 --measurement-time 3`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use postmortem::gateway::store::SpendRow;
use postmortem::gateway::{Config, Gateway, GatewayBuilder};

const KEY: &str = "sk-bench-shared-state-0001";

async fn gateway(redis_url: Option<&str>) -> Arc<Gateway> {
    let mut yaml = format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: 'http://127.0.0.1:9/v1', api_key: k}}\n\
         keys:\n  - {{key: {KEY}, models: [gpt-4o], rpm_limit: 1000000000, tpm_limit: 1000000000000, max_budget: 1000000000}}\n"
    );
    if let Some(url) = redis_url {
        yaml.push_str(&format!("router_settings: {{redis_url: '{url}'}}\n"));
    }
    let config = Config::parse(&yaml, "bench.yaml").expect("bench config parses").config;
    GatewayBuilder::new(config).build().await.expect("gateway builds")
}

fn shared_state(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let local = rt.block_on(gateway(None));
    let key = local.keys.authenticate(KEY).expect("the bench key");

    let mut group = c.benchmark_group("shared_state");
    group.bench_function("rate_check/local", |b| {
        b.iter(|| key.check_and_record_request(local.clock.now()).expect("under the limit"))
    });
    group.bench_function("spend/local", |b| b.iter(|| key.add_spend(0.000_045)));
    group.bench_function("spend_log/sqlite_100_rows", |b| {
        b.to_async(&rt).iter(|| async {
            for _ in 0..100 {
                local.record_spend(SpendRow {
                    at: 1,
                    key_hash: Some(key.key_hash()),
                    model: "gpt-4o".into(),
                    upstream_model: "openai/gpt-4o".into(),
                    cost_usd: 0.000_045,
                    input_tokens: 10,
                    output_tokens: 2,
                });
            }
            local.flush_spend().await.expect("spend written");
        })
    });

    match postmortem::services::Redis::start() {
        Err(e) => eprintln!("shared_state: the Redis benches are skipped: {e:#}"),
        Ok(redis) => {
            let shared_gw = rt.block_on(gateway(Some(&redis.url())));
            let shared = shared_gw.shared_limits.clone().expect("Redis configured");
            let key = shared_gw.keys.authenticate(KEY).expect("the bench key");
            // The background probe marks Redis reachable within its interval.
            rt.block_on(async {
                let started = std::time::Instant::now();
                while !shared.is_connected() {
                    assert!(started.elapsed() < std::time::Duration::from_secs(10), "Redis never became reachable");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            });
            group.bench_function("rate_check/redis", |b| {
                b.to_async(&rt).iter(|| async {
                    let share = postmortem::gateway::shared_limits::Share { limits: true, budget: true };
                    let answer = shared.admit(&key, share).await;
                    assert!(matches!(answer, Some(Ok(()))), "Redis answered and the key is under its limit");
                })
            });
            group.bench_function("spend/redis", |b| {
                b.to_async(&rt).iter(|| async {
                    shared.charge(&key, 0.000_045);
                    shared.write_spend().await;
                })
            });
            group.bench_function("spend/refresh", |b| b.to_async(&rt).iter(|| shared.refresh_spend(&key)));
            assert_eq!(shared.unapplied_spend(), 0.0, "every charge reached Redis");
            drop(redis);
        }
    }
    group.finish();
}

criterion_group!(benches, shared_state);
criterion_main!(benches);
