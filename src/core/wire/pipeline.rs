//! RESP2 for pipelines sent over connections of our own: commands packed straight into one
//! buffer, and replies that are each one bulk string or one error (what `XADD *` answers),
//! read without the `redis` crate's `Cmd` and `Value` allocations.
//!
//! Why (issue 21): on the write row the runtime threads spent about a third of their time
//! building a `Cmd` per entry (its argument vectors grown piece by piece), packing it again
//! into the pipeline, and parsing each reply into a `Value` before it became a string.

use super::resp::{bad, bulk_len, int, line_end, sum, ProtoError};

/// Appends `*argc\r\n`, the header of a command of `argc` arguments.
pub fn command(buf: &mut Vec<u8>, argc: usize) {
    buf.push(b'*');
    decimal(buf, argc);
    buf.extend_from_slice(b"\r\n");
}

/// Appends one argument as a bulk string.
pub fn arg(buf: &mut Vec<u8>, a: &[u8]) {
    buf.push(b'$');
    decimal(buf, a.len());
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(a);
    buf.extend_from_slice(b"\r\n");
}

fn decimal(buf: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// One reply of such a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Simple {
    /// A bulk string (UTF-8: the replies read here are stream IDs).
    Bulk(String),
    /// An error line without its `-` (`OOM command not allowed ...`), as the crate's
    /// `ServerError` prints it (code, space, details).
    Error(String),
}

/// Reads replies from a buffer that grows as bytes arrive, each at most once.
#[derive(Debug, Default)]
pub struct SimpleReplies {
    pos: usize,
    /// The whole replies read so far, in order.
    pub done: Vec<Simple>,
}

impl SimpleReplies {
    /// Reads every whole reply `buf` holds past the ones already read. Anything but a bulk
    /// string or an error line (a nil, an array, a bad header) is an error.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(), ProtoError> {
        loop {
            let Some(&kind) = buf.get(self.pos) else {
                return Ok(());
            };
            let Some(eol) = line_end(buf, self.pos + 1) else {
                return Ok(());
            };
            match kind {
                b'-' => {
                    let text = String::from_utf8_lossy(&buf[self.pos + 1..eol]).into_owned();
                    self.done.push(Simple::Error(text));
                    self.pos = eol + 2;
                }
                b'$' => {
                    let Some(n) = bulk_len(int(&buf[self.pos + 1..eol])?)? else {
                        return bad("a nil reply");
                    };
                    let end = sum(eol + 2, n, 2)?;
                    if buf.len() < end {
                        return Ok(());
                    }
                    if &buf[end - 2..end] != b"\r\n" {
                        return bad("a bulk string without its CRLF");
                    }
                    let body = std::str::from_utf8(&buf[eol + 2..end - 2])
                        .map_err(|_| ProtoError("a reply that is not UTF-8".into()))?;
                    self.done.push(Simple::Bulk(body.to_string()));
                    self.pos = end;
                }
                _ => return bad("a reply that is not a bulk string or an error"),
            }
        }
    }

    /// How many bytes of the buffer the replies read so far take.
    pub fn consumed(&self) -> usize {
        self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_what_the_crate_packs() {
        let mut buf = Vec::new();
        command(&mut buf, 4);
        for a in ["XADD", "k", "*", "é"] {
            arg(&mut buf, a.as_bytes());
        }
        let mut c = redis::cmd("XADD");
        c.arg("k").arg("*").arg("é");
        assert_eq!(buf, c.get_packed_command());
        let mut ten = Vec::new();
        arg(&mut ten, &[b'x'; 10]);
        assert!(ten.starts_with(b"$10\r\n"));
    }

    #[test]
    fn reads_ids_and_errors_as_they_arrive_byte_by_byte() {
        let fixed = b"$15\r\n1700000000000-0\r\n-OOM command not allowed\r\n$3\r\n1-1\r\n";
        let mut r = SimpleReplies::default();
        for end in 0..=fixed.len() {
            r.feed(&fixed[..end]).unwrap();
        }
        assert_eq!(
            r.done,
            vec![
                Simple::Bulk("1700000000000-0".into()),
                Simple::Error("OOM command not allowed".into()),
                Simple::Bulk("1-1".into()),
            ]
        );
        assert_eq!(r.consumed(), fixed.len());
    }

    #[test]
    fn refuses_what_an_xadd_does_not_answer() {
        for wire in [
            &b"$-1\r\n"[..],
            b"*1\r\n$1\r\nx\r\n",
            b":1\r\n",
            b"$1\r\nxy\r\n",
        ] {
            assert!(SimpleReplies::default().feed(wire).is_err(), "{wire:?}");
        }
    }
}
