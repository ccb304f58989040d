//! Each provider's own error envelope, and the bodies it sends for a given
//! status (rate limits, overload, not found). Shapes follow recorded
//! responses under fixtures/cassettes and published error texts.

use serde_json::{json, Value};

use super::ids::IdGen;
use super::wire::Buffered;
use super::MockKind;

/// `{"error":{"message","type","param","code"}}` (OpenAI, also Azure for
/// validation errors).
pub(crate) fn openai(status: u16, message: &str, ty: &str, param: Option<&str>, code: Option<&str>) -> Buffered {
    Buffered::json(status, &json!({"error": {"message": message, "type": ty, "param": param, "code": code}}))
}

/// Azure's gateway envelope: `{"error":{"code":"401","message":...}}`.
pub(crate) fn azure(status: u16, code: &str, message: &str) -> Buffered {
    Buffered::json(status, &json!({"error": {"code": code, "message": message}}))
}

/// vLLM's `ErrorResponse`.
pub(crate) fn vllm(status: u16, message: &str, ty: &str) -> Buffered {
    Buffered::json(status, &json!({"object": "error", "message": message, "type": ty, "param": null, "code": status}))
}

/// `{"type":"error","error":{"type","message"},"request_id"}` (Anthropic,
/// Azure AI Foundry, and Vertex for errors raised by the Claude backend).
pub(crate) fn anthropic(status: u16, ty: &str, message: &str, request_id: &str) -> Buffered {
    Buffered::json(
        status,
        &json!({"type": "error", "error": {"type": ty, "message": message}, "request_id": request_id}),
    )
    .with_header("request-id", request_id)
}

/// Google's envelope, for errors raised by Vertex itself (auth, quota, routing).
pub(crate) fn google(status: u16, message: &str, grpc_status: &str) -> Buffered {
    Buffered::json(status, &json!({"error": {"code": status, "message": message, "status": grpc_status}}))
}

/// Google's envelope as the Generative Language API sends a 400 about the
/// body: the message, and the same text per field in `details`
/// (`google.rpc.BadRequest`), one violation a line.
pub(crate) fn gemini_invalid(message: &str) -> Buffered {
    let violations: Vec<Value> = message
        .lines()
        .map(|l| match l.split_once(" at '").and_then(|(_, rest)| rest.split_once('\'')) {
            Some((field, _)) => json!({"field": field, "description": l}),
            None => json!({"description": l}),
        })
        .collect();
    Buffered::json(
        400,
        &json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT", "details": [
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}
        ]}}),
    )
}

/// AWS JSON-protocol error: `{"message": ...}` plus `x-amzn-errortype`.
pub(crate) fn bedrock(status: u16, exception: &str, message: &str, ids: &IdGen) -> Buffered {
    Buffered::json(status, &json!({"message": message}))
        .with_header("x-amzn-errortype", format!("{exception}:http://internal.amazon.com/coral/com.amazon.bedrock/"))
        .with_header("x-amzn-requestid", ids.uuid())
}

pub(crate) const AZURE_ACCESS_DENIED: &str = "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.";

/// The request id an Anthropic-shaped error carries for this kind.
pub(crate) fn anthropic_request_id(kind: MockKind, ids: &IdGen) -> String {
    if kind == MockKind::VertexAi {
        ids.vertex_request_id()
    } else {
        ids.anthropic_request_id()
    }
}

/// HTTP 429 with `retry-after` and the provider's rate-limit body.
pub(crate) fn rate_limited(kind: MockKind, retry_after_secs: u64, ids: &IdGen) -> Buffered {
    let b = match kind {
        MockKind::Openai => openai(
            429,
            "Rate limit reached for requests. Please try again later.",
            "rate_limit_error",
            None,
            Some("rate_limit_exceeded"),
        ),
        MockKind::Azure => azure(
            429,
            "429",
            &format!(
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after {retry_after_secs} seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."
            ),
        ),
        MockKind::HostedVllm => vllm(429, "Too many requests", "TooManyRequestsError"),
        MockKind::Anthropic | MockKind::AzureAi => anthropic(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase.",
            &ids.anthropic_request_id(),
        ),
        MockKind::Bedrock => bedrock(429, "ThrottlingException", "Too many requests, please wait before trying again.", ids),
        MockKind::VertexAi => google(
            429,
            "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with base model: anthropic-claude. Please submit a quota increase request. https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai.",
            "RESOURCE_EXHAUSTED",
        ),
        // Google says when to retry in the body too (`google.rpc.RetryInfo`).
        MockKind::Gemini => Buffered::json(
            429,
            &json!({"error": {
                "code": 429,
                "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    }]},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{retry_after_secs}s")},
                ],
            }}),
        ),
    };
    b.with_header("retry-after", retry_after_secs.to_string())
}

/// The provider's error body for an arbitrary status.
pub(crate) fn status(kind: MockKind, code: u16, ids: &IdGen) -> Buffered {
    if code == 429 {
        return rate_limited(kind, 1, ids);
    }
    if code < 400 {
        // Not an error: an empty JSON object with that status.
        return Buffered::json(code, &json!({}));
    }
    match kind {
        MockKind::Openai => {
            let (message, ty, c): (&str, &str, Option<&str>) = match code {
                400 => ("Invalid request.", "invalid_request_error", None),
                401 => ("Incorrect API key provided.", "invalid_request_error", Some("invalid_api_key")),
                403 => ("You are not allowed to sample from this model", "invalid_request_error", None),
                404 => (
                    "The model does not exist or you do not have access to it.",
                    "invalid_request_error",
                    Some("model_not_found"),
                ),
                500 => {
                    ("The server had an error while processing your request. Sorry about that!", "server_error", None)
                }
                502 | 503 => ("The server is overloaded or not ready yet.", "server_error", None),
                _ => ("The server had an error while processing your request. Sorry about that!", "server_error", None),
            };
            openai(code, message, ty, None, c)
        }
        MockKind::Azure => {
            let (c, message) = match code {
                401 => ("401", AZURE_ACCESS_DENIED),
                404 => ("404", "Resource not found"),
                500 => (
                    "InternalServerError",
                    "The service is temporarily unable to process your request. Please try again later.",
                ),
                503 => (
                    "ServiceUnavailable",
                    "The service is temporarily unable to process your request. Please try again later.",
                ),
                _ => ("InternalServerError", "The server had an error while processing your request."),
            };
            azure(code, c, message)
        }
        MockKind::HostedVllm => {
            let ty = match code {
                400 => "BadRequestError",
                404 => "NotFoundError",
                _ => "InternalServerError",
            };
            vllm(code, "The mock vLLM server failed this request.", ty)
        }
        MockKind::Anthropic | MockKind::AzureAi | MockKind::VertexAi => {
            let (ty, message) = match code {
                400 => ("invalid_request_error", "Invalid request."),
                401 => ("authentication_error", "invalid x-api-key"),
                403 => ("permission_error", "Your API key does not have permission to use the specified resource."),
                404 => ("not_found_error", "The requested resource could not be found."),
                413 => ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
                529 => ("overloaded_error", "Overloaded"),
                _ => ("api_error", "Internal server error"),
            };
            anthropic(code, ty, message, &anthropic_request_id(kind, ids))
        }
        MockKind::Bedrock => {
            let (exception, message) = match code {
                400 => ("ValidationException", "Malformed input request, please reformat your input and try again."),
                403 => ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
                404 => (
                    "ResourceNotFoundException",
                    "Could not resolve the foundation model from the provided model identifier.",
                ),
                408 => {
                    ("ModelTimeoutException", "Model has timed out in processing the request. Try your request again.")
                }
                424 => ("ModelErrorException", "The model returned an error."),
                503 => ("ServiceUnavailableException", "Bedrock is unable to process your request."),
                _ => ("InternalServerException", "The server encountered an error processing your request."),
            };
            bedrock(code, exception, message, ids)
        }
        MockKind::Gemini => {
            let (grpc, message) = match code {
                400 => ("INVALID_ARGUMENT", "Request contains an invalid argument."),
                401 => ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
                403 => ("PERMISSION_DENIED", "The caller does not have permission"),
                404 => ("NOT_FOUND", "Requested entity was not found."),
                503 => ("UNAVAILABLE", "The model is overloaded. Please try again later."),
                504 => ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
                _ => ("INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
            };
            google(code, message, grpc)
        }
    }
}

/// What the provider answers for a path or method it does not serve.
pub(crate) fn not_found(kind: MockKind, method: &str, path: &str, ids: &IdGen) -> Buffered {
    match kind {
        MockKind::Openai => openai(
            404,
            &format!("Invalid URL ({method} {path})"),
            "invalid_request_error",
            None,
            None,
        ),
        MockKind::Azure => azure(404, "404", "Resource not found"),
        MockKind::HostedVllm => Buffered::json(404, &json!({"detail": "Not Found"})),
        MockKind::Anthropic | MockKind::AzureAi => {
            anthropic(404, "not_found_error", "Not Found", &ids.anthropic_request_id())
        }
        MockKind::Bedrock => Buffered::json(
            404,
            &json!({"Output": {"__type": "com.amazon.coral.service#UnknownOperationException", "message": Value::Null}, "Version": "1.0"}),
        )
        .with_header("x-amzn-requestid", ids.uuid()),
        MockKind::VertexAi | MockKind::Gemini => google(404, "Requested entity was not found.", "NOT_FOUND"),
    }
}
