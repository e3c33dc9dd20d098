//! The activity tail: `XREAD BLOCK` on a dedicated connection, turning entries into events
//! (REGISTERED → instanceJoined, DEREGISTERED → instanceLeft, HEARTBEAT_LOST → instanceLost,
//! every entry → activity).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::core::activity::{ActivityEntry, ActivityLog};
use crate::core::error::{Error, Result};
use crate::core::events::{EventSink, NetEvent};
use crate::core::fsm::State;
use crate::core::logging::Logger;
use crate::core::registry::InstanceInfo;
use crate::core::task::{Exit, Shutdown, TaskCtx};

/// How long one blocking read of the tail waits.
const TAIL_BLOCK: Duration = Duration::from_millis(1000);

/// Tails until shutdown. `connect` gives the context (it connects on first use, so a tail
/// can start before `start()`); `ready` is raised once the start point is fixed (or the
/// tail cannot start), releasing writers that wait for it.
pub(super) async fn run<C, F>(
    connect: C,
    errors: Reporter,
    ready: watch::Sender<bool>,
    mut shutdown: Shutdown,
) -> Exit
where
    C: Fn() -> F,
    F: Future<Output = Result<TaskCtx>>,
{
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    let mut last: Option<String> = None;
    let mut reader: Option<(TaskCtx, ActivityLog)> = None;
    loop {
        let step = async {
            if reader.is_none() {
                let ctx = connect().await?;
                let dedicated = ctx.store.dedicated(TAIL_BLOCK).await?;
                let log = ActivityLog::new(dedicated, &ctx.keys);
                reader = Some((ctx, log));
            }
            let (ctx, log) = reader.as_ref().expect("set above");
            if last.is_none() {
                last = Some(log.last_id().await?);
                ready.send_replace(true);
            }
            let after = last.clone().unwrap_or_else(|| "0-0".into());
            // A re-AUTH queues behind the blocked read: end it before the credentials expire.
            let block = ctx.store.block_limit(TAIL_BLOCK);
            let entries = log.read_after(&after, block, 500).await?;
            Ok::<_, Error>((ctx.clone(), entries))
        };
        let step = tokio::select! {
            biased;
            _ = shutdown.requested() => return Exit::Stopped,
            r = step => r,
        };
        match step {
            Ok((ctx, entries)) => {
                for e in entries {
                    last = Some(e.id.clone());
                    if shutdown.is_requested() {
                        return Exit::Stopped;
                    }
                    dispatch_entry(&ctx, e).await;
                }
                failing = false;
                backoff = Duration::from_millis(100);
            }
            Err(Error::Closed) => return Exit::Stopped,
            Err(e) => {
                // Writers must not wait on a tail that cannot start.
                ready.send_replace(true);
                if !failing {
                    errors.report(e, "activity tail failed; retrying");
                }
                failing = true;
                if shutdown.sleep(backoff).await {
                    return Exit::Stopped;
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Where the tail reports its failures (it may fail before any context exists).
pub(super) struct Reporter {
    pub log: Logger,
    pub sink: Arc<dyn EventSink>,
}

impl Reporter {
    /// Logs a failure and emits it as an `error` event.
    fn report(&self, e: Error, what: &str) {
        self.log.warn(
            serde_json::json!({ "error": e.to_string(), "code": e.code() }),
            what,
        );
        self.sink.emit(NetEvent::Error(e));
    }
}

async fn dispatch_entry(ctx: &TaskCtx, e: ActivityEntry) {
    let peer_event: Option<fn(InstanceInfo) -> NetEvent> = match e.event.as_str() {
        "REGISTERED" => Some(NetEvent::InstanceJoined),
        "DEREGISTERED" => Some(NetEvent::InstanceLeft),
        "HEARTBEAT_LOST" => Some(NetEvent::InstanceLost),
        _ => None,
    };
    if let Some(make) = peer_event {
        let info = match ctx.registry.get(&e.instance_id).await {
            Ok(Some(info)) => info,
            _ => info_from_entry(&e),
        };
        ctx.sink.emit(make(info));
    }
    ctx.sink.emit(NetEvent::Activity(e));
}

/// A peer's info rebuilt from its entry when its record is gone.
fn info_from_entry(e: &ActivityEntry) -> InstanceInfo {
    InstanceInfo {
        instance_id: e.instance_id.clone(),
        hostname: e.hostname.clone().unwrap_or_default(),
        exchange_id: e.exchange_id.unwrap_or(0),
        exchange_name: e.exchange.clone(),
        public_ip: e.public_ip.clone(),
        private_ip: None,
        pid: 0,
        version: String::new(),
        state: e.to_state.unwrap_or(if e.event == "REGISTERED" {
            State::Running
        } else {
            State::Dead
        }),
        registered_at: String::new(),
        last_state_change: e.ts.clone(),
        metadata: Default::default(),
        alive: e.event == "REGISTERED",
        last_heartbeat: None,
        health: None,
    }
}
