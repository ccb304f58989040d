//! Files the harness serves over HTTP (cost maps, beta policies), so the
//! gateway under test fetches them exactly as it would in production.

use super::model::AssetSpec;
use anyhow::anyhow;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parking_lot::RwLock;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::Arc;

/// Asset name -> the bytes currently served.
type Files = Arc<RwLock<HashMap<String, Vec<u8>>>>;

#[derive(Clone, Default)]
pub(crate) struct AssetServer {
    files: Files,
    base: String,
}

impl AssetServer {
    pub(crate) async fn start() -> std::io::Result<AssetServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let files: Files = Arc::default();
        let app = axum::Router::new().route("/assets/{name}", axum::routing::get(serve)).with_state(files.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(AssetServer { files, base: format!("http://{addr}") })
    }

    pub(crate) fn url(&self, name: &str) -> String {
        format!("{}/assets/{name}", self.base)
    }

    pub(crate) fn set(&self, name: &str, bytes: Vec<u8>) {
        self.files.write().insert(name.to_string(), bytes);
    }
}

async fn serve(State(files): State<Files>, Path(name): Path<String>) -> Response {
    match files.read().get(&name) {
        Some(b) => ([("content-type", "application/json")], b.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// Produces an asset's bytes from its spec, relative to `root`.
pub(crate) fn materialize(spec: &AssetSpec, root: &FsPath) -> anyhow::Result<Vec<u8>> {
    if let Some(raw) = &spec.raw {
        return Ok(raw.clone().into_bytes());
    }
    let mut value: Value = if let Some(file) = &spec.file {
        let path = root.join(file);
        let text = std::fs::read(&path).map_err(|e| anyhow!("asset file {}: {e}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| anyhow!("asset file {}: not JSON: {e}", path.display()))?
    } else {
        spec.inline.clone().unwrap_or(Value::Null)
    };
    if let Value::Object(m) = &mut value {
        for k in &spec.remove {
            m.remove(k);
        }
        // Shrink first, then add: "a map shrunk to a tenth that alone knows
        // model X" keeps X.
        if let Some(f) = spec.keep_fraction {
            let keep = ((m.len() as f64) * f).round() as usize;
            let keys: Vec<String> = m.keys().skip(keep).cloned().collect();
            for k in keys {
                m.remove(&k);
            }
        }
        for (k, v) in &spec.add {
            m.insert(k.clone(), v.clone());
        }
    } else if !spec.remove.is_empty() || !spec.add.is_empty() || spec.keep_fraction.is_some() {
        return Err(anyhow!("remove/add/keep_fraction need a JSON object"));
    }
    let mut bytes = serde_json::to_vec_pretty(&value)?;
    if let Some(p) = &spec.prepend {
        let mut v = p.clone().into_bytes();
        v.extend(bytes);
        bytes = v;
    }
    if let Some(a) = &spec.append {
        bytes.extend(a.as_bytes());
    }
    if let Some(n) = spec.truncate_bytes {
        bytes.truncate(n);
    }
    Ok(bytes)
}
