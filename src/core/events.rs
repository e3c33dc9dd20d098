//! What the core tells its host. The host (the napi layer, or a test) implements [`EventSink`].

use crate::core::activity::ActivityEntry;
use crate::core::error::Error;
use crate::core::fsm::{Event, State};
use crate::core::registry::InstanceInfo;

/// One of this instance's own lifecycle transitions.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChange {
    pub instance_id: String,
    pub from: State,
    pub to: State,
    pub event: Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// ISO 8601.
    pub at: String,
}

/// An operator asked this instance to drain (`requestDrain` on any network).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DrainRequest {
    /// The instance asked to drain.
    pub instance_id: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// The instance id of the network that asked.
    pub requested_by: String,
    /// ISO 8601.
    pub at: String,
}

/// Everything a network reports to its host.
#[derive(Debug, Clone)]
pub enum NetEvent {
    StateChange(StateChange),
    InstanceJoined(InstanceInfo),
    InstanceLeft(InstanceInfo),
    InstanceLost(InstanceInfo),
    Activity(ActivityEntry),
    /// An operator asked this instance to drain.
    DrainRequested(DrainRequest),
    Connection {
        connected: bool,
        error: Option<String>,
    },
    /// A background task failed (it keeps retrying).
    Error(Error),
    /// A finished operation, for a host that traces it (built only when
    /// [`EventSink::traced`] says someone listens).
    Trace(Box<Trace>),
    /// The lifecycle ended for good (drained, failed, or lost with 'stay-dead'): the host may
    /// stop keeping its process alive for this network.
    Released,
}

/// Which listeners the host has, so the core can skip work nobody hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Activity,
    InstanceJoined,
    InstanceLeft,
    InstanceLost,
}

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
/// [`EventSink::traced`], and the host turns it into its own instrument's messages.
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
/// untraced operation pays one atomic load ([`EventSink::traced`]) and nothing else.
#[derive(Debug, Clone, Copy)]
pub struct TraceTimer {
    kind: TraceKind,
    started: std::time::Instant,
    started_at_ms: u64,
}

impl TraceTimer {
    /// Starts timing when `sink` traces `kind`; `None` otherwise.
    pub fn start(sink: &dyn EventSink, kind: TraceKind) -> Option<TraceTimer> {
        sink.traced(kind).then(|| TraceTimer {
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

/// The host side of events. Implementations must not block: they queue.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: NetEvent);
    /// Asks the host's event loop to answer the watchdog (the host calls `watchdog.pong()`
    /// from its loop). A host without an event loop keeps this default: it answers at once.
    fn ping(&self, watchdog: &std::sync::Arc<crate::core::watchdog::Watchdog>) {
        watchdog.pong();
    }
    /// The network is closed: release every host handle (after queued events are delivered).
    fn close(&self) {}
    /// Whether the host has a subscriber for `kind` now (cheap: an atomic load). The core
    /// builds and emits a [`Trace`] only when it does. Default: nobody traces.
    fn traced(&self, _kind: TraceKind) -> bool {
        false
    }
}

/// A sink that drops everything: for tools and tests that do not listen.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: NetEvent) {}
}
