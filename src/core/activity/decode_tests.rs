//! The raw-byte path (wire::resp + decode_pairs) against the crate's parse + decode_range,
//! proptested on the same RESP2 bytes; and the frame scanner at any split.

use super::decode::{for_each_entry, page_extent};
use super::{decode_range, ActivityEntry};
use crate::core::wire::resp::{extent, FrameScanner};
use proptest::prelude::*;
use redis::Value;

/// RESP2 bytes of a value tree (the encoder the crate's parser is checked against).
fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Nil => out.extend_from_slice(b"$-1\r\n"),
        Value::Int(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
        Value::BulkString(b) => {
            out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Value::SimpleString(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
        Value::Okay => out.extend_from_slice(b"+OK\r\n"),
        Value::ServerError(_) => out.extend_from_slice(b"-ERR nested\r\n"),
        Value::Array(items) => {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for i in items {
                encode(i, out);
            }
        }
        _ => unreachable!("not generated"),
    }
}

fn json_of_crate(bytes: &[u8]) -> (String, (u64, Option<String>)) {
    let v = redis::parse_redis_value(bytes).expect("the crate parses what we encode");
    let ext = page_extent(&v);
    let entries: Vec<ActivityEntry> = decode_range(v);
    (serde_json::to_string(&entries).unwrap(), ext)
}

fn json_of_ours(bytes: &[u8]) -> (String, (u64, Option<String>)) {
    let mut out = b"[".to_vec();
    for_each_entry(bytes, |e| {
        if out.len() > 1 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &e).unwrap();
        true
    })
    .unwrap();
    out.push(b']');
    (String::from_utf8(out).unwrap(), extent(bytes).unwrap())
}

/// Field names the generator favours: the schema's own (from the one list in
/// `activity`) plus application fields.
fn names() -> Vec<&'static str> {
    let mut v = super::SCHEMA_FIELDS.to_vec();
    v.extend(["reporter", "symbol"]);
    v
}

/// Field names and values: schema names, valid states and numbers, binary / non-UTF-8
/// bytes, control characters and quotes (JSON escaping), empty strings.
fn text_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => proptest::sample::select(names()).prop_map(|s| Value::BulkString(s.as_bytes().to_vec())),
        3 => proptest::sample::select(&["running", "dead", "zombie", "7", "-1", "18446744073709551616", "", "a\"b\\c\n\t\u{1}\u{7f}é😀"][..])
            .prop_map(|s| Value::BulkString(s.as_bytes().to_vec())),
        3 => proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::BulkString),
        1 => Just(Value::Nil),
        1 => any::<i64>().prop_map(Value::Int),
        1 => "[a-zA-Z0-9 ]{0,8}".prop_map(Value::SimpleString),
        1 => Just(Value::Okay),
        1 => Just(redis::parse_redis_value(b"-ERR x\r\n").unwrap()),
    ]
}

fn stream_id() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => (0u64..2_000_000_000_000, 0u64..100).prop_map(|(ms, s)| Value::BulkString(format!("{ms}-{s}").into_bytes())),
        1 => text_value(),
        1 => Just(Value::Array(vec![])),
    ]
}

/// One item of a range reply: mostly `[id, [k, v, ...]]`; sometimes `[id, nil]` (an entry
/// deleted under a pending-list read), odd field counts, nested arrays, or junk.
fn item() -> impl Strategy<Value = Value> {
    let fields = proptest::collection::vec(
        prop_oneof![10 => text_value(), 1 => proptest::collection::vec(text_value(), 0..3).prop_map(Value::Array)],
        0..24,
    );
    prop_oneof![
        10 => (stream_id(), fields).prop_map(|(id, f)| Value::Array(vec![id, Value::Array(f)])),
        1 => stream_id().prop_map(|id| Value::Array(vec![id, Value::Nil])),
        1 => (stream_id(), text_value()).prop_map(|(id, v)| Value::Array(vec![id, v])),
        1 => proptest::collection::vec(text_value(), 0..4).prop_map(Value::Array),
        1 => text_value(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decodes_like_the_crate(items in proptest::collection::vec(item(), 0..12)) {
        let mut bytes = Vec::new();
        encode(&Value::Array(items), &mut bytes);
        prop_assert_eq!(json_of_ours(&bytes), json_of_crate(&bytes));
    }

    #[test]
    fn scanner_finds_the_end_at_any_split(items in proptest::collection::vec(item(), 0..6), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..5), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut bytes = Vec::new();
        encode(&Value::Array(items), &mut bytes);
        let len = bytes.len();
        bytes.extend_from_slice(&tail); // the start of a next reply must not matter
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(len)).collect();
        points.sort();
        let mut s = FrameScanner::default();
        for p in points {
            prop_assert_eq!(s.feed(&bytes[..p]).unwrap(), None);
        }
        prop_assert_eq!(s.feed(&bytes).unwrap(), Some(len));
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = FrameScanner::default().feed(&bytes);
        let _ = extent(&bytes);
        let _ = for_each_entry(&bytes, |_| true);
    }
}

#[test]
fn empty_nil_and_error_replies() {
    assert_eq!(json_of_ours(b"*0\r\n"), json_of_crate(b"*0\r\n"));
    assert_eq!(json_of_ours(b"*-1\r\n"), json_of_crate(b"*-1\r\n"));
    assert!(extent(b"-WRONGTYPE x\r\n").is_err());
    assert!(for_each_entry(b"-WRONGTYPE x\r\n", |_| true).is_err());
    assert_eq!(
        FrameScanner::default()
            .feed(b"*2\r\n$1\r\na\r\n*0\r\n")
            .unwrap(),
        Some(15)
    );
    assert_eq!(
        FrameScanner::default().feed(b"*2\r\n$1\r\na\r\n").unwrap(),
        None
    );
}
