//! The inner wiremock server: the provider's own rules live here as `Mock`s
//! (the scenario's stubs are served by the front, which owns their order
//! and `times`).
//!
//! Priorities (1 wins):
//! 1. strict profile: requests the front found the provider would reject
//!    (tagged `x-postmortem-target: strict`); the body is computed here;
//! 2. default success bodies for the kind's routes;
//! 3. the kind's 404 for everything else.

use std::sync::Arc;

use wiremock::{Match, Mock, MockServer, Request, Respond, ResponseTemplate};

use super::front::Shared;
use super::journal::RecordedRequest;
use super::wire::Buffered;
use super::{defaults, errors};

/// Header the front adds to a forwarded request to name the `Mock` it chose:
/// only [`STRICT_TARGET`] today.
pub(crate) const TARGET_HEADER: &str = "x-postmortem-target";
pub(crate) const STRICT_TARGET: &str = "strict";

pub(crate) fn template(b: &Buffered) -> ResponseTemplate {
    // Statuses and headers were validated at mount time; anything invalid
    // that still slips through is skipped instead of panicking in wiremock.
    let status = http::StatusCode::from_u16(b.status).map_or(500, |s| s.as_u16());
    let mut t = ResponseTemplate::new(status).set_body_bytes(b.body.clone());
    for (name, value) in &b.headers {
        let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value)) else {
            continue;
        };
        t = t.append_header(n, v);
    }
    t
}

/// Answers what the front found the strict profile rejects.
struct StrictProfile(Arc<Shared>);

impl Respond for StrictProfile {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let req = RecordedRequest::from_wiremock(request);
        // The front and this check see the same request, so `None` cannot
        // happen; answer a provider 500 rather than a wrong success if it does.
        let b = self.0.rejection(&req, &self.0.ids).unwrap_or_else(|| errors::status(self.0.kind, 500, &self.0.ids));
        template(&b)
    }
}

/// Matches a forwarded request the front tagged with this target.
struct Tagged(String);

impl Match for Tagged {
    fn matches(&self, request: &Request) -> bool {
        request.headers.get(TARGET_HEADER).is_some_and(|v| v.as_bytes() == self.0.as_bytes())
    }
}

struct AnyRequest;

impl Match for AnyRequest {
    fn matches(&self, _request: &Request) -> bool {
        true
    }
}

/// Default bodies, and the kind's 404 for unknown routes.
struct Defaults(Arc<Shared>);

impl Respond for Defaults {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let req = RecordedRequest::from_wiremock(request);
        template(&defaults::respond(self.0.kind, &self.0.name, &self.0.ids, &req))
    }
}

/// Mounts the strict profile and the defaults (again after a reset).
pub(crate) async fn mount_base(server: &MockServer, shared: &Arc<Shared>) {
    if shared.opts.strict {
        Mock::given(Tagged(STRICT_TARGET.into()))
            .respond_with(StrictProfile(shared.clone()))
            .with_priority(1)
            .named("strict profile")
            .mount(server)
            .await;
    }
    Mock::given(AnyRequest)
        .respond_with(Defaults(shared.clone()))
        .with_priority(200)
        .named("default behaviour")
        .mount(server)
        .await;
}
