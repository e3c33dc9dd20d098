//! Appends on behalf of an author, ordered after a starting tail.

use super::entry::{encode, ActivityInput, Author};
use super::stream::ActivityLog;
use crate::core::error::Result;

/// Appends entries on behalf of an author, after the tail (if one is starting) has fixed
/// its start point: a listener attached before a write always hears that write.
#[derive(Clone)]
pub struct Writer {
    log: ActivityLog,
    /// `false` while a tail is starting; see [`Writer::append_as`].
    tail_ready: tokio::sync::watch::Receiver<bool>,
    /// Longest an append waits for a starting tail.
    wait_limit: std::time::Duration,
    /// Counts appends by result.
    metrics: std::sync::Arc<crate::core::metrics::Metrics>,
}

impl Writer {
    pub fn new(
        log: ActivityLog,
        tail_ready: tokio::sync::watch::Receiver<bool>,
        wait_limit: std::time::Duration,
        metrics: std::sync::Arc<crate::core::metrics::Metrics>,
    ) -> Self {
        Writer {
            log,
            tail_ready,
            wait_limit,
            metrics,
        }
    }

    /// The stream this writer appends to (for reads of it).
    pub fn log(&self) -> &ActivityLog {
        &self.log
    }

    /// Appends one entry written by `author` (the sweeper writes for lost peers).
    pub async fn append_as(&self, author: &Author, input: &ActivityInput) -> Result<String> {
        if !*self.tail_ready.borrow() {
            let mut ready = self.tail_ready.clone();
            let _ = tokio::time::timeout(self.wait_limit, ready.wait_for(|r| *r)).await;
        }
        let fields = encode(author, input, &crate::core::clock::iso_now());
        let appended = self.log.append(&fields).await;
        self.metrics.appended(appended.is_ok());
        appended
    }

    /// Appends one entry written by `author` at most once per `token` in namespace `ns`
    /// ([`super::once`]): `(id, true)` when this call wrote it, `(first id, false)` when the
    /// token already had its entry (nothing written).
    pub async fn append_once_as(
        &self,
        author: &Author,
        input: &ActivityInput,
        ns: &str,
        token: &str,
    ) -> Result<(String, bool)> {
        if !*self.tail_ready.borrow() {
            let mut ready = self.tail_ready.clone();
            let _ = tokio::time::timeout(self.wait_limit, ready.wait_for(|r| *r)).await;
        }
        let fields = encode(author, input, &crate::core::clock::iso_now());
        let appended = self.log.append_once(ns, token, &fields).await;
        self.metrics.appended(appended.is_ok());
        appended
    }

    /// Appends many entries by `author` as one send-once pipeline (a tick's `logActivity`
    /// calls): each gets its own ID or error, in order. Inputs must be validated already.
    pub async fn append_many_as(
        &self,
        author: &Author,
        inputs: &[&ActivityInput],
    ) -> Vec<Result<String>> {
        if !*self.tail_ready.borrow() {
            let mut ready = self.tail_ready.clone();
            let _ = tokio::time::timeout(self.wait_limit, ready.wait_for(|r| *r)).await;
        }
        let ts = crate::core::clock::iso_now();
        let entries: Vec<_> = inputs.iter().map(|i| encode(author, i, &ts)).collect();
        let appended = self.log.append_many(&entries).await;
        // Counted per entry, as single appends are.
        for r in &appended {
            self.metrics.appended(r.is_ok());
        }
        appended
    }
}
