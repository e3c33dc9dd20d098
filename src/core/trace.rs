//! Traces of finished operations, for a host that publishes them (the Node layer's
//! `diagnostics_channel` TracingChannels). A leaf: the tasks and the model below them (the
//! activity writer, the credentials cell) report to a [`Tracer`] without knowing events.
//!
//! Tracing must cost nothing when nobody listens: the core asks [`Tracer::traced`] (one
//! atomic load in the Node host) before it times or builds anything.

use crate::core::error::Error;

/// Which traced operation a [`Trace`] is: one per `diagnostics_channel` TracingChannel of the
/// Node host (`perseus:heartbeat`, `perseus:sweep`, ...). The discriminant is the host's bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    /// One beat.
    Heartbeat = 0,
    /// One sweep by this process.
    Sweep = 1,
    /// One flushed batch of `logActivity` calls, or one entry of this instance's own.
    Append = 2,
    /// One `queryActivity` (traced by the host around the call itself).
    Query = 3,
    /// One lifecycle transition.
    Lifecycle = 4,
    /// One call of the credentials provider.
    Credentials = 5,
}

/// One finished operation, as the host publishes it. Why a separate event: tracing must cost
/// nothing when nobody listens, so the core builds one only after asking
/// [`Tracer::traced`], and the host turns it into its own instrument's messages.
#[derive(Debug, Clone)]
pub struct Trace {
    pub kind: TraceKind,
    /// When the operation started, ms epoch (this host's clock).
    pub started_at_ms: u64,
    /// How long it took, ms.
    pub duration_ms: f64,
    /// `host:port` of the node that served it, when the core knows it.
    pub server: Option<String>,
    /// The operation's own fields, camelCase as published (never a secret).
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The coded error the API would reject with, when the operation failed.
    pub error: Option<Error>,
}

/// An operation being timed for a trace: made only when the host traces its kind, so an
/// untraced operation pays one atomic load ([`Tracer::traced`]) and nothing else.
#[derive(Debug, Clone, Copy)]
pub struct TraceTimer {
    kind: TraceKind,
    started: std::time::Instant,
    started_at_ms: u64,
}

impl TraceTimer {
    /// Starts timing when `tracer` traces `kind`; `None` otherwise.
    pub fn start(tracer: &dyn Tracer, kind: TraceKind) -> Option<TraceTimer> {
        tracer.traced(kind).then(|| TraceTimer {
            kind,
            started: std::time::Instant::now(),
            started_at_ms: crate::core::clock::now_ms(),
        })
    }

    /// The finished operation, timed until now.
    pub fn finish(self) -> Trace {
        Trace {
            kind: self.kind,
            started_at_ms: self.started_at_ms,
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            server: None,
            fields: serde_json::Map::new(),
            error: None,
        }
    }
}

impl Trace {
    /// Adds a field.
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.fields.insert(name.to_string(), value.into());
        self
    }

    /// Records the operation's error.
    pub fn failed(mut self, error: Option<Error>) -> Self {
        self.error = error;
        self
    }
}

/// Where traces go. Every [`crate::core::events::EventSink`] is one; the default traces nothing.
pub trait Tracer: Send + Sync {
    /// Whether the host has a subscriber for `kind` now (cheap: an atomic load). The core
    /// builds and hands over a [`Trace`] only when it does.
    fn traced(&self, _kind: TraceKind) -> bool {
        false
    }
    /// A finished operation (only called after `traced` said yes). Must not block: queue.
    fn trace(&self, _trace: Trace) {}
}
