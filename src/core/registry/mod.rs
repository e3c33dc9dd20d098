//! Instance records: the seed's hash schema, the heartbeat payload, reading them back, and
//! every write to them (registration, state changes, the public IP, beats, a sweeper's
//! compare-and-set to dead and its report outbox). Garbage written by others is skipped (with
//! a warning), never an error.
//!
//! One concept per file: `model` (schema, payload, shapes), `scripts` (the Lua scripts),
//! `reads`, `writes`.

mod model;
mod reads;
mod scripts;
#[cfg(test)]
mod tests;
mod writes;

pub use model::*;
pub use writes::mark_dead;

use crate::core::keys::Keys;
use crate::core::store::Store;

/// Reads and lists instance records.
#[derive(Clone)]
pub struct Registry {
    store: Store,
    keys: Keys,
}

impl Registry {
    pub fn new(store: Store, keys: Keys) -> Self {
        Registry { store, keys }
    }
}
