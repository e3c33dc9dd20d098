//! The pure core: everything Perseus does, with no knowledge of Node.

pub mod config;
pub mod error;
pub mod fsm;
pub mod keys;
pub mod store;
