//! Keys and spend survive restarts: through the real router on each storage
//! backend (the embedded SQLite file, and a real Postgres server the test
//! starts: [`backends`]), and through the real `postmortem serve` process
//! stopped with SIGTERM (graceful: no spend lost) and with SIGKILL (keys
//! kept: they are written before `/key/generate` answers). Two gateways on
//! one Postgres URL share keys and spend (a fleet).

use axum::body::Body;
use http_body_util::BodyExt;
use postmortem::gateway::store::{DatabaseLocation, PostgresUrl, SpendQueue, SpendRow, Store, StoreError, StoredKey};
use postmortem::gateway::{Config, Gateway, GatewayBuilder};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

const MASTER: &str = "test-master-key-persist";

fn chat_ok() -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})
}

async fn upstream() -> MockServer {
    let up = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_ok()))
        .mount(&up)
        .await;
    up
}

#[path = "support/services.rs"]
mod services;

/// A database a test runs on: a SQLite file in a temporary directory, or a
/// fresh Postgres server on 127.0.0.1 (stopped when this is dropped).
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(services::Postgres),
}

impl Db {
    fn name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// The `general_settings` entry that points a gateway here.
    fn setting(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!("database_path: '{}'", dir.path().join("state.db").display()),
            Db::Postgres(pg) => format!("database_url: '{}'", pg.url()),
        }
    }

    fn location(&self) -> DatabaseLocation {
        match self {
            Db::Sqlite(dir) => DatabaseLocation::File(dir.path().join("state.db")),
            Db::Postgres(pg) => DatabaseLocation::Postgres(PostgresUrl::parse(&pg.url()).unwrap()),
        }
    }

    /// Runs SQL behind the store's back (to break or age the schema).
    async fn execute(&self, sql: &str) {
        match self {
            Db::Sqlite(dir) => {
                rusqlite::Connection::open(dir.path().join("state.db")).unwrap().execute_batch(sql).unwrap()
            }
            Db::Postgres(pg) => {
                let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                client.batch_execute(sql).await.unwrap();
            }
        }
    }
}

/// Every storage backend, each fresh: the storage tests run on all of them.
fn backends() -> Vec<Db> {
    vec![Db::Sqlite(tempfile::tempdir().unwrap()), Db::Postgres(services::postgres())]
}

fn config_yaml(up: &MockServer, db: &Db) -> String {
    format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: k}}\n\
         general_settings: {{master_key: {MASTER}, {}}}\n",
        up.uri(),
        db.setting()
    )
}

/// What a graceful stop does before the process ends: the queued spend is
/// written (a dropped gateway on Postgres can only hand it to the runtime).
async fn stop(gw: Arc<Gateway>) {
    gw.flush_spend().await.unwrap();
    drop(gw);
}

async fn gateway(yaml: &str) -> Arc<Gateway> {
    let cfg = Config::parse(yaml, "test.yaml").expect("config parses").config;
    GatewayBuilder::new(cfg).build().await.expect("gateway builds")
}

#[path = "support/router.rs"]
mod router;
use router::call;

fn chat() -> Option<Value> {
    Some(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
}

/// One priced call of `chat_ok()` with gpt-4o's price in the bundled map.
const ONE_CALL_USD: f64 = 4.5e-5;

#[tokio::test]
async fn a_generated_key_and_its_spend_survive_a_rebuild_on_the_same_database() {
    for db in backends() {
        a_generated_key_and_its_spend_survive_a_rebuild(&db).await;
    }
}

async fn a_generated_key_and_its_spend_survive_a_rebuild(db: &Db) {
    let up = upstream().await;
    let yaml = config_yaml(&up, db);

    let gw = gateway(&yaml).await;
    let (s, gen) =
        call(&gw, "POST", "/key/generate", MASTER, Some(json!({"models": ["gpt-4o"], "max_budget": 1.0}))).await;
    assert_eq!(s, 200, "{gen}");
    let key = gen["key"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let (s, b) = call(&gw, "POST", "/v1/chat/completions", &key, chat()).await;
        assert_eq!(s, 200, "{b}");
    }
    // The log answers with what is queued, too.
    let (s, log) = call(&gw, "GET", &format!("/spend/logs?api_key={key}"), MASTER, None).await;
    assert_eq!(s, 200, "{log}");
    assert_eq!(log["data"].as_array().map(Vec::len), Some(2), "{log}");
    assert!(!log.to_string().contains(&key), "the spend log never shows a secret: {log}");
    gw.flush_spend().await.unwrap();
    drop(gw);

    let gw = gateway(&yaml).await;
    let (s, info) = call(&gw, "GET", "/key/info", &key, None).await;
    assert_eq!(s, 200, "{}: the key works after a restart: {info}", db.name());
    let spend = info["info"]["spend"].as_f64().unwrap();
    assert!((spend - 2.0 * ONE_CALL_USD).abs() < 1e-12, "spend survives: {info}");
    assert_eq!(info["info"]["models"], json!(["gpt-4o"]), "its limits survive: {info}");

    // Deleted is deleted for good.
    let (s, _) = call(&gw, "POST", "/key/delete", MASTER, Some(json!({"keys": [key.clone()]}))).await;
    assert_eq!(s, 200);
    stop(gw).await;
    let gw = gateway(&yaml).await;
    let (s, _) = call(&gw, "GET", "/key/info", &key, None).await;
    assert_eq!(s, 401, "{}: a deleted key stays deleted after a restart", db.name());
}

#[tokio::test]
async fn a_config_key_keeps_its_spend_and_the_budget_holds_across_restarts() {
    for db in backends() {
        a_config_key_keeps_its_spend(&db).await;
    }
}

async fn a_config_key_keeps_its_spend(db: &Db) {
    let up = upstream().await;
    let yaml = format!(
        "{}keys:\n  - {{key: sk-config-key-persist-0001, max_budget: {}}}\n",
        config_yaml(&up, db),
        1.5 * ONE_CALL_USD
    );
    let gw = gateway(&yaml).await;
    for _ in 0..2 {
        let (s, b) = call(&gw, "POST", "/v1/chat/completions", "sk-config-key-persist-0001", chat()).await;
        assert_eq!(s, 200, "{b}");
    }
    gw.flush_spend().await.unwrap();
    drop(gw);
    let gw = gateway(&yaml).await;
    let (s, b) = call(&gw, "POST", "/v1/chat/completions", "sk-config-key-persist-0001", chat()).await;
    assert!((400..500).contains(&s), "{}: the budget spent before the restart still counts: {s} {b}", db.name());
}

#[tokio::test]
async fn without_a_database_path_an_in_process_gateway_keeps_nothing() {
    let up = upstream().await;
    let yaml = format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: k}}\n\
         general_settings: {{master_key: {MASTER}}}\n",
        up.uri()
    );
    let gw = gateway(&yaml).await;
    let (_, gen) = call(&gw, "POST", "/key/generate", MASTER, Some(json!({}))).await;
    let key = gen["key"].as_str().unwrap().to_string();
    drop(gw);
    let gw = gateway(&yaml).await;
    let (s, _) = call(&gw, "GET", "/key/info", &key, None).await;
    assert_eq!(s, 401, ":memory: is the in-process default");
}

#[cfg(unix)]
#[path = "support/served.rs"]
mod support;

#[cfg(unix)]
mod served {
    use super::support::serve_file as serve;
    use super::*;

    fn config_file(dir: &Path, up: &MockServer) -> std::path::PathBuf {
        let yaml = format!(
            "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: k}}\n\
             general_settings: {{master_key: {MASTER}, proxy_batch_write_at: 3600}}\n",
            up.uri()
        );
        let path = dir.join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    }

    async fn post(client: &reqwest::Client, url: &str, bearer: &str, body: Value) -> (u16, Value) {
        let r = client.post(url).bearer_auth(bearer).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn info(client: &reqwest::Client, base: &str, key: &str) -> (u16, Value) {
        let r = client.get(format!("{base}/key/info")).bearer_auth(key).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_survives_kill_9_and_spend_survives_sigterm() {
        let up = upstream().await;
        let dir = tempfile::tempdir().unwrap();
        let config = config_file(dir.path(), &up);
        let client = reqwest::Client::new();

        // kill -9 right after the key is made: the key is already on disk.
        let g = serve(&config);
        let (s, gen) = post(&client, &format!("{}/key/generate", g.url), MASTER, json!({"models": ["gpt-4o"]})).await;
        assert_eq!(s, 200, "{gen}");
        let key = gen["key"].as_str().unwrap().to_string();
        g.stop("-KILL");
        assert!(dir.path().join("postmortem.db").exists(), "the default database sits beside the config");

        // SIGTERM after two priced calls, with a flush interval far longer
        // than the test: only the graceful shutdown can have written them.
        let g = serve(&config);
        let (s, i) = info(&client, &g.url, &key).await;
        assert_eq!(s, 200, "the key made before kill -9 works: {i}");
        for _ in 0..2 {
            let (s, b) = post(&client, &format!("{}/v1/chat/completions", g.url), &key, chat().unwrap()).await;
            assert_eq!(s, 200, "{b}");
        }
        assert!(g.stop("-TERM").success(), "a graceful stop exits 0");

        let g = serve(&config);
        let (s, i) = info(&client, &g.url, &key).await;
        assert_eq!(s, 200, "{i}");
        let spend = i["info"]["spend"].as_f64().unwrap();
        assert!((spend - 2.0 * ONE_CALL_USD).abs() < 1e-12, "no spend lost on SIGTERM: {i}");
    }

    /// The real process on Postgres: spend queued with a flush interval far
    /// longer than the test is written by the graceful stop, and another
    /// instance on the same URL counts it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_served_gateway_on_postgres_writes_its_spend_on_sigterm_for_the_fleet() {
        let up = upstream().await;
        let pg = services::postgres();
        let config = format!(
            "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: k}}\n\
             general_settings: {{master_key: {MASTER}, proxy_batch_write_at: 3600, database_url: '{}'}}\n",
            up.uri(),
            pg.url()
        );
        let client = reqwest::Client::new();
        let g = super::support::serve(&config);
        let (s, gen) = post(&client, &format!("{}/key/generate", g.url), MASTER, json!({})).await;
        assert_eq!(s, 200, "{gen}");
        let key = gen["key"].as_str().unwrap().to_string();
        for _ in 0..2 {
            let (s, b) = post(&client, &format!("{}/v1/chat/completions", g.url), &key, chat().unwrap()).await;
            assert_eq!(s, 200, "{b}");
        }
        assert!(g.stop("-TERM").success(), "a graceful stop exits 0");

        let other = gateway(&config).await;
        let (s, i) = call(&other, "GET", "/key/info", &key, None).await;
        assert_eq!(s, 200, "{i}");
        let spend = i["info"]["spend"].as_f64().unwrap();
        assert!((spend - 2.0 * ONE_CALL_USD).abs() < 1e-12, "no spend lost on SIGTERM, seen by another instance: {i}");
    }
}

/// Streams are charged from the usage the provider streamed (a streamed call
/// used to cost nothing, so a budget could be streamed past): the OpenAI
/// usage chunk, Anthropic's `message_start` + `message_delta` counts, on
/// `/v1/chat/completions` and on `/v1/messages`. Without usage, nothing.
#[tokio::test]
async fn streamed_calls_are_charged_from_the_usage_the_provider_streamed() {
    let openai_sse = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n\
                      data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2,\"total_tokens\":12}}\n\n\
                      data: [DONE]\n\n";
    let openai_no_usage = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    let anthropic_sse = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n\
                         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
                         event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n\
                         event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
                         event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n\
                         event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let up = MockServer::start().await;
    for (p, body) in [
        ("/openai/v1/chat/completions", openai_sse),
        ("/bare/v1/chat/completions", openai_no_usage),
        ("/v1/messages", anthropic_sse),
    ] {
        Mock::given(path(p))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "text/event-stream")
                    .set_body_raw(body, "text/event-stream"),
            )
            .mount(&up)
            .await;
    }
    let yaml = format!(
        "model_list:\n\
         \x20 - {{model_name: gpt-4o, litellm_params: {{model: openai/gpt-4o, api_base: '{u}/openai/v1', api_key: k}}}}\n\
         \x20 - {{model_name: quiet, litellm_params: {{model: openai/gpt-4o, api_base: '{u}/bare/v1', api_key: k}}}}\n\
         \x20 - {{model_name: claude, litellm_params: {{model: anthropic/claude-sonnet-4-5, api_base: '{u}', api_key: k}}}}\n\
         general_settings: {{master_key: {MASTER}}}\n",
        u = up.uri()
    );
    let gw = gateway(&yaml).await;
    let chat = |m: &str| json!({"model": m, "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]});
    let messages =
        json!({"model": "claude", "stream": true, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    for (uri, body, charged) in [
        ("/v1/chat/completions", chat("gpt-4o"), true),
        ("/v1/chat/completions", chat("quiet"), false),
        ("/v1/chat/completions", chat("claude"), true),
        ("/v1/messages", messages, true),
    ] {
        let (_, gen) = call(&gw, "POST", "/key/generate", MASTER, Some(json!({}))).await;
        let key = gen["key"].as_str().unwrap().to_string();
        let req = http::Request::post(uri)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {key}"))
            .header("anthropic-version", "2023-06-01")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = postmortem::gateway::server::app(gw.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{uri} {body}");
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&text).contains("hi"), "{uri}: the stream went through");
        let (_, info) = call(&gw, "GET", "/key/info", &key, None).await;
        let spend = info["info"]["spend"].as_f64().unwrap();
        assert_eq!(spend > 0.0, charged, "{uri} {body}: spend {spend}");
    }
}

/// LiteLLM's key admin, durable: `/key/generate` with LiteLLM's field names
/// and a chosen secret, `/key/update`, `/key/block`/`unblock`,
/// `/key/regenerate` (the old secret stops working, the spend stays), a
/// `duration` that expires on the gateway's clock, all after a restart too.
#[tokio::test]
async fn key_admin_with_litellm_field_names_survives_restarts() {
    for db in backends() {
        key_admin_survives_restarts(&db).await;
    }
}

async fn key_admin_survives_restarts(db: &Db) {
    use postmortem::gateway::clock::ManualClock;
    let up = upstream().await;
    let yaml = config_yaml(&up, db);
    let clock = ManualClock::shared();
    let build = |clock: std::sync::Arc<ManualClock>| {
        let cfg = Config::parse(&yaml, "test.yaml").unwrap().config;
        GatewayBuilder::new(cfg).clock(clock).build()
    };
    let gw = build(clock.clone()).await.unwrap();
    let (s, gen) = call(
        &gw,
        "POST",
        "/key/generate",
        MASTER,
        Some(json!({"key": "sk-chosen-secret-0001", "models": ["gpt-4o"], "rpm_limit": 50, "tpm_limit": 9000,
                    "key_alias": "ci-bot", "user_id": "u-7", "team_id": "t-2", "metadata": {"env": "ci"}, "duration": "1h"})),
    )
    .await;
    assert_eq!(s, 200, "{gen}");
    assert_eq!(gen["key"], "sk-chosen-secret-0001");
    assert_eq!(
        (gen["rpm"].clone(), gen["tpm"].clone(), gen["alias"].clone()),
        (json!(50), json!(9000), json!("ci-bot"))
    );
    assert_eq!((gen["user_id"].clone(), gen["team_id"].clone()), (json!("u-7"), json!("t-2")));
    let (s, _) = call(&gw, "POST", "/v1/chat/completions", "sk-chosen-secret-0001", chat()).await;
    assert_eq!(s, 200);

    let (s, u) = call(
        &gw,
        "POST",
        "/key/update",
        MASTER,
        Some(json!({"key": "sk-chosen-secret-0001", "models": ["other"], "rpm_limit": 5})),
    )
    .await;
    assert_eq!(s, 200, "{u}");
    let (s, _) = call(&gw, "POST", "/v1/chat/completions", "sk-chosen-secret-0001", chat()).await;
    assert_eq!(s, 403, "the updated key may no longer use gpt-4o");
    call(&gw, "POST", "/key/update", MASTER, Some(json!({"key": "sk-chosen-secret-0001", "models": ["gpt-4o"]}))).await;

    let (s, _) = call(&gw, "POST", "/key/block", MASTER, Some(json!({"key": "sk-chosen-secret-0001"}))).await;
    assert_eq!(s, 200);
    let (s, b) = call(&gw, "POST", "/v1/chat/completions", "sk-chosen-secret-0001", chat()).await;
    assert_eq!(s, 401, "blocked: {b}");
    assert!(b.to_string().contains("blocked"), "{b}");
    stop(gw).await;
    let gw = build(clock.clone()).await.unwrap();
    let (s, _) = call(&gw, "POST", "/v1/chat/completions", "sk-chosen-secret-0001", chat()).await;
    assert_eq!(s, 401, "still blocked after a restart");
    let (s, _) = call(&gw, "POST", "/key/unblock", MASTER, Some(json!({"key": "sk-chosen-secret-0001"}))).await;
    assert_eq!(s, 200);

    let (s, r) = call(&gw, "POST", "/key/sk-chosen-secret-0001/regenerate", MASTER, Some(json!({}))).await;
    assert_eq!(s, 200, "{r}");
    let new_key = r["key"].as_str().unwrap().to_string();
    let (s, _) = call(&gw, "GET", "/key/info", "sk-chosen-secret-0001", None).await;
    assert_eq!(s, 401, "the old secret stops working");
    stop(gw).await;
    let gw = build(clock.clone()).await.unwrap();
    let (s, info) = call(&gw, "GET", "/key/info", &new_key, None).await;
    assert_eq!(s, 200, "the new secret works after a restart: {info}");
    assert!((info["info"]["spend"].as_f64().unwrap() - ONE_CALL_USD).abs() < 1e-12, "the spend moved with it: {info}");
    assert_eq!(info["info"]["alias"], "ci-bot");

    clock.advance(std::time::Duration::from_secs(3601));
    let (s, e) = call(&gw, "POST", "/v1/chat/completions", &new_key, chat()).await;
    assert_eq!(s, 401, "an hour later the key has expired: {e}");

    let (s, e) = call(&gw, "POST", "/key/generate", MASTER, Some(json!({"budget_duration": "30d"}))).await;
    assert_eq!(s, 400, "said, not ignored: {e}");
    let (s, _) =
        call(&gw, "POST", "/key/update", MASTER, Some(json!({"key": "sk-nope-nope-nope", "rpm_limit": 1}))).await;
    assert_eq!(s, 404);
}

// ---------------------------------------------------------------------------
// The store itself, on every backend
// ---------------------------------------------------------------------------

fn row(key: Option<&str>, cost: f64) -> SpendRow {
    SpendRow {
        at: 1,
        key_hash: key.map(str::to_string),
        model: "m".into(),
        upstream_model: "openai/m".into(),
        cost_usd: cost,
        input_tokens: 3,
        output_tokens: 4,
    }
}

fn stored(hash: &str) -> StoredKey {
    StoredKey { hash: hash.into(), masked: "sk-...".into(), spec_json: "{}".into(), created_at: 5 }
}

#[tokio::test]
async fn the_store_keeps_keys_spend_and_the_log_on_every_backend() {
    for db in backends() {
        let name = db.name();
        {
            let s = Store::open(db.location()).await.unwrap();
            s.insert_key(&stored("aa")).await.unwrap();
            assert!(s.insert_key(&stored("aa")).await.is_err(), "{name}: a duplicate key is an error");
            s.record_spend(&[row(Some("aa"), 0.25), row(Some("aa"), 0.5), row(None, 1.0)]).await.unwrap();
        }
        // Reopened: migrations are not run twice, everything is there.
        let s = Store::open(db.location()).await.unwrap();
        assert_eq!(s.schema_version().await.unwrap(), 1, "{name}");
        assert_eq!(s.load_keys().await.unwrap(), vec![stored("aa")], "{name}");
        assert_eq!(s.find_key("aa").await.unwrap(), Some(stored("aa")), "{name}");
        assert_eq!(s.find_key("bb").await.unwrap(), None, "{name}");
        assert_eq!(s.key_spend("aa").await.unwrap(), 0.75, "{name}");
        assert_eq!(s.load_spend().await.unwrap(), vec![("aa".to_string(), 0.75)], "{name}");
        let log = s.spend_log(None, 10).await.unwrap();
        assert_eq!(log.len(), 3, "{name}");
        assert_eq!(log[0], row(None, 1.0), "{name}: newest first");
        assert_eq!(s.spend_log(Some("aa"), 10).await.unwrap().len(), 2, "{name}");
        assert_eq!(s.spend_log(Some("aa"), 1).await.unwrap().len(), 1, "{name}");

        assert!(s.update_key("aa", r#"{"rpm":5}"#).await.unwrap(), "{name}");
        assert!(!s.update_key("zz", "{}").await.unwrap(), "{name}");
        s.replace_key("aa", &stored("cc")).await.unwrap();
        assert_eq!(s.key_spend("cc").await.unwrap(), 0.75, "{name}: spend moves with a new secret");
        assert_eq!(s.find_key("aa").await.unwrap(), None, "{name}");
        assert!(s.delete_key("cc").await.unwrap(), "{name}");
        assert_eq!(s.key_spend("cc").await.unwrap(), 0.0, "{name}: deleting a key deletes its spend");
        assert!(!s.delete_key("cc").await.unwrap(), "{name}");
    }
}

#[tokio::test]
async fn a_newer_schema_is_refused_not_overwritten_on_every_backend() {
    for db in backends() {
        drop(Store::open(db.location()).await.unwrap());
        db.execute(match db {
            Db::Sqlite(_) => "PRAGMA user_version = 99",
            Db::Postgres(_) => "UPDATE postmortem_schema SET version = 99",
        })
        .await;
        let e = Store::open(db.location()).await.unwrap_err();
        assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{}: {e}", db.name());
    }
}

#[tokio::test]
async fn a_failed_flush_keeps_its_rows_and_writes_nothing_on_every_backend() {
    for db in backends() {
        let store = Store::open(db.location()).await.unwrap();
        // Break the table the flush writes to.
        db.execute("DROP TABLE spend_log").await;
        let q = SpendQueue::default();
        q.push(row(Some("a"), 1.0));
        q.push(row(Some("a"), 2.0));
        assert!(q.flush(&store).await.is_err(), "{}", db.name());
        assert_eq!(q.len(), 2, "{}", db.name());
        assert_eq!(q.pending_for("a"), 3.0, "{}", db.name());
        // Nothing half-written: the spend update rolled back with the log insert.
        assert_eq!(store.key_spend("a").await.unwrap(), 0.0, "{}", db.name());
        let kept: Vec<f64> = q.take_all().iter().map(|r| r.cost_usd).collect();
        assert_eq!(kept, [1.0, 2.0], "{}: in the order they were queued", db.name());
    }
}

// ---------------------------------------------------------------------------
// A fleet: two gateways on one Postgres
// ---------------------------------------------------------------------------

/// Two in-process gateways on the same `database_url` are two instances of a
/// fleet. A key made on one works on the other at once (looked up on a
/// miss); spend written by one is counted by the other after its sync (the
/// periodic spend writer's, every `proxy_batch_write_at` seconds), and so is
/// a deletion. The password in the URL shows nowhere.
#[tokio::test]
async fn two_gateways_on_one_postgres_share_keys_spend_and_deletions() {
    let up = upstream().await;
    let pg = services::postgres();
    let yaml = format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: k}}\n\
         general_settings: {{master_key: {MASTER}, database_url: '{}'}}\n",
        up.uri(),
        pg.url_with_password("hunter2-not-shown")
    );
    let a = gateway(&yaml).await;
    let b = gateway(&yaml).await;

    let (s, gen) = call(
        &a,
        "POST",
        "/key/generate",
        MASTER,
        Some(json!({"models": ["gpt-4o"], "max_budget": 2.5 * ONE_CALL_USD})),
    )
    .await;
    assert_eq!(s, 200, "{gen}");
    let key = gen["key"].as_str().unwrap().to_string();

    // Made on A, used on B at once.
    let (s, r) = call(&b, "POST", "/v1/chat/completions", &key, chat()).await;
    assert_eq!(s, 200, "a key made on another instance works here: {r}");
    let (s, r) = call(&a, "POST", "/v1/chat/completions", &key, chat()).await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = call(&a, "POST", "/v1/chat/completions", &key, chat()).await;
    assert_eq!(s, 200, "{r}");

    // A's spend reaches B after A writes it and B syncs.
    a.flush_spend().await.unwrap();
    b.sync_store().await.unwrap();
    let (s, info) = call(&b, "GET", "/key/info", &key, None).await;
    assert_eq!(s, 200, "{info}");
    let spend = info["info"]["spend"].as_f64().unwrap();
    assert!((spend - 3.0 * ONE_CALL_USD).abs() < 1e-12, "B counts A's two calls and its own: {info}");
    let (s, r) = call(&b, "POST", "/v1/chat/completions", &key, chat()).await;
    assert!((400..500).contains(&s), "the budget holds across the fleet: {s} {r}");
    a.sync_store().await.unwrap();
    let (s, log) = call(&a, "GET", &format!("/spend/logs?api_key={key}"), MASTER, None).await;
    assert_eq!(s, 200, "{log}");
    assert_eq!(log["data"].as_array().map(Vec::len), Some(3), "A's log has B's call too: {log}");

    // Changed on A: B takes the new spec at its sync, keeping the spend.
    let (s, u) =
        call(&a, "POST", "/key/update", MASTER, Some(json!({"key": key.clone(), "models": ["gpt-4o", "other"]}))).await;
    assert_eq!(s, 200, "{u}");
    b.sync_store().await.unwrap();
    let (_, info) = call(&b, "GET", "/key/info", &key, None).await;
    assert_eq!(info["info"]["models"], json!(["gpt-4o", "other"]), "{info}");
    assert!((info["info"]["spend"].as_f64().unwrap() - 3.0 * ONE_CALL_USD).abs() < 1e-12, "{info}");

    // Deleted on A: refused on B after B syncs.
    let (s, _) = call(&a, "POST", "/key/delete", MASTER, Some(json!({"keys": [key.clone()]}))).await;
    assert_eq!(s, 200);
    let (s, _) = call(&a, "GET", "/key/info", &key, None).await;
    assert_eq!(s, 401);
    b.sync_store().await.unwrap();
    let (s, r) = call(&b, "GET", "/key/info", &key, None).await;
    assert_eq!(s, 401, "a key deleted on another instance is refused here after a sync: {r}");

    // A key made on B and deleted through A, which never saw it.
    let (_, gen) = call(&b, "POST", "/key/generate", MASTER, Some(json!({}))).await;
    let other = gen["key"].as_str().unwrap().to_string();
    let (s, d) = call(&a, "POST", "/key/delete", MASTER, Some(json!({"keys": [other.clone()]}))).await;
    assert_eq!((s, d["deleted_keys"].as_array().map(Vec::len)), (200, Some(1)), "{d}");

    let (_, health) = call(&a, "GET", "/health", MASTER, None).await;
    assert_eq!(health["storage"]["backend"], "postgres", "{health}");
    assert_eq!(health["storage"]["shared"], true, "{health}");
    assert!(health["storage"]["location"].as_str().unwrap().contains(":***@127.0.0.1"), "{health}");
    assert!(!health.to_string().contains("hunter2"), "the password never shows: {health}");
}

/// Without the server binaries the Postgres tests fail, saying what to
/// install; they never pass having checked nothing.
#[test]
fn missing_postgres_binaries_fail_with_what_to_install() {
    let empty = tempfile::tempdir().unwrap();
    let msg = format!("{:#}", postmortem::services::postgres_bin_in(empty.path()).unwrap_err());
    assert!(msg.contains("apt-get install -y postgresql"), "{msg}");
}

/// A scenario whose service cannot start fails at setup, naming what to
/// install: it never passes having checked nothing.
#[test]
fn a_fleet_scenario_without_the_postgres_binaries_fails_saying_what_to_install() {
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postmortem"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "scenarios/fleet/shared-keys-on-postgres.yaml", "--format", "json"])
        .env("POSTMORTEM_POSTGRES_BIN", empty.path())
        .output()
        .expect("the harness runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("services.db: PostgreSQL server binaries not found"), "{stdout}");
    assert!(stdout.contains("apt-get install -y postgresql"), "{stdout}");
}

/// A scenario's `stop_service` and `start_service`: the server goes away
/// and comes back on the same port; stopping it twice, or starting it while
/// it runs, is an error, not a hang; dropped, it is gone.
#[test]
fn a_postgres_service_stops_and_starts_again_on_its_port() {
    let mut pg = services::postgres();
    let port = pg.port;
    let answers = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(answers());
    assert!(pg.start_again().unwrap_err().to_string().contains("already running"));
    pg.stop().unwrap();
    assert!(!answers(), "stopped");
    assert!(pg.stop().unwrap_err().to_string().contains("not running"));
    pg.start_again().unwrap();
    assert_eq!(pg.port, port);
    assert!(answers(), "started again on its port");
    drop(pg);
    assert!(!answers(), "stopped when dropped");
}

#[tokio::test]
async fn a_postgres_that_does_not_answer_fails_the_start_with_a_clear_error() {
    let port = services::free_port();
    let yaml = format!(
        "model_list: []\ngeneral_settings: {{master_key: {MASTER}, database_url: 'postgres://u:hunter2@127.0.0.1:{port}/db?connect_timeout=2'}}\n"
    );
    let cfg = Config::parse(&yaml, "test.yaml").unwrap().config;
    let started = std::time::Instant::now();
    let e = GatewayBuilder::new(cfg).build().await.unwrap_err().to_string();
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "bounded: {:?}", started.elapsed());
    assert!(e.contains(&format!("postgres://u:***@127.0.0.1:{port}/db")) && e.contains("connect"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

/// A `DATABASE_URL` in the environment of whoever runs the harness is not
/// the database of the gateways it builds in-process: a scenario with keys
/// and spend passes with it pointing at nothing that answers (it would not
/// start if the harness's gateway tried to connect there).
#[test]
fn the_harness_in_process_gateways_ignore_the_callers_database_url() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postmortem"))
        .current_dir(root)
        .args(["run", "scenarios/everyday/virtual-keys-and-budgets.yaml", "--format", "json"])
        .env("DATABASE_URL", "postgres://someone:secret@127.0.0.1:9/elsewhere?connect_timeout=2")
        .output()
        .expect("the harness runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\"passed\""), "{stdout}");
}
