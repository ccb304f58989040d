//! OpenAI, Azure OpenAI and vLLM: their strict checks and default answers.

use super::*;

#[tokio::test]
async fn openai_accepts_a_good_chat_request_with_a_realistic_body() {
    let m = start(MockKind::Openai).await;
    let r = post(&format!("{}/v1/chat/completions", m.url()), &[OPENAI_AUTH], &chat_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert!(j["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(j["object"], "chat.completion");
    assert_eq!(j["model"], "gpt-4o-mini");
    assert_eq!(j["choices"][0]["message"]["role"], "assistant");
    assert!(j["choices"][0]["message"]["content"].as_str().unwrap().contains("`m1`"));
    assert_eq!(j["choices"][0]["finish_reason"], "stop");
    let u = &j["usage"];
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );
    // Also served without the /v1 prefix.
    let r = post(&format!("{}/chat/completions", m.url()), &[OPENAI_AUTH], &chat_body()).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn openai_rejects_missing_key_model_messages_and_bad_json() {
    let m = start(MockKind::Openai).await;
    let url = format!("{}/v1/chat/completions", m.url());

    let r = post(&url, &[], &chat_body()).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "param": null, "code": null}})
    );

    let r = post(&url, &[OPENAI_AUTH], &json!({"messages": []})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "you must provide a model parameter", "type": "invalid_request_error", "param": null, "code": null}})
    );

    let r = post(&url, &[OPENAI_AUTH], &json!({"model": "gpt-4o"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "Missing required parameter: 'messages'.", "type": "invalid_request_error", "param": "messages", "code": "missing_required_parameter"}})
    );

    let r = send(&url, &[OPENAI_AUTH, ("content-type", "application/json")], b"{\"model\": ".to_vec()).await;
    assert_eq!(r.status, 400);
    let j = r.json();
    assert!(j["error"]["message"].as_str().unwrap().starts_with("We could not parse the JSON body of your request."));
    assert_eq!(j["error"]["type"], "invalid_request_error");

    let r =
        post(&format!("{}/v1/embeddings", m.url()), &[OPENAI_AUTH], &json!({"model": "text-embedding-3-small"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "input");
}

#[tokio::test]
async fn openai_embeddings_return_floats_or_base64() {
    let m = start(MockKind::Openai).await;
    let url = format!("{}/v1/embeddings", m.url());
    let r = post(&url, &[OPENAI_AUTH], &json!({"model": "text-embedding-3-small", "input": ["a", "b"]})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["object"], "list");
    assert_eq!(j["data"].as_array().unwrap().len(), 2);
    assert_eq!(j["data"][1]["index"], 1);
    assert_eq!(j["data"][0]["embedding"].as_array().unwrap().len(), 8);

    let r =
        post(&url, &[OPENAI_AUTH], &json!({"model": "m", "input": "a", "encoding_format": "base64", "dimensions": 4}))
            .await;
    let b64 = r.json()["data"][0]["embedding"].as_str().unwrap().to_string();
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    assert_eq!(bytes.len(), 4 * 4, "4 little-endian f32");
}

#[tokio::test]
async fn openai_unknown_route_is_openais_404() {
    let m = start(MockKind::Openai).await;
    let r = post(&format!("{}/v1/nope", m.url()), &[OPENAI_AUTH], &json!({})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], "Invalid URL (POST /v1/nope)");
}

#[tokio::test]
async fn azure_requires_api_key_and_api_version() {
    let m = start(MockKind::Azure).await;
    let base = format!("{}/openai/deployments/gpt4o-eu/chat/completions", m.url());
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});

    let r = post(&format!("{base}?api-version=2024-10-21"), &[], &body).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "401");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Access denied due to invalid subscription key"));

    let r = post(&base, &[("api-key", "k")], &body).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), json!({"error": {"code": "404", "message": "Resource not found"}}));

    // Deployment routes take the model from the path.
    let r = post(&format!("{base}?api-version=2024-10-21"), &[("api-key", "k")], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "gpt4o-eu");
    assert!(r.json()["prompt_filter_results"].is_array());

    let emb = format!("{}/openai/deployments/emb/embeddings?api-version=2024-10-21", m.url());
    let r = post(&emb, &[("api-key", "k")], &json!({"input": "x"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"][0]["object"], "embedding");
}

#[tokio::test]
async fn vllm_rejects_null_encoding_format_with_the_exact_pydantic_body() {
    let m = start(MockKind::HostedVllm).await;
    let url = format!("{}/v1/embeddings", m.url());
    let r = post(&url, &[], &json!({"model": "bge", "input": ["hi"], "encoding_format": null})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({
            "object": "error",
            "message": "[{'type': 'enum', 'loc': ('body', 'encoding_format'), 'msg': \"Input should be 'float' or 'base64'\", 'input': None, 'ctx': {'expected': \"'float' or 'base64'\"}}]",
            "type": "BadRequestError",
            "param": null,
            "code": 400
        })
    );

    let r = post(&url, &[], &json!({"model": "bge", "input": ["hi"], "encoding_format": "int8"})).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("'input': 'int8'"));

    for fmt in ["float", "base64"] {
        let r = post(&url, &[], &json!({"model": "bge", "input": ["hi"], "encoding_format": fmt})).await;
        assert_eq!(r.status, 200, "{fmt}: {}", r.text());
    }
    // Omitting it is what a fixed gateway does.
    let r = post(&format!("{}/embeddings", m.url()), &[], &json!({"model": "bge", "input": "hi"})).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["id"].as_str().unwrap().starts_with("embd-"));
}

#[tokio::test]
async fn vllm_rejects_null_typed_chat_params_and_missing_fields() {
    let m = start(MockKind::HostedVllm).await;
    let url = format!("{}/v1/chat/completions", m.url());
    let mut body = chat_body();
    body["temperature"] = Value::Null;
    body["max_tokens"] = Value::Null;
    let r = post(&url, &[], &body).await;
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j["type"], "BadRequestError");
    assert_eq!(j["code"], 400);
    assert_eq!(
        j["message"],
        "[{'type': 'float_type', 'loc': ('body', 'temperature'), 'msg': 'Input should be a valid number', 'input': None}, {'type': 'int_type', 'loc': ('body', 'max_tokens'), 'msg': 'Input should be a valid integer', 'input': None}]"
    );

    let r = post(&url, &[], &json!({"model": "llama"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "[{'type': 'missing', 'loc': ('body', 'messages'), 'msg': 'Field required', 'input': {'model': 'llama'}}]"
    );

    let r = post(&url, &[], &json!({"model": "llama", "messages": [], "temperature": 0.2})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["stop_reason"], Value::Null);
}
