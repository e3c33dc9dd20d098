//! What a command is, as its caller declares it: its kind (for retries) and its label (for
//! errors). The store never looks at a command's name.

use redis::{Cmd, ToRedisArgs};

/// What sending a command twice would do, as its caller knows: the store decides retries on
/// this, never on the command's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only reads: sent once more on the reconnected link after the link dropped under it
    /// (the multiplexed connection notices a dropped socket only when it next writes).
    Read,
    /// Changes data, with the same effect when run twice (SET, HSET, ZADD, DEL, a script
    /// with a token...): never re-sent by us, but a cluster client may re-send it.
    Write,
    /// Must run at most once (`XADD *` writes a second entry when sent twice): on a cluster
    /// it goes over a connection whose client never re-sends by itself.
    WriteOnce,
}

/// One command, with what it is ([`Kind`]) and how its failures are labelled (`NAME key`:
/// keys are never secret; values are never included).
#[derive(Clone)]
pub struct Command {
    pub(super) cmd: Cmd,
    pub(super) kind: Kind,
    pub(super) label: String,
    /// The key that routes it on a cluster (`None`: keyless), as the caller named it.
    pub(super) key: Option<String>,
}

impl Command {
    /// `NAME key ...`: the usual single-key command; add the rest with [`Command::arg`].
    pub fn on_key(kind: Kind, name: &str, key: &str) -> Self {
        let mut cmd = redis::cmd(name);
        cmd.arg(key);
        Command {
            cmd,
            kind,
            label: format!("{name} {key}"),
            key: Some(key.to_string()),
        }
    }

    /// A read of `key` ([`Kind::Read`]).
    pub fn read(name: &str, key: &str) -> Self {
        Self::on_key(Kind::Read, name, key)
    }

    /// An idempotent write of `key` ([`Kind::Write`]).
    pub fn write(name: &str, key: &str) -> Self {
        Self::on_key(Kind::Write, name, key)
    }

    /// A write of `key` that must run at most once ([`Kind::WriteOnce`]).
    pub fn write_once(name: &str, key: &str) -> Self {
        Self::on_key(Kind::WriteOnce, name, key)
    }

    /// A command whose key is not its first argument (`XREAD ... STREAMS key`, `EVALSHA`), or
    /// that has none (`PING`, `SCAN`): `label_key` names it in errors and routes it in
    /// [`Store::query_many`] on a cluster.
    pub fn with_args(kind: Kind, name: &str, label_key: Option<&str>) -> Self {
        Command {
            cmd: redis::cmd(name),
            kind,
            label: match label_key {
                Some(k) => format!("{name} {k}"),
                None => name.to_string(),
            },
            key: label_key.map(str::to_string),
        }
    }

    /// Appends an argument.
    pub fn arg<T: ToRedisArgs>(&mut self, a: T) -> &mut Self {
        self.cmd.arg(a);
        self
    }

    /// What errors of this command start with (`XADD perseus:activity`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The caller's word on re-sending it.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The command as sent.
    pub fn cmd(&self) -> &Cmd {
        &self.cmd
    }

    /// The cluster hash slot of its key (`None`: keyless).
    pub(super) fn slot(&self) -> Option<u16> {
        self.key
            .as_deref()
            .map(|k| crate::core::wire::slots::slot_of(k.as_bytes()))
    }
}
