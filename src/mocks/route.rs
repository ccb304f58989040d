//! Which provider operation a request addresses, per mock kind. Strict
//! profiles and default bodies both dispatch on this.

use super::journal::{percent_decode, RecordedRequest};
use super::MockKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// OpenAI-style chat completions. `deployment` is set for Azure's
    /// `/openai/deployments/{dep}/...` paths (the model comes from the path).
    Chat {
        deployment: Option<String>,
    },
    Embeddings {
        deployment: Option<String>,
    },
    /// Legacy text completions (`/v1/completions`).
    Completions {
        deployment: Option<String>,
    },
    /// OpenAI's Responses API (`/v1/responses`; Azure's `/openai/v1/responses`).
    Responses,
    /// Anthropic Messages API (anthropic, azure_ai).
    Messages,
    CountTokens,
    /// Bedrock InvokeModel / InvokeModelWithResponseStream; `model` is decoded.
    BedrockInvoke {
        model: String,
        stream: bool,
    },
    /// Bedrock Converse / ConverseStream (the model-agnostic messages API
    /// LiteLLM uses for `bedrock/...` chat models); `model` is decoded.
    BedrockConverse {
        model: String,
        stream: bool,
    },
    /// Vertex `publishers/anthropic/models/{model}:rawPredict|:streamRawPredict`.
    VertexPredict {
        model: String,
        stream: bool,
    },
    /// Vertex `publishers/anthropic/models/count-tokens:rawPredict`.
    VertexCountTokens,
    /// Gemini's `models/{model}:generateContent` and
    /// `:streamGenerateContent` (`/v1beta/`, also `/v1/` and `/v1alpha/`); `model` is
    /// decoded. `sse`: the stream was asked for as SSE (`alt=sse`); without
    /// it Google streams one JSON array.
    GeminiGenerate {
        model: String,
        stream: bool,
        sse: bool,
    },
    /// Google's OAuth 2.0 token endpoint (`POST /token`, as
    /// `oauth2.googleapis.com/token`), served by the Vertex mock so that a
    /// gateway holding user or service-account credentials whose
    /// `token_uri` points at the mock can get its access tokens there.
    GoogleToken,
    /// Anything else: the provider answers 404.
    Other,
}

impl Route {
    pub(crate) fn classify(kind: MockKind, req: &RecordedRequest) -> Route {
        if req.method != "POST" {
            return Route::Other;
        }
        let path = req.path.as_str();
        match kind {
            // Any base path in front (`/tenant-3/v1/chat/completions`): a
            // gateway may be configured with many distinct api_bases that
            // all point at one OpenAI-compatible server.
            MockKind::Openai | MockKind::HostedVllm => {
                if path.ends_with("/chat/completions") {
                    Route::Chat { deployment: None }
                } else if path.ends_with("/embeddings") {
                    Route::Embeddings { deployment: None }
                } else if path.ends_with("/completions") {
                    Route::Completions { deployment: None }
                } else if kind == MockKind::Openai && path.ends_with("/responses") {
                    // vLLM's OpenAI server has no Responses API.
                    Route::Responses
                } else {
                    Route::Other
                }
            }
            MockKind::Azure => azure(path),
            MockKind::Anthropic => match path {
                "/v1/messages" => Route::Messages,
                "/v1/messages/count_tokens" => Route::CountTokens,
                _ => Route::Other,
            },
            MockKind::AzureAi => match path {
                "/anthropic/v1/messages" | "/v1/messages" => Route::Messages,
                "/anthropic/v1/messages/count_tokens" | "/v1/messages/count_tokens" => Route::CountTokens,
                _ => Route::Other,
            },
            MockKind::Bedrock => bedrock(path),
            MockKind::VertexAi if path == "/token" => Route::GoogleToken,
            MockKind::VertexAi => vertex(path),
            MockKind::Gemini => gemini(path, req.query.as_deref()),
        }
    }

    /// True when the default answer is a stream the front must serve.
    pub(super) fn streams(&self, req: &RecordedRequest) -> bool {
        let stream_flag = req.json_field("stream").and_then(|v| v.as_bool()).unwrap_or(false);
        match self {
            Route::Chat { .. } | Route::Completions { .. } | Route::Messages | Route::Responses => stream_flag,
            Route::BedrockInvoke { stream, .. }
            | Route::BedrockConverse { stream, .. }
            | Route::VertexPredict { stream, .. } => *stream,
            Route::GeminiGenerate { stream, sse, .. } => *stream && *sse,
            _ => false,
        }
    }
}

fn azure(path: &str) -> Route {
    match path {
        "/openai/v1/chat/completions" => return Route::Chat { deployment: None },
        "/openai/v1/embeddings" => return Route::Embeddings { deployment: None },
        "/openai/v1/responses" | "/openai/responses" => return Route::Responses,
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/openai/deployments/") else {
        return Route::Other;
    };
    let Some((dep, op)) = rest.split_once('/') else {
        return Route::Other;
    };
    if dep.is_empty() {
        return Route::Other;
    }
    let deployment = Some(percent_decode(dep));
    match op {
        "chat/completions" => Route::Chat { deployment },
        "embeddings" => Route::Embeddings { deployment },
        "completions" => Route::Completions { deployment },
        _ => Route::Other,
    }
}

fn bedrock(path: &str) -> Route {
    let Some(rest) = path.strip_prefix("/model/") else {
        return Route::Other;
    };
    let Some((model, op)) = rest.split_once('/') else {
        return Route::Other;
    };
    if model.is_empty() {
        return Route::Other;
    }
    let model = percent_decode(model);
    match op {
        "invoke" => Route::BedrockInvoke { model, stream: false },
        "invoke-with-response-stream" => Route::BedrockInvoke { model, stream: true },
        "converse" => Route::BedrockConverse { model, stream: false },
        "converse-stream" => Route::BedrockConverse { model, stream: true },
        _ => Route::Other,
    }
}

/// `/v1/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:{verb}`
/// (also `/v1beta1/`).
fn vertex(path: &str) -> Route {
    let segments: Vec<&str> = path.split('/').collect();
    // ["", "v1", "projects", p, "locations", l, "publishers", "anthropic", "models", "m:verb"]
    let shape_ok = segments.len() == 10
        && segments[0].is_empty()
        && matches!(segments[1], "v1" | "v1beta1")
        && segments[2] == "projects"
        && !segments[3].is_empty()
        && segments[4] == "locations"
        && !segments[5].is_empty()
        && segments[6] == "publishers"
        && segments[7] == "anthropic"
        && segments[8] == "models";
    if !shape_ok {
        return Route::Other;
    }
    let last = percent_decode(segments[9]);
    let Some((model, verb)) = last.rsplit_once(':') else {
        return Route::Other;
    };
    match (model, verb) {
        ("count-tokens", "rawPredict") => Route::VertexCountTokens,
        ("", _) => Route::Other,
        (m, "rawPredict") => Route::VertexPredict { model: m.to_string(), stream: false },
        (m, "streamRawPredict") => Route::VertexPredict { model: m.to_string(), stream: true },
        _ => Route::Other,
    }
}

/// `/v1beta/models/{m}:generateContent|:streamGenerateContent` (also `/v1/`
/// and `/v1alpha/`, where LiteLLM sends Gemini 3).
fn gemini(path: &str, query: Option<&str>) -> Route {
    let segments: Vec<&str> = path.split('/').collect();
    let shape_ok = segments.len() == 4
        && segments[0].is_empty()
        && matches!(segments[1], "v1beta" | "v1" | "v1alpha")
        && segments[2] == "models";
    if !shape_ok {
        return Route::Other;
    }
    let last = percent_decode(segments[3]);
    let Some((model, verb)) = last.rsplit_once(':') else {
        return Route::Other;
    };
    let sse = query.is_some_and(|q| q.split('&').any(|p| p == "alt=sse"));
    match (model, verb) {
        ("", _) => Route::Other,
        (m, "generateContent") => Route::GeminiGenerate { model: m.to_string(), stream: false, sse: false },
        (m, "streamGenerateContent") => Route::GeminiGenerate { model: m.to_string(), stream: true, sse },
        _ => Route::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(method: &str, path: &str) -> Route {
        Route::classify(MockKind::Bedrock, &RecordedRequest::new(method, path, None, Vec::new(), Vec::new()))
    }

    #[test]
    fn bedrock_operations_take_the_decoded_model_id_from_the_path() {
        let model = "anthropic.claude-sonnet-4-5-20250929-v1:0".to_string();
        let cases = [
            (
                "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke",
                Route::BedrockInvoke { model: model.clone(), stream: false },
            ),
            (
                "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream",
                Route::BedrockInvoke { model: model.clone(), stream: true },
            ),
            (
                "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse",
                Route::BedrockConverse { model: model.clone(), stream: false },
            ),
            (
                "/model/anthropic.claude-sonnet-4-5-20250929-v1:0/converse-stream",
                Route::BedrockConverse { model: model.clone(), stream: true },
            ),
            ("/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-streams", Route::Other),
            ("/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse/x", Route::Other),
            ("/model//converse", Route::Other),
            ("/models/m/converse", Route::Other),
        ];
        for (path, want) in cases {
            assert_eq!(classify("POST", path), want, "{path}");
        }
        assert_eq!(classify("GET", "/model/m/converse"), Route::Other);
    }

    #[test]
    fn gemini_methods_take_the_decoded_model_from_the_path_and_sse_from_the_query() {
        let at = |path: &str, query: Option<&str>| {
            Route::classify(MockKind::Gemini, &RecordedRequest::new("POST", path, query, Vec::new(), Vec::new()))
        };
        let generate = |m: &str, stream: bool, sse: bool| Route::GeminiGenerate { model: m.into(), stream, sse };
        assert_eq!(
            at("/v1beta/models/gemini-2.5-flash:generateContent", None),
            generate("gemini-2.5-flash", false, false)
        );
        assert_eq!(at("/v1/models/a%3Ab:streamGenerateContent", Some("alt=sse")), generate("a:b", true, true));
        assert_eq!(at("/v1beta/models/g:streamGenerateContent", None), generate("g", true, false));
        assert_eq!(
            at("/v1alpha/models/gemini-3-pro-preview:generateContent", None),
            generate("gemini-3-pro-preview", false, false)
        );
        for path in [
            "/v1beta/models/g:countTokens",
            "/v1beta/models/:generateContent",
            "/v1beta/tunedModels/g:generateContent",
            "/v1beta/models/x/y:generateContent",
        ] {
            assert_eq!(at(path, None), Route::Other, "{path}");
        }
        let stream = RecordedRequest::new(
            "POST",
            "/v1beta/models/g:streamGenerateContent",
            Some("alt=sse"),
            Vec::new(),
            Vec::new(),
        );
        assert!(Route::classify(MockKind::Gemini, &stream).streams(&stream));
    }

    #[test]
    fn converse_streams_by_operation_not_by_a_body_flag() {
        let req =
            |path: &str, body: &str| RecordedRequest::new("POST", path, None, Vec::new(), body.as_bytes().to_vec());
        let stream = req("/model/m/converse-stream", "{}");
        assert!(Route::classify(MockKind::Bedrock, &stream).streams(&stream));
        // The operation decides, not a `stream` flag in the body.
        let buffered = req("/model/m/converse", r#"{"stream": true}"#);
        assert!(!Route::classify(MockKind::Bedrock, &buffered).streams(&buffered));
    }
}
