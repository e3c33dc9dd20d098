//! Unit tests of the credentials cell: schedule, scrubbing history, refusals.

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

/// The schedule sentence of API.md's third round, at its edges.
#[test]
fn the_schedule_sentence_at_its_edges() {
    let at = |left_ms: u64| next_refresh(&creds(Some(left_ms)), None, 0).unwrap();
    // Long-lived: 80 % of the remaining lifetime (10 min → 8 min).
    assert_eq!(at(600_000), Duration::from_secs(480));
    // 80 % meets "30 s before" at 150 s; past it, 30 s before wins (100 s → 70 s).
    assert_eq!(at(150_000), Duration::from_secs(120));
    assert_eq!(at(61_000), Duration::from_secs(31));
    // Exactly a minute: 30 s before expiry is also half.
    assert_eq!(at(60_000), Duration::from_secs(30));
    // Under a minute: half the remaining lifetime.
    assert_eq!(at(59_000), Duration::from_millis(29_500));
    assert_eq!(at(10_000), Duration::from_secs(5));
    // Never later than 30 s before expiry, whenever that is possible.
    for left in (60_000..3_600_000).step_by(7_919) {
        let d = at(left);
        assert!(d <= Duration::from_millis(left - 30_000), "{left}: {d:?}");
        assert!(
            d <= Duration::from_millis(left * 8 / 10 + 1),
            "{left}: {d:?}"
        );
    }
}

struct Fixed;
impl CredentialSource for Fixed {
    fn fetch(&self, _refused: bool) -> FetchFuture {
        Box::pin(async { Err("unused".to_string()) })
    }
}

#[test]
fn only_a_bounded_history_of_passwords_is_kept_for_scrubbing() {
    let cell = Credentials::new(Arc::new(Fixed), None);
    let pw = |i: usize| format!("secret-password-{i:04}");
    for i in 0..50 {
        cell.publish(Creds {
            username: None,
            password: pw(i),
            expires_at: None,
        });
        assert!(cell.secrets_kept() <= SECRETS_KEPT);
    }
    // Refused values seen after the current one never push the current one out.
    for i in 50..80 {
        remember(&cell.inner, &pw(i));
    }
    assert_eq!(cell.secrets_kept(), SECRETS_KEPT);
    assert_eq!(
        cell.scrub(&pw(49)),
        "***",
        "the current password is scrubbed"
    );
    assert_eq!(
        cell.scrub(&pw(79)),
        "***",
        "the newest refused one is scrubbed"
    );
    assert_eq!(cell.scrub(&pw(0)), pw(0), "an old one is no longer kept");
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
