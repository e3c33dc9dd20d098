//! The pure core: everything Perseus does, with no knowledge of Node.
//!
//! Layered bottom-up — leaves (clock, error, fsm, faults, redact, credentials, config, logging,
//! metrics, watchdog), `wire`, `store`, the model (keys, index, registry, activity), tasks
//! (events, task, heartbeat, sweeper, trimmer, control, ip), `network` — each using only its
//! own layer and those below. The order is stated once, in `scripts/layers.mjs` (which checks
//! it from the imports, with no circle allowed), and printed into the README's module map.

pub mod activity;
pub mod clock;
pub mod config;
pub mod control;
pub mod credentials;
pub mod error;
pub mod events;
pub mod faults;
pub mod fsm;
pub mod heartbeat;
pub mod index;
pub mod ip;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod network;
pub mod redact;
pub mod registry;
pub mod store;
pub mod sweeper;
pub mod task;
pub mod trimmer;
pub mod watchdog;
pub mod wire;
