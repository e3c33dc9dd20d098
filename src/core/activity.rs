//! The activity stream: entry schema, validation of inputs, XADD / XRANGE / XTRIM, and the
//! decoder that turns any entry — ours or foreign — into an [`ActivityEntry`] without failing.
//!
//! Non-UTF-8 bytes in a field name or value are rendered with U+FFFD (lossy UTF-8).

use std::borrow::Cow;

use redis::{FromRedisValue, Value};

use crate::core::config::clip;
use crate::core::error::{Error, Result};
use crate::core::fsm::State;
use crate::core::keys::Keys;
use crate::core::registry::{into_text, text};
use crate::core::store::{Command, Kind, Store};

/// Fields of the schema; any other field lands in [`ActivityEntry::fields`].
pub const SCHEMA_FIELDS: [&str; 10] = [
    "instanceId",
    "event",
    "exchange",
    "exchangeId",
    "fromState",
    "toState",
    "reason",
    "publicIp",
    "hostname",
    "ts",
];
/// Limits on application fields.
pub const MAX_FIELDS: usize = 64;
pub const MAX_FIELD_NAME_LEN: usize = 64;
pub const MAX_FIELD_VALUE_LEN: usize = 8192;
pub const MAX_REASON_LEN: usize = 1024;
pub const MAX_QUERY_LIMIT: u64 = 1_000_000;
/// Entries read per XRANGE round trip.
const PAGE: u64 = 10_000;

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
    #[serde(serialize_with = "crate::core::registry::int")]
    pub time: u64,
    pub instance_id: Cow<'a, str>,
    pub event: Cow<'a, str>,
    pub exchange: Cow<'a, str>,
    #[serde(serialize_with = "crate::core::registry::opt_int")]
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
        if r.chars().count() > MAX_REASON_LEN {
            return Err(Error::invalid(format!(
                "reason must be at most {MAX_REASON_LEN} characters (got {})",
                r.chars().count()
            )));
        }
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

/// Decodes one entry from its ID and flat field list. Never fails: missing schema fields
/// become empty strings or `None`, an odd trailing name is dropped, unknown fields are kept.
pub fn decode(id: &str, flat: Vec<Value>) -> ActivityEntry {
    let mut pairs = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if let (Some(k), Some(v)) = (into_text(k), into_text(v)) {
            pairs.push((Cow::Owned(k), Cow::Owned(v)));
        }
    }
    decode_pairs(Cow::Borrowed(id), pairs.into_iter()).into_owned()
}

/// The one place that maps an entry's text pairs onto the schema (both the crate's `Value`
/// path and the RESP decoder use it): a later duplicate wins, unknown names are kept in order.
pub fn decode_pairs<'a>(
    id: Cow<'a, str>,
    pairs: impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
) -> EntryRef<'a> {
    let time = id
        .split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    let mut e = EntryRef {
        id,
        time,
        instance_id: Cow::Borrowed(""),
        event: Cow::Borrowed(""),
        exchange: Cow::Borrowed(""),
        exchange_id: None,
        from_state: None,
        to_state: None,
        reason: None,
        public_ip: None,
        hostname: None,
        ts: Cow::Borrowed(""),
        fields: Vec::new(),
    };
    for (k, v) in pairs {
        match k.as_ref() {
            "instanceId" => e.instance_id = v,
            "event" => e.event = v,
            "exchange" => e.exchange = v,
            "exchangeId" => e.exchange_id = v.parse().ok(),
            "fromState" => e.from_state = v.parse().ok(),
            "toState" => e.to_state = v.parse().ok(),
            "reason" => e.reason = Some(v),
            "publicIp" => e.public_ip = Some(v),
            "hostname" => e.hostname = Some(v),
            "ts" => e.ts = v,
            _ => e.fields.push((k, v)),
        }
    }
    e
}

/// Decodes an XRANGE / XREVRANGE reply; malformed items are skipped.
pub fn decode_range(v: Value) -> Vec<ActivityEntry> {
    let Value::Array(items) = v else {
        return vec![];
    };
    items
        .into_iter()
        .filter_map(|item| match item {
            Value::Array(mut pair) if pair.len() == 2 => {
                let fields = pair.pop()?;
                let id = text(&pair[0])?;
                match fields {
                    Value::Array(flat) => Some(decode(&id, flat)),
                    Value::Map(m) => {
                        let flat: Vec<Value> = m.into_iter().flat_map(|(k, v)| [k, v]).collect();
                        Some(decode(&id, flat))
                    }
                    _ => Some(decode(&id, vec![])),
                }
            }
            _ => None,
        })
        .collect()
}

/// How many entries a range reply holds, and the ID of the last one (for the next page).
pub(crate) fn page_extent(v: &Value) -> (u64, Option<String>) {
    let Value::Array(items) = v else {
        return (0, None);
    };
    let last = items.last().and_then(|item| match item {
        Value::Array(pair) => pair.first().and_then(text),
        _ => None,
    });
    (items.len() as u64, last)
}

/// One page of a range read: raw reply bytes (with their extent, already checked) or the
/// crate's parse.
enum Page {
    Bytes {
        bytes: Vec<u8>,
        extent: (u64, Option<String>),
    },
    Tree(Value),
}

impl Page {
    /// How many items the page holds and the ID of its last one.
    fn extent(&self) -> (u64, Option<String>) {
        match self {
            Page::Bytes { extent, .. } => extent.clone(),
            Page::Tree(v) => page_extent(v),
        }
    }
}

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

/// Reads and writes one stream.
#[derive(Clone)]
pub struct ActivityLog {
    store: Store,
    key: String,
}

impl ActivityLog {
    pub fn new(store: Store, keys: &Keys) -> Self {
        ActivityLog {
            store,
            key: keys.activity(),
        }
    }

    /// XADD `*` (server time). Not retried: a timeout may or may not have written the entry.
    pub async fn append(&self, fields: &[(String, String)]) -> Result<String> {
        let mut cmd = Command::write_once("XADD", &self.key);
        cmd.arg("*");
        for (k, v) in fields {
            cmd.arg(k).arg(v);
        }
        self.store.query(&cmd).await
    }

    /// Many XADDs as one send-once pipeline: each entry gets its own ID or its own error, in
    /// order (IDs increase in the order of `entries`). A timeout or a dropped link fails every
    /// entry of the pipeline: each may or may not have been written; none is sent twice.
    pub async fn append_many(&self, entries: &[Vec<(String, String)>]) -> Vec<Result<String>> {
        let cmds: Vec<Command> = entries
            .iter()
            .map(|fields| {
                let mut cmd = Command::write_once("XADD", &self.key);
                cmd.arg("*");
                for (k, v) in fields {
                    cmd.arg(k).arg(v);
                }
                cmd
            })
            .collect();
        match self.store.pipeline_once(&cmds).await {
            Ok(replies) => replies
                .into_iter()
                .map(|r| {
                    r.and_then(|v| {
                        String::from_redis_value(v).map_err(|e| {
                            Error::Redis(format!("unexpected reply from Redis to XADD: {e}"))
                        })
                    })
                })
                .collect(),
            Err(e) => entries.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Runs a query, paging with COUNT and filtering here, so `limit` counts matches.
    pub async fn query(&self, q: &Query) -> Result<Vec<ActivityEntry>> {
        let mut out: Vec<ActivityEntry> = Vec::with_capacity(q.limit.min(PAGE) as usize);
        self.each_match(q, |e| {
            out.push(e.into_owned());
            true
        })
        .await?;
        Ok(out)
    }

    /// Runs a query straight to a JSON array (the form the Node layer hands to `JSON.parse`):
    /// each page is serialised while the next one is read, and no entry vector is kept.
    pub async fn query_json(&self, q: &Query) -> Result<String> {
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        buf.push(b'[');
        self.each_match(q, |e| {
            if buf.len() > 1 {
                buf.push(b',');
            }
            // Serialising strings and numbers into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut buf, &e);
            true
        })
        .await?;
        buf.push(b']');
        Ok(String::from_utf8(buf).unwrap_or_else(|_| "[]".into()))
    }

    /// Feeds every entry matching `q` to `sink`, in order, up to `q.limit`. Pages of
    /// [`PAGE`] are read one ahead: Redis and the reply parser work on page k+1 while page k
    /// is decoded and handed over.
    async fn each_match(
        &self,
        q: &Query,
        mut sink: impl FnMut(EntryRef<'_>) -> bool,
    ) -> Result<()> {
        let filtered = q.instance_id.is_some() || q.events.is_some();
        let mut delivered: u64 = 0;
        let (mut lo, mut hi) = (q.since.clone(), q.until.clone());
        let first = q.limit.min(PAGE);
        let mut pending = Some((first, self.spawn_page(q.reverse, &lo, &hi, first)));
        while let Some((count, task)) = pending.take() {
            let page = task
                .await
                .map_err(|e| Error::Redis(format!("query task failed: {e}")))??;
            let (got, last_id) = page.extent();
            let after_this = delivered + got;
            if let (true, Some(id)) = (got == count, last_id) {
                // Continue after the last ID seen (exclusive ranges, Redis >= 6.2).
                if q.reverse {
                    hi = format!("({id}");
                } else {
                    lo = format!("({id}");
                }
                let next = if filtered {
                    Some(PAGE)
                } else {
                    (after_this < q.limit).then(|| (q.limit - after_this).min(PAGE))
                };
                if let Some(n) = next {
                    pending = Some((n, self.spawn_page(q.reverse, &lo, &hi, n)));
                }
            }
            let mut done = false;
            let mut visit = |e: EntryRef<'_>| -> bool {
                if q.instance_id
                    .as_ref()
                    .is_some_and(|id| id.as_str() != e.instance_id.as_ref())
                {
                    return true;
                }
                if q.events
                    .as_ref()
                    .is_some_and(|ev| !ev.iter().any(|x| x.as_str() == e.event.as_ref()))
                {
                    return true;
                }
                delivered += 1;
                if !sink(e) || delivered >= q.limit {
                    done = true;
                    return false;
                }
                true
            };
            match page {
                // The bytes were checked by `extent`; a walk cannot fail half-way on them.
                Page::Bytes { bytes, .. } => {
                    let _ = crate::core::resp::for_each_entry(&bytes, &mut visit);
                }
                Page::Tree(v) => {
                    for e in decode_range(v) {
                        if !visit(EntryRef::from(&e)) {
                            break;
                        }
                    }
                }
            }
            if done {
                if let Some((_, t)) = pending.take() {
                    t.abort();
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// Reads one page: over a direct connection decoded from its bytes where that works
    /// (`direct.rs`, `resp.rs`), else through the crate.
    fn spawn_page(
        &self,
        reverse: bool,
        lo: &str,
        hi: &str,
        count: u64,
    ) -> tokio::task::JoinHandle<Result<Page>> {
        let mut cmd = Command::read(if reverse { "XREVRANGE" } else { "XRANGE" }, &self.key);
        if reverse {
            cmd.arg(hi).arg(lo);
        } else {
            cmd.arg(lo).arg(hi);
        }
        cmd.arg("COUNT").arg(count);
        let store = self.store.clone();
        let key = self.key.clone();
        tokio::spawn(async move {
            if let Some(bytes) = store.query_bytes(&key, &cmd).await {
                let bytes = bytes?;
                if let Ok(extent) = crate::core::resp::extent(&bytes) {
                    return Ok(Page::Bytes { bytes, extent });
                }
            }
            store.query::<Value>(&cmd).await.map(Page::Tree)
        })
    }

    /// `XTRIM MINID ~ <server now - retention>`; the count Redis reports.
    pub async fn trim(&self, retention_ms: u64) -> Result<u64> {
        let now = server_time_ms(&self.store, &self.key).await?;
        let cutoff = now.saturating_sub(retention_ms);
        let mut cmd = Command::write("XTRIM", &self.key);
        cmd.arg("MINID").arg("~").arg(cutoff);
        self.store.query(&cmd).await
    }

    /// XLEN.
    pub async fn len(&self) -> Result<u64> {
        let cmd = Command::read("XLEN", &self.key);
        self.store.query(&cmd).await
    }

    /// Whether an entry of `instance_id` with `field == value` exists at or after `since_ms`
    /// (a bounded XRANGE, paged): how a death report is known written.
    pub async fn has_field_since(
        &self,
        since_ms: u64,
        instance_id: &str,
        field: &str,
        value: &str,
    ) -> Result<bool> {
        const COUNT: usize = 1000;
        let mut lo = since_ms.to_string();
        loop {
            let mut cmd = Command::read("XRANGE", &self.key);
            cmd.arg(&lo).arg("+").arg("COUNT").arg(COUNT);
            let page = decode_range(self.store.query::<Value>(&cmd).await?);
            let found = page.iter().any(|e| {
                e.instance_id == instance_id
                    && e.fields.iter().any(|(k, v)| k == field && v == value)
            });
            match page.last() {
                _ if found => return Ok(true),
                Some(last) if page.len() == COUNT => lo = format!("({}", last.id),
                _ => return Ok(false),
            }
        }
    }

    /// The newest entry's ID, or `0-0` for an empty stream: where a tail starts.
    pub async fn last_id(&self) -> Result<String> {
        let mut cmd = Command::read("XREVRANGE", &self.key);
        cmd.arg("+").arg("-").arg("COUNT").arg(1);
        let page = decode_range(self.store.query::<Value>(&cmd).await?);
        Ok(page
            .first()
            .map(|e| e.id.clone())
            .unwrap_or_else(|| "0-0".into()))
    }

    /// One blocking read of entries after `after`, waiting up to `block`.
    pub async fn read_after(
        &self,
        after: &str,
        block: std::time::Duration,
        count: u64,
    ) -> Result<Vec<ActivityEntry>> {
        let mut cmd = Command::with_args(Kind::Read, "XREAD", Some(&self.key));
        cmd.arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(after);
        let v: Value = self.store.query(&cmd).await?;
        Ok(decode_xread(v))
    }
}

/// Appends entries on behalf of an author, after the tail (if one is starting) has fixed
/// its start point: a listener attached before a write always hears that write.
#[derive(Clone)]
pub struct Writer {
    log: ActivityLog,
    /// `false` while a tail is starting; see [`Writer::append_as`].
    tail_ready: tokio::sync::watch::Receiver<bool>,
    /// Longest an append waits for a starting tail.
    wait_limit: std::time::Duration,
    /// Counts appends by result.
    metrics: std::sync::Arc<crate::core::metrics::Metrics>,
    /// Where appends are traced (`perseus:activity:append`), when the host traces them.
    tracer: Option<std::sync::Arc<dyn crate::core::trace::Tracer>>,
}

impl Writer {
    pub fn new(
        log: ActivityLog,
        tail_ready: tokio::sync::watch::Receiver<bool>,
        wait_limit: std::time::Duration,
        metrics: std::sync::Arc<crate::core::metrics::Metrics>,
    ) -> Self {
        Writer {
            log,
            tail_ready,
            wait_limit,
            metrics,
            tracer: None,
        }
    }

    /// Traces every append to `sink` while it traces them (see [`crate::core::trace::Trace`]).
    pub fn traced_by(mut self, sink: std::sync::Arc<dyn crate::core::trace::Tracer>) -> Self {
        self.tracer = Some(sink);
        self
    }

    /// Starts timing an append when the host traces appends.
    fn trace_start(&self) -> Option<crate::core::trace::TraceTimer> {
        let sink = self.tracer.as_deref()?;
        crate::core::trace::TraceTimer::start(sink, crate::core::trace::TraceKind::Append)
    }

    /// Emits one append's trace: the events sent and each one's ID (null where it failed).
    fn trace_end(
        &self,
        timer: Option<crate::core::trace::TraceTimer>,
        events: Vec<&str>,
        results: &[&Result<String>],
    ) {
        let (Some(t), Some(sink)) = (timer, self.tracer.as_deref()) else {
            return;
        };
        let ids: Vec<serde_json::Value> = results
            .iter()
            .map(|r| match r {
                Ok(id) => id.clone().into(),
                Err(_) => serde_json::Value::Null,
            })
            .collect();
        let error = results.iter().find_map(|r| r.as_ref().err().cloned());
        let trace = t
            .finish()
            .with("count", events.len())
            .with("events", events)
            .with("ids", ids)
            .failed(error);
        sink.trace(trace);
    }

    /// The stream this writer appends to (for reads of it).
    pub fn log(&self) -> &ActivityLog {
        &self.log
    }

    /// Appends one entry written by `author` (the sweeper writes for lost peers).
    pub async fn append_as(&self, author: &Author, input: &ActivityInput) -> Result<String> {
        if !*self.tail_ready.borrow() {
            let mut ready = self.tail_ready.clone();
            let _ = tokio::time::timeout(self.wait_limit, ready.wait_for(|r| *r)).await;
        }
        let timer = self.trace_start();
        let fields = encode(author, input, &crate::core::clock::iso_now());
        let appended = self.log.append(&fields).await;
        self.metrics.appended(appended.is_ok());
        self.trace_end(timer, vec![input.event.as_str()], &[&appended]);
        appended
    }

    /// Appends many entries by `author` as one send-once pipeline (a tick's `logActivity`
    /// calls): each gets its own ID or error, in order. Inputs must be validated already.
    pub async fn append_many_as(
        &self,
        author: &Author,
        inputs: &[&ActivityInput],
    ) -> Vec<Result<String>> {
        if !*self.tail_ready.borrow() {
            let mut ready = self.tail_ready.clone();
            let _ = tokio::time::timeout(self.wait_limit, ready.wait_for(|r| *r)).await;
        }
        let timer = self.trace_start();
        let ts = crate::core::clock::iso_now();
        let entries: Vec<_> = inputs.iter().map(|i| encode(author, i, &ts)).collect();
        let appended = self.log.append_many(&entries).await;
        // Counted per entry, as single appends are.
        for r in &appended {
            self.metrics.appended(r.is_ok());
        }
        let events = inputs.iter().map(|i| i.event.as_str()).collect();
        self.trace_end(timer, events, &appended.iter().collect::<Vec<_>>());
        appended
    }
}

/// Decodes an XREAD reply for one stream (RESP2 array or RESP3 map); nil means nothing new.
fn decode_xread(v: Value) -> Vec<ActivityEntry> {
    match v {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => {
                    decode_range(kv.pop().unwrap_or(Value::Nil))
                }
                _ => vec![],
            })
            .collect(),
        Value::Map(m) => m.into_iter().flat_map(|(_, v)| decode_range(v)).collect(),
        _ => vec![],
    }
}

/// The server's clock in ms (TIME), read on the node that owns `key`'s slot in a cluster.
pub async fn server_time_ms(store: &Store, key: &str) -> Result<u64> {
    // TIME takes no key; a one-key script routes it to the key's node in a cluster.
    let script = redis::Script::new(
        "local t = redis.call('TIME') return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)",
    );
    store.script(&script, &[key], &[]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let author = Author {
            instance_id: "i".into(),
            exchange: "coinbase".into(),
            exchange_id: 7,
            hostname: "h".into(),
            public_ip: Some("203.0.113.7".into()),
        };
        let input = ActivityInput {
            event: "STATE_CHANGE".into(),
            reason: Some("why".into()),
            from_state: Some(State::Idle),
            to_state: Some(State::Registering),
            fields: vec![("symbol".into(), "BTC-USD".into())],
        };
        let f = encode(&author, &input, "2026-01-01T00:00:00.000Z");
        let flat: Vec<Value> = f.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect();
        let e = decode("1707580800000-3", flat);
        assert_eq!(e.time, 1707580800000);
        assert_eq!(e.instance_id, "i");
        assert_eq!(e.exchange_id, Some(7));
        assert_eq!(e.from_state, Some(State::Idle));
        assert_eq!(e.to_state, Some(State::Registering));
        assert_eq!(e.reason.as_deref(), Some("why"));
        assert_eq!(e.public_ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(e.ts, "2026-01-01T00:00:00.000Z");
        assert_eq!(
            e.fields,
            vec![("symbol".to_string(), "BTC-USD".to_string())]
        );
    }

    #[test]
    fn decode_tolerates_foreign_entries() {
        let flat = vec![
            bulk("event"),
            bulk("X"),
            Value::BulkString(vec![0xff, 0xfe]),
            bulk("v"),
            bulk("exchangeId"),
            bulk("nope"),
            bulk("fromState"),
            bulk("zombie"),
            bulk("odd"),
        ];
        let e = decode("garbage", flat);
        assert_eq!(e.time, 0);
        assert_eq!(e.event, "X");
        assert_eq!(e.exchange_id, None);
        assert_eq!(e.from_state, None);
        assert_eq!(
            e.fields,
            vec![("\u{fffd}\u{fffd}".to_string(), "v".to_string())]
        );
        assert!(decode_range(Value::Int(3)).is_empty());
        assert_eq!(
            decode_range(Value::Array(vec![
                Value::Nil,
                Value::Array(vec![bulk("1-1"), Value::Nil])
            ]))
            .len(),
            1
        );
    }

    #[test]
    fn inputs_are_validated() {
        let ok = ActivityInput {
            event: "ORDER_BOOK_RESYNC".into(),
            ..Default::default()
        };
        assert!(validate_input(&ok).is_ok());
        for bad in ["", "lower", "1ABC", "A-B", &"A".repeat(65)] {
            let i = ActivityInput {
                event: bad.into(),
                ..Default::default()
            };
            assert!(
                matches!(validate_input(&i), Err(Error::InvalidOption(m)) if m.starts_with("event"))
            );
        }
        let i = ActivityInput {
            event: "E".into(),
            reason: Some("x".repeat(1025)),
            ..Default::default()
        };
        assert!(
            matches!(validate_input(&i), Err(Error::InvalidOption(m)) if m.starts_with("reason"))
        );
        let i = ActivityInput {
            event: "E".into(),
            fields: vec![("ts".into(), "1".into())],
            ..Default::default()
        };
        assert!(
            matches!(validate_input(&i), Err(Error::InvalidOption(m)) if m.starts_with("fields.ts"))
        );
    }

    #[test]
    fn bounds_parse_or_name_the_argument() {
        assert_eq!(parse_bound("since", &Bound::Ms(5.0)).unwrap(), "5");
        assert_eq!(
            parse_bound("since", &Bound::Id("1-2".into())).unwrap(),
            "1-2"
        );
        assert_eq!(parse_bound("until", &Bound::Id("+".into())).unwrap(), "+");
        for bad in [
            Bound::Ms(-1.0),
            Bound::Ms(f64::NAN),
            Bound::Ms(1.5),
            Bound::Id("yesterday".into()),
            Bound::Id("1-".into()),
            Bound::Id("-1".into()),
        ] {
            assert!(
                matches!(parse_bound("since", &bad), Err(Error::InvalidOption(m)) if m.starts_with("since"))
            );
        }
        assert!(
            matches!(make_query(None, None, Some(0.0), false, None, None), Err(Error::InvalidOption(m)) if m.starts_with("limit"))
        );
        assert_eq!(
            make_query(None, None, None, false, None, None)
                .unwrap()
                .limit,
            1000
        );
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(id in ".{0,40}", raw in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20), 0..15)) {
            let flat: Vec<Value> = raw.into_iter().map(Value::BulkString).collect();
            let _ = decode(&id, flat);
        }

        #[test]
        fn bound_parser_never_panics(s in ".{0,40}", ms in proptest::prelude::any::<f64>()) {
            let _ = parse_bound("since", &Bound::Id(s.clone()));
            let _ = parse_bound("since", &Bound::Ms(ms));
            if let Ok(v) = parse_bound("since", &Bound::Id(s)) { proptest::prop_assert!(v == "-" || v == "+" || is_stream_id(&v)); }
        }
    }
}
