//! The tail: activity and peer events from the stream.

use super::common::*;

/// The activity events of `event` among `evs`.
fn activity_with<'a>(evs: &'a [NetEvent], event: &str) -> Vec<&'a NetEvent> {
    evs.iter()
        .filter(|e| matches!(e, NetEvent::Activity(a) if a.event == event))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_emits_activity_and_peer_events() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p11");
    let stream = format!("{prefix}:activity");
    let (a, cap) = network(opts(&srv.url(), &prefix));
    assert!(!a.is_tailing());
    a.set_tail(true);
    assert!(a.is_tailing());

    // The tail starts after the newest entry it finds: warm up until it hears us.
    let mut warm = false;
    for _ in 0..30 {
        let _: String = r.q(|c| {
            c.arg("XADD")
                .arg(&stream)
                .arg("*")
                .arg("event")
                .arg("WARMUP");
        });
        if cap
            .wait_for(ms(100), |evs| !activity_with(evs, "WARMUP").is_empty())
            .await
        {
            warm = true;
            break;
        }
    }
    assert!(warm, "the tail never delivered anything");

    let t0 = Instant::now();
    let id: String = r.q(|c| {
        c.arg("XADD")
            .arg(&stream)
            .arg("*")
            .arg("instanceId")
            .arg("plain-client")
            .arg("event")
            .arg("PING_TEST")
            .arg("extra")
            .arg("1");
    });
    assert!(
        cap.wait_for(ms(500), |evs| !activity_with(evs, "PING_TEST").is_empty())
            .await,
        "no activity event within 500 ms"
    );
    eprintln!("tail latency {:?}", t0.elapsed());
    let evs = cap.events();
    let got = activity_with(&evs, "PING_TEST");
    assert_eq!(got.len(), 1);
    let NetEvent::Activity(entry) = got[0] else {
        unreachable!()
    };
    assert_eq!(entry.id, id);
    assert_eq!(entry.instance_id, "plain-client");
    assert_eq!(entry.fields, vec![("extra".to_string(), "1".to_string())]);

    // A peer registering yields instanceJoined.
    let (b, _) = network(opts(&srv.url(), &prefix));
    let b_id = b.instance_id().to_string();
    b.start().await.unwrap();
    assert!(
        cap.wait_for(ms(1000), |evs| evs.iter().any(|e| matches!(
            e,
            NetEvent::InstanceJoined(i) if i.instance_id == b_id
                // The REGISTERED entry is written before registering→running, so the
                // record read back may still say registering.
                && matches!(i.state, State::Registering | State::Running)
                && i.exchange_name == "coinbase"
        )))
        .await,
        "no instanceJoined for B: {:#?}",
        cap.events()
    );
    // Draining B yields instanceLeft.
    b.drain(None).await.unwrap();
    assert!(
        cap.wait_for(ms(1000), |evs| evs.iter().any(|e| matches!(
            e,
            NetEvent::InstanceLeft(i) if i.instance_id == b_id
        )))
        .await,
        "no instanceLeft for B"
    );
    // Our own entries come through too.
    a.log_activity(ActivityInput {
        event: "OWN".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        cap.wait_for(ms(500), |evs| !activity_with(evs, "OWN").is_empty())
            .await
    );

    a.set_tail(false);
    assert!(!a.is_tailing());
    let _: String = r.q(|c| {
        c.arg("XADD")
            .arg(&stream)
            .arg("*")
            .arg("event")
            .arg("AFTER_OFF");
    });
    tokio::time::sleep(ms(500)).await;
    assert!(activity_with(&cap.events(), "AFTER_OFF").is_empty());
    // And on again: it resumes from the newest entry.
    a.set_tail(true);
    assert!(a.is_tailing());
    a.close().await.unwrap();
    assert!(!a.is_tailing(), "close must stop the tail");
    b.close().await.unwrap();
}
