//! The scenario file format (YAML). See docs/scenarios.md for the reference.
//!
//! Every struct denies unknown keys, so a typo is an error naming the file,
//! the field and the line, never a silently ignored expectation.

use crate::mocks::{MockKind, Stub};
pub(crate) use crate::target::Capability;
use anyhow::{anyhow, Context};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The incident this scenario guards, e.g. `4-none-params`.
    #[serde(default)]
    pub incident: Option<IncidentRef>,
    /// Capabilities the steps need from the gateway under test
    /// (`manual_clock`, `internal_stats`). Derived from the steps too.
    #[serde(default)]
    pub needs: Vec<Capability>,
    /// Environment for the gateway process (target mode) or read by the
    /// in-process gateway at build time (e.g. `SERVER_ROOT_PATH`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSpec>,
    /// Files the harness serves over HTTP (a cost map, a beta policy), so
    /// the gateway fetches them the way it does in production.
    #[serde(default)]
    pub assets: BTreeMap<String, AssetSpec>,
    /// The gateway config: inline (LiteLLM config.yaml format) or a path.
    /// Strings may hold `${providers.NAME.url}` and `${assets.NAME.url}`.
    pub gateway: GatewaySpec,
    /// Servers the harness starts for the scenario (a database a fleet
    /// shares); the config names them as `${services.NAME.url}`.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceSpec>,
    /// Instances of the gateway under test built from the one rendered
    /// config, sharing the services; a step picks one with `gateway: i`.
    #[serde(default = "one")]
    pub gateways: usize,
    pub steps: Vec<Step>,
    /// Steps to run instead of `steps` when the gateway under test lacks a
    /// capability `steps` need (target mode): the same incident, observed
    /// only from outside.
    #[serde(default)]
    pub black_box_steps: Option<Vec<Step>>,
    /// Why the scenario has no black-box variant, shown when it is not
    /// applicable to a target.
    #[serde(default)]
    pub black_box_note: Option<String>,
    #[serde(default)]
    pub snapshot: bool,
    /// In target mode, run in a gateway process of its own even when
    /// another scenario has the same config (for scenarios whose requests
    /// change the gateway's state, e.g. spend a budget other scenarios see).
    #[serde(default)]
    pub isolated: bool,
    /// Contracts this scenario does not hold the gateway to, each with the
    /// reason (a contract name from `postmortem contracts`, e.g.
    /// `errors.status-class: the stub answers 500 on purpose`).
    #[serde(default)]
    pub waive: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentRef {
    pub id: String,
    /// The known-bad variant that puts this incident's bug back.
    pub bug: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    pub kind: MockKind,
    #[serde(default = "yes")]
    pub strict: bool,
    #[serde(default)]
    pub stubs: Vec<Stub>,
    /// A cassette (any format `postmortem replay` reads, path relative to the
    /// project root) whose recorded responses are mounted as stubs after `stubs`.
    #[serde(default)]
    pub cassette: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

/// The longest `eventually` a step may wait (within the step's own bound).
pub(crate) const MAX_EVENTUALLY: Duration = Duration::from_secs(30);

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub kind: ServiceKind,
    /// Redis only: keep the data through a stop and start (an append-only
    /// file synced on every write). Without it a restarted Redis is empty.
    #[serde(default)]
    pub appendonly: bool,
}

/// What a service is: a server the harness knows how to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Postgres,
    Redis,
}

impl<'de> Deserialize<'de> for ServiceKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "postgres" => Ok(ServiceKind::Postgres),
            "redis" => Ok(ServiceKind::Redis),
            other => Err(serde::de::Error::custom(format!(
                "unknown service kind `{other}` (the kinds are `postgres` and `redis`)"
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSpec {
    /// Start from a file (relative to the project root).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Or from an inline JSON value.
    #[serde(default)]
    pub inline: Option<Value>,
    /// Or from raw text, served byte for byte (malformed on purpose).
    #[serde(default)]
    pub raw: Option<String>,
    /// Top-level keys to remove from a JSON object.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Top-level keys to add or replace.
    #[serde(default)]
    pub add: BTreeMap<String, Value>,
    /// Keep only this fraction of the top-level keys (a shrunken map).
    #[serde(default)]
    pub keep_fraction: Option<f64>,
    /// Serve only the first N bytes (a truncated download).
    #[serde(default)]
    pub truncate_bytes: Option<usize>,
    /// Append text after the JSON (e.g. a stray `{`).
    #[serde(default)]
    pub append: Option<String>,
    /// Insert text at the start.
    #[serde(default)]
    pub prepend: Option<String>,
}

impl AssetSpec {
    fn validate(&self) -> anyhow::Result<()> {
        let sources = [self.file.is_some(), self.inline.is_some(), self.raw.is_some()].iter().filter(|b| **b).count();
        if sources != 1 {
            return Err(anyhow!("give exactly one of `file`, `inline`, `raw`"));
        }
        let transforms = !self.remove.is_empty() || !self.add.is_empty() || self.keep_fraction.is_some();
        if self.raw.is_some() && transforms {
            return Err(anyhow!(
                "`raw` is served byte for byte; `remove`, `add` and `keep_fraction` need `file` or `inline`"
            ));
        }
        if let Some(f) = self.keep_fraction {
            if !(0.0..=1.0).contains(&f) {
                return Err(anyhow!("keep_fraction must be between 0 and 1, got {f}"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum GatewaySpec {
    Path(PathBuf),
    Inline(Value),
}

/// One step: exactly one action key, plus optional `name`, `expect` and
/// `checks_incident`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(default)]
    pub name: Option<String>,
    /// Marks the step that observes the incident: in `--prove`, the broken
    /// gateway must fail at a step with this mark.
    #[serde(default)]
    pub checks_incident: bool,
    /// With `checks_incident`: the failure counts as the incident only if its
    /// message contains one of these (the incident's signature, e.g. "invalid
    /// beta flag"); any other failure at this step is inconclusive. Keeps a
    /// target that fails for an unrelated reason from being reported as
    /// having the incident.
    #[serde(default)]
    pub caught_if: Vec<String>,
    /// Capabilities this one step needs; a target without them skips the
    /// step (the report counts skipped steps). For checks that only our
    /// gateway can pass by design, not for the incident's own check.
    #[serde(default)]
    pub needs: Vec<Capability>,
    /// Contracts this step's exchanges are not held to, with the reason.
    #[serde(default)]
    pub waive: BTreeMap<String, String>,
    /// The instance of the gateway under test this step talks to
    /// (0-based, default 0; see `gateways`).
    #[serde(default)]
    pub gateway: Option<usize>,
    /// A `request` step: send it again until `expect` holds, for at most
    /// this long (what a fleet shows only after its periodic sync).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub eventually: Option<Duration>,
    #[serde(default)]
    pub request: Option<RequestSpec>,
    #[serde(default)]
    pub concurrent: Option<ConcurrentSpec>,
    /// Move the gateway's manual clock, e.g. `11m`, `90s`, `1h`.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub advance: Option<Duration>,
    /// Replace a served asset's content.
    #[serde(default)]
    pub set_asset: Option<SetAsset>,
    /// Ask the gateway to reload `cost_map` or `beta_policy`.
    #[serde(default)]
    pub reload: Option<ReloadTarget>,
    /// Start a streaming request and keep it open.
    #[serde(default)]
    pub open_stream: Option<OpenStream>,
    /// Release the mock's gate (if any) and read the stream to its end.
    #[serde(default)]
    pub finish_stream: Option<FinishStream>,
    /// Drop an open stream as a client that goes away would; the gateway
    /// must close its upstream call within the contract's bound
    /// (`resources.abandoned-upstream-closed`).
    #[serde(default)]
    pub abandon_stream: Option<String>,
    /// Read an open stream until it has delivered at least this many
    /// events, while the provider holds the rest (contract
    /// `stream.incremental`).
    #[serde(default)]
    pub read_stream: Option<ReadStream>,
    /// Change a mock provider's behaviour.
    #[serde(default)]
    pub mock: Option<MockChange>,
    /// Put N distinct clients into the gateway's client cache.
    #[serde(default)]
    pub fill_client_cache: Option<usize>,
    /// Check what a provider received.
    #[serde(default)]
    pub expect_provider: Option<ProviderExpect>,
    /// Stop instance i gracefully (spend written) and start it again on the
    /// same config and data.
    #[serde(default)]
    pub restart: Option<usize>,
    /// Kill instance i (no graceful shutdown: queued spend is lost) and
    /// start it again on the same config and data.
    #[serde(default)]
    pub kill: Option<usize>,
    /// Stop a service (its data kept).
    #[serde(default)]
    pub stop_service: Option<String>,
    /// Start a stopped service again (same data, same port).
    #[serde(default)]
    pub start_service: Option<String>,
    /// Check what the gateway logged (needs `gateway_output`).
    #[serde(default)]
    pub expect_output: Option<OutputExpect>,
    /// Check the gateway's status document: JSON pointer -> expected value.
    /// A string value `>=N`, `<=N`, `==N` compares numbers; `contains:TEXT`
    /// checks a substring.
    #[serde(default)]
    pub expect_stats: Option<BTreeMap<String, Value>>,
    /// Expectations on the response of `request`, `concurrent`, `reload`,
    /// `open_stream` (headers and status) and `finish_stream` (the stream).
    #[serde(default)]
    pub expect: Expect,
}

/// The action of a step, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action<'a> {
    Request(&'a RequestSpec),
    Concurrent(&'a ConcurrentSpec),
    Advance(Duration),
    SetAsset(&'a SetAsset),
    Reload(ReloadTarget),
    OpenStream(&'a OpenStream),
    FinishStream(&'a FinishStream),
    AbandonStream(&'a str),
    ReadStream(&'a ReadStream),
    Mock(&'a MockChange),
    FillClientCache(usize),
    ExpectProvider(&'a ProviderExpect),
    ExpectStats(&'a BTreeMap<String, Value>),
    ExpectOutput(&'a OutputExpect),
    Restart(usize),
    Kill(usize),
    StopService(&'a str),
    StartService(&'a str),
}

impl Step {
    /// The step's single action, or an error when it has none or several.
    pub(crate) fn action(&self) -> anyhow::Result<Action<'_>> {
        let mut found = Vec::new();
        if let Some(r) = &self.request {
            found.push(Action::Request(r));
        }
        if let Some(c) = &self.concurrent {
            found.push(Action::Concurrent(c));
        }
        if let Some(d) = self.advance {
            found.push(Action::Advance(d));
        }
        if let Some(a) = &self.set_asset {
            found.push(Action::SetAsset(a));
        }
        if let Some(r) = self.reload {
            found.push(Action::Reload(r));
        }
        if let Some(o) = &self.open_stream {
            found.push(Action::OpenStream(o));
        }
        if let Some(f) = &self.finish_stream {
            found.push(Action::FinishStream(f));
        }
        if let Some(id) = &self.abandon_stream {
            found.push(Action::AbandonStream(id));
        }
        if let Some(r) = &self.read_stream {
            found.push(Action::ReadStream(r));
        }
        if let Some(m) = &self.mock {
            found.push(Action::Mock(m));
        }
        if let Some(n) = self.fill_client_cache {
            found.push(Action::FillClientCache(n));
        }
        if let Some(p) = &self.expect_provider {
            found.push(Action::ExpectProvider(p));
        }
        if let Some(s) = &self.expect_stats {
            found.push(Action::ExpectStats(s));
        }
        if let Some(o) = &self.expect_output {
            found.push(Action::ExpectOutput(o));
        }
        found.extend(self.restart.map(Action::Restart));
        found.extend(self.kill.map(Action::Kill));
        found.extend(self.stop_service.as_deref().map(Action::StopService));
        found.extend(self.start_service.as_deref().map(Action::StartService));
        match found.len() {
            1 => Ok(found[0]),
            0 => Err(anyhow!("has no action (one of request, concurrent, advance, set_asset, reload, open_stream, finish_stream, abandon_stream, read_stream, mock, fill_client_cache, expect_provider, expect_stats, expect_output, restart, kill, stop_service, start_service)")),
            _ => Err(anyhow!("has more than one action; split it into several steps")),
        }
    }
}

/// Checks on the gateway's output (its log lines), with regular expressions
/// (Rust `regex` syntax; `(?i)` for case-insensitive).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputExpect {
    /// At least one line matches. Lines a process prints are read as they
    /// come, so the check waits (bounded) for the line to arrive.
    #[serde(default)]
    pub line_matches: Option<String>,
    /// No line so far matches.
    #[serde(default)]
    pub no_line_matches: Option<String>,
}

impl OutputExpect {
    fn validate(&self) -> anyhow::Result<()> {
        if self.line_matches.is_none() && self.no_line_matches.is_none() {
            return Err(anyhow!("give `line_matches`, `no_line_matches` or both"));
        }
        for (field, re) in [("line_matches", &self.line_matches), ("no_line_matches", &self.no_line_matches)] {
            if let Some(re) = re {
                regex::Regex::new(re).map_err(|e| anyhow!("{field}: invalid regular expression: {e}"))?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrentSpec {
    pub count: usize,
    pub request: RequestSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAsset {
    pub asset: String,
    pub to: AssetSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenStream {
    pub id: String,
    pub request: RequestSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadStream {
    pub id: String,
    /// Events (SSE data events) the client must have by now.
    pub events: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishStream {
    pub id: String,
    #[serde(default)]
    pub release: Option<GateRef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockChange {
    pub provider: String,
    #[serde(default)]
    pub reset: bool,
    #[serde(default)]
    pub mount: Vec<Stub>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReloadTarget {
    CostMap,
    BetaPolicy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateRef {
    pub provider: String,
    pub gate: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default = "post")]
    pub method: String,
    pub path: String,
    /// `master` (the config's master key), `none`, or a literal key.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<Value>,
    /// Raw body text (malformed JSON on purpose).
    #[serde(default)]
    pub raw_body: Option<String>,
    /// Grow the JSON body with a `pad` string field until it is at least
    /// this many bytes (for request size limits).
    #[serde(default)]
    pub pad_body_to_bytes: Option<usize>,
    /// Send the request N times in a row, with `{i}` in the path and body
    /// strings replaced by 0..N; each response must meet `expect`.
    #[serde(default)]
    pub repeat: Option<usize>,
    /// Keep values of the response for later steps: name -> JSON pointer
    /// into the body (for a stream, into the first event whose data has
    /// it). A later request's path and body strings take `${saved.NAME}`.
    #[serde(default)]
    pub save: BTreeMap<String, String>,
}

impl RequestSpec {
    /// The `i`-th request of a `repeat`.
    pub fn instance(&self, i: usize) -> RequestSpec {
        let mut r = self.clone();
        r.repeat = None;
        let n = i.to_string();
        r.path = r.path.replace("{i}", &n);
        if let Some(b) = &r.body {
            if let Ok(v) = serde_json::from_str(&b.to_string().replace("{i}", &n)) {
                r.body = Some(v);
            }
        }
        r
    }
}

fn post() -> String {
    "POST".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub status: Option<u16>,
    /// The status is in one of these classes (`2xx`, `4xx`, `5xx`, ...): for
    /// where the specifications allow several codes. One class or a list.
    #[serde(default, deserialize_with = "de_status_classes")]
    pub status_class: Vec<StatusClass>,
    /// The response JSON contains this value (objects: subset; arrays: equal length, each a subset).
    #[serde(default)]
    pub json: Option<Value>,
    /// JSON pointer -> expected value.
    #[serde(default)]
    pub json_path: BTreeMap<String, Value>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub headers_present: Vec<String>,
    #[serde(default)]
    pub headers_absent: Vec<String>,
    /// Header name -> media type (`text/event-stream`): compares the media
    /// type only, case-insensitively, ignoring parameters such as `charset`.
    #[serde(default)]
    pub media_types: BTreeMap<String, String>,
    /// The error message (`error.message`) contains this text.
    #[serde(default)]
    pub error_contains: Option<String>,
    /// The body is JSON with an `error` object whose `message` is a string,
    /// whatever its wording (OpenAI's and Anthropic's error shapes both have it).
    #[serde(default)]
    pub error_present: bool,
    /// The raw body contains each of these.
    #[serde(default)]
    pub body_contains: Vec<String>,
    /// Every `href`/`src` in the HTML body answers 200.
    #[serde(default)]
    pub links_ok: bool,
    /// For a stream: it carried an OpenAI `[DONE]` or an Anthropic
    /// `message_stop`, and no error event.
    #[serde(default)]
    pub stream_complete: Option<bool>,
    /// The whole exchange, from sending the request to the body's end, took
    /// at most this many milliseconds: the bound a fault must be answered
    /// within (a provider that never answers, a slow first byte).
    #[serde(default)]
    pub within_ms: Option<u64>,
}

impl Expect {
    /// Refuses expectations the step's action would not check, so nothing
    /// in a scenario is silently ignored.
    fn check_used_by(&self, action: &Action<'_>) -> anyhow::Result<()> {
        if self.status.is_some() && !self.status_class.is_empty() {
            return Err(anyhow!("give `status` or `status_class`, not both"));
        }
        for (name, want) in &self.media_types {
            let (kind, sub) = want.split_once('/').unwrap_or_default();
            if kind.trim().is_empty() || sub.trim().is_empty() || want.contains(';') {
                return Err(anyhow!(
                    "media_types.{name}: `{want}` is not a media type alone (type/subtype, without parameters)"
                ));
            }
        }
        let mut set: Vec<&str> = Vec::new();
        if self.status.is_some() {
            set.push("status");
        }
        if !self.status_class.is_empty() {
            set.push("status_class");
        }
        if self.json.is_some() {
            set.push("json");
        }
        if !self.json_path.is_empty() {
            set.push("json_path");
        }
        if !self.headers.is_empty() {
            set.push("headers");
        }
        if !self.headers_present.is_empty() {
            set.push("headers_present");
        }
        if !self.headers_absent.is_empty() {
            set.push("headers_absent");
        }
        if !self.media_types.is_empty() {
            set.push("media_types");
        }
        if self.error_contains.is_some() {
            set.push("error_contains");
        }
        if self.error_present {
            set.push("error_present");
        }
        if !self.body_contains.is_empty() {
            set.push("body_contains");
        }
        if self.links_ok {
            set.push("links_ok");
        }
        if self.stream_complete.is_some() {
            set.push("stream_complete");
        }
        if self.within_ms.is_some() {
            set.push("within_ms");
        }
        let allowed: &[&str] = match action {
            Action::Request(_) | Action::Concurrent(_) | Action::Reload(_) => &[
                "status",
                "status_class",
                "json",
                "json_path",
                "headers",
                "media_types",
                "headers_present",
                "headers_absent",
                "error_contains",
                "error_present",
                "body_contains",
                "links_ok",
                "stream_complete",
                "within_ms",
            ],
            Action::OpenStream(_) => &["status", "headers", "headers_present", "headers_absent"],
            Action::FinishStream(_) => &["stream_complete", "body_contains"],
            _ => &[],
        };
        let unused: Vec<&str> = set.into_iter().filter(|f| !allowed.contains(f)).collect();
        if unused.is_empty() {
            Ok(())
        } else if allowed.is_empty() {
            Err(anyhow!(
                "this step checks nothing with `expect` (found {}); put checks in a request step",
                unused.join(", ")
            ))
        } else {
            Err(anyhow!("{} cannot be checked on this step (it checks: {})", unused.join(", "), allowed.join(", ")))
        }
    }
}

/// A class of status codes: `4xx` is 400..=499.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusClass(u16);

impl StatusClass {
    pub fn contains(self, status: u16) -> bool {
        status / 100 == self.0
    }
}

impl std::fmt::Display for StatusClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}xx", self.0)
    }
}

/// A `status_class` that is not one of `1xx` … `5xx`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{text}` is not a status class (one of 1xx, 2xx, 3xx, 4xx, 5xx)")]
pub struct BadStatusClass {
    pub text: String,
}

impl std::str::FromStr for StatusClass {
    type Err = BadStatusClass;
    fn from_str(s: &str) -> Result<Self, BadStatusClass> {
        match s.as_bytes() {
            [d @ b'1'..=b'5', b'x', b'x'] => Ok(StatusClass(u16::from(d - b'0'))),
            _ => Err(BadStatusClass { text: s.to_string() }),
        }
    }
}

/// `status_class: 4xx` or `status_class: [4xx, 5xx]`.
fn de_status_classes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<StatusClass>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let texts = match OneOrMany::deserialize(d)
        .map_err(|_| serde::de::Error::custom("expected a status class such as 4xx, or a list of them"))?
    {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) if v.is_empty() => return Err(serde::de::Error::custom("give at least one status class")),
        OneOrMany::Many(v) => v,
    };
    texts.iter().map(|s| s.parse().map_err(serde::de::Error::custom)).collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderExpect {
    pub provider: String,
    /// Total model calls (POSTs) the provider has received so far; a
    /// gateway's side lookups (`GET /v1/models`) are not counted.
    #[serde(default)]
    pub requests: Option<usize>,
    /// Checks on the most recent request.
    #[serde(default)]
    pub last: Option<UpstreamExpect>,
    /// Checks on every request received.
    #[serde(default)]
    pub all: Option<UpstreamExpect>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamExpect {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub path_contains: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub headers_absent: Vec<String>,
    /// JSON pointer -> value.
    #[serde(default)]
    pub body: BTreeMap<String, Value>,
    /// JSON pointers that must not exist (not even as null).
    #[serde(default)]
    pub body_absent: Vec<String>,
    /// JSON pointers that may be absent but must not be null.
    #[serde(default)]
    pub body_not_null: Vec<String>,
}

fn de_opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map(Some).map_err(serde::de::Error::custom)
}

/// `500ms`, `90s`, `11m`, `2h`.
pub(crate) fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| anyhow!("`{s}` is not a duration like 90s, 11m, 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(anyhow!("`{s}`: unknown unit `{unit}` (use ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Why a scenario file cannot be loaded. Each names the file; a problem in
/// it names the field (its path in the file: `steps[3].restart`) and, where
/// it can be found, the line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not valid UTF-8 at line {line} (byte {at})")]
    NotUtf8 { file: String, line: usize, at: usize },
    /// Not in the scenario format (a type, an unknown or missing field):
    /// the parser's message, with the field path and line.
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    /// In the format, but not consistent (an unknown provider, a stream no
    /// step opened…): the field's path first, then what is wrong with it,
    /// and the step's line where the file writes its steps as a block list.
    #[error("{file}: {}", self.problem())]
    Invalid { file: String, problem: anyhow::Error, line: Option<usize> },
}

impl LoadError {
    /// What is wrong, without the file's name (with the line where known).
    pub fn problem(&self) -> String {
        match self {
            LoadError::Read { source, .. } => format!("cannot read: {source}"),
            LoadError::NotUtf8 { line, at, .. } => format!("not valid UTF-8 at line {line} (byte {at})"),
            LoadError::Format { message, .. } => message.clone(),
            LoadError::Invalid { problem, line, .. } => match line {
                Some(n) => format!("{problem:#} at line {n}"),
                None => format!("{problem:#}"),
            },
        }
    }
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, LoadError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { file: file.clone(), source })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
            LoadError::NotUtf8 { file: file.clone(), line, at }
        })?;
        Self::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<Scenario, LoadError> {
        let s: Scenario = serde_yaml_ng::from_str(text)
            .map_err(|e| LoadError::Format { file: file.to_string(), message: locate(e.to_string(), text) })?;
        s.validate().map_err(|problem| {
            let line = step_line_of(&format!("{problem:#}"), text);
            LoadError::Invalid { file: file.to_string(), problem, line }
        })?;
        Ok(s)
    }

    /// Checks references between parts of the file.
    fn validate(&self) -> anyhow::Result<()> {
        let steps = self.steps.iter().chain(self.black_box_steps.iter().flatten());
        for (at, waive) in std::iter::once(("waive".to_string(), &self.waive))
            .chain(steps.enumerate().map(|(i, s)| (format!("steps[{i}].waive"), &s.waive)))
        {
            for (name, reason) in waive {
                if crate::contracts::contract(name).is_none() {
                    let known: Vec<&str> = crate::contracts::CONTRACTS.iter().map(|c| c.name).collect();
                    return Err(anyhow!("{at}: unknown contract `{name}` (known: {})", known.join(", ")));
                }
                if reason.trim().is_empty() {
                    return Err(anyhow!("{at}.{name}: a waiver needs a written reason"));
                }
            }
        }
        if let Some(i) = &self.incident {
            if !crate::gateway::KnownBugs::NAMES.contains(&i.bug.as_str()) {
                return Err(anyhow!(
                    "incident.bug: unknown bug `{}` (expected one of {})",
                    i.bug,
                    crate::gateway::KnownBugs::NAMES.join(", ")
                ));
            }
            if !self.steps.iter().any(|s| s.checks_incident) {
                return Err(anyhow!("incident scenarios need at least one step with `checks_incident: true`"));
            }
            if let Some(bb) = &self.black_box_steps {
                if !bb.iter().any(|s| s.checks_incident) {
                    return Err(anyhow!("black_box_steps need at least one step with `checks_incident: true`"));
                }
            }
        }
        if self.gateways == 0 {
            return Err(anyhow!("gateways: at least 1"));
        }
        self.validate_steps(&self.steps, "steps")?;
        if let Some(bb) = &self.black_box_steps {
            self.validate_steps(bb, "black_box_steps")?;
        }
        for (name, a) in &self.assets {
            a.validate().with_context(|| format!("assets.{name}"))?;
        }
        Ok(())
    }

    fn validate_steps(&self, steps: &[Step], list: &str) -> anyhow::Result<()> {
        let mut streams = std::collections::BTreeSet::new();
        for (i, step) in steps.iter().enumerate() {
            let at = format!("{list}[{i}]");
            let provider_ref = |p: &str| -> anyhow::Result<()> {
                if self.providers.contains_key(p) {
                    Ok(())
                } else {
                    let defined: Vec<_> = self.providers.keys().cloned().collect();
                    Err(anyhow!("{at}: unknown provider `{p}` (defined: {})", defined.join(", ")))
                }
            };
            let action = step.action().map_err(|e| anyhow!("{at} {e}"))?;
            step.expect.check_used_by(&action).with_context(|| format!("{at}.expect"))?;
            let instance = |field: &str, i: usize| -> anyhow::Result<()> {
                if i < self.gateways {
                    Ok(())
                } else {
                    Err(anyhow!(
                        "{at}.{field}: no gateway {i}: the scenario has {} (gateways: {}, numbered from 0)",
                        self.gateways,
                        self.gateways
                    ))
                }
            };
            let service_ref = |field: &str, name: &str| -> anyhow::Result<()> {
                if self.services.contains_key(name) {
                    Ok(())
                } else {
                    let defined: Vec<_> = self.services.keys().cloned().collect();
                    Err(anyhow!("{at}.{field}: unknown service `{name}` (defined: {})", defined.join(", ")))
                }
            };
            if let Some(i) = step.gateway {
                instance("gateway", i)?;
            }
            if let Some(d) = step.eventually {
                if !matches!(action, Action::Request(r) if r.repeat.is_none()) {
                    return Err(anyhow!("{at}.eventually: only a `request` step without `repeat` can be sent again"));
                }
                if d > MAX_EVENTUALLY {
                    return Err(anyhow!("{at}.eventually: at most {}s (a step's bound)", MAX_EVENTUALLY.as_secs()));
                }
            }
            match action {
                Action::Restart(i) => instance("restart", i)?,
                Action::Kill(i) => instance("kill", i)?,
                Action::StopService(name) => service_ref("stop_service", name)?,
                Action::StartService(name) => service_ref("start_service", name)?,
                Action::SetAsset(a) if !self.assets.contains_key(&a.asset) => {
                    return Err(anyhow!("{at}.set_asset: unknown asset `{}`", a.asset));
                }
                Action::OpenStream(o) if !streams.insert(o.id.clone()) => {
                    return Err(anyhow!("{at}.open_stream: stream id `{}` is used twice", o.id));
                }
                Action::ReadStream(r) if !streams.contains(&r.id) => {
                    return Err(anyhow!("{at}.read_stream: no open stream with id `{}` before this step", r.id));
                }
                Action::AbandonStream(id) if !streams.remove(id) => {
                    return Err(anyhow!("{at}.abandon_stream: no open stream with id `{id}` before this step"));
                }
                Action::FinishStream(f) => {
                    if !streams.contains(&f.id) {
                        return Err(anyhow!("{at}.finish_stream: no open_stream with id `{}` before this step", f.id));
                    }
                    if let Some(r) = &f.release {
                        provider_ref(&r.provider)?;
                    }
                }
                Action::SetAsset(a) => a.to.validate().with_context(|| format!("{at}.set_asset.to"))?,
                Action::Mock(m) => provider_ref(&m.provider)?,
                Action::ExpectProvider(p) => provider_ref(&p.provider)?,
                Action::ExpectOutput(o) => o.validate().with_context(|| format!("{at}.expect_output"))?,
                Action::Concurrent(c) if c.count == 0 => {
                    return Err(anyhow!("{at}.concurrent: count must be at least 1"))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Capabilities `steps` need: declared ones plus those the steps imply.
    pub(crate) fn required_capabilities(&self) -> Vec<Capability> {
        required_capabilities(&self.needs, &self.steps)
    }

    /// Capabilities the black-box variant needs (`needs` minus the
    /// in-process-only ones, plus what its steps imply).
    pub(crate) fn black_box_capabilities(&self) -> Option<Vec<Capability>> {
        let steps = self.black_box_steps.as_ref()?;
        let declared: Vec<Capability> = self
            .needs
            .iter()
            .copied()
            .filter(|c| !matches!(c, Capability::ManualClock | Capability::InternalStats))
            .collect();
        Some(required_capabilities(&declared, steps))
    }

    pub(crate) fn step_label(steps: &[Step], list: &str, i: usize) -> String {
        let s = &steps[i];
        let kind = match s.action() {
            Ok(Action::Request(r)) => format!("request {} {}", r.method, r.path),
            Ok(Action::Concurrent(c)) => format!("{} concurrent {} {}", c.count, c.request.method, c.request.path),
            Ok(Action::Advance(d)) => format!("advance {}s", d.as_secs_f64()),
            Ok(Action::SetAsset(a)) => format!("set_asset {}", a.asset),
            Ok(Action::Reload(w)) => format!("reload {w:?}"),
            Ok(Action::OpenStream(o)) => format!("open_stream {}", o.id),
            Ok(Action::FinishStream(f)) => format!("finish_stream {}", f.id),
            Ok(Action::AbandonStream(id)) => format!("abandon_stream {id}"),
            Ok(Action::ReadStream(r)) => format!("read_stream {} ({} events)", r.id, r.events),
            Ok(Action::Mock(m)) => format!("mock {}", m.provider),
            Ok(Action::FillClientCache(n)) => format!("fill_client_cache {n}"),
            Ok(Action::ExpectProvider(p)) => format!("expect_provider {}", p.provider),
            Ok(Action::ExpectStats(_)) => "expect_stats".to_string(),
            Ok(Action::ExpectOutput(_)) => "expect_output".to_string(),
            Ok(Action::Restart(i)) => format!("restart gateway {i}"),
            Ok(Action::Kill(i)) => format!("kill gateway {i}"),
            Ok(Action::StopService(n)) => format!("stop_service {n}"),
            Ok(Action::StartService(n)) => format!("start_service {n}"),
            Err(e) => e.to_string(),
        };
        match &s.name {
            Some(n) => format!("{list}[{i}] {n} ({kind})"),
            None => format!("{list}[{i}] {kind}"),
        }
    }
}

fn required_capabilities(needs: &[Capability], steps: &[Step]) -> Vec<Capability> {
    let mut caps: std::collections::BTreeSet<Capability> = needs.iter().copied().collect();
    // A step with its own `needs` is skipped where it cannot run, so what it
    // implies does not make the whole scenario inapplicable.
    caps.extend(steps.iter().filter(|s| s.needs.is_empty()).filter_map(Step::implied_capability));
    caps.into_iter().collect()
}

impl Step {
    /// The capability the step's action implies, if any.
    fn implied_capability(&self) -> Option<Capability> {
        match self.action() {
            Ok(Action::Advance(_)) => Some(Capability::ManualClock),
            Ok(Action::FillClientCache(_)) | Ok(Action::ExpectStats(_)) => Some(Capability::InternalStats),
            Ok(Action::ExpectOutput(_)) => Some(Capability::GatewayOutput),
            _ => None,
        }
    }

    /// Everything this step needs to run: its `needs` and what its action
    /// implies. A target missing any of it skips a step that has `needs`.
    pub fn capabilities(&self) -> Vec<Capability> {
        let mut caps = self.needs.clone();
        caps.extend(self.implied_capability().filter(|c| !self.needs.contains(c)));
        caps
    }
}

/// Every `*.yaml` under the given paths, sorted.
pub fn discover(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    discover_files(paths, &["yaml", "yml"])
}

/// Files named directly, and every file with one of `extensions` under the
/// given directories; sorted, without duplicates.
pub(crate) fn discover_files(paths: &[PathBuf], extensions: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, extensions, &mut out).map_err(|e| anyhow!("{}: {e}", p.display()))?;
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(anyhow!("{}: no such file or directory", p.display()));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            walk(&p, extensions, out)?;
        } else if p.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e)) {
            out.push(p);
        }
    }
    Ok(())
}

/// The line of the step a cross-reference error names (`steps[3].restart: …`
/// → 27), when the file writes its steps as a block list.
fn step_line_of(message: &str, text: &str) -> Option<usize> {
    let (list, rest) = message.split_once('[')?;
    if list != "steps" && list != "black_box_steps" {
        return None;
    }
    let i = rest.split_once(']').and_then(|(n, _)| n.parse::<usize>().ok())?;
    step_line(text, list, i)
}

/// The line (1-based) where item `i` of the top-level block list `list` starts.
fn step_line(text: &str, list: &str, i: usize) -> Option<usize> {
    let mut lines = text.lines().enumerate().skip_while(|(_, l)| {
        l.strip_prefix(list).and_then(|r| r.strip_prefix(':')).is_none_or(|r| !r.trim().is_empty())
    });
    lines.next()?;
    let (mut indent, mut n) = (None, 0);
    for (no, l) in lines {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let ind = l.len() - t.len();
        if ind == 0 && !t.starts_with('-') {
            break;
        }
        if t.starts_with("- ") || t == "-" {
            let first = *indent.get_or_insert(ind);
            if ind == first {
                if n == i {
                    return Some(no + 1);
                }
                n += 1;
            }
        }
    }
    None
}

/// Adds the line to the two top-level errors serde reports without one: a
/// duplicate key (the line of its second occurrence) and a missing one.
fn locate(message: String, text: &str) -> String {
    if message.contains(" at line ") {
        return message;
    }
    let field = |prefix: &str| message.strip_prefix(prefix).and_then(|r| r.split('`').next()).map(str::to_string);
    if let Some(key) = field("duplicate field `") {
        let lines: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.strip_prefix(key.as_str()).is_some_and(|r| r.trim_start().starts_with(':')))
            .map(|(n, _)| n + 1)
            .collect();
        if let Some(second) = lines.get(1) {
            return format!("{message} at line {second} (first at line {})", lines[0]);
        }
    }
    if field("missing field `").is_some() {
        return format!("{message} at the top level of the file (line 1)");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "name: t\nproviders: {openai: {kind: openai}}\ngateway: {model_list: []}\n";

    /// Broken scenario files: each is refused at load time with an error
    /// that names the field (and, for YAML errors, the line).
    #[test]
    fn broken_scenarios_are_refused_with_the_field_named() {
        let cases: &[(&str, &str)] = &[
            ("steps:\n  - requst: {path: /v1/models}\n", "unknown field `requst`"),
            ("steps:\n  - name: nothing\n", "steps[0] has no action"),
            ("steps:\n  - advance: 1s\n    reload: cost_map\n", "more than one action"),
            ("steps:\n  - advance: 5 parsecs\n", "unknown unit"),
            ("steps:\n  - expect_output: {}\n", "steps[0].expect_output: give `line_matches`"),
            ("steps:\n  - expect_output: {line_matches: \"(unclosed\"}\n", "line_matches: invalid regular expression"),
            ("steps:\n  - advance: 1s\n    expect: {status: 200}\n", "steps[0].expect"),
            ("steps:\n  - expect_provider: {provider: nope}\n", "unknown provider `nope`"),
            ("steps:\n  - set_asset: {asset: nope, to: {inline: {}}}\n", "unknown asset `nope`"),
            ("steps:\n  - finish_stream: {id: s}\n", "no open_stream with id `s`"),
            ("steps:\n  - concurrent: {count: 0, request: {path: /v1/models}}\n", "count must be at least 1"),
            (
                "incident: {id: x, bug: no_such_bug}\nsteps:\n  - request: {path: /v1/models}\n",
                "unknown bug `no_such_bug`",
            ),
            (
                "incident: {id: x, bug: drop_root_path}\nsteps:\n  - request: {path: /v1/models}\n",
                "at least one step with `checks_incident: true`",
            ),
            (
                "assets: {m: {file: a.json, raw: x}}\nsteps:\n  - request: {path: /v1/models}\n",
                "assets.m: give exactly one of",
            ),
            ("steps: 3\n", "invalid type"),
            ("name: again\nsteps: []\n", "duplicate field `name` at line 4 (first at line 1)"),
            ("waive: {no.such-contract: reason}\nsteps: []\n", "unknown contract `no.such-contract`"),
            ("waive: {stream.framing: \" \"}\nsteps: []\n", "a waiver needs a written reason"),
            ("steps:\n  - abandon_stream: nope\n", "no open stream with id `nope`"),
            ("steps:\n  - read_stream: {id: nope, events: 1}\n", "no open stream with id `nope`"),
            ("services: {db: {kind: mysql}}\nsteps: []\n", "unknown service kind `mysql`"),
            (
                "gateways: 3\nsteps:\n  - request: {path: /v1/models}\n  - gateway: 5\n    request: {path: /v1/models}\n",
                "steps[1].gateway: no gateway 5: the scenario has 3 (gateways: 3, numbered from 0) at line 7",
            ),
            ("steps:\n  - restart: 1\n", "steps[0].restart: no gateway 1: the scenario has 1"),
            ("gateways: 2\nsteps:\n  - kill: 2\n", "steps[0].kill: no gateway 2"),
            ("steps:\n  - stop_service: db\n", "steps[0].stop_service: unknown service `db`"),
            ("gateways: 0\nsteps: []\n", "gateways: at least 1"),
            ("steps:\n  - eventually: 2s\n    advance: 1s\n", "steps[0].eventually: only a `request` step"),
            ("steps:\n  - eventually: 2m\n    request: {path: /v1/models}\n", "steps[0].eventually: at most 30s"),
            ("steps:\n  - request: {path: /v1/models}\n    expect: {status_class: 6xx}\n", "`6xx` is not a status class"),
            ("steps:\n  - request: {path: /v1/models}\n    expect: {status_class: []}\n", "at least one status class"),
            ("steps:\n  - request: {path: /v1/models}\n    expect: {status_class: 4}\n", "expected a status class"),
            ("steps:\n  - request: {path: /v1/models}\n    expect: {status: 404, status_class: 4xx}\n", "not both"),
            (
                "steps:\n  - request: {path: /v1/models}\n    expect: {media_types: {content-type: \"text/html; charset=utf-8\"}}\n",
                "media_types.content-type: `text/html; charset=utf-8` is not a media type alone",
            ),
            (
                "steps:\n  - open_stream: {id: s, request: {path: /v1/models}}\n    expect: {status_class: 2xx}\n",
                "status_class cannot be checked on this step",
            ),
            (
                "steps:\n  - expect_provider: {provider: openai}\n    expect: {error_present: true}\n",
                "this step checks nothing with `expect` (found error_present)",
            ),
        ];
        for (tail, want) in cases {
            let text = format!("{HEAD}{tail}");
            match Scenario::parse(&text, "case.yaml") {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.starts_with("case.yaml: "), "{msg}");
                    assert!(msg.contains(want), "expected {want:?} in {msg:?}\n{text}");
                }
            }
        }
    }

    #[test]
    fn spec_level_expectations_load() {
        let text = format!(
            "{HEAD}steps:\n  - request: {{path: /v1/models}}\n    expect: {{status_class: [4xx, 5xx], error_present: true, media_types: {{content-type: application/json}}}}\n  - request: {{path: /v1/models}}\n    expect: {{status_class: 2xx}}\n"
        );
        let s = Scenario::parse(&text, "case.yaml").expect("valid");
        let e = &s.steps[0].expect;
        assert!(e.status_class.iter().any(|c| c.contains(404)) && e.status_class.iter().any(|c| c.contains(502)));
        assert!(!e.status_class.iter().any(|c| c.contains(200)));
        assert_eq!(e.status_class[1].to_string(), "5xx");
        assert!(e.error_present);
        assert_eq!(e.media_types["content-type"], "application/json");
        assert!(s.steps[1].expect.status_class[0].contains(204));
    }

    #[test]
    fn output_steps_need_gateway_output() {
        let text = format!("{HEAD}steps:\n  - expect_output: {{line_matches: refused}}\n");
        let s = Scenario::parse(&text, "case.yaml").expect("valid");
        assert_eq!(s.required_capabilities(), vec![Capability::GatewayOutput]);
    }

    #[test]
    fn a_step_with_its_own_needs_is_optional_for_the_scenario() {
        let text =
            format!("{HEAD}steps:\n  - request: {{path: /v1/models}}\n  - needs: [manual_clock]\n    advance: 61s\n");
        let s = Scenario::parse(&text, "case.yaml").expect("valid");
        assert_eq!(s.required_capabilities(), vec![]);
        assert_eq!(s.steps[1].capabilities(), vec![Capability::ManualClock]);
        // A step that declares one capability still needs what its action implies.
        let text = format!("{HEAD}steps:\n  - needs: [postmortem_api]\n    expect_stats: {{/status: ok}}\n");
        let s = Scenario::parse(&text, "case.yaml").expect("valid");
        assert_eq!(s.steps[0].capabilities(), vec![Capability::PostmortemApi, Capability::InternalStats]);
    }
}
