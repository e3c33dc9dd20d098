//! The record cache: parsed records reused from sweep to sweep while their fingerprint holds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::core::error::Result;
use crate::core::registry::{beat_of, parse_record, InstanceInfo, Registry};

/// Parsed records from earlier sweeps, keyed by id with the fingerprint they were read at:
/// a sweep reads three small fields per instance and re-reads a whole hash only when those
/// changed (a transition, a rejoin, a public IP filled in) — so a sweep's cost is dominated
/// by the heartbeats it must check, not by re-parsing every record.
#[derive(Default)]
pub(super) struct RecordCache {
    records: HashMap<String, (String, InstanceInfo)>,
    /// When the cache was last emptied: it is rebuilt from full reads every
    /// [`RECORD_CACHE_MAX_AGE`], so a foreign edit of another field shows up eventually.
    since: Option<Instant>,
}

/// Longest a parsed record is reused without a full read.
pub(super) const RECORD_CACHE_MAX_AGE: Duration = Duration::from_secs(30);

/// One instance as a sweep sees it.
pub(super) struct Swept {
    pub(super) id: String,
    /// `None`: hash missing (`missing`) or not parsable.
    pub(super) info: Option<InstanceInfo>,
    pub(super) missing: bool,
    /// The death report the record still owes, if any.
    pub(super) report_token: Option<String>,
    pub(super) heartbeat: Option<String>,
    pub(super) heartbeat_pttl: i64,
}

impl RecordCache {
    /// `with_pttl`: also read each heartbeat's PTTL (scan mode finds its next expiry by it).
    pub(super) async fn refresh(
        &mut self,
        registry: &Registry,
        ids: &[String],
        with_pttl: bool,
    ) -> Result<Vec<Swept>> {
        if self
            .since
            .is_none_or(|t| t.elapsed() >= RECORD_CACHE_MAX_AGE)
        {
            self.records.clear();
            self.since = Some(Instant::now());
        }
        let light = registry.read_light(ids, with_pttl).await?;
        let stale: Vec<String> = light
            .iter()
            .filter(|l| match (&l.fingerprint, self.records.get(&l.id)) {
                (Some(f), Some((cached, _))) => f != cached,
                (Some(_), None) => true,
                (None, _) => false,
            })
            .map(|l| l.id.clone())
            .collect();
        let mut fresh: HashMap<String, Option<InstanceInfo>> = HashMap::new();
        for r in registry.read_raw(&stale).await? {
            fresh.insert(r.id.clone(), parse_record(&r.id, &r.hash, None));
        }
        let mut kept = HashMap::with_capacity(light.len());
        let mut out = Vec::with_capacity(light.len());
        for l in light {
            let info = match (&l.fingerprint, fresh.remove(&l.id)) {
                (None, _) => None,
                (Some(_), Some(parsed)) => parsed,
                (Some(_), None) => self.records.remove(&l.id).map(|(_, info)| info),
            };
            let info = info.map(|mut i| {
                i.alive = l.heartbeat.is_some();
                (i.last_heartbeat, i.health) = beat_of(l.heartbeat.as_deref());
                i
            });
            if let (Some(f), Some(i)) = (&l.fingerprint, &info) {
                kept.insert(l.id.clone(), (f.clone(), i.clone()));
            }
            out.push(Swept {
                missing: l.fingerprint.is_none(),
                report_token: l.report_token,
                id: l.id,
                info,
                heartbeat: l.heartbeat,
                heartbeat_pttl: l.heartbeat_pttl,
            });
        }
        self.records = kept;
        Ok(out)
    }
}
