//! Replication metrics of a node process, in the process-wide registry. Every series carries
//! the node's id: `mycelium up` runs several nodes in one process.

use std::sync::LazyLock;

use prometheus::{
    GaugeVec, IntCounterVec, IntGaugeVec, register_gauge_vec, register_int_counter_vec,
    register_int_gauge_vec,
};

/// Registration only fails on a duplicate name, which would be a bug caught by any test.
macro_rules! metric {
    ($register:expr) => {
        LazyLock::new(|| $register.expect("metric registers once"))
    };
}

pub static APPLIED_SEQUENCE: LazyLock<IntGaugeVec> = metric!(register_int_gauge_vec!(
    "mycelium_replication_applied_sequence",
    "Last sequence of each origin's log of a shard that this node holds",
    &["node", "shard", "origin"]
));

pub static LAG_ENTRIES: LazyLock<IntGaugeVec> = metric!(register_int_gauge_vec!(
    "mycelium_replication_lag_entries",
    "Entries of a shard a replica has not applied (on a primary: per secondary; on a \
     secondary: behind its primary)",
    &["node", "shard", "peer"]
));

pub static LAG_SECONDS: LazyLock<GaugeVec> = metric!(register_gauge_vec!(
    "mycelium_replication_lag_seconds",
    "Age of the oldest commit of a shard a replica has not applied",
    &["node", "shard", "peer"]
));

pub static ENTRIES_SHIPPED: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_replication_entries_shipped_total",
    "WAL entries a primary sent to its secondaries",
    &["node"]
));

pub static ENTRIES_APPLIED: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_replication_entries_applied_total",
    "WAL entries a secondary applied (duplicates not counted)",
    &["node"]
));

pub static CONFLICTS: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_replication_conflicts_total",
    "Concurrent writes of one row detected and resolved while applying entries",
    &["node"]
));

pub static SNAPSHOTS: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_replication_snapshots_total",
    "Shard snapshots sent to secondaries or received from primaries",
    &["node", "direction"]
));

pub static WAL_ENTRIES: LazyLock<IntGaugeVec> = metric!(register_int_gauge_vec!(
    "mycelium_wal_entries",
    "WAL entries a shard's log holds on this node",
    &["node", "shard"]
));

pub static WAL_BYTES: LazyLock<IntGaugeVec> = metric!(register_int_gauge_vec!(
    "mycelium_wal_bytes",
    "Encoded bytes of the WAL entries a shard's log holds on this node",
    &["node", "shard"]
));

/// Makes every counter family appear (at zero) as soon as replication runs on a node.
pub fn touch(node: &str) {
    for counter in [&ENTRIES_SHIPPED, &ENTRIES_APPLIED, &CONFLICTS] {
        counter.with_label_values(&[node]);
    }
    for direction in ["sent", "received"] {
        SNAPSHOTS.with_label_values(&[node, direction]);
    }
}
