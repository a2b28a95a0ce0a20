//! The proxy's view of the cluster: its nodes, the table policies, where each table's shards
//! live, and the routes of statements it has seen.
//!
//! Tables nobody configured share one placement (as if they were all named
//! [`DEFAULT_GROUP`]), so an application that never heard of policies keeps all its tables, and
//! its transactions, on one node. Which copy of a shard serves a statement is `replicas`'
//! business; promotions (`PROMOTE MYCELIUM NODE`) are applied to every placement here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use mycelium_protocol::NodeLink;
use mycelium_router::{
    NodeInfo, PolicyDefaults, PolicySource, Promotion, Route, RouterError, TablePlacement,
    TablePolicy, merge_promotions, place, route,
};

use crate::error::{ProxyError, sql_error};

/// The placement name shared by tables without a policy.
pub const DEFAULT_GROUP: &str = TablePlacement::DEFAULT_GROUP;

/// One node as the proxy reaches it.
pub struct ClusterNode {
    pub info: NodeInfo,
    /// Where other nodes reach it (the map tells them; the proxy's own connections use the
    /// address its pool was given).
    pub addr: String,
    pub link: Arc<dyn NodeLink>,
    /// `sqlite` or `postgres`, once the node said (its STATUS).
    pub backend: std::sync::OnceLock<String>,
}

impl ClusterNode {
    pub fn new(info: NodeInfo, addr: String, link: Arc<dyn NodeLink>) -> ClusterNode {
        ClusterNode {
            info,
            addr,
            link,
            backend: std::sync::OnceLock::new(),
        }
    }

    /// Whether the node replicates its copies and evaluates `__mycelium_shard`: every node
    /// does, on either backend, once it answered a STATUS (before that, its copies are not
    /// counted on).
    pub fn replicates(&self) -> bool {
        self.backend
            .get()
            .is_some_and(|b| b == "sqlite" || b == "postgres")
    }
}

pub struct Cluster {
    pub nodes: Vec<ClusterNode>,
    defaults: PolicyDefaults,
    /// Policies set in the config file or by SQL, by table.
    policies: RwLock<HashMap<String, TablePolicy>>,
    /// Primaries chosen by `PROMOTE MYCELIUM NODE`, as the map carries them.
    promotions: RwLock<Vec<Promotion>>,
    placements: DashMap<String, Arc<TablePlacement>>,
    routes: DashMap<Arc<str>, Arc<Result<Route, RouterError>>>,
    /// INSERTs without a column list, with their columns named (`execute`).
    pub(crate) named_inserts: DashMap<Arc<str>, Arc<str>>,
    /// Values for the serial columns of sharded tables (`sequences`).
    pub(crate) sequences: crate::sequences::Sequences,
    /// The epoch of the cluster map this proxy last agreed with the nodes (0: none yet).
    map_epoch: std::sync::atomic::AtomicU64,
    /// [`crate::privileges::Catalog::digest`] of the roles and grants this proxy holds.
    access_digest: std::sync::atomic::AtomicU64,
    /// Woken when the policies change, so the map reaches the nodes without waiting.
    pub(crate) map_changed: tokio::sync::Notify,
    /// One map round at a time: two interleaved rounds (a session's after a policy change,
    /// the periodic one) would offer different maps under one epoch, and a node keeps the
    /// first it gets.
    pub(crate) map_round: tokio::sync::Mutex<()>,
}

impl Cluster {
    pub fn new(
        nodes: Vec<ClusterNode>,
        defaults: PolicyDefaults,
        policies: Vec<TablePolicy>,
    ) -> Cluster {
        Cluster {
            nodes,
            defaults,
            policies: RwLock::new(policies.into_iter().map(|p| (p.table.clone(), p)).collect()),
            promotions: RwLock::new(Vec::new()),
            placements: DashMap::new(),
            routes: DashMap::new(),
            named_inserts: DashMap::new(),
            sequences: Default::default(),
            map_epoch: std::sync::atomic::AtomicU64::new(0),
            access_digest: std::sync::atomic::AtomicU64::new(0),
            map_changed: tokio::sync::Notify::new(),
            map_round: tokio::sync::Mutex::new(()),
        }
    }

    pub fn map_epoch(&self) -> u64 {
        self.map_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn set_map_epoch(&self, epoch: u64) {
        self.map_epoch
            .store(epoch, std::sync::atomic::Ordering::Release);
    }

    pub fn access_digest(&self) -> u64 {
        self.access_digest
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The roles and grants this proxy holds changed (read from the nodes).
    pub(crate) fn set_access_digest(&self, digest: u64) {
        let previous = self
            .access_digest
            .swap(digest, std::sync::atomic::Ordering::AcqRel);
        if previous != digest {
            self.map_changed.notify_one();
        }
    }

    /// Replaces every policy at once (a newer map from another proxy).
    pub(crate) fn replace_policies(&self, policies: Vec<TablePolicy>) {
        if let Ok(mut current) = self.policies.write() {
            *current = policies.into_iter().map(|p| (p.table.clone(), p)).collect();
        }
        self.forget_routes();
    }

    /// Whether node `copy`'s copy of a shard whose primary is node `primary` holds rows: the
    /// primary's does; a secondary's when both replicate.
    pub fn copy_has_rows(&self, copy: usize, primary: usize) -> bool {
        copy == primary || (self.nodes[copy].replicates() && self.nodes[primary].replicates())
    }

    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.info.id == id)
    }

    /// Whether `table` has a policy of its own (set in the config or by SQL).
    pub fn has_policy(&self, table: &str) -> bool {
        self.policies
            .read()
            .map(|p| p.contains_key(table))
            .unwrap_or(false)
    }

    pub fn policies(&self) -> BTreeMap<String, TablePolicy> {
        self.policies
            .read()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Installs or replaces a policy; routes and placements computed under the old one go.
    pub fn set_policy(&self, policy: TablePolicy) {
        if let Ok(mut policies) = self.policies.write() {
            policies.insert(policy.table.clone(), policy);
        }
        self.forget_routes();
        self.map_changed.notify_one();
    }

    pub fn remove_policy(&self, table: &str) {
        if let Ok(mut policies) = self.policies.write() {
            policies.remove(table);
        }
        self.forget_routes();
        self.map_changed.notify_one();
    }

    /// The promotions in force.
    pub fn promotions(&self) -> Vec<Promotion> {
        self.promotions
            .read()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// Takes in promotions (of a map, or a new one): per shard the highest epoch wins.
    /// Returns whether anything changed; placements are computed again then.
    pub(crate) fn merge_promotions(&self, incoming: &[Promotion]) -> bool {
        let changed = self
            .promotions
            .write()
            .map(|mut known| merge_promotions(&mut known, incoming))
            .unwrap_or(false);
        if changed {
            self.forget_routes();
            self.map_changed.notify_one();
        }
        changed
    }

    fn forget_routes(&self) {
        self.placements.clear();
        self.routes.clear();
        self.named_inserts.clear();
        self.sequences.forget_shapes();
    }

    /// The route of a statement, computed once per text.
    pub fn route(&self, sql: &Arc<str>) -> Arc<Result<Route, RouterError>> {
        if let Some(route) = self.routes.get(sql) {
            return route.clone();
        }
        let computed = Arc::new(route(sql, self));
        if self.routes.len() > 10_000 {
            self.routes.clear();
        }
        self.routes.insert(sql.clone(), computed.clone());
        computed
    }

    /// Where the shards of `table` live.
    pub fn placement(&self, table: &str) -> Result<Arc<TablePlacement>, ProxyError> {
        if let Some(placement) = self.placements.get(table) {
            return Ok(placement.clone());
        }
        let policy = self.policy(table);
        let infos: Vec<NodeInfo> = self.nodes.iter().map(|n| n.info.clone()).collect();
        let mut placement =
            place(&policy, &infos).map_err(|e| sql_error("22023", e.to_string()))?;
        placement.policy.table = table.to_owned();
        if let Ok(promotions) = self.promotions.read() {
            placement.promote(&promotions);
        }
        let placement = Arc::new(placement);
        self.placements.insert(table.to_owned(), placement.clone());
        Ok(placement)
    }

    /// Checks that a policy can be placed on this cluster.
    pub fn check_policy(&self, policy: &TablePolicy) -> Result<(), ProxyError> {
        let infos: Vec<NodeInfo> = self.nodes.iter().map(|n| n.info.clone()).collect();
        place(policy, &infos)
            .map(|_| ())
            .map_err(|e| sql_error("22023", e.to_string()))
    }

    /// Checks that every policy can be placed on this cluster.
    pub fn check(&self) -> Result<(), mycelium_router::PolicyError> {
        let infos: Vec<NodeInfo> = self.nodes.iter().map(|n| n.info.clone()).collect();
        for policy in self.policies().values() {
            place(policy, &infos)?;
        }
        Ok(())
    }

    pub fn defaults(&self) -> &PolicyDefaults {
        &self.defaults
    }
}

/// A configured policy as the router's type, checked.
pub fn policy_from_config(
    config: &mycelium_config::PolicyConfig,
    defaults: &PolicyDefaults,
) -> Result<TablePolicy, mycelium_router::PolicyError> {
    let table = config.table.to_ascii_lowercase();
    let mut options: Vec<(String, String)> = Vec::new();
    if !config.shard_keys.is_empty() {
        options.push(("shard_keys".to_owned(), config.shard_keys.join(",")));
    }
    if let Some(shards) = config.shards {
        options.push(("shards".to_owned(), shards.to_string()));
    }
    if let Some(rf) = config.replication_factor {
        options.push(("replication_factor".to_owned(), rf.to_string()));
    }
    options.push((
        "validator_only".to_owned(),
        config.validator_only.to_string(),
    ));
    if let Some(copies) = config.min_validator_copies {
        options.push(("min_validator_copies".to_owned(), copies.to_string()));
    }
    if let Some(roles) = &config.read_roles {
        options.push(("read_roles".to_owned(), roles.join(",")));
    }
    if let Some(roles) = &config.write_roles {
        options.push(("write_roles".to_owned(), roles.join(",")));
    }
    options.push((
        "range_sharding".to_owned(),
        config.range_sharding.to_string(),
    ));
    if !config.ranges.is_empty() {
        let ranges: Vec<String> = config.ranges.iter().map(i64::to_string).collect();
        options.push(("ranges".to_owned(), ranges.join(",")));
    }
    mycelium_router::apply_options(TablePolicy::default_for(&table, defaults), &options)
}

impl PolicySource for Cluster {
    fn has_policy(&self, table: &str) -> bool {
        Cluster::has_policy(self, table)
    }

    fn policy(&self, table: &str) -> TablePolicy {
        if let Ok(policies) = self.policies.read()
            && let Some(policy) = policies.get(table)
        {
            return policy.clone();
        }
        TablePolicy::default_for(DEFAULT_GROUP, &self.defaults)
    }
}
