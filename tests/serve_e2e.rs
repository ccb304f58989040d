//! End to end: start the real `postmortem serve` process on port 0 against
//! mock providers and drive it over HTTP — with reqwest, and with the
//! official OpenAI and Anthropic Python SDKs when a Python with them is
//! available (`POSTMORTEM_PYTHON`, which `.ci/run` sets up).

use postmortem::mocks::{MockKind, MockOptions, MockProvider};

#[path = "support/served.rs"]
mod served;
use served::serve;

async fn mock(kind: MockKind, name: &str) -> MockProvider {
    MockProvider::start(kind, name, MockOptions::for_kind(kind)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_gateway_answers_over_http_and_to_the_official_sdks() {
    let openai = mock(MockKind::Openai, "openai").await;
    let vllm = mock(MockKind::HostedVllm, "vllm").await;
    let anthropic = mock(MockKind::Anthropic, "anthropic").await;
    let bedrock = mock(MockKind::Bedrock, "bedrock").await;
    let vertex = mock(MockKind::VertexAi, "vertex").await;
    let azure = mock(MockKind::AzureAi, "azure").await;
    let config = format!(
        r#"model_list:
  - model_name: gpt-4o
    litellm_params: {{model: openai/gpt-4o, api_base: "{}/v1", api_key: test-openai-credential}}
  - model_name: bge
    litellm_params: {{model: hosted_vllm/BAAI/bge-small-en-v1.5, api_base: "{}/v1"}}
  - model_name: claude-direct
    litellm_params: {{model: anthropic/claude-sonnet-4-5, api_base: "{}", api_key: test-anthropic-credential}}
  - model_name: claude-bedrock
    litellm_params: {{model: bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0, aws_bedrock_runtime_endpoint: "{}", aws_region_name: us-east-1, aws_access_key_id: TESTKEYID, aws_secret_access_key: test-secret}}
  - model_name: claude-vertex
    litellm_params: {{model: vertex_ai/claude-sonnet-4-5, api_base: "{}", vertex_project: p, vertex_location: us-east5, api_key: test-vertex-token}}
  - model_name: claude-azure
    litellm_params: {{model: azure_ai/claude-sonnet-4-5, api_base: "{}", api_key: test-azure-credential}}
general_settings: {{master_key: test-master-key-e2e}}
"#,
        openai.url(),
        vllm.url(),
        anthropic.url(),
        bedrock.url(),
        vertex.url(),
        azure.url()
    );
    let served = serve(&config);
    let http = reqwest::Client::new();
    let health: serde_json::Value =
        http.get(format!("{}/health", served.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "healthy", "{health}");
    let r = http
        .post(format!("{}/v1/chat/completions", served.url))
        .bearer_auth("test-master-key-e2e")
        .json(&serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(openai.journal().len(), 1);

    let python = std::env::var("POSTMORTEM_PYTHON").ok().or_else(|| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
        std::path::Path::new(venv).exists().then(|| venv.to_string())
    });
    let Some(python) = python else {
        // In CI the SDK checks must run: a missing interpreter is a failure
        // there, not a silent pass.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but no Python for the SDK checks: set POSTMORTEM_PYTHON (.ci/run does)"
        );
        eprintln!("SDK checks not run: set POSTMORTEM_PYTHON to a Python with `openai` and `anthropic` (.ci/run does)");
        return;
    };
    for script in ["openai_sdk.py", "anthropic_sdk.py"] {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/").to_string() + script;
        let out = tokio::process::Command::new(&python)
            .arg(&path)
            .env("GATEWAY_URL", &served.url)
            .env("GATEWAY_KEY", "test-master-key-e2e")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{script} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
    }
}
