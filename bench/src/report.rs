//! The results: medians per setup and workload, a Markdown table on stdout, `results.json` and
//! a bar chart of throughput relative to PostgreSQL (`ratios.svg`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::Settings;
use crate::memory::MemoryResult;
use crate::parse::median;
use crate::pgbench::WORKLOADS;
use crate::replication::{self, ReplMeasurement, ReplSummary};
use crate::run::{Measurement, Setup};
use crate::workloads::{OpMeasurement, Section, TESTS};

/// The medians of one setup and workload over the rounds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    pub setup: &'static str,
    pub workload: &'static str,
    pub rounds: usize,
    pub tps: f64,
    pub latency_ms: f64,
    /// The proxy's CPU per transaction (none for direct PostgreSQL); with proxy and nodes in
    /// separate processes, theirs together.
    pub proxy_us_per_txn: Option<f64>,
    /// With proxy and nodes in separate processes: the `mycelium proxy` process's part.
    pub proxy_process_us_per_txn: Option<f64>,
    /// With proxy and nodes in separate processes: the `mycelium node` processes' part.
    pub node_processes_us_per_txn: Option<f64>,
    pub postgres_us_per_txn: f64,
    /// What serving one transaction cost: proxy + PostgreSQL, or mycelium alone on SQLite
    /// (its nodes are in its process; PostgreSQL idles then).
    pub server_us_per_txn: f64,
    pub client_us_per_txn: f64,
    pub ratio_to_direct: Option<f64>,
    pub ratio_to_relay: Option<f64>,
    pub failed: u64,
    /// The largest share of the machine's CPU that went to other processes during a round.
    pub max_other_load_pct: f64,
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub date: String,
    pub cpus: u32,
    pub settings: Settings,
    pub versions: Vec<(String, String)>,
    pub init_seconds: Vec<(&'static str, f64)>,
    pub summary: Vec<Summary>,
    pub operations: Vec<OpSummary>,
    pub replication: Vec<ReplSummary>,
    pub memory: Vec<MemoryResult>,
    pub notes: Vec<String>,
    pub measurements: Vec<Measurement>,
    pub operation_measurements: Vec<OpMeasurement>,
    pub replication_measurements: Vec<ReplMeasurement>,
}

/// The medians of one point/transfer/scatter test on one setup over the rounds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpSummary {
    pub section: Section,
    pub test: &'static str,
    pub setup: &'static str,
    pub rounds: usize,
    pub ops_per_s: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub cpu_us_per_op: f64,
    /// Two-phase commits per operation (Mycelium only): 1 for a cross-node transfer, 0 within
    /// a node.
    pub two_phase_per_op: Option<f64>,
    /// What this is compared with (`Test::baseline`) and ops/s relative to it.
    pub baseline: Option<String>,
    pub ratio: Option<f64>,
    pub failed: u64,
}

/// Other load above this share of the machine during a run is worth a note.
const OTHER_LOAD_NOTE_PCT: f64 = 5.0;

impl Report {
    #[expect(clippy::too_many_arguments, reason = "one call site, all plain data")]
    pub fn new(
        started: chrono::DateTime<chrono::Local>,
        settings: &Settings,
        cpus: u32,
        versions: Vec<(String, String)>,
        init_seconds: Vec<(&'static str, f64)>,
        measurements: Vec<Measurement>,
        operation_measurements: Vec<OpMeasurement>,
        replication_measurements: Vec<ReplMeasurement>,
        memory: Vec<MemoryResult>,
        mut notes: Vec<String>,
    ) -> Report {
        let summary = summarize(&measurements);
        for row in &summary {
            if row.max_other_load_pct > OTHER_LOAD_NOTE_PCT {
                notes.push(format!(
                    "{} / {}: up to {:.0}% of the machine's CPU went to other processes during a \
                     round; its numbers may be disturbed.",
                    row.setup, row.workload, row.max_other_load_pct
                ));
            }
        }
        Report {
            date: started.format("%Y-%m-%d %H:%M %z").to_string(),
            cpus,
            settings: settings.clone(),
            versions,
            init_seconds,
            summary,
            operations: summarize_operations(&operation_measurements),
            replication: replication::summarize(&replication_measurements),
            memory,
            notes,
            measurements,
            operation_measurements,
            replication_measurements,
        }
    }
}

fn per_txn(cpu_s: f64, transactions: u64) -> f64 {
    if transactions == 0 {
        f64::NAN
    } else {
        cpu_s * 1e6 / transactions as f64
    }
}

pub fn summarize(measurements: &[Measurement]) -> Vec<Summary> {
    let mut rows = Vec::new();
    for workload in &WORKLOADS {
        let median_tps = |setup: Setup| {
            median(
                &measurements
                    .iter()
                    .filter(|m| m.workload == workload.name && m.setup == setup.name())
                    .map(|m| m.tps)
                    .collect::<Vec<_>>(),
            )
        };
        let direct_tps = median_tps(Setup::Direct);
        let relay_tps = median_tps(Setup::Relay);
        for setup in Setup::ALL {
            let runs: Vec<&Measurement> = measurements
                .iter()
                .filter(|m| m.workload == workload.name && m.setup == setup.name())
                .collect();
            if runs.is_empty() {
                continue;
            }
            let med = |f: &dyn Fn(&Measurement) -> f64| {
                median(&runs.iter().map(|m| f(m)).collect::<Vec<_>>()).unwrap_or(f64::NAN)
            };
            let tps = med(&|m| m.tps);
            let cpu_per_txn = |cpu_s: fn(&Measurement) -> Option<f64>| {
                cpu_s(runs[0])
                    .is_some()
                    .then(|| med(&|m| per_txn(cpu_s(m).unwrap_or(0.0), m.transactions)))
            };
            let server_us_per_txn = med(&|m| {
                let proxy = m.proxy_cpu_s.unwrap_or(0.0);
                let cpu = if setup.uses_postgres() {
                    proxy + m.postgres_cpu_s
                } else {
                    proxy
                };
                per_txn(cpu, m.transactions)
            });
            rows.push(Summary {
                setup: setup.name(),
                workload: workload.name,
                rounds: runs.len(),
                tps,
                latency_ms: med(&|m| m.latency_ms),
                proxy_us_per_txn: cpu_per_txn(|m| m.proxy_cpu_s),
                proxy_process_us_per_txn: cpu_per_txn(|m| m.proxy_process_cpu_s),
                node_processes_us_per_txn: cpu_per_txn(|m| m.node_processes_cpu_s),
                postgres_us_per_txn: med(&|m| per_txn(m.postgres_cpu_s, m.transactions)),
                server_us_per_txn,
                client_us_per_txn: med(&|m| per_txn(m.client_cpu_s, m.transactions)),
                ratio_to_direct: direct_tps.map(|direct| tps / direct),
                ratio_to_relay: relay_tps.map(|relay| tps / relay),
                failed: runs.iter().map(|m| m.failed).sum(),
                max_other_load_pct: runs
                    .iter()
                    .map(|m| 100.0 * m.other_cpu_s.max(0.0) / m.capacity_cpu_s)
                    .fold(0.0, f64::max),
            });
        }
    }
    rows
}

pub fn summarize_operations(measurements: &[OpMeasurement]) -> Vec<OpSummary> {
    let runs = |test: &str, setup: &str| -> Vec<&OpMeasurement> {
        measurements
            .iter()
            .filter(|m| m.test == test && m.setup == setup)
            .collect()
    };
    let med = |runs: &[&OpMeasurement], f: &dyn Fn(&OpMeasurement) -> f64| {
        median(&runs.iter().map(|m| f(m)).collect::<Vec<_>>())
    };
    let mut rows = Vec::new();
    for test in &TESTS {
        for setup in test.setups() {
            let these = runs(test.name, setup);
            if these.is_empty() {
                continue;
            }
            let ops_per_s = med(&these, &|m| m.ops_per_s).unwrap_or(f64::NAN);
            let baseline = test.baseline(setup);
            let ratio = baseline
                .and_then(|(t, s)| med(&runs(t, s), &|m| m.ops_per_s))
                .map(|base| ops_per_s / base);
            let two_phase_per_op = these[0].two_phase_commits.map(|_| {
                med(&these, &|m| {
                    m.two_phase_commits.unwrap_or(0.0) / m.operations.max(1) as f64
                })
                .unwrap_or(f64::NAN)
            });
            rows.push(OpSummary {
                section: test.section,
                test: test.name,
                setup,
                rounds: these.len(),
                ops_per_s,
                p50_us: med(&these, &|m| m.p50_us.unwrap_or(f64::NAN)),
                p99_us: med(&these, &|m| m.p99_us.unwrap_or(f64::NAN)),
                cpu_us_per_op: med(&these, &|m| m.cpu_us_per_op).unwrap_or(f64::NAN),
                two_phase_per_op,
                baseline: baseline.map(|(t, s)| {
                    if t == test.name {
                        s.to_owned()
                    } else {
                        t.to_owned()
                    }
                }),
                ratio,
                failed: these.iter().map(|m| m.failed).sum(),
            });
        }
    }
    rows
}

/// The issue's targets for Mycelium over one PostgreSQL node, proxy and node as separate
/// processes, measured: (what, value, met).
fn targets(report: &Report) -> Vec<(String, String, bool)> {
    let row = |setup: Setup, workload: &str| {
        report
            .summary
            .iter()
            .find(|r| r.setup == setup.name() && r.workload == workload)
    };
    let mut out = Vec::new();
    for workload in ["select prepared c8", "select simple c8"] {
        if let Some(r) = row(Setup::MyceliumPg1Split, workload)
            && let Some(ratio) = r.ratio_to_relay
        {
            out.push((
                format!("{workload}: tps ≥ 0.75 × tcp relay"),
                format!("{ratio:.2} × relay"),
                ratio >= 0.75,
            ));
        }
        if let (Some(r), Some(bouncer)) = (
            row(Setup::MyceliumPg1Split, workload),
            row(Setup::PgBouncer, workload),
        ) {
            let ratio = r.tps / bouncer.tps;
            out.push((
                format!("{workload}: tps ≥ PgBouncer (the mark to chase)"),
                format!("{ratio:.2} × PgBouncer"),
                ratio >= 1.0,
            ));
        }
        if let Some(cpu) = row(Setup::MyceliumPg1Split, workload).and_then(|r| r.proxy_us_per_txn) {
            out.push((
                format!("{workload}: proxy + node CPU ≤ 25 µs/txn"),
                format!("{cpu:.1} µs"),
                cpu <= 25.0,
            ));
        }
    }
    for workload in ["select simple c1", "select prepared c1"] {
        if let (Some(m), Some(relay)) = (
            row(Setup::MyceliumPg1Split, workload),
            row(Setup::Relay, workload),
        ) {
            let extra = (m.latency_ms - relay.latency_ms) * 1000.0;
            out.push((
                format!("{workload}: avg latency ≤ relay + 60 µs"),
                format!("relay {extra:+.0} µs"),
                extra <= 60.0,
            ));
        }
    }
    if let Some(m) = report.memory.iter().find(|m| m.server == "mycelium") {
        out.push((
            format!(
                "memory per idle client connection < 32 KiB ({} connections, SQLite nodes)",
                m.connections
            ),
            format!("{:.1} KiB", m.bytes_per_connection / 1024.0),
            m.bytes_per_connection < 32.0 * 1024.0,
        ));
    }
    out
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The human-readable report (Markdown).
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let s = &report.settings;
    let _ = writeln!(
        out,
        "{} — {} CPUs, pgbench scale {}, {} s per run, median of {} round(s)\n",
        report.date, report.cpus, s.scale, s.seconds, s.rounds
    );
    if !report.summary.is_empty() {
        out.push_str(
            "| setup | test | tps | avg latency ms | proxy CPU µs/txn | Postgres CPU µs/txn | \
             server CPU µs/txn | tps vs direct | tps vs relay |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
    }
    for row in &report.summary {
        let proxy = row
            .proxy_us_per_txn
            .map_or_else(|| "—".to_owned(), |v| format!("{v:.1}"));
        let ratio = row
            .ratio_to_direct
            .map_or_else(|| "—".to_owned(), |v| format!("{v:.2}"));
        let relay = row
            .ratio_to_relay
            .filter(|_| row.setup != Setup::Direct.name() && row.setup != Setup::Relay.name())
            .map_or_else(|| "—".to_owned(), |v| format!("{v:.2}"));
        let failed = if row.failed > 0 {
            format!(" ({} failed!)", row.failed)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0}{failed} | {:.3} | {proxy} | {:.1} | {:.1} | {ratio} | {relay} |",
            row.setup,
            row.workload,
            row.tps,
            row.latency_ms,
            row.postgres_us_per_txn,
            row.server_us_per_txn,
        );
    }
    split_cpu_table(&mut out, &report.summary);
    let targets = targets(report);
    if !targets.is_empty() {
        out.push_str(
            "\nIssue 9's targets, Mycelium with one PostgreSQL node, proxy and node as separate \
             processes over mTLS (`pg1-split`):\n\n| target | measured | met |\n\
             |---|---:|---|\n",
        );
        for (what, value, met) in &targets {
            let _ = writeln!(
                out,
                "| {what} | {value} | {} |",
                if *met { "yes" } else { "**no**" }
            );
        }
    }
    if !report.operations.is_empty() {
        out.push_str(
            "\nPoint operations, transfers and scattered reads (pgbench -f -M prepared through \
             the proxy; rusqlite in this process):\n\n| test | setup | ops/s | p50 µs | p99 µs \
             | CPU µs/op | 2PC per op | compared with | ratio |\n\
             |---|---|---:|---:|---:|---:|---:|---|---:|\n",
        );
        let number = |v: Option<f64>, digits: usize| {
            v.filter(|v| v.is_finite())
                .map_or_else(|| "—".to_owned(), |v| format!("{v:.digits$}"))
        };
        let micros = |v: Option<f64>| number(v, if v.is_some_and(|v| v < 10.0) { 1 } else { 0 });
        for row in &report.operations {
            let failed = if row.failed > 0 {
                format!(" ({} failed!)", row.failed)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0}{failed} | {} | {} | {:.1} | {} | {} | {} |",
                row.test,
                row.setup,
                row.ops_per_s,
                micros(row.p50_us),
                micros(row.p99_us),
                row.cpu_us_per_op,
                number(row.two_phase_per_op, 2),
                row.baseline.as_deref().unwrap_or("—"),
                number(row.ratio, 2),
            );
        }
    }
    if !report.replication.is_empty() {
        replication_table(&mut out, &report.replication);
    }
    if !report.memory.is_empty() {
        out.push_str(
            "\n| server | idle RSS MiB | RSS with N idle connections MiB | N | bytes per connection \
             | RSS after they closed MiB |\n|---|---:|---:|---:|---:|---:|\n",
        );
        for m in &report.memory {
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.1} | {} | {:.0} | {:.1} |",
                m.server,
                mib(m.idle_rss_bytes),
                mib(m.connected_rss_bytes),
                m.connections,
                m.bytes_per_connection,
                mib(m.after_close_rss_bytes)
            );
        }
    }
    if !report.init_seconds.is_empty() {
        let _ = writeln!(
            out,
            "\nLoading pgbench's tables took {}.",
            report
                .init_seconds
                .iter()
                .map(|(server, secs)| format!("{secs:.1} s on {server}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !report.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for note in &report.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

/// The CPU of the setups whose proxy and nodes are separate processes, process by process.
fn split_cpu_table(out: &mut String, rows: &[Summary]) {
    let split: Vec<&Summary> = rows
        .iter()
        .filter(|r| r.proxy_process_us_per_txn.is_some())
        .collect();
    if split.is_empty() {
        return;
    }
    out.push_str(
        "\nProxy and node as separate processes: their CPU apart (the proxy column above is \
         their sum):\n\n| setup | test | mycelium proxy CPU µs/txn | mycelium node CPU µs/txn \
         | Postgres CPU µs/txn |\n|---|---|---:|---:|---:|\n",
    );
    let number = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.1}"));
    for row in split {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} |",
            row.setup,
            row.workload,
            number(row.proxy_process_us_per_txn),
            number(row.node_processes_us_per_txn),
            row.postgres_us_per_txn,
        );
    }
}

/// Writes/s and commit-to-apply latency per replication variant.
fn replication_table(out: &mut String, rows: &[ReplSummary]) {
    out.push_str(
        "\nReplication (3 `mycelium node` processes on SQLite + `mycelium proxy`; pgbench -f -M \
         prepared single-row UPDATEs by shard key through the proxy; commit → apply: from the \
         probe's acknowledged commit to its row read in the secondaries' SQLite files):\n\n\
         | replication | clients | writes/s | p50 µs | p99 µs | CPU µs/write | × sync 0 | \
         × no replication | apply p50 µs (1st / both secondaries) | apply p99 µs (1st / both) \
         | probes |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let number = |v: Option<f64>, digits: usize| {
        v.filter(|v| v.is_finite())
            .map_or_else(|| "—".to_owned(), |v| format!("{v:.digits$}"))
    };
    for row in rows {
        let failed = if row.failed > 0 {
            format!(" ({} failed!)", row.failed)
        } else {
            String::new()
        };
        let lost = if row.probes_lost > 0 {
            format!(" ({} lost)", row.probes_lost)
        } else {
            String::new()
        };
        let pair = |a: Option<f64>, b: Option<f64>| {
            if a.is_none() && b.is_none() {
                "—".to_owned()
            } else {
                format!("{} / {}", number(a, 0), number(b, 0))
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0}{failed} | {} | {} | {} | {} | {} | {} | {} | {}{lost} |",
            row.mode,
            row.clients,
            row.writes_per_s,
            number(row.p50_us, 0),
            number(row.p99_us, 0),
            number(row.cpu_us_per_write, 1),
            number(row.ratio_to_async, 2),
            number(row.ratio_to_off, 2),
            pair(row.apply_first_p50_us, row.apply_all_p50_us),
            pair(row.apply_first_p99_us, row.apply_all_p99_us),
            if row.probes > 0 {
                row.probes.to_string()
            } else {
                "—".to_owned()
            },
        );
    }
}

/// Prints the table and writes `results.json` and `ratios.svg` into `dir`.
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<()> {
    let text = markdown(report);
    std::io::stdout().lock().write_all(text.as_bytes())?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(dir.join("results.json"), json + "\n")
        .with_context(|| format!("cannot write results.json into {}", dir.display()))?;
    std::fs::write(dir.join("ratios.svg"), svg(&report.summary))
        .with_context(|| format!("cannot write ratios.svg into {}", dir.display()))?;
    std::fs::write(dir.join("results.md"), text)
        .with_context(|| format!("cannot write results.md into {}", dir.display()))?;
    Ok(())
}

/// A grouped bar chart: per workload, each proxy's tps relative to direct PostgreSQL (= 1).
pub fn svg(summary: &[Summary]) -> String {
    const COLORS: [(&str, &str); 6] = [
        ("tcp relay", "#8da0cb"),
        ("pgbouncer", "#66c2a5"),
        ("mycelium 1 pg node", "#fc8d62"),
        ("mycelium proxy + 1 pg node, separate processes", "#e5c494"),
        ("mycelium 2 pg shards", "#e78ac3"),
        ("mycelium 3 sqlite nodes", "#a6d854"),
    ];
    // The legend takes two rows of three: one row of six setup names is wider than the chart.
    const LEGEND_COLUMNS: usize = 3;
    let (width, height) = (900.0, 440.0);
    let (left, right, top, bottom) = (60.0, 20.0, 50.0, 90.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let max_ratio = summary
        .iter()
        .filter_map(|r| r.ratio_to_direct)
        .filter(|r| r.is_finite())
        .fold(1.0_f64, f64::max);
    let y_max = (max_ratio * 1.1 * 4.0).ceil() / 4.0;
    let y = |ratio: f64| top + plot_h * (1.0 - ratio / y_max);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{width}" height="{height}" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="15">pgbench throughput relative to direct PostgreSQL (higher is better)</text>"#,
        width / 2.0
    );
    // Grid and axis labels every 0.25.
    let mut tick = 0.0;
    while tick <= y_max + 1e-9 {
        let _ = writeln!(
            out,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{tick:.2}</text>"##,
            width - right,
            left - 6.0,
            y(tick) + 4.0,
            y = y(tick),
        );
        tick += 0.25;
    }
    let _ = writeln!(
        out,
        r##"<line x1="{left}" x2="{}" y1="{y1:.1}" y2="{y1:.1}" stroke="#333" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" text-anchor="end" fill="#333">postgres = 1</text>"##,
        width - right,
        width - right,
        y(1.0) - 4.0,
        y1 = y(1.0),
    );
    let group_w = plot_w / WORKLOADS.len() as f64;
    let bar_w = (group_w - 24.0) / COLORS.len() as f64;
    for (g, workload) in WORKLOADS.iter().enumerate() {
        let gx = left + group_w * g as f64 + 12.0;
        for (b, (setup, color)) in COLORS.iter().enumerate() {
            let Some(ratio) = summary
                .iter()
                .find(|r| r.workload == workload.name && r.setup == *setup)
                .and_then(|r| r.ratio_to_direct)
                .filter(|r| r.is_finite())
            else {
                continue;
            };
            let x = gx + bar_w * b as f64;
            let _ = writeln!(
                out,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{setup}, {}: {ratio:.2}</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{ratio:.2}</text>"#,
                y(ratio),
                bar_w - 2.0,
                top + plot_h - y(ratio),
                workload.name,
                x + bar_w / 2.0 - 1.0,
                y(ratio) - 3.0,
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            gx + (group_w - 24.0) / 2.0,
            top + plot_h + 18.0,
            workload.name
        );
    }
    let _ = writeln!(
        out,
        r##"<line x1="{left}" x2="{}" y1="{y0:.1}" y2="{y0:.1}" stroke="#333"/>"##,
        width - right,
        y0 = top + plot_h,
    );
    for (i, (setup, color)) in COLORS.iter().enumerate() {
        let x = left + 320.0 * (i % LEGEND_COLUMNS) as f64;
        let ly = height - 42.0 + 20.0 * (i / LEGEND_COLUMNS) as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="14" height="14" fill="{color}"/><text x="{}" y="{ly}">{setup}</text>"#,
            ly - 11.0,
            x + 20.0,
        );
    }
    out.push_str("</svg>\n");
    out
}
