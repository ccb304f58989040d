//! One request end to end through the gateway, in process: the real axum
//! app served by `server::serve` on 127.0.0.1:0, a reqwest client with
//! TCP_NODELAY and keep-alive, and a fast local upstream
//! (`postmortem::bench::upstream`, the one `postmortem bench` uses)
//! answering a fixed chat completion.
//!
//! Both benches are in one group and send the same body: `direct` to the
//! upstream, `gateway` through the gateway (virtual-key auth, access check,
//! routing, parameter mapping, the upstream call, cost lookup, re-encoding).
//! Requests go one at a time, so the time is latency; the ratio and the
//! added time per request are printed at the end. Concurrency is for
//! `scripts/loadtest.sh`.
//!
//! Everything shares one 2-worker runtime (the client runs on the bench
//! thread), like a small gateway box that also runs its client.
//!
//! Run: `cargo bench --bench end_to_end -- --warm-up-time 1 --measurement-time 3`

use std::cell::Cell;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use postmortem::gateway::{Config, GatewayBuilder};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use tokio::net::TcpListener;

const VIRTUAL_KEY: &str = "sk-bench-virtual-key-0001";
const UPSTREAM_KEY: &str = "bench-upstream-key";

/// A realistic small chat request.
const BODY: &str = r#"{"model":"gpt-4o","messages":[{"role":"system","content":"You are a concise assistant for a CI dashboard."},{"role":"user","content":"Summarize the last build: 214 tests, 0 failures, 3 skipped, 41 s."}],"temperature":0.2,"max_tokens":256}"#;

struct Target {
    url: String,
    auth: String,
}

/// Starts the upstream and the gateway; returns (direct, through gateway).
async fn start() -> (Target, Target) {
    let up = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let up_addr = up.local_addr().expect("upstream address");
    tokio::spawn(postmortem::bench::upstream::serve(up, postmortem::bench::upstream::Upstream::default()));

    let yaml = format!(
        r#"model_list:
  - model_name: gpt-4o
    litellm_params: {{model: openai/gpt-4o, api_base: "http://{up_addr}/v1", api_key: {UPSTREAM_KEY}}}
general_settings: {{master_key: bench-master-key}}
keys:
  - key: {VIRTUAL_KEY}
    models: ["openai/*", "gpt-4o"]
"#
    );
    let config = Config::parse(&yaml, "bench.yaml").expect("bench config parses").config;
    let gw = GatewayBuilder::new(config).build().await.expect("gateway builds");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gateway");
    let gw_addr = listener.local_addr().expect("gateway address");
    tokio::spawn(postmortem::gateway::server::serve(gw, listener));

    (
        Target { url: format!("http://{up_addr}/v1/chat/completions"), auth: format!("Bearer {UPSTREAM_KEY}") },
        Target { url: format!("http://{gw_addr}/v1/chat/completions"), auth: format!("Bearer {VIRTUAL_KEY}") },
    )
}

/// Sends one request and reads the whole answer; panics on a non-2xx so a
/// broken setup cannot pass for a fast one.
async fn send(client: &reqwest::Client, target: &Target, body: &Bytes) -> reqwest::header::HeaderMap {
    let resp = client
        .post(&target.url)
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, &target.auth)
        .body(body.clone())
        .send()
        .await
        .expect("request sent");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body read");
    assert!(status.is_success(), "{} answered {status}: {}", target.url, String::from_utf8_lossy(&bytes));
    headers
}

fn end_to_end(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (direct, gateway) = rt.block_on(start());
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(300))
        .build()
        .expect("client builds");
    let body = Bytes::from_static(BODY.as_bytes());
    let headers = rt.block_on(send(&client, &gateway, &body));
    assert!(headers.contains_key("x-litellm-response-cost"), "the gateway priced the call: {headers:?}");

    let mut group = c.benchmark_group("end_to_end");
    let mut totals = Vec::new();
    for (name, target) in [("direct", &direct), ("gateway", &gateway)] {
        let spent = Cell::new((Duration::ZERO, 0u64));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let elapsed = rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        send(&client, target, &body).await;
                    }
                    start.elapsed()
                });
                let (t, n) = spent.get();
                spent.set((t + elapsed, n + iters));
                elapsed
            })
        });
        let (t, n) = spent.get();
        totals.push(t.as_secs_f64() / n.max(1) as f64);
    }
    group.finish();
    // Means over every iteration criterion ran (warm-up included), a rough
    // summary next to criterion's own estimates.
    let (d, g) = (totals[0], totals[1]);
    eprintln!(
        "end_to_end: direct {:.1} us, gateway {:.1} us, ratio {:.2}x, added {:.1} us per request",
        d * 1e6,
        g * 1e6,
        g / d,
        (g - d) * 1e6
    );
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
