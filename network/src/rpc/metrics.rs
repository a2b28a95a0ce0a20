//! Metrics of the node protocol, on both sides, in the process-wide registry. A proxy that
//! reaches a node in its own process (`mycelium up`) counts its requests here too, so a node's
//! metrics say the same whichever way its proxies reach it.

use std::sync::LazyLock;
use std::time::Instant;

use mycelium_protocol::DbError;

use prometheus::{HistogramVec, IntCounterVec, register_histogram_vec, register_int_counter_vec};

/// Registration only fails on a duplicate name, which would be a bug caught by any test.
macro_rules! metric {
    ($register:expr) => {
        LazyLock::new(|| $register.expect("metric registers once"))
    };
}

/// Requests a node served, by kind (`describe`, `execute`, `copy_in`).
static NODE_REQUESTS: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_node_requests_total",
    "Node protocol requests served, by kind",
    &["kind"]
));

/// Requests that ended in an error, by SQLSTATE.
static NODE_ERRORS: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_node_errors_total",
    "Node protocol requests that failed, by SQLSTATE",
    &["sqlstate"]
));

static NODE_REQUEST_DURATION: LazyLock<HistogramVec> = metric!(register_histogram_vec!(
    "mycelium_node_request_duration_seconds",
    "Time a node spent on a request, until its last reply was queued",
    &["kind"],
    vec![
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0
    ]
));

/// Rows sent by nodes to proxies.
static NODE_ROWS: LazyLock<IntCounterVec> = metric!(register_int_counter_vec!(
    "mycelium_node_rows_total",
    "Result rows sent to proxies",
    &["node"]
));

/// A request of `kind` (`describe`, `execute`, ...) a node served, begun at `started` and
/// over once its last reply was queued.
pub fn request_served(kind: &str, started: Instant) {
    NODE_REQUESTS.with_label_values(&[kind]).inc();
    NODE_REQUEST_DURATION
        .with_label_values(&[kind])
        .observe(started.elapsed().as_secs_f64());
}

/// A request that ended in `error`.
pub fn request_failed(error: &DbError) {
    NODE_ERRORS.with_label_values(&[error.code.as_str()]).inc();
}

/// `rows` result rows node `node` sent to a proxy.
pub fn rows_sent(node: &str, rows: usize) {
    NODE_ROWS.with_label_values(&[node]).inc_by(rows as u64);
}
