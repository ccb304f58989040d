//! Upstream providers: what each one is called, how its URL and auth are
//! built, and which OpenAI parameters it accepts.
//!
//! `openai_compat` speaks the OpenAI wire format (openai, azure, hosted_vllm);
//! `anthropic`, `bedrock` and `vertex` carry the Anthropic family.

pub mod anthropic;
pub mod bedrock;
pub mod params;

use serde::Serialize;

/// The providers this gateway can call. Parsed from the `provider/` prefix of
/// a deployment's `litellm_params.model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Openai,
    Azure,
    HostedVllm,
    Anthropic,
    Bedrock,
    VertexAi,
    AzureAi,
}

impl Provider {
    pub const ALL: [Provider; 7] = [
        Provider::Openai,
        Provider::Azure,
        Provider::HostedVllm,
        Provider::Anthropic,
        Provider::Bedrock,
        Provider::VertexAi,
        Provider::AzureAi,
    ];

    pub fn parse(prefix: &str) -> Option<Provider> {
        Some(match prefix {
            "openai" => Provider::Openai,
            "azure" => Provider::Azure,
            "hosted_vllm" => Provider::HostedVllm,
            "anthropic" => Provider::Anthropic,
            "bedrock" => Provider::Bedrock,
            "vertex_ai" => Provider::VertexAi,
            "azure_ai" => Provider::AzureAi,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Azure => "azure",
            Provider::HostedVllm => "hosted_vllm",
            Provider::Anthropic => "anthropic",
            Provider::Bedrock => "bedrock",
            Provider::VertexAi => "vertex_ai",
            Provider::AzureAi => "azure_ai",
        }
    }

    /// Whether chat requests go out in Anthropic's Messages format.
    /// `azure_ai` hosts many families; only Claude models speak Messages there.
    pub fn speaks_messages(self, upstream_model: &str) -> bool {
        match self {
            Provider::Anthropic | Provider::Bedrock | Provider::VertexAi => true,
            Provider::AzureAi => upstream_model.to_ascii_lowercase().contains("claude"),
            _ => false,
        }
    }

    pub fn beta_target(self) -> Option<crate::gateway::beta::BetaTarget> {
        use crate::gateway::beta::BetaTarget;
        Some(match self {
            Provider::Anthropic => BetaTarget::Anthropic,
            Provider::Bedrock => BetaTarget::Bedrock,
            Provider::VertexAi => BetaTarget::VertexAi,
            Provider::AzureAi => BetaTarget::AzureAi,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Joins a base URL and a path without doubling or dropping slashes.
pub fn join_url(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

/// A model or deployment name as one URL path segment: every byte but RFC
/// 3986's unreserved characters percent-encoded, so a name can never add
/// segments, a query or a fragment to the upstream URL. `.` and `..` are
/// refused: URL parsers treat them as dot segments even when encoded.
pub fn path_segment(name: &str) -> Result<String, String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("`{name}` is not a valid model name"));
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn a_model_name_stays_one_path_segment() {
        assert_eq!(path_segment("gpt-4o_mini.v1~x").unwrap(), "gpt-4o_mini.v1~x");
        assert_eq!(path_segment("claude@20240620").unwrap(), "claude%4020240620");
        assert_eq!(path_segment("../../../admin?x=1#").unwrap(), "..%2F..%2F..%2Fadmin%3Fx%3D1%23");
        assert_eq!(path_segment("%2e%2e").unwrap(), "%252e%252e");
        for bad in ["", ".", ".."] {
            assert!(path_segment(bad).is_err(), "{bad:?}");
        }
    }
}
