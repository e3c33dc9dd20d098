//! The pure core against real, throwaway `redis-server` processes (one per test), one file
//! per area, sharing the helpers in `common`.
//!
//! Run with `cargo test --release --no-default-features --features fault-points --test core`.
//! Needs `redis-server` on the PATH (apt-get install -y redis-server); the tests fail, never
//! skip, without it. The `faults` tests need the `fault-points` feature (test-only).

mod common;

mod activity;
#[cfg(feature = "fault-points")]
mod faults;
mod lifecycle;
mod store;
mod sweeper;
mod tail;
mod trace;
