#![forbid(unsafe_code)]
//! postmortem: an LLM gateway (`gateway`) and the regression harness around
//! it (`mocks`, `contracts`, `target`, `scenario`, `replay`, `bench`, `cli`). See
//! ARCHITECTURE.md.

pub mod bench;
pub mod cli;
pub mod contracts;
pub mod gateway;
pub mod mocks;
pub mod replay;
pub mod scenario;
pub mod services;
pub mod target;
