//! Death reports: exactly one HEARTBEAT_LOST entry per lapse, whoever writes it.
//!
//! A lapse is named by its token, `<instance id>|r<registeredAt>`: the registration that
//! lapsed, as its record holds it (see [`lapse_token`]), so every reporter of one lapse derives
//! the same token. The mark-dead compare-and-set stores it in the record
//! (`reportToken`), where any later reporter reads it. Every path — the sweeper, the outbox, a
//! reporter that paused and resumed, a re-sent script, forget, a registration and the instance
//! itself — appends with `APPEND_ONCE`, which writes nothing when the token's entry exists; the
//! record's token is cleared only once a replica holds the entry.

use crate::core::activity::{once, ActivityInput, Author};
use crate::core::clock::iso_now;
use crate::core::error::{Error, Result};
use crate::core::faults;
use crate::core::fsm::State;
use crate::core::task::TaskCtx;

/// How long a reporter waits for a replica to acknowledge its entry (`WAIT 1 <ms>`). Short on
/// purpose: `WAIT` holds the shared connection, so a missing replica costs each sweep this
/// long at most, and the report stays owed (retried next sweep) instead.
pub const REPLICA_WAIT_MS: u64 = 200;

/// The token of the lapse of `id`'s registration `registered_at` (its record's `registeredAt`).
/// A registration lapses at most once: after a lapse the instance is dead until it registers
/// again, under a new `registeredAt`, and a rejoin first settles the old lapse's report. So a
/// sweeper (from the record it read) and the instance itself (from its own) name one lapse
/// alike, whatever the index's deadline says meanwhile. Finding F24: named by the index's
/// deadline, one lapse had two names when a beat's index write landed late, after the instance
/// had named its lapse (the cluster client re-sent it after CLUSTERDOWN): two entries.
pub fn lapse_token(id: &str, registered_at: &str) -> String {
    format!("{id}|r{registered_at}")
}

/// Makes sure the HEARTBEAT_LOST entry of `lost`'s lapse `token` exists (this instance is its
/// `reporter` when it writes it), then, once a replica holds it, clears the record's token.
/// Returns whether this call wrote the entry. An error leaves the report owed: any reporter
/// may simply try again.
pub async fn settle(
    ctx: &TaskCtx,
    lost: &Author,
    from: Option<State>,
    token: &str,
) -> Result<bool> {
    let input = ActivityInput {
        event: "HEARTBEAT_LOST".into(),
        reason: Some("heartbeat expired".into()),
        from_state: from,
        to_state: Some(State::Dead),
        fields: vec![
            ("reporter".into(), ctx.instance_id().to_string()),
            ("reportToken".into(), token.to_string()),
        ],
        idempotency_key: None,
    };
    let (_, written) = ctx
        .writer
        .append_once_as(lost, &input, once::REPORTS, token)
        .await?;
    if written {
        ctx.metrics.peer_lost();
        let what = if lost.instance_id == ctx.instance_id() {
            "own heartbeat lapsed: reported it"
        } else {
            "peer lost: heartbeat expired"
        };
        ctx.log.warn(
            serde_json::json!({ "lostInstanceId": lost.instance_id }),
            what,
        );
    }
    faults::after_report_append(ctx.instance_id()).await;
    if !ctx
        .store
        .replicated(&ctx.keys.activity(), REPLICA_WAIT_MS)
        .await?
    {
        return Err(Error::Redis(format!(
            "the HEARTBEAT_LOST entry of '{}' is not on a replica yet: the report stays owed",
            crate::core::redact::clip(&lost.instance_id)
        )));
    }
    ctx.registry.clear_report(&lost.instance_id, token).await?;
    Ok(written)
}

/// Settles the report `id`'s record still owes, if any, as `author` (forget and registration
/// call it before they delete or rewrite a record).
pub async fn settle_record(ctx: &TaskCtx, id: &str, author: &Author) -> Result<()> {
    if let Some((pending, from)) = ctx.registry.pending_report(id).await? {
        settle(ctx, author, from, &pending.token).await?;
    }
    Ok(())
}

/// This instance noticed its own lapse, that of its registration `registered_at` (its beats
/// failed past the TTL, or its heartbeat key had expired while it ran): flips its record dead
/// with the lapse's token unless a sweeper already did (then the record's token is the one
/// settled), and makes sure the entry exists. A record already settled (its `lostToken` set,
/// no token owed) needs nothing.
pub async fn report_own_lapse(ctx: &TaskCtx, registered_at: &str) -> Result<()> {
    let id = ctx.instance_id();
    let me = ctx.author();
    let dead_ttl = ctx.cfg.timing.dead_instance_ttl;
    let token = lapse_token(id, registered_at);
    let token = token.as_str();
    if let Some(prev) = ctx
        .registry
        .mark_dead(id, &iso_now(), dead_ttl, token, registered_at)
        .await?
    {
        settle(ctx, &me, prev.parse().ok(), token).await?;
        return Ok(());
    }
    let lapse = ctx.registry.lapse_of(id).await?;
    match (lapse.report_token, lapse.lost_token) {
        (Some(owed), _) => settle(ctx, &me, lapse.lost_from, &owed).await.map(|_| ()),
        (None, Some(_)) => Ok(()),
        // No record (Redis lost it) or one that went dead without a report: our own token.
        (None, None) => settle(ctx, &me, Some(State::Running), token)
            .await
            .map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::lapse_token;

    #[test]
    fn a_lapse_is_named_by_its_registration() {
        let t = lapse_token("h:1:2:3", "2026-12-03T16:00:00.123Z");
        assert_eq!(t, "h:1:2:3|r2026-12-03T16:00:00.123Z");
        assert_ne!(t, lapse_token("h:1:2:3", "2026-12-03T16:00:01.456Z"));
        assert_eq!(lapse_token("x", ""), "x|r");
    }
}
