//! The pure core: everything Perseus does, with no knowledge of Node.

pub mod activity;
pub mod clock;
pub mod config;
pub mod control;
pub mod credentials;
pub mod direct;
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
pub mod ordered;
pub mod registry;
pub mod resp;
pub mod slots;
pub mod store;
pub mod sweeper;
pub mod task;
pub mod trimmer;
pub mod watchdog;
