//! postmortem: an LLM gateway (`gateway`) and the regression harness around
//! it (`mocks`, `contracts`, `target`, `scenario`, `replay`, `bench`, `cli`). See
//! ARCHITECTURE.md.

#![forbid(unsafe_code)]
// What only the crate reaches is declared `pub(crate)`, so a reader sees at
// the item what other crates may use (tests/architecture.rs checks the rest).
#![warn(unreachable_pub)]

pub mod bench;
pub mod cli;
pub mod contracts;
pub mod gateway;
pub mod mocks;
pub mod replay;
pub mod scenario;
pub mod services;
pub mod target;
