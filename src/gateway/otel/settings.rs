//! What the traces are sent to and how, read once when the gateway is
//! built: `litellm_settings.callbacks` (or `success_callback` /
//! `failure_callback`) naming `otel` turns them on, and the standard
//! `OTEL_*` variables (LiteLLM's `OTEL_EXPORTER`/`OTEL_ENDPOINT`/
//! `OTEL_HEADERS` aliases too) say where, through `Config::env_var` (the
//! config's `environment_variables` over the process environment).
//!
//! The gateway sends OTLP/HTTP, binary protobuf (`http/protobuf`, the
//! default) or JSON (`http/json`); gRPC, or any other protocol asked for,
//! is refused at start-up with the reason, never silently swapped.

use crate::gateway::config::Config;
use http::{HeaderName, HeaderValue};
use std::time::Duration;

/// The traces' destination and the batch processor's limits.
pub(crate) struct OtelSettings {
    /// The full URL spans are POSTed to (`…/v1/traces`).
    pub endpoint: reqwest::Url,
    /// Sent with every export (often a collector's API key): marked
    /// sensitive, never logged or shown.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The resource's attributes, `service.name` first.
    pub resource: Vec<(String, String)>,
    /// The most one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, and
    /// `OTEL_BSP_EXPORT_TIMEOUT` when smaller).
    pub timeout: Duration,
    /// Spans waiting for export; when full, new spans are dropped and
    /// counted (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub max_queue: usize,
    /// Spans per export (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, at most the queue).
    pub max_batch: usize,
    /// The longest a span waits before it is exported (`OTEL_BSP_SCHEDULE_DELAY`).
    pub schedule_delay: Duration,
    /// Which traces are recorded (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
    pub sampler: Sampler,
    /// How an export is encoded.
    pub protocol: Protocol,
}

/// The specification's built-in samplers (`OTEL_TRACES_SAMPLER`); the
/// default is `parentbased_always_on`: a client's "not sampled" is obeyed,
/// every other trace is recorded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sampler {
    /// Follow the inbound `traceparent`'s sampled flag when there is one.
    pub parent_based: bool,
    /// The share of new traces recorded, 0 to 1 (`always_on` 1, `always_off` 0).
    pub ratio: f64,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler { parent_based: true, ratio: 1.0 }
    }
}

impl Sampler {
    /// Whether a trace is recorded: the parent's flag when parent-based and
    /// the client sent one, else the ratio over the trace id (its low 63
    /// bits, as the OpenTelemetry SDKs do, so every service that samples
    /// by the same ratio keeps the same traces).
    pub(crate) fn sampled(&self, parent_sampled: Option<bool>, trace_id: &[u8; 16]) -> bool {
        if let (true, Some(p)) = (self.parent_based, parent_sampled) {
            return p;
        }
        if self.ratio >= 1.0 {
            return true;
        }
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id[8..]);
        let r = u64::from_be_bytes(low) >> 1;
        let bound = (self.ratio.max(0.0) * (1u64 << 63) as f64) as u64;
        r < bound
    }
}

/// The collector's headers carry credentials: the debug form shows names only.
impl std::fmt::Debug for OtelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelSettings")
            .field("endpoint", &display_endpoint(&self.endpoint))
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("resource", &self.resource)
            .field("timeout", &self.timeout)
            .field("max_queue", &self.max_queue)
            .field("max_batch", &self.max_batch)
            .field("schedule_delay", &self.schedule_delay)
            .field("sampler", &self.sampler)
            .field("protocol", &self.protocol)
            .finish()
    }
}

/// The OTLP/HTTP default (the specification's `http://localhost:4318`).
const DEFAULT_ENDPOINT: &str = "http://localhost:4318/v1/traces";
const TRACES_PATH: &str = "v1/traces";
/// The specification's defaults.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_QUEUE: usize = 2048;
const DEFAULT_BATCH: usize = 512;
const DEFAULT_DELAY_MS: u64 = 5000;
/// Bounds that keep a typo from holding gigabytes or stalling a shutdown.
const MAX_TIMEOUT_MS: u64 = 120_000;
const MAX_QUEUE: usize = 1_000_000;

/// The endpoint as it may be logged: scheme, host, port and path, never a
/// user, password or query.
pub(crate) fn display_endpoint(url: &reqwest::Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{}{port}{}", url.scheme(), url.host_str().unwrap_or(""), url.path())
}

/// An OpenTelemetry setting that cannot be honoured: the start is refused
/// with this, which names the variable and never a value that may hold a
/// credential (an endpoint, a header).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OtelError {
    /// LiteLLM's `OTEL_EXPORTER` naming another exporter than OTLP/HTTP.
    #[error(
        "OTEL_EXPORTER=`{value}` is not supported: this gateway exports OTLP over HTTP only; set \
         OTEL_EXPORTER=otlp_http (or unset it) and OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_ENDPOINT) to the \
         collector's OTLP/HTTP address (port 4318)"
    )]
    Exporter { value: String },
    /// A protocol other than `http/protobuf` or `http/json` (gRPC…).
    #[error(
        "{variable}=`{value}` is not supported: this gateway exports traces as OTLP over HTTP, `http/protobuf` \
         (the default) or `http/json`; set one of them (or unset {variable}) and point \
         OTEL_EXPORTER_OTLP_ENDPOINT at the collector's OTLP/HTTP port (4318)"
    )]
    Protocol { variable: &'static str, value: String },
    /// A sampler that is not built in.
    #[error(
        "OTEL_TRACES_SAMPLER=`{value}` is not supported: use always_on, always_off, traceidratio, \
         parentbased_always_on (the default), parentbased_always_off or parentbased_traceidratio"
    )]
    Sampler { value: String },
    #[error("OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1, got `{value}`")]
    SamplerArg { value: String },
    #[error("{variable} must be a whole number of milliseconds from 1 to {max}, got `{value}`")]
    Millis { variable: &'static str, max: u64, value: String },
    #[error("{variable} must be a whole number from 1 to {max}, got `{value}`")]
    Count { variable: &'static str, max: usize, value: String },
    /// The endpoint does not parse; `reason` is the parser's, never the value.
    #[error("{variable} is not a URL: {reason}")]
    NotUrl { variable: &'static str, reason: String },
    #[error(
        "{variable} must be an http:// or https:// URL with a host (the collector's OTLP/HTTP address), got scheme `{scheme}`"
    )]
    NotHttp { variable: &'static str, scheme: String },
    /// A `key=value,…` list with a malformed entry (named by its position:
    /// a header's value is a credential).
    #[error("{variable}: entry {entry} {problem}")]
    Entry { variable: &'static str, entry: usize, problem: &'static str },
    #[error("{variable}: `{key}` (entry {entry}) is not a header name")]
    HeaderName { variable: &'static str, key: String, entry: usize },
    #[error("{variable}: the value of `{key}` (entry {entry}) is not a header value")]
    HeaderValue { variable: &'static str, key: String, entry: usize },
    /// The exporter's HTTP client could not be built.
    #[error("cannot build the OTLP client: {reason}")]
    Client { reason: String },
}

impl OtelSettings {
    /// `None` when no callback names `otel` (or `OTEL_SDK_DISABLED=true`);
    /// an error, naming the variable, for a setting that cannot be honoured.
    pub(crate) fn from_config(config: &Config) -> Result<Option<OtelSettings>, OtelError> {
        let enabled = config.litellm_settings.all_callbacks().any(|(_, name)| name == "otel");
        if !enabled {
            return Ok(None);
        }
        OtelSettings::from_env(&|name| config.env_var(name))
    }

    /// The settings from the variables `env` reads (empty counts as unset,
    /// as the specification says).
    pub(crate) fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<OtelSettings>, OtelError> {
        let var = |name: &str| env(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            tracing::info!("OTEL_SDK_DISABLED=true: OpenTelemetry traces are off although a callback names `otel`");
            return Ok(None);
        }
        let protocol = protocol(&var)?;
        for name in ["OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"] {
            if let Some(c) = var(name).filter(|c| !c.eq_ignore_ascii_case("none")) {
                tracing::warn!(variable = name, compression = %c, "OTLP compression is not implemented; traces are sent uncompressed");
            }
        }
        let endpoint = endpoint(&var)?;
        let headers = match ["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_HEADERS"]
            .into_iter()
            .find_map(|n| var(n).map(|v| (n, v)))
        {
            Some((name, value)) => headers(name, &value)?,
            None => Vec::new(),
        };
        let resource = resource(&var)?;
        let ms = |name: &'static str, default: u64, max: u64| -> Result<u64, OtelError> {
            match var(name) {
                None => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (1..=max).contains(&n) => Ok(n),
                    _ => Err(OtelError::Millis { variable: name, max, value: v }),
                },
            }
        };
        let otlp_timeout = match var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") {
            Some(_) => ms("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS)?,
            None => ms("OTEL_EXPORTER_OTLP_TIMEOUT", DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS)?,
        };
        let bsp_timeout = ms("OTEL_BSP_EXPORT_TIMEOUT", MAX_TIMEOUT_MS, MAX_TIMEOUT_MS)?;
        let count = |name: &'static str, default: usize| -> Result<usize, OtelError> {
            match var(name) {
                None => Ok(default),
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_QUEUE).contains(&n) => Ok(n),
                    _ => Err(OtelError::Count { variable: name, max: MAX_QUEUE, value: v }),
                },
            }
        };
        let max_queue = count("OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_QUEUE)?;
        // The specification: a batch larger than the queue is the queue.
        let max_batch = count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", DEFAULT_BATCH)?.min(max_queue);
        let schedule_delay = Duration::from_millis(ms("OTEL_BSP_SCHEDULE_DELAY", DEFAULT_DELAY_MS, 3_600_000)?);
        let sampler = sampler(&var)?;
        Ok(Some(OtelSettings {
            endpoint,
            headers,
            resource,
            timeout: Duration::from_millis(otlp_timeout.min(bsp_timeout)),
            max_queue,
            max_batch,
            schedule_delay,
            sampler,
            protocol,
        }))
    }
}

/// The OTLP/HTTP encodings the gateway sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `http/protobuf` (`application/x-protobuf`), the specification's default.
    Protobuf,
    /// `http/json` (`application/json`).
    Json,
}

/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`,
/// else `http/protobuf`. gRPC (or anything else) is refused rather than
/// silently answered over HTTP, as is a LiteLLM `OTEL_EXPORTER` other than
/// `otlp_http`.
fn protocol(var: &dyn Fn(&str) -> Option<String>) -> Result<Protocol, OtelError> {
    if let Some(e) = var("OTEL_EXPORTER") {
        if !e.eq_ignore_ascii_case("otlp_http") {
            return Err(OtelError::Exporter { value: e });
        }
    }
    for name in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        // The first one set decides, as in the specification.
        let Some(p) = var(name) else { continue };
        return match p.as_str() {
            "http/protobuf" => Ok(Protocol::Protobuf),
            "http/json" => Ok(Protocol::Json),
            _ => Err(OtelError::Protocol { variable: name, value: p }),
        };
    }
    Ok(Protocol::Protobuf)
}

/// `OTEL_TRACES_SAMPLER` (with `OTEL_TRACES_SAMPLER_ARG` for the ratio
/// ones); a sampler that is not built in (`jaeger_remote`, `xray`…) is
/// refused, never replaced by another.
fn sampler(var: &dyn Fn(&str) -> Option<String>) -> Result<Sampler, OtelError> {
    let Some(name) = var("OTEL_TRACES_SAMPLER") else { return Ok(Sampler::default()) };
    let ratio = || -> Result<f64, OtelError> {
        match var("OTEL_TRACES_SAMPLER_ARG") {
            None => Ok(1.0),
            Some(a) => match a.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(OtelError::SamplerArg { value: a }),
            },
        }
    };
    let (parent_based, ratio) = match name.as_str() {
        "always_on" => (false, 1.0),
        "always_off" => (false, 0.0),
        "traceidratio" => (false, ratio()?),
        "parentbased_always_on" => (true, 1.0),
        "parentbased_always_off" => (true, 0.0),
        "parentbased_traceidratio" => (true, ratio()?),
        other => return Err(OtelError::Sampler { value: other.to_string() }),
    };
    Ok(Sampler { parent_based, ratio })
}

/// The traces URL: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else
/// `OTEL_EXPORTER_OTLP_ENDPOINT` with `v1/traces` appended (the
/// specification's rule), else LiteLLM's `OTEL_ENDPOINT` (with `v1/traces`
/// appended unless it ends so already, as LiteLLM does), else
/// `http://localhost:4318/v1/traces`.
fn endpoint(var: &dyn Fn(&str) -> Option<String>) -> Result<reqwest::Url, OtelError> {
    let (name, url) = if let Some(v) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", v)
    } else if let Some(v) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        ("OTEL_EXPORTER_OTLP_ENDPOINT", append_traces_path(&v))
    } else if let Some(v) = var("OTEL_ENDPOINT") {
        let full = if v.trim_end_matches('/').ends_with(TRACES_PATH) { v } else { append_traces_path(&v) };
        ("OTEL_ENDPOINT", full)
    } else {
        ("the default endpoint", DEFAULT_ENDPOINT.to_string())
    };
    // The value may hold credentials (a user:password, a query token): the
    // error names the variable, not the value.
    let parsed = reqwest::Url::parse(&url).map_err(|e| OtelError::NotUrl { variable: name, reason: e.to_string() })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(OtelError::NotHttp { variable: name, scheme: parsed.scheme().to_string() });
    }
    Ok(parsed)
}

fn append_traces_path(base: &str) -> String {
    format!("{}/{TRACES_PATH}", base.trim_end_matches('/'))
}

/// `key=value,key2=value2` with percent-encoded values (the W3C Baggage
/// format the specification uses for headers and resource attributes).
fn pairs(name: &'static str, raw: &str) -> Result<Vec<(String, String)>, OtelError> {
    let mut out = Vec::new();
    for (i, entry) in raw.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        // Only the position is named: a header's value is a credential.
        let bad = |problem| OtelError::Entry { variable: name, entry: i + 1, problem };
        let Some((k, v)) = entry.split_once('=') else {
            return Err(bad("is not `key=value`"));
        };
        let k = percent_decode(k.trim()).ok_or_else(|| bad("has a bad %-escape"))?;
        let v = percent_decode(v.trim()).ok_or_else(|| bad("has a bad %-escape"))?;
        if k.is_empty() {
            return Err(bad("has an empty key"));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn headers(name: &'static str, raw: &str) -> Result<Vec<(HeaderName, HeaderValue)>, OtelError> {
    let mut out = Vec::new();
    for (i, (k, v)) in pairs(name, raw)?.into_iter().enumerate() {
        let key = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).map_err(|_| OtelError::HeaderName {
            variable: name,
            key: k.clone(),
            entry: i + 1,
        })?;
        let mut value = HeaderValue::from_str(&v).map_err(|_| OtelError::HeaderValue {
            variable: name,
            key: k.clone(),
            entry: i + 1,
        })?;
        value.set_sensitive(true);
        out.push((key, value));
    }
    Ok(out)
}

/// `OTEL_RESOURCE_ATTRIBUTES`, with `OTEL_SERVICE_NAME` as `service.name`
/// when set (it wins), else `postmortem`.
fn resource(var: &dyn Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>, OtelError> {
    let mut attrs = match var("OTEL_RESOURCE_ATTRIBUTES") {
        Some(raw) => pairs("OTEL_RESOURCE_ATTRIBUTES", &raw)?,
        None => Vec::new(),
    };
    let from_attrs = attrs.iter().position(|(k, _)| k == "service.name").map(|i| attrs.remove(i).1);
    let service = var("OTEL_SERVICE_NAME").or(from_attrs).unwrap_or_else(|| "postmortem".to_string());
    attrs.insert(0, ("service.name".to_string(), service));
    Ok(attrs)
}

/// `%XX` escapes decoded; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<OtelSettings>, OtelError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        OtelSettings::from_env(&|n| map.get(n).cloned())
    }

    #[test]
    fn the_endpoint_follows_the_specifications_precedence() {
        let url = |vars: &[(&str, &str)]| settings(vars).unwrap().unwrap().endpoint.to_string();
        assert_eq!(url(&[]), "http://localhost:4318/v1/traces");
        assert_eq!(url(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]), "http://c:4318/v1/traces");
        assert_eq!(url(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c/otlp")]), "https://c/otlp/v1/traces");
        assert_eq!(
            url(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b/x")]),
            "http://b/x",
            "the signal's own endpoint is used as given and wins"
        );
        assert_eq!(url(&[("OTEL_ENDPOINT", "https://api.traceloop.com")]), "https://api.traceloop.com/v1/traces");
        assert_eq!(url(&[("OTEL_ENDPOINT", "http://c:4318/v1/traces")]), "http://c:4318/v1/traces");
        assert_eq!(
            url(&[("OTEL_ENDPOINT", "http://litellm"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://std")]),
            "http://std/v1/traces",
            "the standard variable wins over LiteLLM's alias"
        );
    }

    #[test]
    fn protobuf_by_default_json_when_asked_and_other_protocols_refused_with_the_reason() {
        let protocol = |vars: &[(&str, &str)]| settings(vars).unwrap().unwrap().protocol;
        assert_eq!(protocol(&[]), Protocol::Protobuf);
        assert_eq!(protocol(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]), Protocol::Json);
        assert_eq!(protocol(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]), Protocol::Protobuf);
        assert_eq!(protocol(&[("OTEL_EXPORTER", "otlp_http")]), Protocol::Protobuf);
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/xml"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER", "otlp_grpc"),
            ("OTEL_EXPORTER", "console"),
        ] {
            let e = settings(&[(name, value)]).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(value) && e.contains("not supported"), "{e}");
        }
        assert!(settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), ("OTEL_EXPORTER", "otlp_http")]).is_ok());
        // The signal's own variable decides over the general one.
        assert_eq!(
            protocol(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            Protocol::Json
        );
    }

    #[test]
    fn headers_are_decoded_and_marked_sensitive_and_errors_never_show_a_value() {
        let s = settings(&[("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr%3Dt, X-Team = a%20b ,")]).unwrap().unwrap();
        let h: Vec<(String, String, bool)> =
            s.headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string(), v.is_sensitive())).collect();
        assert_eq!(h, [("api-key".into(), "s3cr=t".into(), true), ("x-team".into(), "a b".into(), true)]);
        assert!(!format!("{s:?}").contains("s3cr"), "the debug form names headers only");
        // LiteLLM's alias, as its docs write it.
        let s = settings(&[("OTEL_HEADERS", "Authorization=Bearer%20tok-1")]).unwrap().unwrap();
        assert_eq!(s.headers[0].1.to_str().unwrap(), "Bearer tok-1");
        for bad in ["novalue-secretish", "k=%zz-secretish", "=secretish", "bad name=secretish", "k=a\u{1}secretish"] {
            let e = settings(&[("OTEL_EXPORTER_OTLP_HEADERS", bad)]).map(|_| ()).unwrap_err().to_string();
            assert!(e.starts_with("OTEL_EXPORTER_OTLP_HEADERS"), "{e}");
            assert!(!e.contains("secretish"), "the error shows no value: {e}");
        }
    }

    #[test]
    fn service_name_resource_and_limits() {
        let s = settings(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,deployment.environment=prod"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.resource[0], ("service.name".into(), "from-attrs".into()));
        assert_eq!(s.resource[1], ("deployment.environment".into(), "prod".into()));
        assert_eq!((s.max_queue, s.max_batch, s.timeout), (8, 8, Duration::from_millis(2500)));
        let s = settings(&[("OTEL_SERVICE_NAME", "gw"), ("OTEL_RESOURCE_ATTRIBUTES", "service.name=x")]).unwrap();
        assert_eq!(s.unwrap().resource, [("service.name".to_string(), "gw".to_string())]);
        let s = settings(&[]).unwrap().unwrap();
        assert_eq!(s.resource[0].1, "postmortem");
        assert_eq!((s.max_queue, s.max_batch, s.timeout), (2048, 512, Duration::from_secs(10)));
        for (name, v) in [("OTEL_EXPORTER_OTLP_TIMEOUT", "0"), ("OTEL_BSP_MAX_QUEUE_SIZE", "many")] {
            let e = settings(&[(name, v)]).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
        assert!(settings(&[("OTEL_SDK_DISABLED", "true")]).unwrap().is_none());
    }

    #[test]
    fn samplers_follow_the_specification() {
        let sampler = |vars: &[(&str, &str)]| settings(vars).map(|s| s.unwrap().sampler);
        let id = |low: u64| {
            let mut t = [7u8; 16];
            t[8..].copy_from_slice(&low.to_be_bytes());
            t
        };
        let default = sampler(&[]).unwrap();
        assert_eq!(default, Sampler { parent_based: true, ratio: 1.0 });
        assert!(default.sampled(None, &id(0)) && !default.sampled(Some(false), &id(0)));
        let on = sampler(&[("OTEL_TRACES_SAMPLER", "always_on")]).unwrap();
        assert!(on.sampled(Some(false), &id(u64::MAX)), "always_on ignores the parent");
        let off = sampler(&[("OTEL_TRACES_SAMPLER", "parentbased_always_off")]).unwrap();
        assert!(!off.sampled(None, &id(0)) && off.sampled(Some(true), &id(0)));
        let half = sampler(&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0.5")]).unwrap();
        assert!(half.sampled(None, &id(0)) && half.sampled(None, &id(u64::MAX / 2 - 2)));
        assert!(!half.sampled(None, &id(u64::MAX / 2 + 2)) && !half.sampled(None, &id(u64::MAX)));
        let kept = (0..1000u64).filter(|i| half.sampled(None, &id(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))).count();
        assert!((400..600).contains(&kept), "about half: {kept}");
        for (vars, words) in [
            (&[("OTEL_TRACES_SAMPLER", "jaeger_remote")][..], "OTEL_TRACES_SAMPLER"),
            (&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "2")][..], "from 0 to 1"),
        ] {
            let e = sampler(vars).unwrap_err().to_string();
            assert!(e.contains(words), "{e}");
        }
    }

    #[test]
    fn a_bad_endpoint_is_refused_without_showing_it() {
        for bad in ["not a url", "ftp://c/v1/traces", "unix:/tmp/sock"] {
            let e = settings(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", bad)]).map(|_| ()).unwrap_err().to_string();
            assert!(e.starts_with("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), "{e}");
        }
        let s = settings(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://u:pw@c:1/v1/traces?token=t")]).unwrap();
        assert_eq!(display_endpoint(&s.unwrap().endpoint), "http://c:1/v1/traces");
    }
}
