//! The cluster map as a node reads it: which shards of which tables it holds, in which
//! role, and where the other copies are. Computed with the router's placement, the same pure
//! function every proxy uses, so a node and the proxies always agree on where a row lives.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mycelium_protocol::{ClusterMap, DbError, HeldShard};
use mycelium_router::{
    NodeInfo, NodeType, PolicyDefaults, PolicyError, Promotion, TablePlacement, TablePolicy,
    apply_options,
};
use tokio::sync::watch;

/// A cluster map, checked and ready to answer placement questions.
pub struct Topology {
    map: Arc<ClusterMap>,
    nodes: Vec<NodeInfo>,
    defaults: PolicyDefaults,
    policies: HashMap<String, TablePolicy>,
    promotions: Vec<Promotion>,
    placements: Mutex<HashMap<String, Arc<TablePlacement>>>,
}

impl Topology {
    /// Reads the map's policies; a policy the router refuses is an error naming it.
    pub fn new(map: ClusterMap) -> Result<Topology, PolicyError> {
        let defaults = PolicyDefaults {
            replication_factor: map.default_replication_factor,
            min_validator_copies: map.min_validator_copies as usize,
        };
        let nodes = map
            .nodes
            .iter()
            .map(|n| NodeInfo {
                id: n.id.clone(),
                node_type: if n.node_type == "miner" {
                    NodeType::Miner
                } else {
                    NodeType::Validator
                },
            })
            .collect();
        let policies = map
            .policies
            .iter()
            .map(|p| {
                let policy =
                    apply_options(TablePolicy::default_for(&p.table, &defaults), &p.options)?;
                Ok((p.table.clone(), policy))
            })
            .collect::<Result<HashMap<_, _>, PolicyError>>()?;
        let promotions = map
            .promotions
            .iter()
            .map(|p| Promotion {
                group: p.group.clone(),
                shard: p.shard,
                node: p.node.clone(),
                epoch: p.epoch,
            })
            .collect();
        Ok(Topology {
            map: Arc::new(map),
            nodes,
            defaults,
            policies,
            promotions,
            placements: Mutex::new(HashMap::new()),
        })
    }

    pub fn map(&self) -> &Arc<ClusterMap> {
        &self.map
    }

    pub fn epoch(&self) -> u64 {
        self.map.epoch
    }

    /// The policy `table` is placed by (its own, or the default group's).
    pub fn policy(&self, table: &str) -> Option<&TablePolicy> {
        self.policies.get(table)
    }

    /// Where the shards of `table` live, promotions applied.
    pub fn placement(&self, table: &str) -> Result<Arc<TablePlacement>, PolicyError> {
        if let Ok(cache) = self.placements.lock()
            && let Some(placement) = cache.get(table)
        {
            return Ok(placement.clone());
        }
        let mut placement =
            TablePlacement::of_table(table, self.policies.get(table), &self.defaults, &self.nodes)?;
        placement.promote(&self.promotions);
        let placement = Arc::new(placement);
        if let Ok(mut cache) = self.placements.lock() {
            cache.insert(table.to_owned(), placement.clone());
        }
        Ok(placement)
    }

    /// The shards the map places on `node`: those of every table with a policy, and the
    /// default group's (as table [`TablePlacement::DEFAULT_GROUP`]) for the tables without one.
    pub fn held_by(&self, node: &str) -> Vec<HeldShard> {
        let mut tables: Vec<&str> = self.policies.keys().map(String::as_str).collect();
        tables.sort_unstable();
        tables.push(TablePlacement::DEFAULT_GROUP);
        let mut held = Vec::new();
        for table in tables {
            let Ok(placement) = self.placement(table) else {
                continue;
            };
            for shard in &placement.shards {
                if shard.holds(node) {
                    held.push(HeldShard {
                        table: table.to_owned(),
                        shard: shard.shard,
                        primary: shard.primary() == node,
                    });
                }
            }
        }
        held
    }

    /// The primary epoch of shard `shard` of `table` (of the default group's one shard for
    /// a table without a policy): [`mycelium_router::FIRST_EPOCH`] until a promotion.
    pub fn primary_epoch(&self, table: &str, shard: u32) -> u64 {
        self.placement(table)
            .ok()
            .and_then(|p| p.shards.iter().find(|s| s.shard == shard).map(|s| s.epoch))
            .unwrap_or(mycelium_router::FIRST_EPOCH)
    }

    /// Where `node` serves the node protocol.
    pub fn addr(&self, node: &str) -> Option<&str> {
        self.map.node(node).map(|n| n.addr.as_str())
    }
}

/// The node's current map: kept in memory for readers, on disk so a restarted node knows its
/// shards before it serves anything.
pub struct MapState {
    current: watch::Sender<Option<Arc<Topology>>>,
    /// The epoch of the last map that changed placement (a change of the roles fingerprint
    /// alone leaves it): statements routed before it are refused.
    placement_epoch: std::sync::atomic::AtomicU64,
    file: Option<PathBuf>,
    /// Serializes installs so the file and memory change together.
    install: tokio::sync::Mutex<()>,
}

impl MapState {
    /// Loads the map stored in `file` (none when the file does not exist yet). A file that
    /// cannot be read or decoded is an error: the node must not guess its shards.
    pub fn load(file: Option<PathBuf>) -> Result<MapState, String> {
        let topology = match &file {
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => {
                    let map = ClusterMap::decode(&bytes)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    let topology =
                        Topology::new(map).map_err(|e| format!("{}: {e}", path.display()))?;
                    Some(Arc::new(topology))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            },
            None => None,
        };
        Ok(MapState {
            placement_epoch: std::sync::atomic::AtomicU64::new(
                topology.as_ref().map_or(0, |t| t.epoch()),
            ),
            current: watch::Sender::new(topology),
            file,
            install: tokio::sync::Mutex::new(()),
        })
    }

    pub fn current(&self) -> Option<Arc<Topology>> {
        self.current.borrow().clone()
    }

    pub fn epoch(&self) -> u64 {
        self.current.borrow().as_ref().map_or(0, |t| t.epoch())
    }

    /// The epoch of the last map that moved anything (see [`MapState`]).
    pub fn placement_epoch(&self) -> u64 {
        self.placement_epoch
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Follows map changes (replication re-plans its shards on each).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Topology>>> {
        self.current.subscribe()
    }

    /// Takes `offer` when it is newer than the current map; returns the map held afterwards.
    pub async fn exchange(&self, offer: Option<ClusterMap>) -> Result<Option<ClusterMap>, DbError> {
        let _installing = self.install.lock().await;
        let current = self.current();
        if let Some(offer) = offer
            && offer.epoch > current.as_ref().map_or(0, |t| t.epoch())
        {
            let topology = Topology::new(offer.clone())
                .map_err(|e| DbError::new("22023", format!("cluster map refused: {e}")))?;
            if let Some(path) = &self.file {
                write_durably(path, &offer.encode()).map_err(|e| {
                    DbError::new(
                        "58030",
                        format!("cannot store the cluster map in {}: {e}", path.display()),
                    )
                })?;
            }
            let moved = current
                .as_ref()
                .is_none_or(|t| !t.map().same_placement(&offer));
            if moved {
                self.placement_epoch
                    .store(offer.epoch, std::sync::atomic::Ordering::Release);
            }
            tracing::info!(epoch = offer.epoch, moved, "cluster map installed");
            self.current.send_replace(Some(Arc::new(topology)));
            return Ok(Some(offer));
        }
        Ok(current.map(|t| (**t.map()).clone()))
    }
}

/// Writes a temporary file, syncs it and renames it over `path`, then syncs the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("map.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
