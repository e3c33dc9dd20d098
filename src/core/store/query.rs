//! Commands on the shared connection: one command (reads re-sent once after a dropped link),
//! pipelines, scripts, raw-byte range reads, timeouts and reply conversion.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, Pipeline, RedisError, Value};

use super::errors::{
    describe, is_data_error, is_dropped, is_link_failure, labelled, server_error_text,
};
use super::{direct, Command, Conn, Kind, Store};
use crate::core::error::{Error, Result};
use crate::core::wire::slots::slot_of;

impl Store {
    /// Runs one command with the command timeout. A failure names the command (and its key),
    /// e.g. `XADD perseus:activity failed: NOPERM this user has no permissions to run the
    /// 'xadd' command`.
    ///
    /// A [`Kind::Read`] that fails because the link dropped (the server closed it, e.g.
    /// `CLIENT KILL`, a restart or a failover) is sent once more on the reconnected link: the
    /// multiplexed connection only notices a dropped socket when it next writes, so the first
    /// command after a drop would fail although the server is fine. Writes are never re-sent
    /// by us, and a [`Kind::WriteOnce`] never by the cluster client either.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Command) -> Result<T> {
        if cmd.kind == Kind::WriteOnce {
            if let Some(once) = self.once_conn() {
                return self.query_once(cmd, once).await;
            }
        }
        let value = self.query_raw(cmd).await.map_err(|(e, _)| e)?;
        self.convert(value)
            .map_err(|e| labelled(e, || cmd.label.clone()))
    }

    /// One command on the shared connection (reads retried once after a dropped link). The
    /// reply may be a `Value::ServerError`. A failure comes labelled, with whether it is about
    /// the key's data (a per-key error) rather than the link, the cluster's state or the
    /// user's rights.
    pub(super) async fn query_raw(
        &self,
        cmd: &Command,
    ) -> std::result::Result<Value, (Error, bool)> {
        let retry = cmd.kind == Kind::Read;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.conn();
            let may_retry = retry && attempt == 1;
            // The drop is reported even when the read is re-sent (as pipelines do): a Redis
            // restart first met by a single read still shows as a loss and a reconnect.
            match self
                .timed_with(
                    async {
                        match &mut conn {
                            Conn::Single(c) => c.req_packed_command(&cmd.cmd).await,
                            Conn::Cluster(c) => c.req_packed_command(&cmd.cmd).await,
                        }
                    },
                    true,
                    cmd.slot(),
                )
                .await
            {
                Ok(v) => {
                    self.name_if_resent(attempt);
                    return Ok(v);
                }
                Err((_, Some(e))) if may_retry && is_dropped(&e) => {
                    self.inner.resent.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(command = %cmd.label, "read re-sent after a dropped link");
                    continue;
                }
                Err((err, e)) => {
                    let data = e.as_ref().is_some_and(|e| {
                        is_data_error(redis::ServerError::try_from(e.clone()).ok().as_ref())
                    });
                    return Err((labelled(err, || cmd.label.clone()), data));
                }
            }
        }
    }

    /// One read-only command about `key` over a direct connection, its reply as raw bytes
    /// (for [`crate::core::wire::resp`]). `None` when that path cannot serve it, or the reply is a
    /// server error: the caller then sends it through [`Store::query`], which words errors.
    pub async fn query_bytes(&self, key: &str, cmd: &Command) -> Option<Result<Vec<u8>>> {
        use direct::Miss;
        let slot_map = || self.slot_table();
        let packed = cmd.cmd.get_packed_command();
        match self.inner.direct.request(key, &packed, slot_map).await {
            Ok(bytes) if !bytes.starts_with(b"-") => Some(Ok(bytes)),
            Ok(_) => {
                self.forget_slot_table();
                None
            }
            Err(Miss::Fallback(why)) => {
                tracing::debug!(%why, "range read falls back to the client");
                self.forget_slot_table();
                None
            }
            Err(Miss::Timeout) => {
                // A fresh direct connection got no answer either. The shared connection's
                // status is left alone: it speaks for its own link, which may be fine.
                Some(Err(labelled(self.no_answer(), || cmd.label.clone())))
            }
        }
    }

    /// Runs a pipeline (standalone only: cluster pipelines must stay in one slot, so callers
    /// on a cluster use [`Store::query_many`]).
    pub async fn pipeline(&self, pipe: &Pipeline) -> Result<Vec<Value>> {
        let mut conn = self.conn();
        let n = pipe.len();
        let values = self
            .timed(async {
                match &mut conn {
                    Conn::Single(c) => c.req_packed_commands(pipe, 0, n).await,
                    Conn::Cluster(c) => c.req_packed_commands(pipe, 0, n).await,
                }
            })
            .await?;
        Ok(values)
    }

    /// Runs a Lua script (which must name at least one key, so a cluster routes it).
    pub async fn script<T: FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        let label = || {
            format!(
                "Lua script on {}",
                keys.first().copied().unwrap_or("no key")
            )
        };
        let mut conn = self.conn();
        let slot = keys.first().map(|k| slot_of(k.as_bytes()));
        let value: Value = self
            .timed_with(
                async {
                    match &mut conn {
                        Conn::Single(c) => inv.invoke_async(c).await,
                        Conn::Cluster(c) => inv.invoke_async(c).await,
                    }
                },
                true,
                slot,
            )
            .await
            .map_err(|(e, _)| labelled(e, label))?;
        self.convert(value).map_err(|e| labelled(e, label))
    }

    /// Maps a redis error to ours with secrets removed.
    pub fn map_err(&self, e: RedisError) -> Error {
        if e.is_timeout() {
            return self.no_answer();
        }
        Error::Redis(self.scrub_text(&describe(&e)))
    }

    pub(super) fn convert<T: FromRedisValue>(&self, v: Value) -> Result<T> {
        if let Value::ServerError(e) = &v {
            return Err(Error::Redis(self.scrub_text(&server_error_text(e))));
        }
        T::from_redis_value(v)
            .map_err(|e| Error::Redis(format!("unexpected reply from Redis: {e}")))
    }

    /// Applies the timeout and tracks connection health around one request.
    pub(super) async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        self.timed_with(fut, true, None).await.map_err(|(e, _)| e)
    }

    /// Whether a server error reply of `query_raw` is about the key's data.
    pub(super) fn reply_error(&self, v: &Value) -> Option<(String, bool)> {
        match v {
            Value::ServerError(se) => Some((
                self.scrub_text(&server_error_text(se)),
                is_data_error(Some(se)),
            )),
            _ => None,
        }
    }

    /// Like [`Store::timed`]; the error comes with the client's own error (none when our timer
    /// fired). With `report_drop` false a dropped link (an I/O failure other than a timeout,
    /// see [`is_dropped`]) is not reported as a disconnection: the caller retries first.
    /// `slot`: the key slot the request is about (a cluster counts its timeouts per slot).
    pub(super) async fn timed_with<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
        report_drop: bool,
        slot: Option<u16>,
    ) -> std::result::Result<T, (Error, Option<RedisError>)> {
        let limit = self.inner.response_timeout + Duration::from_millis(50);
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => {
                self.answered(slot);
                Ok(v)
            }
            Ok(Err(e)) => {
                let err = self.map_err(e.clone());
                self.note_auth_failure(&e);
                if is_link_failure(&e) && (report_drop || !is_dropped(&e)) {
                    self.set_connected(false, Some(err.to_string()));
                }
                if e.is_timeout() {
                    self.strike(slot);
                }
                Err((err, Some(e)))
            }
            Err(_) => Err((self.unanswered(slot), None)),
        }
    }
}

impl Store {
    /// The error of a command Redis did not answer within the command timeout.
    pub(super) fn no_answer(&self) -> Error {
        Error::Timeout(format!(
            "Redis did not answer within {} ms",
            self.inner.response_timeout.as_millis()
        ))
    }

    /// After Redis answered (about `slot`, on a cluster): the link is up, and the timeouts in
    /// a row start over.
    pub(super) fn answered(&self, slot: Option<u16>) {
        self.inner.strikes.store(0, Ordering::Relaxed);
        if let Some(slot) = slot {
            self.slot_strikes().remove(&slot);
        }
        self.set_connected(true, None);
    }

    /// After our own timer fired: the link counts as down and the timeout as a strike
    /// (against `slot` on a cluster). Returns the error for the caller.
    pub(super) fn unanswered(&self, slot: Option<u16>) -> Error {
        let err = self.no_answer();
        self.set_connected(false, Some(err.to_string()));
        self.strike(slot);
        err
    }

    /// After a read that succeeded on its re-send: the link was re-made under it, and the new
    /// connection is unnamed (`CLIENT SETNAME` runs in the background).
    pub(super) fn name_if_resent(&self, attempt: u32) {
        if attempt > 1 {
            let me = self.clone();
            tokio::spawn(async move { me.name_connections().await });
        }
    }
}
