//! The one seam between scenarios and the gateway under test.
//!
//! A scenario talks to the gateway over HTTP in every mode. What differs is
//! what else the harness can do: the in-process gateway has a manual clock,
//! internal stats and known-bad variants; a separate process (target mode)
//! has only its HTTP surface. Steps ask for a capability; the engine reports
//! a scenario as not applicable when its target lacks one.

use super::model::Capability;
use crate::gateway::clock::ManualClock;
use crate::gateway::upstream::ClientKey;
use crate::gateway::{Config, Gateway, GatewayBuilder, KnownBugs};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub enum GatewayUnderTest {
    InProcess(InProcess),
}

pub struct InProcess {
    pub gateway: Arc<Gateway>,
    clock: Arc<ManualClock>,
    base_url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl GatewayUnderTest {
    /// Builds our gateway from `config` with a manual clock (and `bugs` put
    /// back, for proofs) and serves it on 127.0.0.1:0.
    pub async fn in_process(config: Config, bugs: KnownBugs) -> Result<GatewayUnderTest, String> {
        let clock = ManualClock::shared();
        let gateway = GatewayBuilder::new(config)
            .clock(clock.clone())
            .known_bugs(bugs)
            .build()
            .await
            .map_err(|e| format!("gateway did not start: {e}"))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let app = crate::gateway::server::app(gateway.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(GatewayUnderTest::InProcess(InProcess { gateway, clock, base_url: format!("http://{addr}"), server }))
    }

    pub fn base_url(&self) -> &str {
        match self {
            GatewayUnderTest::InProcess(p) => &p.base_url,
        }
    }

    pub fn has(&self, cap: Capability) -> bool {
        match self {
            GatewayUnderTest::InProcess(_) => matches!(cap, Capability::ManualClock | Capability::InternalStats),
        }
    }

    pub async fn advance(&self, by: Duration) -> Result<(), String> {
        match self {
            GatewayUnderTest::InProcess(p) => {
                p.clock.advance(by);
                // Expired clients leave the cache on the next access in
                // production; the harness sweeps now so stats are current.
                p.gateway.clients.evict_expired();
                p.gateway.run_due_tasks().await;
                Ok(())
            }
        }
    }

    /// The gateway's status document (what `/health` shows).
    pub async fn status(&self) -> Result<Value, String> {
        match self {
            GatewayUnderTest::InProcess(p) => Ok(crate::gateway::server::health_value(&p.gateway)),
        }
    }

    /// Puts `count` distinct clients into the client cache and lets go of
    /// them, pushing older entries out by capacity.
    pub fn fill_client_cache(&self, count: usize) -> Result<(), String> {
        match self {
            GatewayUnderTest::InProcess(p) => {
                for i in 0..count {
                    let key =
                        ClientKey::new("filler", &format!("http://filler-{i}.invalid"), &[], Duration::from_secs(1));
                    p.gateway.client(key).map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        }
    }
}
