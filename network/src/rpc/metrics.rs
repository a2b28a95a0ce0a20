//! Metrics of the node protocol, on both sides, in the process-wide registry.

use std::sync::LazyLock;

use prometheus::{HistogramVec, IntCounterVec, register_histogram_vec, register_int_counter_vec};

/// Registration only fails on a duplicate name, which would be a bug caught by any test.
macro_rules! metric {
    ($register:expr) => {
        LazyLock::new(|| $register.expect("metric registers once"))
    };
}

/// Requests a node served, by kind (`describe`, `execute`, `copy_in`).
pub static NODE_REQUESTS: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_node_requests_total",
    "Node protocol requests served, by kind",
    &["kind"]
));

/// Requests that ended in an error, by SQLSTATE.
pub static NODE_ERRORS: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_node_errors_total",
    "Node protocol requests that failed, by SQLSTATE",
    &["sqlstate"]
));

pub static NODE_REQUEST_DURATION: LazyLock<HistogramVec> = metric!(register_histogram_vec!(
    "mycelium_node_request_duration_seconds",
    "Time a node spent on a request, until its last reply was queued",
    &["kind"],
    vec![
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0
    ]
));

/// Rows sent by nodes to proxies.
pub static NODE_ROWS: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_node_rows_total",
    "Result rows sent to proxies",
    &["node"]
));
