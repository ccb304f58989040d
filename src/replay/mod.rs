//! Record and replay real provider traffic.
//!
//! - [`cassette`]: our cassette format (YAML), see docs/cassettes.md;
//! - `import_vcr`, `import_har`, `import_wiremock`: other formats in;
//! - [`redact`]: secrets out, before anything is written;
//! - [`record`]: a recording reverse proxy;
//! - [`engine`] and [`diff`]: drive our gateway with the recorded
//!   client requests against mock providers serving the recorded responses,
//!   and compare both sides with the recording.
//!
//! The `record`, `replay`, `import` and `lint` commands are in
//! [`crate::cli::replay`] and [`crate::cli::lint`].
//!
//! Like the rest of the harness, this module depends on the gateway and the
//! mocks; the gateway never depends on it.

pub mod cassette;
pub mod diff;
pub mod engine;
pub(crate) mod import_har;
pub(crate) mod import_vcr;
pub(crate) mod import_wiremock;
pub mod record;
pub mod redact;

use std::path::Path;

pub use cassette::{Api, Body, Cassette, Interaction, Request, Response};
pub use engine::{replay_cassette, scenario_stubs, ReplayOptions, ReplayVerdict};

/// Errors reading, importing or writing a cassette. Each names the file, and
/// the line when the parser knows it.
#[derive(Debug, thiserror::Error)]
pub enum CassetteError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    AtLine { file: String, line: usize, message: String },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{file}: cannot write: {source}")]
    Write {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

impl CassetteError {
    pub(crate) fn yaml(file: &str, e: &serde_yaml_ng::Error) -> CassetteError {
        match e.location() {
            Some(loc) => CassetteError::AtLine { file: file.to_string(), line: loc.line(), message: e.to_string() },
            None => CassetteError::Invalid { file: file.to_string(), message: e.to_string() },
        }
    }

    pub(crate) fn json(file: &str, e: &serde_json::Error) -> CassetteError {
        CassetteError::AtLine { file: file.to_string(), line: e.line(), message: e.to_string() }
    }

    pub(crate) fn invalid(file: &str, message: impl Into<String>) -> CassetteError {
        CassetteError::Invalid { file: file.to_string(), message: message.into() }
    }

    /// A problem found inside the file: its whole chain of context (the
    /// field path first) as the message.
    pub(crate) fn within(file: &str, problem: &anyhow::Error) -> CassetteError {
        CassetteError::invalid(file, format!("{problem:#}"))
    }
}

/// The formats [`load_any`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Postmortem,
    Vcr,
    Har,
    Wiremock,
}

/// Reads a cassette in any format we know: ours, VCR.py YAML, HAR 1.2, or
/// WireMock stub mappings. Imported cassettes come back redacted.
pub fn load_any(path: &Path) -> Result<(Cassette, SourceFormat), CassetteError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CassetteError::Read { file: file.clone(), source })?;
    parse_any(&text, &file)
}

/// [`load_any`] on text; `file` names it in messages and in `metadata.source`.
pub fn parse_any(text: &str, file: &str) -> Result<(Cassette, SourceFormat), CassetteError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let v: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| CassetteError::json(file, &e))?;
        if v.get("log").is_some() {
            return import_har::import(trimmed, file).map(|c| (c, SourceFormat::Har));
        }
        if v.get("request").is_some() || v.get("mappings").is_some() || v.is_array() {
            return import_wiremock::import(trimmed, file).map(|c| (c, SourceFormat::Wiremock));
        }
        return Err(CassetteError::invalid(
            file,
            "JSON that is neither a HAR file (`log.entries`) nor WireMock stub mappings (`request`/`response`)",
        ));
    }
    let yaml = import_vcr::untag_binary(text);
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).map_err(|e| CassetteError::yaml(file, &e))?;
    if v.get("format").is_some() {
        return Cassette::parse(text, file).map(|c| (c, SourceFormat::Postmortem));
    }
    if v.get("interactions").is_some() {
        return import_vcr::import_value(&v, text, file).map(|c| (c, SourceFormat::Vcr));
    }
    Err(CassetteError::invalid(
        file,
        format!(
            "not a cassette: expected `format: {}`, a VCR.py cassette (`interactions:`), a HAR file or WireMock mappings",
            cassette::FORMAT
        ),
    ))
}
