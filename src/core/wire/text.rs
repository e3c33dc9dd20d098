//! Reply values as text: the one set of "bytes to text" rules, used by the model's readers of
//! the `redis` crate's `Value` and by the RESP scanner that reads raw reply bytes.
//!
//! Why one place: the fast raw-byte path ([`super::resp`]) must decode exactly what the
//! crate's path decodes, or a query would answer differently depending on which path served
//! it. The rules: a bulk string is text (lossy UTF-8); a simple string is itself (but `OK`,
//! which the crate parses as `Value::Okay`, is not text); an integer is its decimal form;
//! anything else (nil, arrays, errors) has no text.

use std::borrow::Cow;
use std::collections::HashMap;

use redis::Value;
use serde::Serializer;

/// One scalar of a reply, before the text rules apply.
pub enum Scalar<'a> {
    /// A bulk string's bytes.
    Bytes(&'a [u8]),
    /// A simple (or verbatim) string.
    Str(&'a str),
    /// An integer reply.
    Int(i64),
    /// Anything without text.
    None,
}

/// The rules themselves (see the module doc).
pub fn scalar_text(s: Scalar<'_>) -> Option<Cow<'_, str>> {
    match s {
        Scalar::Bytes(b) => Some(String::from_utf8_lossy(b)),
        Scalar::Str(s) => Some(Cow::Borrowed(s)),
        Scalar::Int(i) => Some(Cow::Owned(i.to_string())),
        Scalar::None => None,
    }
}

fn scalar_of(v: &Value) -> Scalar<'_> {
    match v {
        Value::BulkString(b) => Scalar::Bytes(b),
        Value::SimpleString(s) => Scalar::Str(s),
        Value::VerbatimString { text, .. } => Scalar::Str(text),
        Value::Int(i) => Scalar::Int(*i),
        _ => Scalar::None,
    }
}

/// A reply value as text (lossy UTF-8), if it is a string.
pub fn text(v: &Value) -> Option<String> {
    scalar_text(scalar_of(v)).map(Cow::into_owned)
}

/// Like [`text`], but takes the reply value and reuses its bytes when they are valid UTF-8
/// (the common case): no copy per field on large stream reads.
pub fn into_text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
        Value::SimpleString(s) => Some(s),
        Value::VerbatimString { text, .. } => Some(text),
        other => text(&other),
    }
}

/// Converts an HGETALL reply (RESP2 flat array or RESP3 map) into a map, lossy on bad UTF-8.
pub fn hash_from_value(v: Value) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut put = |k: &Value, v: &Value| {
        if let (Some(k), Some(v)) = (text(k), text(v)) {
            out.insert(k, v);
        }
    };
    match v {
        Value::Array(items) => {
            let mut it = items.iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                put(k, v);
            }
        }
        Value::Map(pairs) => {
            for (k, v) in &pairs {
                put(k, v);
            }
        }
        _ => {}
    }
    out
}

/// Integers are written as i64 so JS hosts get numbers, not BigInts (all our values are
/// ms epochs and ids far below 2^53).
pub(crate) fn int<S: Serializer>(v: &u64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_i64(i64::try_from(*v).unwrap_or(i64::MAX))
}

/// [`int`] for optional values (`null` when absent).
pub(crate) fn opt_int<S: Serializer>(
    v: &Option<u64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(v) => int(v, s),
        None => s.serialize_none(),
    }
}
