//! The activity stream: entry schema, validation of inputs, XADD / XRANGE / XTRIM, and the
//! decoder that turns any entry — ours or foreign — into an [`ActivityEntry`] without failing.
//!
//! Non-UTF-8 bytes in a field name or value are rendered with U+FFFD (lossy UTF-8).
//!
//! One concept per file: [`entry`] (the entry, its input and their encoding), [`decode`]
//! (replies to entries, from the crate's parse or raw bytes), [`query`] (validated queries),
//! [`stream`] (the stream's reads and writes), [`writer`] (appends on behalf of an author),
//! [`once`] (appends at most once per token: death reports, idempotency keys).

pub mod decode;
pub mod entry;
pub mod once;
pub mod query;
pub mod stream;
pub mod writer;

pub use decode::{decode, decode_pairs, decode_range};
pub use entry::{
    encode, validate_input, validate_reason, ActivityEntry, ActivityInput, Author, EntryRef,
};
pub use query::{is_stream_id, make_query, parse_bound, Bound, Query};
pub use stream::{server_time_ms, ActivityLog};
pub use writer::Writer;

/// Fields of the schema; any other field lands in [`ActivityEntry::fields`].
pub const SCHEMA_FIELDS: [&str; 10] = [
    "instanceId",
    "event",
    "exchange",
    "exchangeId",
    "fromState",
    "toState",
    "reason",
    "publicIp",
    "hostname",
    "ts",
];
/// Limits on application fields.
pub const MAX_FIELDS: usize = 64;
pub const MAX_FIELD_NAME_LEN: usize = 64;
pub const MAX_FIELD_VALUE_LEN: usize = 8192;
pub const MAX_REASON_LEN: usize = 1024;
pub const MAX_QUERY_LIMIT: u64 = 1_000_000;

#[cfg(test)]
mod decode_tests;
#[cfg(test)]
mod tests;
