//! Properties and incident regressions for the model catalog and key access.
//!
//! * Incident 2 (stale provider index after a cost-map reload): after any
//!   sequence of reloads, every (key, model) access decision must equal the
//!   decision computed naively from the current map alone. The same property is
//!   run with the known-bad `stale_index_on_reload` and must find a
//!   counterexample, which proves the property can fail.
//! * Incident 6 (silent fallback on a malformed map): a malformed, truncated,
//!   empty or shrunk map is never adopted and the status says why; the
//!   known-bad `silent_fallback_to_bundled` is caught by the same check.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postmortem::gateway::catalog::{
    parse_catalog, Catalog, CatalogBugs, CatalogError, CatalogStore, Usage, ValidationLimits, BUNDLED_COST_MAP,
};
use postmortem::gateway::clock::SystemClock;
use postmortem::gateway::keys::{AccessList, KeyError, KeyRecord, KeySpec, KeyStore};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};
use serde_json::{json, Map, Value};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_770_000_000 + secs)
}

fn fixture_map() -> Map<String, Value> {
    serde_json::from_slice(BUNDLED_COST_MAP).expect("fixture parses")
}

fn fixture_catalog() -> &'static Catalog {
    static CAT: OnceLock<Catalog> = OnceLock::new();
    CAT.get_or_init(|| {
        parse_catalog(BUNDLED_COST_MAP, "fixture", None, &ValidationLimits::default(), t(0)).expect("fixture is valid")
    })
}

fn to_bytes(map: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec_pretty(map).expect("serialises")
}

fn compile(patterns: &[&str]) -> AccessList {
    let owned: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
    AccessList::compile(&owned).expect("valid patterns")
}

// ---------------------------------------------------------------------------
// Reference model: access computed from the raw map, no indexes
// ---------------------------------------------------------------------------

/// The provider of a name by scanning the map: a direct key first, then the
/// `rest` of a `prefix/rest` key; first in file order; case-insensitive.
fn reference_provider_of(map: &Map<String, Value>, name: &str) -> Option<String> {
    let lower = name.to_lowercase();
    let with_provider =
        || map.iter().filter_map(|(k, v)| v.get("litellm_provider").and_then(Value::as_str).map(|p| (k, p)));
    with_provider()
        .find(|(k, _)| k.to_lowercase() == lower)
        .or_else(|| {
            with_provider().find(|(k, _)| k.split_once('/').is_some_and(|(_, rest)| rest.to_lowercase() == lower))
        })
        .map(|(_, p)| p.to_string())
}

fn reference_allows(patterns: &[&str], model: &str, map: &Map<String, Value>) -> bool {
    if patterns.is_empty() {
        return true;
    }
    for p in patterns {
        if *p == "*" || *p == model {
            return true;
        }
        if let Some(prefix) = p.strip_suffix('*') {
            if model.starts_with(prefix) {
                return true;
            }
        }
    }
    if !model.contains('/') {
        if let Some(provider) = reference_provider_of(map, model) {
            let wanted = format!("{provider}/*");
            return patterns.contains(&wanted.as_str());
        }
    }
    false
}

// ---------------------------------------------------------------------------
// Generated reload sequences
// ---------------------------------------------------------------------------

const PROVIDERS: [&str; 5] = ["anthropic", "openai", "bedrock", "bedrock_converse", "vertex_ai"];
const NAMES: [&str; 6] =
    ["claude-sonnet-4-6", "claude-sonnet-4-5", "gpt-4o", "gpt-5.2", "us.anthropic.claude-x", "nova-pro"];
const KEYS: [&[&str]; 12] = [
    &["anthropic/*"],
    &["openai/*"],
    &["bedrock/*"],
    &["bedrock_converse/*"],
    &["vertex_ai/*"],
    &["anthropic/*", "openai/*"],
    &["bedrock/us.*"],
    &["gpt-4o"],
    &["claude-sonnet-4-6", "bedrock/*"],
    &["anthropic*"],
    &["*"],
    &[],
];

fn query_models() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in NAMES {
        out.push(n.to_string());
        out.push(n.to_uppercase());
        for p in PROVIDERS {
            out.push(format!("{p}/{n}"));
        }
        out.push(format!("anthropic-evil/{n}"));
    }
    out.push("unknown-model".into());
    out
}

#[derive(Debug, Clone)]
struct GenEntry {
    /// `Some(p)`: key is `PROVIDERS[p]/name`.
    prefix: Option<usize>,
    name: usize,
    provider: usize,
    upper: bool,
}

fn entry_strategy() -> impl Strategy<Value = GenEntry> {
    (proptest::option::of(0..PROVIDERS.len()), 0..NAMES.len(), 0..PROVIDERS.len(), proptest::bool::weighted(0.1))
        .prop_map(|(prefix, name, provider, upper)| GenEntry { prefix, name, provider, upper })
}

fn map_strategy() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::vec(entry_strategy(), 0..8).prop_map(|entries| {
        let mut map = Map::new();
        for e in entries {
            let name = if e.upper { NAMES[e.name].to_uppercase() } else { NAMES[e.name].to_string() };
            let key = match e.prefix {
                Some(p) => format!("{}/{name}", PROVIDERS[p]),
                None => name,
            };
            map.insert(key, json!({"litellm_provider": PROVIDERS[e.provider], "input_cost_per_token": 1e-6}));
        }
        map
    })
}

#[derive(Debug, Clone)]
enum Op {
    /// Adopted iff it has at least one model.
    Reload(Map<String, Value>),
    /// The same map with an extra `{`: never adopted.
    Malformed(Map<String, Value>),
}

/// An initial map and the operations applied to it.
type Scenario = (Map<String, Value>, Vec<Op>);

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    let op = prop_oneof![
        4 => map_strategy().prop_map(Op::Reload),
        1 => map_strategy().prop_map(Op::Malformed),
    ];
    (map_strategy(), proptest::collection::vec(op, 1..6))
}

fn property_limits() -> ValidationLimits {
    ValidationLimits { min_models: 1, max_shrink_ratio: 0.0 }
}

fn check_scenario(bugs: CatalogBugs, initial: Map<String, Value>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let start_limits = ValidationLimits { min_models: 0, max_shrink_ratio: 0.0 };
    let first = parse_catalog(&to_bytes(&initial), "gen-0", None, &start_limits, t(0))
        .map_err(|e| TestCaseError::fail(format!("initial map refused: {e}")))?;
    let store = CatalogStore::with_options(first, property_limits(), BUNDLED_COST_MAP);
    store.set_known_bugs(bugs);
    let keys: Vec<(&[&str], AccessList)> = KEYS.iter().map(|k| (*k, compile(k))).collect();
    let models = query_models();

    let mut expected = initial;
    for (i, op) in ops.into_iter().enumerate() {
        let now = t(10 * (i as u64 + 1));
        let source = format!("gen-{}", i + 1);
        let refused = match op {
            Op::Reload(map) => {
                let result = store.try_reload(&to_bytes(&map), &source, now);
                prop_assert_eq!(result.is_ok(), !map.is_empty(), "reload {}", i + 1);
                if !map.is_empty() {
                    expected = map;
                }
                result.is_err()
            }
            Op::Malformed(map) => {
                let mut bytes = to_bytes(&map);
                bytes.insert(1, b'{');
                prop_assert!(store.try_reload(&bytes, &source, now).is_err());
                true
            }
        };
        prop_assert_eq!(store.status().stale, refused);
        let current = store.current();
        prop_assert_eq!(current.len(), expected.len());
        for (patterns, list) in &keys {
            for model in &models {
                let want = reference_allows(patterns, model, &expected);
                let got = list.allows(model, &current);
                prop_assert_eq!(
                    got,
                    want,
                    "key {:?} model {:?} after op {}; map {:?}",
                    patterns,
                    model,
                    i + 1,
                    expected.keys().collect::<Vec<_>>()
                );
            }
        }
    }
    Ok(())
}

fn run_property(bugs: CatalogBugs, cases: u32) -> Result<(), TestError<Scenario>> {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    runner.run(&scenario_strategy(), |(initial, ops)| check_scenario(bugs, initial, ops))
}

#[test]
fn access_after_any_reload_sequence_matches_the_current_map() {
    if let Err(e) = run_property(CatalogBugs::default(), 256) {
        panic!("{e}");
    }
}

#[test]
fn the_property_catches_the_stale_index_bug() {
    let bugs = CatalogBugs { stale_index_on_reload: true, ..CatalogBugs::default() };
    match run_property(bugs, 256) {
        Err(TestError::Fail(reason, (initial, ops))) => {
            eprintln!("counterexample: initial {initial:?}, ops {ops:?}: {reason}");
        }
        Err(other) => panic!("expected a failing case, got {other}"),
        Ok(()) => panic!("the property did not detect stale_index_on_reload"),
    }
}

// ---------------------------------------------------------------------------
// Incident 2 on the real catalog
// ---------------------------------------------------------------------------

fn fixture_without(model: &str) -> Catalog {
    let mut map = fixture_map();
    map.shift_remove(model);
    parse_catalog(&to_bytes(&map), "old-map", None, &ValidationLimits::default(), t(0)).expect("valid")
}

/// The gateway's admission check (`proxy::admit`): `allows`, else LiteLLM's denial.
fn check(key: &KeyRecord, model: &str, catalog: &Catalog) -> Result<(), KeyError> {
    if key.access().allows(model, catalog) {
        Ok(())
    } else {
        Err(key.access().denial(model))
    }
}

fn incident2(bugs: CatalogBugs) -> Result<(), KeyError> {
    let store = CatalogStore::new(fixture_without("claude-sonnet-4-6"));
    store.set_known_bugs(bugs);
    let keys = KeyStore::new(SystemClock::shared());
    let spec = KeySpec { models: vec!["anthropic/*".into()], ..KeySpec::default() };
    let (secret, _) = keys.generate(spec, None).expect("generated");
    let key = keys.authenticate(&secret).expect("authenticated");
    // Before the reload the old map does not know the model: refused.
    assert!(check(&key, "claude-sonnet-4-6", &store.current()).is_err());
    store.try_reload(BUNDLED_COST_MAP, "new-map", t(10)).expect("the new map is valid");
    let current = store.current();
    assert!(current.model("claude-sonnet-4-6").is_some());
    check(&key, "claude-sonnet-4-6", &current)
}

#[test]
fn anthropic_wildcard_gets_a_model_added_by_reload() {
    assert_eq!(incident2(CatalogBugs::default()), Ok(()));
}

#[test]
fn stale_index_bug_reproduces_the_incident_message() {
    let err = incident2(CatalogBugs { stale_index_on_reload: true, ..CatalogBugs::default() }).unwrap_err();
    assert_eq!(
        err.to_string(),
        "key not allowed to access model. This key can only access models=['anthropic/*']. Tried to access claude-sonnet-4-6"
    );
}

// ---------------------------------------------------------------------------
// Incident 6: refused maps are never adopted, and say so
// ---------------------------------------------------------------------------

/// A newer map than the bundled copy: the fixture plus one model.
fn newer_map() -> Map<String, Value> {
    let mut map = fixture_map();
    map.insert(
        "azure/gpt-5.9".into(),
        json!({"litellm_provider": "azure", "mode": "chat",
               "input_cost_per_token": 2e-6, "output_cost_per_token": 1.6e-5}),
    );
    map
}

fn bad_maps() -> Vec<(&'static str, Vec<u8>)> {
    let text = String::from_utf8(to_bytes(&newer_map())).expect("utf-8");
    let at = text.find("\"gpt-4o\": {").expect("gpt-4o") + "\"gpt-4o\": {".len();
    let extra_brace = format!("{}{{{}", &text[..at], &text[at..]).into_bytes();
    let truncated = text.as_bytes()[..text.len() / 3].to_vec();
    let tenth: Map<String, Value> =
        newer_map().into_iter().enumerate().filter(|(i, _)| i % 10 == 0).map(|(_, kv)| kv).collect();
    vec![
        ("extra brace", extra_brace),
        ("truncated", truncated),
        ("empty object", b"{}".to_vec()),
        ("shrunk to a tenth", to_bytes(&tenth)),
    ]
}

/// The harness's check: a refused reload leaves the map in use untouched and
/// the status stale with a reason. Returns what went wrong, if anything.
fn refused_reload_is_visible(store: &CatalogStore, bytes: &[u8], now: SystemTime) -> Result<(), String> {
    let before = store.current();
    let result = store.try_reload(bytes, "remote", now);
    let after = store.current();
    let status = store.status();
    if result.is_ok() {
        return Err("the reload was reported as successful".into());
    }
    if !Arc::ptr_eq(&before, &after) {
        return Err(format!("the map in use changed ({} -> {} models)", before.len(), after.len()));
    }
    if !status.stale || status.reason.is_none() || status.last_attempt_ok {
        return Err(format!("status does not say the map is stale: {status:?}"));
    }
    Ok(())
}

fn newer_store() -> CatalogStore {
    let cat =
        parse_catalog(&to_bytes(&newer_map()), "remote", None, &ValidationLimits::default(), t(0)).expect("valid");
    CatalogStore::new(cat)
}

#[test]
fn malformed_truncated_empty_and_shrunk_maps_are_never_adopted() {
    let store = newer_store();
    let usage = Usage { input_tokens: 1000, output_tokens: 1000, ..Usage::default() };
    for (i, (what, bytes)) in bad_maps().into_iter().enumerate() {
        let now = t(10 * (i as u64 + 1));
        if let Err(problem) = refused_reload_is_visible(&store, &bytes, now) {
            panic!("{what}: {problem}");
        }
        let status = store.status();
        let reason = status.reason.unwrap_or_default();
        let expected_words = match what {
            "extra brace" => "not valid JSON (line",
            "truncated" => "not valid JSON (line",
            "empty object" => "fewer than the minimum of 50",
            _ => "models from 4552 (minimum allowed is 0.5 x 4552",
        };
        assert!(reason.contains(expected_words), "{what}: {reason}");
        assert_eq!(status.last_attempt_at, now);
        assert_eq!(status.model_count, 4552);
        // The newest model is still priced, not "not mapped"/0.
        let cost = store.current().cost("azure/gpt-5.9", &usage).expect("still priced");
        assert!((cost.total_usd - 0.018).abs() < 1e-12);
    }
    // A good reload (the real fixture) is adopted and clears the stale flag.
    let report = store.try_reload(BUNDLED_COST_MAP, "remote", t(100)).expect("the real map is valid");
    assert_eq!((report.model_count, report.removed, report.added), (4551, 1, 0));
    let status = store.status();
    assert!(!status.stale && status.reason.is_none() && status.last_attempt_ok);
    assert_eq!(status.model_count, 4551);
}

#[test]
fn the_check_catches_the_silent_fallback_bug() {
    let store = newer_store();
    store.set_known_bugs(CatalogBugs { silent_fallback_to_bundled: true, ..CatalogBugs::default() });
    for (what, bytes) in bad_maps() {
        let problem = refused_reload_is_visible(&store, &bytes, t(5));
        assert!(problem.is_err(), "{what}: the check missed the silent fallback");
    }
    // What users saw in the incident: the newer model is no longer mapped.
    assert!(!store.status().stale);
    assert_eq!(store.current().cost("azure/gpt-5.9", &Usage::default()), None);
}

#[test]
fn parse_errors_carry_line_and_column() {
    let (_, extra_brace) = bad_maps().remove(0);
    let err = parse_catalog(&extra_brace, "t", None, &ValidationLimits::default(), t(0)).unwrap_err();
    match err {
        CatalogError::Parse { line, column, .. } => {
            assert!(line > 1 && column > 0, "{line}:{column}")
        }
        other => panic!("expected a parse error, got {other}"),
    }
}

// ---------------------------------------------------------------------------
// Real catalog: count and wildcard boundaries
// ---------------------------------------------------------------------------

#[test]
fn the_full_fixture_loads_with_4551_models() {
    assert_eq!(fixture_catalog().len(), 4551);
}

#[test]
fn wildcards_never_grant_more_than_they_say_on_the_real_catalog() {
    let cat = fixture_catalog();
    let anthropic = compile(&["anthropic/*"]);
    assert!(anthropic.allows("claude-sonnet-4-6", cat));
    assert!(anthropic.allows("anthropic/claude-sonnet-4-6", cat));
    for denied in [
        "gpt-4o",
        "openai/gpt-4o",
        "anthropic-evil/claude-sonnet-4-6",
        "vertex_ai/claude-sonnet-4-5",
        "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
    ] {
        assert!(!anthropic.allows(denied, cat), "anthropic/* granted {denied}");
    }

    let bedrock = compile(&["bedrock/*"]);
    let converse_only = cat
        .iter()
        .find(|(name, e)| !name.contains('/') && e.litellm_provider.as_deref() == Some("bedrock_converse"))
        .map(|(name, _)| name)
        .expect("the fixture has bare bedrock_converse models");
    assert_eq!(cat.provider_of(converse_only), Some("bedrock_converse"));
    assert!(!bedrock.allows(converse_only, cat), "bedrock/* granted {converse_only}");
    assert!(!bedrock.allows("bedrock_converse/anything", cat));
    assert!(bedrock.allows("bedrock/anything", cat));

    let us = compile(&["bedrock/us.*"]);
    assert!(us.allows("bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", cat));
    assert!(!us.allows("bedrock/eu.anthropic.claude-sonnet-4-5-20250929-v1:0", cat));
    assert!(!us.allows("us.anthropic.claude-sonnet-4-5-20250929-v1:0", cat));
}

#[test]
fn access_cost_does_not_depend_on_pattern_count() {
    // Not a timing test: a key with many patterns still decides by lookups,
    // so the result is the same as with the one relevant pattern.
    let cat = fixture_catalog();
    let mut many: Vec<String> = (0..10_000).map(|i| format!("provider{i}/*")).collect();
    many.push("anthropic/*".into());
    let list = AccessList::compile(&many).expect("valid");
    assert!(list.allows("claude-sonnet-4-6", cat));
    assert!(list.allows("provider9999/x", cat));
    assert!(!list.allows("provider10000/x", cat));
    assert!(!list.allows("gpt-4o", cat));
}
