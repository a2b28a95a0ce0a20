//! Which copy of each shard a statement uses, and what each node must see of a table.
//!
//! - **Writes** go to each shard's primary.
//! - **Reads** go to the first copy, in placement order (primary first: it never lags), whose
//!   role is in the table's `read_roles`, whose node is up and whose copy holds rows (a
//!   secondary's does when it replicates: both nodes on SQLite). So a read fails over to a
//!   secondary when the primary is down, and reads a secondary when `read_roles` excludes the
//!   primary. Inside a transaction a node already in it is preferred, so the transaction sees
//!   its own writes. *Read-your-writes* outside a transaction: for [`READ_YOUR_WRITES`] after
//!   a session wrote a table, its reads of that table go to the primary when it is up.
//! - **Joins with unsharded tables** run on each node with its own copy of them, so only
//!   where every node reading the sharded table holds a replicated copy (else 0A000). A copy
//!   follows its primary asynchronously unless `synchronous_replicas` says otherwise.
//! - **Scoping**: a node holds, in one table, every shard it has a copy of. When a statement
//!   reaches a node for some of the shards it holds and the node holds rows of others too,
//!   the text it gets is scoped (`mycelium_router::scope_statement`) so it sees only its
//!   shards: no row counted twice, no secondary copy written. A statement that names shard
//!   keys and runs on one node needs no scope (its keys only match its shards' rows).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mycelium_protocol::Execute;
use mycelium_router::{ReplicaRole, ShardPlacement, ShardScope, TablePlacement, scope_statement};

use crate::error::{ProxyError, sql_error};
use crate::session::Session;

/// How long after a session wrote a table its reads of it stay on the primaries.
pub const READ_YOUR_WRITES: Duration = Duration::from_secs(10);

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

    /// The copy each chosen shard is read from (see the module comment).
    pub(crate) fn read_assignment(
        &self,
        placement: &TablePlacement,
        chosen: &[u32],
    ) -> Result<Assignment, ProxyError> {
        let primary_only = self
            .wrote_at
            .get(&placement.policy.table)
            .is_some_and(|at| at.elapsed() < READ_YOUR_WRITES);
        let mut assignment = Assignment::new();
        for shard in chosen {
            let Some(placed) = placement.shards.get(*shard as usize) else {
                continue;
            };
            let node = self.read_copy(placement, placed, primary_only)?;
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

    /// Remembers that this session wrote `table` (reads of it stay on primaries a while).
    pub(crate) fn wrote(&mut self, table: &str) {
        match self.wrote_at.get_mut(table) {
            Some(at) => *at = Instant::now(),
            None => {
                self.wrote_at.insert(table.to_owned(), Instant::now());
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
