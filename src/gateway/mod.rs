//! The gateway core: an OpenAI- and Anthropic-compatible LLM gateway.
//!
//! Architecture invariant: nothing under `gateway` imports the harness
//! (`scenario`, `mocks`, `harness`, `replay`, `cli`). The harness depends on
//! the gateway, never the other way round.

pub mod activity;
pub mod auth;
pub mod beta;
pub mod catalog;
pub mod client_cache;
pub mod clock;
pub mod config;
pub mod error;
pub mod keys;
pub(crate) mod known_bugs;
pub mod metrics;
pub mod otel;
pub mod providers;
pub mod proxy;
pub mod rate;
pub(crate) mod redis_link;
pub(crate) mod reliability;
pub mod response_cache;
pub mod routing;
pub mod server;
pub mod shared_limits;
pub mod sse;
pub mod state;
pub mod store;
pub mod ui;
pub mod upstream;

pub use config::Config;
pub use known_bugs::KnownBugs;
pub use state::{Gateway, GatewayBuilder};
