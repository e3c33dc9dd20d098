//! Queries of the stream: bounds and limits, validated before any read.

use super::MAX_QUERY_LIMIT;
use crate::core::error::{Error, Result};
use crate::core::redact::clip;

/// A query bound as given: ms epoch (a `Date` arrives as ms) or a stream ID / `-` / `+`.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Ms(f64),
    Id(String),
}

/// Turns a bound into an XRANGE argument; `what` names the argument in errors.
pub fn parse_bound(what: &str, b: &Bound) -> Result<String> {
    match b {
        Bound::Ms(ms) => {
            if ms.is_finite() && *ms >= 0.0 && ms.fract() == 0.0 && *ms <= 9007199254740991.0 {
                Ok(format!("{}", *ms as u64))
            } else {
                Err(Error::invalid(format!(
                    "{what} must be a non-negative integer ms epoch, a valid Date, or a stream ID (got {ms})"
                )))
            }
        }
        Bound::Id(s) => {
            if s == "-" || s == "+" || is_stream_id(s) {
                Ok(s.clone())
            } else {
                Err(Error::invalid(format!(
                    "{what} must be a stream ID like '1707580800000-0', '-' or '+' (got '{}')",
                    clip(s)
                )))
            }
        }
    }
}

/// `<ms>` or `<ms>-<seq>`, both u64.
pub fn is_stream_id(s: &str) -> bool {
    let mut parts = s.splitn(2, '-');
    let ms = parts.next().unwrap_or("");
    let ok_num = |p: &str| !p.is_empty() && p.len() <= 20 && p.parse::<u64>().is_ok();
    ok_num(ms) && parts.next().is_none_or(ok_num)
}

/// A validated query.
#[derive(Debug, Clone)]
pub struct Query {
    pub since: String,
    pub until: String,
    pub limit: u64,
    pub reverse: bool,
    pub instance_id: Option<String>,
    pub events: Option<Vec<String>>,
}

/// Builds a [`Query`] from optional parts, validating each.
pub fn make_query(
    since: Option<Bound>,
    until: Option<Bound>,
    limit: Option<f64>,
    reverse: bool,
    instance_id: Option<String>,
    events: Option<Vec<String>>,
) -> Result<Query> {
    let since = match since {
        Some(b) => parse_bound("since", &b)?,
        None => "-".into(),
    };
    let until = match until {
        Some(b) => parse_bound("until", &b)?,
        None => "+".into(),
    };
    let limit = match limit {
        None => 1000,
        Some(l) if l.is_finite() && l.fract() == 0.0 && l >= 1.0 && l <= MAX_QUERY_LIMIT as f64 => {
            l as u64
        }
        Some(l) => {
            return Err(Error::invalid(format!(
                "limit must be an integer from 1 to {MAX_QUERY_LIMIT} (got {l})"
            )))
        }
    };
    Ok(Query {
        since,
        until,
        limit,
        reverse,
        instance_id,
        events,
    })
}
