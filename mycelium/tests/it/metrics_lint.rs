//! A lint of `/metrics` from a running `mycelium up`, after the rules promtool and the
//! Prometheus naming guide give, and counters checked to move by exactly what a known workload
//! did.

use std::collections::{BTreeMap, BTreeSet};

use crate::harness::{Cluster, sqlstate};

/// One parsed exposition: families with their type and help, and every sample.
#[derive(Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    helps: BTreeMap<String, String>,
    /// `name{labels}` → value, labels sorted so lookups need not know the order.
    samples: BTreeMap<String, f64>,
}

/// Parses the Prometheus text format (0.0.4), checking its syntax as it goes.
fn parse(body: &str) -> Exposition {
    let mut exposition = Exposition::default();
    for line in body.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(!help.trim().is_empty(), "empty HELP: {line}");
            assert!(
                exposition
                    .helps
                    .insert(name.to_owned(), help.to_owned())
                    .is_none(),
                "HELP twice for {name}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line has a type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "unknown type: {line}"
            );
            assert!(
                exposition
                    .types
                    .insert(name.to_owned(), kind.to_owned())
                    .is_none(),
                "TYPE twice for {name}"
            );
        } else if line.starts_with('#') {
            continue;
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
            };
            let key = normalize(series);
            assert!(
                exposition.samples.insert(key, value).is_none(),
                "duplicate series: {line}"
            );
        }
    }
    exposition
}

/// `name{b="1",a="2"}` → `name{a="2",b="1"}`, checking label names on the way.
fn normalize(series: &str) -> String {
    let Some((name, labels)) = series.split_once('{') else {
        return series.to_owned();
    };
    let labels = labels.strip_suffix('}').expect("labels close");
    let mut pairs: Vec<&str> = split_labels(labels);
    for pair in &pairs {
        let (label, value) = pair.split_once('=').expect("label=value");
        assert!(
            label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !label.starts_with("__"),
            "bad label name {label} in {series}"
        );
        assert!(
            value.starts_with('"') && value.ends_with('"'),
            "unquoted label value in {series}"
        );
    }
    pairs.sort_unstable();
    format!("{name}{{{}}}", pairs.join(","))
}

/// Splits `a="x",b="y,z"` at the commas outside quotes.
fn split_labels(labels: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&labels[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        out.push(&labels[start..]);
    }
    out
}

impl Exposition {
    /// The family a sample belongs to (`x_bucket` of histogram `x` is `x`).
    fn family(&self, sample: &str) -> String {
        let name = sample.split('{').next().unwrap_or_default();
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(family) = name.strip_suffix(suffix)
                && self.types.get(family).is_some_and(|t| t == "histogram")
            {
                return family.to_owned();
            }
        }
        name.to_owned()
    }

    /// A sample's value; 0 when the series does not exist yet.
    fn value(&self, series: &str) -> f64 {
        self.samples.get(&normalize(series)).copied().unwrap_or(0.0)
    }
}

fn scrape(cluster: &Cluster) -> Exposition {
    let response = cluster.metrics();
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head and body");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    parse(body)
}

fn lint(exposition: &Exposition) {
    let mut problems = Vec::new();
    for (name, kind) in &exposition.types {
        let ours = name.starts_with("mycelium_");
        if !ours && !name.starts_with("process_") {
            problems.push(format!("{name}: not mycelium_* (nor a process metric)"));
        }
        if ours
            && !name["mycelium_".len()..]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            problems.push(format!("{name}: must match mycelium_[a-z0-9_]+"));
        }
        if !exposition.helps.contains_key(name) {
            problems.push(format!("{name}: no HELP"));
        }
        let timing = ["duration", "latency", "elapsed"]
            .iter()
            .any(|w| name.contains(w));
        match kind.as_str() {
            "counter" if !name.ends_with("_total") => {
                problems.push(format!("{name}: a counter must end in _total"));
            }
            "gauge" | "histogram" if name.ends_with("_total") => {
                problems.push(format!("{name}: only counters end in _total"));
            }
            "histogram" if !(name.ends_with("_seconds") || name.ends_with("_bytes")) => {
                problems.push(format!("{name}: a histogram must be in base units"));
            }
            "summary" | "untyped" if ours => {
                problems.push(format!("{name}: use a histogram, counter or gauge"));
            }
            _ => {}
        }
        if timing && !(kind == "histogram" && name.ends_with("_seconds")) {
            problems.push(format!("{name}: durations are _seconds histograms"));
        }
        if [
            "_ms",
            "_milliseconds",
            "_microseconds",
            "_minutes",
            "_kilobytes",
            "_megabytes",
        ]
        .iter()
        .any(|unit| name.contains(unit))
        {
            problems.push(format!("{name}: use base units (seconds, bytes)"));
        }
    }
    for (series, value) in &exposition.samples {
        let family = exposition.family(series);
        match exposition.types.get(&family).map(String::as_str) {
            None => problems.push(format!("{series}: sample without TYPE")),
            Some("counter") if *value < 0.0 => {
                problems.push(format!("{series}: negative counter"));
            }
            _ => {}
        }
    }
    // Histograms: cumulative buckets ending in +Inf, which equals _count.
    for (name, _) in exposition.types.iter().filter(|(_, k)| *k == "histogram") {
        let mut by_labels: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (series, value) in &exposition.samples {
            let Some(labels) = series.strip_prefix(&format!("{name}_bucket{{")) else {
                continue;
            };
            let mut le = None;
            let rest: Vec<&str> = split_labels(labels.trim_end_matches('}'))
                .into_iter()
                .filter(|pair| match pair.strip_prefix("le=") {
                    Some(bound) => {
                        le = Some(match bound.trim_matches('"') {
                            "+Inf" => f64::INFINITY,
                            b => b.parse().expect("numeric le"),
                        });
                        false
                    }
                    None => true,
                })
                .collect();
            by_labels
                .entry(rest.join(","))
                .or_default()
                .push((le.expect("bucket has le"), *value));
        }
        for (labels, mut buckets) in by_labels {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                problems.push(format!("{name}{{{labels}}}: buckets not cumulative"));
            }
            let inf = buckets.last().filter(|b| b.0.is_infinite()).map(|b| b.1);
            let count = exposition.value(&format!("{name}_count{{{labels}}}"));
            if inf != Some(count) {
                problems.push(format!(
                    "{name}{{{labels}}}: +Inf bucket {inf:?} differs from _count {count}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn metrics_pass_the_lint_and_count_a_known_workload() {
    let cluster = Cluster::start();
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE m (id int PRIMARY KEY, v text);
             CREATE USER limited PASSWORD 'limited-pw';",
        )
        .await
        .expect("set up");
    let before = scrape(&cluster);
    lint(&before);

    const SELECTS: usize = 7;
    for _ in 0..SELECTS {
        client.simple_query("SELECT 1").await.expect("select");
    }
    const INSERTS: i32 = 3;
    for id in 0..INSERTS {
        client
            .execute("INSERT INTO m (id, v) VALUES ($1, 'x')", &[&id])
            .await
            .expect("insert");
    }
    let error = client
        .simple_query("SELECT * FROM no_such_table")
        .await
        .expect_err("42P01");
    assert_eq!(sqlstate(&error), "42P01");
    let limited = cluster
        .connect_as("limited", "limited-pw")
        .await
        .expect("login");
    let error = limited
        .simple_query("SELECT * FROM m")
        .await
        .expect_err("42501");
    assert_eq!(sqlstate(&error), "42501");
    let refused = cluster.connect_as("limited", "wrong").await.err();
    assert_eq!(refused.as_ref().map(sqlstate).as_deref(), Some("28P01"));

    let after = scrape(&cluster);
    lint(&after);
    let delta = |series: &str| after.value(series) - before.value(series);
    // The failed SELECT and the refused one are statements of kind select too.
    let selects = f64::from(u32::try_from(SELECTS).expect("small")) + 2.0;
    assert_eq!(delta("mycelium_queries_total{kind=\"select\"}"), selects);
    assert_eq!(
        delta("mycelium_query_duration_seconds_count{kind=\"select\"}"),
        selects
    );
    assert_eq!(
        delta("mycelium_queries_total{kind=\"insert\"}"),
        f64::from(INSERTS)
    );
    assert_eq!(delta("mycelium_errors_total{sqlstate=\"42P01\"}"), 1.0);
    assert_eq!(delta("mycelium_errors_total{sqlstate=\"42501\"}"), 1.0);
    // A refused login counts as a refused connection, not as a statement error.
    assert_eq!(delta("mycelium_errors_total{sqlstate=\"28P01\"}"), 0.0);
    assert_eq!(
        delta("mycelium_client_connections_refused_total{reason=\"authentication\"}"),
        1.0
    );
    assert_eq!(delta("mycelium_client_connections_total"), 1.0);
    assert_eq!(delta("mycelium_client_connections"), 1.0);
    // The same text again and again: one miss at most, then hits.
    assert!(
        delta("mycelium_plan_cache_lookups_total{result=\"hit\"}")
            >= f64::from(u32::try_from(SELECTS).expect("small")) - 1.0
    );
    assert!(
        delta("mycelium_node_requests_total{kind=\"execute\"}")
            >= f64::from(u32::try_from(SELECTS).expect("small")) + f64::from(INSERTS)
    );
    assert_eq!(delta("mycelium_node_errors_total{sqlstate=\"42P01\"}"), 1.0);
    drop(limited);
    // Closed sessions leave the gauge.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while scrape(&cluster).value("mycelium_client_connections") != 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "gauge never fell back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let families: BTreeSet<&String> = after.types.keys().collect();
    assert!(
        families.contains(&"process_resident_memory_bytes".to_owned()),
        "{families:?}"
    );
}
