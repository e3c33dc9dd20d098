//! The report outbox: death reports owed by dead records, settled at least once (by the
//! outbox) and at most once (by the token check against the stream).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::core::activity::{ActivityInput, Author};
use crate::core::error::Result;
use crate::core::fsm::State;
use crate::core::registry::InstanceInfo;
use crate::core::task::{Shutdown, TaskCtx};

use super::SweepState;

/// How far before a death's recorded time the outbox looks for its entry: the record and
/// the stream may live on different nodes, whose clocks may differ a little.
pub(super) const REPORT_SEARCH_MARGIN_MS: u64 = 10_000;

/// Settles the death reports owed for longer than a sweep interval (both sweep modes);
/// `false` when shutdown was requested (the sweep stops there).
pub(super) async fn settle_owed(
    ctx: &TaskCtx,
    st: &mut SweepState<'_>,
    owed: Vec<(String, InstanceInfo)>,
    shutdown: &Shutdown,
) -> bool {
    st.outbox.keep_only(&owed);
    for (token, info) in owed {
        if shutdown.is_requested() {
            return false;
        }
        if st
            .outbox
            .is_overdue(&info.instance_id, &token, ctx.cfg.timing.sweep_interval)
        {
            if let Err(e) = settle_report(ctx, &info).await {
                ctx.log.warn(
                    serde_json::json!({ "error": e.to_string(), "lostInstanceId": info.instance_id }),
                    "could not settle an owed HEARTBEAT_LOST entry; retrying next sweep",
                );
            }
        }
    }
    !shutdown.is_requested()
}

/// Death reports owed by dead records (their `reportToken`), with when this sweeper first saw
/// each: one is settled only once it is older than a sweep interval, so a reporter that is
/// merely between its compare-and-set and its entry is not raced.
#[derive(Default)]
pub(super) struct Outbox {
    seen: HashMap<String, (String, Instant)>,
}

impl Outbox {
    /// Forgets reports no longer owed; remembers new ones from now.
    pub(super) fn keep_only(&mut self, owed: &[(String, InstanceInfo)]) {
        let mut next = HashMap::with_capacity(owed.len());
        for (token, info) in owed {
            let first = match self.seen.remove(&info.instance_id) {
                Some((t, at)) if t == *token => at,
                _ => Instant::now(),
            };
            next.insert(info.instance_id.clone(), (token.clone(), first));
        }
        self.seen = next;
    }

    /// Whether `id`'s report `token` has been owed for at least `age`.
    pub(super) fn is_overdue(&self, id: &str, token: &str, age: Duration) -> bool {
        self.seen
            .get(id)
            .is_some_and(|(t, at)| t == token && at.elapsed() >= age)
    }
}

/// Settles the death report `lost`'s record owes: writes its HEARTBEAT_LOST entry unless the
/// stream already holds one with the record's token (searching from the death on), then
/// clears the token. At least once by the outbox, at most once by the token check.
pub(super) async fn settle_report(ctx: &TaskCtx, lost: &InstanceInfo) -> Result<()> {
    let id = &lost.instance_id;
    let Some((pending, from)) = ctx.registry.pending_report(id).await? else {
        return Ok(());
    };
    let since = pending.at_ms.saturating_sub(REPORT_SEARCH_MARGIN_MS);
    let written = ctx
        .writer
        .log()
        .has_field_since(since, id, "reportToken", &pending.token)
        .await?;
    if !written {
        write_lost_entry(ctx, lost, from, &pending.token).await?;
    }
    ctx.registry.clear_report(id, &pending.token).await
}

/// Writes HEARTBEAT_LOST for `lost` (the entry's instanceId is the lost peer; `reporter` is
/// this sweeper; `reportToken` the token of the record's mark-dead).
pub(super) async fn write_lost_entry(
    ctx: &TaskCtx,
    lost: &InstanceInfo,
    from: Option<State>,
    token: &str,
) -> Result<()> {
    let author = Author {
        instance_id: lost.instance_id.clone(),
        exchange: lost.exchange_name.clone(),
        exchange_id: lost.exchange_id,
        hostname: lost.hostname.clone(),
        public_ip: lost.public_ip.clone(),
    };
    let input = ActivityInput {
        event: "HEARTBEAT_LOST".into(),
        reason: Some("heartbeat expired".into()),
        from_state: from,
        to_state: Some(State::Dead),
        fields: vec![
            ("reporter".into(), ctx.instance_id().to_string()),
            ("reportToken".into(), token.to_string()),
        ],
    };
    ctx.writer.append_as(&author, &input).await?;
    ctx.metrics.peer_lost();
    ctx.log.warn(
        serde_json::json!({ "lostInstanceId": lost.instance_id }),
        "peer lost: heartbeat expired",
    );
    Ok(())
}
