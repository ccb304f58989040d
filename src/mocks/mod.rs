//! Mock LLM providers for the regression harness.
//!
//! A scenario starts one [`MockProvider`] per upstream it needs, points the
//! gateway at [`MockProvider::url`], drives requests, then reads
//! [`MockProvider::journal`] to check what the provider received.
//!
//! Each mock is two servers:
//! - an inner `wiremock::MockServer` that holds the provider's own rules: the
//!   strict-profile error responders and the default success bodies and 404s
//!   (as `Mock`s with our own `Match`/`Respond` impls);
//! - a small HTTP/1.1 front of our own on 127.0.0.1:0 that the gateway talks
//!   to. It records the journal, applies the strict profile, serves the
//!   scenario's stubs (buffered answers, and what wiremock cannot: streams
//!   with per-event delays and gates, cut streams, connection resets,
//!   malformed bodies) and forwards the rest to wiremock.
//!
//! The front is hand-written on a tokio `TcpListener` (not hyper) because a
//! reset must drop the socket before any response byte is written, and a cut
//! stream must stop in the middle of a chunk; hyper hides both.
//!
//! Strict profiles (on by default) reject requests the real service rejects,
//! with the real status and error body, so a scenario that passes against the
//! mock would also have passed against the provider.

mod answer;
mod defaults;
pub mod egress;
mod errors;
mod eventstream;
mod front;
mod gates;
pub(crate) mod google_account;
mod http1;
mod ids;
mod inner;
mod journal;
pub(crate) use journal::decode as percent_decode;
mod route;
mod stream;
pub mod strict;
mod stub;
mod wire;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use answer::{AnswerEnd, MockAnswer};
pub use journal::RecordedRequest;

/// The credentials file of the Google service account a Vertex AI mock at
/// `base_url` knows (its `token_uri` is the mock's): what a scenario gives
/// the gateway as `vertex_credentials`.
pub(crate) fn google_credentials(base_url: &str) -> String {
    google_account::credentials_json(base_url)
}
pub(crate) use stub::StubError;
pub use stub::{EventStreamEvent, EventStreamException, Fault, Stub, StubEvent, StubMatch, StubResponse};

/// The upstream API a mock imitates. The names are the ones scenario files use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MockKind {
    /// api.openai.com: `/v1/chat/completions`, `/v1/embeddings`.
    Openai,
    /// Azure OpenAI: `/openai/deployments/{dep}/...?api-version=...`.
    Azure,
    /// A vLLM OpenAI-compatible server (pydantic-validated, strict about nulls).
    HostedVllm,
    /// api.anthropic.com: `/v1/messages`.
    Anthropic,
    /// Bedrock runtime with Claude, SigV4 auth: InvokeModel (Anthropic bodies)
    /// and Converse (Bedrock's own messages format).
    Bedrock,
    /// Vertex AI `publishers/anthropic` rawPredict / streamRawPredict.
    VertexAi,
    /// Claude on Azure AI Foundry: `/anthropic/v1/messages`.
    AzureAi,
    /// Gemini on Google AI Studio: `/v1beta/models/{model}:generateContent`
    /// and `:streamGenerateContent`, the key in `x-goog-api-key`.
    Gemini,
}

impl MockKind {
    pub const ALL: [MockKind; 8] = [
        MockKind::Openai,
        MockKind::Azure,
        MockKind::HostedVllm,
        MockKind::Anthropic,
        MockKind::Bedrock,
        MockKind::VertexAi,
        MockKind::AzureAi,
        MockKind::Gemini,
    ];

    /// The scenario-file name of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            MockKind::Openai => "openai",
            MockKind::Azure => "azure",
            MockKind::HostedVllm => "hosted_vllm",
            MockKind::Anthropic => "anthropic",
            MockKind::Bedrock => "bedrock",
            MockKind::VertexAi => "vertex_ai",
            MockKind::AzureAi => "azure_ai",
            MockKind::Gemini => "gemini",
        }
    }

    /// True for the kinds that speak the OpenAI wire format.
    pub(crate) fn is_openai_family(self) -> bool {
        matches!(self, MockKind::Openai | MockKind::Azure | MockKind::HostedVllm)
    }
}

impl fmt::Display for MockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MockKind {
    type Err = MockError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MockKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| MockError::UnknownKind(s.to_string()))
    }
}

/// How strictly a mock imitates its provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockOptions {
    /// Reject what the real provider rejects (auth, required fields, nulls,
    /// beta flags). On by default: turning it off makes a scenario weaker.
    pub strict: bool,
    /// Beta flags the provider accepts (bedrock, vertex_ai, azure_ai).
    /// [`MockOptions::for_kind`] fills in the platform's own list
    /// ([`strict::betas`]); tests may pass another. `None` means the
    /// mock does not check beta flags at all; `Some(empty)` rejects every flag.
    /// Ignored for the other kinds (Anthropic itself accepts unknown betas).
    pub beta_allowlist: Option<BTreeSet<String>>,
}

impl MockOptions {
    /// Strict, with the platform's own accepted beta flags
    /// ([`strict::betas::accepted`]): what a scenario's mock uses.
    pub fn for_kind(kind: MockKind) -> MockOptions {
        MockOptions { strict: true, beta_allowlist: strict::betas::accepted(kind) }
    }
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions { strict: true, beta_allowlist: None }
    }
}

/// Errors from starting or configuring a mock.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("mock provider `{name}`: cannot listen on 127.0.0.1:0: {source}")]
    Bind {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mock provider `{name}`: cannot build the HTTP client that forwards to wiremock: {source}")]
    Client {
        name: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("mock provider `{name}`: invalid stub: {reason}")]
    InvalidStub { name: String, reason: StubError },
    #[error(
        "unknown mock kind `{0}` (expected one of openai, azure, hosted_vllm, anthropic, bedrock, vertex_ai, azure_ai, gemini)"
    )]
    UnknownKind(String),
}

/// A running mock provider. Dropping it stops its front server; streams that
/// are still open are cut.
pub struct MockProvider {
    shared: Arc<front::Shared>,
    inner: wiremock::MockServer,
    addr: SocketAddr,
    accept: tokio::task::AbortHandle,
}

impl fmt::Debug for MockProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockProvider")
            .field("kind", &self.shared.kind)
            .field("name", &self.shared.name)
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl MockProvider {
    /// Starts the inner wiremock server and the front on 127.0.0.1:0.
    /// Must be called inside a tokio runtime; the front runs on it.
    pub async fn start(kind: MockKind, name: &str, opts: MockOptions) -> Result<MockProvider, MockError> {
        // The front keeps the journal; wiremock's own request log would be a
        // second copy of every body that nobody reads.
        let inner = wiremock::MockServer::builder().disable_request_recording().start().await;
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|source| MockError::Client { name: name.to_string(), source })?;
        let shared = Arc::new(front::Shared::new(kind, name, opts, inner.uri(), client));
        inner::mount_base(&inner, &shared).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|source| MockError::Bind { name: name.to_string(), source })?;
        let addr = listener.local_addr().map_err(|source| MockError::Bind { name: name.to_string(), source })?;
        let accept = tokio::spawn(front::accept_loop(listener, shared.clone())).abort_handle();
        Ok(MockProvider { shared, inner, addr, accept })
    }

    /// Base URL, `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn kind(&self) -> MockKind {
        self.shared.kind
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn options(&self) -> &MockOptions {
        &self.shared.opts
    }

    /// Adds a stub. Stubs are tried in mount order, after the strict profile
    /// and before the default behaviour; one with `times: N` answers N
    /// requests and then lets later stubs or the default answer.
    pub async fn mount(&self, stub: Stub) -> Result<(), MockError> {
        stub.validate().map_err(|reason| MockError::InvalidStub { name: self.shared.name.clone(), reason })?;
        self.shared.push_stub(stub);
        Ok(())
    }

    /// Removes every stub and forgets released gates. The journal is kept
    /// (see [`MockProvider::clear_journal`]).
    pub async fn reset(&self) {
        self.shared.clear_stubs();
        self.inner.reset().await;
        inner::mount_base(&self.inner, &self.shared).await;
        self.shared.gates.clear_released();
    }

    /// Every request the front received, in arrival order, including the ones
    /// the strict profile rejected and the ones answered with a fault (but
    /// not bytes that did not parse as HTTP/1.1, which get a plain 400).
    pub fn journal(&self) -> Vec<RecordedRequest> {
        self.shared.journal()
    }

    /// The journal with what the mock answered to each request (a stream
    /// still being written shows what was written so far).
    pub fn exchanges(&self) -> Vec<(RecordedRequest, MockAnswer)> {
        self.shared.exchanges()
    }

    /// The `i`th request and its answer so far.
    pub(crate) fn exchange_at(&self, i: usize) -> Option<(RecordedRequest, MockAnswer)> {
        self.shared.exchange_at(i)
    }

    pub fn clear_journal(&self) {
        self.shared.clear_journal();
    }

    pub fn request_count(&self) -> usize {
        self.shared.request_count()
    }

    /// Lets streams held on `gate` continue. Releasing before a stream
    /// reaches the gate is fine: it then passes straight through.
    pub fn release(&self, gate: &str) {
        self.shared.gates.release(gate);
    }

    /// Resolves once at least one stream is parked on `gate`. Lets a test
    /// assert "the client has event 0 and nothing else yet" without timing.
    pub async fn wait_until_held(&self, gate: &str) {
        self.shared.gates.wait_until_held(gate).await;
    }

    /// Gates that at least one stream is parked on right now.
    pub fn held_gates(&self) -> Vec<String> {
        self.shared.gates.held()
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
