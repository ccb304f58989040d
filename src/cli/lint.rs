//! `postmortem lint`: secrets in committed files, and files that do not
//! load.
//!
//! Every text file is scanned line by line with the precise patterns of
//! [`crate::replay::redact::find_secrets`]; YAML `!!binary` values are decoded and
//! scanned too (a base64 blob hides a key from a plain regex). Scenario files
//! must pass `Scenario::load`, and cassettes (ours, VCR.py, HAR, WireMock)
//! must load. Findings print as `file:line[:column]: message`; secrets are
//! shown masked.

use anyhow::anyhow;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::replay::cassette::decode_b64;
use crate::replay::redact::{find_secrets, mask};

/// Files larger than this are not scanned (no committed text file is).
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintFinding {
    pub file: PathBuf,
    /// 1-based; `None` when the problem is the file as a whole.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for LintFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// The default paths, relative to the project root.
pub(crate) const DEFAULT_PATHS: &[&str] = &["fixtures", "scenarios", "snapshots"];

/// Lints files and directories. A path that does not exist is an error.
pub(crate) fn lint_paths(paths: &[PathBuf]) -> anyhow::Result<(Vec<LintFinding>, usize)> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut files).map_err(|e| anyhow!("{}: {e}", p.display()))?;
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(anyhow!("{}: no such file or directory", p.display()));
        }
    }
    files.sort();
    files.dedup();
    let mut findings = Vec::new();
    for f in &files {
        findings.extend(lint_file(f));
    }
    Ok((findings, files.len()))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_dir() {
            if !(name.starts_with('.') || name == "target" || name == "node_modules") {
                walk(&p, out)?;
            }
        } else {
            out.push(p);
        }
    }
    Ok(())
}

fn finding(file: &Path, line: Option<usize>, column: Option<usize>, message: String) -> LintFinding {
    LintFinding { file: file.to_path_buf(), line, column, message }
}

/// Everything wrong with one file.
pub fn lint_file(path: &Path) -> Vec<LintFinding> {
    let mut out = Vec::new();
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_FILE_BYTES => return out,
        Ok(_) => {}
        Err(e) => return vec![finding(path, None, None, format!("cannot read: {e}"))],
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return vec![finding(path, None, None, format!("cannot read: {e}"))],
    };
    // Binary files (images, archives) have no lines to point at; in
    // scenarios/ nothing binary belongs, so one there is a finding.
    if bytes.iter().take(8192).any(|b| *b == 0) {
        if in_dir(path, "scenarios") {
            out.push(finding(path, None, None, "a binary file among the scenarios (not a scenario, not text)".into()));
        }
        return out;
    }
    // A scenario or cassette that is not UTF-8 would be read with
    // replacement characters: say where the first bad byte is.
    if let Err(e) = std::str::from_utf8(&bytes) {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
        out.push(finding(path, Some(line), None, format!("not valid UTF-8 (byte {at})")));
    }
    let text = String::from_utf8_lossy(&bytes);
    scan_secrets(path, &text, &mut out);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "yaml" | "yml" => check_yaml(path, &text, &mut out),
        "json" | "har" if in_dir(path, "cassettes") || ext == "har" => check_json_cassette(path, &text, &mut out),
        _ => {}
    }
    out
}

fn in_dir(path: &Path, name: &str) -> bool {
    path.components().any(|c| c.as_os_str() == name)
}

fn scan_secrets(path: &Path, text: &str, out: &mut Vec<LintFinding>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut n = 0;
    while n < lines.len() {
        let line = lines[n];
        for hit in find_secrets(line) {
            let secret = &line[hit.start..hit.end];
            let column = line[..hit.start].chars().count() + 1;
            out.push(finding(path, Some(n + 1), Some(column), format!("possible {}: {}", hit.kind, mask(secret))));
        }
        // `key: !!binary |` followed by an indented base64 block.
        let trimmed = line.trim_end();
        if trimmed.ends_with("!!binary |") || trimmed.ends_with("!!binary |-") || trimmed.ends_with("!!binary") {
            let indent = line.len() - line.trim_start().len();
            let mut blob = String::new();
            let mut m = n + 1;
            while m < lines.len() {
                let l = lines[m];
                let i = l.len() - l.trim_start().len();
                if l.trim().is_empty() || i <= indent {
                    break;
                }
                blob.push_str(l.trim());
                m += 1;
            }
            if let Ok(decoded) = decode_b64(&blob) {
                let decoded = String::from_utf8_lossy(&decoded);
                for hit in find_secrets(&decoded) {
                    let secret = &decoded[hit.start..hit.end];
                    out.push(finding(
                        path,
                        Some(n + 1),
                        None,
                        format!("possible {} inside a !!binary value: {}", hit.kind, mask(secret)),
                    ));
                }
            }
        }
        n += 1;
    }
}

/// `... at line 12 column 3` in serde_yaml_ng messages.
fn line_in(message: &str) -> Option<usize> {
    let i = message.rfind("at line ")?;
    message[i + 8..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn check_yaml(path: &Path, text: &str, out: &mut Vec<LintFinding>) {
    let untagged = crate::replay::import_vcr::untag_binary(text);
    let value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(&untagged) {
        Ok(v) => v,
        Err(e) => {
            let line = e.location().map(|l| l.line());
            out.push(finding(path, line, None, format!("not valid YAML: {e}")));
            return;
        }
    };
    let is_scenario = in_dir(path, "scenarios") || (value.get("steps").is_some() && value.get("gateway").is_some());
    if is_scenario {
        if let Err(e) = crate::scenario::Scenario::load(path) {
            let message = e.problem();
            out.push(finding(path, line_in(&message), None, format!("invalid scenario: {message}")));
        }
        return;
    }
    if value.get("format").is_some() || value.get("interactions").is_some() {
        if let Err(e) = crate::replay::parse_any(text, &path.display().to_string()) {
            out.push(cassette_finding(path, e));
        }
    }
}

fn check_json_cassette(path: &Path, text: &str, out: &mut Vec<LintFinding>) {
    if let Err(e) = crate::replay::parse_any(text, &path.display().to_string()) {
        out.push(cassette_finding(path, e));
    }
}

fn cassette_finding(path: &Path, e: crate::replay::CassetteError) -> LintFinding {
    let file = path.display().to_string();
    match e {
        crate::replay::CassetteError::AtLine { line, message, .. } => {
            finding(path, Some(line), None, format!("cassette does not load: {message}"))
        }
        other => {
            let msg = other.to_string();
            let msg = msg.strip_prefix(&format!("{file}: ")).unwrap_or(&msg).to_string();
            finding(path, line_in(&msg), None, format!("cassette does not load: {msg}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn secrets_are_reported_with_line_and_column_masked() {
        let dir = tempfile::tempdir().unwrap();
        let key = format!("sk-proj-{}", "Zq8Xw7Vu6Ts5Rq4Po3Nm2Lk1Ji0HgFeDc");
        let blob = base64::engine::general_purpose::STANDARD.encode(format!("{{\"k\": \"{key}\"}}"));
        let f = dir.path().join("notes.yaml");
        std::fs::write(&f, format!("a: 1\nb: Bearer test-openai-credential\nc: x {key}\nd: !!binary |\n  {blob}\n"))
            .unwrap();
        let found = lint_file(&f);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].line, found[0].column), (Some(3), Some(6)));
        assert!(found[0].message.contains("openai-key") && !found[0].to_string().contains(&key));
        assert_eq!(found[1].line, Some(4));
        assert!(found[1].message.contains("!!binary"));
    }

    #[test]
    fn broken_scenarios_are_findings() {
        let dir = tempfile::tempdir().unwrap();
        let sdir = dir.path().join("scenarios");
        std::fs::create_dir(&sdir).unwrap();
        let f = sdir.join("bad.yaml");
        std::fs::write(&f, "name: x\ngateway: {}\nsteps:\n  - request: {path: /v1/models}\n    expct: {}\n").unwrap();
        let found = lint_file(&f);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("invalid scenario"), "{}", found[0]);
        assert_eq!(found[0].line, Some(5), "the line of the unknown key");
    }
}
