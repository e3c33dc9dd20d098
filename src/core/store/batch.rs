//! Many single-key commands at once, with one retry policy (by each command's declared
//! kind, as for single commands): a standalone pipeline (reads re-sent once after a dropped
//! link), or on a cluster one pipeline per master by the one cached slot table (read with
//! `CLUSTER SLOTS`, dropped after a redirect).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::future::join_all;
use redis::aio::ConnectionLike;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Pipeline, Value};

use super::errors::{is_dropped, labelled};
use super::{Command, Conn, Kind, Store};
use crate::core::error::{Error, Result};
use crate::core::wire::slots::{self, SlotTable};

/// Most commands in one pipeline to one cluster master (bigger batches are split; all are in
/// flight at once, so Redis works on one while the client parses another).
const CLUSTER_BATCH: usize = 2048;

/// Whether a reply is a cluster redirect (`MOVED`/`ASK`): the command ran nowhere and must be
/// sent where the cluster says.
fn is_redirect(v: &Value) -> bool {
    matches!(v, Value::ServerError(se) if matches!(se.code(), "MOVED" | "ASK"))
}

impl Store {
    /// Runs independent single-key commands as one round trip: a pipeline on a standalone
    /// server, concurrent requests on a cluster (each goes to its own slot's node). Each
    /// command keeps its own result so one bad key cannot fail the others.
    pub async fn query_many(
        &self,
        cmds: Vec<Command>,
    ) -> Result<Vec<std::result::Result<Value, String>>> {
        if cmds.is_empty() {
            return Ok(vec![]);
        }
        // Only an error about one key's data (say WRONGTYPE on someone else's key) stays per
        // key. A failed link, a cluster in failover (CLUSTERDOWN, TRYAGAIN, MOVED...) or a
        // refusal of the user (ACL, auth) fails the whole call: reading such a key as absent
        // would let a sweeper declare a live instance dead, or prune its index entry.
        if self.is_cluster() {
            self.query_many_cluster(cmds).await
        } else {
            let labels: Vec<String> = cmds.iter().map(|c| c.label.clone()).collect();
            // One retry policy with single commands: reads are re-sent once after a dropped
            // link; a pipeline holding any write is sent once.
            let reads = cmds.iter().all(|c| c.kind == Kind::Read);
            let mut pipe = redis::pipe();
            for c in cmds {
                pipe.add_command(c.cmd);
            }
            let values = self.pipeline_resending(&pipe, reads).await?;
            let mut out = Vec::with_capacity(values.len());
            for (v, label) in values.into_iter().zip(labels) {
                match self.reply_error(&v) {
                    None => out.push(Ok(v)),
                    Some((text, true)) => out.push(Err(format!("{label} failed: {text}"))),
                    Some((text, false)) => {
                        return Err(Error::Redis(format!("{label} failed: {text}")))
                    }
                }
            }
            Ok(out)
        }
    }

    /// A standalone pipeline that is sent once more after a dropped link when `reads` (every
    /// command in it a [`Kind::Read`]), as [`Store::query_raw`] does for one read: the
    /// multiplexed connection notices a dropped socket only when it next writes. The drop is
    /// still reported (a `connection` loss, then the recovery, counted as a reconnect), as it
    /// was before pipelines were re-sent: a Redis restart shows in the status and metrics.
    async fn pipeline_resending(&self, pipe: &Pipeline, reads: bool) -> Result<Vec<Value>> {
        let n = pipe.len();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let may_retry = reads && attempt == 1;
            let mut conn = self.conn();
            let sent = self
                .timed_with(
                    async {
                        match &mut conn {
                            Conn::Single(c) => c.req_packed_commands(pipe, 0, n).await,
                            Conn::Cluster(c) => c.req_packed_commands(pipe, 0, n).await,
                        }
                    },
                    true,
                    None,
                )
                .await;
            match sent {
                Ok(v) => {
                    self.name_if_resent(attempt);
                    return Ok(v);
                }
                Err((_, Some(e))) if may_retry && is_dropped(&e) => {
                    self.inner.resent.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("read pipeline re-sent after a dropped link");
                }
                Err((err, _)) => return Err(err),
            }
        }
    }

    /// One command of a cluster `query_many` sent on its own, by its declared kind: a
    /// [`Kind::WriteOnce`] over the send-once connection (never re-sent by the cluster
    /// client), anything else as [`Store::query_raw`] sends it.
    async fn query_single(&self, cmd: &Command) -> std::result::Result<Value, (Error, bool)> {
        match self.once_conn() {
            Some(once) if cmd.kind == Kind::WriteOnce => {
                self.query_once_raw(cmd, once).await.map_err(|e| (e, false))
            } // already labelled
            _ => self.query_raw(cmd).await,
        }
    }

    /// Cluster half of [`Store::query_many`]: the commands are grouped by the master serving
    /// their key's slot (from a cached `CLUSTER SLOTS` table) and each group goes to its master
    /// as pipelines of at most [`CLUSTER_BATCH`] commands, every pipeline in flight at once. A
    /// command redirected (`MOVED`/`ASK`: slots migrated since the table was read) is sent again
    /// on its own, which the client routes and follows; the table is then read again. Commands
    /// with no key, or that must not be re-sent (`XADD`), go one by one as before.
    pub(super) async fn query_many_cluster(
        &self,
        cmds: Vec<Command>,
    ) -> Result<Vec<std::result::Result<Value, String>>> {
        let table = self.slot_table().await;
        let mut groups: Vec<Vec<usize>> =
            vec![Vec::new(); table.as_ref().map_or(0, |t| t.masters())];
        let mut singles = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            let master = match (&table, &c.key) {
                (Some(t), Some(key)) if c.kind != Kind::WriteOnce => {
                    t.master_of(slots::slot_of(key.as_bytes()))
                }
                _ => None,
            };
            match master {
                Some(m) => groups[m].push(i),
                None => singles.push(i),
            }
        }
        let mut replies: Vec<Option<Value>> = vec![None; cmds.len()];
        let batches = groups
            .iter()
            .enumerate()
            .flat_map(|(m, idx)| idx.chunks(CLUSTER_BATCH).map(move |chunk| (m, chunk)));
        let sent = join_all(batches.map(|(m, chunk)| {
            let slot = table.as_ref().map_or(0, |t| t.representative(m));
            let cmds = &cmds;
            async move { (chunk, self.pipeline_to_slot(cmds, chunk, slot).await) }
        }))
        .await;
        let mut redirected = false;
        for (chunk, result) in sent {
            let values = match result {
                Ok(v) => v,
                Err(e) => {
                    self.forget_slot_table();
                    return Err(e);
                }
            };
            for (i, v) in chunk.iter().zip(values) {
                if is_redirect(&v) {
                    redirected = true;
                    singles.push(*i);
                } else {
                    replies[*i] = Some(v);
                }
            }
        }
        if redirected {
            self.forget_slot_table(); // slots moved (a reshard): read the table again next time
        }
        let alone = join_all(singles.iter().map(|i| self.query_single(&cmds[*i]))).await;
        let mut failed: Vec<Option<(Error, bool)>> = Vec::new();
        failed.resize_with(cmds.len(), || None);
        for (i, r) in singles.iter().zip(alone) {
            match r {
                Ok(v) => replies[*i] = Some(v),
                Err(e) => failed[*i] = Some(e),
            }
        }
        let mut out = Vec::with_capacity(cmds.len());
        for (i, (reply, fail)) in replies.into_iter().zip(failed).enumerate() {
            match (reply, fail) {
                (Some(v), _) => match self.reply_error(&v) {
                    None => out.push(Ok(v)),
                    Some((text, true)) => {
                        out.push(Err(format!("{} failed: {text}", cmds[i].label)))
                    }
                    Some((text, false)) => {
                        return Err(Error::Redis(format!("{} failed: {text}", cmds[i].label)))
                    }
                },
                (None, Some((Error::Redis(m), true))) => out.push(Err(m)),
                (None, Some((e, _))) => return Err(e),
                (None, None) => {
                    return Err(Error::Redis(format!("{} failed: no reply", cmds[i].label)))
                }
            }
        }
        Ok(out)
    }

    /// One pipeline of `cmds[idx]` to the master serving `slot` (routed by the client's own
    /// slot map). A pipeline of reads whose link dropped is sent once more, like
    /// [`Store::query_raw`] does for one read.
    pub(super) async fn pipeline_to_slot(
        &self,
        cmds: &[Command],
        idx: &[usize],
        slot: u16,
    ) -> Result<Vec<Value>> {
        let mut pipe = redis::pipe();
        for i in idx {
            pipe.add_command(cmds[*i].cmd.clone());
        }
        let reads = idx.iter().all(|i| cmds[*i].kind == Kind::Read);
        let route = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let may_retry = reads && attempt == 1;
            let Conn::Cluster(mut c) = self.conn() else {
                return Err(Error::Redis("not a cluster connection".into()));
            };
            match self
                .timed_with(
                    c.route_pipeline(pipe.clone(), 0, idx.len(), route.clone()),
                    !may_retry,
                    Some(slot),
                )
                .await
            {
                Ok(v) if v.len() == idx.len() => return Ok(v),
                Ok(v) => {
                    return Err(Error::Redis(format!(
                        "pipeline of {} commands got {} replies",
                        idx.len(),
                        v.len()
                    )))
                }
                Err((_, Some(e))) if may_retry && is_dropped(&e) => continue,
                Err((err, _)) => {
                    return Err(labelled(err, || {
                        format!(
                            "pipeline of {} commands ({} ...)",
                            idx.len(),
                            cmds[idx[0]].label
                        )
                    }))
                }
            }
        }
    }

    /// The cached slot → master table, read with `CLUSTER SLOTS` when missing. `None` when it
    /// cannot be read (the batch then goes command by command, as the client routes them).
    pub(super) async fn slot_table(&self) -> Option<Arc<SlotTable>> {
        if let Some(t) = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Some(t);
        }
        let Conn::Cluster(mut c) = self.conn() else {
            return None;
        };
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS"); // what the client itself sends for its slot map: the ACL allows it
        let reply = self
            .timed(c.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random)))
            .await
            .ok()?;
        let table = Arc::new(SlotTable::from_cluster_slots(&reply)?);
        *self.inner.slots.lock().unwrap_or_else(|p| p.into_inner()) = Some(table.clone());
        Some(table)
    }

    pub(super) fn forget_slot_table(&self) {
        *self.inner.slots.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
