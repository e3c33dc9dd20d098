//! One entry as the API shows it, the input an application logs, and the fields an entry is
//! written with.

use std::borrow::Cow;

use super::{MAX_FIELDS, MAX_FIELD_NAME_LEN, MAX_FIELD_VALUE_LEN, MAX_REASON_LEN, SCHEMA_FIELDS};
use crate::core::error::{Error, Result};
use crate::core::fsm::State;
use crate::core::redact::clip;

/// One stream entry as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityEntry {
    pub id: String,
    pub time: u64,
    pub instance_id: String,
    pub event: String,
    pub exchange: String,
    pub exchange_id: Option<u64>,
    pub from_state: Option<State>,
    pub to_state: Option<State>,
    pub reason: Option<String>,
    pub public_ip: Option<String>,
    pub hostname: Option<String>,
    pub ts: String,
    /// Every other field, in the order written.
    pub fields: Vec<(String, String)>,
}

/// An entry whose text may borrow from a reply buffer (the RESP decoder's output), and the one
/// definition of an entry's JSON shape: [`ActivityEntry`] serialises through it too.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryRef<'a> {
    pub id: Cow<'a, str>,
    #[serde(serialize_with = "crate::core::wire::text::int")]
    pub time: u64,
    pub instance_id: Cow<'a, str>,
    pub event: Cow<'a, str>,
    pub exchange: Cow<'a, str>,
    #[serde(serialize_with = "crate::core::wire::text::opt_int")]
    pub exchange_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_state: Option<State>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_state: Option<State>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<Cow<'a, str>>,
    pub ts: Cow<'a, str>,
    #[serde(serialize_with = "pairs_as_map")]
    pub fields: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl EntryRef<'_> {
    /// The owned entry (copies only what is borrowed).
    pub fn into_owned(self) -> ActivityEntry {
        ActivityEntry {
            id: self.id.into_owned(),
            time: self.time,
            instance_id: self.instance_id.into_owned(),
            event: self.event.into_owned(),
            exchange: self.exchange.into_owned(),
            exchange_id: self.exchange_id,
            from_state: self.from_state,
            to_state: self.to_state,
            reason: self.reason.map(Cow::into_owned),
            public_ip: self.public_ip.map(Cow::into_owned),
            hostname: self.hostname.map(Cow::into_owned),
            ts: self.ts.into_owned(),
            fields: self
                .fields
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }
}

impl<'a> From<&'a ActivityEntry> for EntryRef<'a> {
    fn from(e: &'a ActivityEntry) -> Self {
        let b = |s: &'a String| Cow::Borrowed(s.as_str());
        EntryRef {
            id: b(&e.id),
            time: e.time,
            instance_id: b(&e.instance_id),
            event: b(&e.event),
            exchange: b(&e.exchange),
            exchange_id: e.exchange_id,
            from_state: e.from_state,
            to_state: e.to_state,
            reason: e.reason.as_ref().map(b),
            public_ip: e.public_ip.as_ref().map(b),
            hostname: e.hostname.as_ref().map(b),
            ts: b(&e.ts),
            fields: e.fields.iter().map(|(k, v)| (b(k), b(v))).collect(),
        }
    }
}

impl serde::Serialize for ActivityEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        EntryRef::from(self).serialize(s)
    }
}

/// Serialises ordered pairs as an object (a later duplicate name wins, as in JS).
fn pairs_as_map<S: serde::Serializer, K: AsRef<str>, V: AsRef<str>>(
    pairs: &[(K, V)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(pairs.len()))?;
    for (k, v) in pairs {
        m.serialize_entry(k.as_ref(), v.as_ref())?;
    }
    m.end()
}

/// What an application (or the lifecycle) logs.
#[derive(Debug, Clone, Default)]
pub struct ActivityInput {
    pub event: String,
    pub reason: Option<String>,
    pub from_state: Option<State>,
    pub to_state: Option<State>,
    pub fields: Vec<(String, String)>,
}

/// Who writes: the constant part of every entry from one instance.
#[derive(Debug, Clone)]
pub struct Author {
    pub instance_id: String,
    pub exchange: String,
    pub exchange_id: u64,
    pub hostname: String,
    pub public_ip: Option<String>,
}

/// A reason (of an entry, a drain request or a failure) is at most [`MAX_REASON_LEN`]
/// characters: the one check, for every caller.
pub fn validate_reason(r: &str) -> Result<()> {
    if r.chars().count() > MAX_REASON_LEN {
        return Err(Error::invalid(format!(
            "reason must be at most {MAX_REASON_LEN} characters (got {})",
            r.chars().count()
        )));
    }
    Ok(())
}

/// Validates an application's input (`logActivity`).
pub fn validate_input(input: &ActivityInput) -> Result<()> {
    let e = &input.event;
    let ok = (1..=64).contains(&e.len())
        && e.starts_with(|c: char| c.is_ascii_uppercase())
        && e.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(Error::invalid(format!(
            "event must match /^[A-Z][A-Z0-9_]{{0,63}}$/ (got '{}')",
            clip(e)
        )));
    }
    if let Some(r) = &input.reason {
        validate_reason(r)?;
    }
    if input.fields.len() > MAX_FIELDS {
        return Err(Error::invalid(format!(
            "fields must have at most {MAX_FIELDS} entries (got {})",
            input.fields.len()
        )));
    }
    for (k, v) in &input.fields {
        if SCHEMA_FIELDS.contains(&k.as_str()) {
            return Err(Error::invalid(format!(
                "fields.{k} would shadow a schema field; use the input's own property"
            )));
        }
        if !(1..=MAX_FIELD_NAME_LEN).contains(&k.len())
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-:".contains(c))
        {
            return Err(Error::invalid(format!(
                "fields keys must be 1 to {MAX_FIELD_NAME_LEN} characters of [A-Za-z0-9_.:-] (got '{}')",
                clip(k)
            )));
        }
        if v.len() > MAX_FIELD_VALUE_LEN {
            return Err(Error::invalid(format!(
                "fields.{k} must be at most {MAX_FIELD_VALUE_LEN} bytes (got {})",
                v.len()
            )));
        }
    }
    Ok(())
}

/// The flat field list of an entry, in schema order, then the input's own fields.
pub fn encode(author: &Author, input: &ActivityInput, ts: &str) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = vec![
        ("instanceId".into(), author.instance_id.clone()),
        ("event".into(), input.event.clone()),
        ("exchange".into(), author.exchange.clone()),
        ("exchangeId".into(), author.exchange_id.to_string()),
    ];
    if let Some(s) = input.from_state {
        f.push(("fromState".into(), s.as_str().into()));
    }
    if let Some(s) = input.to_state {
        f.push(("toState".into(), s.as_str().into()));
    }
    if let Some(r) = &input.reason {
        f.push(("reason".into(), r.clone()));
    }
    if let Some(ip) = &author.public_ip {
        f.push(("publicIp".into(), ip.clone()));
    }
    f.push(("hostname".into(), author.hostname.clone()));
    f.push(("ts".into(), ts.to_string()));
    f.extend(input.fields.iter().cloned());
    f
}
