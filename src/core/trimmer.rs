//! Trims the activity stream every `trimIntervalMs` while the instance is started (any
//! instance may: `XTRIM MINID` is idempotent).

use std::time::Duration;

use crate::core::task::{Exit, Shutdown, TaskCtx};

/// Trims with `retention` every trim interval until shutdown.
pub async fn run(ctx: TaskCtx, retention: Duration, mut shutdown: Shutdown) -> Exit {
    let every = ctx.cfg.timing.trim_interval;
    loop {
        if shutdown.sleep(every).await {
            return Exit::Stopped;
        }
        let trimmed = tokio::select! {
            biased;
            _ = shutdown.requested() => return Exit::Stopped,
            r = ctx.writer.log().trim(retention.as_millis() as u64) => r,
        };
        match trimmed {
            Ok(n) => ctx.log.debug(
                serde_json::json!({ "removed": n }),
                "activity stream trimmed",
            ),
            Err(e) => ctx.report_error(e, "activity trim failed"),
        }
    }
}
