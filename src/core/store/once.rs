//! The send-once writer: non-idempotent commands (`XADD *`) on the cluster connection that
//! never retries by itself, sent again only when the server provably did not run them.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, RedisError, Value};

use super::errors::{is_link_failure, labelled, server_error_text, was_not_run};
use super::{Command, Store};
use crate::core::credentials::scrub;
use crate::core::error::{Error, Result};

impl Store {
    /// Cluster: sends a non-idempotent command at most once. It is sent again only when the
    /// server provably did not run it (a redirect or a cluster-state refusal: MOVED, TRYAGAIN,
    /// CLUSTERDOWN, MASTERDOWN, LOADING; or the connection was refused), until the command
    /// timeout. A dropped link or a timeout surfaces to the caller: the entry may or may not
    /// have been written.
    pub(super) async fn query_once<T: FromRedisValue>(
        &self,
        cmd: &Command,
        mut conn: ClusterConnection,
    ) -> Result<T> {
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
                    self.set_connected(true, None);
                    return self
                        .convert(v)
                        .map_err(|e| labelled(e, || cmd.label.clone()));
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
    pub async fn pipeline_once(&self, cmds: &[Command]) -> Result<Vec<Result<Value>>> {
        let label = || cmds.first().map(|c| c.label.clone()).unwrap_or_default();
        let Some(once) = &self.inner.once else {
            let mut pipe = redis::pipe();
            for c in cmds {
                pipe.add_command(c.cmd.clone());
            }
            let values = self.pipeline(&pipe).await.map_err(|e| labelled(e, label))?;
            return Ok(values.into_iter().map(|v| self.entry(v, label)).collect());
        };
        let deadline = tokio::time::Instant::now() + self.inner.response_timeout;
        let mut wait = Duration::from_millis(25);
        let mut out: Vec<Option<Result<Value>>> = (0..cmds.len()).map(|_| None).collect();
        let mut todo: Vec<usize> = (0..cmds.len()).collect();
        let mut conn = once.clone();
        loop {
            let mut pipe = redis::pipe();
            for &i in &todo {
                pipe.add_command(cmds[i].cmd.clone());
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let sent =
                tokio::time::timeout(remaining, conn.req_packed_commands(&pipe, 0, todo.len()));
            let err = match sent.await {
                Ok(Ok(values)) => {
                    self.set_connected(true, None);
                    let mut again = Vec::new();
                    for (&i, v) in todo.iter().zip(values) {
                        let not_run = matches!(&v, Value::ServerError(se) if was_not_run(&RedisError::from(se.clone())));
                        if not_run && tokio::time::Instant::now() + wait < deadline {
                            again.push(i);
                        } else {
                            out[i] = Some(self.entry(v, label));
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
            let mapped = labelled(self.map_err(err.clone()), label);
            if is_link_failure(&err) || retryable {
                self.set_connected(false, Some(mapped.to_string()));
            }
            for &i in &todo {
                out[i] = Some(Err(mapped.clone()));
            }
            break;
        }
        Ok(out
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Err(Error::Redis(format!("{} failed: no reply", label()))))
            })
            .collect())
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
