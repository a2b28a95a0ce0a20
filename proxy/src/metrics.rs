//! The proxy's Prometheus metrics, registered in the process-wide default registry that the
//! binary's `/metrics` endpoint serves.

use std::sync::LazyLock;

use prometheus::{
    HistogramVec, IntCounter, IntCounterVec, IntGauge, register_histogram_vec,
    register_int_counter, register_int_counter_vec, register_int_gauge,
};

/// Registration only fails on a duplicate name, which would be a bug caught by any test.
macro_rules! metric {
    ($register:expr) => {
        LazyLock::new(|| $register.expect("metric registers once"))
    };
}

pub static CONNECTIONS: LazyLock<IntGauge> = metric!(register_int_gauge!(
    "mycelium_client_connections",
    "Client sessions open now"
));

pub static CONNECTIONS_TOTAL: LazyLock<IntCounter> = metric!(register_int_counter!(
    "mycelium_client_connections_total",
    "Client sessions started (authenticated)"
));

pub static CONNECTIONS_REFUSED: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_client_connections_refused_total",
    "Client connections refused, by reason",
    &["reason"]
));

pub static QUERIES: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_queries_total",
    "Statements run, by kind",
    &["kind"]
));

pub static QUERY_DURATION: LazyLock<HistogramVec> = metric!(register_histogram_vec!(
    "mycelium_query_duration_seconds",
    "Time from receiving a statement to its last result, by kind",
    &["kind"],
    vec![
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        10.0
    ]
));

pub static ERRORS: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_errors_total",
    "Errors reported to clients, by SQLSTATE",
    &["sqlstate"]
));

pub static PLAN_CACHE: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_plan_cache_lookups_total",
    "Plan cache lookups, by result (hit or miss)",
    &["result"]
));

pub static SEQUENCE_VALUES: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_sequence_values_total",
    "Values the proxy gave serial and identity columns of sharded tables, by where they came \
     from (block: this proxy's block of a counter; transaction: drawn inside the client's \
     transaction)",
    &["source"]
));

pub static SEQUENCE_RESERVATIONS: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_sequence_reservations_total",
    "Moves of a sequence counter on its home node, by kind (advance: values taken; restamp: \
     moved past the table's largest value first, for a new counter or a new home)",
    &["kind"]
));
