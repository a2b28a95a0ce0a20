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
use crate::run::{Measurement, Setup};

/// The medians of one setup and workload over the rounds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    pub setup: &'static str,
    pub workload: &'static str,
    pub rounds: usize,
    pub tps: f64,
    pub latency_ms: f64,
    /// The proxy's CPU per transaction (none for direct PostgreSQL).
    pub proxy_us_per_txn: Option<f64>,
    pub postgres_us_per_txn: f64,
    /// What serving one transaction cost: proxy + PostgreSQL, or mycelium alone (its nodes are
    /// in its process; PostgreSQL idles then).
    pub server_us_per_txn: f64,
    pub client_us_per_txn: f64,
    pub ratio_to_direct: Option<f64>,
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
    pub memory: Vec<MemoryResult>,
    pub notes: Vec<String>,
    pub measurements: Vec<Measurement>,
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
        init_seconds: [(&'static str, f64); 2],
        measurements: Vec<Measurement>,
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
            init_seconds: init_seconds.to_vec(),
            summary,
            memory,
            notes,
            measurements,
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
    let setups = [
        Setup::Direct,
        Setup::Relay,
        Setup::PgBouncer,
        Setup::Mycelium,
    ];
    let mut rows = Vec::new();
    for workload in &WORKLOADS {
        let direct_tps = median(
            &measurements
                .iter()
                .filter(|m| m.workload == workload.name && m.setup == Setup::Direct.name())
                .map(|m| m.tps)
                .collect::<Vec<_>>(),
        );
        for setup in setups {
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
            let proxy_us_per_txn = runs[0]
                .proxy_cpu_s
                .is_some()
                .then(|| med(&|m| per_txn(m.proxy_cpu_s.unwrap_or(0.0), m.transactions)));
            let server_us_per_txn = med(&|m| {
                let proxy = m.proxy_cpu_s.unwrap_or(0.0);
                let cpu = if setup == Setup::Mycelium {
                    proxy
                } else {
                    proxy + m.postgres_cpu_s
                };
                per_txn(cpu, m.transactions)
            });
            rows.push(Summary {
                setup: setup.name(),
                workload: workload.name,
                rounds: runs.len(),
                tps,
                latency_ms: med(&|m| m.latency_ms),
                proxy_us_per_txn,
                postgres_us_per_txn: med(&|m| per_txn(m.postgres_cpu_s, m.transactions)),
                server_us_per_txn,
                client_us_per_txn: med(&|m| per_txn(m.client_cpu_s, m.transactions)),
                ratio_to_direct: direct_tps.map(|direct| tps / direct),
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
    out.push_str(
        "| setup | test | tps | avg latency ms | proxy CPU µs/txn | Postgres CPU µs/txn | \
         server CPU µs/txn | tps vs direct |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in &report.summary {
        let proxy = row
            .proxy_us_per_txn
            .map_or_else(|| "—".to_owned(), |v| format!("{v:.1}"));
        let ratio = row
            .ratio_to_direct
            .map_or_else(|| "—".to_owned(), |v| format!("{v:.2}"));
        let failed = if row.failed > 0 {
            format!(" ({} failed!)", row.failed)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0}{failed} | {:.3} | {proxy} | {:.1} | {:.1} | {ratio} |",
            row.setup,
            row.workload,
            row.tps,
            row.latency_ms,
            row.postgres_us_per_txn,
            row.server_us_per_txn,
        );
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
    let _ = writeln!(
        out,
        "\npgbench -i took {}.",
        report
            .init_seconds
            .iter()
            .map(|(server, secs)| format!("{secs:.1} s on {server}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !report.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for note in &report.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
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
    const COLORS: [(&str, &str); 3] = [
        ("tcp relay", "#8da0cb"),
        ("pgbouncer", "#66c2a5"),
        ("mycelium", "#fc8d62"),
    ];
    let (width, height) = (900.0, 420.0);
    let (left, right, top, bottom) = (60.0, 20.0, 50.0, 70.0);
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
        let x = left + 160.0 * i as f64;
        let ly = height - 22.0;
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
