//! Security: credentials stay where they belong, nothing a client sends
//! redirects a call, no configured secret leaks into a response, and
//! unauthenticated callers reach nothing when the gateway has a master key.

use super::exchange::{masked, Attribution, Endpoint, Exchange, Setup, UpstreamCall};
use super::{violation, Violation};

/// Where in an upstream request a value appears, if it does.
fn appears_in(call: &UpstreamCall, needle: &str) -> Option<String> {
    let r = &call.request;
    if let Some((name, _)) = r.headers.iter().find(|(_, v)| v.contains(needle)) {
        return Some(format!("header {name}"));
    }
    if r.path.contains(needle) || crate::mocks::percent_decode(&r.path, false).contains(needle) {
        return Some("the path".into());
    }
    if r.query.as_deref().is_some_and(|q| q.contains(needle) || crate::mocks::percent_decode(q, true).contains(needle))
    {
        return Some("the query".into());
    }
    if String::from_utf8_lossy(&r.body).contains(needle) {
        return Some("the body".into());
    }
    None
}

/// The credential an upstream request carries: a bearer token, an API-key
/// header, or the access key id of a SigV4 signature.
fn presented_credential(call: &UpstreamCall) -> Option<(String, String)> {
    let r = &call.request;
    if let Some(v) = r.header("authorization") {
        if let Some(rest) = v.strip_prefix("AWS4-HMAC-SHA256") {
            let id = rest.split("Credential=").nth(1)?.split('/').next()?.trim();
            return Some(("authorization (SigV4 access key id)".into(), id.to_string()));
        }
        let token = v.split_once(' ').map(|(_, t)| t.trim()).unwrap_or(v.trim());
        return Some(("authorization".into(), token.to_string()));
    }
    for h in ["x-api-key", "api-key", "x-goog-api-key"] {
        if let Some(v) = r.header(h) {
            return Some((h.to_string(), v.trim().to_string()));
        }
    }
    None
}

/// The public API hosts of the providers a gateway calls (their own
/// documentation's endpoints). A connection to one that no deployment names
/// is a model call sent away from its configured `api_base`, and a model
/// call carries the deployment's credential.
const PROVIDER_API_HOSTS: &[&str] = &[
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "aiplatform.googleapis.com",
    "api.groq.com",
    "api.together.xyz",
    "api.fireworks.ai",
    "api.deepseek.com",
    "api.mistral.ai",
    "openrouter.ai",
    "api.x.ai",
    "api.perplexity.ai",
    "api.cerebras.ai",
    "integrate.api.nvidia.com",
    "api.cohere.com",
    "api.cohere.ai",
];

/// Host suffixes of per-account or per-region provider endpoints.
const PROVIDER_API_SUFFIXES: &[&str] = &[
    ".openai.azure.com",
    ".services.ai.azure.com",
    ".inference.ai.azure.com",
    "-aiplatform.googleapis.com",
    ".amazonaws.com",
];

fn is_provider_api(host: &str) -> bool {
    PROVIDER_API_HOSTS.contains(&host)
        || PROVIDER_API_SUFFIXES.iter().any(|s| host.ends_with(s))
            && (!host.ends_with(".amazonaws.com") || host.starts_with("bedrock"))
}

/// Egress to a provider's public API that the config does not name.
fn egress(x: &Exchange, setup: &Setup, out: &mut Vec<Violation>) {
    for a in &x.egress {
        if is_provider_api(&a.host) && !setup.configured_hosts.contains(&a.host) {
            out.push(violation(
                "security.credential-to-its-host",
                format!(
                    "while serving this request the gateway connected to {}:{} ({}), a provider's public API that no \
                     deployment points at: a call sent away from its configured api_base, with that deployment's credential",
                    a.host, a.port, a.method
                ),
            ));
        }
    }
}

pub(super) fn check(x: &Exchange, setup: &Setup, out: &mut Vec<Violation>) {
    egress(x, setup, out);
    // Secrets in what the client got.
    for secret in &setup.secrets {
        let in_header = x.response.headers.iter().find(|(_, v)| v.contains(&secret.value)).map(|(n, _)| n.clone());
        let in_body = String::from_utf8_lossy(&x.response.body).contains(&secret.value);
        if let Some(place) = in_header.map(|h| format!("header {h}")).or(in_body.then(|| "body".to_string())) {
            out.push(violation(
                "security.no-secret-in-response",
                format!("{} {} answer's {place} contains {}", x.request.method, x.request.path, masked(secret)),
            ));
        }
    }
    let endpoint = Endpoint::of(&x.request.path);
    let presented = x.request.presented_key().map(str::to_string);
    if setup.auth_required && presented.is_none() && (endpoint.calls_a_model() || endpoint == Endpoint::KeyAdmin) {
        if (200..300).contains(&x.response.status) {
            out.push(violation(
                "security.unauthenticated-refused",
                format!("{} {} without a credential got {}", x.request.method, x.request.path, x.response.status),
            ));
        }
        // The client's request reaching a provider: a model call. A
        // gateway's own side lookup (`GET /v1/models`) while it refuses the
        // client is not the client's request getting through.
        if let Some(call) = x.model_calls().next().filter(|_| x.attribution == Attribution::Exact) {
            out.push(violation(
                "security.unauthenticated-refused",
                format!("{} {} without a credential reached {}", x.request.method, x.request.path, call.provider),
            ));
        }
    }
    for call in &x.upstream {
        if setup.sentinels.contains(&call.provider) {
            out.push(violation(
                "security.no-redirect",
                format!(
                    "{}, which no deployment points at, received {} {}",
                    call.provider, call.request.method, call.request.path
                ),
            ));
        }
        if let Some(key) = presented.as_deref().filter(|k| k.len() >= 8) {
            if let Some(place) = appears_in(call, key) {
                out.push(violation(
                    "security.client-key-not-forwarded",
                    format!("the client's gateway credential reached {} in {place}", call.provider),
                ));
            }
        }
        let own = setup.credentials.get(&call.provider);
        for (other, creds) in &setup.credentials {
            if other == &call.provider {
                continue;
            }
            for cred in creds.iter().filter(|c| c.len() >= 8 && !own.is_some_and(|o| o.contains(*c))) {
                if let Some(place) = appears_in(call, cred) {
                    let label = setup
                        .secrets
                        .iter()
                        .find(|s| &s.value == cred)
                        .map(masked)
                        .unwrap_or_else(|| format!("a credential configured for {other}"));
                    out.push(violation(
                        "security.credential-to-its-host",
                        format!("{label}, configured for {other}, reached {} in {place}", call.provider),
                    ));
                }
            }
        }
        if let (Some(own), Some((header, value))) = (own, presented_credential(call)) {
            if !own.is_empty() && !own.contains(&value) && !setup.keyless.contains(&call.provider) {
                let shown: String = value.chars().take(4).collect();
                out.push(violation(
                    "security.credential-not-replaced",
                    format!(
                        "{} received a credential in {header} ({shown}…) that is not configured for it",
                        call.provider
                    ),
                ));
            }
        }
    }
}
