//! Every write to a record: registration, state changes, the public IP, beats, forgetting,
//! a sweeper's compare-and-set to dead and its report outbox.

use std::time::Duration;

use redis::Value;

use super::model::*;
use super::scripts::*;
use super::Registry;
use crate::core::config::Identity;
use crate::core::error::Result;
use crate::core::fsm::State;
use crate::core::index::{self};
use crate::core::store::{Command, Store};
use crate::core::wire::text::text;

impl Registry {
    /// Writes `id`'s record fresh from `own` (registration, and again after Redis lost it).
    /// Refused ([`Rewrite::Owed`]) while the record owes a HEARTBEAT_LOST report.
    pub async fn write_record(&self, identity: &Identity, own: &OwnRecord) -> Result<Rewrite> {
        let fields = record_fields(
            identity,
            own.public_ip.as_deref(),
            own.private_ip.as_deref(),
            own.state.unwrap_or(State::Dead),
            &own.registered_at,
            &own.last_state_change,
        );
        let args: Vec<String> = fields.into_iter().flat_map(|(k, v)| [k, v]).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let key = self.keys.instance(&identity.instance_id);
        let written: Value = self
            .store
            .script(&redis::Script::new(WRITE_RECORD), &[&key], &args)
            .await?;
        Ok(match text(&written) {
            Some(t) if t != "1" => Rewrite::Owed(t),
            _ => Rewrite::Written,
        })
    }

    /// Records a transition in `id`'s record if it exists; `ttl` expires it (dead records).
    pub async fn set_state(
        &self,
        id: &str,
        state: State,
        at: &str,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let ttl = ttl.map(|d| d.as_millis().to_string()).unwrap_or_default();
        let _: i64 = self
            .store
            .script(
                &redis::Script::new(SET_STATE),
                &[&self.keys.instance(id)],
                &[state.as_str(), at, &ttl],
            )
            .await?;
        Ok(())
    }

    /// Fills in a detected public IP.
    pub async fn set_public_ip(&self, id: &str, ip: &str) -> Result<()> {
        let mut cmd = Command::write("HSET", &self.keys.instance(id));
        cmd.arg("publicIp").arg(ip);
        let _: Value = self.store.query(&cmd).await?;
        Ok(())
    }

    /// One heartbeat in one round trip: `SET heartbeat PX ttl GET` (the previous payload says
    /// whether the key had expired), the index deadline written by a script on the index's
    /// node (`TIME + ttl`, see [`crate::core::index::BEAT_INDEX`]), `HGET state`, and with
    /// `pop_signals` (n > 0) `LPOP signal n`: operator requests ride the beat, costing no
    /// round trip of their own.
    pub async fn beat(
        &self,
        id: &str,
        payload: &HeartbeatPayload,
        ttl: Duration,
        pop_signals: usize,
    ) -> Result<BeatReply> {
        let ttl_ms = ttl.as_millis() as u64;
        let mut set = Command::write("SET", &self.keys.heartbeat(id));
        set.arg(serde_json::to_string(payload).unwrap_or_default())
            .arg("PX")
            .arg(ttl_ms)
            .arg("GET");
        let zadd = index::beat_cmd(&self.keys, id, ttl_ms);
        let mut hget = Command::read("HGET", &self.keys.instance(id));
        hget.arg("state");
        let mut cmds = vec![set, zadd, hget];
        if pop_signals > 0 {
            // Popping is a write: never re-sent by us (a lost reply loses the signal, which
            // the requester's DRAIN_REQUESTED entry still records).
            let mut lpop = Command::write("LPOP", &self.keys.signal(id));
            lpop.arg(pop_signals);
            cmds.push(lpop);
        }
        let mut replies = self.store.query_many(cmds).await?;
        // Redis does not know the index script yet (after a restart): run it alone, which
        // loads it.
        if matches!(replies.get(1), Some(Err(e)) if e.contains("NOSCRIPT")) {
            let d = index::beat_deadline(&self.store, &self.keys, id, ttl_ms).await?;
            replies[1] = Ok(Value::Int(d as i64));
        }
        // A foreign value at the signal key must not fail the beat: only the first three
        // replies count.
        if let Some(Err(e)) = replies.iter().take(3).find(|r| r.is_err()) {
            return Err(crate::core::error::Error::Redis(e.clone()));
        }
        let signals = match replies.get(3) {
            Some(Ok(Value::Array(items))) => items.iter().filter_map(text).collect(),
            _ => Vec::new(),
        };
        Ok(BeatReply {
            state: replies.get(2).and_then(|r| r.as_ref().ok()).and_then(text),
            signals,
            deadline: match replies.get(1) {
                Some(Ok(Value::Int(d))) => Some((*d).max(0) as u64),
                _ => None,
            },
            had_key: !matches!(replies.first(), Some(Ok(Value::Nil))),
        })
    }

    /// Forget, step 1: fences `id`'s record with `token` if it is dead (or has no state:
    /// garbage). 1 fenced, 0 no record, -1 not dead.
    pub async fn fence_for_forget(&self, id: &str, token: &str) -> Result<i64> {
        self.store
            .script(
                &redis::Script::new(FORGET_FENCE),
                &[&self.keys.instance(id)],
                &[token],
            )
            .await
    }

    /// Forget, step 3: deletes `id`'s record only if it still carries `token` and is dead.
    pub async fn delete_if_fenced(&self, id: &str, token: &str) -> Result<bool> {
        let n: i64 = self
            .store
            .script(
                &redis::Script::new(FORGET_RECORD),
                &[&self.keys.instance(id)],
                &[token],
            )
            .await?;
        Ok(n > 0)
    }

    /// Forget, step 4: removes `id` from the index only if its score is still `score`.
    pub async fn unindex_if_score(&self, id: &str, score: &str) -> Result<()> {
        let _: i64 = self
            .store
            .script(
                &redis::Script::new(FORGET_INDEX),
                &[&self.keys.instances()],
                &[id, score],
            )
            .await?;
        Ok(())
    }

    /// Deletes `id`'s record whatever it holds (a forced forget).
    pub async fn delete_record(&self, id: &str) -> Result<()> {
        let cmd = Command::write("DEL", &self.keys.instance(id));
        let _: i64 = self.store.query(&cmd).await?;
        Ok(())
    }

    /// Deletes `id`'s heartbeat (drain, fail: the instance is gone on purpose).
    pub async fn delete_heartbeat(&self, id: &str) -> Result<()> {
        let cmd = Command::write("DEL", &self.keys.heartbeat(id));
        let _: i64 = self.store.query(&cmd).await?;
        Ok(())
    }

    /// Removes `id` from the index (its record has expired).
    pub async fn forget(&self, id: &str) -> Result<()> {
        let mut cmd = Command::write("ZREM", &self.keys.instances());
        cmd.arg(id);
        let _: i64 = self.store.query(&cmd).await?;
        Ok(())
    }

    /// Pushes live index members back to their real deadlines.
    pub async fn push_back(&self, deadlines: &[(String, u64)]) -> Result<()> {
        index::push_back(&self.store, &self.keys, deadlines).await
    }

    /// Moves dead members' next look (id, score read, new score) unless a beat moved them.
    pub async fn reschedule(&self, moves: &[(String, String, u64)]) -> Result<()> {
        index::reschedule(&self.store, &self.keys, moves).await
    }

    /// Removes ids whose record has expired from the index, in one command.
    pub async fn forget_many(&self, ids: &[String]) -> Result<()> {
        index::remove(&self.store, &self.keys, ids).await
    }

    /// Flips `id`'s record to dead unless it already is, or is a later registration than
    /// `registered_at` (the one the caller judged); `Some(previous state)` when this call
    /// (identified by `token`, so a re-sent call answers the same) made the flip. The winner
    /// owes a HEARTBEAT_LOST entry carrying `token` (see [`Registry::clear_report`]).
    pub async fn mark_dead(
        &self,
        id: &str,
        at: &str,
        dead_ttl: Duration,
        token: &str,
        registered_at: &str,
    ) -> Result<Option<String>> {
        mark_dead(
            &self.store,
            &self.keys.instance(id),
            at,
            &dead_ttl.as_millis().to_string(),
            token,
            registered_at,
        )
        .await
    }

    /// The entry for `token` is written: the record owes nothing more.
    pub async fn clear_report(&self, id: &str, token: &str) -> Result<()> {
        let _: i64 = self
            .store
            .script(
                &redis::Script::new(CLEAR_REPORT),
                &[&self.keys.instance(id)],
                &[token],
            )
            .await?;
        Ok(())
    }
}
/// [`Registry::mark_dead`] on a raw key (kept public: tests drive it directly).
pub async fn mark_dead(
    store: &Store,
    key: &str,
    at: &str,
    dead_ttl_ms: &str,
    token: &str,
    registered_at: &str,
) -> Result<Option<String>> {
    store
        .script(
            &redis::Script::new(MARK_DEAD),
            &[key],
            &[at, dead_ttl_ms, token, registered_at],
        )
        .await
}
