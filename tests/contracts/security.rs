//! The security family: credentials stay where they belong, nothing
//! redirects a call, no secret in responses, no access without a key.

use crate::common::*;
use postmortem::contracts::Setup;
use postmortem::mocks::egress::EgressAttempt;
use postmortem::mocks::MockKind;
use serde_json::json;

/// `openai` is also the host of a deployment without a credential.
fn with_keyless_deployment() -> Setup {
    let config = json!({"model_list": [
        {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:1001/v1", "api_key": OPENAI_KEY}},
        {"model_name": "local", "litellm_params": {"model": "hosted_vllm/llama", "api_base": "http://127.0.0.1:1001/v1"}},
    ]});
    let mocks = [("openai".to_string(), "http://127.0.0.1:1001".to_string())].into_iter().collect();
    Setup::from_config(&config, &mocks, &Default::default())
}

/// A pass-through chat call during which the gateway also tried to reach
/// `host` through the egress sentinel.
fn with_egress(host: &str) -> postmortem::contracts::Exchange {
    let mut x = exchange(
        request(
            "/v1/messages/count_tokens",
            json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        json_response(200, json!({"input_tokens": 3})),
        Vec::new(),
    );
    x.egress.push(EgressAttempt { method: "CONNECT".into(), host: host.into(), port: 443 });
    x
}

pub fn cases() -> Vec<Case> {
    let ok = completion("hi");
    let openai_auth = format!("Bearer {OPENAI_KEY}");
    let master_auth = format!("Bearer {MASTER_KEY}");
    let anonymous = || {
        let mut r = chat(chat_body());
        r.headers.retain(|(k, _)| k != "authorization");
        r
    };
    let mut egress_cases = vec![
        case(
            "a call sent to Anthropic's public API though the deployment points elsewhere",
            Some("security.credential-to-its-host"),
            with_egress("api.anthropic.com"),
        ),
        case(
            "a call sent to a Bedrock region no deployment names",
            Some("security.credential-to-its-host"),
            with_egress("bedrock-runtime.us-east-1.amazonaws.com"),
        ),
        case("a tokenizer download is no provider call", None, with_egress("openaipublic.blob.core.windows.net")),
    ];
    // Counting is the provider's job too; these cases judge only the egress.
    for c in &mut egress_cases {
        c.setup.exact_counts.clear();
    }
    vec![
        case(
            "the client's gateway key forwarded upstream",
            Some("security.client-key-not-forwarded"),
            exchange(
                chat(chat_body()),
                json_response(200, ok.clone()),
                vec![upstream(
                    "openai",
                    MockKind::Openai,
                    "/v1/chat/completions",
                    &[("authorization", &openai_auth), ("x-forwarded-authorization", &master_auth)],
                    chat_body(),
                    json_answer(200, ok.clone()),
                )],
            ),
        ),
        case(
            "another deployment's key sent to this host",
            Some("security.credential-to-its-host"),
            exchange(
                chat(chat_body()),
                json_response(200, ok.clone()),
                vec![upstream(
                    "openai",
                    MockKind::Openai,
                    "/v1/chat/completions",
                    &[("authorization", &openai_auth), ("x-api-key", ANTHROPIC_KEY)],
                    chat_body(),
                    json_answer(200, ok.clone()),
                )],
            ),
        ),
        case(
            "a key from the client's body used upstream",
            Some("security.credential-not-replaced"),
            exchange(
                chat(
                    json!({"model": "gpt-4o", "api_key": "sk-client-chosen-key", "messages": [{"role": "user", "content": "hi"}]}),
                ),
                json_response(200, ok.clone()),
                vec![upstream(
                    "openai",
                    MockKind::Openai,
                    "/v1/chat/completions",
                    &[("authorization", "Bearer sk-client-chosen-key")],
                    chat_body(),
                    json_answer(200, ok.clone()),
                )],
            ),
        ),
        Case {
            setup: with_keyless_deployment(),
            ..case(
                "a placeholder key for a deployment configured without one",
                None,
                exchange(
                    chat(json!({"model": "local", "messages": [{"role": "user", "content": "hi"}]})),
                    json_response(200, ok.clone()),
                    vec![upstream(
                        "openai",
                        MockKind::Openai,
                        "/v1/chat/completions",
                        &[("authorization", "Bearer fake-api-key")],
                        chat_body(),
                        json_answer(200, ok.clone()),
                    )],
                ),
            )
        },
        case(
            "a call redirected to a host no deployment names",
            Some("security.no-redirect"),
            exchange(
                chat(
                    json!({"model": "gpt-4o", "api_base": "http://127.0.0.1:1003", "messages": [{"role": "user", "content": "hi"}]}),
                ),
                json_response(200, ok.clone()),
                vec![upstream(
                    "sentinel",
                    MockKind::Openai,
                    "/chat/completions",
                    &[],
                    chat_body(),
                    json_answer(200, ok.clone()),
                )],
            ),
        ),
        case(
            "a provider key echoed in an error",
            Some("security.no-secret-in-response"),
            exchange(
                chat(chat_body()),
                json_response(
                    401,
                    json!({"error": {"message": format!("Incorrect API key provided: {OPENAI_KEY}"), "type": "auth"}}),
                ),
                vec![],
            ),
        ),
        case(
            "the master key in a response header",
            Some("security.no-secret-in-response"),
            exchange(
                chat(chat_body()),
                {
                    let mut r = json_response(200, ok.clone());
                    r.headers.push(("x-debug-key".into(), MASTER_KEY.into()));
                    r
                },
                vec![],
            ),
        ),
        case(
            "no credential, yet an answer",
            Some("security.unauthenticated-refused"),
            exchange(
                anonymous(),
                json_response(200, ok.clone()),
                vec![to_openai(chat_body(), json_answer(200, ok.clone()))],
            ),
        ),
        case(
            "no credential, refused",
            None,
            exchange(
                anonymous(),
                json_response(401, json!({"error": {"message": "missing key", "type": "auth"}})),
                vec![],
            ),
        ),
        case("no credential, refused while the gateway looked up a provider's models", None, {
            let mut lookup = upstream(
                "openai",
                MockKind::Openai,
                "/v1/models",
                &[("authorization", &openai_auth)],
                serde_json::Value::Null,
                json_answer(200, json!({"object": "list", "data": []})),
            );
            lookup.request.method = "GET".into();
            lookup.request.body.clear();
            exchange(
                anonymous(),
                json_response(401, json!({"error": {"message": "missing key", "type": "auth"}})),
                vec![lookup],
            )
        }),
        case(
            "no credential, refused after calling the provider",
            Some("security.unauthenticated-refused"),
            exchange(
                anonymous(),
                json_response(401, json!({"error": {"message": "missing key", "type": "auth"}})),
                vec![to_openai(chat_body(), json_answer(200, ok))],
            ),
        ),
    ]
    .into_iter()
    .chain(egress_cases)
    .collect()
}
