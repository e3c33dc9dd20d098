//! Unit tests of the sweeper's pure parts (counts, cache, snapshot pacing).

use super::snapshot::*;
use super::*;
use crate::core::fsm::State;

fn info(id: &str, state: State, alive: bool) -> InstanceInfo {
    InstanceInfo {
        instance_id: id.into(),
        hostname: "h".into(),
        exchange_id: 1,
        exchange_name: "x".into(),
        public_ip: None,
        private_ip: None,
        pid: 1,
        version: "1".into(),
        state,
        registered_at: String::new(),
        last_state_change: String::new(),
        metadata: Default::default(),
        alive,
        last_heartbeat: Some(1),
        health: None,
    }
}

#[test]
fn digest_ignores_order_and_heartbeat_times_but_not_changes() {
    let a = info("a", State::Running, true);
    let b = info("b", State::Running, true);
    let mut b_later = b.clone();
    b_later.last_heartbeat = Some(99);
    let base = membership_digest(&[a.clone(), b.clone()]);
    assert_eq!(base, membership_digest(&[b_later, a.clone()]));
    assert_ne!(
        base,
        membership_digest(&[a.clone(), info("b", State::Dead, false)])
    );
    assert_ne!(base, membership_digest(&[a]));
}

#[test]
fn memo_writes_small_snapshots_on_change_or_every_second() {
    let fast = Duration::from_millis(50);
    let mut m = SnapshotMemo::default();
    assert!(m.is_due(1, fast));
    m.written(1, 3_000);
    assert!(!m.is_due(1, fast));
    assert!(
        m.is_due(2, fast),
        "a change of a small network is written at once"
    );
    assert!(
        m.is_due(1, Duration::from_secs(2)),
        "slow sweeps always write"
    );
    m.last = Some((1, Instant::now() - Duration::from_secs(1), 3_000));
    assert!(m.is_due(1, fast));
}

#[test]
fn memo_paces_big_snapshots_by_size() {
    let sweep = Duration::from_secs(1);
    let mut m = SnapshotMemo::default();
    let big = 3_300_000; // ~10,000 instances
    m.written(1, big);
    m.full_read_done();
    assert!(
        !m.is_due(2, sweep),
        "a change waits until ~3 s after the last write"
    );
    assert!(m.pending, "and is remembered");
    assert!(!m.full_read_due(false, sweep));
    m.last = Some((1, Instant::now() - Duration::from_secs(3), big));
    assert!(m.full_read_due(false, sweep), "the pending change");
    assert!(
        m.is_due(1, sweep),
        "a pending change is written even if the digest is back"
    );
    m.written(1, big);
    m.last = Some((1, Instant::now() - Duration::from_secs(10), big));
    assert!(!m.is_due(1, sweep), "at rest: every 15 s");
    m.last = Some((1, Instant::now() - Duration::from_secs(15), big));
    assert!(m.is_due(1, sweep));
    m.last_full_read = Some(Instant::now() - Duration::from_secs(5));
    assert!(
        m.full_read_due(false, sweep),
        "changes are looked for every 5 s"
    );
}

#[test]
fn a_contender_takes_over_only_deaths_the_holder_is_half_an_interval_late_with() {
    use crate::core::index::IndexView;
    let view = IndexView {
        now: 10_000,
        due: vec![
            ("on-time".into(), "9900".into()), // 100 ms past: the holder may be sweeping it
            ("edge".into(), "9825".into()),    // 175 ms past: not yet late (250 ms sweeps)
            ("late".into(), "9824".into()),    // 176 ms past
            ("long-late".into(), "1000".into()), // and far past
            ("foreign".into(), "not a number".into()),
        ],
        ..Default::default()
    };
    assert_eq!(sweep::overdue(&view, 250), ["late", "long-late"]);
    // A young index node clock (now below the margin) finds nothing late.
    let young = IndexView {
        now: 100,
        due: vec![("x".into(), "0".into())],
        ..Default::default()
    };
    assert!(sweep::overdue(&young, 250).is_empty());
}
