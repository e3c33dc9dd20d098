//! The activity stream: queries over foreign entries, paging, trimming.

use super::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_queries_tolerate_foreign_entries() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p10");
    let stream = format!("{prefix}:activity");

    // Foreign entries first (explicit IDs must be increasing).
    let mut con = r.con();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("1000-1")
        .arg("instanceId")
        .arg("old-peer")
        .arg("event")
        .arg("OLD")
        .arg("exchange")
        .arg("kraken")
        .arg("exchangeId")
        .arg("3")
        .arg("ts")
        .arg("1970-01-01T00:00:01.000Z")
        .query(&mut con)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("2000-1")
        .arg("foo")
        .arg("bar")
        .query(&mut con)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("3000-1")
        .arg(&[0xffu8, 0xfe][..])
        .arg(&[0x00u8, 0xc3, 0x28][..])
        .arg("event")
        .arg(&[0xc3u8][..])
        .query(&mut con)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("3000-2")
        .arg("exchangeId")
        .arg("not-a-number")
        .arg("fromState")
        .arg("zombie")
        .arg("toState")
        .arg("running")
        .query(&mut con)
        .unwrap();

    let (a, _) = network(opts(&srv.url(), &prefix));
    let (b, _) = network(opts(&srv.url(), &prefix));
    let (a_id, b_id) = (a.instance_id().to_string(), b.instance_id().to_string());
    // Neither is started: logging works in any state.
    let mut mine = Vec::new();
    for i in 0..3 {
        mine.push(
            a.log_activity(ActivityInput {
                event: "A_EVT".into(),
                reason: Some(format!("reason {i}")),
                fields: vec![
                    ("symbol".into(), "BTC-USD".into()),
                    ("n".into(), i.to_string()),
                ],
                ..Default::default()
            })
            .await
            .unwrap(),
        );
    }
    for _ in 0..2 {
        mine.push(
            a.log_activity(ActivityInput {
                event: "B_EVT".into(),
                from_state: Some(State::Running),
                to_state: Some(State::Draining),
                ..Default::default()
            })
            .await
            .unwrap(),
        );
    }
    for _ in 0..2 {
        mine.push(
            b.log_activity(ActivityInput {
                event: "A_EVT".into(),
                ..Default::default()
            })
            .await
            .unwrap(),
        );
    }
    assert!(matches!(
        a.log_activity(ActivityInput {
            event: "lower".into(),
            ..Default::default()
        })
        .await,
        Err(Error::InvalidOption(_))
    ));

    let q = |since, until, limit, reverse, inst: Option<&str>, events: Option<Vec<&str>>| {
        make_query(
            since,
            until,
            limit,
            reverse,
            inst.map(str::to_string),
            events.map(|v| v.into_iter().map(str::to_string).collect()),
        )
        .unwrap()
    };
    let ids = |v: &[perseus_native::core::activity::ActivityEntry]| -> Vec<String> {
        v.iter().map(|e| e.id.clone()).collect()
    };

    // Everything, foreign entries included, without error.
    let all = a
        .query_activity(&q(None, None, None, false, None, None))
        .await
        .unwrap();
    assert_eq!(all.len(), 11);
    assert_eq!(
        ids(&all[..4]),
        ["1000-1", "2000-1", "3000-1", "3000-2"].map(String::from)
    );
    assert_eq!(ids(&all[4..]), mine);
    assert_eq!(a.activity_length().await.unwrap(), 11);

    let old = &all[0];
    assert_eq!(
        (old.time, old.instance_id.as_str(), old.event.as_str()),
        (1000, "old-peer", "OLD")
    );
    assert_eq!(
        (old.exchange.as_str(), old.exchange_id),
        ("kraken", Some(3))
    );
    assert!(old.fields.is_empty());
    let missing = &all[1];
    assert_eq!(missing.time, 2000);
    assert_eq!(missing.event, "");
    assert_eq!(missing.instance_id, "");
    assert_eq!(missing.exchange_id, None);
    assert_eq!(missing.ts, "");
    assert_eq!(missing.hostname, None);
    assert_eq!(missing.fields, vec![("foo".to_string(), "bar".to_string())]);
    let junk = &all[2];
    assert_eq!(junk.event, "\u{fffd}");
    assert_eq!(junk.fields.len(), 1);
    assert_eq!(junk.fields[0].0, "\u{fffd}\u{fffd}");
    assert_eq!(junk.fields[0].1, "\u{0}\u{fffd}(");
    let odd = &all[3];
    assert_eq!(odd.exchange_id, None);
    assert_eq!(odd.from_state, None);
    assert_eq!(odd.to_state, Some(State::Running));

    let first_mine = &all[4];
    assert_eq!(first_mine.instance_id, a_id);
    assert_eq!(first_mine.event, "A_EVT");
    assert_eq!(first_mine.reason.as_deref(), Some("reason 0"));
    assert_eq!(first_mine.exchange, "coinbase");
    assert_eq!(first_mine.exchange_id, Some(7));
    assert_eq!(first_mine.hostname.as_deref(), Some("test-host"));
    assert!(is_parsable_iso(&first_mine.ts));
    assert_eq!(
        first_mine.fields,
        vec![
            ("symbol".to_string(), "BTC-USD".to_string()),
            ("n".to_string(), "0".to_string())
        ]
    );
    assert_eq!(all[7].from_state, Some(State::Running));
    assert_eq!(all[7].to_state, Some(State::Draining));
    let now = now_ms();
    assert!(all[4].time <= now && all[4].time + 10_000 > now);

    // since / until in ms (inclusive).
    let r1 = a
        .query_activity(&q(
            Some(Bound::Ms(1500.0)),
            Some(Bound::Ms(2500.0)),
            None,
            false,
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&r1), ["2000-1"]);
    let r1 = a
        .query_activity(&q(
            Some(Bound::Ms(1000.0)),
            Some(Bound::Ms(3000.0)),
            None,
            false,
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&r1), ["1000-1", "2000-1", "3000-1", "3000-2"]);
    // ... and as IDs.
    let r2 = a
        .query_activity(&q(
            Some(Bound::Id("1000-1".into())),
            Some(Bound::Id("2000-1".into())),
            None,
            false,
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&r2), ["1000-1", "2000-1"]);
    let r2 = a
        .query_activity(&q(
            Some(Bound::Id("2000-2".into())),
            Some(Bound::Id("3000-1".into())),
            None,
            false,
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&r2), ["3000-1"]);
    let r2 = a
        .query_activity(&q(
            Some(Bound::Id("-".into())),
            Some(Bound::Id("+".into())),
            None,
            false,
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(r2.len(), 11);
    // since the first of ours, in ms.
    let r3 = a
        .query_activity(&q(
            Some(Bound::Ms(all[4].time as f64)),
            None,
            None,
            false,
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&r3), mine);

    // limit and reverse.
    let r4 = a
        .query_activity(&q(None, None, Some(2.0), false, None, None))
        .await
        .unwrap();
    assert_eq!(ids(&r4), ["1000-1", "2000-1"]);
    let r5 = a
        .query_activity(&q(None, None, Some(3.0), true, None, None))
        .await
        .unwrap();
    let mut newest: Vec<String> = mine[mine.len() - 3..].to_vec();
    newest.reverse();
    assert_eq!(ids(&r5), newest);
    let r5 = a
        .query_activity(&q(None, Some(Bound::Ms(2000.0)), None, true, None, None))
        .await
        .unwrap();
    assert_eq!(ids(&r5), ["2000-1", "1000-1"]);

    // Filters; limit counts matches.
    let r6 = a
        .query_activity(&q(None, None, None, false, Some(&a_id), None))
        .await
        .unwrap();
    assert_eq!(ids(&r6), mine[..5].to_vec());
    assert!(r6.iter().all(|e| e.instance_id == a_id));
    let r6 = a
        .query_activity(&q(None, None, Some(2.0), true, Some(&a_id), None))
        .await
        .unwrap();
    assert_eq!(ids(&r6), vec![mine[4].clone(), mine[3].clone()]);
    let r7 = a
        .query_activity(&q(None, None, None, false, None, Some(vec!["B_EVT"])))
        .await
        .unwrap();
    assert_eq!(ids(&r7), mine[3..5].to_vec());
    let r7 = a
        .query_activity(&q(
            None,
            None,
            None,
            false,
            None,
            Some(vec!["A_EVT", "OLD"]),
        ))
        .await
        .unwrap();
    assert_eq!(r7.len(), 6);
    let r8 = a
        .query_activity(&q(
            None,
            None,
            Some(1.0),
            false,
            Some(&b_id),
            Some(vec!["A_EVT"]),
        ))
        .await
        .unwrap();
    assert_eq!(ids(&r8), vec![mine[5].clone()]);
    let none = a
        .query_activity(&q(None, None, None, false, Some("nobody"), None))
        .await
        .unwrap();
    assert!(none.is_empty());
    // An empty range and a missing stream are empty, not errors.
    let empty = a
        .query_activity(&q(
            Some(Bound::Ms(4000.0)),
            Some(Bound::Ms(5000.0)),
            None,
            false,
            None,
            None,
        ))
        .await
        .unwrap();
    assert!(empty.is_empty());
    let (other, _) = network(opts(&srv.url(), &uniq("p10-empty")));
    assert!(other
        .query_activity(&q(None, None, None, false, None, None))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(other.activity_length().await.unwrap(), 0);
    a.close().await.unwrap();
    b.close().await.unwrap();
    other.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_queries_page_past_ten_thousand() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p10p");
    let stream = format!("{prefix}:activity");
    // 12 000 entries; every 1000th is a NEEDLE.
    let mut pipe = redis::pipe();
    for ms_ in 1..=12_000u64 {
        let event = if ms_ % 1000 == 0 { "NEEDLE" } else { "HAY" };
        pipe.cmd("XADD")
            .arg(&stream)
            .arg(format!("{ms_}-1"))
            .arg("instanceId")
            .arg("x")
            .arg("event")
            .arg(event)
            .ignore();
    }
    let _: () = pipe.query(&mut r.con()).unwrap();
    let (a, _) = network(opts(&srv.url(), &prefix));
    let needles = a
        .query_activity(
            &make_query(None, None, None, false, None, Some(vec!["NEEDLE".into()])).unwrap(),
        )
        .await
        .unwrap();
    let got: Vec<u64> = needles.iter().map(|e| e.time).collect();
    assert_eq!(got, (1..=12).map(|k| k * 1000).collect::<Vec<_>>());
    let rev = a
        .query_activity(
            &make_query(
                None,
                None,
                Some(11.0),
                true,
                None,
                Some(vec!["NEEDLE".into()]),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let got: Vec<u64> = rev.iter().map(|e| e.time).collect();
    assert_eq!(got, (2..=12).rev().map(|k| k * 1000).collect::<Vec<_>>());
    let unfiltered = a
        .query_activity(&make_query(None, None, Some(10_500.0), false, None, None).unwrap())
        .await
        .unwrap();
    assert_eq!(unfiltered.len(), 10_500);
    assert_eq!(unfiltered.last().unwrap().time, 10_500);
    let ids: BTreeSet<&str> = unfiltered.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 10_500, "a page boundary repeated an entry");
    a.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trim_removes_only_old_entries() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p10t");
    let stream = format!("{prefix}:activity");
    let mut pipe = redis::pipe();
    for ms_ in 1..=2000u64 {
        pipe.cmd("XADD")
            .arg(&stream)
            .arg(format!("{ms_}-1"))
            .arg("instanceId")
            .arg("ancient")
            .arg("event")
            .arg("OLD")
            .ignore();
    }
    let _: () = pipe.query(&mut r.con()).unwrap();
    let (a, _) = network(opts(&srv.url(), &prefix));
    let mut recent = Vec::new();
    for _ in 0..5 {
        recent.push(
            a.log_activity(ActivityInput {
                event: "RECENT".into(),
                ..Default::default()
            })
            .await
            .unwrap(),
        );
    }
    let before = r.xlen(&stream);
    assert_eq!(before, 2005);
    let removed = a.trim_activity(Some(3_600_000)).await.expect("trim");
    let after = r.xlen(&stream);
    eprintln!("trim removed {removed} of {before} entries; {after} left");
    assert!(removed > 0, "nothing trimmed");
    assert!(after < before, "XLEN did not drop");
    assert_eq!(after, before - removed, "count is not what Redis removed");
    let left: Vec<String> = r.xrange(&stream).into_iter().map(|(id, _)| id).collect();
    for id in &recent {
        assert!(left.contains(id), "recent entry {id} was trimmed");
    }
    // Trimming again with a huge retention removes nothing.
    assert_eq!(
        a.trim_activity(Some(10 * 365 * 86_400_000)).await.unwrap(),
        0
    );
    // activityRetentionMs 0 turns the default trim off.
    let mut o = opts(&srv.url(), &prefix);
    o.activity_retention_ms = Some(0.0);
    let (off, _) = network(o);
    assert_eq!(off.trim_activity(None).await.unwrap(), 0);
    assert_eq!(r.xlen(&stream), after);
    a.close().await.unwrap();
    off.close().await.unwrap();
}
