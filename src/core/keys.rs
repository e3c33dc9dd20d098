//! The one place that builds Redis key names. No hash tags: each key lands on its own slot.

/// Whether Redis Cluster would hash only part of `key`: a `{` followed later by a `}` with at
/// least one character between them (the cluster spec's rule).
fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|len| len > 0)
}

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

    /// A companion of the activity stream in the stream's own hash slot (so one script can
    /// touch both on a cluster): `<stream key>:<suffix>` when the stream key holds a non-empty
    /// hash tag, else `{<stream key>}:<suffix>`. `suffix` is e.g. `idem` or `idem:at`.
    pub fn activity_companion(&self, suffix: &str) -> String {
        let stream = self.activity();
        if has_hash_tag(&stream) {
            format!("{stream}:{suffix}")
        } else {
            format!("{{{stream}}}:{suffix}")
        }
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
        let slot = |k: &str| crate::core::wire::slots::slot_of(k.as_bytes());
        for prefix in ["perseus", "a:b", "t.x-1"] {
            let k = Keys::new(prefix);
            let idem = k.activity_companion("idem");
            assert_eq!(idem, format!("{{{prefix}:activity}}:idem"));
            assert_eq!(slot(&idem), slot(&k.activity()));
            assert_eq!(slot(&k.activity_companion("idem:at")), slot(&k.activity()));
        }
        // A stream key that has a tag already keeps it (hash tags are not nested).
        assert!(has_hash_tag("{a}:activity") && has_hash_tag("x{a}y"));
        assert!(!has_hash_tag("{}:activity") && !has_hash_tag("a}{b") && !has_hash_tag("plain"));
    }
}
