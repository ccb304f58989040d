//! Model name -> deployments.
//!
//! Exact names first, then wildcard patterns (`openai/*`, `openai/gpt-4*`,
//! `*`), LiteLLM-style: the part the `*` matched is substituted into the
//! deployment's model. A bare model name (`claude-sonnet-4-6`) reaches a
//! provider wildcard (`anthropic/*`) through the catalog's provider index.
//!
//! Patterns are kept in a map keyed by their literal prefix; a lookup tries the
//! request's own prefixes, longest first, only at the lengths some pattern has.
//! The cost depends on the model name's length, not on how many patterns exist.

use crate::gateway::catalog::Catalog;
use crate::gateway::config::{secs, Config, LitellmParams, ModelDeployment};
use crate::gateway::providers::{Endpoint, EndpointError, EndpointInput, Provider};
use crate::gateway::rate::RateLimiter;
use crate::gateway::upstream::ClientKey;
use foldhash::{HashMap, HashMapExt};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One upstream target, resolved from a `model_list` entry.
#[derive(Debug)]
pub struct Deployment {
    pub id: String,
    pub model_name: String,
    /// None for a catch-all (`model: "*"`): the provider then comes from the
    /// requested model.
    pub provider: Option<Provider>,
    /// The model after `provider/`, possibly with a `*`.
    pub upstream_model: String,
    pub params: LitellmParams,
    pub model_info: Option<serde_json::Value>,
    pub timeout: Option<Duration>,
    pub stream_timeout: Option<Duration>,
    /// `litellm_params.rpm` / `tpm`: a deployment at its limit is skipped
    /// for the next one in its group, as LiteLLM's router does.
    pub limits: RateLimiter,
    /// Why it cannot serve (unknown provider, a missing environment
    /// variable, no api_base…): kept for `/health` and `/ui` and for a clear
    /// error, never routed to.
    pub unavailable: Option<String>,
    /// Recent failures and cooldown (`reliability`).
    pub health: crate::gateway::reliability::Health,
    /// Its endpoint for its provider (for a catch-all, for each provider),
    /// resolved at load, or why it could not be.
    reach: Vec<(Provider, Result<Arc<Reach>, EndpointError>)>,
}

/// Where and how a deployment's calls go for one provider, and the key its
/// HTTP client is cached under: both computed once, when the config loads.
#[derive(Debug)]
pub struct Reach {
    pub endpoint: Endpoint,
    pub client_key: ClientKey,
}

/// The connect timeout when a deployment sets none.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Deployment {
    /// Its endpoint for `provider`, or why it has none (a catch-all asked
    /// for a provider that needs settings it lacks).
    pub fn reach(&self, provider: Provider) -> Result<&Arc<Reach>, ReachError> {
        match self.reach.iter().find(|(p, _)| *p == provider) {
            Some((_, Ok(r))) => Ok(r),
            Some((_, Err(reason))) => {
                Err(ReachError::Unresolved { deployment: self.id.clone(), provider, reason: reason.clone() })
            }
            None => Err(ReachError::NotServed { deployment: self.id.clone(), provider }),
        }
    }

    fn from_config(
        i: usize,
        d: &ModelDeployment,
        default_timeout: Option<Duration>,
        config: &Config,
        catalog: Option<&Catalog>,
    ) -> Self {
        let mut unavailable = d.unavailable.clone();
        let model = d.litellm_params.model.as_str();
        let (provider, upstream_model) = match resolve_provider(model, catalog) {
            Ok(pm) => pm,
            Err(reason) => {
                unavailable.get_or_insert(reason.to_string());
                (None, model.to_string())
            }
        };
        let params = d.litellm_params.clone();
        let connect_timeout = secs(d.litellm_params.connect_timeout).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let credential_fingerprint = crate::gateway::upstream::ClientKey::fingerprint(
            &[
                d.litellm_params.api_key.as_deref(),
                d.litellm_params.aws_access_key_id.as_deref(),
                d.litellm_params.aws_secret_access_key.as_deref(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
        );
        // Endpoints are resolved here, once: for a catch-all, one per
        // provider the requested model may name.
        let env = |n: &str| config.env_var(n);
        let providers: Vec<Provider> = match provider {
            Some(p) => vec![p],
            None if unavailable.is_none() => Provider::every(),
            None => Vec::new(),
        };
        let reach: Vec<(Provider, Result<Arc<Reach>, EndpointError>)> = providers
            .into_iter()
            .map(|p| {
                let input = EndpointInput { provider: p, params: &params, env: &env };
                let r = p.api().endpoint(&input).map(|endpoint| {
                    let client_key =
                        ClientKey::new(p.as_str(), &endpoint.base, &credential_fingerprint, connect_timeout);
                    Arc::new(Reach { endpoint, client_key })
                });
                (p, r)
            })
            .collect();
        if provider.is_some() {
            if let Some((_, Err(reason))) = reach.first() {
                unavailable.get_or_insert_with(|| reason.to_string());
            }
        }
        let id = d
            .model_info
            .as_ref()
            .and_then(|m| m.get("id"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("deployment-{i}"));
        Deployment {
            id,
            model_name: d.model_name.clone(),
            provider,
            upstream_model,
            unavailable,
            model_info: d.model_info.clone(),
            timeout: secs(d.litellm_params.timeout).or(default_timeout),
            params,
            stream_timeout: secs(d.litellm_params.stream_timeout),
            limits: RateLimiter::new(d.litellm_params.rpm, d.litellm_params.tpm),
            health: Default::default(),
            reach,
        }
    }
}

/// Why a deployment has no endpoint for a provider (a call routed there is
/// refused with this).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReachError {
    /// The endpoint could not be resolved at load.
    #[error("deployment `{deployment}` ({provider}): {reason}")]
    Unresolved { deployment: String, provider: Provider, reason: EndpointError },
    /// The deployment is not for this provider.
    #[error("deployment `{deployment}` does not serve {provider}")]
    NotServed { deployment: String, provider: Provider },
}

/// Why `litellm_params.model` names no provider this gateway calls.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ProviderError {
    #[error(
        "the cost map says `{model}` is served by `{litellm_provider}`, a provider this gateway does not call (it calls: {known})"
    )]
    NotCalled { model: String, litellm_provider: String, known: String },
    #[error("unknown provider `{prefix}` in `{model}` (known: {known})")]
    UnknownPrefix { model: String, prefix: String, known: String },
    #[error("`{model}` has no provider prefix and the cost map does not know it: write `provider/{model}`")]
    NoPrefix { model: String },
}

/// The provider and upstream model of `litellm_params.model`: `*`,
/// `provider/name`, or a bare name whose provider the cost map gives (as
/// LiteLLM does). `Err` says why the deployment cannot serve.
fn resolve_provider(model: &str, catalog: Option<&Catalog>) -> Result<(Option<Provider>, String), ProviderError> {
    if model == "*" {
        return Ok((None, "*".to_string()));
    }
    if let Some((p, rest)) = model.split_once('/') {
        if let Some(provider) = Provider::parse(p) {
            return Ok((Some(provider), rest.to_string()));
        }
    }
    let known = || Provider::known_prefixes().join(", ");
    let listed = catalog.and_then(|c| c.provider_of(model).map(str::to_string));
    match listed {
        Some(lp) => match Provider::from_litellm_provider(&lp, model) {
            Some(p) => Ok((Some(p), model.to_string())),
            None => Err(ProviderError::NotCalled { model: model.to_string(), litellm_provider: lp, known: known() }),
        },
        None => match model.split_once('/') {
            Some((p, _)) => {
                Err(ProviderError::UnknownPrefix { model: model.to_string(), prefix: p.to_string(), known: known() })
            }
            None => Err(ProviderError::NoPrefix { model: model.to_string() }),
        },
    }
}

/// A request's routing decision.
#[derive(Debug, Clone)]
pub struct Route {
    pub deployment: Arc<Deployment>,
    pub provider: Provider,
    /// The model name sent upstream, wildcard substituted.
    pub upstream_model: String,
}

#[derive(Debug)]
struct Group {
    deployments: Vec<Arc<Deployment>>,
    next: AtomicUsize,
}

impl Group {
    fn new() -> Self {
        Group { deployments: Vec::new(), next: AtomicUsize::new(0) }
    }
    /// All deployments, starting at the round-robin position.
    fn rotation(&self) -> impl Iterator<Item = &Arc<Deployment>> {
        let n = self.deployments.len();
        let start = if n > 1 { self.next.fetch_add(1, Ordering::Relaxed) % n } else { 0 };
        (0..n).map(move |i| &self.deployments[(start + i) % n])
    }
}

#[derive(Debug)]
pub struct ModelRouter {
    exact: HashMap<String, Group>,
    /// Literal prefix (text before `*`) -> deployments.
    patterns: HashMap<String, Group>,
    /// Distinct prefix lengths, longest first.
    pattern_lengths: Vec<usize>,
    /// Provider -> its `provider/*` pattern key, so a bare name's lookup
    /// through the catalog needs no string building.
    provider_patterns: HashMap<String, String>,
    /// Deployments that cannot serve, with their reasons; never routed to.
    unavailable: Vec<Arc<Deployment>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("model_list[{index}] ({model_name}): {message}")]
    BadDeployment { index: usize, model_name: String, message: String },
}

impl ModelRouter {
    /// A router for `config` without a cost map: bare model names are
    /// unavailable (see `ModelRouter::from_config_with`).
    pub fn from_config(config: &Config) -> Result<Self, RouteError> {
        Self::from_config_with(config, None)
    }

    /// Builds the router; `catalog` tells the provider of bare model names.
    /// A deployment that cannot serve is kept as unavailable with its
    /// reason; only a malformed `model_name` refuses the config.
    pub(crate) fn from_config_with(config: &Config, catalog: Option<&Catalog>) -> Result<Self, RouteError> {
        let default_timeout = secs(config.router_settings.timeout.or(config.litellm_settings.request_timeout));
        let mut exact: HashMap<String, Group> = HashMap::new();
        let mut patterns: HashMap<String, Group> = HashMap::new();
        let mut unavailable = Vec::new();
        for (i, d) in config.model_list.iter().enumerate() {
            let dep = Deployment::from_config(i, d, default_timeout, config, catalog);
            let name = d.model_name.clone();
            let dep = Arc::new(dep);
            if let Some(reason) = &dep.unavailable {
                tracing::warn!(index = i, model_name = %name, %reason, "deployment unavailable");
                if name.find('*').is_some_and(|pos| pos != name.len() - 1) {
                    return Err(RouteError::BadDeployment {
                        index: i,
                        model_name: name.clone(),
                        message: "a wildcard model_name may only have `*` at its end".into(),
                    });
                }
                unavailable.push(dep);
                continue;
            }
            match name.find('*') {
                Some(pos) => {
                    if pos != name.len() - 1 {
                        return Err(RouteError::BadDeployment {
                            index: i,
                            model_name: name.clone(),
                            message: "a wildcard model_name may only have `*` at its end".into(),
                        });
                    }
                    patterns.entry(name[..pos].to_string()).or_insert_with(Group::new).deployments.push(dep);
                }
                None => exact.entry(name).or_insert_with(Group::new).deployments.push(dep),
            }
        }
        let mut pattern_lengths: Vec<usize> =
            patterns.keys().map(|k| k.len()).collect::<BTreeSet<_>>().into_iter().collect();
        pattern_lengths.reverse();
        let provider_patterns = patterns
            .keys()
            .filter_map(|k| k.strip_suffix('/').filter(|p| !p.contains('/')).map(|p| (p.to_string(), k.clone())))
            .collect();
        Ok(ModelRouter { exact, patterns, pattern_lengths, provider_patterns, unavailable })
    }

    /// The deployments that can serve `requested`, in the order to try them.
    /// Empty when nothing matches.
    pub fn resolve(&self, requested: &str, catalog: &Catalog) -> Vec<Route> {
        if let Some(g) = self.exact.get(requested) {
            return g.rotation().filter_map(|d| route_exact(d, requested, catalog)).collect();
        }
        // `provider/name` or a name matching a literal prefix pattern; the
        // catch-all (empty prefix) comes last, after the provider index.
        for &len in self.pattern_lengths.iter().filter(|l| **l > 0) {
            if len > requested.len() || !requested.is_char_boundary(len) {
                continue;
            }
            if let Some(g) = self.patterns.get(&requested[..len]) {
                let matched = &requested[len..];
                let routes: Vec<Route> =
                    g.rotation().filter_map(|d| route_wildcard(d, requested, matched, catalog)).collect();
                if !routes.is_empty() {
                    return routes;
                }
            }
        }
        // A bare name reaches `provider/*` through the catalog's index.
        if !requested.contains('/') {
            if let Some(p) = catalog.provider_of(requested) {
                if let Some(g) = self.provider_patterns.get(p).and_then(|k| self.patterns.get(k)) {
                    let routes: Vec<Route> =
                        g.rotation().filter_map(|d| route_wildcard(d, requested, requested, catalog)).collect();
                    if !routes.is_empty() {
                        return routes;
                    }
                }
            }
        }
        if let Some(g) = self.patterns.get("") {
            return g.rotation().filter_map(|d| route_wildcard(d, requested, requested, catalog)).collect();
        }
        Vec::new()
    }

    /// Public model names (exact names and wildcard patterns), for `/v1/models`.
    pub(crate) fn model_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.exact.keys().cloned().collect();
        names.extend(self.patterns.keys().map(|p| format!("{p}*")));
        names.sort();
        names
    }

    /// The unavailable deployments a request for `requested` would have
    /// reached (same name, or a wildcard it matches), for a clear error.
    pub(crate) fn unavailable_for(&self, requested: &str) -> Vec<Arc<Deployment>> {
        self.unavailable
            .iter()
            .filter(|d| match d.model_name.strip_suffix('*') {
                Some(prefix) => requested.starts_with(prefix),
                None => d.model_name == requested,
            })
            .cloned()
            .collect()
    }

    /// Every deployment, available or not.
    pub fn deployments(&self) -> Vec<Arc<Deployment>> {
        let mut all: Vec<Arc<Deployment>> = self
            .exact
            .values()
            .chain(self.patterns.values())
            .flat_map(|g| g.deployments.iter().cloned())
            .chain(self.unavailable.iter().cloned())
            .collect();
        all.sort_by(|a, b| a.model_name.cmp(&b.model_name).then(a.id.cmp(&b.id)));
        all
    }
}

fn route_exact(d: &Arc<Deployment>, requested: &str, catalog: &Catalog) -> Option<Route> {
    match d.provider {
        Some(p) => Some(Route { deployment: d.clone(), provider: p, upstream_model: d.upstream_model.clone() }),
        None => provider_for_request(requested, catalog).map(|(p, m)| Route {
            deployment: d.clone(),
            provider: p,
            upstream_model: m,
        }),
    }
}

fn route_wildcard(d: &Arc<Deployment>, requested: &str, matched: &str, catalog: &Catalog) -> Option<Route> {
    // A wildcard stands for a model name: `anthropic/` alone matches no
    // model, and a call with an empty model name is never sent upstream.
    if matched.is_empty() {
        return None;
    }
    match d.provider {
        Some(p) => {
            let upstream_model = if d.upstream_model.contains('*') {
                d.upstream_model.replacen('*', matched, 1)
            } else {
                d.upstream_model.clone()
            };
            Some(Route { deployment: d.clone(), provider: p, upstream_model })
        }
        // Catch-all: the requested model names its provider.
        None => provider_for_request(requested, catalog).map(|(p, m)| Route {
            deployment: d.clone(),
            provider: p,
            upstream_model: m,
        }),
    }
}

/// `openai/gpt-4o` -> (openai, gpt-4o); `claude-sonnet-4-6` -> (anthropic, ...)
/// through the catalog.
fn provider_for_request(requested: &str, catalog: &Catalog) -> Option<(Provider, String)> {
    if let Some((p, rest)) = requested.split_once('/') {
        if let Some(p) = Provider::parse(p) {
            return (!rest.is_empty()).then(|| (p, rest.to_string()));
        }
    }
    let p = Provider::parse(catalog.provider_of(requested)?)?;
    Some((p, requested.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::catalog::{parse_catalog, ValidationLimits};

    fn catalog() -> Catalog {
        let map = r#"{"claude-sonnet-4-6": {"litellm_provider": "anthropic", "mode": "chat"},
                      "gpt-4o": {"litellm_provider": "openai", "mode": "chat"}}"#;
        let limits = ValidationLimits { min_models: 0, max_shrink_ratio: 0.0 };
        parse_catalog(map.as_bytes(), "test", None, &limits, std::time::UNIX_EPOCH).unwrap()
    }

    fn router(yaml: &str) -> ModelRouter {
        ModelRouter::from_config(&Config::parse(yaml, "t.yaml").unwrap().config).unwrap()
    }

    fn first(r: &ModelRouter, model: &str) -> Option<(String, Provider, String)> {
        r.resolve(model, &catalog())
            .into_iter()
            .next()
            .map(|rt| (rt.deployment.model_name.clone(), rt.provider, rt.upstream_model))
    }

    #[test]
    fn exact_then_prefix_then_provider_index_then_catch_all() {
        let r = router(
            r#"model_list:
  - {model_name: gpt-4o, litellm_params: {model: azure/prod, api_base: "https://x.example"}}
  - {model_name: "openai/gpt-4*", litellm_params: {model: "openai/gpt-4*"}}
  - {model_name: "openai/*", litellm_params: {model: "hosted_vllm/*", api_base: "http://vllm.example"}}
  - {model_name: "anthropic/*", litellm_params: {model: "anthropic/*"}}
  - {model_name: "*", litellm_params: {model: "*"}}
"#,
        );
        assert_eq!(first(&r, "gpt-4o"), Some(("gpt-4o".into(), Provider::Azure, "prod".into())));
        // The longest literal prefix wins, with the matched part substituted.
        assert_eq!(first(&r, "openai/gpt-4.1"), Some(("openai/gpt-4*".into(), Provider::Openai, "gpt-4.1".into())));
        assert_eq!(first(&r, "openai/o3"), Some(("openai/*".into(), Provider::HostedVllm, "o3".into())));
        // A bare name goes through the catalog to `anthropic/*`, not the catch-all.
        assert_eq!(
            first(&r, "claude-sonnet-4-6"),
            Some(("anthropic/*".into(), Provider::Anthropic, "claude-sonnet-4-6".into()))
        );
        // The catch-all derives the provider from the request.
        assert_eq!(first(&r, "azure/my-dep"), Some(("*".into(), Provider::Azure, "my-dep".into())));
        // Unknown bare name with no provider: nothing.
        assert_eq!(first(&r, "mystery-model"), None);
    }

    #[test]
    fn deployments_of_one_name_rotate() {
        let r = router(
            "model_list:\n  - {model_name: m, litellm_params: {model: openai/a}, model_info: {id: a}}\n  - {model_name: m, litellm_params: {model: openai/b}, model_info: {id: b}}\n",
        );
        let c = catalog();
        let firsts: Vec<String> = (0..4).map(|_| r.resolve("m", &c)[0].deployment.id.clone()).collect();
        assert_eq!(firsts, ["a", "b", "a", "b"]);
        assert_eq!(r.resolve("m", &c).len(), 2, "every deployment is offered for fallback");
    }

    #[test]
    fn an_unknown_provider_is_unavailable_and_a_bad_name_refused() {
        let cfg =
            Config::parse("model_list:\n  - {model_name: x, litellm_params: {model: nosuch/x}}\n", "t.yaml").unwrap();
        let r = ModelRouter::from_config(&cfg.config).unwrap();
        let c = Catalog::new([], "t", std::time::UNIX_EPOCH);
        assert!(r.resolve("x", &c).is_empty(), "never routed to");
        let u = r.unavailable_for("x");
        assert_eq!(u.len(), 1);
        assert!(u[0].unavailable.as_deref().unwrap_or_default().contains("unknown provider `nosuch`"), "{u:?}");
        let cfg = Config::parse("model_list:\n  - {model_name: 'a*b', litellm_params: {model: openai/x}}\n", "t.yaml")
            .unwrap();
        assert!(ModelRouter::from_config(&cfg.config).is_err());
        // The same rule holds for a deployment that cannot serve: its name is
        // still a pattern the router would have to match.
        for (name, ok) in [("'a*b'", false), ("'*b'", false), ("'a*'", true), ("'*'", true)] {
            let yaml = format!("model_list:\n  - {{model_name: {name}, litellm_params: {{model: nosuch/x}}}}\n");
            let cfg = Config::parse(&yaml, "t.yaml").unwrap();
            assert_eq!(ModelRouter::from_config(&cfg.config).is_ok(), ok, "{name}");
        }
    }

    #[test]
    fn a_wildcard_prefix_alone_names_no_model() {
        let r = router(
            "model_list:\n  - {model_name: 'anthropic/*', litellm_params: {model: 'anthropic/*'}}\n  - {model_name: '*', litellm_params: {model: '*'}}\n",
        );
        assert_eq!(first(&r, "anthropic/"), None, "never sent upstream with an empty model");
        assert_eq!(first(&r, "openai/"), None);
        assert_eq!(first(&r, "anthropic/x"), Some(("anthropic/*".into(), Provider::Anthropic, "x".into())));
        // A name whose character straddles the prefix's length is not cut inside it.
        assert_eq!(first(&r, "anthropic\u{20ac}x"), None);
    }
}
