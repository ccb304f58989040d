//! The scenario engine: declarative YAML scenarios that start mock
//! providers, build a gateway, drive requests and time, and check both what
//! the client got and what each provider received.

pub mod assets;
pub mod differential;
pub mod engine;
pub mod expect;
pub mod model;
pub mod prove;
pub mod report;
pub mod runner;
pub(crate) mod warmup;

pub use engine::{run_scenario, Outcome, RunOptions, Verdict};
pub use model::Scenario;
