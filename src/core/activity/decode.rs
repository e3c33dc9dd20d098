//! Replies to entries: the one mapping of field pairs onto the schema, fed either by the
//! crate's parse (`Value`) or by the raw-byte scanner of [`crate::core::wire::resp`].

use std::borrow::Cow;

use redis::Value;

use super::entry::{ActivityEntry, EntryRef};
use crate::core::wire::resp::{self, ProtoError};
use crate::core::wire::text::{into_text, text};

/// Decodes one entry from its ID and flat field list. Never fails: missing schema fields
/// become empty strings or `None`, an odd trailing name is dropped, unknown fields are kept.
pub fn decode(id: &str, flat: Vec<Value>) -> ActivityEntry {
    let mut pairs = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if let (Some(k), Some(v)) = (into_text(k), into_text(v)) {
            pairs.push((Cow::Owned(k), Cow::Owned(v)));
        }
    }
    decode_pairs(Cow::Borrowed(id), pairs.into_iter()).into_owned()
}

/// The one place that maps an entry's text pairs onto the schema (both the crate's `Value`
/// path and the RESP decoder use it): a later duplicate wins, unknown names are kept in order.
pub fn decode_pairs<'a>(
    id: Cow<'a, str>,
    pairs: impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
) -> EntryRef<'a> {
    let time = id
        .split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    let mut e = EntryRef {
        id,
        time,
        instance_id: Cow::Borrowed(""),
        event: Cow::Borrowed(""),
        exchange: Cow::Borrowed(""),
        exchange_id: None,
        from_state: None,
        to_state: None,
        reason: None,
        public_ip: None,
        hostname: None,
        ts: Cow::Borrowed(""),
        fields: Vec::new(),
    };
    for (k, v) in pairs {
        match k.as_ref() {
            "instanceId" => e.instance_id = v,
            "event" => e.event = v,
            "exchange" => e.exchange = v,
            "exchangeId" => e.exchange_id = v.parse().ok(),
            "fromState" => e.from_state = v.parse().ok(),
            "toState" => e.to_state = v.parse().ok(),
            "reason" => e.reason = Some(v),
            "publicIp" => e.public_ip = Some(v),
            "hostname" => e.hostname = Some(v),
            "ts" => e.ts = v,
            _ => e.fields.push((k, v)),
        }
    }
    e
}

/// Decodes an XRANGE / XREVRANGE reply; malformed items are skipped.
pub fn decode_range(v: Value) -> Vec<ActivityEntry> {
    let Value::Array(items) = v else {
        return vec![];
    };
    items
        .into_iter()
        .filter_map(|item| match item {
            Value::Array(mut pair) if pair.len() == 2 => {
                let fields = pair.pop()?;
                let id = text(&pair[0])?;
                match fields {
                    Value::Array(flat) => Some(decode(&id, flat)),
                    Value::Map(m) => {
                        let flat: Vec<Value> = m.into_iter().flat_map(|(k, v)| [k, v]).collect();
                        Some(decode(&id, flat))
                    }
                    _ => Some(decode(&id, vec![])),
                }
            }
            _ => None,
        })
        .collect()
}

/// How many entries a range reply holds, and the ID of the last one (for the next page).
pub(crate) fn page_extent(v: &Value) -> (u64, Option<String>) {
    let Value::Array(items) = v else {
        return (0, None);
    };
    let last = items.last().and_then(|item| match item {
        Value::Array(pair) => pair.first().and_then(text),
        _ => None,
    });
    (items.len() as u64, last)
}

/// Feeds each entry of a complete raw range reply to `sink` (until it returns false): the
/// scanner's pairs mapped by [`decode_pairs`], exactly as [`decode_range`] maps the crate's
/// parse of the same bytes.
pub fn for_each_entry<'a>(
    reply: &'a [u8],
    mut sink: impl FnMut(EntryRef<'a>) -> bool,
) -> Result<(), ProtoError> {
    resp::for_each_entry(reply, |id, pairs| sink(decode_pairs(id, pairs.drain(..))))
}

/// Decodes an XREAD reply for one stream (RESP2 array or RESP3 map); nil means nothing new.
pub(crate) fn decode_xread(v: Value) -> Vec<ActivityEntry> {
    match v {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => {
                    decode_range(kv.pop().unwrap_or(Value::Nil))
                }
                _ => vec![],
            })
            .collect(),
        Value::Map(m) => m.into_iter().flat_map(|(_, v)| decode_range(v)).collect(),
        _ => vec![],
    }
}
