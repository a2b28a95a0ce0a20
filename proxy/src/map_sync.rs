//! Keeps the nodes' cluster map in step with the proxies' view of the cluster.
//!
//! A proxy's view (its nodes, the policy defaults, every table policy) becomes a
//! [`ClusterMap`]; the nodes keep the newest one they were offered. Each round asks every node
//! for its map and then:
//! - the newest map says what this proxy says → the proxy takes its epoch, and the nodes still
//!   behind get it;
//! - the newest map is newer than the last one this proxy agreed with → another proxy changed
//!   a policy: this proxy adopts the map's policies (how policy changes reach every proxy);
//! - otherwise this proxy changed something (or just started with a changed config): it offers
//!   its view with the next epoch.
//!
//! Each round also learns the backend of nodes that have not said yet (which copies replicate).
//!
//! The map also carries a fingerprint of the roles and grants stored on the nodes: a proxy that
//! adopts a map whose fingerprint is not its own reads them again, which is how a `CREATE
//! USER` or `GRANT` through one proxy reaches the others.
//!
//! Rounds run at start, whenever a policy changes here, and every [`SYNC_INTERVAL`]. Two
//! proxies changing policies within one round can both offer the same epoch; a node keeps the
//! first, the other proxy sees a newer map than it agreed with and adopts it, so its change
//! is dropped from the map until its next change (its stored policy survives on the nodes).

use std::sync::Arc;
use std::time::Duration;

use mycelium_protocol::{ClusterMap, MapNode, MapPolicy, MapPromotion};
use mycelium_router::{NodeType, Promotion, TablePolicy, apply_options, policy_to_options};
use tokio_util::sync::CancellationToken;

use crate::Proxy;
use crate::cluster::Cluster;

/// What a round agreed on.
pub(crate) struct MapRound {
    pub epoch: u64,
    /// The roles-and-grants fingerprint of the map: when it is not this proxy's, the proxy
    /// reads them again.
    pub access: u64,
    /// Nodes that could not be asked or refused the round's map.
    pub missed: Vec<String>,
}

/// How often a proxy compares its map with the nodes' when nothing changed here.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

impl Cluster {
    /// This proxy's view of the cluster, as a map without an epoch.
    pub fn map_content(&self) -> ClusterMap {
        ClusterMap {
            epoch: 0,
            nodes: self
                .nodes
                .iter()
                .map(|n| MapNode {
                    id: n.info.id.clone(),
                    node_type: match n.info.node_type {
                        NodeType::Validator => "validator",
                        NodeType::Miner => "miner",
                    }
                    .to_owned(),
                    addr: n.addr.clone(),
                })
                .collect(),
            default_replication_factor: self.defaults().replication_factor,
            min_validator_copies: self.defaults().min_validator_copies as u32,
            policies: self
                .policies()
                .into_values()
                .map(|p| MapPolicy {
                    options: policy_to_options(&p),
                    table: p.table,
                })
                .collect(),
            access: self.access_digest(),
            promotions: self
                .promotions()
                .into_iter()
                .map(|p| MapPromotion {
                    group: p.group,
                    shard: p.shard,
                    node: p.node,
                    epoch: p.epoch,
                })
                .collect(),
        }
    }

    /// One round of comparing maps with the nodes (see the module comment); nodes this
    /// proxy sees as down are skipped.
    pub(crate) async fn sync_map(&self) -> MapRound {
        self.map_round(false).await
    }

    /// A round that asks every node, also one that looks down, and names those that did not
    /// take the map: a policy change must be on every node before rows of its table commit.
    pub(crate) async fn sync_map_to_all(&self) -> MapRound {
        self.map_round(true).await
    }

    async fn map_round(&self, every_node: bool) -> MapRound {
        let _round = self.map_round.lock().await;
        let mut held = Vec::with_capacity(self.nodes.len());
        let mut missed = Vec::new();
        for node in self.nodes.iter().filter(|n| every_node || n.link.is_up()) {
            if node.backend.get().is_none()
                && let Ok(status) = node.link.status().await
            {
                let _ = node.backend.set(status.backend);
            }
            match node.link.exchange_map(None).await {
                Ok(map) => held.push((node, map)),
                Err(e) => {
                    tracing::debug!(node = %node.info.id, error = %e, "map: node not asked");
                    missed.push(node.info.id.clone());
                }
            }
        }
        let newest = held
            .iter()
            .filter_map(|(_, map)| map.as_ref())
            .max_by_key(|map| map.epoch)
            .cloned();
        // Promotions only move forward: whatever the newest map says of them, this proxy
        // takes in before comparing (a restarted proxy learns them here, before it routes).
        if let Some(newest) = &newest {
            self.merge_promotions(&promotions_of(newest));
        }
        let known = self.map_epoch();
        let mine = self.map_content();
        let target = match newest {
            Some(newest) if newest.same_content(&mine) => newest,
            Some(newest) if known != 0 && newest.epoch > known => match self.adopt(&newest) {
                Ok(()) => newest,
                Err(e) => {
                    tracing::warn!(epoch = newest.epoch, error = %e, "map: a newer map cannot be read; offering this proxy's");
                    ClusterMap {
                        epoch: newest.epoch + 1,
                        ..mine
                    }
                }
            },
            newest => ClusterMap {
                epoch: newest.map_or(0, |m| m.epoch).max(known) + 1,
                ..mine
            },
        };
        // Statements routed from now on carry the new epoch, which nodes still on the old
        // map accept (only older epochs are refused).
        self.set_map_epoch(target.epoch);
        for (node, map) in held {
            if map.as_ref().map(|m| m.epoch) == Some(target.epoch) {
                continue;
            }
            match node.link.exchange_map(Some(target.clone())).await {
                // Another proxy's round got there first; the next round settles it.
                Ok(Some(kept)) if kept.epoch != target.epoch => {
                    tracing::info!(node = %node.info.id, epoch = kept.epoch, "map: the node has a newer map");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(node = %node.info.id, error = %e, "map: the node refused the map");
                    missed.push(node.info.id.clone());
                }
            }
        }
        if target.epoch != known {
            tracing::info!(epoch = target.epoch, "cluster map epoch");
        }
        MapRound {
            epoch: target.epoch,
            access: target.access,
            missed,
        }
    }

    /// Takes the policies of another proxy's map.
    fn adopt(&self, map: &ClusterMap) -> Result<(), mycelium_router::PolicyError> {
        let policies = map
            .policies
            .iter()
            .map(|p| {
                apply_options(
                    TablePolicy::default_for(&p.table, self.defaults()),
                    &p.options,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        tracing::info!(
            epoch = map.epoch,
            "map: adopting the policies of a newer map"
        );
        self.replace_policies(policies);
        Ok(())
    }
}

/// The promotions a map carries, as the router's type.
fn promotions_of(map: &ClusterMap) -> Vec<Promotion> {
    map.promotions
        .iter()
        .map(|p| Promotion {
            group: p.group.clone(),
            shard: p.shard,
            node: p.node.clone(),
            epoch: p.epoch,
        })
        .collect()
}

/// Runs map rounds until `shutdown`: after each policy change here and every
/// [`SYNC_INTERVAL`].
pub async fn sync_map_forever(proxy: Arc<Proxy>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(SYNC_INTERVAL) => {}
            () = proxy.cluster.map_changed.notified() => {}
            () = shutdown.cancelled() => return,
        }
        proxy.sync_map().await;
    }
}
