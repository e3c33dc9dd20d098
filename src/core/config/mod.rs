//! Options as the user gives them (`RawOptions`), and the validated, defaulted `Config`.
//!
//! Validation is synchronous and does no I/O, so the constructor can throw at once with a
//! message that names the option and the rule. This file holds the options and their
//! defaults; `validate` checks and builds them.

use std::collections::BTreeMap;
use std::time::Duration;

#[cfg(test)]
mod tests;
mod validate;

pub use validate::{
    make_instance_id, ms_opt, public_ip_endpoints, validate_instance_id, validate_redis_url,
};

use crate::core::redact::redact_url;

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

#[cfg(test)]
impl ConnectionConfig {
    /// A connection config for unit tests: `target`, `password`, 1 s timeouts, nothing else.
    pub(crate) fn for_test(target: Target, password: Option<String>) -> Self {
        ConnectionConfig {
            target,
            username: None,
            password,
            tls_ca_cert: None,
            tls_insecure: false,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            credentials: None,
            client_name: None,
        }
    }
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
