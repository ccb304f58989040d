//! Runs one scenario: start its mock providers and assets, build the
//! gateway under test, execute the steps, check the expectations.

use super::assets::{materialize, AssetServer};
use super::expect::{check_stat, html_links, json_contains, short, stream_verdict};
use super::model::{Action, Expect, GatewaySpec, ProviderExpect, RequestSpec, Scenario, UpstreamExpect};
use super::target::GatewayUnderTest;
use crate::gateway::beta::BetaPolicy;
use crate::gateway::{Config, KnownBugs};
use crate::mocks::{MockKind, MockOptions, MockProvider};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long any single wait in a scenario may take before it is a failure.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where `file:` paths in scenarios are resolved.
    pub project_root: PathBuf,
    pub bugs: KnownBugs,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepFailure {
    pub step_index: usize,
    pub step: String,
    pub checks_incident: bool,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    Failed,
    NotApplicable,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub name: String,
    pub file: String,
    pub verdict: Verdict,
    pub failure: Option<StepFailure>,
    pub not_applicable: Option<String>,
    pub duration_ms: u128,
    #[serde(skip)]
    pub transcript: Vec<Value>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        matches!(self.verdict, Verdict::Passed)
    }
}

struct Response {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Response {
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Ctx<'a> {
    scenario: &'a Scenario,
    gut: GatewayUnderTest,
    mocks: HashMap<String, MockProvider>,
    assets: AssetServer,
    http: reqwest::Client,
    master_key: Option<String>,
    streams: HashMap<String, reqwest::Response>,
    journal_seen: HashMap<String, usize>,
    root: PathBuf,
    transcript: Vec<Value>,
}

pub async fn run_scenario(scenario: &Scenario, file: &Path, opts: &RunOptions) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome {
        name: scenario.name.clone(),
        file: file.display().to_string(),
        verdict: Verdict::Passed,
        failure: None,
        not_applicable: None,
        duration_ms: 0,
        transcript: Vec::new(),
    };
    match setup(scenario, file, opts).await {
        Err(message) => {
            outcome.verdict = Verdict::Failed;
            outcome.failure =
                Some(StepFailure { step_index: 0, step: "setup".into(), checks_incident: false, message });
        }
        Ok(mut ctx) => {
            let missing: Vec<String> = scenario
                .required_capabilities()
                .into_iter()
                .filter(|c| !ctx.gut.has(*c))
                .map(|c| format!("{c:?}"))
                .collect();
            if !missing.is_empty() {
                outcome.verdict = Verdict::NotApplicable;
                outcome.not_applicable = Some(format!("the target lacks {}", missing.join(", ")));
            } else {
                for i in 0..scenario.steps.len() {
                    let res = tokio::time::timeout(STEP_TIMEOUT * 2, run_step(&mut ctx, i)).await;
                    let res = res.unwrap_or_else(|_| Err(format!("timed out after {}s", (STEP_TIMEOUT * 2).as_secs())));
                    if let Err(message) = res {
                        outcome.verdict = Verdict::Failed;
                        outcome.failure = Some(StepFailure {
                            step_index: i,
                            step: scenario.step_label(i),
                            checks_incident: scenario.steps[i].checks_incident,
                            message,
                        });
                        break;
                    }
                }
            }
            outcome.transcript = std::mem::take(&mut ctx.transcript);
        }
    }
    outcome.duration_ms = started.elapsed().as_millis();
    outcome
}

fn beta_allowlist(kind: MockKind) -> Option<std::collections::BTreeSet<String>> {
    use crate::gateway::beta::BetaTarget;
    let target = match kind {
        MockKind::Bedrock => BetaTarget::Bedrock,
        MockKind::VertexAi => BetaTarget::VertexAi,
        MockKind::AzureAi => BetaTarget::AzureAi,
        _ => return None,
    };
    Some(BetaPolicy::bundled().allowlist(target))
}

async fn setup<'a>(scenario: &'a Scenario, file: &Path, opts: &RunOptions) -> Result<Ctx<'a>, String> {
    let mut mocks = HashMap::new();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for (name, spec) in &scenario.providers {
        let options = MockOptions { strict: spec.strict, beta_allowlist: beta_allowlist(spec.kind) };
        let mock = MockProvider::start(spec.kind, name, options)
            .await
            .map_err(|e| format!("providers.{name}: mock did not start: {e}"))?;
        for (n, stub) in spec.stubs.iter().enumerate() {
            mock.mount(stub.clone()).await.map_err(|e| format!("providers.{name}.stubs[{n}]: {e}"))?;
        }
        if let Some(path) = &spec.cassette {
            let stubs = crate::replay::scenario_stubs(&opts.project_root.join(path), spec.kind)
                .map_err(|e| format!("providers.{name}.cassette: {e}"))?;
            for stub in stubs {
                mock.mount(stub).await.map_err(|e| format!("providers.{name}.cassette: {e}"))?;
            }
        }
        vars.insert(format!("providers.{name}.url"), mock.url());
        mocks.insert(name.clone(), mock);
    }
    let assets = AssetServer::start().await.map_err(|e| format!("asset server: {e}"))?;
    for (name, spec) in &scenario.assets {
        let bytes = materialize(spec, &opts.project_root).map_err(|e| format!("assets.{name}: {e}"))?;
        assets.set(name, bytes);
        vars.insert(format!("assets.{name}.url"), assets.url(name));
    }
    let config = render_config(scenario, file, &opts.project_root, &vars)?;
    let master_key = config.general_settings.master_key.clone();
    let gut = GatewayUnderTest::in_process(config, opts.bugs).await?;
    let http = reqwest::Client::builder().tcp_nodelay(true).timeout(STEP_TIMEOUT).build().map_err(|e| e.to_string())?;
    Ok(Ctx {
        scenario,
        gut,
        mocks,
        assets,
        http,
        master_key,
        streams: HashMap::new(),
        journal_seen: HashMap::new(),
        root: opts.project_root.clone(),
        transcript: Vec::new(),
    })
}

/// Substitutes `${...}` placeholders in every string of a JSON value.
fn substitute(v: &mut Value, vars: &BTreeMap<String, String>) -> Result<(), String> {
    match v {
        Value::String(s) => {
            while let Some(start) = s.find("${") {
                let end = s[start..].find('}').ok_or_else(|| format!("unclosed placeholder in `{s}`"))? + start;
                let name = &s[start + 2..end];
                let val = vars.get(name).ok_or_else(|| {
                    format!(
                        "unknown placeholder `${{{name}}}` (known: {})",
                        vars.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                })?;
                s.replace_range(start..=end, val);
            }
            Ok(())
        }
        Value::Array(a) => a.iter_mut().try_for_each(|x| substitute(x, vars)),
        Value::Object(m) => m.values_mut().try_for_each(|x| substitute(x, vars)),
        _ => Ok(()),
    }
}

/// The scenario's gateway config with placeholders filled, as the
/// LiteLLM-format YAML a separate gateway process would read.
pub fn render_config_yaml(
    scenario: &Scenario,
    file: &Path,
    root: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut value: Value = match &scenario.gateway {
        GatewaySpec::Inline(v) => v.clone(),
        GatewaySpec::Path(p) => {
            let path = root.join(p);
            let text = std::fs::read_to_string(&path).map_err(|e| format!("gateway: {}: {e}", path.display()))?;
            serde_yaml_ng::from_str(&text).map_err(|e| format!("gateway: {}: {e}", path.display()))?
        }
    };
    substitute(&mut value, vars).map_err(|e| format!("gateway: {e}"))?;
    // The env settings the gateway reads at start-up; in-process they are
    // applied to the config so parallel scenarios don't share process env.
    if let Some(obj) = value.as_object_mut() {
        let gs = obj.entry("general_settings").or_insert_with(|| json!({}));
        if let Some(gs) = gs.as_object_mut() {
            for (env, field) in [
                ("SERVER_ROOT_PATH", "server_root_path"),
                ("LITELLM_MODEL_COST_MAP_URL", "model_cost_map"),
                ("LITELLM_ANTHROPIC_BETA_HEADERS_URL", "anthropic_beta_headers"),
            ] {
                if let Some(v) = scenario.env.get(env) {
                    let mut v = Value::String(v.clone());
                    substitute(&mut v, vars)?;
                    gs.entry(field).or_insert(v);
                }
            }
        }
    }
    let _ = file;
    serde_yaml_ng::to_string(&value).map_err(|e| format!("gateway: {e}"))
}

fn render_config(
    scenario: &Scenario,
    file: &Path,
    root: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<Config, String> {
    let yaml = render_config_yaml(scenario, file, root, vars)?;
    let loaded = Config::parse(&yaml, &format!("{} (gateway)", file.display())).map_err(|e| e.to_string())?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    Ok(loaded.config)
}

async fn run_step(ctx: &mut Ctx<'_>, i: usize) -> Result<(), String> {
    let step = &ctx.scenario.steps[i];
    let action = step.action()?;
    let expect = &step.expect;
    match action {
        Action::Request(r) => {
            let resp = send(ctx, r).await?;
            record(ctx, i, r, &resp);
            check_response(ctx, expect, &resp).await
        }
        Action::Concurrent(c) => {
            let futs: Vec<_> = (0..c.count).map(|_| send(ctx, &c.request)).collect();
            let results = futures::future::join_all(futs).await;
            let mut failures = Vec::new();
            for (n, r) in results.into_iter().enumerate() {
                let checked = match r {
                    Ok(resp) => check_response(ctx, expect, &resp).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = checked {
                    failures.push(format!("request {n}: {e}"));
                }
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(format!("{} of {} concurrent requests failed; first: {}", failures.len(), c.count, failures[0]))
            }
        }
        Action::Advance(d) => ctx.gut.advance(d).await,
        Action::SetAsset(s) => {
            let bytes = materialize(&s.to, &ctx.root).map_err(|e| format!("set_asset {}: {e}", s.asset))?;
            ctx.assets.set(&s.asset, bytes);
            Ok(())
        }
        Action::Reload(what) => {
            let path = match what {
                super::model::ReloadTarget::CostMap => "/reload/model_cost_map",
                super::model::ReloadTarget::BetaPolicy => "/reload/anthropic_beta_headers",
            };
            let path = format!("{}{path}", root_prefix(ctx).await);
            let r = RequestSpec {
                method: "POST".into(),
                path,
                key: Some("master".into()),
                headers: BTreeMap::new(),
                body: None,
                raw_body: None,
                pad_body_to_bytes: None,
            };
            let resp = send(ctx, &r).await?;
            record(ctx, i, &r, &resp);
            check_response(ctx, expect, &resp).await
        }
        Action::OpenStream(o) => {
            let req = build(ctx, &o.request)?;
            let resp = tokio::time::timeout(STEP_TIMEOUT, req.send())
                .await
                .map_err(|_| "no response headers within the step timeout".to_string())?
                .map_err(|e| format!("request failed: {e}"))?;
            let status = resp.status().as_u16();
            if let Some(want) = expect.status {
                if status != want {
                    let body = resp.text().await.unwrap_or_default();
                    return Err(format!("status: expected {want}, got {status}; body: {body}"));
                }
            }
            ctx.streams.insert(o.id.clone(), resp);
            Ok(())
        }
        Action::FinishStream(f) => {
            if let Some(rel) = &f.release {
                ctx.mocks.get(&rel.provider).ok_or("unknown provider")?.release(&rel.gate);
            }
            let resp = ctx.streams.remove(&f.id).ok_or_else(|| format!("stream `{}` is not open", f.id))?;
            let body = tokio::time::timeout(STEP_TIMEOUT, resp.bytes())
                .await
                .map_err(|_| format!("stream `{}` did not finish within the step timeout", f.id))?;
            let text = match body {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) => return Err(format!("stream `{}` broke: {e}", f.id)),
            };
            if let Some(true) = expect.stream_complete {
                stream_verdict(&text).map_err(|e| format!("stream `{}`: {e}", f.id))?;
            }
            for needle in &expect.body_contains {
                if !text.contains(needle.as_str()) {
                    return Err(format!("stream `{}`: body does not contain {needle:?}", f.id));
                }
            }
            Ok(())
        }
        Action::Mock(m) => {
            let mock = ctx.mocks.get(&m.provider).ok_or("unknown provider")?;
            if m.reset {
                mock.reset().await;
            }
            for (n, stub) in m.mount.iter().enumerate() {
                mock.mount(stub.clone()).await.map_err(|e| format!("mock.mount[{n}]: {e}"))?;
            }
            Ok(())
        }
        Action::FillClientCache(n) => ctx.gut.fill_client_cache(n),
        Action::ExpectProvider(p) => check_provider(ctx, p).await,
        Action::ExpectStats(checks) => {
            let status = ctx.gut.status().await?;
            for (pointer, want) in checks {
                check_stat(pointer, want, status.pointer(pointer))?;
            }
            Ok(())
        }
    }
}

async fn root_prefix(ctx: &Ctx<'_>) -> String {
    match &ctx.gut {
        GatewayUnderTest::InProcess(p) => p.gateway.root_path.clone(),
    }
}

fn build(ctx: &Ctx<'_>, r: &RequestSpec) -> Result<reqwest::RequestBuilder, String> {
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).map_err(|_| format!("bad method `{}`", r.method))?;
    let url = format!("{}{}", ctx.gut.base_url(), r.path);
    let mut req = ctx.http.request(method, &url);
    let key = match r.key.as_deref() {
        Some("none") => None,
        Some("master") | None => ctx.master_key.clone(),
        Some(k) => Some(k.to_string()),
    };
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    for (k, v) in &r.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(raw) = &r.raw_body {
        req = req.header("content-type", "application/json").body(raw.clone());
    } else if let Some(b) = &r.body {
        let mut b = b.clone();
        if let (Some(n), Some(obj)) = (r.pad_body_to_bytes, b.as_object_mut()) {
            obj.insert("pad".into(), Value::String("x".repeat(n)));
        }
        req = req.json(&b);
    }
    Ok(req)
}

async fn send(ctx: &Ctx<'_>, r: &RequestSpec) -> Result<Response, String> {
    let resp = build(ctx, r)?.send().await.map_err(|e| format!("{} {}: request failed: {e}", r.method, r.path))?;
    let status = resp.status().as_u16();
    let headers =
        resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = resp.bytes().await.map_err(|e| format!("{} {}: body broke: {e}", r.method, r.path))?.to_vec();
    Ok(Response { status, headers, body })
}

/// Appends a normalized entry to the transcript (for snapshots): the client
/// request and response, stream events one by one, and what each provider
/// received since the last entry. Ids and timestamps are replaced so the
/// transcript is stable from run to run; credentials are never recorded.
fn record(ctx: &mut Ctx<'_>, i: usize, r: &RequestSpec, resp: &Response) {
    let is_stream = resp.headers.get("content-type").map(|c| c.starts_with("text/event-stream")).unwrap_or(false);
    let body = if is_stream {
        let events: Vec<Value> = resp
            .text()
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| {
                let d = d.trim();
                serde_json::from_str::<Value>(d).map(normalize).unwrap_or_else(|_| Value::String(d.to_string()))
            })
            .collect();
        json!({"events": events})
    } else {
        resp.json().map(normalize).unwrap_or_else(|| Value::String(resp.text()))
    };
    let mut upstream = Vec::new();
    let mut names: Vec<&String> = ctx.mocks.keys().collect();
    names.sort();
    for name in names {
        let journal = ctx.mocks[name].journal();
        let seen = ctx.journal_seen.entry(name.clone()).or_insert(0);
        for req in journal.iter().skip(*seen) {
            let kept_headers: BTreeMap<&str, &str> = req
                .headers
                .iter()
                .filter(|(k, _)| matches!(k.as_str(), "anthropic-beta" | "anthropic-version" | "content-type"))
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            upstream.push(json!({"provider": name, "method": req.method, "path": req.path, "headers": kept_headers, "body": req.json}));
        }
        *seen = journal.len();
    }
    ctx.transcript.push(json!({
        "step": i,
        "request": {"method": r.method, "path": r.path, "body": r.body},
        "upstream": upstream,
        "response": {"status": resp.status, "body": body},
    }));
}

/// Replaces values that change from run to run.
fn normalize(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        for (k, placeholder) in
            [("id", "[id]"), ("created", "[created]"), ("loaded_at", "[time]"), ("last_attempt_at", "[time]")]
        {
            if let Some(x) = m.get_mut(k) {
                *x = Value::String(placeholder.into());
            }
        }
        for x in m.values_mut() {
            if x.is_object() || x.is_array() {
                *x = normalize(x.take());
            }
        }
    } else if let Some(a) = v.as_array_mut() {
        for x in a.iter_mut() {
            *x = normalize(x.take());
        }
    }
    v
}

async fn check_response(ctx: &Ctx<'_>, e: &Expect, resp: &Response) -> Result<(), String> {
    let body_hint = || format!("body: {}", short(&resp.json().unwrap_or_else(|| Value::String(resp.text()))));
    if let Some(s) = e.status {
        if resp.status != s {
            return Err(format!("status: expected {s}, got {}; {}", resp.status, body_hint()));
        }
    }
    if e.json.is_some() || !e.json_path.is_empty() || e.error_contains.is_some() {
        let v = resp.json().ok_or_else(|| format!("expected a JSON body; {}", body_hint()))?;
        if let Some(want) = &e.json {
            json_contains(want, &v, "").map_err(|d| format!("json: {d}"))?;
        }
        for (p, want) in &e.json_path {
            check_stat(p, want, v.pointer(p)).map_err(|d| format!("json_path {d}"))?;
        }
        if let Some(text) = &e.error_contains {
            let msg = v
                .pointer("/error/message")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("expected an error body with error.message; {}", body_hint()))?;
            if !msg.contains(text.as_str()) {
                return Err(format!("error message {msg:?} does not contain {text:?}"));
            }
        }
    }
    for (k, want) in &e.headers {
        match resp.headers.get(&k.to_ascii_lowercase()) {
            Some(got) if got == want => {}
            Some(got) => return Err(format!("header {k}: expected {want:?}, got {got:?}")),
            None => return Err(format!("header {k}: missing (expected {want:?})")),
        }
    }
    for k in &e.headers_present {
        if !resp.headers.contains_key(&k.to_ascii_lowercase()) {
            return Err(format!("header {k}: expected to be present"));
        }
    }
    for k in &e.headers_absent {
        if let Some(v) = resp.headers.get(&k.to_ascii_lowercase()) {
            return Err(format!("header {k}: expected to be absent, got {v:?}"));
        }
    }
    let text = resp.text();
    for needle in &e.body_contains {
        if !text.contains(needle.as_str()) {
            return Err(format!("body does not contain {needle:?}; {}", body_hint()));
        }
    }
    if let Some(true) = e.stream_complete {
        stream_verdict(&text)?;
    }
    if e.links_ok {
        for link in html_links(&text) {
            if link.starts_with("http") || link.starts_with('#') {
                continue;
            }
            let url = format!("{}{}", ctx.gut.base_url(), link);
            let r = ctx.http.get(&url).send().await.map_err(|e| format!("link {link}: {e}"))?;
            if r.status().as_u16() != 200 {
                return Err(format!("link {link} answered {}", r.status().as_u16()));
            }
        }
    }
    Ok(())
}

async fn check_provider(ctx: &Ctx<'_>, p: &ProviderExpect) -> Result<(), String> {
    let mock = ctx.mocks.get(&p.provider).ok_or("unknown provider")?;
    let journal = mock.journal();
    if let Some(n) = p.requests {
        if journal.len() != n {
            let paths: Vec<String> = journal.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
            return Err(format!("{}: expected {n} requests, got {} ({})", p.provider, journal.len(), paths.join(", ")));
        }
    }
    if let Some(last) = &p.last {
        let r = journal.last().ok_or_else(|| format!("{}: received no request", p.provider))?;
        check_upstream(&p.provider, last, r)?;
    }
    if let Some(all) = &p.all {
        if journal.is_empty() {
            return Err(format!("{}: received no request", p.provider));
        }
        for r in &journal {
            check_upstream(&p.provider, all, r)?;
        }
    }
    Ok(())
}

fn check_upstream(provider: &str, e: &UpstreamExpect, r: &crate::mocks::RecordedRequest) -> Result<(), String> {
    let at = format!("{provider} received {} {}", r.method, r.path);
    if let Some(p) = &e.path {
        if &r.path != p {
            return Err(format!("{at}: expected path {p}"));
        }
    }
    if let Some(p) = &e.path_contains {
        if !r.path.contains(p.as_str()) {
            return Err(format!("{at}: expected the path to contain {p}"));
        }
    }
    let header = |name: &str| r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    for (k, want) in &e.headers {
        match header(k) {
            Some(got) if &got == want => {}
            Some(got) => return Err(format!("{at}: header {k}: expected {want:?}, got {got:?}")),
            None => return Err(format!("{at}: header {k}: missing (expected {want:?})")),
        }
    }
    for k in &e.headers_absent {
        if let Some(v) = header(k) {
            return Err(format!("{at}: header {k} should be absent, got {v:?}"));
        }
    }
    if !e.body.is_empty() || !e.body_absent.is_empty() {
        let body = r.json.clone().ok_or_else(|| format!("{at}: body is not JSON"))?;
        for (p, want) in &e.body {
            check_stat(p, want, body.pointer(p)).map_err(|d| format!("{at}: body {d}"))?;
        }
        for p in &e.body_absent {
            if let Some(v) = body.pointer(p) {
                return Err(format!(
                    "{at}: body field {p} should be absent, got {} (full body: {})",
                    short(v),
                    short(&body)
                ));
            }
        }
    }
    Ok(())
}
