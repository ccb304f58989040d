//! Runs one scenario: start its mock providers and assets, build the
//! gateway under test, execute the steps, check the expectations.

use super::assets::{materialize, AssetServer};
use super::expect::{check_output, check_stat, html_links, json_contains, short, stream_verdict, Mismatch};
use super::model::ServiceKind;
use super::model::{Action, Expect, GatewaySpec, ProviderExpect, RequestSpec, Scenario, Step, UpstreamExpect};
use crate::contracts::{self, Attribution, ClientRequest, ClientResponse, Exchange, UpstreamCall};
use crate::gateway::error::error_chain;
use crate::gateway::{Config, KnownBugs};
use crate::mocks::{MockKind, MockOptions, MockProvider};
use crate::services::{Postgres, Redis, Service};
use crate::target::{GatewayUnderTest, Stop, TargetKind, TargetSpec};
use anyhow::{anyhow, Context};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long any single wait in a scenario may take before it is a failure.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest a stream opened by `open_stream` may stay open (each wait on
/// it is bounded by [`STEP_TIMEOUT`]; this bounds the whole).
const OPEN_STREAM_LIFETIME: Duration = Duration::from_secs(600);

/// How often an `eventually` step sends its request again.
const EVENTUALLY_POLL: Duration = Duration::from_millis(100);

/// How long `expect_output` waits for a process's line to be read.
const OUTPUT_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where `file:` paths in scenarios are resolved.
    pub project_root: PathBuf,
    /// Known-bad variants to put back (in-process only; for proofs).
    pub bugs: KnownBugs,
    pub target: TargetSpec,
    /// Run the scenario's black-box steps even though the target could run
    /// its main steps (proofs check both variants in-process).
    pub force_black_box: bool,
}

impl RunOptions {
    pub fn in_process(project_root: PathBuf) -> Self {
        RunOptions { project_root, bugs: KnownBugs::default(), target: TargetSpec::InProcess, force_black_box: false }
    }
}

/// An incident scenario's result against one gateway.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IncidentVerdict {
    /// The scenario passes: the gateway does not have the incident.
    Clean,
    /// The scenario fails at the step that checks the incident.
    Caught,
    /// The scenario cannot run against this gateway.
    NotApplicable,
    /// The scenario failed before reaching the incident's check: no verdict.
    Inconclusive,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepFailure {
    pub step_index: usize,
    pub step: String,
    pub checks_incident: bool,
    /// A problem of the harness's own (`StepError::Harness`), not a
    /// verdict on the gateway under test.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub harness: bool,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    Failed,
    NotApplicable,
    /// A step failed for a limit of the target's environment (a provider
    /// SDK not installed, credentials it insists on), not for the gateway's
    /// behaviour: no verdict, with the reason.
    Inconclusive,
}

/// Signatures of a target that cannot do a step because of its environment
/// rather than its behaviour. Only in target mode: our gateway has no
/// optional dependencies.
const ENVIRONMENT_LIMITS: &[(&str, &str)] = &[
    ("No module named", "a Python module the target needs is not installed"),
    ("ModuleNotFoundError", "a Python module the target needs is not installed"),
    ("pip install", "the target asks for a package to be installed"),
    ("DefaultCredentialsError", "the target insists on Google credentials"),
    ("Could not automatically determine credentials", "the target insists on Google credentials"),
    // LiteLLM until about 1.9x reads a Vertex `api_base` as the whole endpoint URL and appends
    // `:rawPredict` to it: given the host the config means, it builds `http://host:port:rawPredict`.
    // A dialect of its config, not a behaviour the API specifications speak of.
    (":rawPredict'", VERTEX_API_BASE_DIALECT),
    (":streamRawPredict'", VERTEX_API_BASE_DIALECT),
];

const VERTEX_API_BASE_DIALECT: &str =
    "the target reads the Vertex AI `api_base` as a whole endpoint URL, not as the host the config names";

/// Why a failed step says nothing about the target's behaviour, if it does.
fn environment_limit(target: &TargetSpec, message: &str) -> Option<String> {
    if matches!(target, TargetSpec::InProcess) {
        return None;
    }
    let (signature, why) = ENVIRONMENT_LIMITS.iter().find(|(sig, _)| message.contains(sig))?;
    Some(format!("{why} (the target said `{signature}`)"))
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub name: String,
    pub file: String,
    /// The incident id, for incident scenarios.
    pub incident: Option<String>,
    pub incident_verdict: Option<IncidentVerdict>,
    /// `steps` or `black_box_steps`.
    pub variant: &'static str,
    pub verdict: Verdict,
    pub failure: Option<StepFailure>,
    pub not_applicable: Option<String>,
    /// Why the verdict is inconclusive (an environment limit of the target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inconclusive: Option<String>,
    /// The target's last output lines, when a separate process failed.
    pub target_output: Option<String>,
    /// The scenario ran on the gateway process an earlier scenario with the
    /// same config started (target mode; see `sharing_key`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reused_target: bool,
    /// Steps skipped because the target lacks a capability they need.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_steps: Vec<String>,
    pub duration_ms: u128,
    /// Contracts the gateway broke, each with the step and the evidence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<ContractViolation>,
    /// Exchanges checked against the contracts.
    pub exchanges_checked: usize,
    #[serde(skip)]
    pub transcript: Vec<Value>,
}

/// A contract broken at one step, with what shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ContractViolation {
    pub contract: &'static str,
    pub step: String,
    pub detail: String,
    /// The client request, the upstream calls and the client response, in short.
    pub evidence: Vec<String>,
}

impl Outcome {
    /// A passed outcome with nothing recorded yet, for `name` in `file`.
    pub fn new(name: &str, file: &str) -> Outcome {
        Outcome {
            name: name.to_string(),
            file: file.to_string(),
            incident: None,
            incident_verdict: None,
            variant: "steps",
            verdict: Verdict::Passed,
            failure: None,
            not_applicable: None,
            inconclusive: None,
            target_output: None,
            reused_target: false,
            skipped_steps: Vec::new(),
            duration_ms: 0,
            violations: Vec::new(),
            exchanges_checked: 0,
            transcript: Vec::new(),
        }
    }

    /// No step failed and no contract was broken.
    pub fn passed(&self) -> bool {
        matches!(self.verdict, Verdict::Passed)
    }
}

struct Response {
    /// The final URL, after redirects.
    url: reqwest::Url,
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    /// The body was read to its end without a transport error.
    complete: bool,
    /// From sending the request to the body's end.
    elapsed: Duration,
}

impl Response {
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What a scenario runs against: its mock providers, its asset server and
/// the gateway under test started from its config. In target mode,
/// scenarios with the same config share one rig, one after another (see
/// `sharing_key`); otherwise every scenario has its own.
pub struct Rig {
    /// The instances of the gateway under test (`gateways:`), never empty;
    /// `current` is the one the running step talks to (`gateway: i`).
    guts: Vec<GatewayUnderTest>,
    current: usize,
    mocks: HashMap<String, MockProvider>,
    assets: AssetServer,
    http: reqwest::Client,
    master_key: Option<String>,
    /// `LITELLM_MASTER_KEY` from the scenario's env, for targets configured that way.
    env_master_key: Option<String>,
    /// What the contract checks know of the config.
    setup: contracts::Setup,
    /// Target mode: the proxy the gateway process is told to use, which lets
    /// nothing out and notes where it tried to go.
    egress: Option<crate::mocks::egress::EgressSentinel>,
    /// The scenario's services (`services:`), stopped when the rig drops,
    /// after its gateways.
    services: BTreeMap<String, Arc<parking_lot::Mutex<Service>>>,
    /// Holds what the gateways keep on disk (in-process: the database a
    /// restart finds again; target mode: the config and `postmortem.db`).
    _dir: Option<Arc<tempfile::TempDir>>,
}

impl Rig {
    /// The instance the running step talks to.
    fn gut(&self) -> &GatewayUnderTest {
        &self.guts[self.current.min(self.guts.len() - 1)]
    }

    fn instance(&mut self, i: usize) -> anyhow::Result<&mut GatewayUnderTest> {
        let n = self.guts.len();
        self.guts.get_mut(i).ok_or_else(|| anyhow!("no gateway {i} (the scenario has {n})"))
    }

    fn service(&self, name: &str) -> anyhow::Result<Arc<parking_lot::Mutex<Service>>> {
        self.services.get(name).cloned().ok_or_else(|| anyhow!("unknown service `{name}`"))
    }
}

/// A stream opened by `open_stream`: its response, what was sent, and the
/// upstream calls that arrived for it before its headers did.
struct OpenedStream {
    response: reqwest::Response,
    request: ClientRequest,
    upstream: Vec<(String, usize)>,
    /// Bytes a `read_stream` step already read.
    received: Vec<u8>,
}

struct Ctx<'a> {
    steps: &'a [Step],
    rig: &'a mut Rig,
    streams: HashMap<String, OpenedStream>,
    /// Per mock, how many journal entries belong to exchanges already checked.
    attributed: HashMap<String, usize>,
    /// The step running now (for violation reports) and its waivers.
    current_step: String,
    waived: BTreeMap<String, String>,
    violations: Vec<ContractViolation>,
    exchanges_checked: usize,
    journal_seen: HashMap<String, usize>,
    root: PathBuf,
    transcript: Vec<Value>,
    /// Egress attempts that belong to exchanges already checked.
    egress_seen: usize,
    /// The Response ids clients got, for `fidelity.response-handle`.
    handles: contracts::Handles,
    /// Values kept by `save`, as `saved.NAME`.
    saved: BTreeMap<String, String>,
}

pub async fn run_scenario(scenario: &Scenario, file: &Path, opts: &RunOptions) -> Outcome {
    run_on(scenario, file, opts, &mut None).await
}

/// Runs scenarios with the same [`sharing_key`] one after another on one
/// rig: one gateway process for all of them in target mode. Between two
/// scenarios the mocks are reset (stubs, gates, journals) and the assets
/// served afresh. After a scenario fails, or the process exits, the next
/// one gets a new rig, so a failure never leaks into the next verdict.
pub(crate) async fn run_group(group: &[(Scenario, PathBuf)], opts: &RunOptions) -> Vec<Outcome> {
    let mut rig = None;
    let mut outcomes = Vec::with_capacity(group.len());
    for (scenario, file) in group {
        let outcome = run_on(scenario, file, opts, &mut rig).await;
        if !outcome.passed() {
            rig = None;
        }
        outcomes.push(outcome);
    }
    outcomes
}

/// Scenarios in target mode can share a gateway process when this is equal
/// (and `Some`): the same gateway config, environment, providers (kinds and
/// profiles; stubs are mounted per scenario) and assets. Scenarios that
/// change the gateway's own state (`reload`, `set_asset`) or ask for it
/// (`isolated: true`) get a process of their own.
pub(crate) fn sharing_key(scenario: &Scenario, root: &Path) -> Option<String> {
    let changes_gateway =
        |steps: &[Step]| steps.iter().any(|s| matches!(s.action(), Ok(Action::Reload(_)) | Ok(Action::SetAsset(_))));
    if scenario.isolated
        || !scenario.services.is_empty()
        || scenario.gateways > 1
        || stops_gateways(&scenario.steps)
        || scenario.black_box_steps.as_deref().is_some_and(stops_gateways)
        || changes_gateway(&scenario.steps)
        || scenario.black_box_steps.as_deref().is_some_and(changes_gateway)
    {
        return None;
    }
    let gateway = match &scenario.gateway {
        GatewaySpec::Inline(v) => v.to_string(),
        GatewaySpec::Path(p) => std::fs::read_to_string(root.join(p)).ok()?,
    };
    let providers: Vec<(&String, MockKind, bool)> =
        scenario.providers.iter().map(|(name, p)| (name, p.kind, p.strict)).collect();
    Some(format!("{gateway}\n{:?}\n{providers:?}\n{:?}", scenario.env, scenario.assets))
}

/// Whether the steps restart or kill an instance, or stop a service.
fn stops_gateways(steps: &[Step]) -> bool {
    steps.iter().any(|s| {
        matches!(
            s.action(),
            Ok(Action::Restart(_) | Action::Kill(_) | Action::StopService(_) | Action::StartService(_))
        )
    })
}

/// Starts the scenario's services, each on 127.0.0.1 at a port of its own
/// with its data in a temporary directory (blocking work, on a blocking
/// thread), and names their URLs for the config.
async fn start_services(
    scenario: &Scenario,
    vars: &mut BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, Arc<parking_lot::Mutex<Service>>>> {
    let mut started = BTreeMap::new();
    for (name, spec) in &scenario.services {
        let start = match (spec.kind, spec.appendonly) {
            (ServiceKind::Postgres, false) => || Postgres::start().map(Service::Postgres),
            (ServiceKind::Postgres, true) => {
                return Err(anyhow!("services.{name}: `appendonly` is a Redis setting (Postgres keeps its data)"))
            }
            (ServiceKind::Redis, false) => || Redis::start().map(Service::Redis),
            (ServiceKind::Redis, true) => || Redis::start_appendonly().map(Service::Redis),
        };
        let service = tokio::task::spawn_blocking(start)
            .await
            .map_err(|e| anyhow!("services.{name}: {e}"))?
            .map_err(|e| anyhow!("services.{name}: {e:#}"))?;
        vars.insert(format!("services.{name}.url"), service.url());
        started.insert(name.clone(), Arc::new(parking_lot::Mutex::new(service)));
    }
    Ok(started)
}

/// Stops or starts a service again (bounded, on a blocking thread).
async fn service_step(service: Arc<parking_lot::Mutex<Service>>, start: bool) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        let mut pg = service.lock();
        if start {
            pg.start_again()
        } else {
            pg.stop()
        }
    })
    .await?
    .map_err(|e| anyhow!("{e:#}"))
}

async fn run_on(scenario: &Scenario, file: &Path, opts: &RunOptions, slot: &mut Option<Rig>) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome {
        incident: scenario.incident.as_ref().map(|i| i.id.clone()),
        ..Outcome::new(&scenario.name, &file.display().to_string())
    };
    match prepare(scenario, file, opts, slot).await {
        Err(Setup::NotApplicable(why)) => {
            outcome.verdict = Verdict::NotApplicable;
            outcome.not_applicable = Some(why);
        }
        Err(Setup::Failed(e)) => {
            outcome.verdict = Verdict::Failed;
            outcome.failure = Some(StepFailure {
                step_index: 0,
                step: "setup".into(),
                checks_incident: false,
                harness: e.is_harness(),
                message: e.to_string(),
            });
        }
        Ok((steps, reused, rig)) => {
            outcome.reused_target = reused;
            let mut ctx = Ctx {
                steps,
                rig,
                streams: HashMap::new(),
                attributed: HashMap::new(),
                current_step: String::new(),
                waived: BTreeMap::new(),
                violations: Vec::new(),
                exchanges_checked: 0,
                journal_seen: HashMap::new(),
                root: opts.project_root.clone(),
                transcript: Vec::new(),
                egress_seen: 0,
                handles: contracts::Handles::default(),
                saved: BTreeMap::new(),
            };
            ctx.egress_seen = ctx.rig.egress.as_ref().map_or(0, |e| e.count());
            let list = if std::ptr::eq(ctx.steps, scenario.steps.as_slice()) { "steps" } else { "black_box_steps" };
            outcome.variant = list;
            for i in 0..ctx.steps.len() {
                let missing: Vec<&str> = ctx.steps[i]
                    .capabilities()
                    .into_iter()
                    .filter(|c| !ctx.rig.gut().has(*c))
                    .map(|c| c.name())
                    .collect();
                if !missing.is_empty() {
                    outcome.skipped_steps.push(format!(
                        "{} (needs {})",
                        Scenario::step_label(ctx.steps, list, i),
                        missing.join(", ")
                    ));
                    continue;
                }
                ctx.current_step = Scenario::step_label(ctx.steps, list, i);
                ctx.rig.current = ctx.steps[i].gateway.unwrap_or(0);
                ctx.waived = scenario.waive.clone();
                ctx.waived.extend(ctx.steps[i].waive.clone());
                let res = tokio::time::timeout(STEP_TIMEOUT * 2, run_step(&mut ctx, i)).await;
                let res = res.unwrap_or_else(|_| {
                    Err(StepError::Failed(format!("timed out after {}s", (STEP_TIMEOUT * 2).as_secs())))
                });
                if let Err(e) = res {
                    let harness = e.is_harness();
                    let message = e.to_string();
                    outcome.verdict = match environment_limit(&opts.target, &message) {
                        Some(why) => {
                            outcome.inconclusive = Some(why);
                            Verdict::Inconclusive
                        }
                        None => Verdict::Failed,
                    };
                    outcome.failure = Some(StepFailure {
                        step_index: i,
                        step: Scenario::step_label(ctx.steps, list, i),
                        checks_incident: ctx.steps[i].checks_incident
                            && (ctx.steps[i].caught_if.is_empty()
                                || ctx.steps[i].caught_if.iter().any(|sig| message.contains(sig.as_str()))),
                        harness,
                        message,
                    });
                    let tail = ctx.rig.gut().output_tail(20);
                    if !tail.is_empty() {
                        outcome.target_output = Some(tail);
                    }
                    break;
                }
            }
            if ctx.rig.gut().has(super::model::Capability::GatewayOutput) {
                let lines: Vec<String> = ctx.rig.guts.iter().flat_map(GatewayUnderTest::output_lines).collect();
                for v in contracts::check_output(&lines, &ctx.rig.setup) {
                    if !scenario.waive.contains_key(v.contract) {
                        ctx.violations.push(ContractViolation {
                            contract: v.contract,
                            step: "the gateway's output".into(),
                            detail: v.detail,
                            evidence: Vec::new(),
                        });
                    }
                }
            }
            outcome.transcript = std::mem::take(&mut ctx.transcript);
            outcome.exchanges_checked = ctx.exchanges_checked;
            outcome.violations = std::mem::take(&mut ctx.violations);
            if !outcome.violations.is_empty() && !matches!(outcome.verdict, Verdict::Inconclusive) {
                outcome.verdict = Verdict::Failed;
            }
        }
    }
    if scenario.incident.is_some() {
        let steps = if outcome.variant == "steps" {
            &scenario.steps
        } else {
            scenario.black_box_steps.as_ref().unwrap_or(&scenario.steps)
        };
        let last_incident_check = steps.iter().rposition(|s| s.checks_incident).unwrap_or(0);
        outcome.incident_verdict = Some(match (&outcome.verdict, &outcome.failure) {
            (Verdict::Passed, _) => IncidentVerdict::Clean,
            // Every step passed; only contracts were broken. The incident is
            // not there (the violations are still reported).
            (Verdict::Failed, None) => IncidentVerdict::Clean,
            (Verdict::NotApplicable, _) => IncidentVerdict::NotApplicable,
            (Verdict::Failed, Some(f)) if f.checks_incident => IncidentVerdict::Caught,
            // Every step that checks the incident passed; something after
            // them failed. The incident is not there (the failure is still
            // reported for the scenario).
            (Verdict::Failed | Verdict::Inconclusive, Some(f)) if f.step_index > last_incident_check => {
                IncidentVerdict::Clean
            }
            (Verdict::Failed | Verdict::Inconclusive, _) => IncidentVerdict::Inconclusive,
        });
    }
    outcome.duration_ms = started.elapsed().as_millis();
    outcome
}

enum Setup {
    NotApplicable(String),
    Failed(StepError),
}

/// Whatever the harness could not set up (a mock, the asset server, a
/// service, a temporary directory…).
impl From<anyhow::Error> for Setup {
    fn from(e: anyhow::Error) -> Self {
        Setup::Failed(StepError::Harness(e))
    }
}

/// Why a step did not pass: a verdict on the gateway under test, or a
/// problem of the harness's own, which says nothing about the gateway.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    /// The gateway under test did something wrong (or nothing, or too
    /// late): what the report shows as the step's failure.
    #[error("{0}")]
    Failed(String),
    /// The harness could not do the step: a mock that did not start or
    /// refused a stub, an asset it could not read, a service that did not
    /// stop or start, the target's clock or stats out of reach.
    #[error("{0:#}")]
    Harness(anyhow::Error),
}

impl StepError {
    pub(crate) fn is_harness(&self) -> bool {
        matches!(self, StepError::Harness(_))
    }

    /// The same error, under `at` (`repeat 2 (/v1/chat/completions): …`).
    fn within(self, at: String) -> StepError {
        match self {
            StepError::Failed(m) => StepError::Failed(format!("{at}: {m}")),
            StepError::Harness(e) => StepError::Harness(e.context(at)),
        }
    }
}

impl From<anyhow::Error> for StepError {
    fn from(e: anyhow::Error) -> Self {
        StepError::Harness(e)
    }
}

impl From<Mismatch> for StepError {
    fn from(m: Mismatch) -> Self {
        StepError::Failed(m.0)
    }
}

/// The steps to run against this target, or why none can.
fn choose_steps<'a>(scenario: &'a Scenario, target: &TargetSpec) -> anyhow::Result<&'a [Step]> {
    let missing = |caps: Vec<super::model::Capability>| -> Vec<String> {
        caps.into_iter().filter(|c| !target.has(*c)).map(|c| c.name().to_string()).collect()
    };
    let main_missing = missing(scenario.required_capabilities());
    if main_missing.is_empty() {
        return Ok(&scenario.steps);
    }
    if let (Some(bb), Some(caps)) = (&scenario.black_box_steps, scenario.black_box_capabilities()) {
        let bb_missing = missing(caps);
        if bb_missing.is_empty() {
            return Ok(bb);
        }
        return Err(anyhow!("its black-box steps need {} which this target lacks", bb_missing.join(", ")));
    }
    let note = scenario.black_box_note.clone().map(|n| format!(" ({n})")).unwrap_or_default();
    Err(anyhow!("it needs {} which this target lacks, and has no black-box variant{note}", main_missing.join(", ")))
}

/// Chooses the steps for the target and puts a rig ready for this scenario
/// in `slot`: the shared one reset (then the second value is true), or a
/// new one. A rig whose reset fails is dropped.
async fn prepare<'a, 's>(
    scenario: &'a Scenario,
    file: &Path,
    opts: &RunOptions,
    slot: &'s mut Option<Rig>,
) -> Result<(&'a [Step], bool, &'s mut Rig), Setup> {
    let steps = match (&scenario.black_box_steps, opts.force_black_box) {
        (Some(bb), true) => bb.as_slice(),
        (None, true) => return Err(Setup::NotApplicable("the scenario has no black-box steps".into())),
        _ => choose_steps(scenario, &opts.target).map_err(|e| Setup::NotApplicable(e.to_string()))?,
    };
    if let TargetSpec::Url { .. } = &opts.target {
        if !scenario.providers.is_empty() || !scenario.assets.is_empty() {
            return Err(Setup::NotApplicable(
                "a running gateway's config cannot be pointed at this scenario's mock providers; use --target-cmd"
                    .into(),
            ));
        }
    }
    // A shared process that has exited since the last scenario is replaced.
    let alive = slot.take().and_then(|mut rig| (!rig.guts.iter_mut().any(|g| g.has_exited())).then_some(rig));
    let (rig, reused) = match alive {
        Some(mut rig) => {
            rig.reset_for(scenario, opts).await?;
            (rig, true)
        }
        _ => (Rig::start(scenario, file, opts).await?, false),
    };
    Ok((steps, reused, slot.insert(rig)))
}

impl Rig {
    /// Starts the scenario's mocks (with its stubs) and asset server, then
    /// the gateway under test from its rendered config.
    async fn start(scenario: &Scenario, file: &Path, opts: &RunOptions) -> Result<Rig, Setup> {
        if scenario.gateways == 0 {
            return Err(anyhow!("gateways: at least 1").into());
        }
        let mut mocks = HashMap::new();
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        let services = start_services(scenario, &mut vars).await?;
        for (name, spec) in &scenario.providers {
            let options = MockOptions { strict: spec.strict, ..MockOptions::for_kind(spec.kind) };
            let mock = MockProvider::start(spec.kind, name, options)
                .await
                .map_err(|e| anyhow!("providers.{name}: mock did not start: {e}"))?;
            vars.insert(format!("providers.{name}.url"), mock.url());
            if spec.kind == MockKind::VertexAi {
                // The service account this mock's token endpoint knows.
                vars.insert(
                    format!("providers.{name}.google_credentials"),
                    crate::mocks::google_credentials(&mock.url()),
                );
            }
            mocks.insert(name.clone(), mock);
        }
        mount_stubs(scenario, &mocks, &opts.project_root).await?;
        let assets = AssetServer::start().await.map_err(|e| anyhow!("asset server: {e}"))?;
        serve_assets(scenario, &assets, &opts.project_root)?;
        for name in scenario.assets.keys() {
            vars.insert(format!("assets.{name}.url"), assets.url(name));
        }
        let yaml = render_config_yaml(scenario, &opts.project_root, &vars)?;
        // Field paths are those of the scenario's `gateway:`; line numbers
        // are the rendered config's (placeholders filled, `repeat` expanded).
        let label = format!("{} `gateway:` (lines of the rendered config)", file.display());
        let loaded = Config::parse(&yaml, &label).map_err(|e| Setup::Failed(StepError::Failed(e.to_string())))?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let mut config = loaded.config;
        let master_key = config.general_settings.master_key.clone();
        let mut egress = None;
        let durable = scenario.gateways > 1
            || stops_gateways(&scenario.steps)
            || scenario.black_box_steps.as_deref().is_some_and(stops_gateways);
        let dir = if durable || !matches!(opts.target, TargetSpec::InProcess) {
            Some(Arc::new(tempfile::tempdir().map_err(|e| anyhow!("temporary directory: {e}"))?))
        } else {
            None
        };
        let mut guts = Vec::with_capacity(scenario.gateways);
        match &opts.target {
            TargetSpec::InProcess => {
                // What `serve` does beside its config file: a fleet, or an
                // instance that restarts, keeps its state in one SQLite file
                // unless the config names a database.
                let g = &mut config.general_settings;
                if let (Some(dir), true, None, None) = (&dir, durable, &g.database_url, &g.database_path) {
                    g.database_path = Some(dir.path().join("postmortem.db").display().to_string());
                }
                for _ in 0..scenario.gateways {
                    let gut = GatewayUnderTest::in_process(config.clone(), opts.bugs)
                        .await
                        .map_err(|e| Setup::Failed(StepError::Failed(format!("{e:#}"))))?;
                    guts.push(gut);
                }
            }
            TargetSpec::Command { command, startup_timeout, kind } => {
                let mut env = target_env(scenario, &config, &vars)?;
                let sentinel = crate::mocks::egress::EgressSentinel::start()
                    .await
                    .map_err(|e| anyhow!("egress sentinel did not start: {e}"))?;
                // Everything but the mocks (127.0.0.1) goes to the sentinel,
                // which refuses it and notes the host.
                for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
                    env.entry(name.into()).or_insert_with(|| sentinel.url().to_string());
                }
                for name in ["NO_PROXY", "no_proxy"] {
                    env.entry(name.into()).or_insert_with(|| "127.0.0.1,localhost,::1".into());
                }
                // aiohttp reads the proxy variables only when told to (LiteLLM's
                // aiohttp transport before 1.9x): without this its calls would
                // fail in DNS, unseen.
                env.entry("AIOHTTP_TRUST_ENV".into()).or_insert_with(|| "True".into());
                egress = Some(sentinel);
                let root = config.root_path().map_err(anyhow::Error::from)?;
                // Another gateway is warmed up before its steps are timed
                // (`warmup`): the target gets the warm-up deployments, the
                // contracts keep judging the scenario's own config.
                let (target_yaml, warm_calls) = match kind {
                    TargetKind::Other => super::warmup::with_warm_up(&yaml),
                    TargetKind::Postmortem => (yaml.clone(), Vec::new()),
                };
                let dir = dir.clone().ok_or_else(|| anyhow!("no directory for the target's config"))?;
                for _ in 0..scenario.gateways {
                    let gut = GatewayUnderTest::start_command(
                        Some(dir.clone()),
                        command,
                        &target_yaml,
                        &env,
                        &root,
                        *kind,
                        *startup_timeout,
                    )
                    .await
                    .map_err(|e| Setup::Failed(StepError::Failed(format!("{e:#}"))))?;
                    if !warm_calls.is_empty() {
                        let key = master_key.clone().or_else(|| scenario.env.get("LITELLM_MASTER_KEY").cloned());
                        let http = reqwest::Client::builder()
                            .pool_max_idle_per_host(0)
                            .build()
                            .map_err(anyhow::Error::from)?;
                        let base = format!("{}{}", gut.base_url(), gut.root_path());
                        super::warmup::warm_up(&http, &base, key.as_deref(), &warm_calls).await;
                    }
                    guts.push(gut);
                }
            }
            TargetSpec::Url { url, kind } => {
                if durable || !scenario.services.is_empty() {
                    return Err(Setup::NotApplicable(
                        "a running gateway cannot be started as a fleet, restarted or pointed at this scenario's services; use --target-cmd"
                            .into(),
                    ));
                }
                guts.push(GatewayUnderTest::external(url, *kind));
            }
        }
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(STEP_TIMEOUT)
            // A fresh connection per request: a pooled one the target
            // closed while idle (uvicorn drops keep-alives after 5 s)
            // fails the next request with no fault of the gateway's.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(anyhow::Error::from)?;
        let mut setup = contract_setup(scenario, &yaml, &mocks, &vars)?;
        setup.prices =
            given_cost_map(scenario, &yaml, &vars, &opts.target, &opts.project_root).map(std::sync::Arc::new);
        Ok(Rig {
            guts,
            current: 0,
            services,
            _dir: dir,
            mocks,
            assets,
            http,
            master_key,
            env_master_key: scenario.env.get("LITELLM_MASTER_KEY").cloned(),
            setup,
            egress,
        })
    }

    /// Makes a shared rig look fresh to the next scenario (which has the
    /// same sharing key, so the same mocks and assets).
    async fn reset_for(&mut self, scenario: &Scenario, opts: &RunOptions) -> anyhow::Result<()> {
        for mock in self.mocks.values() {
            mock.reset().await;
            mock.clear_journal();
        }
        mount_stubs(scenario, &self.mocks, &opts.project_root).await?;
        serve_assets(scenario, &self.assets, &opts.project_root)
    }
}

/// What the contract checks need to know of the scenario's gateway: read
/// from the rendered LiteLLM-format config, as any gateway would read it.
fn contract_setup(
    scenario: &Scenario,
    yaml: &str,
    mocks: &HashMap<String, MockProvider>,
    vars: &BTreeMap<String, String>,
) -> anyhow::Result<contracts::Setup> {
    let config: Value = serde_yaml_ng::from_str(yaml).map_err(|e| anyhow!("gateway: {e}"))?;
    let urls = mocks.iter().map(|(name, m)| (name.clone(), m.url())).collect();
    let mut env = BTreeMap::new();
    for (k, v) in &scenario.env {
        let mut v = Value::String(v.clone());
        substitute(&mut v, vars)?;
        env.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
    }
    if let Some(vars) = config.get("environment_variables").and_then(Value::as_object) {
        for (k, v) in vars {
            if let Some(v) = v.as_str() {
                env.entry(k.clone()).or_insert_with(|| v.to_string());
            }
        }
    }
    Ok(contracts::Setup::from_config(&config, &urls, &env))
}

/// The model cost map the gateway under test prices from, when the harness
/// knows it: the scenario's asset the config names (unless a step replaces
/// it), or, with no map named, the map bundled with postmortem when the
/// gateway is this one in-process. Another gateway's own map is unknown, and
/// `accounting.response-cost` is then not judged.
fn given_cost_map(
    scenario: &Scenario,
    yaml: &str,
    vars: &BTreeMap<String, String>,
    target: &TargetSpec,
    root: &Path,
) -> Option<contracts::Prices> {
    let config: Value = serde_yaml_ng::from_str(yaml).ok()?;
    let named =
        config.pointer("/general_settings/model_cost_map").and_then(Value::as_str).map(str::to_string).or_else(|| {
            let mut v = Value::String(scenario.env.get("LITELLM_MODEL_COST_MAP_URL")?.clone());
            substitute(&mut v, vars).ok()?;
            v.as_str().map(str::to_string)
        });
    match named {
        None => matches!(target, TargetSpec::InProcess)
            .then(|| contracts::Prices::parse(crate::gateway::catalog::BUNDLED_COST_MAP))
            .flatten(),
        Some(url) => {
            let name = scenario.assets.keys().find(|n| vars.get(&format!("assets.{n}.url")) == Some(&url))?;
            let replaced = scenario.steps.iter().any(|s| s.set_asset.as_ref().is_some_and(|a| &a.asset == name));
            if replaced {
                return None;
            }
            contracts::Prices::parse(&materialize(&scenario.assets[name], root).ok()?)
        }
    }
}

/// Mounts each provider's `stubs`, then its cassette's recorded responses.
async fn mount_stubs(scenario: &Scenario, mocks: &HashMap<String, MockProvider>, root: &Path) -> anyhow::Result<()> {
    for (name, spec) in &scenario.providers {
        let Some(mock) = mocks.get(name) else { return Err(anyhow!("providers.{name}: no mock started")) };
        for (n, stub) in spec.stubs.iter().enumerate() {
            mock.mount(stub.clone()).await.map_err(|e| anyhow!("providers.{name}.stubs[{n}]: {e}"))?;
        }
        if let Some(path) = &spec.cassette {
            let stubs = crate::replay::scenario_stubs(&root.join(path), spec.kind)
                .map_err(|e| anyhow!("providers.{name}.cassette: {e}"))?;
            for stub in stubs {
                mock.mount(stub).await.map_err(|e| anyhow!("providers.{name}.cassette: {e}"))?;
            }
        }
    }
    Ok(())
}

/// Serves each asset's initial content.
fn serve_assets(scenario: &Scenario, assets: &AssetServer, root: &Path) -> anyhow::Result<()> {
    for (name, spec) in &scenario.assets {
        let bytes = materialize(spec, root).map_err(|e| anyhow!("assets.{name}: {e}"))?;
        assets.set(name, bytes);
    }
    Ok(())
}

/// The environment a gateway process gets: the scenario's `env`, plus the
/// variables LiteLLM reads for settings our config keeps in
/// `general_settings`, so one config works for both.
fn target_env(
    scenario: &Scenario,
    config: &Config,
    vars: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for (k, v) in &scenario.env {
        let mut v = Value::String(v.clone());
        substitute(&mut v, vars)?;
        env.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
    }
    let g = &config.general_settings;
    for (name, value) in [
        ("SERVER_ROOT_PATH", &g.server_root_path),
        ("LITELLM_MODEL_COST_MAP_URL", &g.model_cost_map),
        ("LITELLM_ANTHROPIC_BETA_HEADERS_URL", &g.anthropic_beta_headers),
        ("LITELLM_MASTER_KEY", &g.master_key),
    ] {
        if let Some(v) = value {
            env.entry(name.to_string()).or_insert_with(|| v.clone());
        }
    }
    // A scenario without a master key runs an open gateway on purpose
    // (127.0.0.1, mocks only). LiteLLM from 1.105 refuses to start that way
    // unless told it is deliberate; without this every such scenario would
    // "fail" on a start-up policy, not on the gateway's behaviour.
    if !env.contains_key("LITELLM_MASTER_KEY") {
        env.entry("LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY".into()).or_insert_with(|| "true".into());
    }
    Ok(env)
}

/// A header expectation like `>0` or `<=0.01` compares numbers (as in
/// `expect_stats`); anything else is an exact value.
fn is_comparison(want: &str) -> bool {
    [">=", "<=", "==", ">", "<"].iter().any(|op| want.strip_prefix(op).is_some_and(|n| n.trim().parse::<f64>().is_ok()))
}

/// Substitutes `${...}` placeholders in every string of a JSON value.
fn substitute(v: &mut Value, vars: &BTreeMap<String, String>) -> anyhow::Result<()> {
    match v {
        Value::String(s) => {
            // Scans on past each value put in: a value may itself hold `${`
            // (a saved answer is the gateway's text), never read as a placeholder.
            let mut from = 0;
            while let Some(start) = s[from..].find("${").map(|i| i + from) {
                let end = s[start..].find('}').ok_or_else(|| anyhow!("unclosed placeholder in `{s}`"))? + start;
                let name = &s[start + 2..end];
                let val = vars.get(name).ok_or_else(|| {
                    anyhow!(
                        "unknown placeholder `${{{name}}}` (known: {})",
                        vars.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                })?;
                let val = val.clone();
                s.replace_range(start..=end, &val);
                from = start + val.len();
            }
            Ok(())
        }
        Value::Array(a) => a.iter_mut().try_for_each(|x| substitute(x, vars)),
        Value::Object(m) => m.values_mut().try_for_each(|x| substitute(x, vars)),
        _ => Ok(()),
    }
}

/// The scenario's gateway config with placeholders filled, as the
/// LiteLLM-format config a separate gateway process would read (JSON, a
/// subset of YAML that no YAML version reads differently).
pub(crate) fn render_config_yaml(
    scenario: &Scenario,
    root: &Path,
    vars: &BTreeMap<String, String>,
) -> anyhow::Result<String> {
    let mut value: Value = match &scenario.gateway {
        GatewaySpec::Inline(v) => v.clone(),
        GatewaySpec::Path(p) => {
            let path = root.join(p);
            let text = std::fs::read_to_string(&path).map_err(|e| anyhow!("gateway: {}: {e}", path.display()))?;
            serde_yaml_ng::from_str(&text).map_err(|e| anyhow!("gateway: {}: {e}", path.display()))?
        }
    };
    substitute(&mut value, vars).map_err(|e| anyhow!("gateway: {e}"))?;
    expand_repeats(&mut value)?;
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
    // Written as JSON, which every YAML reader takes, with every string
    // quoted: a YAML 1.1 reader (PyYAML, so LiteLLM) reads a bare
    // `2024-10-21` as a date and `on`/`no` as booleans, which turned an
    // Azure `api_version` into a date and the deployment into a dead one.
    serde_json::to_string_pretty(&value).map_err(|e| anyhow!("gateway: {e}"))
}

/// A harness-side template, not gateway config: a `model_list` entry with
/// `repeat: N` becomes N entries with `{i}` in its strings replaced by
/// 0..N (e.g. many deployments with distinct credentials).
fn expand_repeats(config: &mut Value) -> anyhow::Result<()> {
    let Some(list) = config.get_mut("model_list").and_then(Value::as_array_mut) else { return Ok(()) };
    let mut out = Vec::with_capacity(list.len());
    for (idx, entry) in list.drain(..).enumerate() {
        match entry.get("repeat").cloned() {
            None => out.push(entry),
            Some(n) => {
                let n = n.as_u64().ok_or_else(|| anyhow!("gateway.model_list[{idx}].repeat must be a number"))?;
                let mut template = entry;
                if let Some(m) = template.as_object_mut() {
                    m.remove("repeat");
                }
                for i in 0..n {
                    let text = template.to_string().replace("{i}", &i.to_string());
                    out.push(serde_json::from_str(&text)?);
                }
            }
        }
    }
    *list = out;
    Ok(())
}

async fn run_step(ctx: &mut Ctx<'_>, i: usize) -> Result<(), StepError> {
    let step = &ctx.steps[i];
    let action = step.action()?;
    let expect = &step.expect;
    match action {
        Action::Request(r) => match r.repeat {
            None => {
                let until = step.eventually.map(|d| Instant::now() + d);
                loop {
                    let (sent, resp) = send(ctx, r).await?;
                    check_contracts(ctx, sent, &resp).await;
                    match check_response(ctx, expect, &resp).await {
                        Err(_) if until.is_some_and(|t| Instant::now() < t) => {
                            tokio::time::sleep(EVENTUALLY_POLL).await;
                        }
                        checked => {
                            record(ctx, i, r, &resp);
                            checked.map_err(|e| match step.eventually {
                                Some(d) => e.within(format!("still, after {}s", d.as_secs_f64())).into(),
                                None => StepError::from(e),
                            })?;
                            return Ok(save_values(ctx, r, &resp)?);
                        }
                    }
                }
            }
            Some(n) => {
                for k in 0..n {
                    let one = r.instance(k);
                    let (sent, resp) = send(ctx, &one).await?;
                    check_contracts(ctx, sent, &resp).await;
                    check_response(ctx, expect, &resp)
                        .await
                        .map_err(|e| e.within(format!("repeat {k} ({})", one.path)))?;
                }
                Ok(())
            }
        },
        Action::Concurrent(c) => {
            let requests: Vec<RequestSpec> = (0..c.count).map(|k| c.request.instance(k)).collect();
            let futs: Vec<_> = requests.iter().map(|r| send(ctx, r)).collect();
            let results = futures::future::join_all(futs).await;
            // The upstream calls of concurrent requests cannot be told
            // apart: each exchange is checked with all of them, shared.
            let refs = take_upstream(ctx);
            let calls = resolve_upstream(ctx, &refs).await;
            for (sent, resp) in results.iter().flatten() {
                check_exchange(ctx, sent.clone(), resp, calls.clone(), Attribution::Shared);
            }
            let mut failures = Vec::new();
            for (n, r) in results.into_iter().enumerate() {
                let checked = match r {
                    Ok((_, resp)) => check_response(ctx, expect, &resp).await.map_err(StepError::from),
                    Err(e) => Err(e),
                };
                if let Err(e) = checked {
                    failures.push(e.within(format!("request {n}")));
                }
            }
            if failures.is_empty() {
                Ok(())
            } else {
                let summary = format!("{} of {} concurrent requests failed; first", failures.len(), c.count);
                // A verdict when any request's is; a harness problem only
                // when every failure is the harness's.
                let harness = failures.iter().all(StepError::is_harness);
                let first = failures.swap_remove(0);
                Err(match first {
                    StepError::Harness(e) if harness => StepError::Harness(e.context(summary)),
                    other => StepError::Failed(format!("{summary}: {other}")),
                })
            }
        }
        // Time passes for the whole fleet.
        Action::Advance(d) => {
            for g in &ctx.rig.guts {
                g.advance(d).await?;
            }
            Ok(())
        }
        Action::Restart(n) => Ok(ctx.rig.instance(n)?.restart(Stop::Graceful).await?),
        Action::Kill(n) => Ok(ctx.rig.instance(n)?.restart(Stop::Kill).await?),
        Action::StopService(name) => Ok(service_step(ctx.rig.service(name)?, false).await?),
        Action::StartService(name) => Ok(service_step(ctx.rig.service(name)?, true).await?),
        Action::SetAsset(s) => {
            let bytes = materialize(&s.to, &ctx.root).with_context(|| format!("set_asset {}", s.asset))?;
            ctx.rig.assets.set(&s.asset, bytes);
            Ok(())
        }
        Action::Reload(what) => {
            let path = match what {
                super::model::ReloadTarget::CostMap => "/reload/model_cost_map",
                super::model::ReloadTarget::BetaPolicy => "/reload/anthropic_beta_headers",
            };
            let path = format!("{}{path}", ctx.rig.gut().root_path());
            let r = RequestSpec {
                method: "POST".into(),
                path,
                key: Some("master".into()),
                headers: BTreeMap::new(),
                body: None,
                raw_body: None,
                pad_body_to_bytes: None,
                repeat: None,
                save: BTreeMap::new(),
            };
            let (sent, resp) = send(ctx, &r).await?;
            record(ctx, i, &r, &resp);
            check_contracts(ctx, sent, &resp).await;
            Ok(check_response(ctx, expect, &resp).await?)
        }
        Action::OpenStream(o) => {
            let (req, sent) = build(ctx, &o.request)?;
            // A held stream stays open across the steps that run while it
            // is held (filling a client cache takes hundreds of requests,
            // slow on a loaded machine or a slow target): the client's
            // whole-request timeout would cut it there, a break that is the
            // harness's, not the gateway's. Its waits are bounded here
            // instead: the headers below, the rest by `finish_stream`.
            let req = req.timeout(OPEN_STREAM_LIFETIME);
            let resp = tokio::time::timeout(STEP_TIMEOUT, req.send())
                .await
                .map_err(|_| StepError::Failed("no response headers within the step timeout".into()))?
                .map_err(|e| StepError::Failed(format!("request failed: {}", error_chain(&e))))?;
            let status = resp.status().as_u16();
            if let Some(want) = expect.status {
                if status != want {
                    let body = resp.text().await.unwrap_or_default();
                    return Err(StepError::Failed(format!("status: expected {want}, got {status}; body: {body}")));
                }
            }
            // The calls that reached the mocks before the headers came
            // back are this stream's, whatever runs while it is open.
            let upstream = take_upstream(ctx);
            ctx.streams
                .insert(o.id.clone(), OpenedStream { response: resp, request: sent, upstream, received: Vec::new() });
            Ok(())
        }
        Action::FinishStream(f) => {
            if let Some(rel) = &f.release {
                ctx.rig.mocks.get(&rel.provider).ok_or_else(|| anyhow!("unknown provider"))?.release(&rel.gate);
            }
            let opened = ctx.streams.remove(&f.id).ok_or_else(|| anyhow!("stream `{}` is not open", f.id))?;
            let url = opened.response.url().clone();
            let status = opened.response.status().as_u16();
            let headers = header_map(opened.response.headers());
            let (rest, error) = tokio::time::timeout(STEP_TIMEOUT, read_body(opened.response))
                .await
                .map_err(|_| StepError::Failed(format!("stream `{}` did not finish within the step timeout", f.id)))?;
            let body = [opened.received, rest].concat();
            // `within_ms` is not a finish_stream check: the time is the scenario's.
            let resp = Response { url, status, headers, body, complete: error.is_none(), elapsed: Duration::ZERO };
            let mut calls = resolve_upstream(ctx, &opened.upstream).await;
            let later = take_upstream(ctx);
            calls.extend(resolve_upstream(ctx, &later).await);
            check_exchange(ctx, opened.request, &resp, calls, Attribution::Exact);
            if let Some(e) = error {
                return Err(StepError::Failed(format!("stream `{}` broke: {e}", f.id)));
            }
            let text = resp.text();
            if let Some(want) = expect.stream_complete {
                stream_expectation(&text, want).map_err(|e| e.within(format!("stream `{}`", f.id)))?;
            }
            for needle in &expect.body_contains {
                if !text.contains(needle.as_str()) {
                    return Err(StepError::Failed(format!("stream `{}`: body does not contain {needle:?}", f.id)));
                }
            }
            Ok(())
        }
        Action::ReadStream(r) => {
            let opened = ctx.streams.get_mut(&r.id).ok_or_else(|| anyhow!("stream `{}` is not open", r.id))?;
            let deadline = tokio::time::Instant::now() + contracts::INCREMENTAL_BOUND;
            let count = |b: &[u8]| contracts::sse::events(b).events.len();
            while count(&opened.received) < r.events {
                match tokio::time::timeout_at(deadline, opened.response.chunk()).await {
                    Ok(Ok(Some(chunk))) => opened.received.extend_from_slice(&chunk),
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => {
                        return Err(StepError::Failed(format!("stream `{}` broke: {}", r.id, error_chain(&e))))
                    }
                    Err(_) => break, // the bound: judged below
                }
            }
            if let Some(v) = contracts::check_incremental(count(&opened.received), r.events) {
                if !ctx.waived.contains_key(v.contract) {
                    let evidence = vec![format!("client got so far: {}", contracts::snippet(&opened.received))];
                    ctx.violations.push(ContractViolation {
                        contract: v.contract,
                        step: ctx.current_step.clone(),
                        detail: v.detail,
                        evidence,
                    });
                }
            }
            Ok(())
        }
        Action::AbandonStream(id) => {
            let opened = ctx.streams.remove(id).ok_or_else(|| anyhow!("stream `{id}` is not open"))?;
            // The client goes away: its connection to the gateway closes.
            drop(opened.response);
            let left = Instant::now();
            loop {
                let calls = resolve_upstream(ctx, &opened.upstream).await;
                let waited = left.elapsed();
                let open: Vec<contracts::Violation> =
                    calls.iter().filter_map(|c| contracts::check_abandoned(c, waited)).collect();
                if open.is_empty() || waited >= contracts::ABANDON_BOUND {
                    for v in open {
                        if !ctx.waived.contains_key(v.contract) {
                            ctx.violations.push(ContractViolation {
                                contract: v.contract,
                                step: ctx.current_step.clone(),
                                detail: v.detail,
                                evidence: vec![format!(
                                    "client sent: {} {} and left",
                                    opened.request.method, opened.request.path
                                )],
                            });
                        }
                    }
                    return Ok(());
                }
                // Waiting for the gateway to notice, bounded by ABANDON_BOUND.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Action::Mock(m) => {
            let mock = ctx.rig.mocks.get(&m.provider).ok_or_else(|| anyhow!("unknown provider"))?;
            if m.reset {
                mock.reset().await;
            }
            for (n, stub) in m.mount.iter().enumerate() {
                mock.mount(stub.clone()).await.with_context(|| format!("mock.mount[{n}]"))?;
            }
            Ok(())
        }
        Action::FillClientCache(n) => Ok(ctx.rig.gut().fill_client_cache(n)?),
        Action::ExpectProvider(p) => Ok(check_provider(ctx, p).await?),
        Action::ExpectStats(checks) => {
            let status = ctx.rig.gut().status().await?;
            for (pointer, want) in checks {
                check_stat(pointer, want, status.pointer(pointer))?;
            }
            Ok(())
        }
        Action::ExpectOutput(o) => {
            // A process's lines arrive through a pipe reader; give a line
            // that was printed before this step a moment to be read.
            let deadline = Instant::now() + OUTPUT_WAIT;
            loop {
                let lines = ctx.rig.gut().output_lines();
                match check_output(o, &lines) {
                    Err(_) if ctx.rig.gut().output_is_live() && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => return Ok(other?),
                }
            }
        }
    }
}

/// Keeps the values a request's `save` names, for `${saved.NAME}` later.
fn save_values(ctx: &mut Ctx<'_>, r: &RequestSpec, resp: &Response) -> Result<(), Mismatch> {
    if r.save.is_empty() {
        return Ok(());
    }
    let docs: Vec<Value> = match serde_json::from_slice::<Value>(&resp.body) {
        Ok(v) => vec![v],
        Err(_) => contracts::sse::events(&resp.body).events.iter().filter_map(|e| e.json()).collect(),
    };
    for (name, pointer) in &r.save {
        let found = docs.iter().find_map(|d| d.pointer(pointer)).ok_or_else(|| {
            Mismatch(format!(
                "save.{name}: the response has nothing at {pointer}: {}",
                String::from_utf8_lossy(&resp.body).chars().take(300).collect::<String>()
            ))
        })?;
        let text = match found {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        ctx.saved.insert(format!("saved.{name}"), text);
    }
    Ok(())
}

/// `${saved.NAME}` in a request's strings, from earlier `save`s.
fn with_saved(ctx: &Ctx<'_>, r: &RequestSpec) -> anyhow::Result<RequestSpec> {
    let mut r = r.clone();
    if !r.path.contains("${saved.") && !r.body.as_ref().is_some_and(|b| b.to_string().contains("${saved.")) {
        return Ok(r);
    }
    let mut path = Value::String(r.path.clone());
    substitute(&mut path, &ctx.saved)?;
    r.path = path.as_str().unwrap_or_default().to_string();
    if let Some(b) = r.body.as_mut() {
        substitute(b, &ctx.saved)?;
    }
    Ok(r)
}

/// The request to send, and the same request as the contract checks see it.
fn build(ctx: &Ctx<'_>, r: &RequestSpec) -> anyhow::Result<(reqwest::RequestBuilder, ClientRequest)> {
    let r = &with_saved(ctx, r)?;
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).map_err(|_| anyhow!("bad method `{}`", r.method))?;
    let url = format!("{}{}", ctx.rig.gut().base_url(), r.path);
    let mut req = ctx.rig.http.request(method, &url);
    let mut headers: Vec<(String, String)> = Vec::new();
    let key = match r.key.as_deref() {
        Some("none") => None,
        Some("master") | None => ctx.rig.master_key.clone().or_else(|| ctx.rig.env_master_key.clone()),
        Some(k) => Some(k.to_string()),
    };
    if let Some(k) = key {
        headers.push(("authorization".into(), format!("Bearer {k}")));
    }
    for (k, v) in &r.headers {
        headers.push((k.to_ascii_lowercase(), v.clone()));
    }
    let mut body = Vec::new();
    if let Some(raw) = &r.raw_body {
        headers.push(("content-type".into(), "application/json".into()));
        body = raw.clone().into_bytes();
    } else if let Some(b) = &r.body {
        let mut b = b.clone();
        if let (Some(n), Some(obj)) = (r.pad_body_to_bytes, b.as_object_mut()) {
            let current = Value::Object(obj.clone()).to_string().len();
            obj.insert("pad".into(), Value::String("x".repeat(n.saturating_sub(current))));
        }
        headers.push(("content-type".into(), "application/json".into()));
        body = serde_json::to_vec(&b).map_err(|e| anyhow!("request body: {e}"))?;
    }
    for (k, v) in &headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if !body.is_empty() {
        req = req.body(body.clone());
    }
    let root = ctx.rig.gut().root_path();
    let path = r.path.strip_prefix(root.as_str()).filter(|p| !root.is_empty() && p.starts_with('/')).unwrap_or(&r.path);
    let sent = ClientRequest { method: r.method.to_ascii_uppercase(), path: path.to_string(), headers, body };
    Ok((req, sent))
}

fn header_map(headers: &reqwest::header::HeaderMap) -> BTreeMap<String, String> {
    headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect()
}

/// Reads a body to its end; on a transport error, what arrived before it
/// and the error.
async fn read_body(mut resp: reqwest::Response) -> (Vec<u8>, Option<String>) {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return (body, None),
            Err(e) => return (body, Some(e.to_string())),
        }
    }
}

/// Sends a request and reads its answer. A request the harness cannot build
/// is its own problem; one the gateway does not answer whole is a verdict.
async fn send(ctx: &Ctx<'_>, r: &RequestSpec) -> Result<(ClientRequest, Response), StepError> {
    let (req, sent) = build(ctx, r)?;
    let started = Instant::now();
    let resp = req
        .send()
        .await
        .map_err(|e| StepError::Failed(format!("{} {}: request failed: {}", r.method, r.path, error_chain(&e))))?;
    let status = resp.status().as_u16();
    let url = resp.url().clone();
    let headers = header_map(resp.headers());
    let (body, error) = read_body(resp).await;
    if let Some(e) = error {
        return Err(StepError::Failed(format!("{} {}: body broke: {e}", r.method, r.path)));
    }
    Ok((sent, Response { url, status, headers, body, complete: true, elapsed: started.elapsed() }))
}

/// How long the checks wait for a mock to finish writing an answer whose
/// client response is already complete (the mock records the end of a
/// stream just after its last byte leaves).
const ANSWER_WAIT: Duration = Duration::from_millis(300);

/// The journal entries that arrived since the last exchange, per mock; they
/// now belong to the exchange being checked.
fn take_upstream(ctx: &mut Ctx<'_>) -> Vec<(String, usize)> {
    let mut refs = Vec::new();
    for (name, mock) in &ctx.rig.mocks {
        let seen = ctx.attributed.entry(name.clone()).or_insert(0);
        let n = mock.request_count();
        refs.extend((*seen..n).map(|i| (name.clone(), i)));
        *seen = n;
    }
    refs
}

/// The upstream calls behind `refs`, in arrival order, once every answer
/// that has started is written (bounded by [`ANSWER_WAIT`]).
async fn resolve_upstream(ctx: &Ctx<'_>, refs: &[(String, usize)]) -> Vec<UpstreamCall> {
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let mut calls: Vec<UpstreamCall> = refs
            .iter()
            .filter_map(|(name, i)| {
                let mock = ctx.rig.mocks.get(name)?;
                let (request, answer) = mock.exchange_at(*i)?;
                Some(UpstreamCall { provider: name.clone(), kind: mock.kind(), request, answer })
            })
            .collect();
        let writing =
            calls.iter().any(|c| c.answer.status.is_some() && c.answer.end == crate::mocks::AnswerEnd::InProgress);
        if !writing || Instant::now() >= deadline {
            calls.sort_by_key(|c| c.answer.seq);
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Checks one exchange whose upstream calls are those since the last one.
async fn check_contracts(ctx: &mut Ctx<'_>, sent: ClientRequest, resp: &Response) {
    let refs = take_upstream(ctx);
    let calls = resolve_upstream(ctx, &refs).await;
    check_exchange(ctx, sent, resp, calls, Attribution::Exact);
}

/// Runs every contract on the exchange and keeps the violations that the
/// scenario or step does not waive.
fn check_exchange(
    ctx: &mut Ctx<'_>,
    request: ClientRequest,
    resp: &Response,
    upstream: Vec<UpstreamCall>,
    attribution: Attribution,
) {
    let response = ClientResponse {
        status: resp.status,
        headers: resp.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        body: resp.body.clone(),
        complete: resp.complete,
        // A finished stream's time is the scenario's (it held the stream), not the gateway's.
        elapsed: (!resp.elapsed.is_zero()).then_some(resp.elapsed),
    };
    let egress = match &ctx.rig.egress {
        Some(e) => {
            let new = e.since(ctx.egress_seen);
            ctx.egress_seen += new.len();
            new
        }
        None => Vec::new(),
    };
    let x = Exchange { request, response, upstream, attribution, egress };
    ctx.exchanges_checked += 1;
    let mut found = contracts::check(&x, &ctx.rig.setup);
    found.extend(ctx.handles.check(&x));
    if found.is_empty() {
        return;
    }
    let evidence = evidence(&x, &ctx.rig.setup);
    for v in found {
        if ctx.waived.contains_key(v.contract) {
            continue;
        }
        let dup = ctx
            .violations
            .iter()
            .any(|o| o.contract == v.contract && o.step == ctx.current_step && o.detail == v.detail);
        if !dup {
            ctx.violations.push(ContractViolation {
                contract: v.contract,
                step: ctx.current_step.clone(),
                detail: mask(&v.detail, &ctx.rig.setup),
                evidence: evidence.clone(),
            });
        }
    }
}

/// Replaces configured secrets with their labels.
fn mask(text: &str, setup: &contracts::Setup) -> String {
    let mut out = text.to_string();
    for s in &setup.secrets {
        if out.contains(&s.value) {
            out = out.replace(&s.value, &format!("[{}]", s.label));
        }
    }
    out
}

/// The exchange in a few lines: what the client sent, each upstream call
/// and its answer, what the client got. Secrets are masked.
fn evidence(x: &Exchange, setup: &contracts::Setup) -> Vec<String> {
    let mut lines =
        vec![format!("client sent: {} {} {}", x.request.method, x.request.path, contracts::snippet(&x.request.body))];
    for c in &x.upstream {
        let a = &c.answer;
        let status = a.status.map(|s| s.to_string()).unwrap_or_else(|| "no answer".into());
        lines.push(format!(
            "{} received: {} {} {} -> answered {status} ({:?}) {}",
            c.provider,
            c.request.method,
            c.request.path,
            contracts::snippet(&c.request.body),
            a.end,
            contracts::snippet(&a.body)
        ));
    }
    lines.push(format!(
        "client got: {} {} {}",
        x.response.status,
        x.response.header("content-type").unwrap_or(""),
        contracts::snippet(&x.response.body)
    ));
    lines.into_iter().map(|l| mask(&l, setup)).collect()
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
    let mut names: Vec<&String> = ctx.rig.mocks.keys().collect();
    names.sort();
    for name in names {
        let journal = ctx.rig.mocks[name].journal();
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

/// `stream_complete: true`: the stream ended cleanly; `false`: it did not
/// (an error event, or no terminator): a failure was not dressed up as a
/// finished answer.
fn stream_expectation(text: &str, complete: bool) -> Result<(), Mismatch> {
    match (complete, stream_verdict(text)) {
        (true, r) => r,
        (false, Ok(())) => Err(Mismatch(
            "expected a stream that does not end cleanly (an error event or no terminator), \
             but it ended with [DONE] or message_stop and no error"
                .into(),
        )),
        (false, Err(_)) => Ok(()),
    }
}

async fn check_response(ctx: &Ctx<'_>, e: &Expect, resp: &Response) -> Result<(), Mismatch> {
    let body_hint = || format!("body: {}", short(&resp.json().unwrap_or_else(|| Value::String(resp.text()))));
    if let Some(bound) = e.within_ms {
        let took = resp.elapsed.as_millis();
        if took > u128::from(bound) {
            return Err(Mismatch(format!(
                "the exchange took {took} ms, more than its bound of {bound} ms; {}",
                body_hint()
            )));
        }
    }
    if let Some(s) = e.status {
        if resp.status != s {
            return Err(Mismatch(format!("status: expected {s}, got {}; {}", resp.status, body_hint())));
        }
    }
    if !e.status_class.is_empty() && !e.status_class.iter().any(|c| c.contains(resp.status)) {
        let classes: Vec<String> = e.status_class.iter().map(ToString::to_string).collect();
        return Err(Mismatch(format!(
            "status: expected {}, got {}; {}",
            classes.join(" or "),
            resp.status,
            body_hint()
        )));
    }
    if e.json.is_some() || !e.json_path.is_empty() || e.error_contains.is_some() || e.error_present {
        let v = resp.json().ok_or_else(|| Mismatch(format!("expected a JSON body; {}", body_hint())))?;
        if let Some(want) = &e.json {
            json_contains(want, &v, "").map_err(|d| Mismatch(format!("json: {d}")))?;
        }
        for (p, want) in &e.json_path {
            check_stat(p, want, v.pointer(p)).map_err(|d| Mismatch(format!("json_path {d}")))?;
        }
        if e.error_present || e.error_contains.is_some() {
            let msg = super::expect::error_message(&v)
                .ok_or_else(|| Mismatch(format!("expected an error body with error.message; {}", body_hint())))?;
            if let Some(text) = &e.error_contains {
                if !msg.contains(text.as_str()) {
                    return Err(Mismatch(format!("error message {msg:?} does not contain {text:?}")));
                }
            }
        }
    }
    for (k, want) in &e.headers {
        match resp.headers.get(&k.to_ascii_lowercase()) {
            Some(got) if got == want => {}
            Some(got) if is_comparison(want) => {
                let number = got.trim().parse::<f64>().map(Value::from).unwrap_or_else(|_| Value::from(got.as_str()));
                check_stat(&format!("header {k}"), &Value::from(want.as_str()), Some(&number))?;
            }
            Some(got) => return Err(Mismatch(format!("header {k}: expected {want:?}, got {got:?}"))),
            None => return Err(Mismatch(format!("header {k}: missing (expected {want:?})"))),
        }
    }
    for (k, want) in &e.media_types {
        super::expect::check_media_type(k, want, resp.headers.get(&k.to_ascii_lowercase()).map(String::as_str))?;
    }
    for k in &e.headers_present {
        if !resp.headers.contains_key(&k.to_ascii_lowercase()) {
            return Err(Mismatch(format!("header {k}: expected to be present")));
        }
    }
    for k in &e.headers_absent {
        if let Some(v) = resp.headers.get(&k.to_ascii_lowercase()) {
            return Err(Mismatch(format!("header {k}: expected to be absent, got {v:?}")));
        }
    }
    let text = resp.text();
    for needle in &e.body_contains {
        if !text.contains(needle.as_str()) {
            return Err(Mismatch(format!("body does not contain {needle:?}; {}", body_hint())));
        }
    }
    if let Some(want) = e.stream_complete {
        stream_expectation(&text, want)?;
    }
    if e.links_ok {
        for link in html_links(&text) {
            if link.starts_with('#') || link.starts_with("data:") || link.starts_with("javascript:") {
                continue;
            }
            let url = resp.url.join(&link).map_err(|e| Mismatch(format!("link {link}: {e}")))?;
            if url.host_str() != resp.url.host_str() || url.port() != resp.url.port() {
                continue; // another site's link is not the gateway's to serve
            }
            let r = ctx.rig.http.get(url).send().await.map_err(|e| Mismatch(format!("link {link}: {e}")))?;
            if r.status().as_u16() != 200 {
                return Err(Mismatch(format!("link {link} answered {}", r.status().as_u16())));
            }
        }
    }
    Ok(())
}

async fn check_provider(ctx: &Ctx<'_>, p: &ProviderExpect) -> Result<(), Mismatch> {
    let mock = ctx.rig.mocks.get(&p.provider).ok_or_else(|| Mismatch("unknown provider".into()))?;
    // The provider's model calls only: a gateway's side lookups are no
    // request of the scenario's, and must not change a count or `last`.
    let journal: Vec<_> = mock.journal().into_iter().filter(|r| r.is_model_call()).collect();
    if let Some(n) = p.requests {
        if journal.len() != n {
            let paths: Vec<String> = journal.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
            return Err(Mismatch(format!(
                "{}: expected {n} requests, got {} ({})",
                p.provider,
                journal.len(),
                paths.join(", ")
            )));
        }
    }
    if let Some(last) = &p.last {
        let r = journal.last().ok_or_else(|| Mismatch(format!("{}: received no request", p.provider)))?;
        check_upstream(&p.provider, last, r)?;
    }
    if let Some(all) = &p.all {
        if journal.is_empty() {
            return Err(Mismatch(format!("{}: received no request", p.provider)));
        }
        for r in &journal {
            check_upstream(&p.provider, all, r)?;
        }
    }
    Ok(())
}

fn check_upstream(provider: &str, e: &UpstreamExpect, r: &crate::mocks::RecordedRequest) -> Result<(), Mismatch> {
    let at = format!("{provider} received {} {}", r.method, r.path);
    if let Some(p) = &e.path {
        if &r.path != p {
            return Err(Mismatch(format!("{at}: expected path {p}")));
        }
    }
    if let Some(p) = &e.path_contains {
        if !r.path.contains(p.as_str()) {
            return Err(Mismatch(format!("{at}: expected the path to contain {p}")));
        }
    }
    let header = |name: &str| r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    for (k, want) in &e.headers {
        match header(k) {
            Some(got) if &got == want => {}
            Some(got) => return Err(Mismatch(format!("{at}: header {k}: expected {want:?}, got {got:?}"))),
            None => return Err(Mismatch(format!("{at}: header {k}: missing (expected {want:?})"))),
        }
    }
    for k in &e.headers_absent {
        if let Some(v) = header(k) {
            return Err(Mismatch(format!("{at}: header {k} should be absent, got {v:?}")));
        }
    }
    if !e.body.is_empty() || !e.body_absent.is_empty() || !e.body_not_null.is_empty() {
        let body = r.json.clone().ok_or_else(|| Mismatch(format!("{at}: body is not JSON")))?;
        for (p, want) in &e.body {
            check_stat(p, want, body.pointer(p)).map_err(|d| Mismatch(format!("{at}: body {d}")))?;
        }
        for p in &e.body_not_null {
            if body.pointer(p).map(Value::is_null).unwrap_or(false) {
                return Err(Mismatch(format!("{at}: body field {p} is null (full body: {})", short(&body))));
            }
        }
        for p in &e.body_absent {
            if let Some(v) = body.pointer(p) {
                return Err(Mismatch(format!(
                    "{at}: body field {p} should be absent, got {} (full body: {})",
                    short(v),
                    short(&body)
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(providers: &str, gateway: &str, steps: &str, extra: &str) -> Scenario {
        let text = format!("name: t\nproviders: {providers}\ngateway: {gateway}\n{extra}steps:\n{steps}");
        Scenario::parse(&text, "t.yaml").unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn a_value_holding_a_placeholder_is_put_in_as_text_once() {
        let vars: BTreeMap<String, String> = [("saved.a".to_string(), "x${saved.a}y".to_string())].into();
        let mut v = serde_json::json!({"p": "<${saved.a}>", "q": ["${saved.a}"]});
        substitute(&mut v, &vars).expect("substituted");
        assert_eq!(v, serde_json::json!({"p": "<x${saved.a}y>", "q": ["x${saved.a}y"]}));
        let mut missing = serde_json::json!("${saved.none}");
        assert!(substitute(&mut missing, &vars).unwrap_err().to_string().contains("unknown placeholder"));
    }

    #[test]
    fn environment_limits_are_inconclusive_only_in_target_mode() {
        let process = TargetSpec::Url { url: "http://127.0.0.1:1".into(), kind: Default::default() };
        let vertex = "status: expected 200, got 400; body: vertexai import failed please run `pip install -U google-cloud-aiplatform`. Got error: No module named 'vertexai'";
        assert!(environment_limit(&process, vertex).is_some_and(|why| why.contains("not installed")));
        assert_eq!(environment_limit(&TargetSpec::InProcess, vertex), None);
        assert_eq!(environment_limit(&process, "status: expected 200, got 500"), None);
        let dialect = "status: expected 200, got 500; body: {\"error\":{\"message\":\"Invalid port: '45489:rawPredict'. Received Model Group=claude-vertex\"}}";
        assert!(environment_limit(&process, dialect).is_some_and(|why| why.contains("whole endpoint URL")));
    }

    #[test]
    fn only_equal_setups_without_state_changes_share_a_process() {
        let root = Path::new(".");
        let openai = "{o: {kind: openai}}";
        let config = "{model_list: [{model_name: m, litellm_params: {model: openai/m}}]}";
        let ask = "  - request: {path: /v1/models}\n";
        let key = |s: &Scenario| sharing_key(s, root);
        let base = key(&scenario(openai, config, ask, ""));
        assert!(base.is_some());
        // Other steps, other stubs: still the same process.
        let stubbed = "{o: {kind: openai, stubs: [{match: {path: /v1/models}, response: {json: {body: {}}}}]}}";
        assert_eq!(key(&scenario(stubbed, config, "  - request: {path: /health}\n", "")), base);
        // A different config, provider profile or env: a process of its own.
        let other_config = "{model_list: [{model_name: n, litellm_params: {model: openai/n}}]}";
        assert_ne!(key(&scenario(openai, other_config, ask, "")), base);
        assert_ne!(key(&scenario("{o: {kind: openai, strict: false}}", config, ask, "")), base);
        assert_ne!(key(&scenario(openai, config, ask, "env: {SERVER_ROOT_PATH: /x}\n")), base);
        // Steps that change the gateway's state, or `isolated`: never shared.
        assert_eq!(key(&scenario(openai, config, "  - reload: cost_map\n", "")), None);
        assert_eq!(key(&scenario(openai, config, ask, "isolated: true\n")), None);
        // Fleets, services and restarts: never shared either.
        assert_eq!(key(&scenario(openai, config, ask, "gateways: 2\n")), None);
        assert_eq!(key(&scenario(openai, config, ask, "services: {db: {kind: postgres}}\n")), None);
        assert_eq!(key(&scenario(openai, config, "  - kill: 0\n", "")), None);
        assert_eq!(key(&scenario(openai, config, "  - restart: 0\n", "")), None);
    }
}
