//! Upstream providers: what each one is called, how its URL and auth are
//! built, and which OpenAI parameters it accepts.
//!
//! openai, azure, hosted_vllm and the OpenAI-compatible family ([`Compat`]:
//! groq, together_ai, mistral, ollama, …) speak the OpenAI wire format;
//! `anthropic`, `bedrock` (and Vertex AI, Azure AI) carry the Anthropic family.

pub mod anthropic;
pub mod bedrock;
pub mod messages_bridge;
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
    /// A provider LiteLLM knows by prefix that speaks OpenAI's API at its own
    /// base URL with its own key variable.
    Compat(Compat),
}

/// The OpenAI-compatible providers: prefix, default base URL (none where
/// the user must say), and the environment variable LiteLLM reads the key from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Compat {
    Groq,
    TogetherAi,
    FireworksAi,
    Deepseek,
    Mistral,
    Openrouter,
    Xai,
    Perplexity,
    Ollama,
    OllamaChat,
    LmStudio,
    Cerebras,
    NvidiaNim,
    OpenaiCompatible,
    CustomOpenai,
}

/// `(variant, prefix, default base URL, key variable)`: one row a provider.
const COMPAT: &[(Compat, &str, Option<&str>, Option<&str>)] = &[
    (Compat::Groq, "groq", Some("https://api.groq.com/openai/v1"), Some("GROQ_API_KEY")),
    (Compat::TogetherAi, "together_ai", Some("https://api.together.xyz/v1"), Some("TOGETHERAI_API_KEY")),
    (Compat::FireworksAi, "fireworks_ai", Some("https://api.fireworks.ai/inference/v1"), Some("FIREWORKS_AI_API_KEY")),
    (Compat::Deepseek, "deepseek", Some("https://api.deepseek.com/v1"), Some("DEEPSEEK_API_KEY")),
    (Compat::Mistral, "mistral", Some("https://api.mistral.ai/v1"), Some("MISTRAL_API_KEY")),
    (Compat::Openrouter, "openrouter", Some("https://openrouter.ai/api/v1"), Some("OPENROUTER_API_KEY")),
    (Compat::Xai, "xai", Some("https://api.x.ai/v1"), Some("XAI_API_KEY")),
    (Compat::Perplexity, "perplexity", Some("https://api.perplexity.ai"), Some("PERPLEXITYAI_API_KEY")),
    (Compat::Ollama, "ollama", Some("http://localhost:11434/v1"), None),
    (Compat::OllamaChat, "ollama_chat", Some("http://localhost:11434/v1"), None),
    (Compat::LmStudio, "lm_studio", Some("http://localhost:1234/v1"), Some("LM_STUDIO_API_KEY")),
    (Compat::Cerebras, "cerebras", Some("https://api.cerebras.ai/v1"), Some("CEREBRAS_API_KEY")),
    (Compat::NvidiaNim, "nvidia_nim", Some("https://integrate.api.nvidia.com/v1"), Some("NVIDIA_NIM_API_KEY")),
    (Compat::OpenaiCompatible, "openai_compatible", None, None),
    (Compat::CustomOpenai, "custom_openai", None, None),
];

impl Compat {
    fn row(self) -> &'static (Compat, &'static str, Option<&'static str>, Option<&'static str>) {
        // Every variant has a row (checked by a test); the first row is a
        // harmless stand-in that keeps this total.
        COMPAT.iter().find(|r| r.0 == self).unwrap_or(&COMPAT[0])
    }

    pub fn prefix(self) -> &'static str {
        self.row().1
    }

    /// Where requests go when the deployment sets no `api_base`.
    pub fn default_base(self) -> Option<&'static str> {
        self.row().2
    }

    /// The environment variable the key comes from when the deployment sets
    /// no `api_key`.
    pub fn key_env(self) -> Option<&'static str> {
        self.row().3
    }
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
        if let Some(r) = COMPAT.iter().find(|r| r.1 == prefix) {
            return Some(Provider::Compat(r.0));
        }
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
            Provider::Compat(c) => c.prefix(),
        }
    }

    /// Every prefix this gateway knows, for messages.
    pub fn known_prefixes() -> Vec<&'static str> {
        Provider::ALL.iter().map(|p| p.as_str()).chain(COMPAT.iter().map(|r| r.1)).collect()
    }

    /// The provider a cost-map `litellm_provider` value names, for a bare
    /// model name. Vertex AI and Bedrock entries count only where this
    /// gateway speaks the model's API there (Claude).
    pub fn from_litellm_provider(litellm_provider: &str, model: &str) -> Option<Provider> {
        match litellm_provider {
            "openai" => Some(Provider::Openai),
            "azure" => Some(Provider::Azure),
            "anthropic" => Some(Provider::Anthropic),
            "bedrock" if model.contains("anthropic.") => Some(Provider::Bedrock),
            "vertex_ai-anthropic_models" => Some(Provider::VertexAi),
            "azure_ai" => Some(Provider::AzureAi),
            other => Provider::parse(other).filter(|p| matches!(p, Provider::Compat(_))),
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
    use super::{path_segment, Compat, Provider, COMPAT};

    #[test]
    fn every_compatible_provider_has_one_row_and_parses_back() {
        for (i, r) in COMPAT.iter().enumerate() {
            assert_eq!(COMPAT.iter().position(|o| o.0 == r.0), Some(i), "one row for {:?}", r.0);
            assert_eq!(Provider::parse(r.1), Some(Provider::Compat(r.0)));
            assert_eq!(Provider::Compat(r.0).as_str(), r.1);
        }
        assert_eq!(Compat::Groq.key_env(), Some("GROQ_API_KEY"));
        assert_eq!(Provider::from_litellm_provider("groq", "llama3-8b-8192"), Some(Provider::Compat(Compat::Groq)));
        assert_eq!(Provider::from_litellm_provider("openai", "gpt-4o"), Some(Provider::Openai));
        assert_eq!(Provider::from_litellm_provider("vertex_ai-language-models", "gemini-pro"), None);
    }

    #[test]
    fn a_model_name_stays_one_path_segment() {
        assert_eq!(path_segment("gpt-4o_mini.v1~x").unwrap(), "gpt-4o_mini.v1~x");
        assert!(super::Compat::CustomOpenai.prefix() == "custom_openai");
        assert_eq!(path_segment("claude@20240620").unwrap(), "claude%4020240620");
        assert_eq!(path_segment("../../../admin?x=1#").unwrap(), "..%2F..%2F..%2Fadmin%3Fx%3D1%23");
        assert_eq!(path_segment("%2e%2e").unwrap(), "%252e%252e");
        for bad in ["", ".", ".."] {
            assert!(path_segment(bad).is_err(), "{bad:?}");
        }
    }
}
