//! The wire: what the store and the model share about Redis replies and connections, with no
//! knowledge of either. Bottom layer of the core above the leaves (see `core/mod.rs`).
//!
//! - [`text`]: the one set of "bytes to text" rules for reply values;
//! - [`tls`]: the crypto provider and TLS client configuration;
//! - [`resp`]: the RESP2 frame scanner and raw range-reply walker;
//! - [`pipeline`]: commands packed into one buffer, and their bulk-or-error replies;
//! - [`slots`]: the one slot table and its `CLUSTER SLOTS` parser.

pub mod pipeline;
pub mod resp;
pub mod slots;
pub mod text;
pub mod tls;
