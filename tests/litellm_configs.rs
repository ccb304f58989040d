//! Drop-in: every real LiteLLM config under `fixtures/litellm-configs/`
//! starts, through the same loader and builder `postmortem serve` uses, and
//! warns only about settings the README lists as not implemented. Deployments
//! that cannot serve are loaded as unavailable, with a reason a request sees.

use axum::body::Body;
use http_body_util::BodyExt;
use postmortem::gateway::{Config, GatewayBuilder};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use tower::ServiceExt;

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("fixtures/litellm-configs")
        .expect("fixtures/litellm-configs exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

/// The backticked settings between the README's markers.
fn documented_unsupported() -> BTreeSet<String> {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let start = readme.find("<!-- unsupported-settings:start -->").expect("README lists unsupported settings");
    let end = readme.find("<!-- unsupported-settings:end -->").expect("the list ends");
    readme[start..end].split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// `model_list.3.litellm_params.seed` → `model_list[].litellm_params.seed`.
fn normalize(key: &str) -> String {
    let re = regex::Regex::new(r"^model_list\.\d+\.").unwrap();
    re.replace(key, "model_list[].").into_owned()
}

/// The setting a warning about a callback name names
/// (`litellm_settings.success_callback \`langfuse\` is not implemented`).
fn callback_warning(w: &str) -> Option<String> {
    let re = regex::Regex::new(
        r"(litellm_settings\.(callbacks|success_callback|failure_callback)) `[^`]*` is not implemented",
    )
    .unwrap();
    re.captures(w).map(|c| c[1].to_string())
}

/// The setting a warning about a cache store names
/// (`litellm_settings.cache_params.type \`redis\` is not implemented`).
fn cache_store_warning(w: &str) -> Option<String> {
    let re = regex::Regex::new(r"(litellm_settings\.cache_params\.type) `[^`]*` is not implemented").unwrap();
    re.captures(w).map(|c| c[1].to_string())
}

/// What a fixture's `database_url: os.environ/DATABASE_URL` gets here.
const FIXTURE_DATABASE_URL: &str = "postgres://litellm:fixture@db.example:5432/litellm";

/// The variables the file's `general_settings` (the master key) and Redis
/// settings reference: a real deployment has them; without them the
/// gateway refuses to start.
fn general_settings_env(text: &str) -> Vec<String> {
    let re = regex::Regex::new(
        r"(?m)^\s*(master_key|database_path|database_url|redis_host|redis_port|redis_password)\s*:\s*.?os\.environ/([A-Za-z0-9_]+)",
    )
        .unwrap();
    re.captures_iter(text).map(|c| c[2].to_string()).collect()
}

#[tokio::test]
async fn every_real_litellm_config_starts_and_warns_only_about_documented_gaps() {
    let documented = documented_unsupported();
    let files = fixtures();
    assert!(files.len() >= 25, "at least 25 real configs: {}", files.len());
    let mut failures = Vec::new();
    let mut unavailable_seen = 0;
    for path in &files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let loaded = match Config::parse(&text, &name) {
            Ok(l) => l,
            Err(e) => {
                failures.push(format!("{name}: refused: {e}"));
                continue;
            }
        };
        for w in &loaded.warnings {
            let ok = match w.split_once("unknown key `").and_then(|(_, rest)| rest.split_once('`')) {
                Some((key, _)) => documented.contains(&normalize(key)),
                None => {
                    w.contains("routing_strategy")
                        || w.contains("no `litellm_params.model`")
                        || callback_warning(w).is_some_and(|setting| documented.contains(&setting))
                        || cache_store_warning(w).is_some_and(|setting| documented.contains(&setting))
                }
            };
            if !ok {
                failures.push(format!("{name}: undocumented warning: {w}"));
            }
        }
        let mut config = loaded.config;
        for var in general_settings_env(&text) {
            // A Redis nobody listens on: the gateway starts without it.
            let value = match var.as_str() {
                v if v.contains("DATABASE") => FIXTURE_DATABASE_URL,
                "REDIS_HOST" => "127.0.0.1",
                "REDIS_PORT" => "9",
                "REDIS_PASSWORD" => "fixture-redis-password",
                _ => "sk-test-fixture-master-key",
            };
            config.environment_variables.insert(var, value.into());
        }
        // The Postgres a file names is its deployment's, not reachable here:
        // its URL must be one the gateway takes; the start is checked on
        // the default in-memory store (tests/persistence.rs starts real
        // Postgres servers).
        if let Err(e) = config.resolve_env(&name) {
            failures.push(format!("{name}: does not start: {e}"));
            continue;
        }
        // (The build resolves again: DATABASE_URL must not put it back.)
        config.environment_variables.remove("DATABASE_URL");
        if let Some(url) = config.general_settings.database_url.take() {
            if let Err(e) = postmortem::gateway::store::PostgresUrl::parse(&url) {
                failures.push(format!("{name}: its database_url is refused: {e}"));
            }
        }
        match GatewayBuilder::new(config).build().await {
            Ok(gw) => {
                let app = postmortem::gateway::server::app(gw.clone());
                let resp = app.oneshot(http::Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
                let health: Value =
                    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
                for d in health["deployments"].as_array().unwrap() {
                    if d["available"] == Value::Bool(false) {
                        unavailable_seen += 1;
                        let reason = d["unavailable_reason"].as_str().unwrap_or_default();
                        if reason.is_empty() {
                            failures.push(format!("{name}: {} is unavailable without a reason", d["id"]));
                        }
                    }
                }
            }
            Err(e) => failures.push(format!("{name}: does not start: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
    assert!(unavailable_seen > 0, "some fixtures have deployments that cannot serve here");
}

/// A request to a model whose only deployment is unavailable gets a 503 that
/// names the reason; the file's other models serve.
#[tokio::test]
async fn an_unavailable_deployment_answers_with_its_reason_and_the_rest_serve() {
    let yaml = "model_list:\n\
                \x20 - {model_name: far, litellm_params: {model: nosuch/x}}\n\
                \x20 - {model_name: keyless, litellm_params: {model: openai/gpt-4o, api_key: os.environ/POSTMORTEM_TEST_UNSET_VAR_1}}\n\
                \x20 - {model_name: bare, litellm_params: {model: gpt-4o, api_base: 'http://127.0.0.1:9/v1', api_key: k}}\n\
                \x20 - {model_name: groq, litellm_params: {model: groq/llama3-8b-8192, api_key: k}}\n\
                \x20 - {model_name: nobase, litellm_params: {model: azure/dep, api_key: k}}\n\
                \x20 - {model_name: u, litellm_params: {model: openai/gpt-4o, api_base: 'http://127.0.0.1:9/v1', tpm: '20_000', timeout: '1_0'}, rpm: 7}\n";
    let cfg = Config::parse(yaml, "t.yaml").expect("parses").config;
    let gw = GatewayBuilder::new(cfg).build().await.expect("starts");
    let app = postmortem::gateway::server::app(gw.clone());
    let post = |model: &str| {
        http::Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Body::from(
                serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
            ))
            .unwrap()
    };
    for (model, status, words) in [
        ("far", 503, "unknown provider `nosuch`"),
        ("keyless", 503, "POSTMORTEM_TEST_UNSET_VAR_1"),
        ("nobase", 503, "api_base"),
        // Reached the (closed) upstream port: routed, so available.
        ("bare", 502, ""),
    ] {
        let resp = app.clone().oneshot(post(model)).await.unwrap();
        let s = resp.status().as_u16();
        let body = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).to_string();
        assert_eq!(s, status, "{model}: {body}");
        assert!(body.contains(words), "{model}: {body}");
    }
    let deps = gw.router.deployments();
    let find = |n: &str| deps.iter().find(|d| d.model_name == n).unwrap().clone();
    assert_eq!(find("bare").provider.map(|p| p.as_str()), Some("openai"), "a bare name's provider is the cost map's");
    assert_eq!(find("groq").params.api_base, None);
    assert!(find("groq").unavailable.is_none(), "groq has a default base URL");
    let u = find("u");
    assert_eq!((u.params.tpm, u.params.rpm), (Some(20_000), Some(7)), "YAML 1.1 numbers and rpm beside litellm_params");
    assert_eq!(u.timeout, Some(std::time::Duration::from_secs(10)));
}

#[tokio::test]
async fn credential_list_fills_a_deployments_credentials() {
    let yaml = "model_list:\n\
                \x20 - {model_name: a, litellm_params: {model: azure/dep, litellm_credential_name: eu}}\n\
                \x20 - {model_name: b, litellm_params: {model: azure/dep, litellm_credential_name: missing}}\n\
                credential_list:\n\
                \x20 - credential_name: eu\n\
                \x20   credential_values: {api_key: os.environ/POSTMORTEM_TEST_CRED_KEY, api_base: 'https://eu.example.test', api_version: '2024-06-01'}\n\
                environment_variables: {POSTMORTEM_TEST_CRED_KEY: test-cred-value, EMPTY_ONE: }\n";
    let cfg = Config::parse(yaml, "t.yaml").expect("parses").config;
    let gw = GatewayBuilder::new(cfg).build().await.expect("starts");
    let deps = gw.router.deployments();
    let a = deps.iter().find(|d| d.model_name == "a").unwrap();
    assert!(a.unavailable.is_none(), "{:?}", a.unavailable);
    assert_eq!(a.params.api_key.as_deref(), Some("test-cred-value"));
    assert_eq!(a.params.api_base.as_deref(), Some("https://eu.example.test"));
    assert_eq!(a.params.api_version.as_deref(), Some("2024-06-01"));
    let b = deps.iter().find(|d| d.model_name == "b").unwrap();
    assert!(
        b.unavailable.as_deref().unwrap_or_default().contains("`missing` is not in credential_list"),
        "{:?}",
        b.unavailable
    );
}

/// The other direction: each setting the README lists as not implemented,
/// put alone into a config, is still named in a start-up warning (one that
/// became implemented must leave the list, or the README says what is no
/// longer true).
#[test]
fn every_setting_listed_as_not_implemented_still_warns() {
    let mut stale = Vec::new();
    for key in documented_unsupported() {
        let value = serde_json::json!("x");
        let config = match key.strip_prefix("model_list[].") {
            Some(rest) => {
                let (section, field) = rest.split_once('.').unwrap_or((rest, ""));
                let mut d = serde_json::json!({"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_key": "k"}});
                if field.is_empty() {
                    d[section] = value;
                } else {
                    d[section][field] = value;
                }
                serde_json::json!({"model_list": [d]})
            }
            // `a.b.c: x` as `{a: {b: {c: x}}}`; a cache store's setting is
            // read only with the cache on.
            None => {
                let mut config = key.rsplit('.').fold(value, |inner, segment| serde_json::json!({ segment: inner }));
                if key.starts_with("litellm_settings.cache_params.") {
                    config["litellm_settings"]["cache"] = serde_json::json!(true);
                }
                config
            }
        };
        let yaml = serde_json::to_string(&config).unwrap();
        let warned = match Config::parse(&yaml, "t.yaml") {
            Ok(l) => {
                let named = format!("`{}`", key.replace("model_list[].", "model_list.0."));
                // A callback's or a cache store's warning names the setting
                // and the name refused.
                l.warnings.iter().any(|w| {
                    w.contains(&named)
                        || callback_warning(w).as_deref() == Some(key.as_str())
                        || cache_store_warning(w).as_deref() == Some(key.as_str())
                })
            }
            Err(_) => false,
        };
        if !warned {
            stale.push(key);
        }
    }
    assert!(stale.is_empty(), "listed as not implemented, yet no start-up warning names them: {stale:?}");
}
