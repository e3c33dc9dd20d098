//! The link's health: connected/disconnected status, timeout strikes and the rebuilt
//! connection, secret scrubbing, auth-failure notes, and `CLIENT SETNAME` naming.

use std::sync::atomic::Ordering;

use redis::RedisError;

use super::errors::describe;
use super::{connect, rotation, Conn, Store};
use crate::core::credentials::scrub;

/// Consecutive timeouts after which a connection is rebuilt: a half-open socket keeps timing
/// out, and neither the standalone manager nor the cluster client reconnects on timeouts by
/// itself (the cluster client re-sends on the same node connection).
const TIMEOUT_STRIKES: u32 = 3;

impl Store {
    /// Counts a timeout; after [`TIMEOUT_STRIKES`] in a row, replaces the connection in the
    /// background (the caller's command has already timed out: it must not also wait for a
    /// reconnect to a server that may be frozen). On a cluster the count is per key slot
    /// (`slot`; keyless requests do not count): one node's link can go silent while the
    /// others answer, and their answers must not hide it (finding F22).
    pub(super) fn strike(&self, slot: Option<u16>) {
        let due = if self.is_cluster() {
            let Some(slot) = slot else { return };
            let mut strikes = self.slot_strikes();
            let n = strikes.entry(slot).or_insert(0);
            *n += 1;
            *n >= TIMEOUT_STRIKES
        } else {
            self.inner.strikes.fetch_add(1, Ordering::Relaxed) + 1 >= TIMEOUT_STRIKES
        };
        if !due || self.inner.replacing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.strikes.store(0, Ordering::Relaxed);
        self.slot_strikes().clear();
        let me = self.clone();
        tokio::spawn(async move {
            me.replace_connection().await;
            me.inner.replacing.store(false, Ordering::Release);
        });
    }

    /// Cluster: the timeouts in a row per key slot.
    pub(super) fn slot_strikes(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u16, u32>> {
        self.inner
            .slot_strikes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Makes fresh connections of the same kind and swaps them in, if they can be made in
    /// time: on a cluster a new client with its own node links, and a new send-once client
    /// when this store has one (either may be the one whose link went silent).
    pub(super) async fn replace_connection(&self) {
        let with_once = self.inner.once.is_some();
        let fresh = connect::reopen(&self.inner.cfg, self.inner.response_timeout, with_once).await;
        if let Some((conn, once)) = fresh {
            *self.conn_guard() = conn;
            if let (Some(held), Some(fresh)) = (&self.inner.once, once) {
                *held.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
            }
            tracing::debug!("replaced a Redis connection after repeated timeouts");
            self.name_connections().await;
        }
    }

    /// Removes every known secret (options, URLs, rotated passwords) from `text`.
    pub(super) fn scrub_text(&self, text: &str) -> String {
        let text = scrub(&self.inner.secrets, text);
        match &self.inner.cfg.credentials {
            Some(c) => c.scrub(&text),
            None => text,
        }
    }

    /// A refused login (WRONGPASS, NOAUTH: the credentials were revoked or expired) asks the
    /// credentials provider for fresh ones at once instead of at the next scheduled refresh.
    pub(super) fn note_auth_failure(&self, e: &RedisError) {
        if let Some(c) = &self.inner.cfg.credentials {
            if rotation::is_auth_failure(e) {
                c.nudge();
            }
        }
    }

    /// Sends `CLIENT SETNAME perseus:<instanceId>` on this store's connections (every node's
    /// on a cluster), so operators see who is connected in `CLIENT LIST`. A server that
    /// refuses it (some managed services) is logged once at debug and otherwise ignored.
    pub(super) async fn name_connections(&self) {
        let Some(name) = &self.inner.cfg.client_name else {
            return;
        };
        let limit = self.inner.response_timeout;
        let results = match self.conn() {
            Conn::Single(mut c) => vec![rotation::set_name(&mut c, name, limit).await],
            Conn::Cluster(c) => {
                let mut out = vec![rotation::set_name_all_nodes(c, name, limit).await];
                if let Some(once) = self.once_conn() {
                    out.push(rotation::set_name_all_nodes(once, name, limit).await);
                }
                out
            }
        };
        for r in results {
            if let Err(e) = r {
                let text = rotation::name_refused(&self.scrub_text(&describe(&e)));
                if !self.inner.name_refused.swap(true, Ordering::AcqRel) {
                    *self
                        .inner
                        .name_refusal
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(text);
                }
            }
        }
    }

    /// The server's refusal of `CLIENT SETNAME`, once (the caller logs it at debug).
    pub fn take_name_refusal(&self) -> Option<String> {
        self.inner
            .name_refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    pub(super) fn set_connected(&self, up: bool, error: Option<String>) {
        let was = self.inner.connected.swap(up, Ordering::AcqRel);
        if up && !was {
            // A reconnected link is a new connection: give it its name too.
            let me = self.clone();
            tokio::spawn(async move { me.name_connections().await });
        }
        if was != up {
            if let Some(cb) = &self.inner.on_status {
                cb(up, error);
            }
        }
    }
}
