//! The command line: config checking, and the conventions of what `/metrics` exposes.

use std::process::Command;

use crate::harness::Cluster;

#[test]
fn config_check_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[proxy]\nmax_connections = 0\n").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_mycelium"))
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("proxy.max_connections"),
        "{stderr}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[proxy]\nmax_connections = 10\n[cluster]\nnodes = 5\n",
    )
    .expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_mycelium"))
        .args(["config", "check"])
        .arg(&good)
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let node = dir.path().join("node.toml");
    std::fs::write(&node, "[node]\nid = \"n1\"\nnode_type = \"worker\"\nlisten = \"127.0.0.1:7001\"\ndata = \"x\"\ncerts = \"c\"\n")
        .expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_mycelium"))
        .args(["config", "check", "--kind", "node"])
        .arg(&node)
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("node.node_type"));
}

/// `--worker-threads` (or MYCELIUM_WORKER_THREADS) sizes the async runtime; 0 is refused.
#[tokio::test]
async fn worker_threads_size_the_runtime() {
    let default = Cluster::start();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        default.metric("mycelium_runtime_worker_threads"),
        cpus as f64
    );
    drop(default);
    let one = Cluster::start_with_env(&[("MYCELIUM_WORKER_THREADS", "1")]);
    let client = one.connect().await;
    let row = client.query_one("SELECT 41 + 1", &[]).await.expect("query");
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(one.metric("mycelium_runtime_worker_threads"), 1.0);
    let output = Command::new(env!("CARGO_BIN_EXE_mycelium"))
        .args(["--worker-threads", "0", "up"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--worker-threads"), "{stderr}");
}

/// promtool-style checks: names, types and units follow Prometheus conventions.
#[tokio::test]
async fn metrics_follow_prometheus_conventions() {
    let cluster = Cluster::start();
    let client = cluster.connect().await;
    client.simple_query("SELECT 1").await.expect("query");
    let text = cluster.metrics();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let mut types = std::collections::BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                panic!("malformed TYPE line: {line}");
            };
            types.insert(name.to_owned(), kind.to_owned());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            );
        } else if !line.is_empty() && !line.starts_with('#') {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            assert!(
                value.parse::<f64>().is_ok() || value == "+Inf",
                "bad value in {line}"
            );
            let name = series.split('{').next().unwrap_or_default();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "sample without TYPE: {line}");
        }
    }
    let ours: Vec<(&String, &String)> = types
        .iter()
        .filter(|(n, _)| n.starts_with("mycelium_"))
        .collect();
    // Labelled families appear once they have a sample; these all have one after a query.
    for expected in [
        "mycelium_client_connections",
        "mycelium_queries_total",
        "mycelium_query_duration_seconds",
        "mycelium_node_requests_total",
        "mycelium_node_request_duration_seconds",
    ] {
        assert!(types.contains_key(expected), "{expected} missing: {ours:?}");
    }
    for (name, kind) in ours {
        assert!(helped.contains(name), "{name} has no HELP");
        match kind.as_str() {
            "counter" => assert!(
                name.ends_with("_total"),
                "counter {name} must end in _total"
            ),
            "histogram" => assert!(
                name.ends_with("_seconds") || name.ends_with("_bytes"),
                "histogram {name} must be in base units"
            ),
            "gauge" => assert!(
                !name.ends_with("_total"),
                "gauge {name} must not end in _total"
            ),
            other => panic!("unexpected metric type {other} for {name}"),
        }
    }
}
