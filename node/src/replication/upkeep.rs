//! Every heartbeat interval: the counters, the status, the metrics, and WAL truncation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mycelium_replication::{NodeId, ShardLog, VersionVector};

use super::status::{PeerState, PeerStatus, ReplicationStatus, ShardRole, ShardStatus};
use super::{PrimaryShard, Replication, SecondaryShard, lock, metrics, secondaries_of};

fn vector(vv: &VersionVector) -> Vec<(String, u64)> {
    vv.iter().map(|(n, s)| (n.as_str().to_owned(), s)).collect()
}

/// The highest own sequence old enough to drop by age: every commit at or below it is older
/// than `age`. Commits from before this process started have no recorded time and count as
/// old.
fn old_enough(times: &std::collections::VecDeque<(u64, Instant)>, age: Duration) -> u64 {
    let now = Instant::now();
    let mut through = times
        .front()
        .map_or(u64::MAX, |(seq, _)| seq.saturating_sub(1));
    for (seq, at) in times {
        if now.duration_since(*at) < age {
            break;
        }
        through = *seq;
    }
    through
}

impl Replication {
    pub(super) async fn upkeep(&self) {
        self.count_applied();
        let status = self.status().await;
        publish(&status);
        self.truncate().await;
    }

    /// Adds what each secondary applied since the last call to the totals and counters.
    fn count_applied(&self) {
        let node = self.shared.node.as_str();
        let secondaries: Vec<Arc<SecondaryShard>> =
            lock(&self.shared.secondaries).values().cloned().collect();
        for s in secondaries {
            let now = s.secondary.status();
            let mut before = lock(&s.reported);
            let applied = now.entries_applied.saturating_sub(before.entries_applied);
            let conflicts = now.conflicts.saturating_sub(before.conflicts);
            let snapshots = now.snapshots_loaded.saturating_sub(before.snapshots_loaded);
            *before = now;
            let totals = &self.shared.totals;
            totals.applied.fetch_add(applied, Ordering::Relaxed);
            totals.conflicts.fetch_add(conflicts, Ordering::Relaxed);
            totals
                .snapshots_received
                .fetch_add(snapshots, Ordering::Relaxed);
            metrics::ENTRIES_APPLIED
                .with_label_values(&[node])
                .inc_by(applied);
            metrics::CONFLICTS
                .with_label_values(&[node])
                .inc_by(conflicts);
            metrics::SNAPSHOTS
                .with_label_values(&[node, "received"])
                .inc_by(snapshots);
        }
    }

    /// Where every shard placed on this node stands (see [`ReplicationStatus`]).
    pub async fn status(&self) -> ReplicationStatus {
        let me = self.shared.node.clone();
        let topology = self.shared.map.borrow().clone();
        let sizes = self.store.wal_sizes().await;
        let primaries: Vec<Arc<PrimaryShard>> = self
            .shared
            .primaries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let secondaries: Vec<Arc<SecondaryShard>> =
            lock(&self.shared.secondaries).values().cloned().collect();
        let mut shards = Vec::new();
        for p in primaries {
            let shard = p.primary.shard().clone();
            let applied = p.log.applied().await.unwrap_or_default();
            let lags = p.primary.lag().await.unwrap_or_default();
            let served = lock(&p.served).clone();
            let mut peers: Vec<PeerStatus> = topology
                .as_deref()
                .map(|t| secondaries_of(t, &shard))
                .unwrap_or_default()
                .into_iter()
                .map(|node| {
                    let lag = lags.iter().find(|l| l.peer.as_str() == node);
                    let lag_entries = lag.map_or_else(|| applied.get(&me), |l| l.entries);
                    let state = match served.get(&node) {
                        None => PeerState::Down,
                        Some(peer) if peer.snapshot.load(Ordering::Acquire) => PeerState::Snapshot,
                        Some(_) if lag_entries > 0 => PeerState::CatchingUp,
                        Some(_) => PeerState::Connected,
                    };
                    PeerStatus {
                        applied_sequence: lag.map_or(0, |l| l.acked.get(&me)),
                        lag_entries,
                        lag_seconds: lag.map_or(0.0, |l| l.seconds),
                        state,
                        node,
                    }
                })
                .collect();
            peers.sort_by(|a, b| a.node.cmp(&b.node));
            let (wal_entries, wal_bytes) = sizes.get(&shard).copied().unwrap_or_default();
            shards.push(ShardStatus {
                table: shard.table.clone(),
                shard: shard.shard,
                role: ShardRole::Primary,
                epoch: p.primary.epoch(),
                sequence: applied.get(&me),
                applied: vector(&applied),
                peers,
                wal_entries,
                wal_bytes,
                entries_shipped: p.shipped.entries.load(Ordering::Relaxed),
                entries_applied: 0,
                conflicts: 0,
                snapshots_sent: p.shipped.snapshots.load(Ordering::Relaxed),
                snapshots_received: 0,
            });
        }
        for s in secondaries {
            let shard = s.log.shard().clone();
            let status = s.secondary.status();
            let applied = s.log.applied().await.unwrap_or(status.applied.clone());
            let primary = NodeId::new(&s.primary);
            let state = if !s.connected.load(Ordering::Acquire) {
                PeerState::Down
            } else if s.snapshot.load(Ordering::Acquire) {
                PeerState::Snapshot
            } else if status.lag_entries > 0 {
                PeerState::CatchingUp
            } else {
                PeerState::Connected
            };
            let (wal_entries, wal_bytes) = sizes.get(&shard).copied().unwrap_or_default();
            shards.push(ShardStatus {
                table: shard.table.clone(),
                shard: shard.shard,
                role: ShardRole::Secondary,
                epoch: s.secondary.epoch(),
                sequence: applied.get(&primary),
                applied: vector(&applied),
                peers: vec![PeerStatus {
                    node: s.primary.clone(),
                    applied_sequence: status.primary_applied.get(&primary),
                    lag_entries: status.lag_entries,
                    lag_seconds: status.lag_seconds,
                    state,
                }],
                wal_entries,
                wal_bytes,
                entries_shipped: 0,
                entries_applied: status.entries_applied,
                conflicts: status.conflicts,
                snapshots_sent: 0,
                snapshots_received: status.snapshots_loaded,
            });
        }
        shards.sort_by(|a, b| (&a.table, a.shard).cmp(&(&b.table, b.shard)));
        let totals = &self.shared.totals;
        let shipped_now: u64 = shards.iter().map(|s| s.entries_shipped).sum();
        let sent_now: u64 = shards.iter().map(|s| s.snapshots_sent).sum();
        ReplicationStatus {
            node: me.as_str().to_owned(),
            enabled: true,
            map_epoch: topology.as_ref().map_or(0, |t| t.epoch()),
            shards,
            entries_shipped: totals.shipped.load(Ordering::Relaxed) + shipped_now,
            entries_applied: totals.applied.load(Ordering::Relaxed),
            conflicts: totals.conflicts.load(Ordering::Relaxed),
            snapshots_sent: totals.snapshots_sent.load(Ordering::Relaxed) + sent_now,
            snapshots_received: totals.snapshots_received.load(Ordering::Relaxed),
        }
    }

    /// Drops log entries the retention settings no longer keep, on every shard held here.
    async fn truncate(&self) {
        let config = &self.shared.config;
        let me = &self.shared.node;
        let primaries: Vec<Arc<PrimaryShard>> = self
            .shared
            .primaries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for p in primaries {
            let Ok(applied) = p.log.applied().await else {
                continue;
            };
            let acked = p.primary.acked_by_all();
            let by_age = (config.wal_retain_seconds > 0).then(|| {
                old_enough(
                    &lock(&p.commit_times),
                    Duration::from_secs(config.wal_retain_seconds),
                )
            });
            let through = retained(&applied, &acked, me, by_age, config);
            truncate_log(p.log.as_ref(), &p.truncated, through).await;
        }
        let secondaries: Vec<Arc<SecondaryShard>> =
            lock(&self.shared.secondaries).values().cloned().collect();
        for s in secondaries {
            let Ok(applied) = s.log.applied().await else {
                continue;
            };
            // Nobody reads a secondary's log but a primary asking for entries only this node
            // holds (its own writes): those stay until the primary has them.
            let mut acked = applied.clone();
            acked.set(me.clone(), s.secondary.status().primary_applied.get(me));
            let through = retained(&applied, &acked, me, None, config);
            truncate_log(s.log.as_ref(), &s.truncated, through).await;
        }
    }
}

/// How far each origin's entries may go: behind what every reader acknowledged by
/// `wal_retain_entries` (and, for this node's own entries, older than the retention age),
/// or behind the newest by `wal_max_entries` whatever was acknowledged.
fn retained(
    applied: &VersionVector,
    acked: &VersionVector,
    me: &NodeId,
    by_age: Option<u64>,
    config: &mycelium_config::ReplicationConfig,
) -> VersionVector {
    applied
        .iter()
        .filter_map(|(origin, newest)| {
            let mut through = acked
                .get(origin)
                .min(newest)
                .saturating_sub(config.wal_retain_entries);
            if origin == me
                && let Some(age) = by_age
            {
                through = through.min(age);
            }
            through = through.max(newest.saturating_sub(config.wal_max_entries));
            (through > 0).then(|| (origin.clone(), through))
        })
        .collect()
}

async fn truncate_log<L: ShardLog>(
    log: &L,
    done: &std::sync::Mutex<VersionVector>,
    through: VersionVector,
) {
    if lock(done).dominates(&through) {
        return;
    }
    match log.truncate(&through).await {
        Ok(()) => lock(done).merge(&through),
        Err(e) => tracing::warn!(error = %e, "cannot truncate a shard's WAL"),
    }
}

/// Sets the gauges from a status; series of shards no longer here are removed.
fn publish(status: &ReplicationStatus) {
    use std::sync::{LazyLock, Mutex};
    /// The label sets set last time, per node, to remove those that went away.
    static LAST: LazyLock<Mutex<BTreeMap<String, Vec<Series>>>> = LazyLock::new(Default::default);
    enum Series {
        Applied(String, String),
        Lag(String, String),
        Wal(String),
    }
    let node = status.node.as_str();
    let mut now = Vec::new();
    for s in &status.shards {
        let shard = format!("{}/{}", s.table, s.shard);
        for (origin, sequence) in &s.applied {
            metrics::APPLIED_SEQUENCE
                .with_label_values(&[node, &shard, origin])
                .set(i64::try_from(*sequence).unwrap_or(i64::MAX));
            now.push(Series::Applied(shard.clone(), origin.clone()));
        }
        for peer in &s.peers {
            metrics::LAG_ENTRIES
                .with_label_values(&[node, &shard, &peer.node])
                .set(i64::try_from(peer.lag_entries).unwrap_or(i64::MAX));
            metrics::LAG_SECONDS
                .with_label_values(&[node, &shard, &peer.node])
                .set(peer.lag_seconds);
            now.push(Series::Lag(shard.clone(), peer.node.clone()));
        }
        metrics::WAL_ENTRIES
            .with_label_values(&[node, &shard])
            .set(i64::try_from(s.wal_entries).unwrap_or(i64::MAX));
        metrics::WAL_BYTES
            .with_label_values(&[node, &shard])
            .set(i64::try_from(s.wal_bytes).unwrap_or(i64::MAX));
        now.push(Series::Wal(shard));
    }
    let mut last = lock(&LAST);
    let before = last.insert(node.to_owned(), Vec::new()).unwrap_or_default();
    let present = |series: &Series| {
        now.iter().any(|n| match (n, series) {
            (Series::Applied(a, b), Series::Applied(c, d))
            | (Series::Lag(a, b), Series::Lag(c, d)) => a == c && b == d,
            (Series::Wal(a), Series::Wal(b)) => a == b,
            _ => false,
        })
    };
    for gone in before.iter().filter(|s| !present(s)) {
        let _ = match gone {
            Series::Applied(shard, origin) => {
                metrics::APPLIED_SEQUENCE.remove_label_values(&[node, shard, origin])
            }
            Series::Lag(shard, peer) => metrics::LAG_ENTRIES
                .remove_label_values(&[node, shard, peer])
                .and(metrics::LAG_SECONDS.remove_label_values(&[node, shard, peer])),
            Series::Wal(shard) => metrics::WAL_ENTRIES
                .remove_label_values(&[node, shard])
                .and(metrics::WAL_BYTES.remove_label_values(&[node, shard])),
        };
    }
    last.insert(node.to_owned(), now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(pairs: &[(&str, u64)]) -> VersionVector {
        pairs.iter().map(|(n, s)| (NodeId::new(n), *s)).collect()
    }

    #[test]
    fn retention_keeps_unacknowledged_entries_up_to_the_cap() {
        let config = mycelium_config::ReplicationConfig {
            wal_retain_entries: 10,
            wal_max_entries: 100,
            ..Default::default()
        };
        let me = NodeId::new("n1");
        let check = |applied, acked, by_age, expected| {
            assert_eq!(
                retained(&vv(applied), &vv(acked), &me, by_age, &config),
                vv(expected)
            );
        };
        // Acknowledged through 50: 10 more are kept.
        check(&[("n1", 60)], &[("n1", 50)], None, &[("n1", 40)]);
        // Nothing acknowledged, under the cap: everything stays.
        check(&[("n1", 60)], &[], None, &[]);
        // Past the cap: the oldest go whatever was acknowledged.
        check(&[("n1", 250)], &[("n1", 5)], None, &[("n1", 150)]);
        // Young entries stay.
        check(&[("n1", 60)], &[("n1", 60)], Some(20), &[("n1", 20)]);
    }
}
