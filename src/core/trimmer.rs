//! Trims the activity stream every `trimIntervalMs` while the instance is started (any
//! instance may: `XTRIM MINID` is idempotent), and with it the stream's append-once companions
//! (report and idempotency tokens), so a token lives as long as the entries it guards.

use std::time::Duration;

use crate::core::task::{Exit, Shutdown, TaskCtx};

/// How long append-once tokens are kept when the stream has no retention: a day, the window
/// in which a retried `idempotencyKey` or a resumed reporter is recognised.
pub const TOKENS_WITHOUT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Every trim interval until shutdown: the stream with `retention` (when there is one), and
/// the append-once tokens older than `retention` (or [`TOKENS_WITHOUT_RETENTION`]).
pub async fn run(ctx: TaskCtx, retention: Option<Duration>, mut shutdown: Shutdown) -> Exit {
    let every = ctx.cfg.timing.trim_interval;
    let keep_tokens = retention.unwrap_or(TOKENS_WITHOUT_RETENTION).as_millis() as u64;
    loop {
        if shutdown.sleep(every).await {
            return Exit::Stopped;
        }
        let log = ctx.writer.log();
        let trimmed = tokio::select! {
            biased;
            _ = shutdown.requested() => return Exit::Stopped,
            r = async {
                let n = match retention {
                    Some(r) => log.trim(r.as_millis() as u64).await?,
                    None => 0,
                };
                let tokens = log.trim_once(keep_tokens).await?;
                Ok::<_, crate::core::error::Error>((n, tokens))
            } => r,
        };
        match trimmed {
            Ok((n, tokens)) => ctx.log.debug(
                serde_json::json!({ "removed": n, "tokensRemoved": tokens }),
                "activity stream trimmed",
            ),
            Err(e) => ctx.report_error(e, "activity trim failed"),
        }
    }
}
