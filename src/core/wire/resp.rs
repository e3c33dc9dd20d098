//! RESP2 reply bytes straight to stream entries (an ID and its field pairs), without the
//! `redis` crate's `Value` tree.
//!
//! Why: a 100,000-entry query is 2.2 million bulk strings. The crate allocates a `Value` per
//! string and a `Vec` per array, and the entries then copy them again; reading borrowed
//! slices of the reply buffer instead leaves one allocation per entry (its extra fields).
//!
//! Two parts, both pure: [`FrameScanner`] finds where one reply ends in a growing buffer
//! (resumable, so a multi-megabyte reply read in chunks is scanned once), and
//! [`for_each_entry`] / [`extent`] walk a complete XRANGE / XREVRANGE reply with the text rules
//! of [`super::text`] (the activity model's decode turns the pairs into entries; the proptest
//! against `redis::parse_redis_value` lives with it). It knows nothing of activity. Anything
//! unexpected is an error, never a panic: the caller then reads the page through the crate
//! instead.

use std::borrow::Cow;

use super::text::{scalar_text, Scalar};

/// One entry's field pairs as text, borrowed from the reply where possible.
pub type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// The reply is not RESP2 as expected (the caller falls back to the crate's path).
#[derive(Debug, Clone, PartialEq)]
pub struct ProtoError(pub String);

/// The longest bulk string a reply may declare: Redis' own `proto-max-bulk-len` default
/// (512 MiB). A longer one can only be a corrupt or hostile header: refused at once (the
/// caller reads the page through the crate) instead of waiting for bytes that never come.
pub const MAX_BULK_LEN: i64 = 512 * 1024 * 1024;
/// The most elements an array may declare. A range page is at most 10,000 entries of at most
/// ~160 fields; 2^24 leaves room for any reply the direct path reads.
pub const MAX_COUNT: i64 = 1 << 24;

/// A declared bulk length checked against [`MAX_BULK_LEN`]; `None` for nil (any negative, as
/// the crate reads it).
pub(super) fn bulk_len(n: i64) -> Result<Option<usize>, ProtoError> {
    if n < 0 {
        return Ok(None);
    }
    if n > MAX_BULK_LEN {
        return bad("declared bulk length over the cap");
    }
    usize::try_from(n).map(Some).or_else(|_| bad("bulk length"))
}

/// A declared element count checked against [`MAX_COUNT`]; `None` for nil (any negative).
fn count(n: i64) -> Result<Option<usize>, ProtoError> {
    if n < 0 {
        return Ok(None);
    }
    if n > MAX_COUNT {
        return bad("declared element count over the cap");
    }
    usize::try_from(n)
        .map(Some)
        .or_else(|_| bad("element count"))
}

/// `a + b + c` or an error: positions computed from declared lengths never wrap.
pub(super) fn sum(a: usize, b: usize, c: usize) -> Result<usize, ProtoError> {
    a.checked_add(b)
        .and_then(|x| x.checked_add(c))
        .map_or_else(|| bad("length overflows"), Ok)
}

pub(super) fn bad<T>(what: &str) -> Result<T, ProtoError> {
    Err(ProtoError(what.to_string()))
}

/// Finds the end of the first reply in a buffer that grows as bytes arrive. Keeps its place
/// between calls: each byte of the headers is looked at once, bulk bodies are skipped by length.
#[derive(Debug, Default)]
pub struct FrameScanner {
    pos: usize,
    /// Elements still to come in each open array, innermost last.
    open: Vec<usize>,
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
                b'$' => match bulk_len(int(&buf[self.pos + 1..eol])?)? {
                    None => self.pos = after,
                    Some(n) => {
                        let end = sum(after, n, 2)?;
                        if buf.len() < end {
                            return Ok(None);
                        }
                        self.pos = end;
                    }
                },
                b'*' => {
                    let n = count(int(&buf[self.pos + 1..eol])?)?;
                    self.pos = after;
                    if let Some(n) = n.filter(|n| *n > 0) {
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
pub(super) fn line_end(buf: &[u8], from: usize) -> Option<usize> {
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

pub(super) fn int(digits: &[u8]) -> Result<i64, ProtoError> {
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
            b'$' => match bulk_len(int(line)?)? {
                None => Item::Nil,
                Some(n) => {
                    let end = sum(self.p, n, 0)?;
                    if self.b.len() < sum(end, 2, 0)? {
                        return bad("truncated bulk string");
                    }
                    let body = &self.b[self.p..end];
                    self.p = end + 2;
                    Item::Bulk(body)
                }
            },
            b'*' => match count(int(line)?)? {
                None => Item::Nil,
                Some(n) => Item::Array(n),
            },
            _ => return bad("not a RESP2 reply"),
        })
    }

    /// Skips `n` elements (and everything inside them).
    fn skip(&mut self, mut n: usize) -> Result<(), ProtoError> {
        while n > 0 {
            if let Item::Array(k) = self.next()? {
                n = sum(n, k, 0)?;
            }
            n -= 1;
        }
        Ok(())
    }

    /// An element as text, with the rules of [`super::text`] (a simple `OK` is the crate's
    /// `Value::Okay`, not text; an array is skipped whole).
    fn text(&mut self) -> Result<Option<Cow<'a, str>>, ProtoError> {
        let scalar = match self.next()? {
            Item::Bulk(b) => Scalar::Bytes(b),
            Item::Simple(b"OK") => Scalar::None,
            Item::Simple(b) => match std::str::from_utf8(b) {
                Ok(s) => Scalar::Str(s),
                Err(_) => return bad("simple string is not UTF-8"),
            },
            Item::Int(i) => Scalar::Int(i),
            Item::Array(k) => {
                self.skip(k)?;
                Scalar::None
            }
            Item::Error | Item::Nil => Scalar::None,
        };
        Ok(scalar_text(scalar))
    }
}

/// How many items a range reply holds and the ID of the last one (for the next page): the
/// rules of the activity model's `page_extent` over the crate's parse. A server error reply is an error here.
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

/// Feeds the ID and field pairs of each entry of a complete range reply to `sink` (until it
/// returns false), with the same shape rules as the activity model's decode of the crate's
/// parse: items that are not `[id, fields]` pairs with a text ID are skipped, fields that are
/// not a flat array count as none, pairs with a non-text name or value are dropped. The sink
/// may drain the pairs (the vector is reused).
pub fn for_each_entry<'a>(
    reply: &'a [u8],
    mut sink: impl FnMut(Cow<'a, str>, &mut Pairs<'a>) -> bool,
) -> Result<(), ProtoError> {
    let mut c = Cursor { b: reply, p: 0 };
    let n = match c.next()? {
        Item::Array(n) => n,
        Item::Error => return bad("server error"),
        _ => return Ok(()),
    };
    let mut pairs: Pairs<'a> = Vec::with_capacity(16);
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
        if !sink(id, &mut pairs) {
            return Ok(());
        }
    }
    Ok(())
}
