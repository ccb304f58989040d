//! Tidy tests: the "Architecture invariant" lines of ARCHITECTURE.md that
//! can be checked by reading the source, checked on every `cargo test`.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn src(dir: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    rust_files(&root).into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).expect("readable"))).collect()
}

/// Lines of code (not comments) that name one of `modules`.
fn offenders(dir: &str, modules: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in src(dir) {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if modules.iter().any(|m| code.contains(m)) {
                out.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    out
}

#[test]
fn the_gateway_never_imports_the_harness() {
    let bad =
        offenders("gateway", &["crate::scenario", "crate::mocks", "crate::cli", "crate::replay", "crate::contracts"]);
    assert!(bad.is_empty(), "the gateway core names the harness:\n{}", bad.join("\n"));
}

#[test]
fn mocks_and_contracts_never_import_the_gateway() {
    // An oracle that shares the implementation's code shares its bugs.
    for dir in ["mocks", "contracts"] {
        let bad = offenders(dir, &["crate::gateway"]);
        assert!(bad.is_empty(), "src/{dir} names the gateway:\n{}", bad.join("\n"));
    }
}

/// The harness in layers, imports running only downward: the commands
/// (`cli`) over the scenario engine, over the replay engine, over the seam
/// to the gateway under test (`target`).
#[test]
fn the_harness_layers_import_only_downward() {
    let above: &[(&str, &[&str])] = &[
        ("scenario", &["crate::cli"]),
        ("replay", &["crate::cli", "crate::scenario"]),
        ("target.rs", &["crate::cli", "crate::scenario", "crate::replay", "crate::bench"]),
        // The servers a scenario, a test or the bench starts: below all of them.
        ("services.rs", &["crate::cli", "crate::scenario", "crate::replay", "crate::bench", "crate::gateway"]),
        // The bench loads our gateway as the process users run, like any target.
        ("bench", &["crate::cli", "crate::scenario", "crate::gateway"]),
    ];
    for (dir, upward) in above {
        let bad = offenders(dir, upward);
        assert!(bad.is_empty(), "src/{dir} imports a layer above it:\n{}", bad.join("\n"));
    }
}

#[test]
fn every_module_says_what_it_is_for() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let missing: Vec<String> = rust_files(&root)
        .into_iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let first = text.lines().find(|l| !l.trim().is_empty() && !l.starts_with("#!")).unwrap_or("");
            !first.starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(missing.is_empty(), "modules without a `//!` doc: {missing:?}");
}

#[test]
fn nothing_writes_the_process_environment() {
    // Parallel in-process gateways share one process: a config that set a
    // variable would leak into every other scenario.
    let bad = offenders("", &["env::set_var", "env::remove_var"]);
    assert!(bad.is_empty(), "process environment written at {bad:#?}");
}

/// Wall time in the gateway comes from its injectable clock (`Clock::wall`),
/// so SigV4 dates, `created` stamps and the spend log follow a scenario's
/// manual clock; only `clock.rs` reads the system's.
#[test]
fn the_gateway_reads_wall_time_only_from_its_clock() {
    let bad: Vec<String> =
        offenders("gateway", &["SystemTime::now"]).into_iter().filter(|l| !l.contains("clock.rs:")).collect();
    assert!(bad.is_empty(), "SystemTime::now outside the clock at {bad:#?}");
}

/// The proxy's stages never branch on a provider: what differs per provider
/// is its module's (`ProviderApi`), so adding one never touches them.
#[test]
fn the_proxy_never_matches_on_a_provider() {
    let bad = offenders("gateway/proxy", &["Provider::"]);
    assert!(bad.is_empty(), "provider-specific code in the proxy at {bad:#?}");
}

/// The "Adding a provider" recipe in ARCHITECTURE.md, kept honest: every
/// provider the gateway can call has a strict mock of its own kind and is
/// exercised by the conformance suite; the OpenAI-compatible family speaks
/// the OpenAI wire, so the OpenAI mock stands in for it and one of its
/// prefixes must be in the suite.
#[test]
fn every_provider_has_a_strict_mock_and_a_conformance_scenario() {
    use postmortem::gateway::providers::Provider;
    use postmortem::mocks::MockKind;
    let mut suite = String::new();
    for entry in std::fs::read_dir("scenarios/conformance").unwrap().flatten() {
        suite.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    let in_suite = |prefix: &str| suite.contains(&format!("model: {prefix}/"));
    let mut missing = Vec::new();
    for p in Provider::ALL {
        if p.as_str().parse::<MockKind>().is_err() {
            missing.push(format!("{p}: no mock kind of that name"));
        }
        if !in_suite(p.as_str()) {
            missing.push(format!("{p}: no conformance scenario routes to it"));
        }
    }
    let compat: Vec<&str> =
        Provider::known_prefixes().into_iter().filter(|p| Provider::ALL.iter().all(|q| q.as_str() != *p)).collect();
    assert!(!compat.is_empty());
    if !compat.iter().any(|p| in_suite(p)) {
        missing.push(format!("none of the OpenAI-compatible providers ({}) is in the suite", compat.join(", ")));
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// `Result<T, String>` in `src/`: the error's type (with `T` of any shape,
/// nested generics and tuples included), line by line of code.
fn string_results(text: &str) -> Vec<usize> {
    let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("Result<").map(|i| from + i) {
        from = at + "Result<".len();
        if code[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let (mut depth, mut args, mut prev) = (1usize, vec![String::new()], ' ');
        for c in code[from..].chars() {
            match c {
                '<' | '(' | '[' => depth += 1,
                '>' if prev != '-' => depth -= 1,
                ')' | ']' => depth -= 1,
                _ => {}
            }
            prev = c;
            if depth == 0 {
                break;
            }
            if depth == 1 && c == ',' {
                args.push(String::new());
            } else if let Some(last) = args.last_mut() {
                last.push(c);
            }
        }
        if args.len() == 2 && args[1].trim() == "String" {
            found.push(code[..at].matches('\n').count() + 1);
        }
    }
    found
}

/// Errors carry context: the gateway's are typed (thiserror, naming the
/// field, the value and why), the harness's `anyhow` with context or typed
/// where a caller branches on the kind; never a bare `String`.
#[test]
fn no_result_has_a_string_for_its_error() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bad = Vec::new();
    for path in rust_files(&root) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for n in string_results(&text) {
            bad.push(format!("{}:{n}", path.display()));
        }
    }
    assert!(bad.is_empty(), "Result<_, String> at {bad:#?}");
    // The scanner itself: it sees through nested types and tuples.
    assert_eq!(string_results("fn f() -> Result<(Vec<u8>, Option<String>), String> {}"), vec![1]);
    assert_eq!(string_results("fn f() -> Result<BTreeMap<String, String>, D::Error> {}"), Vec::<usize>::new());
    assert_eq!(string_results("// Result<(), String>\nfn g() -> anyhow::Result<()> {}"), Vec::<usize>::new());
}

/// Every source the crate's users write: tests, benches, examples, the fuzz
/// targets and `main.rs`.
fn outside_the_crate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut outside = String::new();
    for dir in ["tests", "benches", "examples", "fuzz", "src/main.rs"] {
        let path = root.join(dir);
        if path.exists() {
            for file in rust_files(&path) {
                outside.push_str(&std::fs::read_to_string(&file).expect("readable"));
                outside.push('\n');
            }
        }
    }
    outside
}

/// Whether `name` occurs in `text` as a whole identifier.
fn names(text: &str, name: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(ident) && !text[i + name.len()..].chars().next().is_some_and(ident)
    })
}

/// A `pub fn` is API for the tests, benches, examples, the fuzz targets or
/// `main.rs`; what only the crate calls is `pub(crate)`, so the compiler
/// reports it when nothing calls it any more. (By name: a function whose
/// name also occurs outside for another reason passes.)
#[test]
fn a_public_function_is_named_outside_the_crate() {
    let outside = outside_the_crate();
    let found: Vec<String> = public_declarations(&crate_sources(), &["fn", "async fn"])
        .into_iter()
        .filter(|d| !names(&outside, &d.name))
        .map(|d| format!("{}: {}", d.at, d.name))
        .collect();
    assert!(
        found.is_empty(),
        "pub functions nothing outside the crate names (make them pub(crate)):\n{}",
        found.join("\n")
    );
}

/// The crate's library sources: `src/` without `main.rs` and `lib.rs`.
fn crate_sources() -> Vec<(PathBuf, String)> {
    src("").into_iter().filter(|(p, _)| !p.ends_with("main.rs") && !p.ends_with("lib.rs")).collect()
}

/// A `pub <kind> <name>` declaration: where it is, its kind and its name.
struct Declaration {
    at: String,
    kind: &'static str,
    name: String,
}

/// Every declaration in `sources` that starts a line with `pub ` and one of `kinds`.
fn public_declarations(sources: &[(PathBuf, String)], kinds: &[&'static str]) -> Vec<Declaration> {
    let mut out = Vec::new();
    for (path, text) in sources {
        for (n, line) in text.lines().enumerate() {
            let Some(rest) = line.trim_start().strip_prefix("pub ") else { continue };
            let Some((kind, rest)) =
                kinds.iter().find_map(|k| rest.strip_prefix(k).and_then(|r| r.strip_prefix(' ')).map(|r| (*k, r)))
            else {
                continue;
            };
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            out.push(Declaration { at: format!("{}:{}", path.display(), n + 1), kind, name });
        }
    }
    out
}

#[test]
fn the_public_function_check_reads_whole_names() {
    assert!(names("a.parse_catalog(x)", "parse_catalog"));
    assert!(!names("a.parse_catalog_with(x)", "parse_catalog"));
    assert!(!names("reparse_catalog", "parse_catalog"));
}

/// The text of `text`'s public signatures, through which a type is reachable
/// from other crates even when none of them names it: each `pub fn` up to its
/// body, `pub` fields and re-exports, what a `pub type` aliases, the bodies
/// of `pub enum`s (variants) and `pub trait`s (methods), and trait impls with
/// their associated types. Declaration lines themselves are left out, so an
/// item does not count as its own use.
fn public_signatures(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let code = line.split("//").next().unwrap_or("").trim_start();
        i += 1;
        let trait_impl = code.starts_with("impl") && code.contains(" for ");
        if trait_impl || code.starts_with("type ") {
            // A trait implemented for a public type, and its associated types
            // (`type Err = …`), are as public as the type; a module's own
            // `Result<T>` alias spells its error in public signatures.
            out.push_str(code);
            out.push('\n');
            continue;
        }
        if !code.starts_with("pub ") {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if code.starts_with("pub enum ") || code.starts_with("pub trait ") {
            // The body, up to the brace that closes it at the same indentation.
            if code.trim_end().ends_with('}') {
                continue;
            }
            while i < lines.len() {
                let body = lines[i];
                i += 1;
                if body.trim() == "}" && body.len() - body.trim_start().len() == indent {
                    break;
                }
                out.push_str(body.split("//").next().unwrap_or(""));
                out.push('\n');
            }
        } else if code.starts_with("pub fn ") || code.starts_with("pub async fn ") || code.starts_with("pub use ") {
            // The signature, which may run over several lines.
            let mut part = code;
            loop {
                out.push_str(part);
                out.push('\n');
                let end = part.trim_end();
                if end.ends_with('{') || end.ends_with(';') || end.ends_with('}') || i >= lines.len() {
                    break;
                }
                part = lines[i].split("//").next().unwrap_or("");
                i += 1;
            }
        } else if let Some(aliased) = code.strip_prefix("pub type ").and_then(|t| t.split_once('=')) {
            out.push_str(aliased.1);
            out.push('\n');
        } else if !["pub struct ", "pub const ", "pub static ", "pub mod ", "pub(crate)"]
            .iter()
            .any(|k| code.starts_with(k))
        {
            out.push_str(code); // a field
            out.push('\n');
        }
    }
    out
}

/// A public type, constant or module is API: other crates (the tests,
/// benches, examples, fuzz targets, `main.rs`) name it, or a public
/// signature hands it to them; else it is `pub(crate)`. Within the crate,
/// `#![warn(unreachable_pub)]` (lib.rs) keeps `pub` off what other crates
/// cannot reach at all. (By name, as the function check.)
#[test]
fn a_public_type_is_named_outside_the_crate_or_reached_through_a_signature() {
    let outside = outside_the_crate();
    let sources = crate_sources();
    let signatures: String = sources.iter().map(|(_, text)| public_signatures(text)).collect();
    let kinds = ["struct", "enum", "trait", "type", "const", "static", "mod"];
    let found: Vec<String> = public_declarations(&sources, &kinds)
        .into_iter()
        .filter(|d| {
            let in_signature = ["struct", "enum", "trait", "type"].contains(&d.kind) && names(&signatures, &d.name);
            !names(&outside, &d.name) && !in_signature
        })
        .map(|d| format!("{}: {} {}", d.at, d.kind, d.name))
        .collect();
    assert!(
        found.is_empty(),
        "pub items nothing outside the crate names or reaches (make them pub(crate)):\n{}",
        found.join("\n")
    );
}

#[test]
fn public_signatures_are_read_whole() {
    let text = "pub struct Hidden { inner: Inner, pub shown: Shown }\n\
                pub fn f(\n    a: Arg,\n) -> Out {\n    Body\n}\n\
                pub enum E {\n    V(Variant),\n}\n\
                pub(crate) fn g(x: Private) {}\n\
                pub type Alias = Target;\n\
                impl From<Source> for E {\n    type Err = Assoc;\n}\n\
                impl Inherent {\n    fn own(&self) {}\n}\n";
    let sig = public_signatures(text);
    for name in ["Arg", "Out", "Variant", "Target", "Source", "Assoc"] {
        assert!(names(&sig, name), "{name} is in a public signature: {sig}");
    }
    for name in ["Body", "Private", "Hidden", "Alias", "Inherent"] {
        assert!(!names(&sig, name), "{name} is not: {sig}");
    }
}
