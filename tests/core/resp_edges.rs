//! Issue 23 item 7: the RESP reader of direct range reads against adversarial headers — huge,
//! negative and overflowing counts and lengths. It must never panic (these tests run with
//! overflow checks on: `scripts/test.sh` uses the `test-release` profile) and a declared
//! length or count over its cap must be an error at once (the caller then reads the page
//! through the crate), never a wait for bytes that will not come.

use perseus_native::core::wire::resp::{extent, for_each_entry, FrameScanner};
use proptest::prelude::*;

/// Far beyond any cap a real reply could need (Redis' own bulk cap is 512 MiB).
const HUGE: i64 = 1 << 40;

/// Header numbers an attacker or a corrupt link could send.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(i64::MAX.to_string()),
        Just(i64::MIN.to_string()),
        Just((i64::MAX - 1).to_string()),
        Just(u64::MAX.to_string()),
        Just("99999999999999999999999999".to_string()),
        Just("-1".to_string()),
        Just("-2".to_string()),
        Just("0".to_string()),
        Just(HUGE.to_string()),
        (0i64..16).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        (HUGE..i64::MAX).prop_map(|n| n.to_string()),
    ]
}

/// One frame header (array, bulk, integer, simple, error) with an adversarial number, plus
/// a few body bytes.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(&[b'*', b'$', b':', b'+', b'-'][..]),
        number(),
        proptest::collection::vec(any::<u8>(), 0..6),
    )
        .prop_map(|(kind, n, body)| {
            let mut v = vec![kind];
            v.extend_from_slice(n.as_bytes());
            v.extend_from_slice(b"\r\n");
            v.extend_from_slice(&body);
            v.extend_from_slice(b"\r\n");
            v
        })
}

/// An array or bulk header declaring a count or length of at least [`HUGE`], with a few body
/// bytes after it.
fn huge_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(&[b'*', b'$'][..]),
        prop_oneof![Just(i64::MAX), Just(HUGE), HUGE..i64::MAX],
        proptest::collection::vec(any::<u8>(), 0..6),
    )
        .prop_map(|(kind, n, body)| {
            let mut v = vec![kind];
            v.extend_from_slice(n.to_string().as_bytes());
            v.extend_from_slice(b"\r\n");
            v.extend_from_slice(&body);
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Any sequence of adversarial frames, fed whole or cut anywhere: no panic, no overflow.
    #[test]
    fn adversarial_headers_never_panic(frames in proptest::collection::vec(frame(), 1..8), cut in any::<prop::sample::Index>()) {
        let bytes: Vec<u8> = frames.concat();
        let at = cut.index(bytes.len() + 1);
        let mut s = FrameScanner::default();
        let _ = s.feed(&bytes[..at]);
        let _ = s.feed(&bytes);
        let _ = extent(&bytes);
        let _ = for_each_entry(&bytes, |_, _| true);
    }

    /// A reply that declares a count or length over the cap is refused at once: an error, not
    /// `Ok(None)` (which would make the reader wait for the command timeout).
    #[test]
    fn a_declared_length_over_the_cap_is_an_error_at_once(first in huge_frame(), rest in proptest::collection::vec(frame(), 0..4)) {
        let mut bytes = first;
        bytes.extend(rest.concat());
        let got = FrameScanner::default().feed(&bytes);
        prop_assert!(got.is_err(), "declared over the cap, got {:?}", got);
    }

    /// The same inside a page: an entry whose fields declare a huge count or length.
    #[test]
    fn a_huge_header_inside_a_page_is_an_error_at_once(inner in huge_frame()) {
        let mut bytes = b"*2\r\n*2\r\n$3\r\n1-1\r\n".to_vec();
        bytes.extend_from_slice(&inner);
        let got = FrameScanner::default().feed(&bytes);
        prop_assert!(got.is_err(), "declared over the cap, got {:?}", got);
    }
}

/// Nested huge arrays where the walker skips what it does not read (an ID that is an array):
/// the count of elements to skip must not overflow.
#[test]
fn nested_huge_arrays_in_a_skipped_element_do_not_overflow() {
    let max = i64::MAX;
    let reply = format!("*1\r\n*2\r\n*{max}\r\n*{max}\r\n*{max}\r\n*{max}\r\n");
    assert!(for_each_entry(reply.as_bytes(), |_, _| true).is_err());
    assert!(extent(reply.as_bytes()).is_err());
    let reply = format!("*1\r\n*{max}\r\n*{max}\r\n*{max}\r\n*{max}\r\n");
    let _ = extent(reply.as_bytes());
    let _ = for_each_entry(reply.as_bytes(), |_, _| true);
}

/// Negative lengths are nil (as the crate reads them), whatever their size.
#[test]
fn negative_lengths_are_nil_at_any_size() {
    for n in ["-1", "-2", &i64::MIN.to_string()] {
        let bulk = format!("${n}\r\n");
        assert_eq!(
            FrameScanner::default().feed(bulk.as_bytes()),
            Ok(Some(bulk.len()))
        );
        let arr = format!("*{n}\r\n");
        assert_eq!(
            FrameScanner::default().feed(arr.as_bytes()),
            Ok(Some(arr.len()))
        );
        assert_eq!(extent(arr.as_bytes()), Ok((0, None)));
    }
}
