//! What happens when a model group cannot answer: LiteLLM's fallbacks
//! between groups (general, context-window, content-policy, defaults), model
//! group aliases, and cooldowns of deployments that keep failing.
//!
//! The order of events for one request: the group's deployments are tried in
//! rotation (`proxy::fallback::with_fallbacks`, skipping any at its rpm/tpm or cooling
//! down); if the last failure is one a fallback is for, the fallback groups
//! are tried in order, each with its own deployments. Fallbacks are not
//! followed from a fallback group (no chains of chains, no loops), and a
//! virtual key only ever reaches fallback groups it may use itself.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

use crate::gateway::config::Config;
use crate::gateway::error::ApiError;

/// Why a group's answer sends the request to fallback groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackKind {
    /// A failure a retry elsewhere may fix: connection, timeout, 429, 5xx.
    General,
    /// The prompt does not fit the model's context window.
    ContextWindow,
    /// The provider refused the content under its policy.
    ContentPolicy,
}

/// Which fallback list an error calls for, if any. Other client errors
/// (a malformed body, a bad parameter) are the client's to fix: no fallback.
/// How many more deployments `policy` allows after failure `e` (None: the
/// policy says nothing about its kind; `num_retries` applies).
pub(crate) fn retries_allowed(policy: &crate::gateway::config::RetryPolicy, e: &ApiError) -> Option<u32> {
    match e {
        ApiError::GatewayTimeout(_) => policy.timeout,
        ApiError::RateLimited { .. } | ApiError::Upstream { status: 429, .. } => policy.rate_limit,
        ApiError::BadGateway(_) => policy.internal_server,
        ApiError::Upstream { status, .. } if *status >= 500 => policy.internal_server,
        _ => None,
    }
}

pub(crate) fn classify(e: &ApiError) -> Option<FallbackKind> {
    match e {
        ApiError::BadGateway(_) | ApiError::GatewayTimeout(_) | ApiError::RateLimited { .. } => {
            Some(FallbackKind::General)
        }
        ApiError::Upstream { status, message, error_type, .. } => {
            let text = format!("{} {}", error_type.as_deref().unwrap_or_default(), message).to_ascii_lowercase();
            if *status == 400 && is_context_window(&text) {
                Some(FallbackKind::ContextWindow)
            } else if (*status == 400 || *status == 403) && is_content_policy(&text) {
                Some(FallbackKind::ContentPolicy)
            } else if *status == 429 || *status >= 500 {
                Some(FallbackKind::General)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// OpenAI's `context_length_exceeded` ("maximum context length is"),
/// Anthropic's "prompt is too long", and the generic wording.
fn is_context_window(text: &str) -> bool {
    ["context_length_exceeded", "maximum context length", "prompt is too long", "context window"]
        .iter()
        .any(|p| text.contains(p))
}

/// OpenAI's `content_policy_violation`, Azure's `content_filter` ("content
/// management policy").
fn is_content_policy(text: &str) -> bool {
    ["content_policy_violation", "content_filter", "content management policy", "content policy"]
        .iter()
        .any(|p| text.contains(p))
}

/// Model group -> its fallback groups, in order.
type FallbackMap = HashMap<String, Vec<String>>;

/// The fallback lists and aliases of a config, read once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FallbackPolicy {
    general: FallbackMap,
    context_window: FallbackMap,
    content_policy: FallbackMap,
    defaults: Vec<String>,
    /// alias -> (group, hidden from `/v1/models`)
    aliases: BTreeMap<String, (String, bool)>,
}

/// A fallback or alias setting that is not in a shape LiteLLM accepts,
/// naming the setting (and the group or alias) and what was there.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FallbackError {
    #[error("{setting}: expected a list like [{{\"group\": [\"fallback\"]}}]")]
    NotAList { setting: String },
    #[error("{setting}: unexpected entry {entry}")]
    Entry { setting: String, entry: Value },
    #[error("{setting}.{group}: expected a list of model names")]
    NotGroups { setting: String, group: String },
    #[error("{setting}.{group}: expected names")]
    NotNames { setting: String, group: String },
    #[error("model_group_alias.{alias}: expected `model: <group>`")]
    AliasWithoutModel { alias: String },
    #[error("model_group_alias.{alias}: expected a group name, got {value}")]
    Alias { alias: String, value: Value },
}

impl FallbackPolicy {
    /// Reads the settings; anything malformed is an error naming the setting.
    pub fn from_config(config: &Config) -> Result<FallbackPolicy, FallbackError> {
        let r = config.reliability();
        let mut p = FallbackPolicy { defaults: r.default_fallbacks.clone().unwrap_or_default(), ..Default::default() };
        if let Some(v) = &r.fallbacks {
            let (map, flat) = fallback_map("fallbacks", v)?;
            p.general = map;
            // A flat list of names (seen in real configs) means "for every group".
            if !flat.is_empty() && p.defaults.is_empty() {
                p.defaults = flat;
            }
        }
        if let Some(v) = &r.context_window_fallbacks {
            p.context_window = fallback_map("context_window_fallbacks", v)?.0;
        }
        if let Some(v) = &r.content_policy_fallbacks {
            p.content_policy = fallback_map("content_policy_fallbacks", v)?.0;
        }
        for (alias, target) in r.model_group_alias.iter().flatten() {
            let entry = match target {
                Value::String(g) => (g.clone(), false),
                Value::Object(o) => match o.get("model").and_then(Value::as_str) {
                    Some(g) => (g.to_string(), o.get("hidden").and_then(Value::as_bool).unwrap_or(false)),
                    None => return Err(FallbackError::AliasWithoutModel { alias: alias.clone() }),
                },
                other => return Err(FallbackError::Alias { alias: alias.clone(), value: other.clone() }),
            };
            p.aliases.insert(alias.clone(), entry);
        }
        Ok(p)
    }

    /// The fallback groups for `group` after a failure of `kind`.
    pub fn chain(&self, group: &str, kind: FallbackKind) -> &[String] {
        match kind {
            FallbackKind::General => self.general.get(group).map(Vec::as_slice).unwrap_or(&self.defaults),
            FallbackKind::ContextWindow => self.context_window.get(group).map(Vec::as_slice).unwrap_or(&[]),
            FallbackKind::ContentPolicy => self.content_policy.get(group).map(Vec::as_slice).unwrap_or(&[]),
        }
    }

    /// The group an alias stands for.
    pub fn alias(&self, name: &str) -> Option<&str> {
        self.aliases.get(name).map(|(g, _)| g.as_str())
    }

    /// Aliases `/v1/models` lists (not the hidden ones).
    pub(crate) fn visible_aliases(&self) -> impl Iterator<Item = &str> {
        self.aliases.iter().filter(|(_, (_, hidden))| !hidden).map(|(a, _)| a.as_str())
    }
}

/// `[{group: [..]}, ..]` (or one map) → group -> fallbacks; plain strings in
/// the list are returned apart.
fn fallback_map(setting: &str, v: &Value) -> Result<(FallbackMap, Vec<String>), FallbackError> {
    let mut map = HashMap::new();
    let mut flat = Vec::new();
    let mut add = |group: &str, targets: &Value| -> Result<(), FallbackError> {
        let list = match targets {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .map(|t| {
                    t.as_str().map(str::to_string).ok_or_else(|| FallbackError::NotNames {
                        setting: setting.to_string(),
                        group: group.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(FallbackError::NotGroups { setting: setting.to_string(), group: group.to_string() }),
        };
        map.entry(group.to_string()).or_insert_with(Vec::new).extend(list);
        Ok(())
    };
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![v],
        Value::Null => vec![],
        _ => return Err(FallbackError::NotAList { setting: setting.to_string() }),
    };
    for item in items {
        match item {
            Value::Object(o) => {
                for (group, targets) in o {
                    add(group, targets)?;
                }
            }
            Value::String(s) => flat.push(s.clone()),
            other => return Err(FallbackError::Entry { setting: setting.to_string(), entry: other.clone() }),
        }
    }
    Ok((map, flat))
}

/// Cooldown settings: a deployment that fails more than `allowed_fails`
/// times in a minute sits out `cooldown` (LiteLLM: 3 and 5 s by default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CooldownPolicy {
    pub enabled: bool,
    pub allowed_fails: u64,
    pub cooldown: Duration,
}

impl CooldownPolicy {
    pub(crate) const DEFAULT_ALLOWED_FAILS: u64 = 3;
    pub(crate) const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);

    pub fn from_config(config: &Config) -> CooldownPolicy {
        let r = config.reliability();
        CooldownPolicy {
            enabled: !r.disable_cooldowns.unwrap_or(false),
            allowed_fails: r.allowed_fails.unwrap_or(Self::DEFAULT_ALLOWED_FAILS),
            cooldown: r
                .cooldown_time
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .unwrap_or(Self::DEFAULT_COOLDOWN),
        }
    }
}

/// One deployment's recent failures and cooldown, on the gateway's clock.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    failures: VecDeque<Duration>,
    cooled_until: Option<Duration>,
}

const FAIL_WINDOW: Duration = Duration::from_secs(60);

impl Health {
    /// The time left in a cooldown at `now`, if any.
    pub(crate) fn cooling(&self, now: Duration) -> Option<Duration> {
        let mut s = self.inner.lock();
        match s.cooled_until {
            Some(until) if now < until => Some(until - now),
            Some(_) => {
                // Back in rotation with a clean slate.
                s.cooled_until = None;
                s.failures.clear();
                None
            }
            None => None,
        }
    }

    /// Counts a failure; `true` when it starts a cooldown.
    pub(crate) fn record_failure(&self, now: Duration, policy: &CooldownPolicy) -> bool {
        let mut s = self.inner.lock();
        while s.failures.front().is_some_and(|t| now.saturating_sub(*t) >= FAIL_WINDOW) {
            s.failures.pop_front();
        }
        s.failures.push_back(now);
        if s.failures.len() as u64 > policy.allowed_fails {
            s.cooled_until = Some(now + policy.cooldown);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> Result<FallbackPolicy, FallbackError> {
        FallbackPolicy::from_config(&Config::parse(yaml, "t.yaml").unwrap().config)
    }

    #[test]
    fn fallback_lists_in_every_shape_real_configs_use() {
        let p = policy(
            "router_settings:\n  fallbacks: [{a: [b, c]}, {d: e}]\n  context_window_fallbacks: [{a: [big]}]\n  \
             model_group_alias: {gpt4: a, secret: {model: d, hidden: true}}\n\
             litellm_settings:\n  fallbacks: [{ignored: [x]}]\n  default_fallbacks: [z]\n",
        )
        .unwrap();
        assert_eq!(p.chain("a", FallbackKind::General), ["b", "c"]);
        assert_eq!(p.chain("d", FallbackKind::General), ["e"]);
        assert_eq!(p.chain("other", FallbackKind::General), ["z"], "defaults for the rest");
        assert!(p.chain("ignored", FallbackKind::General) == ["z"], "router_settings wins over litellm_settings");
        assert_eq!(p.chain("a", FallbackKind::ContextWindow), ["big"]);
        assert!(p.chain("a", FallbackKind::ContentPolicy).is_empty());
        assert_eq!(p.alias("gpt4"), Some("a"));
        assert_eq!(p.visible_aliases().collect::<Vec<_>>(), ["gpt4"]);
        let flat = policy("litellm_settings:\n  fallbacks: [x, y]\n").unwrap();
        assert_eq!(flat.chain("any", FallbackKind::General), ["x", "y"]);
        assert!(policy("router_settings: {fallbacks: [{a: 3}]}\n").unwrap_err().to_string().contains("fallbacks.a"));
    }

    #[test]
    fn errors_pick_their_fallback_list() {
        let up = |status: u16, message: &str| ApiError::Upstream {
            status,
            message: message.into(),
            provider: "openai".into(),
            error_type: Some("invalid_request_error".into()),
            retry_after: None,
        };
        assert_eq!(
            classify(&up(400, "This model's maximum context length is 8192 tokens")),
            Some(FallbackKind::ContextWindow)
        );
        assert_eq!(
            classify(&up(400, "prompt is too long: 210000 tokens > 200000 maximum")),
            Some(FallbackKind::ContextWindow)
        );
        assert_eq!(
            classify(&up(
                400,
                "The response was filtered due to the prompt triggering Azure OpenAI's content management policy"
            )),
            Some(FallbackKind::ContentPolicy)
        );
        assert_eq!(classify(&up(503, "overloaded")), Some(FallbackKind::General));
        assert_eq!(classify(&up(429, "slow down")), Some(FallbackKind::General));
        assert_eq!(classify(&up(400, "messages: field required")), None, "the client's own mistake");
        assert_eq!(classify(&ApiError::GatewayTimeout("t".into())), Some(FallbackKind::General));
    }

    #[test]
    fn a_deployment_cools_down_after_too_many_failures_and_comes_back() {
        let p = CooldownPolicy { enabled: true, allowed_fails: 2, cooldown: Duration::from_secs(5) };
        let h = Health::default();
        let t = Duration::from_secs(100);
        assert!(!h.record_failure(t, &p));
        assert!(!h.record_failure(t, &p));
        assert!(h.record_failure(t + Duration::from_secs(1), &p), "the third failure in a minute");
        assert_eq!(h.cooling(t + Duration::from_secs(2)), Some(Duration::from_secs(4)));
        assert_eq!(h.cooling(t + Duration::from_secs(6)), None, "back after the cooldown");
        assert!(!h.record_failure(t + Duration::from_secs(7), &p), "with a clean slate");
        // Failures older than a minute do not count.
        let h = Health::default();
        assert!(!h.record_failure(t, &p));
        assert!(!h.record_failure(t, &p));
        assert!(!h.record_failure(t + FAIL_WINDOW, &p));
    }
}
