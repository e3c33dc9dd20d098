//! Traces (issue 22): the core builds a `Trace` only when the host traces its kind, so an
//! untraced network pays one atomic load per operation and emits nothing more.

use super::common::*;
use perseus_native::core::trace::{Trace, TraceKind};

fn traces(cap: &Capture) -> Vec<Trace> {
    cap.traces.lock().unwrap().clone()
}

async fn run_a_while(net: &Network) {
    net.start().await.expect("start");
    net.log_activity_batch(vec![
        ActivityInput {
            event: "ONE".into(),
            ..Default::default()
        },
        ActivityInput {
            event: "TWO".into(),
            ..Default::default()
        },
    ])
    .await
    .into_iter()
    .for_each(|r| {
        r.expect("append");
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    net.drain(None).await.expect("drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untraced_network_emits_no_trace() {
    let srv = RedisServer::start();
    let mut o = opts(&srv.url(), &uniq("tr0"));
    o.heartbeat_interval_ms = Some(100.0);
    o.heartbeat_ttl_ms = Some(400.0);
    let (net, cap) = network(o);
    run_a_while(&net).await;
    assert!(traces(&cap).is_empty(), "no Trace without a tracer");
    assert!(
        cap.traced_asked.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the core asked (and was told no)"
    );
    let _ = net.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_network_emits_each_kind_with_its_fields() {
    let srv = RedisServer::start();
    let mut o = opts(&srv.url(), &uniq("tr1"));
    o.heartbeat_interval_ms = Some(100.0);
    o.heartbeat_ttl_ms = Some(400.0);
    let (net, cap) = network(o);
    cap.trace_all
        .store(true, std::sync::atomic::Ordering::Relaxed);
    run_a_while(&net).await;
    let all = traces(&cap);
    let of = |k: TraceKind| all.iter().filter(|t| t.kind == k).collect::<Vec<_>>();
    let beats = of(TraceKind::Heartbeat);
    assert!(beats.len() >= 2, "heartbeats traced: {}", beats.len());
    assert!(beats
        .iter()
        .all(|t| t.fields["outcome"] == "alive" && t.error.is_none()));
    assert!(!of(TraceKind::Sweep).is_empty(), "sweeps traced");
    let batch = of(TraceKind::Append)
        .into_iter()
        .find(|t| t.fields["count"] == 2)
        .expect("the batch of two is one append");
    assert_eq!(batch.fields["events"], serde_json::json!(["ONE", "TWO"]));
    let steps: Vec<_> = of(TraceKind::Lifecycle)
        .iter()
        .map(|t| t.fields["event"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(steps, ["REGISTER", "REGISTERED", "DRAIN", "DRAINED"]);
    assert!(all
        .iter()
        .all(|t| t.duration_ms >= 0.0 && t.started_at_ms > 0));
    let _ = net.close().await;
}
