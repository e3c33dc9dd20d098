//! The napi-rs layer: converts options, records and events between JS and the core.
//! No behaviour lives here.

mod class;
mod convert;
mod errors;
mod events;
mod functions;
mod runtime;
