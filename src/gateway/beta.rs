//! The `anthropic-beta` policy: which beta flags may travel to which provider.
//!
//! Incident: Claude Code sends `anthropic-beta` flags meant for Anthropic's own
//! API. A gateway that forwards them verbatim to Bedrock, Vertex AI or Azure
//! gets HTTP 400 "invalid beta flag" on every request, because those providers
//! reject flags they do not know. The fix (LiteLLM PR #20935) is a table, per
//! provider, mapping each incoming flag to the provider's name for it, or to
//! `null` when the provider does not support it. This module reads that table
//! (LiteLLM's `anthropic_beta_headers_config.json` format, bundled from the
//! fixture) and applies it.
//!
//! Rules:
//! - Anthropic itself: known flags map by the table (a `null` drops the flag);
//!   unknown flags are forwarded as-is, since Anthropic is the authority on
//!   its own betas and new ones appear faster than the table is updated.
//! - Every other target: only flags in the table with a non-null value pass.
//! - The result is de-duplicated and sorted; an empty result removes the
//!   header entirely (an empty `anthropic-beta:` is itself rejected by some
//!   providers).
//! - `<provider>_header_only` columns (today `vertex_ai_header_only`) list
//!   flags that provider accepts only in the HTTP header, not in the body's
//!   `anthropic_beta` array: see [`Placement`].

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, Visitor};

/// The policy LiteLLM 1.109.1 ships, bundled so the gateway works offline and
/// has a known-good fallback when a remote policy fails to load.
const BUNDLED_JSON: &str = include_str!("../../fixtures/litellm/anthropic_beta_headers_config.json");

/// A provider that receives Anthropic-format requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BetaTarget {
    Anthropic,
    AzureAi,
    Bedrock,
    BedrockConverse,
    VertexAi,
    Databricks,
}

impl BetaTarget {
    pub const ALL: [BetaTarget; 6] = [
        BetaTarget::Anthropic,
        BetaTarget::AzureAi,
        BetaTarget::Bedrock,
        BetaTarget::BedrockConverse,
        BetaTarget::VertexAi,
        BetaTarget::Databricks,
    ];

    /// The column name in the policy file.
    pub fn as_config_key(self) -> &'static str {
        match self {
            BetaTarget::Anthropic => "anthropic",
            BetaTarget::AzureAi => "azure_ai",
            BetaTarget::Bedrock => "bedrock",
            BetaTarget::BedrockConverse => "bedrock_converse",
            BetaTarget::VertexAi => "vertex_ai",
            BetaTarget::Databricks => "databricks",
        }
    }
}

impl fmt::Display for BetaTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_config_key())
    }
}

/// The `anthropic-beta` header for the flags kept, or `None` when nothing
/// is left and the header must be removed. The one place the header is
/// written, for the proxy and the tests alike.
pub fn header_value(kept: &[String]) -> Option<String> {
    (!kept.is_empty()).then(|| kept.join(","))
}

/// Where the flags will travel. Some providers accept a flag only as the
/// `anthropic-beta` HTTP header (listed in a `<provider>_header_only` column),
/// and reject it inside the request body's `anthropic_beta` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The `anthropic-beta` HTTP header: the provider column plus its
    /// `_header_only` column.
    Header,
    /// The body's `anthropic_beta` field (Bedrock InvokeModel, Vertex
    /// rawPredict): the provider column alone.
    Body,
}

/// Failure to load a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BetaPolicyError {
    /// Malformed JSON or a value of the wrong type. `field` is the JSON path
    /// being read when the error happened (empty at the top level).
    #[error("{source_name}: line {line}, column {column}, field `{field}`: {message}")]
    Invalid { source_name: String, line: usize, column: usize, field: String, message: String },
    /// A provider column the gateway routes to is absent. Treated as an error
    /// rather than "drop everything" so a typo'd column name is caught at load.
    #[error("{source_name}: missing provider column `{provider}`")]
    MissingProvider { source_name: String, provider: &'static str },
}

/// The result of filtering incoming flags for one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilteredBetas {
    /// Provider-side flag names to send: sorted, no duplicates.
    pub kept: Vec<String>,
    /// Incoming flags that were dropped: sorted, no duplicates.
    pub dropped: Vec<String>,
}

/// One provider column: incoming flag -> provider flag, `None` = unsupported.
type Column = BTreeMap<String, Option<String>>;

/// A parsed beta policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BetaPolicy {
    /// Every column in the file, including ones no [`BetaTarget`] uses yet
    /// (e.g. `bedrock_mantle`), keyed by column name.
    columns: BTreeMap<String, Column>,
    /// `provider_aliases` when present (kept for completeness; unused here).
    aliases: BTreeMap<String, String>,
    source: String,
}

impl BetaPolicy {
    /// The policy bundled with the gateway.
    pub fn bundled() -> BetaPolicy {
        match BetaPolicy::from_json(BUNDLED_JSON, "bundled anthropic_beta_headers_config.json") {
            Ok(p) => p,
            // The bundled file is checked by a unit test, so this is
            // unreachable in a built gateway; fail closed rather than panic:
            // an empty policy forwards nothing to non-Anthropic providers.
            Err(e) => {
                tracing::error!(error = %e, "bundled anthropic-beta policy is invalid");
                BetaPolicy { columns: BTreeMap::new(), aliases: BTreeMap::new(), source: "empty".into() }
            }
        }
    }

    /// Parses a policy in LiteLLM's format. `source` names the file or URL in
    /// error messages.
    pub fn from_json(text: &str, source: &str) -> Result<BetaPolicy, BetaPolicyError> {
        let path = RefCell::new(String::new());
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed = FileSeed { path: &path }.deserialize(&mut de).and_then(|v| {
            path.borrow_mut().clear();
            de.end().map(|()| v)
        });
        let (columns, aliases) = parsed.map_err(|e| BetaPolicyError::Invalid {
            source_name: source.to_string(),
            line: e.line(),
            column: e.column(),
            field: path.borrow().clone(),
            message: strip_position(&e),
        })?;
        for target in BetaTarget::ALL {
            if !columns.contains_key(target.as_config_key()) {
                return Err(BetaPolicyError::MissingProvider {
                    source_name: source.to_string(),
                    provider: target.as_config_key(),
                });
            }
        }
        Ok(BetaPolicy { columns, aliases, source: source.to_string() })
    }

    fn column(&self, key: &str) -> Option<&Column> {
        self.columns.get(key)
    }

    fn header_only_column(&self, target: BetaTarget) -> Option<&Column> {
        self.column(&format!("{}_header_only", target.as_config_key()))
    }

    /// Filters raw `anthropic-beta` header values for `target`, the flags to
    /// travel in `placement`. See the module docs for the rules.
    pub fn filter_for(
        &self,
        target: BetaTarget,
        placement: Placement,
        incoming_header_values: &[&str],
    ) -> FilteredBetas {
        let column = self.column(target.as_config_key());
        let header_only = match placement {
            Placement::Header => self.header_only_column(target),
            Placement::Body => None,
        };
        let mut kept = BTreeSet::new();
        let mut dropped = BTreeSet::new();
        for flag in split_flags(incoming_header_values) {
            if !is_token(flag) {
                // Cannot be a beta name and could not be sent as a header.
                dropped.insert(flag.to_string());
                continue;
            }
            let mapped = match column.and_then(|c| c.get(flag)) {
                Some(Some(to)) => Some(to.as_str()),
                Some(None) => None,
                None => match header_only.and_then(|c| c.get(flag)) {
                    Some(to) => to.as_deref(),
                    None if target == BetaTarget::Anthropic => Some(flag),
                    None => None,
                },
            };
            match mapped {
                Some(to) => {
                    kept.insert(to.to_string());
                }
                None => {
                    dropped.insert(flag.to_string());
                }
            }
        }
        if !dropped.is_empty() {
            tracing::debug!(
                target_provider = %target,
                dropped = ?dropped,
                "dropped anthropic-beta flags the provider does not accept"
            );
        }
        FilteredBetas { kept: kept.into_iter().collect(), dropped: dropped.into_iter().collect() }
    }
}

/// Splits raw header values (`"a, b,,c"`, possibly several header lines) into
/// trimmed, non-empty flags.
pub fn split_flags<'a>(values: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
    values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|f| !f.is_empty())
}

/// A flag is an HTTP token-ish run of visible ASCII without separators that
/// would change the header's meaning.
fn is_token(flag: &str) -> bool {
    flag.bytes().all(|b| b.is_ascii_graphic() && b != b',' && b != b'"')
}

/// serde_json appends " at line L column C" to messages; the error type
/// already reports those separately.
fn strip_position(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(i) if e.line() > 0 => full[..i].to_string(),
        _ => full,
    }
}

// --- Deserialization -------------------------------------------------------
//
// A hand-written visitor instead of `#[derive(Deserialize)]` so that errors
// keep serde_json's exact line/column and also say which field was being read
// (tracked in `path`), without an extra dependency.

type Parsed = (BTreeMap<String, Column>, BTreeMap<String, String>);

struct FileSeed<'p> {
    path: &'p RefCell<String>,
}

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = Parsed;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of provider columns")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut columns = BTreeMap::new();
        let mut aliases = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            *self.path.borrow_mut() = key.clone();
            match key.as_str() {
                "description" => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                "provider_aliases" => {
                    aliases = map.next_value::<BTreeMap<String, String>>()?;
                }
                _ => {
                    let col = map.next_value_seed(ColumnSeed { path: self.path, column: &key })?;
                    if columns.insert(key.clone(), col).is_some() {
                        return Err(serde::de::Error::custom(format!("duplicate provider column `{key}`")));
                    }
                }
            }
        }
        Ok((columns, aliases))
    }
}

struct ColumnSeed<'p> {
    path: &'p RefCell<String>,
    column: &'p str,
}

impl<'de> DeserializeSeed<'de> for ColumnSeed<'_> {
    type Value = Column;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Column, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ColumnSeed<'_> {
    type Value = Column;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object mapping beta flags to a provider flag or null")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Column, A::Error> {
        let mut col = Column::new();
        while let Some(flag) = map.next_key::<String>()? {
            *self.path.borrow_mut() = format!("{}.{}", self.column, flag);
            let value = map.next_value::<Option<String>>()?;
            if col.insert(flag.clone(), value).is_some() {
                return Err(serde::de::Error::custom(format!("duplicate flag `{flag}`")));
            }
        }
        *self.path.borrow_mut() = self.column.to_string();
        Ok(col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled_ok() -> BetaPolicy {
        BetaPolicy::from_json(BUNDLED_JSON, "bundled").expect("bundled policy parses")
    }

    /// The header placement, as the Anthropic-format providers use it.
    fn header(p: &BetaPolicy, target: BetaTarget, values: &[&str]) -> FilteredBetas {
        p.filter_for(target, Placement::Header, values)
    }

    #[test]
    fn bundled_parses_with_expected_counts() {
        let p = bundled_ok();
        assert_eq!(p, BetaPolicy { source: "bundled".into(), ..BetaPolicy::bundled() });
        // Totals / forwarded from the research notes (LiteLLM 1.109.1).
        let counts = |k: &str| {
            let c = &p.columns[k];
            (c.len(), c.values().filter(|v| v.is_some()).count())
        };
        assert_eq!(counts("anthropic"), (37, 31));
        assert_eq!(counts("azure_ai"), (34, 22));
        assert_eq!(counts("bedrock_converse"), (33, 8));
        assert_eq!(counts("bedrock"), (35, 14));
        assert_eq!(counts("bedrock_mantle"), (35, 20));
        assert_eq!(counts("vertex_ai"), (35, 15));
        assert_eq!(counts("vertex_ai_header_only"), (2, 2));
        assert_eq!(counts("databricks"), (33, 15));
    }

    #[test]
    fn documented_example_bedrock_converse() {
        let p = bundled_ok();
        let f = header(
            &p,
            BetaTarget::BedrockConverse,
            &["advanced-tool-use-2025-11-20,computer-use-2025-01-24,unknown-header"],
        );
        assert_eq!(f.kept, vec!["computer-use-2025-01-24"]);
        assert_eq!(f.dropped, vec!["advanced-tool-use-2025-11-20", "unknown-header"]);
    }

    #[test]
    fn anthropic_forwards_unknown_but_drops_null() {
        let p = bundled_ok();
        let f = header(
            &p,
            BetaTarget::Anthropic,
            &["zzz-new-beta-2030-01-01, mcp-servers-2025-12-04", "context-1m-2025-08-07"],
        );
        assert_eq!(f.kept, vec!["context-1m-2025-08-07", "zzz-new-beta-2030-01-01"]);
        assert_eq!(f.dropped, vec!["mcp-servers-2025-12-04"]);
    }

    #[test]
    fn vertex_header_only_depends_on_placement() {
        let p = bundled_ok();
        let v = ["compact-2026-09-04,inline-tools-2026-09-15,compact-2026-01-12"];
        let header = p.filter_for(BetaTarget::VertexAi, Placement::Header, &v);
        assert_eq!(header.kept, vec!["compact-2026-01-12", "compact-2026-09-04", "inline-tools-2026-09-15"]);
        let body = p.filter_for(BetaTarget::VertexAi, Placement::Body, &v);
        // inline-tools is in the vertex_ai column itself; compact-2026-09-04 is header-only.
        assert_eq!(body.kept, vec!["compact-2026-01-12", "inline-tools-2026-09-15"]);
        assert_eq!(body.dropped, vec!["compact-2026-09-04"]);
        assert!(p.columns["vertex_ai_header_only"].contains_key("compact-2026-09-04"));
        assert!(!p.columns["vertex_ai"].contains_key("compact-2026-09-04"));
    }

    #[test]
    fn nothing_left_removes_header() {
        let p = bundled_ok();
        let f = header(&p, BetaTarget::Bedrock, &["oauth-2025-04-20", " , ,"]);
        assert!(f.kept.is_empty());
        assert!(header(&p, BetaTarget::Anthropic, &[]).kept.is_empty());
    }

    #[test]
    fn non_token_flags_are_dropped_even_for_anthropic() {
        let p = bundled_ok();
        let f = header(&p, BetaTarget::Anthropic, &["bad flag\u{7f},\"q\",ok-1"]);
        assert_eq!(f.kept, vec!["ok-1"]);
        assert_eq!(f.dropped.len(), 2);
    }

    #[test]
    fn errors_name_line_column_and_field() {
        let text = "{\n  \"description\": \"x\",\n  \"bedrock\": {\n    \"a\": 3\n  }\n}";
        let err = BetaPolicy::from_json(text, "p.json").expect_err("must fail");
        match &err {
            BetaPolicyError::Invalid { line, field, source_name, .. } => {
                assert_eq!((*line, field.as_str(), source_name.as_str()), (4, "bedrock.a", "p.json"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("line 4") && msg.contains("bedrock.a"), "{msg}");

        let err = BetaPolicy::from_json("{\"anthropic\": {\"a\": null,}}", "p").expect_err("syntax");
        assert!(matches!(err, BetaPolicyError::Invalid { line: 1, .. }), "{err}");

        let err = BetaPolicy::from_json("{\"anthropic\": {}} x", "p").expect_err("trailing");
        assert!(matches!(err, BetaPolicyError::Invalid { ref field, .. } if field.is_empty()), "{err}");

        let err = BetaPolicy::from_json("[]", "p").expect_err("not an object");
        assert!(matches!(err, BetaPolicyError::Invalid { .. }), "{err}");

        let err = BetaPolicy::from_json("{\"bedrock\": {\"a\": null, \"a\": null}}", "p").expect_err("duplicate");
        assert!(err.to_string().contains("duplicate flag `a`"), "{err}");
    }

    #[test]
    fn missing_provider_column_is_an_error() {
        let err = BetaPolicy::from_json("{\"anthropic\": {}, \"bedrok\": {}}", "p").expect_err("missing");
        assert!(matches!(err, BetaPolicyError::MissingProvider { provider: "azure_ai", .. }), "{err}");
    }
}
