//! Table policies: where a table's rows live and who may read and write them.

use std::collections::BTreeSet;

use crate::hash::{KeyValue, key_hash};

/// The kind of a node, fixed in its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeType {
    Validator,
    Miner,
}

/// A node's role for one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReplicaRole {
    Primary,
    Secondary,
}

/// Every field of the seed's TablePolicy, plus the shard count and range split points.
#[derive(Debug, Clone, PartialEq)]
pub struct TablePolicy {
    pub table: String,
    /// Fraction of eligible nodes that hold each shard, 0 < f ≤ 1.
    pub replication_factor: f64,
    /// Only validator nodes may hold the table.
    pub validator_only: bool,
    /// At least this many copies of each shard on validators.
    pub min_validator_copies: usize,
    pub read_roles: BTreeSet<ReplicaRole>,
    pub write_roles: BTreeSet<ReplicaRole>,
    /// Columns whose values pick the shard; empty makes a reference table (one shard).
    pub shard_keys: Vec<String>,
    /// Ranges of the first key's integer value instead of a hash.
    pub range_sharding: bool,
    /// Range split points, ascending: shard i holds keys in `[ranges[i-1], ranges[i])`.
    pub ranges: Vec<i64>,
    /// Shard count (hash sharding); `ranges.len() + 1` with range sharding; 1 for references.
    pub shards: u32,
}

/// A policy that cannot be placed, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy for table {table}: {reason}")]
pub struct PolicyError {
    pub table: String,
    pub reason: String,
}

impl TablePolicy {
    /// The policy a table gets when nobody configured one.
    pub fn default_for(table: &str, defaults: &PolicyDefaults) -> TablePolicy {
        TablePolicy {
            table: table.to_owned(),
            replication_factor: defaults.replication_factor,
            validator_only: false,
            min_validator_copies: defaults.min_validator_copies,
            read_roles: BTreeSet::from([ReplicaRole::Primary, ReplicaRole::Secondary]),
            write_roles: BTreeSet::from([ReplicaRole::Primary]),
            shard_keys: Vec::new(),
            range_sharding: false,
            ranges: Vec::new(),
            shards: 1,
        }
    }

    pub fn is_reference(&self) -> bool {
        self.shard_keys.is_empty()
    }

    /// Checks the policy on its own (placement checks it against the nodes).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let fail = |reason: String| {
            Err(PolicyError {
                table: self.table.clone(),
                reason,
            })
        };
        if !(self.replication_factor > 0.0 && self.replication_factor <= 1.0) {
            return fail(format!(
                "replication_factor must be in (0, 1], got {}",
                self.replication_factor
            ));
        }
        if self.shards == 0 {
            return fail("shards must be at least 1".to_owned());
        }
        if self.is_reference() && self.shards != 1 {
            return fail("a table without shard keys has exactly one shard".to_owned());
        }
        if self.range_sharding {
            if self.shard_keys.is_empty() {
                return fail("range sharding needs a shard key".to_owned());
            }
            if self.ranges.windows(2).any(|w| w[0] >= w[1]) {
                return fail("ranges must be strictly ascending".to_owned());
            }
            if self.shards as usize != self.ranges.len() + 1 {
                return fail(format!(
                    "range sharding with {} split points makes {} shards, not {}",
                    self.ranges.len(),
                    self.ranges.len() + 1,
                    self.shards
                ));
            }
        }
        if self.write_roles.is_empty() || self.read_roles.is_empty() {
            return fail("read_roles and write_roles must not be empty".to_owned());
        }
        if !self.write_roles.contains(&ReplicaRole::Primary) {
            return fail(
                "write_roles must include primary: writes go to a shard's primary".to_owned(),
            );
        }
        Ok(())
    }

    /// The shard of a key (one value per shard key column, in order).
    pub fn shard_of(&self, key: &[KeyValue]) -> u32 {
        if self.is_reference() {
            return 0;
        }
        if self.range_sharding {
            let first = match key.first() {
                Some(KeyValue::Int(i)) => *i,
                // A non-integer key under range sharding has no range; it goes to the last
                // shard, deterministically (placement refuses such keys at insert time).
                _ => return self.shards - 1,
            };
            return self.ranges.partition_point(|&split| split <= first) as u32;
        }
        (key_hash(key) % u64::from(self.shards)) as u32
    }
}

/// Cluster-wide defaults for tables without a policy (the seed's ShardConfig).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDefaults {
    pub replication_factor: f64,
    pub min_validator_copies: usize,
}

impl Default for PolicyDefaults {
    fn default() -> Self {
        PolicyDefaults {
            replication_factor: 0.5,
            min_validator_copies: 1,
        }
    }
}
