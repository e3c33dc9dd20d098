//! Trims the activity stream every `trimIntervalMs` while the instance is started (any
//! instance may: `XTRIM MINID` is idempotent), and forgets `idempotencyKey`s with it — after
//! 24 h when the stream itself is kept forever (retention 0).

use std::time::Duration;

use crate::core::activity::once::IDEM_KEEP_WITHOUT_RETENTION_MS;
use crate::core::task::{Exit, Shutdown, TaskCtx};

/// Trims with `retention` (`None`: only forgets keys older than 24 h) every trim interval
/// until shutdown.
pub async fn run(ctx: TaskCtx, retention: Option<Duration>, mut shutdown: Shutdown) -> Exit {
    let every = ctx.cfg.timing.trim_interval;
    loop {
        if shutdown.sleep(every).await {
            return Exit::Stopped;
        }
        let trimmed = tokio::select! {
            biased;
            _ = shutdown.requested() => return Exit::Stopped,
            r = async {
                match retention {
                    Some(r) => ctx.writer.log().trim(r.as_millis() as u64).await,
                    None => ctx
                        .writer
                        .log()
                        .forget_keys_older_than(IDEM_KEEP_WITHOUT_RETENTION_MS)
                        .await
                        .map(|()| 0),
                }
            } => r,
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
