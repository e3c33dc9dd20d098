//! The report outbox: death reports owed by dead records (their `reportToken`), settled by
//! every sweep until a replica holds them. At least once by the outbox, at most once by
//! `APPEND_ONCE` (see [`super::report`]), so no grace period and no search of the stream.

use crate::core::activity::Author;
use crate::core::error::Result;
use crate::core::registry::InstanceInfo;
use crate::core::task::{Shutdown, TaskCtx};

use super::report;

/// Settles every death report still owed (both sweep modes); `false` when shutdown was
/// requested (the sweep stops there).
pub(super) async fn settle_owed(
    ctx: &TaskCtx,
    owed: Vec<(String, InstanceInfo)>,
    shutdown: &Shutdown,
) -> bool {
    for (_token, info) in owed {
        if shutdown.is_requested() {
            return false;
        }
        if let Err(e) = settle_report(ctx, &info).await {
            ctx.log.warn(
                serde_json::json!({ "error": e.to_string(), "lostInstanceId": info.instance_id }),
                "could not settle an owed HEARTBEAT_LOST entry; retrying next sweep",
            );
        }
    }
    !shutdown.is_requested()
}

/// Settles the death report `lost`'s record owes (read again: it may have been settled since
/// the sweep read it): its one HEARTBEAT_LOST entry, then the token cleared.
pub(super) async fn settle_report(ctx: &TaskCtx, lost: &InstanceInfo) -> Result<()> {
    report::settle_record(ctx, &lost.instance_id, &author_of(lost)).await
}

/// Entries about a lost instance carry its identity.
pub(crate) fn author_of(lost: &InstanceInfo) -> Author {
    Author {
        instance_id: lost.instance_id.clone(),
        exchange: lost.exchange_name.clone(),
        exchange_id: lost.exchange_id,
        hostname: lost.hostname.clone(),
        public_ip: lost.public_ip.clone(),
    }
}
