//! The one place that builds Redis key names. No hash tags of ours on the seed's keys: each
//! lands on its own slot. The activity stream's companion keys (the append-once tokens) are
//! the exception: they must share the stream's slot, so one script holds them all.

/// Key builder for one `keyPrefix`.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix` is validated by the config (`[A-Za-z0-9_.:-]`), so it holds no glob characters.
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys {
            prefix: prefix.into(),
        }
    }

    /// The key prefix, without a trailing colon.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>:instance:<id>` — the registration hash.
    pub fn instance(&self, id: &str) -> String {
        format!("{}:instance:{id}", self.prefix)
    }

    /// `<prefix>:heartbeat:<id>` — the liveness string with a PX TTL.
    pub fn heartbeat(&self, id: &str) -> String {
        format!("{}:heartbeat:{id}", self.prefix)
    }

    /// `<prefix>:activity` — the shared stream.
    pub fn activity(&self) -> String {
        format!("{}:activity", self.prefix)
    }

    /// `<prefix>:network:state` — the sweeper's JSON snapshot.
    pub fn network_state(&self) -> String {
        format!("{}:network:state", self.prefix)
    }

    /// `<prefix>:instances` — the index zset (member id, score heartbeat deadline: last beat + TTL, ms).
    pub fn instances(&self) -> String {
        format!("{}:instances", self.prefix)
    }

    /// `<prefix>:sweeper` — the sweeper lease.
    pub fn sweeper(&self) -> String {
        format!("{}:sweeper", self.prefix)
    }

    /// `<prefix>:signal:<id>` — operator requests to one instance (a list its heartbeat pops).
    pub fn signal(&self, id: &str) -> String {
        format!("{}:signal:{id}", self.prefix)
    }

    /// The append-once companions of the activity stream for namespace `ns` (`reports`,
    /// `idem`): (token → entry ID hash, token zset scored by Redis time), in the stream's slot.
    pub fn once(&self, ns: &str) -> (String, String) {
        once_keys(&self.activity(), ns)
    }

    /// The SCAN pattern matching every instance hash.
    pub fn instance_pattern(&self) -> String {
        format!("{}:instance:*", self.prefix)
    }

    /// The instance id inside an instance key, if the key is one of ours.
    pub fn instance_id_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix(":instance:")
            .filter(|id| !id.is_empty())
    }
}

/// Whether `key` has a non-empty hash tag (Redis hashes only the part between the first `{`
/// and the first `}` after it, when that part is not empty).
fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|len| len > 0)
}

/// A key that lands in `stream`'s hash slot for every prefix: `<stream>:<suffix>` when the
/// stream key has a non-empty hash tag (the tag decides the slot of both), else
/// `{<stream>}:<suffix>` (the whole stream key becomes the tag).
pub fn companion(stream: &str, suffix: &str) -> String {
    if has_hash_tag(stream) {
        format!("{stream}:{suffix}")
    } else {
        format!("{{{stream}}}:{suffix}")
    }
}

/// The append-once companions of `stream` for namespace `ns`: `…:<ns>` (hash: token → entry
/// ID) and `…:<ns>:at` (zset: token scored by the Redis time it was written).
pub fn once_keys(stream: &str, ns: &str) -> (String, String) {
    (
        companion(stream, ns),
        companion(stream, &format!("{ns}:at")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_seed_layout() {
        let k = Keys::new("perseus");
        assert_eq!(k.instance("h:1:2:3"), "perseus:instance:h:1:2:3");
        assert_eq!(k.heartbeat("h:1:2:3"), "perseus:heartbeat:h:1:2:3");
        assert_eq!(k.activity(), "perseus:activity");
        assert_eq!(k.network_state(), "perseus:network:state");
        assert_eq!(k.instances(), "perseus:instances");
        assert_eq!(k.sweeper(), "perseus:sweeper");
        assert_eq!(k.signal("h:1:2:3"), "perseus:signal:h:1:2:3");
        assert_eq!(k.instance_pattern(), "perseus:instance:*");
    }

    #[test]
    fn custom_prefix_and_id_extraction() {
        let k = Keys::new("t:x");
        assert_eq!(k.activity(), "t:x:activity");
        assert_eq!(k.instance_id_of("t:x:instance:a:b"), Some("a:b"));
        assert_eq!(k.instance_id_of("t:x:instance:"), None);
        assert_eq!(k.instance_id_of("other:instance:a"), None);
        assert_eq!(k.instance_id_of("t:x:heartbeat:a"), None);
    }

    #[test]
    fn companions_share_the_stream_slot() {
        use crate::core::wire::slots::slot_of;
        let k = Keys::new("perseus");
        assert_eq!(
            k.once("reports"),
            (
                "{perseus:activity}:reports".to_string(),
                "{perseus:activity}:reports:at".to_string()
            )
        );
        for stream in [
            "perseus:activity",
            "t:x:activity",
            "{app}:activity",
            "a{b}c:activity",
        ] {
            let (ids, at) = once_keys(stream, "idem");
            assert_eq!(slot_of(ids.as_bytes()), slot_of(stream.as_bytes()), "{ids}");
            assert_eq!(slot_of(at.as_bytes()), slot_of(stream.as_bytes()), "{at}");
        }
        assert_eq!(
            companion("{app}:activity", "reports"),
            "{app}:activity:reports"
        );
    }
}
