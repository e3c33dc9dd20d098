//! The napi-rs layer: converts options, records and events between JS and the core.
//! No behaviour lives here.

// In a test build napi-derive does not register exports, so they look unused.
#![cfg_attr(test, allow(dead_code))]

mod batch;
mod class;
mod convert;
mod credentials;
mod diag;
mod errors;
mod events;
mod functions;
mod runtime;
