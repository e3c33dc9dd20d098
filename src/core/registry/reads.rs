//! Reading records back: listings (full, light, with heartbeats), the index view, TTLs and
//! pending death reports. Garbage written by others is skipped, never an error.

use redis::Value;

use super::model::*;
use super::Registry;
use crate::core::config::Discovery;
use crate::core::error::Result;
use crate::core::fsm::State;
use crate::core::index::{self, IndexView};
use crate::core::store::Command;
use crate::core::wire::text::{hash_from_value, text};

impl Registry {
    /// The ids of every known instance: from the index, or by SCAN of the hashes.
    pub async fn ids(&self, discovery: Discovery) -> Result<Vec<String>> {
        match discovery {
            Discovery::Index => {
                let mut cmd = Command::read("ZRANGE", &self.keys.instances());
                cmd.arg(0).arg(-1);
                let raw: Vec<Vec<u8>> = self.store.query(&cmd).await?;
                Ok(raw
                    .into_iter()
                    .filter_map(|b| String::from_utf8(b).ok())
                    .collect())
            }
            Discovery::Scan => {
                let keys = self.store.scan_match(&self.keys.instance_pattern()).await?;
                Ok(keys
                    .iter()
                    .filter_map(|k| self.keys.instance_id_of(k).map(str::to_string))
                    .collect())
            }
        }
    }

    /// Reads hash, heartbeat and heartbeat PTTL of each id in one round trip.
    pub async fn read_raw(&self, ids: &[String]) -> Result<Vec<RawInstance>> {
        self.read_full(ids, true).await
    }

    /// What a listing needs: hash and heartbeat payload of each id (no PTTL: a third fewer
    /// commands; `heartbeat_pttl` reads -2).
    pub async fn read_records(&self, ids: &[String]) -> Result<Vec<RawInstance>> {
        self.read_full(ids, false).await
    }

    pub(super) async fn read_full(
        &self,
        ids: &[String],
        with_pttl: bool,
    ) -> Result<Vec<RawInstance>> {
        let reads = self
            .read_with_heartbeats(ids, |key| Command::read("HGETALL", key), with_pttl)
            .await?;
        Ok(reads
            .into_iter()
            .map(|(id, h, heartbeat, heartbeat_pttl)| RawInstance {
                id,
                // A wrong-type key (someone else's data) reads as empty, never as an error.
                hash: h.map(hash_from_value).unwrap_or_default(),
                heartbeat,
                heartbeat_pttl,
            })
            .collect())
    }

    /// The cheap per-sweep read: each id's state, lastStateChange and publicIp (what changes
    /// when a record changes), its owed death report, heartbeat payload and PTTL, in one
    /// round trip.
    /// Without `with_pttl`, `heartbeat_pttl` reads -2.
    pub async fn read_light(&self, ids: &[String], with_pttl: bool) -> Result<Vec<LightInstance>> {
        let reads = self
            .read_with_heartbeats(
                ids,
                |key| {
                    let mut c = Command::read("HMGET", key);
                    c.arg("state")
                        .arg("lastStateChange")
                        .arg("publicIp")
                        .arg("reportToken");
                    c
                },
                with_pttl,
            )
            .await?;
        Ok(reads
            .into_iter()
            .map(|(id, h, heartbeat, heartbeat_pttl)| LightInstance {
                id,
                // Missing hash: all fields nil. A wrong-type key reads the same.
                fingerprint: match &h {
                    Ok(Value::Array(f)) if f.iter().take(3).any(|v| *v != Value::Nil) => Some(
                        f.iter()
                            .take(3)
                            .map(|v| text(v).unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join("\u{1f}"),
                    ),
                    _ => None,
                },
                report_token: match &h {
                    Ok(Value::Array(f)) => f.get(3).and_then(text).filter(|t| !t.is_empty()),
                    _ => None,
                },
                heartbeat,
                heartbeat_pttl,
            })
            .collect())
    }

    /// For each id: `hash_cmd(<instance key>)`, the heartbeat payload and (`with_pttl`) its
    /// PTTL (ms; -2 when absent or not read), all in one round trip. The hash reply stays per
    /// key, so one bad key cannot fail the others.
    pub(super) async fn read_with_heartbeats(
        &self,
        ids: &[String],
        hash_cmd: impl Fn(&str) -> Command,
        with_pttl: bool,
    ) -> Result<
        Vec<(
            String,
            std::result::Result<Value, String>,
            Option<String>,
            i64,
        )>,
    > {
        let mut cmds = Vec::with_capacity(ids.len() * if with_pttl { 3 } else { 2 });
        for id in ids {
            let heartbeat = self.keys.heartbeat(id);
            cmds.push(hash_cmd(&self.keys.instance(id)));
            cmds.push(Command::read("GET", &heartbeat));
            if with_pttl {
                cmds.push(Command::read("PTTL", &heartbeat));
            }
        }
        let replies = self.store.query_many(cmds).await?;
        let mut out = Vec::with_capacity(ids.len());
        let mut it = replies.into_iter();
        for id in ids {
            let (Some(h), Some(g)) = (it.next(), it.next()) else {
                break;
            };
            let pttl = match with_pttl.then(|| it.next()).flatten() {
                Some(Ok(Value::Int(n))) => n,
                _ => -2,
            };
            out.push((id.clone(), h, g.ok().as_ref().and_then(text), pttl));
        }
        Ok(out)
    }

    // ─── Writes ─────────────────────────────────────────────────────────────────

    /// The index members whose deadline passed by the index node's clock, and the next one.
    pub async fn index_view(&self) -> Result<IndexView> {
        index::view(&self.store, &self.keys).await
    }

    /// Remaining TTL (ms) of each id's record; `None` when it has none or is gone.
    pub async fn record_ttls(&self, ids: &[String]) -> Result<Vec<Option<u64>>> {
        let cmds = ids
            .iter()
            .map(|id| Command::read("PTTL", &self.keys.instance(id)))
            .collect();
        Ok(self
            .store
            .query_many(cmds)
            .await?
            .into_iter()
            .map(|r| match r {
                Ok(Value::Int(ms)) if ms > 0 => Some(ms as u64),
                _ => None,
            })
            .collect())
    }

    /// The death report `id`'s record still owes, with the state it was lost from.
    pub async fn pending_report(&self, id: &str) -> Result<Option<(PendingReport, Option<State>)>> {
        let mut cmd = Command::read("HMGET", &self.keys.instance(id));
        cmd.arg("state")
            .arg("reportToken")
            .arg("reportAt")
            .arg("lostFrom");
        let v: Vec<Option<String>> = self.store.query(&cmd).await?;
        let field = |i: usize| v.get(i).cloned().flatten();
        let token = field(1).filter(|t| !t.is_empty());
        Ok(match (field(0).as_deref(), token) {
            (Some("dead"), Some(token)) => Some((
                PendingReport {
                    token,
                    at_ms: field(2).and_then(|t| t.parse().ok()).unwrap_or(0),
                },
                field(3).and_then(|s| s.parse().ok()),
            )),
            _ => None,
        })
    }

    /// How `id`'s record stands towards its HEARTBEAT_LOST report (all `None`: no record).
    pub async fn lapse_of(&self, id: &str) -> Result<Lapse> {
        let mut cmd = Command::read("HMGET", &self.keys.instance(id));
        cmd.arg("reportToken").arg("lostToken").arg("lostFrom");
        let v: Vec<Option<String>> = self.store.query(&cmd).await?;
        let field = |i: usize| v.get(i).cloned().flatten().filter(|t| !t.is_empty());
        Ok(Lapse {
            report_token: field(0),
            lost_token: field(1),
            lost_from: field(2).and_then(|s| s.parse().ok()),
        })
    }

    /// One instance, or `None` when missing or unparsable.
    pub async fn get(&self, id: &str) -> Result<Option<InstanceInfo>> {
        let raw = self.read_raw(&[id.to_string()]).await?;
        Ok(raw
            .first()
            .and_then(|r| parse_record(&r.id, &r.hash, r.heartbeat.as_deref())))
    }
}
