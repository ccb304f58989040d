//! Who is calling: the master key, a virtual key, or (when the gateway has
//! neither configured) anyone.

use crate::gateway::error::ApiError;
use crate::gateway::keys::KeyRecord;
use crate::gateway::state::Gateway;
use axum::http::HeaderMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub enum Caller {
    /// No master key and no virtual keys are configured: anyone may call the
    /// models. `admin` only when `allow_unauthenticated_admin: true` says so.
    Open {
        admin: bool,
    },
    Master,
    Key(Arc<KeyRecord>),
}

impl Caller {
    pub(crate) fn is_admin(&self) -> bool {
        matches!(self, Caller::Open { admin: true } | Caller::Master)
    }
}

/// Whether anyone may call the gateway without a key.
pub(crate) fn is_open(gw: &Gateway) -> bool {
    gw.config.general_settings.master_key.is_none() && gw.keys.is_empty()
}

/// The presented secret: `Authorization: Bearer`, or the Anthropic SDK's
/// `x-api-key`, or Azure's `api-key`.
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        // The scheme is case-insensitive (RFC 9110 §11.1): `BEARER x` too.
        let token = match v.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest,
            _ => v,
        };
        return Some(token.trim().to_string());
    }
    for h in ["x-api-key", "api-key"] {
        if let Some(v) = headers.get(h).and_then(|v| v.to_str().ok()) {
            return Some(v.trim().to_string());
        }
    }
    None
}

pub fn authenticate(gw: &Gateway, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let master = gw.config.general_settings.master_key.as_deref();
    if is_open(gw) {
        return Ok(Caller::Open { admin: gw.config.general_settings.allow_unauthenticated_admin });
    }
    // An empty credential is no credential, whatever is configured.
    let Some(presented) = presented_key(headers).filter(|k| !k.is_empty()) else {
        return Err(ApiError::Unauthorized("missing API key: send `Authorization: Bearer <key>`".into()));
    };
    if let Some(m) = master {
        // Constant time over equal-length inputs; a length mismatch is
        // already a mismatch and reveals only the length.
        if bool::from(presented.as_bytes().ct_eq(m.as_bytes())) {
            return Ok(Caller::Master);
        }
    }
    match gw.keys.authenticate(&presented) {
        Some(rec) => match rec.refusal(crate::gateway::state::unix(gw.clock.wall())) {
            Some(why) => Err(ApiError::Unauthorized(why)),
            None => Ok(Caller::Key(rec)),
        },
        None => Err(ApiError::Unauthorized("invalid API key".into())),
    }
}

/// Middleware for a gateway on a shared database: a presented key this
/// instance does not hold may have been made by another instance, so it is
/// looked up there (and adopted) before the route authenticates. Keys it
/// holds, the master key, and gateways on their own database cost nothing.
/// Every unknown key costs one indexed query; a flood of bad keys is one
/// query each (rate limiting them is the load balancer's job today).
pub(crate) async fn adopt_shared_keys(
    axum::extract::State(gw): axum::extract::State<Arc<Gateway>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if gw.store.is_shared() {
        if let Some(k) = presented_key(req.headers()).filter(|k| !k.is_empty()) {
            let master = gw
                .config
                .general_settings
                .master_key
                .as_deref()
                .is_some_and(|m| bool::from(k.as_bytes().ct_eq(m.as_bytes())));
            if !master && gw.keys.authenticate(&k).is_none() {
                let _ = gw.lookup_key(&k).await;
            }
        }
    }
    next.run(req).await
}

pub(crate) fn require_admin(gw: &Gateway, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let c = authenticate(gw, headers)?;
    if c.is_admin() {
        Ok(c)
    } else {
        Err(ApiError::Forbidden(match c {
            Caller::Open { .. } => "this gateway has no master key, so its admin routes are closed: set \
                                    general_settings.master_key (or LITELLM_MASTER_KEY), or \
                                    allow_unauthenticated_admin: true to open them"
                .into(),
            _ => "this endpoint needs the master key".into(),
        }))
    }
}
