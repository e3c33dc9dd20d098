//! Appends on behalf of an author, ordered after a starting tail.

use super::entry::{encode, ActivityInput, Author};
use super::stream::{ActivityLog, Durability};
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
    /// Where appends are traced (`perseus:activity:append`), when the host traces them.
    tracer: Option<std::sync::Arc<dyn crate::core::trace::Tracer>>,
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
            tracer: None,
        }
    }

    /// Traces every append to `sink` while it traces them (see [`crate::core::trace::Trace`]).
    pub fn traced_by(mut self, sink: std::sync::Arc<dyn crate::core::trace::Tracer>) -> Self {
        self.tracer = Some(sink);
        self
    }

    /// Starts timing an append when the host traces appends.
    fn trace_start(&self) -> Option<crate::core::trace::TraceTimer> {
        let sink = self.tracer.as_deref()?;
        crate::core::trace::TraceTimer::start(sink, crate::core::trace::TraceKind::Append)
    }

    /// Emits one append's trace: the events sent and each one's ID (null where it failed).
    fn trace_end(
        &self,
        timer: Option<crate::core::trace::TraceTimer>,
        events: Vec<&str>,
        results: &[&Result<String>],
    ) {
        let (Some(t), Some(sink)) = (timer, self.tracer.as_deref()) else {
            return;
        };
        let ids: Vec<serde_json::Value> = results
            .iter()
            .map(|r| match r {
                Ok(id) => id.clone().into(),
                Err(_) => serde_json::Value::Null,
            })
            .collect();
        let error = results.iter().find_map(|r| r.as_ref().err().cloned());
        let trace = t
            .finish()
            .with("count", events.len())
            .with("events", events)
            .with("ids", ids)
            .failed(error);
        sink.trace(trace);
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
        let timer = self.trace_start();
        let fields = encode(author, input, &crate::core::clock::iso_now());
        let appended = self.log.append(&fields).await;
        self.metrics.appended(appended.is_ok());
        self.trace_end(timer, vec![input.event.as_str()], &[&appended]);
        appended
    }

    /// The same writer over another connection (replicated appends block theirs in `WAIT`).
    pub fn over(&self, store: crate::core::store::Store) -> Self {
        Writer {
            log: self.log.over(store),
            ..self.clone()
        }
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

    /// Appends many entries by `author` as one send-once pipeline (a chunk of `logActivity`
    /// calls): each gets its own ID or error, in order; keyed ones at most once per key, all
    /// acknowledged as `durability` asks. Inputs must be validated already.
    pub async fn append_many_as(
        &self,
        author: &Author,
        inputs: &[&ActivityInput],
        durability: Durability,
    ) -> Vec<Result<String>> {
        if !*self.tail_ready.borrow() {
            let mut ready = self.tail_ready.clone();
            let _ = tokio::time::timeout(self.wait_limit, ready.wait_for(|r| *r)).await;
        }
        let timer = self.trace_start();
        let ts = crate::core::clock::iso_now();
        let appended = self
            .log
            .append_inputs(author, inputs, &ts, durability)
            .await;
        // Counted per entry, as single appends are.
        for r in &appended {
            self.metrics.appended(r.is_ok());
        }
        let events = inputs.iter().map(|i| i.event.as_str()).collect();
        self.trace_end(timer, events, &appended.iter().collect::<Vec<_>>());
        appended
    }
}
