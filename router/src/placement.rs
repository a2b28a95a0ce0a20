//! Placement: which nodes hold each shard, as a pure function of the policy and the node list.
//!
//! Rendezvous (highest-random-weight) hashing: every eligible node gets a score per shard,
//! `stable_hash(table ‖ 0x00 ‖ shard as u32 BE ‖ node id)`, and the shard lives on the
//! best-scoring nodes. Every proxy computes the same map with no coordination, and when a node
//! joins or leaves only the shards whose top-scoring set changes move.
//!
//! Tables sharded alike share a placement: the score uses the table's *placement group* (its
//! shard count, ranges, key count and eligibility) instead of its name, so shard `s` of two
//! such tables with the same copy rules lives on the same nodes and a join on their shard keys
//! runs node-locally.
//! An unsharded table is its own group.
//!
//! Copies per shard = max(ceil(replication_factor × eligible nodes), min_validator_copies).
//! Eligible nodes are the validators for `validator_only` tables, all nodes otherwise. The
//! `min_validator_copies` best-scoring validators are always chosen; the remaining copies are
//! the best-scoring other eligible nodes. The best-scoring chosen node is the primary.

use crate::hash::stable_hash;
use crate::policy::{NodeType, PolicyDefaults, PolicyError, ReplicaRole, TablePolicy};

/// A cluster member that can hold data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub node_type: NodeType,
}

/// One copy of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub node: String,
    pub role: ReplicaRole,
}

/// Where one shard lives; the primary comes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlacement {
    pub shard: u32,
    pub replicas: Vec<Replica>,
    /// The primary epoch: [`FIRST_EPOCH`] until an operator promotes another copy; every
    /// promotion starts a higher one, and nodes refuse replication from an older primary.
    pub epoch: u64,
}

impl ShardPlacement {
    pub fn primary(&self) -> &str {
        &self.replicas[0].node
    }

    pub fn holds(&self, node: &str) -> bool {
        self.replicas.iter().any(|r| r.node == node)
    }
}

/// The placement of every shard of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TablePlacement {
    pub policy: TablePolicy,
    /// The [`placement_group`] the shards were placed by: tables of one group share their
    /// nodes shard by shard, and promotions apply to the whole group.
    pub group: String,
    pub shards: Vec<ShardPlacement>,
}

/// The primary epoch of a shard nobody promoted.
pub const FIRST_EPOCH: u64 = 1;

/// An operator's choice of primary for shard `shard` of placement group `group`
/// (`PROMOTE MYCELIUM NODE ... FOR SHARD ...`), overriding the placement's first copy, under
/// a primary epoch above every earlier one of the shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub group: String,
    pub shard: u32,
    pub node: String,
    pub epoch: u64,
}

/// Merges `incoming` into `known`: per group and shard, the promotion of the highest epoch
/// stays. Promotions only ever move forward, so any two proxies' merges agree. Returns
/// whether `known` changed.
pub fn merge_promotions(known: &mut Vec<Promotion>, incoming: &[Promotion]) -> bool {
    let mut changed = false;
    for promotion in incoming {
        match known
            .iter_mut()
            .find(|p| p.group == promotion.group && p.shard == promotion.shard)
        {
            Some(existing) if existing.epoch >= promotion.epoch => {}
            Some(existing) => {
                *existing = promotion.clone();
                changed = true;
            }
            None => {
                known.push(promotion.clone());
                changed = true;
            }
        }
    }
    if changed {
        known.sort_by(|a, b| a.group.cmp(&b.group).then(a.shard.cmp(&b.shard)));
    }
    changed
}

/// How many copies each shard of `policy` gets on `nodes`, checked against what exists.
pub fn copies(policy: &TablePolicy, nodes: &[NodeInfo]) -> Result<usize, PolicyError> {
    let fail = |reason: String| PolicyError {
        table: policy.table.clone(),
        reason,
    };
    let validators = nodes
        .iter()
        .filter(|n| n.node_type == NodeType::Validator)
        .count();
    let eligible = if policy.validator_only {
        validators
    } else {
        nodes.len()
    };
    if eligible == 0 {
        return Err(fail(if policy.validator_only {
            "validator_only, but the cluster has no validator nodes".to_owned()
        } else {
            "the cluster has no nodes".to_owned()
        }));
    }
    if policy.min_validator_copies > validators {
        return Err(fail(format!(
            "min_validator_copies is {} but the cluster has {validators} validator nodes",
            policy.min_validator_copies
        )));
    }
    let by_factor = (policy.replication_factor * eligible as f64).ceil() as usize;
    Ok(by_factor
        .max(policy.min_validator_copies)
        .clamp(1, eligible))
}

/// The name placement scores a table's shards by: shared by tables sharded alike.
pub fn placement_group(policy: &TablePolicy) -> String {
    if policy.is_reference() {
        return policy.table.clone();
    }
    let ranges: Vec<String> = policy.ranges.iter().map(i64::to_string).collect();
    // Copy counts stay out of the name: changing a table's replication factor must only add
    // or drop copies, not move its shards.
    format!(
        "colocated:{}:{}:{}:{}:{}",
        if policy.range_sharding {
            "range"
        } else {
            "hash"
        },
        policy.shards,
        policy.shard_keys.len(),
        ranges.join(","),
        policy.validator_only,
    )
}

impl TablePlacement {
    /// The placement name shared by tables without a policy of their own: they all live
    /// together, as if they were one table of that name, so an application that never heard
    /// of policies keeps all its tables, and its transactions, on one node.
    pub const DEFAULT_GROUP: &'static str = "__default";

    /// Where `table` lives: by its own policy, or with the tables without one.
    pub fn of_table(
        table: &str,
        policy: Option<&TablePolicy>,
        defaults: &PolicyDefaults,
        nodes: &[NodeInfo],
    ) -> Result<TablePlacement, PolicyError> {
        let mut placement = match policy {
            Some(policy) => place(policy, nodes)?,
            None => place(
                &TablePolicy::default_for(Self::DEFAULT_GROUP, defaults),
                nodes,
            )?,
        };
        placement.policy.table = table.to_owned();
        Ok(placement)
    }

    /// Applies the promotions of this placement's group: a promoted node that holds a copy
    /// of its shard becomes the primary (first; the other copies keep their order as
    /// secondaries) and the shard takes the promotion's epoch. A promotion of a node that
    /// holds no copy (the node list or the policy changed since) keeps the placement's
    /// primary, still under the promotion's epoch, so epochs never go back.
    pub fn promote(&mut self, promotions: &[Promotion]) {
        for promotion in promotions.iter().filter(|p| p.group == self.group) {
            let Some(shard) = self.shards.iter_mut().find(|s| s.shard == promotion.shard) else {
                continue;
            };
            shard.epoch = shard.epoch.max(promotion.epoch);
            let Some(at) = shard.replicas.iter().position(|r| r.node == promotion.node) else {
                continue;
            };
            let promoted = shard.replicas.remove(at);
            shard.replicas.insert(0, promoted);
            for (i, replica) in shard.replicas.iter_mut().enumerate() {
                replica.role = if i == 0 {
                    ReplicaRole::Primary
                } else {
                    ReplicaRole::Secondary
                };
            }
        }
    }
}

/// Places every shard of the table.
pub fn place(policy: &TablePolicy, nodes: &[NodeInfo]) -> Result<TablePlacement, PolicyError> {
    policy.validate()?;
    let copies = copies(policy, nodes)?;
    let group = placement_group(policy);
    let shards = (0..policy.shards)
        .map(|shard| place_shard(policy, &group, nodes, shard, copies))
        .collect();
    Ok(TablePlacement {
        policy: policy.clone(),
        group,
        shards,
    })
}

fn score(table: &str, shard: u32, node: &str) -> u64 {
    let mut bytes = Vec::with_capacity(table.len() + node.len() + 5);
    bytes.extend_from_slice(table.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&shard.to_be_bytes());
    bytes.extend_from_slice(node.as_bytes());
    stable_hash(&bytes)
}

fn place_shard(
    policy: &TablePolicy,
    group: &str,
    nodes: &[NodeInfo],
    shard: u32,
    copies: usize,
) -> ShardPlacement {
    let mut ranked: Vec<(u64, &NodeInfo)> = nodes
        .iter()
        .filter(|n| !policy.validator_only || n.node_type == NodeType::Validator)
        .map(|n| (score(group, shard, &n.id), n))
        .collect();
    // Highest score first; the id breaks (astronomically unlikely) ties deterministically.
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let mut chosen: Vec<(u64, &NodeInfo)> = ranked
        .iter()
        .filter(|(_, n)| n.node_type == NodeType::Validator)
        .take(policy.min_validator_copies)
        .copied()
        .collect();
    for candidate in &ranked {
        if chosen.len() >= copies {
            break;
        }
        if !chosen.iter().any(|(_, n)| n.id == candidate.1.id) {
            chosen.push(*candidate);
        }
    }
    chosen.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let replicas = chosen
        .iter()
        .enumerate()
        .map(|(i, (_, node))| Replica {
            node: node.id.clone(),
            role: if i == 0 {
                ReplicaRole::Primary
            } else {
                ReplicaRole::Secondary
            },
        })
        .collect();
    ShardPlacement {
        shard,
        replicas,
        epoch: FIRST_EPOCH,
    }
}
