//! Options as the user gives them (`RawOptions`), and the validated, defaulted `Config`.
//!
//! Validation is synchronous and does no I/O, so the constructor can throw at once with a
//! message that names the option and the rule.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::core::error::{Error, Result};

/// Default heartbeat interval (seed: 15 s).
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 15_000;
/// Default activity retention (seed: 90 days).
pub const DEFAULT_RETENTION_MS: u64 = 90 * 24 * 3600 * 1000;
/// Default public IP endpoints (seed's fallback chain).
pub const DEFAULT_PUBLIC_IP_ENDPOINTS: [&str; 3] = [
    "https://api.ipify.org",
    "https://icanhazip.com",
    "https://ifconfig.me/ip",
];
/// Metadata limits: enough for labels, small enough to keep the hash cheap to read.
pub const MAX_METADATA_ENTRIES: usize = 64;
pub const MAX_METADATA_KEY_LEN: usize = 64;
pub const MAX_METADATA_VALUE_LEN: usize = 1024;
/// The longest option value we accept for a timing, in ms (one year).
const MAX_MS: f64 = 365.0 * 24.0 * 3600.0 * 1000.0;

/// Options exactly as given by the caller; `None` means "not set".
///
/// Numbers are `f64` because that is what JS hands us: integrality is checked here.
#[derive(Debug, Clone, Default)]
pub struct RawOptions {
    pub redis_url: Option<String>,
    pub cluster_nodes: Option<Vec<String>>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls_ca_cert: Option<String>,
    pub tls_insecure: Option<bool>,
    pub key_prefix: Option<String>,
    pub connect_timeout_ms: Option<f64>,
    pub command_timeout_ms: Option<f64>,
    pub exchange_id: Option<f64>,
    pub exchange_name: Option<String>,
    pub version: Option<String>,
    pub hostname: Option<String>,
    pub instance_id: Option<String>,
    pub metadata: Option<Vec<(String, String)>>,
    pub public_ip: Option<PublicIpOption>,
    pub public_ip_endpoints: Option<Vec<String>>,
    pub public_ip_timeout_ms: Option<f64>,
    pub heartbeat_interval_ms: Option<f64>,
    pub heartbeat_ttl_ms: Option<f64>,
    pub sweep_interval_ms: Option<f64>,
    pub activity_retention_ms: Option<f64>,
    pub trim_interval_ms: Option<f64>,
    pub dead_instance_ttl_ms: Option<f64>,
    pub discovery: Option<String>,
    pub on_heartbeat_lost: Option<String>,
    pub on_drain_request: Option<String>,
    pub event_loop_stall_ms: Option<f64>,
    pub log_level: Option<String>,
    /// The process id; supplied by the host (Node's `process.pid` equals the OS pid).
    pub pid: Option<u32>,
}

/// `publicIp`: a fixed address, or `false` to skip detection.
#[derive(Debug, Clone)]
pub enum PublicIpOption {
    Fixed(String),
    Disabled,
}

/// Where Redis is.
#[derive(Debug, Clone)]
pub enum Target {
    /// One `redis://` or `rediss://` URL.
    Standalone(String),
    /// Seed nodes of an OSS cluster.
    Cluster(Vec<String>),
}

/// How to reach Redis. `Debug` hides the password.
#[derive(Clone)]
pub struct ConnectionConfig {
    pub target: Target,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls_ca_cert: Option<String>,
    pub tls_insecure: bool,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Rotating credentials (the `credentials` option); they override username/password.
    pub credentials: Option<crate::core::credentials::Credentials>,
    /// Sent as `CLIENT SETNAME` on every connection: `perseus:<instanceId>`.
    pub client_name: Option<String>,
}

impl std::fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("target", &redact_target(&self.target))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls_ca_cert", &self.tls_ca_cert.is_some())
            .field("tls_insecure", &self.tls_insecure)
            .field("credentials", &self.credentials.is_some())
            .finish()
    }
}

/// The URL(s) with any password replaced by `***`, for logs.
pub fn redact_target(target: &Target) -> String {
    match target {
        Target::Standalone(u) => redact_url(u),
        Target::Cluster(nodes) => nodes
            .iter()
            .map(|u| redact_url(u))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// A URL with its password replaced by `***`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable url>".to_string(),
    }
}

/// Who this instance is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub instance_id: String,
    pub hostname: String,
    pub exchange_id: u64,
    pub exchange_name: String,
    pub version: String,
    pub pid: u32,
    pub metadata: BTreeMap<String, String>,
    pub public_ip: PublicIpMode,
}

/// What to do about the public IP.
#[derive(Debug, Clone)]
pub enum PublicIpMode {
    Fixed(String),
    Disabled,
    Detect {
        endpoints: Vec<String>,
        timeout: Duration,
    },
}

/// All timings, validated against each other.
#[derive(Debug, Clone)]
pub struct Timing {
    pub heartbeat_interval: Duration,
    pub heartbeat_ttl: Duration,
    pub sweep_interval: Duration,
    /// `None`: trimming is off.
    pub activity_retention: Option<Duration>,
    pub trim_interval: Duration,
    pub dead_instance_ttl: Duration,
    /// `None`: the event-loop watchdog is off.
    pub event_loop_stall: Option<Duration>,
}

/// How peers are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    Index,
    Scan,
}

/// What an instance does after its own heartbeat lapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnHeartbeatLost {
    Rejoin,
    StayDead,
}

/// What an instance does when an operator asks it to drain (`requestDrain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDrainRequest {
    /// Emit `drainRequested`, then drain with the request's reason.
    Drain,
    /// Only emit: the application decides.
    Emit,
}

/// Log threshold; `Silent` drops everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Silent,
}

impl LogLevel {
    /// Parses the option's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "silent" => LogLevel::Silent,
            _ => return None,
        })
    }

    /// The pino method name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Silent => "silent",
        }
    }
}

/// The validated configuration of one network.
#[derive(Debug, Clone)]
pub struct Config {
    pub connection: ConnectionConfig,
    pub key_prefix: String,
    pub identity: Identity,
    pub timing: Timing,
    pub discovery: Discovery,
    pub on_heartbeat_lost: OnHeartbeatLost,
    pub on_drain_request: OnDrainRequest,
    pub log_level: LogLevel,
}

impl Config {
    /// Validates and defaults every option. `env_redis_url` is `REDIS_URL` (passed in so tests
    /// and hosts control it).
    pub fn from_options(o: RawOptions, env_redis_url: Option<String>) -> Result<Config> {
        let mut connection = connection_config(&o, env_redis_url)?;
        let key_prefix = o.key_prefix.clone().unwrap_or_else(|| "perseus".into());
        validate_key_prefix(&key_prefix)?;
        let identity = identity(&o)?;
        connection.client_name = Some(format!("perseus:{}", identity.instance_id));
        let timing = timing(&o)?;
        let discovery = match o.discovery.as_deref() {
            None | Some("index") => Discovery::Index,
            Some("scan") => Discovery::Scan,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "discovery must be 'index' or 'scan' (got '{}')",
                    clip(other)
                )))
            }
        };
        let on_heartbeat_lost = match o.on_heartbeat_lost.as_deref() {
            None | Some("rejoin") => OnHeartbeatLost::Rejoin,
            Some("stay-dead") => OnHeartbeatLost::StayDead,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "onHeartbeatLost must be 'rejoin' or 'stay-dead' (got '{}')",
                    clip(other)
                )))
            }
        };
        let on_drain_request = match o.on_drain_request.as_deref() {
            None | Some("drain") => OnDrainRequest::Drain,
            Some("emit") => OnDrainRequest::Emit,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "onDrainRequest must be 'drain' or 'emit' (got '{}')",
                    clip(other)
                )))
            }
        };
        let log_level = match o.log_level.as_deref() {
            None => LogLevel::Info,
            Some(s) => LogLevel::parse(s).ok_or_else(|| {
                Error::invalid(format!(
                    "logLevel must be one of trace, debug, info, warn, error, silent (got '{}')",
                    clip(s)
                ))
            })?,
        };
        Ok(Config {
            connection,
            key_prefix,
            identity,
            timing,
            discovery,
            on_heartbeat_lost,
            on_drain_request,
            log_level,
        })
    }
}

/// `${hostname}:${exchangeId}:${pid}:${startedAtMs}` — the seed's instance id.
pub fn make_instance_id(hostname: &str, exchange_id: u64, pid: u64, started_at_ms: u64) -> String {
    format!("{hostname}:{exchange_id}:{pid}:{started_at_ms}")
}

/// Checks an instance id: 1–256 printable ASCII, no whitespace, none of `* ? [ ] { } \`.
pub fn validate_instance_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 256 {
        return Err(Error::invalid(format!(
            "{what} must be 1 to 256 characters (got {})",
            id.len()
        )));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !c.is_ascii_graphic() || "*?[]{}\\".contains(*c))
    {
        return Err(Error::invalid(format!(
            "{what} must be printable ASCII without whitespace or any of * ? [ ] {{ }} \\ (found {c:?})"
        )));
    }
    Ok(())
}

fn validate_key_prefix(p: &str) -> Result<()> {
    let ok = (1..=64).contains(&p.len())
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "keyPrefix must be 1 to 64 characters of [A-Za-z0-9_.:-] (got '{}')",
            clip(p)
        )))
    }
}

/// Checks a `redis://` / `rediss://` URL; `what` names the option in the message.
pub fn validate_redis_url(what: &str, raw: &str) -> Result<()> {
    let u = url::Url::parse(raw).map_err(|e| {
        Error::invalid(format!(
            "{what} is not a valid URL ({e}): {}",
            redact_url_lossy(raw)
        ))
    })?;
    if u.scheme() != "redis" && u.scheme() != "rediss" {
        return Err(Error::invalid(format!(
            "{what} must use the redis:// or rediss:// scheme (got '{}:')",
            clip(u.scheme())
        )));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(format!("{what} has no host")));
    }
    let path = u.path().trim_start_matches('/');
    if !path.is_empty() && path.parse::<u16>().is_err() {
        return Err(Error::invalid(format!(
            "{what} database must be a number (got '/{}')",
            clip(path)
        )));
    }
    Ok(())
}

/// For a URL that would not parse: keep the scheme, hide everything after it.
fn redact_url_lossy(raw: &str) -> String {
    match raw.split_once("://") {
        Some((scheme, _)) => format!("{}://…", clip(scheme)),
        None => "<not a url>".into(),
    }
}

fn connection_config(o: &RawOptions, env_redis_url: Option<String>) -> Result<ConnectionConfig> {
    let target = match &o.cluster_nodes {
        Some(nodes) => {
            if nodes.is_empty() {
                return Err(Error::invalid(
                    "clusterNodes must list at least one redis:// or rediss:// URL",
                ));
            }
            for (i, n) in nodes.iter().enumerate() {
                validate_redis_url(&format!("clusterNodes[{i}]"), n)?;
            }
            Target::Cluster(nodes.clone())
        }
        None => {
            let (what, url) = match (&o.redis_url, env_redis_url.filter(|s| !s.is_empty())) {
                (Some(u), _) => ("redisUrl", u.clone()),
                (None, Some(env)) => ("REDIS_URL", env),
                (None, None) => ("redisUrl", "redis://127.0.0.1:6379".to_string()),
            };
            validate_redis_url(what, &url)?;
            Target::Standalone(url)
        }
    };
    if let Some(u) = &o.username {
        if u.is_empty() || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(
                "username must be non-empty, without whitespace or control characters",
            ));
        }
    }
    if let Some(p) = &o.password {
        if p.is_empty() {
            return Err(Error::invalid("password must not be empty when given"));
        }
    }
    if let Some(ca) = &o.tls_ca_cert {
        if !ca.contains("-----BEGIN CERTIFICATE-----") {
            return Err(Error::invalid(
                "tlsCaCert must be a PEM bundle (with -----BEGIN CERTIFICATE-----)",
            ));
        }
    }
    Ok(ConnectionConfig {
        target,
        username: o.username.clone(),
        password: o.password.clone(),
        tls_ca_cert: o.tls_ca_cert.clone(),
        tls_insecure: o.tls_insecure.unwrap_or(false),
        connect_timeout: ms_opt("connectTimeoutMs", o.connect_timeout_ms, 1.0)?
            .unwrap_or(Duration::from_millis(5000)),
        command_timeout: ms_opt("commandTimeoutMs", o.command_timeout_ms, 1.0)?
            .unwrap_or(Duration::from_millis(5000)),
        credentials: None,
        client_name: None,
    })
}

fn identity(o: &RawOptions) -> Result<Identity> {
    let exchange_id = match o.exchange_id {
        None => {
            return Err(Error::invalid(
                "exchangeId is required (a safe integer >= 0)",
            ))
        }
        Some(v) if v.is_finite() && v.fract() == 0.0 && (0.0..=9007199254740991.0).contains(&v) => {
            v as u64
        }
        Some(v) => {
            return Err(Error::invalid(format!(
                "exchangeId must be a safe integer >= 0 (got {v})"
            )))
        }
    };
    let exchange_name = o
        .exchange_name
        .clone()
        .ok_or_else(|| Error::invalid("exchangeName is required (1 to 64 of [A-Za-z0-9_.-])"))?;
    if !(1..=64).contains(&exchange_name.len())
        || !exchange_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(Error::invalid(format!(
            "exchangeName must be 1 to 64 characters of [A-Za-z0-9_.-] (got '{}')",
            clip(&exchange_name)
        )));
    }
    let version = o.version.clone().unwrap_or_else(|| "0.0.0".into());
    if !(1..=64).contains(&version.len()) || !version.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::invalid(
            "version must be 1 to 64 printable ASCII characters without whitespace",
        ));
    }
    let hostname = match &o.hostname {
        Some(h) => h.clone(),
        None => gethostname::gethostname().to_string_lossy().into_owned(),
    };
    if !(1..=255).contains(&hostname.len())
        || hostname
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "*?[]{}\\".contains(c))
    {
        return Err(Error::invalid(format!(
            "hostname must be 1 to 255 characters without whitespace, control or glob characters (got '{}')",
            clip(&hostname)
        )));
    }
    let pid = o.pid.unwrap_or_else(std::process::id);
    let instance_id = match &o.instance_id {
        Some(id) => id.clone(),
        None => make_instance_id(&hostname, exchange_id, pid.into(), now_ms()),
    };
    validate_instance_id("instanceId", &instance_id)?;
    let metadata = metadata(o.metadata.clone().unwrap_or_default())?;
    let public_ip = match &o.public_ip {
        Some(PublicIpOption::Fixed(ip)) => {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(Error::invalid(format!(
                    "publicIp must be an IPv4 or IPv6 address, or false (got '{}')",
                    clip(ip)
                )));
            }
            PublicIpMode::Fixed(ip.clone())
        }
        Some(PublicIpOption::Disabled) => PublicIpMode::Disabled,
        None => PublicIpMode::Detect {
            endpoints: public_ip_endpoints("publicIpEndpoints", o.public_ip_endpoints.clone())?,
            timeout: ms_opt("publicIpTimeoutMs", o.public_ip_timeout_ms, 1.0)?
                .unwrap_or(Duration::from_millis(5000)),
        },
    };
    Ok(Identity {
        instance_id,
        hostname,
        exchange_id,
        exchange_name,
        version,
        pid,
        metadata,
        public_ip,
    })
}

/// Validates an endpoint list for public IP detection (defaults when `None`).
pub fn public_ip_endpoints(what: &str, given: Option<Vec<String>>) -> Result<Vec<String>> {
    let endpoints = given.unwrap_or_else(|| {
        DEFAULT_PUBLIC_IP_ENDPOINTS
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    if endpoints.is_empty() || endpoints.len() > 16 {
        return Err(Error::invalid(format!("{what} must list 1 to 16 URLs")));
    }
    for (i, e) in endpoints.iter().enumerate() {
        let ok = url::Url::parse(e)
            .map(|u| u.scheme() == "http" || u.scheme() == "https")
            .unwrap_or(false);
        if !ok {
            return Err(Error::invalid(format!(
                "{what}[{i}] must be an http:// or https:// URL (got '{}')",
                clip(e)
            )));
        }
    }
    Ok(endpoints)
}

fn metadata(entries: Vec<(String, String)>) -> Result<BTreeMap<String, String>> {
    if entries.len() > MAX_METADATA_ENTRIES {
        return Err(Error::invalid(format!(
            "metadata must have at most {MAX_METADATA_ENTRIES} entries (got {})",
            entries.len()
        )));
    }
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        if !(1..=MAX_METADATA_KEY_LEN).contains(&k.len())
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(Error::invalid(format!(
                "metadata keys must be 1 to {MAX_METADATA_KEY_LEN} characters of [A-Za-z0-9_.-] (got '{}')",
                clip(&k)
            )));
        }
        if v.len() > MAX_METADATA_VALUE_LEN {
            return Err(Error::invalid(format!(
                "metadata.{k} must be at most {MAX_METADATA_VALUE_LEN} bytes (got {})",
                v.len()
            )));
        }
        out.insert(k, v);
    }
    Ok(out)
}

fn timing(o: &RawOptions) -> Result<Timing> {
    let interval = ms_opt("heartbeatIntervalMs", o.heartbeat_interval_ms, 50.0)?
        .unwrap_or(Duration::from_millis(DEFAULT_HEARTBEAT_INTERVAL_MS));
    let ttl = match ms_opt("heartbeatTtlMs", o.heartbeat_ttl_ms, 1.0)? {
        Some(ttl) => ttl,
        None => interval * 3,
    };
    if ttl <= interval {
        return Err(Error::invalid(format!(
            "heartbeatTtlMs must be greater than heartbeatIntervalMs ({} <= {})",
            ttl.as_millis(),
            interval.as_millis()
        )));
    }
    let sweep = ms_opt("sweepIntervalMs", o.sweep_interval_ms, 10.0)?.unwrap_or(interval);
    let retention = match ms_opt("activityRetentionMs", o.activity_retention_ms, 0.0)? {
        None => Some(Duration::from_millis(DEFAULT_RETENTION_MS)),
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    };
    let trim =
        ms_opt("trimIntervalMs", o.trim_interval_ms, 10.0)?.unwrap_or(Duration::from_secs(3600));
    let dead = ms_opt("deadInstanceTtlMs", o.dead_instance_ttl_ms, 1.0)?
        .unwrap_or(Duration::from_secs(24 * 3600));
    let stall = match ms_opt("eventLoopStallMs", o.event_loop_stall_ms, 0.0)? {
        None => Some(Duration::from_secs(60)),
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    };
    Ok(Timing {
        heartbeat_interval: interval,
        heartbeat_ttl: ttl,
        sweep_interval: sweep,
        activity_retention: retention,
        trim_interval: trim,
        dead_instance_ttl: dead,
        event_loop_stall: stall,
    })
}

/// A millisecond option: an integer in `[min, 1 year]`.
pub fn ms_opt(what: &str, v: Option<f64>, min: f64) -> Result<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(v) if v.is_finite() && v.fract() == 0.0 && v >= min && v <= MAX_MS => {
            Ok(Some(Duration::from_millis(v as u64)))
        }
        Some(v) => Err(Error::invalid(format!(
            "{what} must be an integer number of milliseconds from {min} to {MAX_MS} (got {v})"
        ))),
    }
}

/// Kept here too: hosts and tests read the clock as `config::now_ms`.
pub use crate::core::clock::now_ms;

/// Shortens user text quoted in a message, so a huge value cannot flood a log.
pub fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.escape_debug().to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{}…", head.escape_debug())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RawOptions {
        RawOptions {
            exchange_id: Some(1.0),
            exchange_name: Some("coinbase".into()),
            hostname: Some("host-a".into()),
            pid: Some(42),
            ..Default::default()
        }
    }

    fn err_of(o: RawOptions) -> String {
        match Config::from_options(o, None) {
            Err(Error::InvalidOption(m)) => m,
            other => panic!("expected InvalidOption, got {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_the_api() {
        let c = Config::from_options(base(), None).unwrap();
        assert!(
            matches!(&c.connection.target, Target::Standalone(u) if u == "redis://127.0.0.1:6379")
        );
        assert_eq!(c.key_prefix, "perseus");
        assert_eq!(c.connection.connect_timeout, Duration::from_millis(5000));
        assert_eq!(c.connection.command_timeout, Duration::from_millis(5000));
        assert_eq!(c.timing.heartbeat_interval, Duration::from_secs(15));
        assert_eq!(c.timing.heartbeat_ttl, Duration::from_secs(45));
        assert_eq!(c.timing.sweep_interval, Duration::from_secs(15));
        assert_eq!(
            c.timing.activity_retention,
            Some(Duration::from_millis(DEFAULT_RETENTION_MS))
        );
        assert_eq!(c.timing.trim_interval, Duration::from_secs(3600));
        assert_eq!(c.timing.dead_instance_ttl, Duration::from_secs(86400));
        assert_eq!(c.timing.event_loop_stall, Some(Duration::from_secs(60)));
        assert_eq!(c.discovery, Discovery::Index);
        assert_eq!(c.on_heartbeat_lost, OnHeartbeatLost::Rejoin);
        assert_eq!(c.on_drain_request, OnDrainRequest::Drain);
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.identity.version, "0.0.0");
        assert!(c.identity.instance_id.starts_with("host-a:1:42:"));
        assert!(
            matches!(c.identity.public_ip, PublicIpMode::Detect { ref endpoints, timeout }
            if endpoints.len() == 3 && timeout == Duration::from_secs(5))
        );
    }

    #[test]
    fn env_url_is_used_when_redis_url_is_unset() {
        let c = Config::from_options(base(), Some("redis://10.1.2.3:7000".into())).unwrap();
        assert!(
            matches!(&c.connection.target, Target::Standalone(u) if u == "redis://10.1.2.3:7000")
        );
        let mut o = base();
        o.redis_url = Some("redis://h:1".into());
        let c = Config::from_options(o, Some("redis://10.1.2.3:7000".into())).unwrap();
        assert!(matches!(&c.connection.target, Target::Standalone(u) if u == "redis://h:1"));
    }

    #[test]
    fn ttl_defaults_to_three_intervals() {
        let mut o = base();
        o.heartbeat_interval_ms = Some(100.0);
        let c = Config::from_options(o, None).unwrap();
        assert_eq!(c.timing.heartbeat_ttl, Duration::from_millis(300));
        assert_eq!(c.timing.sweep_interval, Duration::from_millis(100));
    }

    #[test]
    fn zero_turns_trimming_and_watchdog_off() {
        let mut o = base();
        o.activity_retention_ms = Some(0.0);
        o.event_loop_stall_ms = Some(0.0);
        let c = Config::from_options(o, None).unwrap();
        assert_eq!(c.timing.activity_retention, None);
        assert_eq!(c.timing.event_loop_stall, None);
    }

    #[test]
    fn rejects_bad_values_naming_the_option() {
        type Mutation = Box<dyn Fn(&mut RawOptions)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|o| o.exchange_id = Some(-1.0)), "exchangeId"),
            (Box::new(|o| o.exchange_id = Some(1.5)), "exchangeId"),
            (Box::new(|o| o.exchange_id = Some(f64::NAN)), "exchangeId"),
            (
                Box::new(|o| o.exchange_id = Some(9007199254740992.0)),
                "exchangeId",
            ),
            (Box::new(|o| o.exchange_id = None), "exchangeId"),
            (
                Box::new(|o| o.exchange_name = Some("".into())),
                "exchangeName",
            ),
            (
                Box::new(|o| o.exchange_name = Some("coin base".into())),
                "exchangeName",
            ),
            (
                Box::new(|o| o.exchange_name = Some("x".repeat(65))),
                "exchangeName",
            ),
            (
                Box::new(|o| o.instance_id = Some("a b".into())),
                "instanceId",
            ),
            (
                Box::new(|o| o.instance_id = Some("a*b".into())),
                "instanceId",
            ),
            (
                Box::new(|o| o.instance_id = Some("a{b}".into())),
                "instanceId",
            ),
            (
                Box::new(|o| o.instance_id = Some("a\u{7}".into())),
                "instanceId",
            ),
            (Box::new(|o| o.instance_id = Some("é".into())), "instanceId"),
            (
                Box::new(|o| o.instance_id = Some("x".repeat(257))),
                "instanceId",
            ),
            (Box::new(|o| o.instance_id = Some("".into())), "instanceId"),
            (
                Box::new(|o| {
                    o.heartbeat_interval_ms = Some(1000.0);
                    o.heartbeat_ttl_ms = Some(1000.0)
                }),
                "heartbeatTtlMs",
            ),
            (
                Box::new(|o| o.heartbeat_interval_ms = Some(49.0)),
                "heartbeatIntervalMs",
            ),
            (
                Box::new(|o| o.redis_url = Some("http://localhost".into())),
                "redisUrl",
            ),
            (
                Box::new(|o| o.redis_url = Some("not a url".into())),
                "redisUrl",
            ),
            (
                Box::new(|o| o.redis_url = Some("redis://h/abc".into())),
                "redisUrl",
            ),
            (Box::new(|o| o.cluster_nodes = Some(vec![])), "clusterNodes"),
            (
                Box::new(|o| o.cluster_nodes = Some(vec!["tcp://x".into()])),
                "clusterNodes[0]",
            ),
            (Box::new(|o| o.key_prefix = Some("a b".into())), "keyPrefix"),
            (Box::new(|o| o.key_prefix = Some("a*".into())), "keyPrefix"),
            (
                Box::new(|o| o.connect_timeout_ms = Some(0.0)),
                "connectTimeoutMs",
            ),
            (
                Box::new(|o| o.command_timeout_ms = Some(-5.0)),
                "commandTimeoutMs",
            ),
            (
                Box::new(|o| {
                    o.metadata = Some((0..65).map(|i| (format!("k{i}"), "v".into())).collect())
                }),
                "metadata",
            ),
            (
                Box::new(|o| o.metadata = Some(vec![("bad key".into(), "v".into())])),
                "metadata",
            ),
            (
                Box::new(|o| o.metadata = Some(vec![("k".into(), "v".repeat(1025))])),
                "metadata.k",
            ),
            (
                Box::new(|o| o.public_ip = Some(PublicIpOption::Fixed("nope".into()))),
                "publicIp",
            ),
            (
                Box::new(|o| o.public_ip_endpoints = Some(vec!["ftp://x".into()])),
                "publicIpEndpoints[0]",
            ),
            (
                Box::new(|o| o.discovery = Some("gossip".into())),
                "discovery",
            ),
            (
                Box::new(|o| o.on_heartbeat_lost = Some("retry".into())),
                "onHeartbeatLost",
            ),
            (
                Box::new(|o| o.on_drain_request = Some("ignore".into())),
                "onDrainRequest",
            ),
            (Box::new(|o| o.log_level = Some("loud".into())), "logLevel"),
            (
                Box::new(|o| o.activity_retention_ms = Some(-1.0)),
                "activityRetentionMs",
            ),
            (
                Box::new(|o| o.tls_ca_cert = Some("garbage".into())),
                "tlsCaCert",
            ),
            (Box::new(|o| o.password = Some("".into())), "password"),
            (Box::new(|o| o.version = Some("1 0".into())), "version"),
            (Box::new(|o| o.hostname = Some("".into())), "hostname"),
        ];
        for (mutate, name) in cases {
            let mut o = base();
            mutate(&mut o);
            let msg = err_of(o);
            assert!(
                msg.starts_with(name),
                "message {msg:?} should start with {name}"
            );
        }
    }

    #[test]
    fn url_errors_never_show_the_password() {
        let mut o = base();
        o.redis_url = Some("http://user:s3cret@host:1".into());
        assert!(!err_of(o).contains("s3cret"));
        let mut o = base();
        o.redis_url = Some("redis://user:s3cret@host:1/xyz".into());
        assert!(!err_of(o).contains("s3cret"));
        assert_eq!(redact_url("redis://u:s3cret@h:1/2"), "redis://u:***@h:1/2");
        let c = ConnectionConfig {
            target: Target::Standalone("redis://u:s3cret@h:1".into()),
            username: None,
            password: Some("s3cret".into()),
            tls_ca_cert: None,
            tls_insecure: false,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            credentials: None,
            client_name: None,
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn make_instance_id_matches_the_seed() {
        assert_eq!(
            make_instance_id("DESKTOP-ABC", 1, 12345, 1707580800000),
            "DESKTOP-ABC:1:12345:1707580800000"
        );
    }
}
