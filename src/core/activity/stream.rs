//! One stream's reads and writes: XADD (single and pipelined, never sent twice), paged
//! range reads (raw bytes where the direct path serves them), XTRIM, XLEN and XREAD.

use redis::{FromRedisValue, Value};

use super::decode::{decode_range, decode_xread, for_each_entry, page_extent};
use super::entry::{each_field, ActivityEntry, ActivityInput, Author, EntryRef};
use super::query::Query;
use crate::core::error::{Error, Result};
use crate::core::keys::Keys;
use crate::core::store::{Command, Kind, Store};
use crate::core::wire::{pipeline, resp};

/// Entries read per XRANGE round trip.
const PAGE: u64 = 10_000;

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

/// The ID in an append's reply: XADD's bulk string, or `APPEND_ONCE`'s `{id, written}`.
fn entry_id(v: Value, scripted: bool) -> Result<String> {
    let v = match v {
        Value::Array(mut items) if scripted && !items.is_empty() => items.swap_remove(0),
        v => v,
    };
    String::from_redis_value(v)
        .map_err(|e| Error::Redis(format!("unexpected reply from Redis to XADD: {e}")))
}

/// Reads and writes one stream.
#[derive(Clone)]
pub struct ActivityLog {
    store: Store,
    key: String,
}

/// How a batch of application entries must be acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Durability {
    /// Replicas that must hold the batch (`WAIT`); 0: the master's reply is enough.
    pub replicas: u32,
    /// How long `WAIT` may take.
    pub wait: std::time::Duration,
}

impl ActivityLog {
    pub fn new(store: Store, keys: &Keys) -> Self {
        ActivityLog {
            store,
            key: keys.activity(),
        }
    }

    /// The same stream over another connection (replicated appends use their own).
    pub fn over(&self, store: Store) -> Self {
        ActivityLog {
            store,
            ..self.clone()
        }
    }

    /// One application entry as a command written straight from its parts (no field list in
    /// between): `XADD <stream> * <fields>`, or, with an idempotency key, the `APPEND_ONCE`
    /// script under that token. Sent at most once either way.
    fn entry_command(
        &self,
        author: &Author,
        exchange_id: &str,
        input: &ActivityInput,
        ts: &str,
        sha: &str,
    ) -> Command {
        let mut cmd = match &input.idempotency_key {
            None => {
                let mut c = Command::write_once("XADD", &self.key);
                c.arg("*");
                c
            }
            Some(token) => self.append_once_command(sha, token),
        };
        each_field(author, exchange_id, input, ts, |k, v| {
            cmd.arg(k).arg(v);
        });
        cmd
    }

    /// Appends one entry's `XADD <stream> * <fields...>` to `buf`, packed as the crate would
    /// pack it (the layout is [`each_field`]'s, as for [`ActivityLog::entry_command`]).
    fn pack_xadd(
        &self,
        buf: &mut Vec<u8>,
        author: &Author,
        exchange_id: &str,
        input: &ActivityInput,
        ts: &str,
    ) {
        let mut fields = 0;
        each_field(author, exchange_id, input, ts, |_, _| fields += 1);
        pipeline::command(buf, 3 + 2 * fields);
        for a in ["XADD", self.key.as_str(), "*"] {
            pipeline::arg(buf, a.as_bytes());
        }
        each_field(author, exchange_id, input, ts, |k, v| {
            pipeline::arg(buf, k.as_bytes());
            pipeline::arg(buf, v.as_bytes());
        });
    }

    /// Application entries as one send-once pipeline, each with its own ID or error, in
    /// order. Keyed inputs go through `APPEND_ONCE` (its `SCRIPT LOAD` leads the pipeline, so
    /// the `EVALSHA`s after it find the script even on a fresh or failed-over server). With
    /// `durability.replicas`, a `WAIT` ends the pipeline, and an entry whose batch fewer
    /// replicas acknowledged in time fails with a timeout (it may exist).
    pub async fn append_inputs(
        &self,
        author: &Author,
        inputs: &[&ActivityInput],
        ts: &str,
        durability: Durability,
    ) -> Vec<Result<String>> {
        let exchange_id = author.exchange_id.to_string();
        let keyed = inputs.iter().any(|i| i.idempotency_key.is_some());
        let sha = if keyed {
            Self::append_once_sha()
        } else {
            String::new()
        };
        if !keyed && durability.replicas == 0 {
            // Standalone, plain appends: packed straight into one buffer, sent over a direct
            // connection (issue 21); `None` when it could not be sent that way.
            let mut packed = Vec::with_capacity(inputs.len() * 256);
            for i in inputs {
                self.pack_xadd(&mut packed, author, &exchange_id, i, ts);
            }
            let label = format!("XADD {}", self.key);
            if let Some(out) = self
                .store
                .pipeline_once_direct(&label, packed, inputs.len())
                .await
            {
                return out;
            }
        }
        let mut cmds = Vec::with_capacity(inputs.len() + 2);
        if keyed {
            cmds.push(self.load_append_once());
        }
        let first = cmds.len();
        cmds.extend(
            inputs
                .iter()
                .map(|i| self.entry_command(author, &exchange_id, i, ts, &sha)),
        );
        if durability.replicas > 0 {
            let mut wait = Command::with_args(Kind::Write, "WAIT", Some(&self.key));
            wait.arg(durability.replicas)
                .arg(durability.wait.as_millis() as u64);
            cmds.push(wait);
        }
        let mut replies = match self.store.pipeline_once(cmds).await {
            Ok(r) => r,
            Err(e) => return inputs.iter().map(|_| Err(e.clone())).collect(),
        };
        let waited = (durability.replicas > 0).then(|| replies.pop()).flatten();
        let mut out: Vec<Result<String>> = replies
            .into_iter()
            .skip(first)
            .zip(inputs)
            .map(|(r, i)| r.and_then(|v| entry_id(v, i.idempotency_key.is_some())))
            .collect();
        if let Some(waited) = waited {
            let short = match waited.and_then(|v| {
                i64::from_redis_value(v).map_err(|e| {
                    Error::Redis(format!("unexpected reply from Redis to WAIT: {e}"))
                })
            }) {
                Ok(n) if n >= i64::from(durability.replicas) => None,
                Ok(n) => Some(Error::Timeout(format!(
                    "WAIT {key}: {n} of {want} replicas acknowledged the entry within {ms} ms (activityReplicas); the entry may exist",
                    key = self.key,
                    want = durability.replicas,
                    ms = durability.wait.as_millis()
                ))),
                Err(e) => Some(e),
            };
            if let Some(e) = short {
                for r in out.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(e.clone());
                }
            }
        }
        out
    }

    /// The connection this stream is read and written over (for the append-once module).
    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    /// The stream's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The one XADD builder: `XADD <stream> * <fields...>`, sent at most once.
    fn xadd(&self, fields: &[(String, String)]) -> Command {
        let mut cmd = Command::write_once("XADD", &self.key);
        cmd.arg("*");
        for (k, v) in fields {
            cmd.arg(k).arg(v);
        }
        cmd
    }

    /// XADD `*` (server time). Not retried: a timeout may or may not have written the entry.
    pub async fn append(&self, fields: &[(String, String)]) -> Result<String> {
        self.store.query(&self.xadd(fields)).await
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
                    let _ = for_each_entry(&bytes, &mut visit);
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
    /// (`store/direct.rs`, `wire/resp.rs`), else through the crate.
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
                if let Ok(extent) = resp::extent(&bytes) {
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

/// The server's clock in ms (TIME), read on the node that owns `key`'s slot in a cluster.
pub async fn server_time_ms(store: &Store, key: &str) -> Result<u64> {
    // TIME takes no key; a one-key script routes it to the key's node in a cluster.
    let script = redis::Script::new(
        "local t = redis.call('TIME') return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)",
    );
    store.script(&script, &[key], &[]).await
}
