//! Unit tests of the entry codec and the query model.

use super::*;
use crate::core::error::Error;
use crate::core::fsm::State;
use redis::Value;

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

#[test]
fn encode_then_decode_round_trips() {
    let author = Author {
        instance_id: "i".into(),
        exchange: "coinbase".into(),
        exchange_id: 7,
        hostname: "h".into(),
        public_ip: Some("203.0.113.7".into()),
    };
    let input = ActivityInput {
        event: "STATE_CHANGE".into(),
        reason: Some("why".into()),
        from_state: Some(State::Idle),
        to_state: Some(State::Registering),
        fields: vec![("symbol".into(), "BTC-USD".into())],
    };
    let f = encode(&author, &input, "2026-01-01T00:00:00.000Z");
    let flat: Vec<Value> = f.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect();
    let e = decode("1707580800000-3", flat);
    assert_eq!(e.time, 1707580800000);
    assert_eq!(e.instance_id, "i");
    assert_eq!(e.exchange_id, Some(7));
    assert_eq!(e.from_state, Some(State::Idle));
    assert_eq!(e.to_state, Some(State::Registering));
    assert_eq!(e.reason.as_deref(), Some("why"));
    assert_eq!(e.public_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(e.ts, "2026-01-01T00:00:00.000Z");
    assert_eq!(
        e.fields,
        vec![("symbol".to_string(), "BTC-USD".to_string())]
    );
}

#[test]
fn decode_tolerates_foreign_entries() {
    let flat = vec![
        bulk("event"),
        bulk("X"),
        Value::BulkString(vec![0xff, 0xfe]),
        bulk("v"),
        bulk("exchangeId"),
        bulk("nope"),
        bulk("fromState"),
        bulk("zombie"),
        bulk("odd"),
    ];
    let e = decode("garbage", flat);
    assert_eq!(e.time, 0);
    assert_eq!(e.event, "X");
    assert_eq!(e.exchange_id, None);
    assert_eq!(e.from_state, None);
    assert_eq!(
        e.fields,
        vec![("\u{fffd}\u{fffd}".to_string(), "v".to_string())]
    );
    assert!(decode_range(Value::Int(3)).is_empty());
    assert_eq!(
        decode_range(Value::Array(vec![
            Value::Nil,
            Value::Array(vec![bulk("1-1"), Value::Nil])
        ]))
        .len(),
        1
    );
}

#[test]
fn inputs_are_validated() {
    let ok = ActivityInput {
        event: "ORDER_BOOK_RESYNC".into(),
        ..Default::default()
    };
    assert!(validate_input(&ok).is_ok());
    for bad in ["", "lower", "1ABC", "A-B", &"A".repeat(65)] {
        let i = ActivityInput {
            event: bad.into(),
            ..Default::default()
        };
        assert!(
            matches!(validate_input(&i), Err(Error::InvalidOption(m)) if m.starts_with("event"))
        );
    }
    let i = ActivityInput {
        event: "E".into(),
        reason: Some("x".repeat(1025)),
        ..Default::default()
    };
    assert!(matches!(validate_input(&i), Err(Error::InvalidOption(m)) if m.starts_with("reason")));
    let i = ActivityInput {
        event: "E".into(),
        fields: vec![("ts".into(), "1".into())],
        ..Default::default()
    };
    assert!(
        matches!(validate_input(&i), Err(Error::InvalidOption(m)) if m.starts_with("fields.ts"))
    );
}

#[test]
fn bounds_parse_or_name_the_argument() {
    assert_eq!(parse_bound("since", &Bound::Ms(5.0)).unwrap(), "5");
    assert_eq!(
        parse_bound("since", &Bound::Id("1-2".into())).unwrap(),
        "1-2"
    );
    assert_eq!(parse_bound("until", &Bound::Id("+".into())).unwrap(), "+");
    for bad in [
        Bound::Ms(-1.0),
        Bound::Ms(f64::NAN),
        Bound::Ms(1.5),
        Bound::Id("yesterday".into()),
        Bound::Id("1-".into()),
        Bound::Id("-1".into()),
    ] {
        assert!(
            matches!(parse_bound("since", &bad), Err(Error::InvalidOption(m)) if m.starts_with("since"))
        );
    }
    assert!(
        matches!(make_query(None, None, Some(0.0), false, None, None), Err(Error::InvalidOption(m)) if m.starts_with("limit"))
    );
    assert_eq!(
        make_query(None, None, None, false, None, None)
            .unwrap()
            .limit,
        1000
    );
}

proptest::proptest! {
    #[test]
    fn decode_never_panics(id in ".{0,40}", raw in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20), 0..15)) {
        let flat: Vec<Value> = raw.into_iter().map(Value::BulkString).collect();
        let _ = decode(&id, flat);
    }

    #[test]
    fn bound_parser_never_panics(s in ".{0,40}", ms in proptest::prelude::any::<f64>()) {
        let _ = parse_bound("since", &Bound::Id(s.clone()));
        let _ = parse_bound("since", &Bound::Ms(ms));
        if let Ok(v) = parse_bound("since", &Bound::Id(s)) { proptest::prop_assert!(v == "-" || v == "+" || is_stream_id(&v)); }
    }
}
