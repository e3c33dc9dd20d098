//! This process's counters, gauges and histograms, kept as atomics and rendered on demand in
//! the Prometheus text format 0.0.4.
//!
//! Why atomics and no registry crate: a beat, a sweep or an append only bumps a few integers
//! (no lock, no allocation), and `metrics()` is rare, so all formatting cost sits there.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::Duration;

use crate::core::fsm::State;

/// Upper bounds (seconds) of the histogram buckets: 1 ms … 10 s, roughly ×2.5 apart.
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Beats slower than this count towards a slow-Redis episode.
pub const SLOW_RTT: Duration = Duration::from_millis(50);
/// Consecutive slow beats that make an episode (logged once at `warn`).
pub const SLOW_BEATS: u32 = 5;

/// A latency histogram with the fixed [`BUCKETS`] (counts per bucket, not cumulative).
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    /// Observations above the last bucket.
    over: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        match BUCKETS.iter().position(|b| secs <= *b) {
            Some(i) => self.counts[i].fetch_add(1, Relaxed),
            None => self.over.fetch_add(1, Relaxed),
        };
        self.sum_micros
            .fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, "histogram", help);
        let mut cumulative = 0u64;
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.over.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Every number `metrics()` reports, shared by the network's tasks.
#[derive(Default)]
pub struct Metrics {
    beats_ok: AtomicU64,
    beats_failed: AtomicU64,
    rtt: Histogram,
    /// The previous beat's round trip (ms), for the next heartbeat payload.
    last_rtt_ms: AtomicU64,
    /// Slow beats in a row, for the once-per-episode warning.
    slow_streak: std::sync::atomic::AtomicU32,
    event_loop_lag_ms: AtomicU64,
    sweeper_leader: AtomicBool,
    sweeps: AtomicU64,
    sweep_duration: Histogram,
    peers_lost: AtomicU64,
    /// Instances by state from this process's last sweep (indexed like [`State::ALL`]).
    instances: [AtomicU64; 5],
    swept: AtomicBool,
    appends_ok: AtomicU64,
    appends_failed: AtomicU64,
    redis_connected: AtomicU8,
    reconnects: AtomicU64,
    credentials_ok: AtomicU64,
    credentials_failed: AtomicU64,
}

/// What a beat's round trip means for the slow-Redis warning.
#[derive(Debug, PartialEq, Eq)]
pub enum RttVerdict {
    Normal,
    /// The fifth slow beat in a row: warn (once per episode).
    SlowEpisode,
}

impl Metrics {
    /// A heartbeat reached Redis after `rtt`; returns whether a slow episode just began.
    pub fn beat_ok(&self, rtt: Duration) -> RttVerdict {
        self.beats_ok.fetch_add(1, Relaxed);
        self.rtt.observe(rtt);
        self.last_rtt_ms.store(rtt.as_millis() as u64, Relaxed);
        if rtt > SLOW_RTT {
            let n = self.slow_streak.fetch_add(1, Relaxed) + 1;
            if n == SLOW_BEATS {
                return RttVerdict::SlowEpisode;
            }
        } else {
            self.slow_streak.store(0, Relaxed);
        }
        RttVerdict::Normal
    }

    /// A heartbeat failed.
    pub fn beat_failed(&self) {
        self.beats_failed.fetch_add(1, Relaxed);
    }

    /// The previous beat's round trip in ms (0 before the first).
    pub fn last_rtt_ms(&self) -> u64 {
        self.last_rtt_ms.load(Relaxed)
    }

    /// The event-loop lag the watchdog measured for the latest beat.
    pub fn set_event_loop_lag(&self, ms: u64) {
        self.event_loop_lag_ms.store(ms, Relaxed);
    }

    /// The latest event-loop lag (ms).
    pub fn event_loop_lag_ms(&self) -> u64 {
        self.event_loop_lag_ms.load(Relaxed)
    }

    /// Whether this process holds the sweeper lease.
    pub fn set_sweeper_leader(&self, on: bool) {
        self.sweeper_leader.store(on, Relaxed);
    }

    /// One sweep finished, with the instances it saw by state.
    pub fn swept(&self, took: Duration, counts: impl IntoIterator<Item = (State, u64)>) {
        self.sweeps.fetch_add(1, Relaxed);
        self.sweep_duration.observe(took);
        for (s, n) in counts {
            if let Some(i) = State::ALL.iter().position(|x| *x == s) {
                self.instances[i].store(n, Relaxed);
            }
        }
        self.swept.store(true, Relaxed);
    }

    /// This process wrote a HEARTBEAT_LOST entry for a peer.
    pub fn peer_lost(&self) {
        self.peers_lost.fetch_add(1, Relaxed);
    }

    /// An activity append finished.
    pub fn appended(&self, ok: bool) {
        if ok {
            self.appends_ok.fetch_add(1, Relaxed);
        } else {
            self.appends_failed.fetch_add(1, Relaxed);
        }
    }

    /// The store's connection status changed; a return to `connected` after a loss counts
    /// as a reconnect.
    pub fn connection(&self, up: bool) {
        // 0 = never connected, 1 = connected, 2 = lost.
        let was = self.redis_connected.swap(if up { 1 } else { 2 }, Relaxed);
        if up && was == 2 {
            self.reconnects.fetch_add(1, Relaxed);
        }
    }

    /// A credentials provider call finished (the rotating-credentials refresher calls this).
    pub fn credentials_refreshed(&self, ok: bool) {
        if ok {
            self.credentials_ok.fetch_add(1, Relaxed);
        } else {
            self.credentials_failed.fetch_add(1, Relaxed);
        }
    }

    /// The Prometheus text (format 0.0.4) of every family, for the instance described by
    /// `info` in lifecycle state `state`.
    pub fn render(&self, info: &InfoLabels<'_>, state: State) -> String {
        let mut out = String::with_capacity(4096);
        header(
            &mut out,
            "perseus_info",
            "gauge",
            "This process's network member (always 1).",
        );
        let _ = writeln!(
            out,
            "perseus_info{{instance_id=\"{}\",exchange=\"{}\",version=\"{}\"}} 1",
            escape(info.instance_id),
            escape(info.exchange),
            escape(info.version)
        );
        header(
            &mut out,
            "perseus_state",
            "gauge",
            "1 for this member's current lifecycle state, 0 for the others.",
        );
        for s in State::ALL {
            let v = u8::from(s == state);
            let _ = writeln!(out, "perseus_state{{state=\"{}\"}} {v}", s.as_str());
        }
        header(
            &mut out,
            "perseus_heartbeats_total",
            "counter",
            "Heartbeats sent, by result.",
        );
        let _ = writeln!(
            out,
            "perseus_heartbeats_total{{result=\"ok\"}} {}",
            self.beats_ok.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "perseus_heartbeats_total{{result=\"failed\"}} {}",
            self.beats_failed.load(Relaxed)
        );
        self.rtt.render(
            &mut out,
            "perseus_heartbeat_rtt_seconds",
            "Round trip of each successful heartbeat.",
        );
        header(
            &mut out,
            "perseus_event_loop_lag_seconds",
            "gauge",
            "How long the Node event loop took to answer the latest watchdog ping.",
        );
        let lag = self.event_loop_lag_ms.load(Relaxed) as f64 / 1000.0;
        let _ = writeln!(out, "perseus_event_loop_lag_seconds {lag}");
        gauge(
            &mut out,
            "perseus_sweeper_leader",
            "1 while this process holds the sweeper lease.",
            u64::from(self.sweeper_leader.load(Relaxed)),
        );
        counter(
            &mut out,
            "perseus_sweeps_total",
            "Sweeps this process ran.",
            self.sweeps.load(Relaxed),
        );
        self.sweep_duration.render(
            &mut out,
            "perseus_sweep_duration_seconds",
            "Duration of each sweep.",
        );
        counter(
            &mut out,
            "perseus_peers_lost_total",
            "HEARTBEAT_LOST entries this process wrote.",
            self.peers_lost.load(Relaxed),
        );
        header(
            &mut out,
            "perseus_instances",
            "gauge",
            "Instances by state, as this process's last sweep saw them.",
        );
        if self.swept.load(Relaxed) {
            for (s, n) in State::ALL.iter().zip(&self.instances) {
                let _ = writeln!(
                    out,
                    "perseus_instances{{state=\"{}\"}} {}",
                    s.as_str(),
                    n.load(Relaxed)
                );
            }
        }
        header(
            &mut out,
            "perseus_activity_appends_total",
            "counter",
            "Activity stream appends, by result.",
        );
        let _ = writeln!(
            out,
            "perseus_activity_appends_total{{result=\"ok\"}} {}",
            self.appends_ok.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "perseus_activity_appends_total{{result=\"failed\"}} {}",
            self.appends_failed.load(Relaxed)
        );
        gauge(
            &mut out,
            "perseus_redis_connected",
            "1 while the shared Redis connection is up.",
            u64::from(self.redis_connected.load(Relaxed) == 1),
        );
        counter(
            &mut out,
            "perseus_redis_reconnects_total",
            "Times the Redis connection came back after a loss.",
            self.reconnects.load(Relaxed),
        );
        header(
            &mut out,
            "perseus_credentials_refreshes_total",
            "counter",
            "Calls of the credentials provider, by result.",
        );
        let _ = writeln!(
            out,
            "perseus_credentials_refreshes_total{{result=\"ok\"}} {}",
            self.credentials_ok.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "perseus_credentials_refreshes_total{{result=\"failed\"}} {}",
            self.credentials_failed.load(Relaxed)
        );
        out
    }
}

/// This process's resident memory in bytes: `/proc/self/statm` on Linux (no allocation: a
/// stack buffer), 0 where there is no such file (the payload stays well-formed everywhere).
pub fn rss_bytes() -> u64 {
    #[cfg(target_os = "linux")]
    {
        use std::io::Read;
        static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let page = *PAGE.get_or_init(|| {
            // SAFETY: sysconf has no preconditions; a failure returns -1, handled below.
            let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if n > 0 {
                n as u64
            } else {
                4096
            }
        });
        let mut buf = [0u8; 128];
        let Ok(mut f) = std::fs::File::open("/proc/self/statm") else {
            return 0;
        };
        let n = f.read(&mut buf).unwrap_or(0);
        // Fields: size resident shared text lib data dt (pages).
        let resident = std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.split_ascii_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        resident * page
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// The identity labels of `perseus_info`.
pub struct InfoLabels<'a> {
    pub instance_id: &'a str,
    pub exchange: &'a str,
    pub version: &'a str,
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {v}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {v}");
}

/// A label value escaped per the text format: backslash, double quote and newline.
pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_with_inf_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(20));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
        assert!(out.contains("x_sum 20.0305\n"), "{out}");
    }

    #[test]
    fn slow_episode_is_reported_once_until_a_fast_beat() {
        let m = Metrics::default();
        let slow = Duration::from_millis(80);
        let verdicts: Vec<_> = (0..7).map(|_| m.beat_ok(slow)).collect();
        assert_eq!(
            verdicts
                .iter()
                .filter(|v| **v == RttVerdict::SlowEpisode)
                .count(),
            1
        );
        assert_eq!(verdicts[4], RttVerdict::SlowEpisode);
        assert_eq!(m.beat_ok(Duration::from_millis(1)), RttVerdict::Normal);
        let again: Vec<_> = (0..5).map(|_| m.beat_ok(slow)).collect();
        assert_eq!(again[4], RttVerdict::SlowEpisode);
        assert_eq!(m.last_rtt_ms(), 80);
    }

    #[test]
    fn reconnects_count_only_returns_after_a_loss() {
        let m = Metrics::default();
        m.connection(true);
        m.connection(true);
        assert_eq!(m.reconnects.load(Relaxed), 0);
        m.connection(false);
        m.connection(true);
        assert_eq!(m.reconnects.load(Relaxed), 1);
    }

    #[test]
    fn rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes() > 1_000_000, "{}", rss_bytes());
        }
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let m = Metrics::default();
        let text = m.render(
            &InfoLabels {
                instance_id: "h:1:2:3",
                exchange: "x\"y",
                version: "1.0.0",
            },
            State::Running,
        );
        assert!(text.contains(
            "perseus_info{instance_id=\"h:1:2:3\",exchange=\"x\\\"y\",version=\"1.0.0\"} 1"
        ));
        assert!(text.contains("perseus_state{state=\"running\"} 1"));
        assert!(text.contains("perseus_state{state=\"idle\"} 0"));
    }
}
