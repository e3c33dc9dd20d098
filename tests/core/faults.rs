//! Reporter stopped mid-report: a sweeper paused by the test-only fault point between its
//! compare-and-set (record → dead) and its HEARTBEAT_LOST entry is drained, or SIGKILLed;
//! another sweeper writes exactly one entry, from the record's report outbox.
//! (Built only with the `fault-points` feature; `scripts/test.sh` enables it.)

use std::process::{Command, Stdio};

use perseus_native::core::faults;

use super::common::*;

/// HEARTBEAT_LOST entries of `id` in the raw stream, as field lists.
fn lost_entries(r: &Plain, prefix: &str, id: &str) -> Vec<Vec<(String, String)>> {
    r.xrange(&format!("{prefix}:activity"))
        .into_iter()
        .map(|(_, f)| f)
        .filter(|f| {
            field(f, "event") == Some("HEARTBEAT_LOST") && field(f, "instanceId") == Some(id)
        })
        .collect()
}

/// The peer is marked dead by the paused sweeper, with no entry; after `stop_sweeper` another
/// sweeper writes exactly one, carrying the record's token, and never a second.
async fn expect_one_report_after(
    r: &Plain,
    prefix: &str,
    peer: &str,
    stop_sweeper: impl std::future::Future<Output = ()>,
) {
    let record = format!("{prefix}:instance:{peer}");
    assert!(
        eventually(ms(5000), || r.hget(&record, "state").as_deref()
            == Some("dead"))
        .await,
        "the peer was never marked dead"
    );
    // Briefly: the paused sweeper's lease lapses after one heartbeat TTL (400 ms), and then
    // another sweeper may settle the report on its own.
    tokio::time::sleep(ms(50)).await;
    assert!(
        lost_entries(r, prefix, peer).is_empty(),
        "the paused sweeper wrote no entry"
    );
    let token = r.hget(&record, "reportToken").unwrap_or_default();
    assert!(!token.is_empty(), "the dead record owes its report");
    stop_sweeper.await;
    assert!(
        eventually(ms(5000), || !lost_entries(r, prefix, peer).is_empty()).await,
        "no sweeper settled the owed HEARTBEAT_LOST"
    );
    tokio::time::sleep(ms(3000)).await;
    let entries = lost_entries(r, prefix, peer);
    assert_eq!(entries.len(), 1, "exactly one HEARTBEAT_LOST: {entries:?}");
    assert_eq!(field(&entries[0], "reportToken"), Some(token.as_str()));
    assert_eq!(r.hget(&record, "reportToken").as_deref(), Some(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_mid_report_another_sweeper_reports_once() {
    let server = RedisServer::start();
    let r = server.client();
    let prefix = uniq("fp");
    let (a, _) = network(opts(&server.url(), &prefix));
    faults::arm_pause_after_mark_dead(a.instance_id());
    a.start().await.unwrap();
    let lease = format!("{prefix}:sweeper");
    assert!(
        eventually(ms(3000), || r.get(&lease).as_deref()
            == Some(a.instance_id()))
        .await
    );
    let (b, _) = network(opts(&server.url(), &prefix));
    b.start().await.unwrap();
    let (peer, _) = network(opts(&server.url(), &prefix));
    peer.start().await.unwrap();
    let peer_id = peer.instance_id().to_string();
    peer.abort(); // a crash: its heartbeat expires
    let drained = async {
        assert!(
            eventually(ms(3000), faults::paused_after_mark_dead).await,
            "the fault point was reached"
        );
        let t0 = Instant::now();
        a.drain(None).await.unwrap();
        // Bounded by commandTimeoutMs (1 s here), plus the drain's own writes.
        assert!(t0.elapsed() < ms(5000), "drain waited {:?}", t0.elapsed());
    };
    expect_one_report_after(&r, &prefix, &peer_id, drained).await;
    b.close().await.unwrap();
    a.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_report_another_sweeper_reports_once() {
    let server = RedisServer::start();
    let r = server.client();
    let prefix = uniq("fk");
    let sweeper_id = uniq("child");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fault-member"))
        .args([server.url(), prefix.clone(), sweeper_id.clone()])
        .env(faults::ENV_PAUSE_AFTER_MARK_DEAD, &sweeper_id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the fault-member child");
    let lease = format!("{prefix}:sweeper");
    assert!(
        eventually(ms(5000), || r.get(&lease).as_deref()
            == Some(sweeper_id.as_str()))
        .await,
        "the child never took the sweeper lease"
    );
    let (b, _) = network(opts(&server.url(), &prefix));
    b.start().await.unwrap();
    let (peer, _) = network(opts(&server.url(), &prefix));
    peer.start().await.unwrap();
    let peer_id = peer.instance_id().to_string();
    peer.abort();
    let killed = async {
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    };
    expect_one_report_after(&r, &prefix, &peer_id, killed).await;
    b.close().await.unwrap();
}
