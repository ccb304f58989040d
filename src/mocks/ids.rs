//! Provider-shaped ids (`chatcmpl-…`, `msg_01…`, `req_…`) that are
//! deterministic: derived from the mock's name and a per-mock counter, so
//! the same scenario produces the same bodies on every run.

use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The `created` timestamp of every default body. A constant keeps
/// snapshots stable; real values vary anyway.
pub(crate) const CREATED: u64 = 1_750_000_000;

#[derive(Debug)]
pub(crate) struct IdGen {
    seed: String,
    counter: AtomicU64,
}

impl IdGen {
    pub(crate) fn new(seed: &str) -> IdGen {
        IdGen { seed: seed.to_string(), counter: AtomicU64::new(0) }
    }

    fn next_digest(&self) -> Vec<u8> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        let mut round = 0u32;
        while out.len() < 96 {
            let mut h = Sha256::new();
            h.update(self.seed.as_bytes());
            h.update(n.to_le_bytes());
            h.update(round.to_le_bytes());
            out.extend_from_slice(&h.finalize());
            round += 1;
        }
        out
    }

    /// `len` base62 characters.
    pub(crate) fn token(&self, len: usize) -> String {
        self.next_digest()
            .iter()
            .cycle()
            .take(len)
            .map(|b| char::from(BASE62[usize::from(*b) % BASE62.len()]))
            .collect()
    }

    /// `len` lower-case hex characters.
    pub(crate) fn hex(&self, len: usize) -> String {
        let digest = self.next_digest();
        let mut s = hex_lower(&digest);
        s.truncate(len);
        s
    }

    pub(crate) fn chatcmpl(&self) -> String {
        format!("chatcmpl-{}", self.token(29))
    }

    /// vLLM uses a uuid4 hex.
    pub(crate) fn vllm_chatcmpl(&self) -> String {
        format!("chatcmpl-{}", self.hex(32))
    }

    pub(crate) fn msg(&self) -> String {
        format!("msg_01{}", self.token(22))
    }

    pub(crate) fn msg_vertex(&self) -> String {
        format!("msg_vrtx_01{}", self.token(22))
    }

    pub(crate) fn bedrock_msg(&self) -> String {
        format!("msg_bdrk_01{}", self.token(22))
    }

    pub(crate) fn anthropic_request_id(&self) -> String {
        format!("req_011C{}", self.token(20))
    }

    pub(crate) fn vertex_request_id(&self) -> String {
        format!("req_vrtx_011C{}", self.token(20))
    }

    /// AWS request ids are uuids.
    pub(crate) fn uuid(&self) -> String {
        let h = self.hex(32);
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
