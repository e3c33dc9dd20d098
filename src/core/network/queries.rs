//! Operator calls (drain requests, forgetting, the lease, metrics) and queries (instances,
//! the network snapshot, the activity stream) of one network member.

use std::future::Future;
use std::sync::Arc;

use super::Network;
use crate::core::activity::{
    self, ActivityEntry, ActivityInput, ActivityLog, Durability, Query, Sink,
};
use crate::core::config::validate_instance_id;
use crate::core::control;
use crate::core::error::{Error, Result};
use crate::core::fsm::State;
use crate::core::registry::{parse_record, InstanceInfo};
use crate::core::store::Command;
use crate::core::sweeper::{state_counts, NetworkState};

/// The network-wide numbers an operator console shows (the dashboard's `/metrics` and
/// `/api/network`): counted in the core by the sweeper's own rule, from one live read, so a
/// console never re-derives them and every host shows the same.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSummary {
    /// Instances with a readable record, by state (every state present).
    pub counts: std::collections::BTreeMap<String, u64>,
    /// Instances whose heartbeat key exists.
    #[serde(serialize_with = "crate::core::wire::text::int")]
    pub alive: u64,
    /// Entries in the activity stream.
    #[serde(serialize_with = "crate::core::wire::text::int")]
    pub stream_length: u64,
    /// The sweeper lease holder, if any.
    pub sweeper: Option<control::SweeperLease>,
}

impl Network {
    // ─── Operators ──────────────────────────────────────────────────────────────

    /// Asks a running instance to drain (see [`control::request_drain`]).
    /// Its arguments are checked here, before any connection: the one check of them.
    pub async fn request_drain(&self, id: &str, reason: Option<String>) -> Result<bool> {
        validate_instance_id("instanceId", id)?;
        if let Some(r) = &reason {
            activity::validate_reason(r)?;
        }
        control::request_drain(&self.ctx().await?, id, reason).await
    }

    /// Forgets a dead instance (see [`control::forget_instance`]).
    pub async fn forget_instance(&self, id: &str, force: bool) -> Result<bool> {
        validate_instance_id("instanceId", id)?;
        control::forget_instance(&self.ctx().await?, id, force).await
    }

    /// The sweeper lease holder, if any.
    pub async fn sweeper(&self) -> Result<Option<control::SweeperLease>> {
        control::sweeper(&self.store().await?, &self.inner.keys).await
    }

    /// This process's metrics in the Prometheus text format 0.0.4.
    pub fn metrics_text(&self) -> Result<String> {
        self.ensure_open()?;
        let id = &self.inner.cfg.identity;
        Ok(self.inner.metrics.render(
            &crate::core::metrics::InfoLabels {
                instance_id: &id.instance_id,
                exchange: &id.exchange_name,
                version: &id.version,
            },
            self.state(),
        ))
    }

    // ─── Queries ────────────────────────────────────────────────────────────────

    /// The network-wide numbers ([`NetworkSummary`]): the listing, the stream length and the
    /// lease, read together.
    pub async fn summary(&self) -> Result<NetworkSummary> {
        let (instances, stream_length, sweeper) = tokio::try_join!(
            self.list_instances(true),
            self.activity_length(),
            self.sweeper()
        )?;
        Ok(NetworkSummary {
            counts: state_counts(&instances),
            alive: instances.iter().filter(|i| i.alive).count() as u64,
            stream_length,
            sweeper,
        })
    }

    /// Instances not `dead` (or all, with `include_dead`), unparsable records skipped.
    pub async fn list_instances(&self, include_dead: bool) -> Result<Vec<InstanceInfo>> {
        let registry = self.ctx().await?.registry;
        let ids = registry.ids(self.inner.cfg.discovery).await?;
        let raw = registry.read_records(&ids).await?;
        let mut out = Vec::with_capacity(raw.len());
        for r in raw {
            if r.hash.is_empty() {
                continue;
            }
            match parse_record(&r.id, &r.hash, r.heartbeat.as_deref()) {
                Some(info) if include_dead || info.state != State::Dead => out.push(info),
                Some(_) => {}
                None => self.inner.log.warn(
                    serde_json::json!({ "key": self.inner.keys.instance(&r.id) }),
                    "skipped an instance record that cannot be parsed",
                ),
            }
        }
        Ok(out)
    }

    /// One instance, or `None` when missing or unparsable.
    pub async fn get_instance(&self, id: &str) -> Result<Option<InstanceInfo>> {
        validate_instance_id("instanceId", id)?;
        self.ctx().await?.registry.get(id).await
    }

    /// The sweeper's last snapshot, or `None` (none yet, or unparsable).
    pub async fn network_state(&self) -> Result<Option<NetworkState>> {
        let store = self.store().await?;
        let cmd = Command::read("GET", &self.inner.keys.network_state());
        let raw: Option<Vec<u8>> = store.query(&cmd).await.or_else(|e| match e {
            Error::Redis(_) => Ok(None),
            e => Err(e),
        })?;
        Ok(raw.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Appends an application entry. Works in any state until close.
    pub async fn log_activity(&self, input: ActivityInput) -> Result<String> {
        self.ensure_open()?;
        activity::validate_input(&input)?;
        self.append(input).await
    }

    /// Many `log_activity` calls as one pipeline (the Node layer gathers one tick's calls):
    /// each input gets its own stream ID or error, in order; an invalid input fails alone and
    /// is not sent.
    pub async fn log_activity_batch(&self, inputs: Vec<ActivityInput>) -> Vec<Result<String>> {
        if let Err(e) = self.ensure_open() {
            return inputs.iter().map(|_| Err(e.clone())).collect();
        }
        let mut out: Vec<Result<String>> = inputs
            .iter()
            .map(|i| activity::validate_input(i).map(|()| String::new()))
            .collect();
        let sendable: Vec<usize> = (0..inputs.len()).filter(|&i| out[i].is_ok()).collect();
        if sendable.is_empty() {
            return out;
        }
        let valid: Vec<&ActivityInput> = sendable.iter().map(|&i| &inputs[i]).collect();
        let cfg = self.config();
        let durability = Durability {
            replicas: cfg.activity_replicas,
            wait: cfg.connection.command_timeout,
        };
        let writer = match self.ctx().await {
            Ok(ctx) if durability.replicas == 0 => Ok((ctx.writer.clone(), ctx.author())),
            Ok(ctx) => self
                .replicated_store()
                .await
                .map(|store| (ctx.writer.over(store), ctx.author())),
            Err(e) => Err(e),
        };
        let results = match writer {
            Ok((writer, author)) => writer.append_many_as(&author, &valid, durability).await,
            Err(e) => valid.iter().map(|_| Err(e.clone())).collect(),
        };
        for (i, r) in sendable.into_iter().zip(results) {
            out[i] = r;
        }
        out
    }

    /// Queues one flush's `logActivity` inputs (validated) behind every earlier flush of this
    /// network; `sink` hears their results in call order. Returns the future that sends them
    /// when no sender runs yet: the caller spawns it (the host owns the runtime). So there is
    /// one ordered writer per network, and a flush never overtakes an earlier one.
    pub fn submit_activity(
        &self,
        inputs: Vec<ActivityInput>,
        sink: Arc<dyn Sink>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        if !self.inner.ordered.submit(inputs, sink) {
            return None;
        }
        let net = self.clone();
        Some(async move {
            let queue = net.inner.ordered.clone();
            queue
                .drain(move |chunk| {
                    let net = net.clone();
                    async move {
                        let n = chunk.len();
                        // A bug must fail these calls, not stop the queue for good.
                        futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                            net.log_activity_batch(chunk),
                        ))
                        .await
                        .unwrap_or_else(|_| {
                            (0..n)
                                .map(|_| {
                                    Err(Error::Redis(
                                        "internal error (a bug): the activity writer panicked"
                                            .into(),
                                    ))
                                })
                                .collect()
                        })
                    }
                })
                .await;
        })
    }

    /// Waits until the `logActivity` calls queued before now are written and answered (a
    /// lifecycle step called after them writes after them, as when each flush was its own
    /// task), at most twice the command timeout: a stuck queue delays, never blocks, it.
    pub(super) async fn after_queued_appends(&self) {
        if let Some(done) = self.inner.ordered.barrier() {
            let bound = self.inner.cfg.connection.command_timeout * 2;
            let _ = tokio::time::timeout(bound, done).await;
        }
    }

    /// Appends an entry of this instance's own.
    pub(super) async fn append(&self, input: ActivityInput) -> Result<String> {
        let ctx = self.ctx().await?;
        ctx.writer.append_as(&ctx.author(), &input).await
    }

    pub(super) async fn activity_log(&self) -> Result<ActivityLog> {
        Ok(ActivityLog::new(self.store().await?, &self.inner.keys))
    }

    pub async fn query_activity(&self, q: &Query) -> Result<Vec<ActivityEntry>> {
        self.activity_log().await?.query(q).await
    }

    /// The same query as a JSON array of entries (for hosts that parse JSON fastest).
    pub async fn query_activity_json(&self, q: &Query) -> Result<String> {
        self.activity_log().await?.query_json(q).await
    }

    /// Trims with `retention_ms`, or the configured retention (0 entries when that is off).
    pub async fn trim_activity(&self, retention_ms: Option<u64>) -> Result<u64> {
        let retention = match retention_ms {
            Some(ms) => ms,
            None => match self.inner.cfg.timing.activity_retention {
                Some(d) => d.as_millis() as u64,
                None => {
                    self.ensure_open()?;
                    return Ok(0);
                }
            },
        };
        let log = self.activity_log().await?;
        let trimmed = log.trim(retention).await?;
        // The stream's append-once tokens go with the entries they guard.
        log.trim_once(retention).await?;
        Ok(trimmed)
    }

    pub async fn activity_length(&self) -> Result<u64> {
        self.activity_log().await?.len().await
    }
}
