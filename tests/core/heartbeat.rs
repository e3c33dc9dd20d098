//! The heartbeat loop under a dropped link (nemesis finding F5): a storm of `CLIENT KILL`s
//! fails the next command on each killed connection; a failed beat is tried again soon on
//! the reconnected link, so the heartbeat key never lapses while Redis answers between kills.

use super::common::*;

/// `perseus_heartbeats_total{result="failed"}` from the network's metrics.
fn failed_beats(net: &Network) -> u64 {
    let text = net.metrics_text().expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("perseus_heartbeats_total{result=\"failed\"} "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the failed-beats counter is rendered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_survives_a_client_kill_storm() {
    const INTERVAL_MS: u64 = 200;
    const HB_TTL_MS: u64 = 800;
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("f5");
    let mut o = opts(&srv.url(), &prefix);
    o.heartbeat_interval_ms = Some(INTERVAL_MS as f64);
    o.heartbeat_ttl_ms = Some(HB_TTL_MS as f64);
    let (net, cap) = network(o);
    let id = net.instance_id().to_string();
    net.start().await.unwrap();
    let hb_key = format!("{prefix}:heartbeat:{id}");
    let failed_before = failed_beats(&net);

    // Kills 150 ms apart (three quick-retry waits of 50 ms) for three TTLs. Every plain call
    // is a fresh connection and `SKIPME yes` spares the killer: only the network's links die.
    // Between kills the key is checked every 10 ms: a lapse shows as a missing key.
    let start = Instant::now();
    let mut next_kill = start;
    let mut killed = 0;
    let mut missing = 0;
    while start.elapsed() < ms(3 * HB_TTL_MS) {
        if Instant::now() >= next_kill {
            killed += r.q::<i64>(|c| {
                c.arg("CLIENT").arg("KILL").arg("TYPE").arg("normal");
            });
            next_kill += ms(150);
        }
        if !r.exists(&hb_key) {
            missing += 1;
        }
        tokio::time::sleep(ms(10)).await;
    }
    let failed = failed_beats(&net) - failed_before;
    assert!(killed >= 3, "the storm killed only {killed} connections");
    assert!(failed > 0, "no beat failed: the storm missed the beats");
    assert_eq!(
        missing, 0,
        "the heartbeat key was missing at {missing} checks ({failed} beats failed)"
    );
    assert_eq!(net.state(), State::Running);
    assert!(
        !cap.transitions()
            .iter()
            .any(|(_, e, _)| *e == Event::HeartbeatLost),
        "transitions {:?}",
        cap.transitions()
    );
    net.close().await.unwrap();
}
