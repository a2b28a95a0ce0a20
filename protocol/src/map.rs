//! The cluster map: what proxies tell nodes about the cluster, so that a node knows which
//! shards it holds, in which role, and where the other copies live.
//!
//! Proxies own the map's inputs (the node list, the policy defaults, the policies of their
//! config file and those set by SQL) and push it to every node with an epoch that grows with
//! each change. A node keeps the newest map it was given, on disk, so it knows its shards
//! from the moment it restarts; requests sent under an older epoch are refused.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// How a node's refusal of a statement routed by an older map begins (SQLSTATE 40001); the
/// proxy recognizes it, catches up with the map and retries.
pub const STALE_MAP: &str = "cluster map changed";

/// One cluster member that holds data.
#[derive(Debug, Clone, PartialEq)]
pub struct MapNode {
    pub id: String,
    /// `validator` or `miner`.
    pub node_type: String,
    /// Where the node serves the node protocol (other nodes connect there to replicate).
    pub addr: String,
}

/// A table's policy as the storage-parameter options that describe it
/// (`shard_keys` = `id`, `shards` = `8`, ...), applied over the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct MapPolicy {
    pub table: String,
    pub options: Vec<(String, String)>,
}

/// An operator's choice of primary for one shard of a placement group, with the primary
/// epoch it started (`PROMOTE MYCELIUM NODE ... FOR SHARD ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapPromotion {
    pub group: String,
    pub shard: u32,
    pub node: String,
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterMap {
    /// Grows with every change of the content; 0 is "no map".
    pub epoch: u64,
    pub nodes: Vec<MapNode>,
    pub default_replication_factor: f64,
    pub min_validator_copies: u32,
    /// Every table with a policy of its own, by table name.
    pub policies: Vec<MapPolicy>,
    /// Fingerprint of the users, roles and grants stored on the nodes: when it changes,
    /// proxies read them again.
    pub access: u64,
    /// Promotions in force, by group and shard; never dropped, only overtaken by a later one.
    pub promotions: Vec<MapPromotion>,
}

/// Bytes that are not an encoded [`ClusterMap`].
#[derive(Debug, thiserror::Error)]
#[error("malformed cluster map: {0}")]
pub struct MapDecodeError(&'static str);

/// Format byte of the encoding. Format 1 (maps stored before promotions existed) is read as
/// a map without promotions.
const MAP_FORMAT: u8 = 2;

impl ClusterMap {
    /// Whether two maps describe the same cluster (their epochs aside).
    pub fn same_content(&self, other: &ClusterMap) -> bool {
        self.same_placement(other) && self.access == other.access
    }

    /// Whether two maps place every row alike: same nodes, defaults, policies and promotions.
    pub fn same_placement(&self, other: &ClusterMap) -> bool {
        self.nodes == other.nodes
            && self.default_replication_factor == other.default_replication_factor
            && self.min_validator_copies == other.min_validator_copies
            && self.policies == other.policies
            && self.promotions == other.promotions
    }

    /// The node `id`, when it is a member.
    pub fn node(&self, id: &str) -> Option<&MapNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Big-endian fixed-width integers; strings are a u32 length and UTF-8.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(256);
        buf.put_u8(MAP_FORMAT);
        buf.put_u64(self.epoch);
        buf.put_u32(self.nodes.len() as u32);
        for node in &self.nodes {
            put_str(&mut buf, &node.id);
            put_str(&mut buf, &node.node_type);
            put_str(&mut buf, &node.addr);
        }
        buf.put_f64(self.default_replication_factor);
        buf.put_u32(self.min_validator_copies);
        buf.put_u32(self.policies.len() as u32);
        for policy in &self.policies {
            put_str(&mut buf, &policy.table);
            buf.put_u32(policy.options.len() as u32);
            for (key, value) in &policy.options {
                put_str(&mut buf, key);
                put_str(&mut buf, value);
            }
        }
        buf.put_u64(self.access);
        buf.put_u32(self.promotions.len() as u32);
        for promotion in &self.promotions {
            put_str(&mut buf, &promotion.group);
            buf.put_u32(promotion.shard);
            put_str(&mut buf, &promotion.node);
            buf.put_u64(promotion.epoch);
        }
        buf.freeze()
    }

    pub fn decode(mut buf: &[u8]) -> Result<ClusterMap, MapDecodeError> {
        let format = take_u8(&mut buf)?;
        if format != 1 && format != MAP_FORMAT {
            return Err(MapDecodeError("unknown format"));
        }
        let epoch = take_u64(&mut buf)?;
        let nodes = (0..take_count(&mut buf, 12)?)
            .map(|_| {
                Ok(MapNode {
                    id: take_str(&mut buf)?,
                    node_type: take_str(&mut buf)?,
                    addr: take_str(&mut buf)?,
                })
            })
            .collect::<Result<Vec<_>, MapDecodeError>>()?;
        let default_replication_factor = f64::from_bits(take_u64(&mut buf)?);
        let min_validator_copies = take_u32(&mut buf)?;
        let policies = (0..take_count(&mut buf, 8)?)
            .map(|_| {
                let table = take_str(&mut buf)?;
                let options = (0..take_count(&mut buf, 8)?)
                    .map(|_| Ok((take_str(&mut buf)?, take_str(&mut buf)?)))
                    .collect::<Result<Vec<_>, MapDecodeError>>()?;
                Ok(MapPolicy { table, options })
            })
            .collect::<Result<Vec<_>, MapDecodeError>>()?;
        let access = take_u64(&mut buf)?;
        let promotions = if format == 1 {
            Vec::new()
        } else {
            (0..take_count(&mut buf, 20)?)
                .map(|_| {
                    Ok(MapPromotion {
                        group: take_str(&mut buf)?,
                        shard: take_u32(&mut buf)?,
                        node: take_str(&mut buf)?,
                        epoch: take_u64(&mut buf)?,
                    })
                })
                .collect::<Result<Vec<_>, MapDecodeError>>()?
        };
        if !buf.is_empty() {
            return Err(MapDecodeError("trailing bytes"));
        }
        Ok(ClusterMap {
            epoch,
            nodes,
            default_replication_factor,
            min_validator_copies,
            policies,
            access,
            promotions,
        })
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u32(s.len() as u32);
    buf.put_slice(s.as_bytes());
}

fn take_u8(buf: &mut &[u8]) -> Result<u8, MapDecodeError> {
    if buf.is_empty() {
        return Err(MapDecodeError("truncated"));
    }
    Ok(buf.get_u8())
}

fn take_u32(buf: &mut &[u8]) -> Result<u32, MapDecodeError> {
    if buf.len() < 4 {
        return Err(MapDecodeError("truncated"));
    }
    Ok(buf.get_u32())
}

fn take_u64(buf: &mut &[u8]) -> Result<u64, MapDecodeError> {
    if buf.len() < 8 {
        return Err(MapDecodeError("truncated"));
    }
    Ok(buf.get_u64())
}

/// A count of items of at least `min_item` bytes each, refused when the rest cannot hold them.
fn take_count(buf: &mut &[u8], min_item: usize) -> Result<usize, MapDecodeError> {
    let n = take_u32(buf)? as usize;
    if n.saturating_mul(min_item) > buf.len() {
        return Err(MapDecodeError("count larger than the message"));
    }
    Ok(n)
}

fn take_str(buf: &mut &[u8]) -> Result<String, MapDecodeError> {
    let len = take_u32(buf)? as usize;
    if len > buf.len() {
        return Err(MapDecodeError("truncated string"));
    }
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| MapDecodeError("invalid UTF-8"))?;
    let text = text.to_owned();
    buf.advance(len);
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ClusterMap {
        ClusterMap {
            epoch: 7,
            nodes: vec![
                MapNode {
                    id: "n1".into(),
                    node_type: "validator".into(),
                    addr: "127.0.0.1:7001".into(),
                },
                MapNode {
                    id: "n2".into(),
                    node_type: "miner".into(),
                    addr: "127.0.0.1:7002".into(),
                },
            ],
            default_replication_factor: 0.5,
            min_validator_copies: 1,
            policies: vec![MapPolicy {
                table: "users".into(),
                options: vec![
                    ("shard_keys".into(), "id".into()),
                    ("shards".into(), "8".into()),
                ],
            }],
            access: 42,
            promotions: vec![MapPromotion {
                group: "colocated:hash:8:1::false".into(),
                shard: 3,
                node: "n2".into(),
                epoch: 2,
            }],
        }
    }

    #[test]
    fn round_trips() {
        let map = sample();
        assert_eq!(ClusterMap::decode(&map.encode()).ok(), Some(map));
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(
                ClusterMap::decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn content_ignores_the_epoch() {
        let a = sample();
        let mut b = sample();
        b.epoch = 9;
        assert!(a.same_content(&b));
        b.policies.clear();
        assert!(!a.same_content(&b));
        let mut c = sample();
        c.promotions[0].epoch = 3;
        assert!(!a.same_placement(&c));
    }

    #[test]
    fn maps_stored_before_promotions_still_load() {
        let mut old = sample();
        old.promotions.clear();
        let mut bytes = old.encode().to_vec();
        bytes[0] = 1;
        // Format 1 ended after the access fingerprint: no promotion count.
        bytes.truncate(bytes.len() - 4);
        assert_eq!(ClusterMap::decode(&bytes).ok(), Some(old));
    }
}
