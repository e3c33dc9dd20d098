//! The send-once writer: non-idempotent commands (`XADD *`) on the cluster connection that
//! never retries by itself, sent again only when the server provably did not run them.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, RedisError, Value};

use super::direct::WriteMiss;
use super::errors::{is_link_failure, labelled, server_error_text, was_not_run};
use super::{Command, Store};
use crate::core::credentials::scrub;
use crate::core::error::{Error, Result};
use crate::core::wire::pipeline::Simple;

impl Store {
    /// Cluster: sends a non-idempotent command at most once. It is sent again only when the
    /// server provably did not run it (a redirect or a cluster-state refusal: MOVED, TRYAGAIN,
    /// CLUSTERDOWN, MASTERDOWN, LOADING; or the connection was refused), until the command
    /// timeout. A dropped link or a timeout surfaces to the caller: the entry may or may not
    /// have been written.
    pub(super) async fn query_once<T: FromRedisValue>(
        &self,
        cmd: &Command,
        conn: ClusterConnection,
    ) -> Result<T> {
        let v = self.query_once_raw(cmd, conn).await?;
        self.convert(v)
            .map_err(|e| labelled(e, || cmd.label.clone()))
    }

    /// [`Store::query_once`] without the conversion: the reply may be a `Value::ServerError`;
    /// a failure comes labelled.
    pub(super) async fn query_once_raw(
        &self,
        cmd: &Command,
        mut conn: ClusterConnection,
    ) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + self.inner.response_timeout;
        let mut wait = Duration::from_millis(25);
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt = async {
                match tokio::time::timeout(remaining, conn.req_packed_command(&cmd.cmd)).await {
                    Ok(r) => r,
                    Err(_) => Err(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "timed out",
                    ))),
                }
            };
            let (err, retryable) = match attempt.await {
                Ok(v) => {
                    self.answered(cmd.slot());
                    return Ok(v);
                }
                Err(e) => {
                    let retryable = was_not_run(&e);
                    (e, retryable)
                }
            };
            if retryable && tokio::time::Instant::now() + wait < deadline {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(400));
                continue;
            }
            let mapped = self.map_err(err.clone());
            if is_link_failure(&err) || retryable {
                self.set_connected(false, Some(mapped.to_string()));
            }
            if err.is_timeout() {
                self.strike(cmd.slot());
            }
            return Err(labelled(mapped, || cmd.label.clone()));
        }
    }

    /// Sends writes that must never be sent twice (`XADD *`) as one pipeline, each command at
    /// most once, and returns each command's own outcome in order: a per-command server error
    /// (say OOM) fails that command alone. A dropped link or a timeout fails every command of
    /// the pipeline (each may or may not have been written). On a cluster the commands go
    /// through the send-once connection; commands that provably did not run (MOVED,
    /// TRYAGAIN, CLUSTERDOWN...: a whole-pipeline refusal, or those entries alone) are sent
    /// again until the command timeout, the others never.
    ///
    /// Takes the commands by value: they are moved into the pipeline, not copied (a chunk of
    /// appends is thousands of them). Each outcome is labelled with its own command.
    pub async fn pipeline_once(&self, cmds: Vec<Command>) -> Result<Vec<Result<Value>>> {
        let n = cmds.len();
        let slot = cmds.first().and_then(Command::slot);
        let mut labels = Vec::with_capacity(n);
        let mut pipe = redis::pipe();
        for c in cmds {
            labels.push(c.label);
            pipe.add_command(c.cmd);
        }
        let first = || labels.first().cloned().unwrap_or_default();
        let Some(once) = self.once_conn() else {
            let values = self.pipeline(&pipe).await.map_err(|e| labelled(e, first))?;
            return Ok(values
                .into_iter()
                .zip(&labels)
                .map(|(v, l)| self.entry(v, || l.clone()))
                .collect());
        };
        let deadline = tokio::time::Instant::now() + self.inner.response_timeout;
        let mut wait = Duration::from_millis(25);
        let mut out: Vec<Option<Result<Value>>> = (0..n).map(|_| None).collect();
        let mut todo: Vec<usize> = (0..n).collect();
        let mut conn = once;
        loop {
            // The first attempt sends the whole pipeline; a retry only the commands that
            // provably did not run.
            let retry;
            let sending = if todo.len() == n {
                &pipe
            } else {
                let mut p = redis::pipe();
                let all: Vec<&redis::Cmd> = pipe.cmd_iter().collect();
                for &i in &todo {
                    p.add_command(all[i].clone());
                }
                retry = p;
                &retry
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let sent =
                tokio::time::timeout(remaining, conn.req_packed_commands(sending, 0, todo.len()));
            let err = match sent.await {
                Ok(Ok(values)) => {
                    self.answered(slot);
                    let mut again = Vec::new();
                    for (&i, v) in todo.iter().zip(values) {
                        let not_run = matches!(&v, Value::ServerError(se) if was_not_run(&RedisError::from(se.clone())));
                        if not_run && tokio::time::Instant::now() + wait < deadline {
                            again.push(i);
                        } else {
                            out[i] = Some(self.entry(v, || labels[i].clone()));
                        }
                    }
                    if again.is_empty() {
                        break;
                    }
                    todo = again;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(400));
                    continue;
                }
                Ok(Err(e)) => e,
                Err(_) => RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "timed out",
                )),
            };
            let retryable = was_not_run(&err);
            if retryable && tokio::time::Instant::now() + wait < deadline {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(400));
                continue;
            }
            let mapped = labelled(self.map_err(err.clone()), first);
            if is_link_failure(&err) || retryable {
                self.set_connected(false, Some(mapped.to_string()));
            }
            if err.is_timeout() {
                self.strike(slot);
            }
            for &i in &todo {
                out[i] = Some(Err(mapped.clone()));
            }
            break;
        }
        Ok(out
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Err(Error::Redis(format!("{} failed: no reply", first()))))
            })
            .collect())
    }

    /// Standalone: sends `packed`, `n` commands that each answer with a bulk string or an
    /// error (`XADD *`), at most once over a direct connection (`direct.rs`), and returns each
    /// command's own outcome in order, as [`Store::pipeline_once`] would: a server error fails
    /// its command alone (labelled with `label`, scrubbed), a timeout or a dropped link fails
    /// them all (each may or may not have been written) and is reported on the connection
    /// status as the crate's path reports it. `None`: nothing was sent (a cluster, rotating
    /// credentials, a Unix socket, a refused connection or login), so the caller sends them
    /// through the crate.
    pub async fn pipeline_once_direct(
        &self,
        label: &str,
        packed: Vec<u8>,
        n: usize,
    ) -> Option<Vec<Result<String>>> {
        if self.inner.once.is_some() {
            return None; // a cluster: the send-once connection routes and re-sends
        }
        let timeout = self.inner.response_timeout + Duration::from_millis(50);
        let failed = match self.inner.direct.write_once(packed, n, timeout).await {
            Ok(replies) => {
                self.answered(None);
                return Some(
                    replies
                        .into_iter()
                        .map(|r| match r {
                            Simple::Bulk(id) => Ok(id),
                            Simple::Error(text) => Err(Error::Redis(format!(
                                "{label} failed: {}",
                                scrub(&self.inner.secrets, &text)
                            ))),
                        })
                        .collect(),
                );
            }
            Err(WriteMiss::NotSent(why)) => {
                tracing::debug!("appends go through the crate: no direct connection ({why})");
                return None;
            }
            Err(WriteMiss::Timeout) => self.unanswered(None),
            Err(WriteMiss::Link(why)) => {
                let err = Error::Redis(self.scrub_text(&why));
                self.set_connected(false, Some(err.to_string()));
                err
            }
        };
        let err = labelled(failed, || label.to_string());
        Some((0..n).map(|_| Err(err.clone())).collect())
    }

    /// One command's reply within a pipeline: its value, or its server error, labelled.
    pub(super) fn entry(&self, v: Value, label: impl FnOnce() -> String) -> Result<Value> {
        match &v {
            Value::ServerError(se) => Err(Error::Redis(format!(
                "{} failed: {}",
                label(),
                scrub(&self.inner.secrets, &server_error_text(se))
            ))),
            _ => Ok(v),
        }
    }
}
