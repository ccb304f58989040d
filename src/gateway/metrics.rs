//! `GET /metrics`: what the gateway did, in Prometheus's text format, under
//! LiteLLM's metric names where LiteLLM has one (so its users' dashboards
//! and alerts keep working) and `postmortem_*` for the rest.
//!
//! Requests and their latency are recorded by one layer around every route
//! (`track`); the proxy only labels its answers with the model the client
//! asked for (`RequestedModel`). Tokens and spend are recorded where a
//! call is priced (`proxy::pricing::charge`). The state of the cost map,
//! the client cache and the deployments is read when the page is scraped.
//! `track` also records the last hour per model and key (`activity`, the
//! charts on `/ui`).
//!
//! No label carries a key, hashed or not: the page is open, as LiteLLM's is.

use crate::gateway::activity::Attribution;
use crate::gateway::state::Gateway;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

/// The model a client asked for, put on the answer by the proxy for the
/// request metrics' `requested_model` label.
#[derive(Clone, Debug)]
pub(crate) struct RequestedModel(pub String);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    requested_model: String,
    route: String,
    status_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// LiteLLM's latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 17] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The gateway's metrics. Cheap to record from any thread.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    failed: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    input_tokens: Family<ModelLabels, Counter>,
    output_tokens: Family<ModelLabels, Counter>,
    total_tokens: Family<ModelLabels, Counter>,
    spend: Family<ModelLabels, Counter<f64, AtomicU64>>,
    cache_hits: Family<ModelLabels, Counter>,
    cache_misses: Family<ModelLabels, Counter>,
    cost_map_stale: Gauge,
    cost_map_models: Gauge,
    client_cache_entries: Gauge,
    client_cache_hits: Gauge,
    client_cache_misses: Gauge,
    client_cache_evictions: Gauge,
    deployments: Family<StateLabels, Gauge>,
    /// The `requested_model` values with series of their own: each one is a
    /// series per route and status for as long as the process lives, so
    /// their number is capped and the rest count under [`OTHER_MODEL`].
    model_series: parking_lot::Mutex<std::collections::HashSet<String>>,
    otel_spans: Family<StateLabels, Gauge>,
}

/// How many distinct `requested_model` values get series of their own.
pub(crate) const MAX_MODEL_SERIES: usize = 1_000;
/// The `requested_model` of requests whose model gets no series: a name the
/// gateway does not serve (anyone can send made-up names, and without a cap
/// each one would be a series kept forever), or one past the cap.
pub(crate) const OTHER_MODEL: &str = "other";

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            requests: Family::default(),
            failed: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            input_tokens: Family::default(),
            output_tokens: Family::default(),
            total_tokens: Family::default(),
            spend: Family::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            cost_map_stale: Gauge::default(),
            cost_map_models: Gauge::default(),
            client_cache_entries: Gauge::default(),
            client_cache_hits: Gauge::default(),
            client_cache_misses: Gauge::default(),
            client_cache_evictions: Gauge::default(),
            deployments: Family::default(),
            model_series: Default::default(),
            otel_spans: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("litellm_proxy_total_requests_metric", "Requests to the model routes", m.requests.clone());
        r.register("litellm_proxy_failed_requests_metric", "Requests answered with an error", m.failed.clone());
        r.register(
            "litellm_request_total_latency_metric",
            "Seconds from the request to the start of the answer (a stream's first byte)",
            m.latency.clone(),
        );
        for (name, help, family) in [
            ("litellm_input_tokens_metric", "Input tokens the providers reported", &m.input_tokens),
            ("litellm_output_tokens_metric", "Output tokens the providers reported", &m.output_tokens),
            ("litellm_total_tokens_metric", "Input and output tokens", &m.total_tokens),
        ] {
            r.register(name, help, family.clone());
        }
        r.register("litellm_spend_metric", "Spend in USD, priced from the cost map", m.spend.clone());
        r.register("litellm_cache_hits_metric", "Requests answered from the response cache", m.cache_hits.clone());
        r.register(
            "litellm_cache_misses_metric",
            "Requests that looked in the response cache and went to the provider",
            m.cache_misses.clone(),
        );
        for (name, help, gauge) in [
            ("postmortem_cost_map_stale", "1 when the cost map in use is not the configured one", &m.cost_map_stale),
            ("postmortem_cost_map_models", "Models in the cost map in use", &m.cost_map_models),
            ("postmortem_client_cache_entries", "Provider clients cached", &m.client_cache_entries),
            ("postmortem_client_cache_hits", "Client cache hits so far", &m.client_cache_hits),
            ("postmortem_client_cache_misses", "Client cache misses so far", &m.client_cache_misses),
            (
                "postmortem_client_cache_evictions",
                "Client cache evictions so far (capacity, expiry, explicit)",
                &m.client_cache_evictions,
            ),
        ] {
            r.register(name, help, gauge.clone());
        }
        r.register("postmortem_deployments", "Deployments by state", m.deployments.clone());
        r.register(
            "postmortem_otel_spans",
            "OpenTelemetry spans so far: exported, dropped (queue full), failed (export failed), and queued now",
            m.otel_spans.clone(),
        );
        Metrics { registry, ..m }
    }

    /// `model` is `None` when the gateway does not serve the name asked for.
    fn request(&self, route: &str, model: Option<&str>, status: u16, seconds: f64) {
        let labels = RequestLabels {
            requested_model: self.model_label(model).to_string(),
            route: route.to_string(),
            status_code: status.to_string(),
        };
        self.requests.get_or_create(&labels).inc();
        if status >= 400 {
            self.failed.get_or_create(&labels).inc();
        }
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// The label for `model`: its own name while there is room for it.
    fn model_label<'m>(&self, model: Option<&'m str>) -> &'m str {
        let Some(m) = model else { return OTHER_MODEL };
        let mut seen = self.model_series.lock();
        if seen.contains(m) || (seen.len() < MAX_MODEL_SERIES && seen.insert(m.to_string())) {
            m
        } else {
            OTHER_MODEL
        }
    }

    /// A request that looked in the response cache, by the model asked for
    /// (capped as `requested_model` is).
    pub(crate) fn cache_lookup(&self, model: &str, hit: bool) {
        let labels = ModelLabels { model: self.model_label(Some(model)).to_string() };
        let family = if hit { &self.cache_hits } else { &self.cache_misses };
        family.get_or_create(&labels).inc();
    }

    /// A priced (or unpriced) call's tokens, and its cost when the model has a price.
    pub fn usage(&self, model: &str, input_tokens: u64, output_tokens: u64, cost_usd: Option<f64>) {
        let labels = ModelLabels { model: model.to_string() };
        self.input_tokens.get_or_create(&labels).inc_by(input_tokens);
        self.output_tokens.get_or_create(&labels).inc_by(output_tokens);
        self.total_tokens.get_or_create(&labels).inc_by(input_tokens + output_tokens);
        if let Some(c) = cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
            self.spend.get_or_create(&labels).inc_by(c);
        }
    }

    /// The page: the state read now, then every metric.
    pub fn render(&self, gw: &Gateway) -> String {
        let catalog = gw.catalog.status();
        self.cost_map_stale.set(i64::from(catalog.stale));
        self.cost_map_models.set(gw.catalog.current().len() as i64);
        let cache = gw.clients.stats();
        self.client_cache_entries.set(cache.entries as i64);
        self.client_cache_hits.set(cache.hits as i64);
        self.client_cache_misses.set(cache.misses as i64);
        let evictions = cache.evictions_capacity + cache.evictions_expired + cache.evictions_explicit;
        self.client_cache_evictions.set(evictions as i64);
        let all = gw.router.deployments();
        let unavailable = all.iter().filter(|d| d.unavailable.is_some()).count();
        self.deployments
            .get_or_create(&StateLabels { state: "available".into() })
            .set((all.len() - unavailable) as i64);
        self.deployments.get_or_create(&StateLabels { state: "unavailable".into() }).set(unavailable as i64);
        if let Some(otel) = &gw.otel {
            let s = otel.stats();
            for (state, n) in
                [("exported", s.exported), ("dropped", s.dropped), ("failed", s.failed), ("queued", s.queued)]
            {
                self.otel_spans.get_or_create(&StateLabels { state: state.into() }).set(n as i64);
            }
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The model routes, named as in the request metrics' `route` label.
pub(crate) fn model_route(path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    [
        ("/chat/completions", "chat_completions"),
        ("/messages/count_tokens", "count_tokens"),
        ("/messages", "messages"),
        ("/embeddings", "embeddings"),
        ("/completions", "completions"),
        ("/responses", "responses"),
    ]
    .into_iter()
    .find(|(suffix, _)| path.ends_with(suffix))
    .map(|(_, name)| name)
}

/// The layer that records every model request: its route, the model the
/// proxy says was asked for, its status and how long until the answer
/// started.
pub(crate) async fn track(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let route = model_route(req.uri().path());
    let started = Instant::now();
    let resp = next.run(req).await;
    if let Some(route) = route {
        let model = resp.extensions().get::<RequestedModel>().map(|m| m.0.as_str()).unwrap_or("");
        let status = resp.status().as_u16();
        let seconds = started.elapsed().as_secs_f64();
        // A model of its own, here and on the activity charts, only when the
        // proxy says the gateway serves it (made-up names count under "other").
        let attribution = resp.extensions().get::<Attribution>();
        let known = attribution.is_some_and(|a| a.known_model);
        gw.metrics.request(route, known.then_some(model), status, seconds);
        let who = attribution.and_then(|a| a.who.as_ref());
        gw.activity.request(known.then_some(model), who, status >= 400, seconds * 1000.0);
    }
    resp
}

/// `GET /metrics`.
pub async fn page(State(gw): State<Arc<Gateway>>) -> Response {
    let body = gw.metrics.render(&gw);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::{model_route, Metrics, MAX_MODEL_SERIES, OTHER_MODEL};

    #[test]
    fn requested_models_past_the_cap_count_under_other() {
        let m = Metrics::new();
        for i in 0..MAX_MODEL_SERIES {
            m.request("chat_completions", Some(&format!("m{i}")), 200, 0.1);
        }
        m.request("chat_completions", Some("one-too-many"), 200, 0.1);
        m.request("chat_completions", Some("m0"), 200, 0.1);
        m.request("chat_completions", None, 404, 0.1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry).unwrap();
        assert!(!text.contains("one-too-many"), "past the cap");
        let other = format!(r#"requested_model="{OTHER_MODEL}",route="chat_completions",status_code="200"}} 1"#);
        assert!(text.contains(&other), "the name past the cap counts under other");
        assert!(text.contains(r#"{requested_model="m0",route="chat_completions",status_code="200"} 2"#));
    }

    #[test]
    fn model_routes_are_named_by_their_last_segments() {
        assert_eq!(model_route("/v1/chat/completions"), Some("chat_completions"));
        assert_eq!(model_route("/openai/deployments/x/chat/completions"), Some("chat_completions"));
        assert_eq!(model_route("/v1/messages/count_tokens"), Some("count_tokens"));
        assert_eq!(model_route("/llmproxy/v1/messages"), Some("messages"));
        assert_eq!(model_route("/v1/completions"), Some("completions"));
        assert_eq!(model_route("/v1/models"), None);
        assert_eq!(model_route("/key/generate"), None);
    }
}
