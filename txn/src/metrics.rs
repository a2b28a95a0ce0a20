//! Metrics of distributed transactions, in the process-wide registry.

use std::sync::LazyLock;

use prometheus::{
    HistogramVec, IntCounterVec, IntGauge, register_histogram_vec, register_int_counter_vec,
    register_int_gauge,
};

/// Registration only fails on a duplicate name, which would be a bug caught by any test.
macro_rules! metric {
    ($register:expr) => {
        LazyLock::new(|| $register.expect("metric registers once"))
    };
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// Committed transactions, by protocol (`1pc`, `2pc`).
pub static COMMITS: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_txn_commits_total",
    "Transactions committed by this coordinator, by protocol (1pc, 2pc)",
    &["protocol"]
));

/// Aborted transactions, by protocol and reason.
pub static ABORTS: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_txn_aborts_total",
    "Transactions that failed to commit, by protocol and reason",
    &["protocol", "reason"]
));

/// Time from the first prepare to the last vote.
pub static PREPARE_SECONDS: LazyLock<HistogramVec> = metric!(register_histogram_vec!(
    "mycelium_txn_prepare_duration_seconds",
    "Time to collect every participant's vote in two-phase commit",
    &["protocol"],
    LATENCY_BUCKETS.to_vec()
));

/// Time of the whole commit, by protocol.
pub static COMMIT_SECONDS: LazyLock<HistogramVec> = metric!(register_histogram_vec!(
    "mycelium_txn_commit_duration_seconds",
    "Time from COMMIT to the outcome, by protocol",
    &["protocol"],
    LATENCY_BUCKETS.to_vec()
));

/// Transactions whose outcome the coordinator could not learn (the decider was lost).
pub static UNKNOWN_OUTCOMES: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_txn_unknown_outcomes_total",
    "Commits whose decision was sent but not confirmed (the client got 08007)",
    &["protocol"]
));

/// Prepared transactions on this node past the recovery timeout, at the last check.
pub static IN_DOUBT: LazyLock<IntGauge> = metric!(register_int_gauge!(
    "mycelium_txn_in_doubt",
    "Prepared transactions on this node older than the recovery timeout, at the last check"
));

/// In-doubt transactions a node resolved itself, by outcome.
pub static RECOVERED: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_txn_recovered_total",
    "Prepared transactions a node resolved from the decider's record, by outcome",
    &["outcome"]
));

/// Transaction records deleted, by how: `forget` (the coordinator saw every participant
/// finish; counted by the proxy) or `sweep` (a node's record sweep).
pub static RECORDS_DELETED: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_txn_records_deleted_total",
    "Transaction records deleted from deciders, by how (forget, sweep)",
    &["how"]
));
