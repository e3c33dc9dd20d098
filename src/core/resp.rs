//! RESP2 reply bytes straight to activity entries, without the `redis` crate's `Value` tree.
//!
//! Why: a 100,000-entry query is 2.2 million bulk strings. The crate allocates a `Value` per
//! string and a `Vec` per array, and the entries then copy them again; reading borrowed
//! slices of the reply buffer instead leaves one allocation per entry (its extra fields).
//!
//! Two parts, both pure: [`FrameScanner`] finds where one reply ends in a growing buffer
//! (resumable, so a multi-megabyte reply read in chunks is scanned once), and
//! [`for_each_entry`] / [`extent`] walk a complete XRANGE / XREVRANGE reply with exactly the
//! rules of [`crate::core::activity::decode_range`] over the crate's parse (proptested against
//! `redis::parse_redis_value` below). Anything unexpected is an error, never a panic: the
//! caller then reads the page through the crate instead.

use std::borrow::Cow;

use crate::core::activity::{decode_pairs, EntryRef};

/// The reply is not RESP2 as expected (the caller falls back to the crate's path).
#[derive(Debug, Clone, PartialEq)]
pub struct ProtoError(pub String);

fn bad<T>(what: &str) -> Result<T, ProtoError> {
    Err(ProtoError(what.to_string()))
}

/// Finds the end of the first reply in a buffer that grows as bytes arrive. Keeps its place
/// between calls: each byte of the headers is looked at once, bulk bodies are skipped by length.
#[derive(Debug, Default)]
pub struct FrameScanner {
    pos: usize,
    /// Elements still to come in each open array, innermost last.
    open: Vec<i64>,
}

impl FrameScanner {
    /// `Ok(Some(len))` once `buf[..len]` holds one whole reply; `Ok(None)` while incomplete.
    /// `buf` must be the same buffer each time, only longer.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtoError> {
        loop {
            let Some(eol) = line_end(buf, self.pos + 1) else {
                return Ok(None);
            };
            let after = eol + 2;
            match buf[self.pos] {
                b'+' | b'-' | b':' => self.pos = after,
                b'$' => {
                    let n = int(&buf[self.pos + 1..eol])?;
                    if n < 0 {
                        self.pos = after;
                    } else {
                        let end = after + n as usize + 2;
                        if buf.len() < end {
                            return Ok(None);
                        }
                        self.pos = end;
                    }
                }
                b'*' => {
                    let n = int(&buf[self.pos + 1..eol])?;
                    self.pos = after;
                    if n > 0 {
                        self.open.push(n);
                        continue;
                    }
                }
                _ => return bad("not a RESP2 reply"),
            }
            // One element complete: count it in its array, closing arrays that are full.
            loop {
                match self.open.last_mut() {
                    None => return Ok(Some(self.pos)),
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }
}

/// The index of the `\r` of the first `\r\n` at or after `from`.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    let mut i = 0;
    while let Some(k) = rest[i..].iter().position(|&b| b == b'\r') {
        let at = i + k;
        match rest.get(at + 1) {
            Some(b'\n') => return Some(from + at),
            Some(_) => i = at + 1,
            None => return None,
        }
    }
    None
}

fn int(digits: &[u8]) -> Result<i64, ProtoError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map_or_else(|| bad("bad length or integer"), Ok)
}

/// One element of a complete reply; arrays give their length and are walked by the caller.
enum Item<'a> {
    Bulk(&'a [u8]),
    Simple(&'a [u8]),
    Error,
    Int(i64),
    Nil,
    Array(usize),
}

/// A cursor over one complete reply.
struct Cursor<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cursor<'a> {
    fn next(&mut self) -> Result<Item<'a>, ProtoError> {
        let Some(eol) = line_end(self.b, self.p + 1) else {
            return bad("truncated reply");
        };
        let kind = self.b[self.p];
        let line = &self.b[self.p + 1..eol];
        self.p = eol + 2;
        Ok(match kind {
            b'+' => Item::Simple(line),
            b'-' => Item::Error,
            b':' => Item::Int(int(line)?),
            b'$' => {
                let n = int(line)?;
                if n < 0 {
                    Item::Nil
                } else {
                    let end = self.p + n as usize;
                    if self.b.len() < end + 2 {
                        return bad("truncated bulk string");
                    }
                    let body = &self.b[self.p..end];
                    self.p = end + 2;
                    Item::Bulk(body)
                }
            }
            b'*' => {
                let n = int(line)?;
                if n < 0 {
                    Item::Nil
                } else {
                    Item::Array(n as usize)
                }
            }
            _ => return bad("not a RESP2 reply"),
        })
    }

    /// Skips `n` elements (and everything inside them).
    fn skip(&mut self, mut n: usize) -> Result<(), ProtoError> {
        while n > 0 {
            if let Item::Array(k) = self.next()? {
                n += k;
            }
            n -= 1;
        }
        Ok(())
    }

    /// An element as text, with the crate's rules (`registry::text`): bulk strings (lossy
    /// UTF-8), simple strings but `OK` (the crate's `Value::Okay`), integers; else `None`.
    fn text(&mut self) -> Result<Option<Cow<'a, str>>, ProtoError> {
        Ok(match self.next()? {
            Item::Bulk(b) => Some(String::from_utf8_lossy(b)),
            Item::Simple(b"OK") => None,
            Item::Simple(b) => match std::str::from_utf8(b) {
                Ok(s) => Some(Cow::Borrowed(s)),
                Err(_) => return bad("simple string is not UTF-8"),
            },
            Item::Int(i) => Some(Cow::Owned(i.to_string())),
            Item::Array(k) => {
                self.skip(k)?;
                None
            }
            Item::Error | Item::Nil => None,
        })
    }
}

/// How many items a range reply holds and the ID of the last one (for the next page): the
/// rules of `activity::page_extent`. A server error reply is an error here.
pub fn extent(reply: &[u8]) -> Result<(u64, Option<String>), ProtoError> {
    let mut c = Cursor { b: reply, p: 0 };
    let n = match c.next()? {
        Item::Array(n) => n,
        Item::Error => return bad("server error"),
        _ => return Ok((0, None)),
    };
    let mut last = None;
    for i in 0..n {
        match c.next()? {
            Item::Array(0) => last = None,
            Item::Array(k) => {
                let id = c.text()?;
                if i + 1 == n {
                    last = id.map(Cow::into_owned);
                }
                c.skip(k - 1)?;
            }
            _ => last = None,
        }
    }
    Ok((n as u64, last))
}

/// Feeds each entry of a complete range reply to `sink` (until it returns false), decoded
/// exactly as `activity::decode_range` decodes the crate's parse of the same bytes: items
/// that are not `[id, fields]` pairs with a text ID are skipped, fields that are not a flat
/// array count as none, pairs with a non-text name or value are dropped.
pub fn for_each_entry<'a>(
    reply: &'a [u8],
    mut sink: impl FnMut(EntryRef<'a>) -> bool,
) -> Result<(), ProtoError> {
    let mut c = Cursor { b: reply, p: 0 };
    let n = match c.next()? {
        Item::Array(n) => n,
        Item::Error => return bad("server error"),
        _ => return Ok(()),
    };
    let mut pairs: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::with_capacity(16);
    for _ in 0..n {
        match c.next()? {
            Item::Array(2) => {}
            Item::Array(k) => {
                c.skip(k)?;
                continue;
            }
            _ => continue,
        }
        let Some(id) = c.text()? else {
            c.skip(1)?;
            continue;
        };
        pairs.clear();
        // Fields that are not an array (nil: an entry deleted under a pending-list read)
        // count as none.
        if let Item::Array(m) = c.next()? {
            for _ in 0..m / 2 {
                if let (Some(k), Some(v)) = (c.text()?, c.text()?) {
                    pairs.push((k, v));
                }
            }
            if m % 2 == 1 {
                c.skip(1)?;
            }
        }
        if !sink(decode_pairs(id, pairs.drain(..))) {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::activity::{decode_range, ActivityEntry};
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
        let ext = crate::core::activity::page_extent(&v);
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
        let mut v = crate::core::activity::SCHEMA_FIELDS.to_vec();
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
}
