//! Error text for everything the store does: Redis' own words, labelled with the command and
//! key of the call, with every secret scrubbed; and the classification of errors (link vs.
//! data vs. refusal) that decides retries.

use redis::RedisError;

use crate::core::config::{ConnectionConfig, Target};
use crate::core::error::Error;

/// Whether the server provably did not run the command that got this error.
pub(super) fn was_not_run(e: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind as S};
    e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    S::Moved | S::TryAgain | S::ClusterDown | S::MasterDown | S::BusyLoading
                )
        )
}

/// Whether an error means the link (not the command) failed.
pub(super) fn is_link_failure(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

/// Whether the link dropped under the command (an I/O failure other than a timeout): a
/// read may be sent again on the reconnected link.
pub(super) fn is_dropped(e: &RedisError) -> bool {
    is_link_failure(e) && !e.is_timeout()
}

/// The error's text, with the command-level detail Redis gave: a server error reads as Redis
/// wrote it (`NOPERM this user has no permissions to run the 'xadd' command`), not as the
/// crate's debug form.
pub(super) fn describe(e: &RedisError) -> String {
    match redis::ServerError::try_from(e.clone()) {
        Ok(se) => server_error_text(&se),
        Err(_) => e.to_string(),
    }
}

/// `CODE detail`, as the server sent it.
pub(super) fn server_error_text(e: &redis::ServerError) -> String {
    match e.details() {
        Some(d) => format!("{} {d}", e.code()),
        None => e.code().to_string(),
    }
}

/// Prefixes a Redis error or timeout with what was being done; other kinds pass unchanged.
pub(super) fn labelled(e: Error, label: impl FnOnce() -> String) -> Error {
    match e {
        Error::Redis(m) => {
            // Redis 7 does not name the refused command when a script calls it.
            let hint = if m.contains("can't run this command") {
                " (a command the script calls is not allowed for this ACL user: see ACL LOG and docs/ACL.md)"
            } else {
                ""
            };
            Error::Redis(format!("{} failed: {m}{hint}", label()))
        }
        Error::Timeout(m) => Error::Timeout(format!("{} timed out: {m}", label())),
        e => e,
    }
}

/// Whether a server error is about the data of the key a command named (WRONGTYPE, ERR...),
/// not about the user's rights (NOPERM, NOAUTH) or the cluster's state (MOVED, CLUSTERDOWN,
/// LOADING...). `None` (no server error: the link failed) is not.
pub(super) fn is_data_error(e: Option<&redis::ServerError>) -> bool {
    use redis::ServerErrorKind as S;
    match e {
        None => false,
        Some(se) => match se.kind() {
            Some(S::ResponseError | S::ExecAbort | S::NoScript | S::NotBusy | S::NoSub) => true,
            Some(_) => false,
            None => !matches!(se.code(), "NOAUTH" | "WRONGPASS" | "NOPERM"),
        },
    }
}

/// A connect failure with where it went, and a hint when the TLS handshake failed.
pub(super) fn connect_failure(cfg: &ConnectionConfig, msg: &str) -> String {
    let target = crate::core::config::redact_target(&cfg.target);
    let lower = msg.to_ascii_lowercase();
    let hint = if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
    {
        if cfg.tls_ca_cert.is_some() {
            " (TLS: the server's certificate is not trusted by tlsCaCert, or does not name this host)"
        } else {
            " (TLS: the server's certificate is not trusted; set tlsCaCert to the PEM of the CA that signed it)"
        }
    } else {
        ""
    };
    format!("could not connect to Redis at {target}: {msg}{hint}")
}

/// The secrets of a connection config: the password option and any password in a URL
/// (as written and percent-decoded).
pub(super) fn secrets_of(cfg: &ConnectionConfig) -> Vec<String> {
    let mut out: Vec<String> = cfg.password.iter().cloned().collect();
    let urls: Vec<&String> = match &cfg.target {
        Target::Standalone(u) => vec![u],
        Target::Cluster(n) => n.iter().collect(),
    };
    for u in urls {
        if let Ok(parsed) = url::Url::parse(u) {
            if let Some(p) = parsed.password() {
                out.push(p.to_string());
                if let Ok(decoded) = url_decode(p) {
                    out.push(decoded);
                }
            }
        }
    }
    out
}

fn url_decode(s: &str) -> std::result::Result<String, ()> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .ok_or(())?;
    String::from_utf8(bytes).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::credentials::scrub;
    use redis::Value;

    #[test]
    fn scrub_removes_every_secret() {
        let s = vec!["p@ss".to_string(), "other".to_string()];
        assert_eq!(scrub(&s, "auth p@ss failed, other"), "auth *** failed, ***");
    }

    #[test]
    fn refusals_fail_whole_calls_other_errors_stay_per_key() {
        let parse = |raw: &[u8]| match redis::parse_redis_value(raw).unwrap() {
            Value::ServerError(se) => se,
            v => panic!("not an error: {v:?}"),
        };
        assert!(is_data_error(Some(&parse(
            b"-WRONGTYPE Operation against a key\r\n"
        ))));
        assert!(is_data_error(Some(&parse(
            b"-ERR value is not an integer\r\n"
        ))));
        assert!(!is_data_error(Some(&parse(
            b"-NOPERM this user has no permissions\r\n"
        ))));
        assert!(!is_data_error(Some(&parse(
            b"-CLUSTERDOWN The cluster is down\r\n"
        ))));
        assert!(!is_data_error(Some(&parse(
            b"-MOVED 3999 127.0.0.1:6381\r\n"
        ))));
        assert!(!is_data_error(Some(&parse(
            b"-TRYAGAIN Multiple keys request\r\n"
        ))));
        assert!(!is_data_error(None));
        let e = labelled(
            Error::Redis("ERR The user executing the script can't run this command".into()),
            || "Lua script on k".into(),
        );
        assert!(e.to_string().starts_with("Lua script on k failed: ERR"));
        assert!(e.to_string().contains("ACL LOG"));
        let t = labelled(
            Error::Timeout("Redis did not answer within 5 ms".into()),
            || "XLEN k".into(),
        );
        assert!(
            matches!(t, Error::Timeout(ref m) if m == "XLEN k timed out: Redis did not answer within 5 ms")
        );
    }

    #[test]
    fn tls_connect_failures_get_a_hint_and_no_secret() {
        let mut cfg =
            ConnectionConfig::for_test(Target::Standalone("rediss://u:pw@h:1".into()), None);
        let m = connect_failure(&cfg, "invalid peer certificate: UnknownIssuer");
        assert!(m.contains("set tlsCaCert"), "{m}");
        assert!(!m.contains("pw@"), "{m}");
        cfg.tls_ca_cert = Some("pem".into());
        assert!(
            connect_failure(&cfg, "invalid peer certificate: UnknownIssuer")
                .contains("not trusted by tlsCaCert")
        );
        assert!(!connect_failure(&cfg, "Connection refused (os error 111)").contains("TLS"));
    }

    #[test]
    fn url_passwords_are_secrets_too() {
        let cfg = ConnectionConfig::for_test(
            Target::Standalone("redis://u:p%40ss@h:1".into()),
            Some("opt".into()),
        );
        let s = secrets_of(&cfg);
        assert!(s.contains(&"opt".to_string()));
        assert!(s.contains(&"p%40ss".to_string()));
        assert!(s.contains(&"p@ss".to_string()));
    }
}
