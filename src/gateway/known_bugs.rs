//! The six incidents' original bugs, and regressions that real gateways
//! shipped which the harness's contracts must catch, kept as switches so the
//! regression harness can prove each of its scenarios and contracts catches
//! the bug it is about.
//!
//! Architecture invariant: nothing in a config file, an environment variable
//! or the `serve` command can turn these on. They are set only through
//! `crate::gateway::GatewayBuilder::known_bugs`, which only the harness's
//! proof mode calls. Each one reproduces the real mechanism, not a shortcut.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KnownBugs {
    /// Incident 1: the client cache shuts a client down when it evicts it,
    /// even while requests and streams still use it.
    pub close_evicted_clients: bool,
    /// Incident 2: a cost-map reload swaps in the new map but keeps the old
    /// derived provider -> models index.
    pub stale_wildcard_index: bool,
    /// Incident 3: the routes are mounted without the server root path.
    pub drop_root_path: bool,
    /// Incident 4: optional params the client did not send go upstream as null.
    pub null_optional_params: bool,
    /// Incident 5: every anthropic-beta flag is forwarded to every provider.
    pub forward_all_betas: bool,
    /// Incident 6: a malformed cost map makes the gateway fall back silently
    /// to its bundled copy, reporting nothing.
    pub silent_cost_map_fallback: bool,
    /// Contract `errors.client-error-not-retried`: a provider's 4xx is
    /// retried on the same deployment as if it were a 5xx.
    pub retry_client_errors: bool,
    /// Contract `errors.retry-after`: a provider's 429 reaches the client
    /// without its `Retry-After`.
    pub drop_upstream_retry_after: bool,
    /// Contract `fidelity.usage`: prompt tokens are counted by the gateway
    /// (4 characters a token) instead of taken from the provider's usage.
    pub estimate_prompt_tokens: bool,
    /// Contract `stream.no-false-completion`: a pass-through stream that
    /// breaks ends with `data: [DONE]` instead of an error event.
    pub done_after_broken_stream: bool,
    /// Contract `fidelity.request`: a forced tool (`tool_choice` naming a
    /// function) reaches Anthropic as `{type: any}`, so the model may call
    /// whichever tool it likes.
    pub loosen_forced_tool_choice: bool,
    /// Contract `fidelity.usage`: `count_tokens` is answered with the
    /// gateway's own estimate (4 characters a token, labelled as such)
    /// instead of the provider's count.
    pub estimate_count_tokens: bool,
    /// Contract `fidelity.response-handle`: a Responses follow-up is routed
    /// like any request, whichever deployment stored the Response it
    /// continues (its handle is still resolved to the provider's id).
    pub unpinned_response_handles: bool,
    /// Contract `accounting.response-cost`: cached input tokens are charged
    /// at the full input rate, not the map's cache-read rate.
    pub cache_reads_at_input_rate: bool,
    /// Fleet scenario `shared-keys-on-postgres`: an instance on a shared
    /// database never looks up a key it does not hold, so a key made on
    /// another instance is refused here until a restart.
    pub adopt_no_shared_keys: bool,
    /// Fleet scenario `restart-and-kill`: a graceful shutdown stops without
    /// writing the queued spend, so a restart forgets what was spent since
    /// the last periodic write.
    pub no_spend_write_at_shutdown: bool,
    /// Fleet scenario `postgres-outage`: a spend write that fails (the
    /// database is down) drops its rows instead of keeping them queued.
    pub drop_unwritten_spend: bool,
    /// Fleet scenario `shared-rate-limit-on-redis`: a key's rpm/tpm are
    /// counted by each instance alone although Redis is configured and up,
    /// so N instances let N times the limit through.
    pub local_key_limits_only: bool,
    /// Fleet scenario `reload-reaches-the-fleet`: a cost-map reload on one
    /// instance is not announced to the others (they keep the old map).
    pub no_reload_broadcast: bool,
    /// Fleet scenario `shared-budget-on-redis`: a key's spend is counted
    /// by each instance alone although Redis is configured and up, so N
    /// instances let a key spend N times its budget.
    pub local_key_budgets_only: bool,
    /// Fleet scenario `redis-outage-spend`: spend charged while Redis is
    /// down is never added to the shared total once it is back.
    pub drop_spend_while_redis_down: bool,
    /// Fleet scenario `response-cache-on-redis`: `cache_params.type: redis`
    /// is taken for `local`, so each instance caches in its own memory and
    /// an answer one instance stored is a miss (and a paid upstream call)
    /// on every other.
    pub cache_local_only_with_redis: bool,
}

impl KnownBugs {
    pub fn any(&self) -> bool {
        *self != KnownBugs::default()
    }

    /// Parses an incident's bug name, as used by the harness.
    pub fn with(mut self, name: &str) -> Option<Self> {
        match name {
            "close_evicted_clients" => self.close_evicted_clients = true,
            "stale_wildcard_index" => self.stale_wildcard_index = true,
            "drop_root_path" => self.drop_root_path = true,
            "null_optional_params" => self.null_optional_params = true,
            "forward_all_betas" => self.forward_all_betas = true,
            "silent_cost_map_fallback" => self.silent_cost_map_fallback = true,
            "retry_client_errors" => self.retry_client_errors = true,
            "drop_upstream_retry_after" => self.drop_upstream_retry_after = true,
            "estimate_prompt_tokens" => self.estimate_prompt_tokens = true,
            "done_after_broken_stream" => self.done_after_broken_stream = true,
            "loosen_forced_tool_choice" => self.loosen_forced_tool_choice = true,
            "estimate_count_tokens" => self.estimate_count_tokens = true,
            "unpinned_response_handles" => self.unpinned_response_handles = true,
            "cache_reads_at_input_rate" => self.cache_reads_at_input_rate = true,
            "adopt_no_shared_keys" => self.adopt_no_shared_keys = true,
            "no_spend_write_at_shutdown" => self.no_spend_write_at_shutdown = true,
            "drop_unwritten_spend" => self.drop_unwritten_spend = true,
            "local_key_limits_only" => self.local_key_limits_only = true,
            "no_reload_broadcast" => self.no_reload_broadcast = true,
            "local_key_budgets_only" => self.local_key_budgets_only = true,
            "drop_spend_while_redis_down" => self.drop_spend_while_redis_down = true,
            "cache_local_only_with_redis" => self.cache_local_only_with_redis = true,
            _ => return None,
        }
        Some(self)
    }

    pub const NAMES: [&'static str; 22] = [
        "close_evicted_clients",
        "stale_wildcard_index",
        "drop_root_path",
        "null_optional_params",
        "forward_all_betas",
        "silent_cost_map_fallback",
        "retry_client_errors",
        "drop_upstream_retry_after",
        "estimate_prompt_tokens",
        "done_after_broken_stream",
        "loosen_forced_tool_choice",
        "estimate_count_tokens",
        "unpinned_response_handles",
        "cache_reads_at_input_rate",
        "adopt_no_shared_keys",
        "no_spend_write_at_shutdown",
        "drop_unwritten_spend",
        "local_key_limits_only",
        "no_reload_broadcast",
        "local_key_budgets_only",
        "drop_spend_while_redis_down",
        "cache_local_only_with_redis",
    ];
}
