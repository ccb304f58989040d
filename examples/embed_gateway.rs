//! Embedding the gateway in your own program: parse a LiteLLM-format config,
//! build the gateway, serve its router on 127.0.0.1, and call it.
//!
//! Run: `cargo run --example embed_gateway`. It starts a mock OpenAI
//! provider (the harness's own, strict as the real one) so it needs no
//! network and no key, sends one chat completion and prints the answer.

use postmortem::gateway::{Config, GatewayBuilder};
use postmortem::mocks::{MockKind, MockOptions, MockProvider};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let provider = MockProvider::start(MockKind::Openai, "openai", MockOptions::default()).await?;
    let yaml = format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/gpt-4o, api_base: '{}/v1', api_key: example-key}}\n",
        provider.url()
    );
    let loaded = Config::parse(&yaml, "example.yaml")?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    let gateway = GatewayBuilder::new(loaded.config).build().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(postmortem::gateway::server::serve(gateway, listener));

    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(&serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await?
        .json()
        .await?;
    println!("{}", answer["choices"][0]["message"]["content"]);
    println!("the provider received {} request(s)", provider.journal().len());
    Ok(())
}
