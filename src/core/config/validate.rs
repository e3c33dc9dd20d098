//! Validation of every option: the rule each must meet, and the message naming it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::core::clock::now_ms;
use crate::core::error::{Error, Result};
use crate::core::redact::{clip, redact_url_lossy};

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
        let discovery = either(
            "discovery",
            o.discovery.as_deref(),
            ("index", Discovery::Index),
            ("scan", Discovery::Scan),
        )?;
        let on_heartbeat_lost = either(
            "onHeartbeatLost",
            o.on_heartbeat_lost.as_deref(),
            ("rejoin", OnHeartbeatLost::Rejoin),
            ("stay-dead", OnHeartbeatLost::StayDead),
        )?;
        let on_drain_request = either(
            "onDrainRequest",
            o.on_drain_request.as_deref(),
            ("drain", OnDrainRequest::Drain),
            ("emit", OnDrainRequest::Emit),
        )?;
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

/// A two-way choice: absent → the first (the default); else the named one; else an error
/// naming the option and both values.
fn either<T>(what: &str, given: Option<&str>, first: (&str, T), second: (&str, T)) -> Result<T> {
    match given {
        None => Ok(first.1),
        Some(g) if g == first.0 => Ok(first.1),
        Some(g) if g == second.0 => Ok(second.1),
        Some(other) => Err(Error::invalid(format!(
            "{what} must be '{}' or '{}' (got '{}')",
            first.0,
            second.0,
            clip(other)
        ))),
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

pub(super) fn validate_key_prefix(p: &str) -> Result<()> {
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

pub(super) fn connection_config(
    o: &RawOptions,
    env_redis_url: Option<String>,
) -> Result<ConnectionConfig> {
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

pub(super) fn identity(o: &RawOptions) -> Result<Identity> {
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

pub(super) fn metadata(entries: Vec<(String, String)>) -> Result<BTreeMap<String, String>> {
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

pub(super) fn timing(o: &RawOptions) -> Result<Timing> {
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
