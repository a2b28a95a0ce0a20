//! Which copy of each shard a statement uses, and what each node must see of a table.
//!
//! - **Writes** go to each shard's primary.
//! - **Reads** go to the first copy, in placement order (primary first: it never lags), whose
//!   role is in the table's `read_roles`, whose node is up and whose copy holds rows (a
//!   secondary's does when it replicates: both nodes on SQLite). So a read fails over to a
//!   secondary when the primary is down, and reads a secondary when `read_roles` excludes the
//!   primary. Inside a transaction a node already in it is preferred, so the transaction sees
//!   its own writes. *Read-your-writes* outside a transaction, by version vector: nodes
//!   report where each commit landed in its shard's log (origin, sequence); a read of that
//!   shard on another copy carries those positions as a *read fence*, and the copy waits until
//!   it applied them (bounded) or refuses with [`REPLICA_BEHIND`], and the read goes to the
//!   primary. Two-phase commits report positions too (the decider's commit and each prepared
//!   participant's). Writes whose position is unknown (a PostgreSQL node's commit it has not
//!   sealed yet, a participant that did not confirm) keep the session's reads of their table
//!   on the primary for [`READ_YOUR_WRITES`].
//! - **Joins with unsharded tables** run on each node with its own copy of them, so only
//!   where every node reading the sharded table holds a replicated copy (else 0A000). A copy
//!   follows its primary asynchronously unless `synchronous_replicas` says otherwise.
//! - **Scoping**: a node holds, in one table, every shard it has a copy of. When a statement
//!   reaches a node for some of the shards it holds and the node holds rows of others too,
//!   the text it gets is scoped (`mycelium_router::scope_statement`) so it sees only its
//!   shards: no row counted twice, no secondary copy written. A statement that names shard
//!   keys and runs on one node needs no scope (its keys only match its shards' rows).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mycelium_protocol::{CommitPosition, Execute, REPLICA_BEHIND};
use mycelium_router::{ReplicaRole, ShardPlacement, ShardScope, TablePlacement, scope_statement};

use crate::backend::TxnStatus;
use crate::error::{ProxyError, sql_error};
use crate::session::Session;

/// How long after a session wrote a table without a known commit position its reads of it
/// stay on the primaries.
pub const READ_YOUR_WRITES: Duration = Duration::from_secs(10);

/// What a session remembers of its own writes, so its reads see them.
#[derive(Default)]
pub(crate) struct OwnWrites {
    /// When it last wrote each table.
    wrote_at: HashMap<String, Instant>,
    /// The last position of its commits in each shard log (table, shard) and origin.
    positions: HashMap<(String, u32, String), u64>,
    /// The read fence of each node for the statement being routed.
    fences: Mutex<HashMap<usize, Vec<CommitPosition>>>,
    /// Set for a retry after a copy refused with [`REPLICA_BEHIND`]: reads go to primaries.
    pub primaries_only: bool,
}

impl OwnWrites {
    /// Forgets the positions of log `table`: a write to it is about to land somewhere its
    /// answer may not say (a two-phase commit), so until a position comes back its reads go to
    /// primaries.
    fn forget(&mut self, table: &str) {
        self.positions.retain(|(t, _, _), _| t != table);
    }

    /// Takes in where a two-phase commit's prepared participants committed.
    pub fn committed(&mut self, positions: Vec<CommitPosition>) {
        for position in positions {
            self.add(position);
        }
    }

    fn add(&mut self, position: CommitPosition) {
        let sequence = self
            .positions
            .entry((position.table, position.shard, position.origin))
            .or_default();
        *sequence = (*sequence).max(position.sequence);
    }

    /// The positions of shard `shard` of log `table` not written by node `copy`.
    fn fence_for(&self, table: &str, shard: u32, copy: &str) -> Vec<CommitPosition> {
        self.positions
            .iter()
            .filter(|((t, s, origin), _)| t == table && *s == shard && origin != copy)
            .map(|((table, shard, origin), &sequence)| CommitPosition {
                table: table.clone(),
                shard: *shard,
                origin: origin.clone(),
                sequence,
            })
            .collect()
    }

    fn add_fence(&self, node: usize, fence: Vec<CommitPosition>) {
        if fence.is_empty() {
            return;
        }
        self.fences
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(node)
            .or_default()
            .extend(fence);
    }

    /// The read fence node `node` gets with the statement being routed.
    pub fn take_fence(&self, node: usize) -> Vec<CommitPosition> {
        self.fences
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&node)
            .unwrap_or_default()
    }

    fn clear_fences(&self) {
        self.fences
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Whether `error` is a copy's refusal of a read fenced by this session's writes.
pub(crate) fn replica_behind(error: &crate::error::ProxyError) -> bool {
    matches!(error, ProxyError::Db(db) if db.code == "55000" && db.message.starts_with(REPLICA_BEHIND))
}

/// Each node a statement runs on, with the shards of its table it serves there.
pub(crate) type Assignment = BTreeMap<usize, Vec<u32>>;

impl Session {
    /// Primaries of the chosen shards.
    pub(crate) fn write_assignment(
        &self,
        placement: &TablePlacement,
        chosen: &[u32],
    ) -> Assignment {
        let cluster = &self.proxy.cluster;
        let mut assignment = Assignment::new();
        for shard in chosen {
            if let Some(node) = placement
                .shards
                .get(*shard as usize)
                .and_then(|s| cluster.node_index(s.primary()))
            {
                assignment.entry(node).or_default().push(*shard);
            }
        }
        assignment
    }

    /// The copy each chosen shard is read from (see the module comment), with the read
    /// fences of the copies that are not where this session's writes of a shard landed.
    pub(crate) fn read_assignment(
        &self,
        placement: &TablePlacement,
        chosen: &[u32],
    ) -> Result<Assignment, ProxyError> {
        let table = &placement.policy.table;
        let log = self.log_of(table);
        let wrote_recently = self
            .own_writes
            .wrote_at
            .get(table)
            .is_some_and(|at| at.elapsed() < READ_YOUR_WRITES);
        self.own_writes.clear_fences();
        let mut assignment = Assignment::new();
        for shard in chosen {
            let Some(placed) = placement.shards.get(*shard as usize) else {
                continue;
            };
            let known = self
                .own_writes
                .positions
                .keys()
                .any(|(t, s, _)| t == log && *s == placed.shard);
            // Inside a transaction a copy's refusal could not be retried elsewhere, so the
            // shards this session wrote are read on their primaries there.
            let idle = self.status == TxnStatus::Idle;
            let primary_only =
                self.own_writes.primaries_only || (wrote_recently && !known) || (known && !idle);
            let node = self.read_copy(placement, placed, primary_only)?;
            if idle && !self.own_writes.primaries_only {
                let id = &self.proxy.cluster.nodes[node].info.id;
                self.own_writes
                    .add_fence(node, self.own_writes.fence_for(log, placed.shard, id));
            }
            assignment.entry(node).or_default().push(*shard);
        }
        Ok(assignment)
    }

    fn read_copy(
        &self,
        placement: &TablePlacement,
        shard: &ShardPlacement,
        primary_only: bool,
    ) -> Result<usize, ProxyError> {
        let cluster = &self.proxy.cluster;
        let primary = cluster.node_index(shard.primary()).ok_or_else(|| {
            sql_error(
                "XX000",
                format!(
                    "node {} of the placement is not in the cluster",
                    shard.primary()
                ),
            )
        })?;
        let up = |node: usize| cluster.nodes[node].link.is_up();
        if primary_only && up(primary) {
            return Ok(primary);
        }
        let mut usable = shard
            .replicas
            .iter()
            .filter(|r| placement.policy.read_roles.contains(&r.role))
            .filter_map(|r| cluster.node_index(&r.node))
            .filter(|&node| up(node) && cluster.copy_has_rows(node, primary));
        let first = usable.next();
        let in_transaction = |node: &usize| {
            self.nodes
                .get(*node)
                .and_then(Option::as_ref)
                .is_some_and(|n| n.in_txn)
        };
        let in_transaction = match first {
            Some(node) if in_transaction(&node) => Some(node),
            Some(_) => usable.find(in_transaction),
            None => None,
        };
        match in_transaction.or(first) {
            Some(node) => Ok(node),
            // Nothing usable: the primary, whose failure names the shard.
            None if placement.policy.read_roles.contains(&ReplicaRole::Primary) || !up(primary) => {
                Ok(primary)
            }
            None => Err(sql_error(
                "08006",
                format!(
                    "shard {}/{} is unavailable: no copy in its read_roles is up and replicated",
                    placement.policy.table, shard.shard
                ),
            )),
        }
    }

    /// A join of `table`'s shards with unsharded `references` runs on each node with that
    /// node's copy of them: every node of `assignment` must hold one with rows.
    pub(crate) fn check_references(
        &self,
        table: &str,
        references: &[String],
        assignment: &Assignment,
    ) -> Result<(), ProxyError> {
        let cluster = &self.proxy.cluster;
        for reference in references {
            let placement = cluster.placement(reference)?;
            let Some(shard) = placement.shards.first() else {
                continue;
            };
            let primary = cluster.node_index(shard.primary());
            for &node in assignment.keys() {
                let id = &cluster.nodes[node].info.id;
                let has_rows = shard.holds(id)
                    && primary.is_some_and(|primary| cluster.copy_has_rows(node, primary));
                if !has_rows {
                    return Err(sql_error(
                        "0A000",
                        format!(
                            "join of the sharded table {table} with {reference}, which is not \
                             sharded: node {id} reads shards of {table} but holds no replicated \
                             copy of {reference}; give {reference} a copy on every node \
                             (mycelium.replication_factor = 1, on nodes that replicate) or \
                             query the tables separately"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The shard log nodes record writes of `table` in: its own, or the default group's one
    /// log for the tables without a policy.
    fn log_of<'t>(&self, table: &'t str) -> &'t str {
        if self.proxy.cluster.has_policy(table) {
            table
        } else {
            crate::cluster::DEFAULT_GROUP
        }
    }

    /// Remembers that this session writes `table` (before the write runs).
    pub(crate) fn wrote(&mut self, table: &str) {
        let log = self.log_of(table).to_owned();
        self.own_writes.forget(&log);
        match self.own_writes.wrote_at.get_mut(table) {
            Some(at) => *at = Instant::now(),
            None => {
                self.own_writes
                    .wrote_at
                    .insert(table.to_owned(), Instant::now());
            }
        }
    }

    /// Takes in where this session's last statements committed, from each node session.
    pub(crate) fn collect_commit_positions(&mut self) {
        for conn in self.nodes.iter_mut().flatten() {
            for position in conn.session.take_commit_positions() {
                self.own_writes.add(position);
            }
        }
    }

    /// `request` as node `node` must run it to see only `keep` of `placement`'s shards (and
    /// the same shards of the tables placed alike that the statement names).
    pub(crate) fn scoped(
        &self,
        node: usize,
        placement: &TablePlacement,
        keep: &[u32],
        request: &Execute,
    ) -> Result<Execute, ProxyError> {
        if !self.needs_scope(node, placement, keep) {
            return Ok(request.clone());
        }
        let cluster = &self.proxy.cluster;
        let group = mycelium_router::placement_group(&placement.policy);
        let mut scopes = vec![ShardScope {
            policy: placement.policy.clone(),
            keep: keep.to_vec(),
        }];
        if let Some((tables, _)) = mycelium_router::statement_tables(&request.sql) {
            for table in tables {
                if table == placement.policy.table {
                    continue;
                }
                let other = cluster.placement(&table)?;
                if other.policy.shards > 1
                    && mycelium_router::placement_group(&other.policy) == group
                {
                    scopes.push(ShardScope {
                        policy: other.policy.clone(),
                        keep: keep.to_vec(),
                    });
                }
            }
        }
        let sql = scope_statement(&request.sql, &scopes)?;
        Ok(Execute {
            sql: Arc::from(sql),
            ..request.clone()
        })
    }

    /// Whether `node` holds rows of shards of the table other than `keep`.
    fn needs_scope(&self, node: usize, placement: &TablePlacement, keep: &[u32]) -> bool {
        let cluster = &self.proxy.cluster;
        if !cluster.nodes[node].replicates() {
            return false;
        }
        placement.shards.iter().any(|shard| {
            !keep.contains(&shard.shard)
                && shard.holds(&cluster.nodes[node].info.id)
                && cluster
                    .node_index(shard.primary())
                    .is_some_and(|primary| cluster.copy_has_rows(node, primary))
        })
    }
}
