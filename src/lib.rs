//! `@livermore/perseus-native`: Perseus network coordination for Livermore services.
//!
//! [`core`] is the whole product in plain Rust (tested with `cargo test` against real Redis);
//! `node` (feature `node`) is the thin napi-rs layer that converts types and events.

pub mod core;

#[cfg(feature = "node")]
mod node;
