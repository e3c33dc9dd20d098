//! The pure core: everything Perseus does, with no knowledge of Node.

pub mod config;
pub mod error;
pub mod fsm;
pub mod keys;
pub mod store;
pub mod activity;
pub mod events;
pub mod ip;
pub mod logging;
pub mod registry;
pub mod heartbeat;
pub mod network;
pub mod sweeper;
