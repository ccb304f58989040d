//! Non-streaming replay throughput, in interactions per second.
//!
//! One cassette of `N` distinct OpenAI chat interactions is replayed end to
//! end: mock provider start and stub mounting, the in-process gateway build,
//! every client call through the gateway to the mock, the journal matching
//! and both comparisons. Criterion reports the throughput as elements/s
//! (one element = one interaction). Target: at least 5,000/s.
//!
//! - `sequential`: one client request in flight (recording order), the default;
//! - `concurrency_8`, `concurrency_32`: that many in flight (`--concurrency N`).
//!
//! Latest numbers and their history: BENCHMARKS.md ("Third run"). In short:
//! 4.0k/s one at a time (bound by the loopback round trip, ~250 us per
//! interaction), 9-10k/s with 8 or 32 in flight, on two shared cores.
//!
//! Run: `cargo bench --bench replay -- --warm-up-time 2 --measurement-time 8`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use postmortem::replay::cassette::{Body, Cassette, Headers, Interaction, Request, Response};
use postmortem::replay::{replay_cassette, ReplayOptions};
use serde_json::json;

const N: usize = 1000;

fn cassette() -> Cassette {
    let interactions = (0..N)
        .map(|i| Interaction {
            provider: None,
            request: Request {
                method: "POST".into(),
                url: "https://api.openai.com/v1/chat/completions".into(),
                headers: Headers::new(),
                body: Body::json(json!({
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": format!("question number {i}")}],
                    "temperature": 0.2,
                })),
            },
            response: Response {
                status: 200,
                headers: Headers::new(),
                body: Body::json(json!({
                    "id": format!("chatcmpl-{i}"),
                    "object": "chat.completion",
                    "created": 1_700_000_000 + i,
                    "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": format!("answer number {i}")}}],
                    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
                })),
            },
            elapsed_ms: None,
            client: None,
        })
        .collect();
    Cassette::new("bench", interactions)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let cassette = cassette();
    let mut group = c.benchmark_group("replay_non_streaming");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    for (name, concurrency) in [("sequential", 1), ("concurrency_8", 8), ("concurrency_32", 32)] {
        let opts = ReplayOptions { concurrency, ..ReplayOptions::default() };
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let report = replay_cassette(&cassette, "bench", &opts).await;
                assert!(!report.failed(), "{}", report.render());
                report
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
