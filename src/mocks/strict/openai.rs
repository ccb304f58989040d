//! OpenAI and Azure OpenAI.

use super::super::errors;
use super::super::journal::RecordedRequest;
use super::super::route::Route;
use super::super::wire::Buffered;
use super::super::MockKind;
use super::{has, has_bearer, non_empty_header, parse_object};

pub(crate) const NO_API_KEY: &str = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys.";

pub(crate) const INVALID_JSON: &str = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)";

pub(crate) const NO_MODEL: &str = "you must provide a model parameter";

pub(super) fn check(kind: MockKind, req: &RecordedRequest, route: &Route) -> Option<Buffered> {
    // Authentication first, for every path.
    if kind == MockKind::Azure {
        // Azure takes a key in `api-key` or an Entra ID token as Bearer.
        if !non_empty_header(req, "api-key") && !has_bearer(req) {
            return Some(errors::azure(401, "401", errors::AZURE_ACCESS_DENIED));
        }
    } else if !has_bearer(req) {
        return Some(errors::openai(401, NO_API_KEY, "invalid_request_error", None, None));
    }

    let (deployment, required) = match route {
        Route::Chat { deployment } => (deployment, "messages"),
        Route::Embeddings { deployment } => (deployment, "input"),
        _ => return None,
    };
    // Azure's data-plane routes under /openai/deployments need api-version;
    // without it the gateway answers 404, not 400.
    if deployment.is_some() && !matches!(req.query_param("api-version"), Some(v) if !v.is_empty()) {
        return Some(errors::azure(404, "404", "Resource not found"));
    }
    let obj = match parse_object(req) {
        Ok(Some(obj)) => obj,
        Ok(None) | Err(_) => {
            return Some(errors::openai(400, INVALID_JSON, "invalid_request_error", None, None));
        }
    };
    // Azure deployment routes take the model from the path.
    if deployment.is_none() && !has(obj, "model") {
        return Some(errors::openai(400, NO_MODEL, "invalid_request_error", None, None));
    }
    if !has(obj, required) {
        return Some(errors::openai(
            400,
            &format!("Missing required parameter: '{required}'."),
            "invalid_request_error",
            Some(required),
            Some("missing_required_parameter"),
        ));
    }
    None
}
