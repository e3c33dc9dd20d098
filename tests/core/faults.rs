//! Reporter stopped mid-report: a sweeper paused by the test-only fault point between its
//! compare-and-set (record → dead) and its HEARTBEAT_LOST entry is drained, or SIGKILLed;
//! another sweeper writes exactly one entry, from the record's report outbox. Each runs on a
//! standalone server and on the binary's shared 6-node cluster.
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

/// The sweeper `a` (this process) pauses after its mark-dead of a crashed peer and is drained;
/// the second sweeper `b` writes the one owed entry.
async fn drained_mid_report(t: Topology) {
    let backend = Backend::start(t);
    let r = backend.client();
    let prefix = uniq("fp");
    let (a, _) = network(backend.opts(&prefix));
    let a_id = a.instance_id().to_string();
    faults::arm_pause_after_mark_dead(&a_id);
    a.start().await.unwrap();
    let lease = format!("{prefix}:sweeper");
    assert!(
        eventually(ms(3000), || r.get(&lease).as_deref() == Some(a_id.as_str())).await,
        "{t:?}: the armed instance never took the sweeper lease"
    );
    let (b, _) = network(backend.opts(&prefix));
    b.start().await.unwrap();
    let (peer, _) = network(backend.opts(&prefix));
    peer.start().await.unwrap();
    let peer_id = peer.instance_id().to_string();
    peer.abort(); // a crash: its heartbeat expires
    let drained = async {
        assert!(
            eventually(ms(3000), || faults::paused_after_mark_dead(&a_id)).await,
            "{t:?}: the fault point was reached"
        );
        let t0 = Instant::now();
        a.drain(None).await.unwrap();
        // Bounded by commandTimeoutMs (1 s here), plus the drain's own writes.
        assert!(
            t0.elapsed() < ms(5000),
            "{t:?}: drain waited {:?}",
            t0.elapsed()
        );
    };
    expect_one_report_after(&r, &prefix, &peer_id, drained).await;
    b.close().await.unwrap();
    a.close().await.unwrap();
}

/// The sweeper is a child process paused after its mark-dead and SIGKILLed there; the second
/// sweeper `b` writes the one owed entry.
async fn killed_mid_report(t: Topology) {
    let backend = Backend::start(t);
    let r = backend.client();
    let prefix = uniq("fk");
    let sweeper_id = uniq("child");
    let child = Command::new(env!("CARGO_BIN_EXE_fault-member"))
        .args([backend.child_arg(), prefix.clone(), sweeper_id.clone()])
        .env(faults::ENV_PAUSE_AFTER_MARK_DEAD, &sweeper_id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the fault-member child");
    // Killed even when an assertion below fails first.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill(); // SIGKILL
            let _ = self.0.wait();
        }
    }
    let child = KillOnDrop(child);
    let lease = format!("{prefix}:sweeper");
    assert!(
        eventually(ms(5000), || r.get(&lease).as_deref()
            == Some(sweeper_id.as_str()))
        .await,
        "{t:?}: the child never took the sweeper lease"
    );
    let (b, _) = network(backend.opts(&prefix));
    b.start().await.unwrap();
    let (peer, _) = network(backend.opts(&prefix));
    peer.start().await.unwrap();
    let peer_id = peer.instance_id().to_string();
    peer.abort();
    let killed = async move { drop(child) };
    expect_one_report_after(&r, &prefix, &peer_id, killed).await;
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_mid_report_another_sweeper_reports_once_standalone() {
    drained_mid_report(Topology::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_mid_report_another_sweeper_reports_once_cluster() {
    drained_mid_report(Topology::Cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_report_another_sweeper_reports_once_standalone() {
    killed_mid_report(Topology::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_report_another_sweeper_reports_once_cluster() {
    killed_mid_report(Topology::Cluster).await;
}

/// The sweeper `a` holds between its compare-and-set and its entry (a paused reporter) while
/// the second sweeper `b` settles the owed report; then `a` resumes: still exactly one entry,
/// and still one 3 s later.
async fn paused_then_resumed(t: Topology) {
    let backend = Backend::start(t);
    let r = backend.client();
    let prefix = uniq("fr");
    let (a, _) = network(backend.opts(&prefix));
    let a_id = a.instance_id().to_string();
    faults::arm_hold_after_mark_dead(&a_id);
    a.start().await.unwrap();
    let lease = format!("{prefix}:sweeper");
    assert!(
        eventually(ms(3000), || r.get(&lease).as_deref() == Some(a_id.as_str())).await,
        "{t:?}: the armed instance never took the sweeper lease"
    );
    let (b, _) = network(backend.opts(&prefix));
    b.start().await.unwrap();
    let (peer, _) = network(backend.opts(&prefix));
    peer.start().await.unwrap();
    let peer_id = peer.instance_id().to_string();
    peer.abort(); // a crash: its heartbeat expires
    assert!(
        eventually(ms(5000), || faults::paused_after_mark_dead(&a_id)).await,
        "{t:?}: the fault point was reached"
    );
    assert!(
        eventually(ms(8000), || !lost_entries(&r, &prefix, &peer_id).is_empty()).await,
        "{t:?}: the second sweeper never settled the owed HEARTBEAT_LOST"
    );
    faults::release_after_mark_dead(&a_id);
    tokio::time::sleep(ms(3000)).await;
    let entries = lost_entries(&r, &prefix, &peer_id);
    assert_eq!(
        entries.len(),
        1,
        "{t:?}: exactly one HEARTBEAT_LOST after the paused reporter resumed: {entries:?}"
    );
    b.close().await.unwrap();
    a.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_reporter_resumes_after_another_settled_one_entry_standalone() {
    paused_then_resumed(Topology::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_reporter_resumes_after_another_settled_one_entry_cluster() {
    paused_then_resumed(Topology::Cluster).await;
}
