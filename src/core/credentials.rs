//! Credentials that rotate: one cell holding the newest username/password, a provider that is
//! asked for fresh ones, and a refresher task that asks it on schedule.
//!
//! Every connection the store makes is given the cell as the redis crate's
//! [`StreamingCredentialsProvider`]: a new connection authenticates with the newest value, and
//! each live connection subscribes to changes and sends `AUTH` in place (same connection, same
//! client id) when the cell changes. Nothing on the command path reads the cell: rotation costs
//! the hot path no lock at all.
//!
//! The refresher never publishes credentials Redis rejects while the current ones still work:
//! the crate's per-connection subscription stops at the first failed re-AUTH, so a bad value
//! must not reach it. A `validate` check (a short probe connection made by the store) runs
//! first; a rejection is reported and retried with backoff.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::Stream;
use redis::{BasicAuth, RedisResult, StreamingCredentialsProvider};
use tokio::sync::{watch, Notify};

use crate::core::clock::now_ms;
use crate::core::error::{Error, Result};

/// One set of credentials. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Creds {
    /// `None`: the server's `default` user.
    pub username: Option<String>,
    pub password: String,
    /// Epoch ms after which these stop working.
    pub expires_at: Option<u64>,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creds")
            .field("username", &self.username)
            .field("password", &"***")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What a provider hands back: the credentials, or why it could not (a secret-free text).
pub type FetchFuture = Pin<Box<dyn Future<Output = std::result::Result<Creds, String>> + Send>>;

/// The application's credentials provider (the node layer wraps the JS function).
pub trait CredentialSource: Send + Sync {
    /// Asks for fresh credentials. May never complete (a stalled JS thread): callers bound it.
    fn fetch(&self) -> FetchFuture;
}

/// Reports a refresh failure (the network turns it into an `error` event and a `warn` log).
pub type Reporter = Arc<dyn Fn(Result<()>) + Send + Sync>;

/// Checks new credentials against the server before they are published. `Err` only when the
/// server refused them (WRONGPASS, NOPERM...), never for an unreachable server.
pub type Validator =
    Arc<dyn Fn(Creds) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync>;

/// The shortest wait between two provider calls on schedule (tokens that are already
/// expired, or live only a few ms, must not make the refresher spin).
const MIN_REFRESH: Duration = Duration::from_millis(250);
/// The refresh lead the contract asks for: never later than this before `expiresAt`.
const LEAD: Duration = Duration::from_secs(30);
/// Retry backoff after a failed refresh: first wait, and cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The shared credentials cell of one network. Cheap to clone.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Cell>,
}

struct Cell {
    source: Arc<dyn CredentialSource>,
    refresh_every: Option<Duration>,
    current: watch::Sender<Option<Arc<Creds>>>,
    /// Every password seen, for scrubbing error texts. Read on error paths only.
    secrets: Mutex<Vec<String>>,
    /// Ask the provider now (an authentication failure was seen).
    nudge: Arc<Notify>,
    reporter: Mutex<Option<Reporter>>,
    /// The first fetch, once; then the refresher's handle.
    init: tokio::sync::Mutex<bool>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(provider)")
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}

/// `text` with each of `secrets` replaced by `***`: the one scrubber of secrets (the store's
/// fixed passwords and this cell's rotated ones alike).
pub fn scrub(secrets: &[String], text: &str) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

impl Credentials {
    /// A cell over `source`, asked again every `refresh_every` when credentials carry no expiry.
    pub fn new(source: Arc<dyn CredentialSource>, refresh_every: Option<Duration>) -> Self {
        let (current, _) = watch::channel(None);
        Credentials {
            inner: Arc::new(Cell {
                source,
                refresh_every,
                current,
                secrets: Mutex::new(Vec::new()),
                nudge: Arc::new(Notify::new()),
                reporter: Mutex::new(None),
                init: tokio::sync::Mutex::new(false),
                task: Mutex::new(None),
            }),
        }
    }

    /// Where the outcome of every scheduled refresh goes (set by the network before it
    /// connects): `Err` for a failure to report, `Ok` for the refresh counter.
    pub fn set_reporter(&self, reporter: Reporter) {
        *self
            .inner
            .reporter
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(reporter);
    }

    /// The newest credentials, if any were fetched yet.
    pub fn current(&self) -> Option<Arc<Creds>> {
        self.inner.current.borrow().clone()
    }

    /// Makes sure the cell holds credentials: the first call asks the provider (bounded by
    /// `limit`) and starts the refresher; later calls return at once.
    pub async fn ready(&self, limit: Duration, validate: Validator) -> Result<()> {
        let mut started = self.inner.init.lock().await;
        if *started {
            return Ok(());
        }
        let creds = fetch_bounded(&self.inner, limit).await?;
        self.publish(creds);
        *started = true;
        let task = tokio::spawn(refresh_loop(Arc::downgrade(&self.inner), limit, validate));
        *self.inner.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        Ok(())
    }

    /// Stops the refresher (the network is closed).
    pub fn stop(&self) {
        if let Some(t) = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            t.abort();
        }
    }

    /// Asks the provider soon: a connection was refused with the current credentials.
    pub fn nudge(&self) {
        self.inner.nudge.notify_one();
    }

    /// Replaces every password this cell has seen with `***`.
    pub fn scrub(&self, text: &str) -> String {
        let secrets = self.inner.secrets.lock().unwrap_or_else(|p| p.into_inner());
        scrub(&secrets, text)
    }

    /// How long a blocking read may wait so that a pending re-AUTH (queued behind it on the
    /// same connection) still lands before the current credentials expire.
    pub fn block_limit(&self, max: Duration) -> Duration {
        match self.current().and_then(|c| c.expires_at) {
            Some(at) => {
                let left = Duration::from_millis(at.saturating_sub(now_ms()));
                (left / 4).clamp(Duration::from_millis(10), max)
            }
            None => max,
        }
    }

    /// The redis crate's view of the cell (given to every client the store builds).
    pub fn provider(&self) -> CellProvider {
        CellProvider(self.inner.clone())
    }

    fn publish(&self, creds: Creds) {
        publish(&self.inner, creds);
    }
}

fn publish(cell: &Cell, creds: Creds) {
    {
        let mut s = cell.secrets.lock().unwrap_or_else(|p| p.into_inner());
        if !s.contains(&creds.password) {
            s.push(creds.password.clone());
        }
    }
    cell.current.send_replace(Some(Arc::new(creds)));
}

fn report(cell: &Cell, outcome: Result<()>) {
    let reporter = cell
        .reporter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match (reporter, outcome) {
        (Some(r), outcome) => r(outcome),
        (None, Err(e)) => tracing::warn!("credentials refresh failed: {e}"),
        (None, Ok(())) => {}
    }
}

/// One provider call, bounded by `limit`, its result checked. Errors carry no secret.
async fn fetch_bounded(cell: &Cell, limit: Duration) -> Result<Creds> {
    let scrub = |t: &str| {
        let secrets = cell.secrets.lock().unwrap_or_else(|p| p.into_inner());
        scrub(&secrets, t)
    };
    match tokio::time::timeout(limit, cell.source.fetch()).await {
        Err(_) => Err(Error::Timeout(format!(
            "the credentials provider did not answer within {} ms",
            limit.as_millis()
        ))),
        Ok(Err(why)) => Err(Error::Redis(format!(
            "the credentials provider failed: {}",
            scrub(&why)
        ))),
        Ok(Ok(c)) => {
            // Known from now on, also if Redis refuses them and they are never published.
            let mut s = cell.secrets.lock().unwrap_or_else(|p| p.into_inner());
            if !s.contains(&c.password) {
                s.push(c.password.clone());
            }
            Ok(c)
        }
    }
}

/// When to ask again after publishing `creds` at `now` (epoch ms): at ~80 % of the remaining
/// lifetime but never later than 30 s before expiry (tokens living under a minute: at half
/// their lifetime), else every `every`; `None` = only when nudged.
pub fn next_refresh(creds: &Creds, every: Option<Duration>, now: u64) -> Option<Duration> {
    let by_expiry = creds.expires_at.map(|at| {
        let left = Duration::from_millis(at.saturating_sub(now));
        let eighty = left.mul_f64(0.8);
        let lead = left.saturating_sub(LEAD);
        eighty.min(lead).max(left / 2).max(MIN_REFRESH)
    });
    match (by_expiry, every) {
        (Some(a), Some(b)) => Some(a.min(b.max(MIN_REFRESH))),
        (Some(a), None) => Some(a),
        (None, Some(b)) => Some(b.max(MIN_REFRESH)),
        (None, None) => None,
    }
}

/// The wait before retry number `failures` (1, 2, ...): doubling from 200 ms, capped at
/// 30 s, with ±25 % jitter so many instances do not ask an identity service in lockstep.
pub fn backoff(failures: u32, seed: u64) -> Duration {
    let base = BACKOFF_FIRST
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    // xorshift of the seed: a jitter factor in [0.75, 1.25).
    let mut x = seed | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let f = 0.75 + (x % 1000) as f64 / 2000.0;
    base.mul_f64(f)
}

/// The refresher: asks the provider on schedule (or when nudged), validates, publishes. Ends
/// when the cell is dropped or [`Credentials::stop`] is called.
async fn refresh_loop(cell: Weak<Cell>, limit: Duration, validate: Validator) {
    let mut failures: u32 = 0;
    loop {
        let wait = {
            let Some(c) = cell.upgrade() else { return };
            if failures > 0 {
                Some(backoff(failures, now_ms() ^ u64::from(failures)))
            } else {
                let cur = c.current.borrow().clone();
                cur.and_then(|cur| next_refresh(&cur, c.refresh_every, now_ms()))
            }
        };
        match wait {
            Some(w) => {
                // Only a weak reference while waiting: dropping the network ends the task.
                let Some(nudge) = cell.upgrade().map(|c| c.nudge.clone()) else {
                    return;
                };
                let nudged = nudge.notified();
                tokio::select! {
                    _ = tokio::time::sleep(w) => {}
                    _ = nudged => tokio::time::sleep(MIN_REFRESH).await,
                }
            }
            None => {
                // Holding a strong reference while waiting for a nudge would keep the cell
                // alive forever: wait in slices and re-check.
                {
                    loop {
                        let Some(nudge) = cell.upgrade().map(|c| c.nudge.clone()) else {
                            return;
                        };
                        let nudged = nudge.notified();
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(60)) => continue,
                            _ = nudged => break,
                        }
                    }
                }
            }
        }
        let Some(c) = cell.upgrade() else { return };
        let outcome = match fetch_bounded(&c, limit).await {
            Err(e) => Err(e),
            Ok(new) => {
                let same = c.current.borrow().as_deref() == Some(&new);
                if same {
                    Ok(None)
                } else {
                    match validate(new.clone()).await {
                        Ok(()) => Ok(Some(new)),
                        Err(e) => {
                            // Keep the old ones while they last; once expired, the newest is
                            // all there is (reconnects use it).
                            let old_expired = c
                                .current
                                .borrow()
                                .as_ref()
                                .and_then(|o| o.expires_at)
                                .is_some_and(|at| at <= now_ms());
                            if old_expired {
                                publish(&c, new);
                            }
                            Err(Error::Redis(format!(
                                "Redis refused the new credentials from the credentials provider; \
                                 the current ones stay in use while they last: {}",
                                c.scrub_text(&e.to_string())
                            )))
                        }
                    }
                }
            }
        };
        match outcome {
            Ok(Some(new)) => {
                publish(&c, new);
                failures = 0;
                tracing::debug!("credentials rotated");
                report(&c, Ok(()));
            }
            Ok(None) => {
                failures = 0;
                report(&c, Ok(()));
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                report(&c, Err(e));
            }
        }
    }
}

impl Cell {
    fn scrub_text(&self, text: &str) -> String {
        let secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        scrub(&secrets, text)
    }
}

/// The cell as the redis crate's credentials provider: each subscription first yields the
/// newest value (the crate authenticates a new connection with it), then every change (the
/// crate sends `AUTH` on that connection).
#[derive(Clone)]
pub struct CellProvider(Arc<Cell>);

impl StreamingCredentialsProvider for CellProvider {
    fn subscribe(&self) -> Pin<Box<dyn Stream<Item = RedisResult<BasicAuth>> + Send + 'static>> {
        let rx = self.0.current.subscribe();
        Box::pin(futures_util::stream::unfold(
            (rx, true),
            |(mut rx, first)| async move {
                if first {
                    rx.wait_for(|v| v.is_some()).await.ok()?;
                } else {
                    rx.changed().await.ok()?;
                }
                let creds = rx.borrow_and_update().clone()?;
                let auth = BasicAuth::new(
                    creds
                        .username
                        .clone()
                        .unwrap_or_else(|| "default".to_string()),
                    creds.password.clone(),
                );
                Some((Ok(auth), (rx, false)))
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(expires_at: Option<u64>) -> Creds {
        Creds {
            username: None,
            password: "p".into(),
            expires_at,
        }
    }

    #[test]
    fn an_hour_token_is_refreshed_at_eighty_percent() {
        let now = 1_000_000;
        let d = next_refresh(&creds(Some(now + 3_600_000)), None, now).unwrap();
        assert_eq!(d, Duration::from_millis(2_880_000));
    }

    #[test]
    fn never_later_than_thirty_seconds_before_expiry() {
        let now = 0;
        // 100 s left: 80 % would be 80 s (20 s before expiry); 30 s before is 70 s.
        let d = next_refresh(&creds(Some(100_000)), None, now).unwrap();
        assert_eq!(d, Duration::from_secs(70));
    }

    #[test]
    fn short_tokens_at_half_their_life_and_never_spinning() {
        assert_eq!(
            next_refresh(&creds(Some(1_500)), None, 0).unwrap(),
            Duration::from_millis(750)
        );
        assert_eq!(
            next_refresh(&creds(Some(5)), None, 10).unwrap(),
            MIN_REFRESH
        );
    }

    #[test]
    fn period_without_expiry_and_none_without_either() {
        let every = Some(Duration::from_secs(10));
        assert_eq!(
            next_refresh(&creds(None), every, 0),
            Some(Duration::from_secs(10))
        );
        assert_eq!(next_refresh(&creds(None), None, 0), None);
        // Both: whichever comes first.
        assert_eq!(
            next_refresh(&creds(Some(3_600_000)), every, 0),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        for seed in 0..50u64 {
            let one = backoff(1, seed);
            assert!(one >= Duration::from_millis(150) && one < Duration::from_millis(250));
            let many = backoff(40, seed);
            assert!(many >= Duration::from_millis(22_500) && many < Duration::from_millis(37_500));
        }
        let spread: std::collections::HashSet<_> = (0..20u64).map(|s| backoff(3, s)).collect();
        assert!(spread.len() > 1, "jitter varies");
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Creds {
            username: Some("u".into()),
            password: "hunter2".into(),
            expires_at: None,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
