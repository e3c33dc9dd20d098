//! What the core tells its host. The host (the napi layer, or a test) implements [`EventSink`].

use crate::core::activity::ActivityEntry;
use crate::core::error::Error;
use crate::core::fsm::{Event, State};
use crate::core::registry::InstanceInfo;
use crate::core::trace::Tracer;

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

/// The host side of events. Implementations must not block: they queue.
/// Every sink is a [`Tracer`] too (by default one that traces nothing).
pub trait EventSink: Tracer + Send + Sync {
    fn emit(&self, event: NetEvent);
    /// Asks the host's event loop to answer the watchdog (the host calls `watchdog.pong()`
    /// from its loop). A host without an event loop keeps this default: it answers at once.
    fn ping(&self, watchdog: &std::sync::Arc<crate::core::watchdog::Watchdog>) {
        watchdog.pong();
    }
    /// The network is closed: release every host handle (after queued events are delivered).
    fn close(&self) {}
}

/// A sink that drops everything: for tools and tests that do not listen.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: NetEvent) {}
}

impl Tracer for NoEvents {}
