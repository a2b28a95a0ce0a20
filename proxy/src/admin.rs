//! `SHOW MYCELIUM NODES | SHARDS | POLICIES | TRANSACTIONS | USERS | REPLICATION | CONFLICTS`:
//! the cluster as the proxy sees it, as rows; and `PROMOTE MYCELIUM NODE`.

use std::collections::BTreeMap;

use mycelium_protocol::types::oid;
use mycelium_protocol::{Column, Execute};
use mycelium_router::{ReplicaRole, TablePolicy, copies, policy_to_options};

use crate::Proxy;
use crate::cluster::DEFAULT_GROUP;
use crate::error::{ProxyError, sql_error};
use crate::privileges::PUBLIC;

/// Column names and rows of one admin view.
pub struct AdminRows {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Option<String>>>,
}

fn text_columns(names: &[&str]) -> Vec<Column> {
    names.iter().map(|name| text_column(name)).collect()
}

/// A result column of type text that belongs to no table: what the proxy's own answers carry.
pub(crate) fn text_column(name: &str) -> Column {
    Column {
        name: name.to_owned(),
        table_oid: 0,
        column_id: 0,
        type_oid: oid::TEXT,
        type_size: -1,
        type_modifier: -1,
    }
}

/// A `SHOW MYCELIUM REPLICATION` row for a node that did not report.
fn unanswered(node: Option<String>, why: &str) -> Vec<Option<String>> {
    let mut row = vec![None; 16];
    row[0] = node;
    row[10] = Some(format!("unknown: {why}"));
    row
}

/// What `SHOW MYCELIUM CONFLICTS` reads on each node: the columns of `mycelium_conflicts`
/// before `recorded_on`. All but the last (when this node recorded it) identify a conflict.
const CONFLICTS: &str = "SELECT table_name, key_text, shard_table || '/' || shard, \
     first_origin, first_sequence, first_hlc_ms, second_origin, second_sequence, second_hlc_ms, \
     winner, recorded_at_ms FROM __mycelium_conflicts";

/// The admin views, by the name SHOW uses (`mycelium_nodes`, ...); `None` for other names.
pub fn admin_columns(name: &str) -> Option<Vec<Column>> {
    Some(match name {
        "mycelium_nodes" => text_columns(&[
            "node",
            "node_type",
            "state",
            "primary_shards",
            "shards",
            "backend",
            "location",
            "healthy",
            "prepared",
            "map_epoch",
            "reported_primary_shards",
            "reported_shards",
        ]),
        "mycelium_shards" => {
            text_columns(&["table_name", "shard", "keys", "nodes", "primary_epoch"])
        }
        "mycelium_users" => text_columns(&[
            "role_name",
            "source",
            "superuser",
            "login",
            "password",
            "member_of",
            "privileges",
            "owns",
        ]),
        "mycelium_policies" => text_columns(&[
            "table_name",
            "shard_keys",
            "shards",
            "replication_factor",
            "validator_only",
            "min_validator_copies",
            "read_roles",
            "write_roles",
            "range_sharding",
            "ranges",
            "copies",
        ]),
        "mycelium_replication" => text_columns(&[
            "node",
            "table_name",
            "shard",
            "role",
            "epoch",
            "sequence",
            "peer",
            "peer_sequence",
            "lag_entries",
            "lag_seconds",
            "state",
            "wal_entries",
            "wal_bytes",
            "entries_shipped",
            "entries_applied",
            "conflicts",
        ]),
        "mycelium_conflicts" => text_columns(&[
            "table_name",
            "key",
            "shard",
            "first_origin",
            "first_sequence",
            "first_hlc_ms",
            "second_origin",
            "second_sequence",
            "second_hlc_ms",
            "winner",
            "recorded_at_ms",
            "recorded_on",
        ]),
        "mycelium_transactions" => text_columns(&[
            "transaction",
            "state",
            "participants",
            "writers",
            "decider",
            "age_ms",
        ]),
        _ => return None,
    })
}

impl Proxy {
    pub(crate) fn admin_rows(&self, name: &str) -> Result<AdminRows, ProxyError> {
        let columns = admin_columns(name).ok_or_else(|| {
            sql_error(
                "42704",
                format!("unrecognized configuration parameter \"{name}\""),
            )
        })?;
        let cluster = &self.cluster;
        let rows = match name {
            "mycelium_users" => self.user_rows(),
            "mycelium_nodes" => {
                // Shards each node holds, over every table with a policy and the default group.
                let mut held: Vec<(usize, usize)> = vec![(0, 0); cluster.nodes.len()];
                for table in self.policy_tables() {
                    for shard in &cluster.placement(&table)?.shards {
                        for (i, replica) in shard.replicas.iter().enumerate() {
                            if let Some(node) = cluster.node_index(&replica.node) {
                                held[node].1 += 1;
                                if i == 0 {
                                    held[node].0 += 1;
                                }
                            }
                        }
                    }
                }
                cluster
                    .nodes
                    .iter()
                    .zip(held)
                    .map(|(n, (primaries, all))| {
                        vec![
                            Some(n.info.id.clone()),
                            Some(format!("{:?}", n.info.node_type).to_lowercase()),
                            Some(if n.link.is_up() { "up" } else { "down" }.to_owned()),
                            Some(primaries.to_string()),
                            Some(all.to_string()),
                        ]
                    })
                    .collect()
            }
            "mycelium_shards" => {
                let mut rows = Vec::new();
                for table in self.policy_tables() {
                    let placement = cluster.placement(&table)?;
                    for shard in &placement.shards {
                        let nodes: Vec<String> = shard
                            .replicas
                            .iter()
                            .map(|r| {
                                let role = match r.role {
                                    ReplicaRole::Primary => "primary",
                                    ReplicaRole::Secondary => "secondary",
                                };
                                format!("{} ({role})", r.node)
                            })
                            .collect();
                        rows.push(vec![
                            Some(table.clone()),
                            Some(shard.shard.to_string()),
                            Some(key_range(&placement.policy, shard.shard)),
                            Some(nodes.join(", ")),
                            Some(shard.epoch.to_string()),
                        ]);
                    }
                }
                rows
            }
            "mycelium_policies" => {
                let mut rows = Vec::new();
                for table in self.policy_tables() {
                    let placement = cluster.placement(&table)?;
                    let infos: Vec<_> = cluster.nodes.iter().map(|n| n.info.clone()).collect();
                    let copies = copies(&placement.policy, &infos)
                        .map(|c| c.to_string())
                        .ok();
                    let mut row = vec![Some(table.clone())];
                    row.extend(
                        policy_to_options(&placement.policy)
                            .into_iter()
                            .map(|(_, v)| Some(v)),
                    );
                    row.push(copies);
                    rows.push(row);
                }
                rows
            }
            // Views whose rows need the nodes are answered asynchronously by their own
            // functions (`transaction_rows`).
            _ => Vec::new(),
        };
        Ok(AdminRows { columns, rows })
    }

    /// Config users (the bootstrap superusers), then roles made by SQL, then `public` if
    /// anything was granted to it.
    fn user_rows(&self) -> Vec<Vec<Option<String>>> {
        let config = self.config_users();
        let catalog = self.catalog();
        let yes_no = |b: bool| Some(if b { "yes" } else { "no" }.to_owned());
        let mut rows: Vec<Vec<Option<String>>> = config
            .names()
            .into_iter()
            .map(|name| {
                vec![
                    Some(name.clone()),
                    Some("config".to_owned()),
                    yes_no(true),
                    yes_no(true),
                    Some("scram-sha-256".to_owned()),
                    Some(String::new()),
                    Some(String::new()),
                    Some(catalog.owned_by(&name).join(", ")),
                ]
            })
            .collect();
        let member_of = |name: &str| {
            catalog
                .memberships
                .get(name)
                .map(|roles| roles.iter().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        };
        for (name, role) in &catalog.roles {
            rows.push(vec![
                Some(name.clone()),
                Some("sql".to_owned()),
                yes_no(role.superuser),
                yes_no(role.login),
                Some(
                    if role.verifier.is_some() {
                        "scram-sha-256"
                    } else {
                        "none"
                    }
                    .to_owned(),
                ),
                Some(member_of(name)),
                Some(catalog.describe_grants(name)),
                Some(catalog.owned_by(name).join(", ")),
            ]);
        }
        let public = catalog.describe_grants(PUBLIC);
        if !public.is_empty() {
            rows.push(vec![
                Some(PUBLIC.to_owned()),
                Some("every role".to_owned()),
                yes_no(false),
                yes_no(false),
                Some("none".to_owned()),
                Some(String::new()),
                Some(public),
                Some(String::new()),
            ]);
        }
        rows
    }

    /// `SHOW MYCELIUM REPLICATION`: every node's report on its shard copies, one row per copy
    /// and peer (asked concurrently, two seconds at most; a node that does not answer gets one
    /// row saying so).
    pub(crate) async fn replication_rows(&self) -> Result<AdminRows, ProxyError> {
        let mut admin = self.admin_rows("mycelium_replication")?;
        let reports = futures::future::join_all(self.cluster.nodes.iter().map(|node| {
            tokio::time::timeout(std::time::Duration::from_secs(2), node.link.replication())
        }))
        .await;
        admin.rows.clear();
        for (node, report) in self.cluster.nodes.iter().zip(reports) {
            let id = Some(node.info.id.clone());
            match report {
                Ok(Ok(rows)) => admin.rows.extend(rows.into_iter().map(|r| {
                    vec![
                        id.clone(),
                        Some(r.table),
                        Some(r.shard.to_string()),
                        Some(r.role),
                        Some(r.epoch.to_string()),
                        Some(r.sequence.to_string()),
                        r.peer,
                        Some(r.peer_sequence.to_string()),
                        Some(r.lag_entries.to_string()),
                        Some(format!("{:.3}", r.lag_seconds)),
                        Some(r.state),
                        Some(r.wal_entries.to_string()),
                        Some(r.wal_bytes.to_string()),
                        Some(r.entries_shipped.to_string()),
                        Some(r.entries_applied.to_string()),
                        Some(r.conflicts.to_string()),
                    ]
                })),
                Ok(Err(e)) => admin.rows.push(unanswered(id, &e.message)),
                Err(_) => admin.rows.push(unanswered(id, "no answer within 2 s")),
            }
        }
        Ok(admin)
    }

    /// `SHOW MYCELIUM CONFLICTS`: the conflicts every replicating node recorded (each replica
    /// of a shard records the same ones), once each, with the nodes that recorded it. A node
    /// that cannot be asked gets a row saying so (`winner` = `unknown: <why>`).
    pub(crate) async fn conflict_rows(&self) -> Result<AdminRows, ProxyError> {
        let mut admin = self.admin_rows("mycelium_conflicts")?;
        type Recorded = (Option<String>, Vec<String>);
        let mut found: BTreeMap<Vec<Option<String>>, Recorded> = BTreeMap::new();
        for node in self.cluster.nodes.iter().filter(|n| n.replicates()) {
            let rows = async {
                let mut session = node.link.open_session().await?;
                crate::policy_store::run(session.as_mut(), Execute::simple(CONFLICTS)).await
            }
            .await;
            match rows {
                Ok(rows) => {
                    for mut row in rows {
                        let at = row.pop().flatten();
                        let entry = found.entry(row).or_insert((at.clone(), Vec::new()));
                        if at.as_deref().and_then(|a| a.parse::<i64>().ok())
                            < entry.0.as_deref().and_then(|a| a.parse::<i64>().ok())
                        {
                            entry.0 = at;
                        }
                        entry.1.push(node.info.id.clone());
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %node.info.id, error = %e, "conflicts not read");
                    let mut row = vec![None; 10];
                    row[9] = Some(format!("unknown: {}", e.message));
                    found.insert(row, (None, vec![node.info.id.clone()]));
                }
            }
        }
        let mut rows: Vec<Vec<Option<String>>> = found
            .into_iter()
            .map(|(mut row, (at, nodes))| {
                row.push(at);
                row.push(Some(nodes.join(",")));
                row
            })
            .collect();
        rows.sort_by(|a, b| a[10].cmp(&b[10]).then_with(|| a.cmp(b)));
        admin.rows = rows;
        Ok(admin)
    }

    /// `SHOW MYCELIUM NODES`: the placement view, and what each node reports about itself
    /// (asked concurrently, two seconds at most; a node that does not answer shows NULLs).
    pub(crate) async fn node_rows(&self) -> Result<AdminRows, ProxyError> {
        let mut admin = self.admin_rows("mycelium_nodes")?;
        let reports = futures::future::join_all(self.cluster.nodes.iter().map(|node| {
            tokio::time::timeout(std::time::Duration::from_secs(2), node.link.status())
        }))
        .await;
        for (row, report) in admin.rows.iter_mut().zip(reports) {
            match report {
                Ok(Ok(status)) => row.extend([
                    Some(status.backend),
                    Some(status.location),
                    Some(if status.healthy { "yes" } else { "no" }.to_owned()),
                    Some(status.prepared.to_string()),
                    Some(status.map_epoch.to_string()),
                    Some(
                        status
                            .shards
                            .iter()
                            .filter(|s| s.primary)
                            .count()
                            .to_string(),
                    ),
                    Some(status.shards.len().to_string()),
                ]),
                _ => row.extend([None, None, None, None, None, None, None]),
            }
        }
        Ok(admin)
    }

    /// `SHOW MYCELIUM TRANSACTIONS`: this proxy's transactions in progress, then every
    /// transaction a node holds prepared (in doubt until its outcome reaches the node). A node
    /// that cannot be asked gets a row saying so.
    pub(crate) async fn transaction_rows(&self) -> AdminRows {
        let mut rows: Vec<Vec<Option<String>>> = self
            .coordinator
            .transactions()
            .into_iter()
            .map(|t| {
                vec![
                    Some(t.tx_id.to_string()),
                    Some(t.state.as_str().to_owned()),
                    Some(t.participants.join(",")),
                    Some(t.writers.join(",")),
                    t.decider,
                    Some(t.age.as_millis().to_string()),
                ]
            })
            .collect();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        for node in &self.cluster.nodes {
            let id = node.info.id.clone();
            match node.link.prepared().await {
                Ok(prepared) => rows.extend(prepared.into_iter().map(|p| {
                    vec![
                        Some(p.gid),
                        Some("prepared".to_owned()),
                        Some(id.clone()),
                        Some(id.clone()),
                        Some(p.decider),
                        Some(now_ms.saturating_sub(p.prepared_at_ms).to_string()),
                    ]
                })),
                Err(e) => rows.push(vec![
                    None,
                    Some(format!("unknown: {}", e.message)),
                    Some(id.clone()),
                    None,
                    None,
                    None,
                ]),
            }
        }
        AdminRows {
            columns: admin_columns("mycelium_transactions").unwrap_or_default(),
            rows,
        }
    }

    /// Tables with a policy, then the group of tables without one.
    fn policy_tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = self.cluster.policies().into_keys().collect();
        tables.push(DEFAULT_GROUP.to_owned());
        tables
    }
}

/// Which keys a shard holds, in words.
fn key_range(policy: &TablePolicy, shard: u32) -> String {
    if policy.is_reference() {
        return "all rows".to_owned();
    }
    if policy.range_sharding {
        let low = shard
            .checked_sub(1)
            .and_then(|i| policy.ranges.get(i as usize));
        let high = policy.ranges.get(shard as usize);
        return match (low, high) {
            (None, Some(h)) => format!("{} < {h}", policy.shard_keys[0]),
            (Some(l), Some(h)) => format!("{l} <= {} < {h}", policy.shard_keys[0]),
            (Some(l), None) => format!("{} >= {l}", policy.shard_keys[0]),
            (None, None) => "all rows".to_owned(),
        };
    }
    format!(
        "hash({}) % {} = {shard}",
        policy.shard_keys.join(", "),
        policy.shards
    )
}

impl Proxy {
    /// `PROMOTE MYCELIUM NODE node FOR SHARD table/shard`: makes `node`'s copy the primary of
    /// that shard of every table placed with `table`, under a new primary epoch, and brings
    /// the nodes the new map before answering. Returns what changed, for a notice.
    ///
    /// The old primary, up or back later, takes the map (or meets the new epoch in
    /// replication), stops leading and follows the new primary; what it committed that the
    /// promoted copy never received is sent on when it rejoins and resolved as conflicts.
    pub(crate) async fn promote(
        &self,
        user: &str,
        node: &str,
        table: &str,
        shard: u32,
    ) -> Result<String, ProxyError> {
        if !self.is_superuser(user) {
            return Err(sql_error(
                "42501",
                "permission denied: only a superuser may promote a node",
            ));
        }
        let cluster = &self.cluster;
        let target = cluster.node_index(node).ok_or_else(|| {
            sql_error(
                "42704",
                format!("node \"{node}\" is not a member of the cluster"),
            )
        })?;
        let placement = cluster.placement(table)?;
        let Some(placed) = placement.shards.iter().find(|s| s.shard == shard) else {
            return Err(sql_error(
                "22023",
                format!(
                    "table {table} has {} shard(s), numbered from 0",
                    placement.shards.len()
                ),
            ));
        };
        if !placed.holds(node) {
            let copies: Vec<&str> = placed.replicas.iter().map(|r| r.node.as_str()).collect();
            return Err(sql_error(
                "22023",
                format!(
                    "node {node} holds no copy of shard {table}/{shard} (its copies: {})",
                    copies.join(", ")
                ),
            ));
        }
        if placed.primary() == node {
            return Ok(format!(
                "node {node} already is the primary of shard {table}/{shard} (epoch {})",
                placed.epoch
            ));
        }
        let primary = cluster.node_index(placed.primary()).unwrap_or(target);
        if !cluster.copy_has_rows(target, primary) {
            return Err(sql_error(
                "55000",
                format!(
                    "node {node}'s copy of shard {table}/{shard} is not known to hold rows: this \
                     proxy has not yet heard the backends of {node} and of the primary {}; try \
                     again in a moment",
                    placed.primary()
                ),
            ));
        }
        if !cluster.nodes[target].link.is_up() {
            return Err(sql_error(
                "08006",
                format!("node {node} is unreachable: a primary must take writes"),
            ));
        }
        let epoch = placed.epoch + 1;
        cluster.merge_promotions(&[mycelium_router::Promotion {
            group: placement.group.clone(),
            shard,
            node: node.to_owned(),
            epoch,
        }]);
        let map_epoch = self.sync_map().await;
        tracing::warn!(%node, %table, shard, epoch, previous = %placed.primary(), map_epoch,
            "promoted a copy to primary");
        Ok(format!(
            "node {node} is the primary of shard {table}/{shard} (and of that shard of every \
             table placed with {table}) under epoch {epoch}; it was {}",
            placed.primary()
        ))
    }
}
