//! Which master serves which key on a Redis Cluster: the one slot table and its `CLUSTER SLOTS`
//! parser, so a batch of single-key commands can go to each master as one pipeline instead of
//! one request per key, and a direct range read to the master that owns its key.
//!
//! The `redis` crate's cluster client routes every request on its own (a channel message, a
//! boxed future and a connection lookup each) and refuses pipelines whose keys span slots. At
//! 10,000 instances a listing is 30,000 such requests, and their cost per request grows with
//! the number in flight. Grouping by master makes it three pipelines: the work is Redis'.

use redis::Value;

/// Number of hash slots in a Redis Cluster.
const SLOTS: usize = 16384;

/// The part of a key that is hashed: the first non-empty `{...}` section, else the whole key
/// (the cluster specification's hash-tag rule).
fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|b| *b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|b| *b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum the cluster hashes keys
/// with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of `key`.
pub fn slot_of(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) % SLOTS as u16
}

/// Slot → master, as one node answered `CLUSTER SLOTS`. Masters are numbered in the order
/// the reply names them; each master also remembers one slot it serves, so a pipeline for it
/// can be routed by the client's own slot map.
#[derive(Debug, Clone)]
pub struct SlotTable {
    owner: Vec<u16>,
    /// For each master: the first slot it serves.
    representative: Vec<u16>,
    /// For each master: its address as the reply names it.
    addresses: Vec<(String, u16)>,
}

/// Marks a slot no master serves.
const UNSERVED: u16 = u16::MAX;

impl SlotTable {
    /// Parses a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id...], replicas...]...]`.
    /// `None` when the reply is not that shape or serves no slot.
    pub fn from_cluster_slots(reply: &Value) -> Option<SlotTable> {
        let Value::Array(ranges) = reply else {
            return None;
        };
        let mut owner = vec![UNSERVED; SLOTS];
        let mut masters: Vec<(String, u16)> = Vec::new();
        let mut representative = Vec::new();
        for range in ranges {
            let Value::Array(parts) = range else { continue };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(node))) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                continue;
            };
            let (start, end) = (*start as usize, *end as usize);
            if start > end || end >= SLOTS {
                continue;
            }
            let host = match node.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => continue,
            };
            let Some(Value::Int(port)) = node.get(1) else {
                continue;
            };
            let addr = (host, *port as u16);
            let index = match masters.iter().position(|m| *m == addr) {
                Some(i) => i,
                None => {
                    masters.push(addr);
                    representative.push(start as u16);
                    masters.len() - 1
                }
            };
            for s in &mut owner[start..=end] {
                *s = index as u16;
            }
        }
        if masters.is_empty() {
            return None;
        }
        Some(SlotTable {
            owner,
            representative,
            addresses: masters,
        })
    }

    /// The master serving `slot` (an index into the masters), `None` when no one serves it.
    pub fn master_of(&self, slot: u16) -> Option<usize> {
        self.owner
            .get(slot as usize)
            .filter(|m| **m != UNSERVED)
            .map(|m| *m as usize)
    }

    /// How many masters the table knows.
    pub fn masters(&self) -> usize {
        self.representative.len()
    }

    /// The address (`host`, `port`) of master `m`, for connections of our own.
    pub fn address(&self, m: usize) -> &(String, u16) {
        &self.addresses[m]
    }

    /// A slot served by master `m`, to route its pipeline through the client's own slot map.
    pub fn representative(&self, m: usize) -> u16 {
        self.representative[m]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_cluster_specification() {
        // Known values (CLUSTER KEYSLOT on Redis 7).
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"bar"), 5061);
        assert_eq!(slot_of(b"perseus:instances"), slot_of(b"perseus:instances"));
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
        assert_eq!(slot_of(b"foo{{bar}}zap"), slot_of(b"{bar"));
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn table_maps_ranges_to_masters() {
        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node(7000),
                node(7003),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(10922), node(7001)]),
            Value::Array(vec![Value::Int(10923), Value::Int(16000), node(7002)]),
            Value::Array(vec![Value::Int(16001), Value::Int(16383), node(7000)]),
        ]);
        let t = SlotTable::from_cluster_slots(&reply).unwrap();
        assert_eq!(t.masters(), 3);
        assert_eq!(t.master_of(0), Some(0));
        assert_eq!(t.master_of(5461), Some(1));
        assert_eq!(t.master_of(16383), Some(0));
        assert_eq!(t.representative(2), 10923);
        assert!(SlotTable::from_cluster_slots(&Value::Nil).is_none());
        assert!(SlotTable::from_cluster_slots(&Value::Array(vec![])).is_none());
    }
}
