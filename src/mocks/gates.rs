//! Named gates that hold a stream open until the harness releases them.
//! The state lives in a `watch` channel so a waiter never misses a release
//! (it re-checks the state, not a one-shot notification), and so the
//! harness can also wait for "a stream is parked on this gate".

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::watch;

#[derive(Debug, Default, Clone)]
struct GateState {
    released: BTreeSet<String>,
    /// Gate -> number of streams parked on it right now.
    waiting: BTreeMap<String, usize>,
}

#[derive(Debug)]
pub(crate) struct Gates {
    tx: watch::Sender<GateState>,
}

impl Gates {
    pub(super) fn new() -> Gates {
        Gates { tx: watch::Sender::new(GateState::default()) }
    }

    pub(super) fn release(&self, gate: &str) {
        self.tx.send_modify(|s| {
            s.released.insert(gate.to_string());
        });
    }

    pub(crate) fn clear_released(&self) {
        self.tx.send_modify(|s| s.released.clear());
    }

    /// Parks until `gate` is released. Cancel-safe: dropping the future
    /// un-parks it.
    pub(super) async fn wait(&self, gate: &str) {
        let _parked = Parked::new(self, gate);
        let mut rx = self.tx.subscribe();
        // `wait_for` only fails if the sender is gone, and `self` owns it.
        let _ = rx.wait_for(|s| s.released.contains(gate)).await;
    }

    pub(super) async fn wait_until_held(&self, gate: &str) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|s| s.waiting.get(gate).copied().unwrap_or(0) > 0).await;
    }

    pub(super) fn held(&self) -> Vec<String> {
        self.tx.borrow().waiting.iter().filter(|(_, n)| **n > 0).map(|(g, _)| g.clone()).collect()
    }
}

/// Counts a parked stream for as long as it lives.
struct Parked<'a> {
    gates: &'a Gates,
    gate: String,
}

impl<'a> Parked<'a> {
    fn new(gates: &'a Gates, gate: &str) -> Parked<'a> {
        gates.tx.send_modify(|s| *s.waiting.entry(gate.to_string()).or_insert(0) += 1);
        Parked { gates, gate: gate.to_string() }
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.gates.tx.send_modify(|s| {
            if let Some(n) = s.waiting.get_mut(&self.gate) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    s.waiting.remove(&self.gate);
                }
            }
        });
    }
}
