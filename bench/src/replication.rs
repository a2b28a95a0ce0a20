//! WAL replication under load, on three `mycelium node` processes (SQLite) and a `mycelium
//! proxy`: sustained single-row writes by shard key with `synchronous_replicas = 0` and `= 1`,
//! and the same writes to a table with one copy per shard (nothing to replicate) as the
//! baseline; meanwhile a probe measures how long a commit acknowledged to its client takes to
//! become visible in the secondaries' SQLite files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};
use tempfile::TempDir;

use crate::Settings;
use crate::cluster::{Link, NODES, ProcessCluster, Storage};
use crate::parse::{median, parse_pgbench, percentile};
use crate::pgbench::{self, QueryMode, Script, Target};
use crate::procfs;

/// Every node holds every shard: a primary and two secondaries.
const REPLICATED: &str = "repl_kv";
/// `replication_factor = 0.01`: ceil(0.03) = one copy per shard, nothing to ship.
const SINGLE: &str = "single_kv";
/// One shard, three copies: the probe's marker row.
const PROBE: &str = "repl_probe";
/// Rows per INSERT while loading.
const BATCH: i64 = 1000;
/// How long the probe waits for a secondary before it counts the sample as lost.
const PROBE_GIVE_UP: Duration = Duration::from_secs(5);
/// Pause between probe samples.
const PROBE_PAUSE: Duration = Duration::from_millis(10);
/// Pause between two reads of the secondaries' files while waiting for a sample.
const POLL: Duration = Duration::from_micros(50);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The table with one copy per shard, on the `synchronous_replicas = 0` cluster.
    Off,
    Async,
    Sync,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "no replication (1 copy per shard)",
            Mode::Async => "synchronous_replicas = 0 (3 copies)",
            Mode::Sync => "synchronous_replicas = 1 (3 copies)",
        }
    }
}

/// The variants measured in every round: (mode, clients).
pub const VARIANTS: [(Mode, u32); 6] = [
    (Mode::Off, 1),
    (Mode::Async, 1),
    (Mode::Sync, 1),
    (Mode::Off, 8),
    (Mode::Async, 8),
    (Mode::Sync, 8),
];

/// One run of one variant.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReplMeasurement {
    pub mode: &'static str,
    pub clients: u32,
    pub round: u32,
    pub writes_per_s: f64,
    pub writes: u64,
    pub failed: u64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// CPU of the three nodes and the proxy per write (the probe's writes included).
    pub cpu_us_per_write: f64,
    /// Probe samples: commits of the marker row acknowledged during the run.
    pub probes: u64,
    /// Samples not visible on every secondary within 5 s.
    pub probes_lost: u64,
    /// From the acknowledgement to visible on the first / on both secondaries, µs.
    pub apply_first_p50_us: Option<f64>,
    pub apply_first_p99_us: Option<f64>,
    pub apply_all_p50_us: Option<f64>,
    pub apply_all_p99_us: Option<f64>,
    /// Share of samples already visible on a secondary at the first look after the ack.
    pub visible_at_ack_pct: Option<f64>,
}

/// The medians of one variant over the rounds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReplSummary {
    pub mode: &'static str,
    pub clients: u32,
    pub rounds: usize,
    pub writes_per_s: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub cpu_us_per_write: Option<f64>,
    /// writes/s relative to `synchronous_replicas = 0` and to no replication, same clients.
    pub ratio_to_async: Option<f64>,
    pub ratio_to_off: Option<f64>,
    pub probes: u64,
    pub probes_lost: u64,
    pub apply_first_p50_us: Option<f64>,
    pub apply_first_p99_us: Option<f64>,
    pub apply_all_p50_us: Option<f64>,
    pub apply_all_p99_us: Option<f64>,
    pub visible_at_ack_pct: Option<f64>,
    pub failed: u64,
}

pub fn summarize(measurements: &[ReplMeasurement]) -> Vec<ReplSummary> {
    let runs = |mode: Mode, clients: u32| -> Vec<&ReplMeasurement> {
        measurements
            .iter()
            .filter(|m| m.mode == mode.name() && m.clients == clients)
            .collect()
    };
    let med = |runs: &[&ReplMeasurement], f: &dyn Fn(&ReplMeasurement) -> Option<f64>| {
        median(&runs.iter().filter_map(|m| f(m)).collect::<Vec<_>>())
    };
    let tps = |mode: Mode, clients: u32| med(&runs(mode, clients), &|m| Some(m.writes_per_s));
    let mut rows = Vec::new();
    for (mode, clients) in VARIANTS {
        let these = runs(mode, clients);
        if these.is_empty() {
            continue;
        }
        let writes_per_s = tps(mode, clients).unwrap_or(f64::NAN);
        let ratio = |base: Mode| {
            (base != mode)
                .then(|| tps(base, clients))
                .flatten()
                .map(|b| writes_per_s / b)
        };
        rows.push(ReplSummary {
            mode: mode.name(),
            clients,
            rounds: these.len(),
            writes_per_s,
            p50_us: med(&these, &|m| m.p50_us),
            p99_us: med(&these, &|m| m.p99_us),
            cpu_us_per_write: med(&these, &|m| Some(m.cpu_us_per_write)),
            ratio_to_async: ratio(Mode::Async).filter(|_| mode == Mode::Sync),
            ratio_to_off: ratio(Mode::Off),
            probes: these.iter().map(|m| m.probes).sum(),
            probes_lost: these.iter().map(|m| m.probes_lost).sum(),
            apply_first_p50_us: med(&these, &|m| m.apply_first_p50_us),
            apply_first_p99_us: med(&these, &|m| m.apply_first_p99_us),
            apply_all_p50_us: med(&these, &|m| m.apply_all_p50_us),
            apply_all_p99_us: med(&these, &|m| m.apply_all_p99_us),
            visible_at_ack_pct: med(&these, &|m| m.visible_at_ack_pct),
            failed: these.iter().map(|m| m.failed).sum(),
        });
    }
    rows
}

/// A cluster with its tables loaded and the probe's secondaries known.
struct Prepared {
    cluster: ProcessCluster,
    /// The files of the probe shard's secondaries.
    probe_secondaries: Vec<PathBuf>,
}

pub struct Outcome {
    pub measurements: Vec<ReplMeasurement>,
    pub notes: Vec<String>,
    pub failures: usize,
}

/// The whole section: two clusters, the tables, rounds of every variant. Failures become notes.
pub async fn run(settings: &Settings, progress: &impl Fn(String)) -> Outcome {
    let mut outcome = Outcome {
        measurements: Vec::new(),
        notes: Vec::new(),
        failures: 0,
    };
    let rows = if settings.quick { 2_000 } else { 20_000 };
    let clusters = match start(settings, rows, progress, &mut outcome.notes).await {
        Ok(clusters) => clusters,
        Err(e) => {
            progress(format!("  FAILED: {e:#}"));
            outcome
                .notes
                .push(format!("replication section not run: {e:#}"));
            outcome.failures += 1;
            return outcome;
        }
    };
    let scripts = match Scripts::write(rows) {
        Ok(scripts) => scripts,
        Err(e) => {
            outcome
                .notes
                .push(format!("replication section not run: {e:#}"));
            outcome.failures += 1;
            return outcome;
        }
    };
    for round in 1..=settings.rounds {
        let mut order = VARIANTS.to_vec();
        order.rotate_left(round as usize % VARIANTS.len());
        for (mode, clients) in order {
            progress(format!(
                "round {round} replication: {} c{clients}",
                mode.name()
            ));
            let prepared = if mode == Mode::Sync {
                &clusters.1
            } else {
                &clusters.0
            };
            match measure(prepared, &scripts, mode, clients, round, settings.seconds).await {
                Ok(measurement) => {
                    if measurement.failed > 0 || measurement.probes_lost > 0 {
                        outcome.notes.push(format!(
                            "replication {} c{clients} round {round}: {} failed writes, {} probe \
                             samples not applied within {PROBE_GIVE_UP:?}.",
                            mode.name(),
                            measurement.failed,
                            measurement.probes_lost
                        ));
                    }
                    outcome.measurements.push(measurement);
                }
                Err(e) => {
                    outcome.failures += 1;
                    progress(format!("  FAILED: {e:#}"));
                    outcome.notes.push(format!(
                        "replication {} c{clients} round {round} failed: {}",
                        mode.name(),
                        format!("{e:#}").lines().next().unwrap_or_default()
                    ));
                }
            }
        }
    }
    clusters.0.cluster.terminate();
    clusters.1.cluster.terminate();
    outcome
}

/// The `synchronous_replicas = 0` and `= 1` clusters, loaded.
async fn start(
    settings: &Settings,
    rows: i64,
    progress: &impl Fn(String),
    notes: &mut Vec<String>,
) -> anyhow::Result<(Prepared, Prepared)> {
    let mut clusters = Vec::new();
    for synchronous in [0, 1] {
        progress(format!(
            "replication: 3 mycelium node processes + mycelium proxy, synchronous_replicas = \
             {synchronous}, {rows} rows"
        ));
        let cluster = ProcessCluster::start(
            &settings.mycelium,
            &NODES,
            &Storage::Sqlite,
            &format!(
                "[replication]\nsynchronous_replicas = {synchronous}\n\
                 synchronous_timeout_ms = 10000\n"
            ),
            Link::Tcp,
        )?;
        let prepared = prepare(cluster, rows, synchronous == 0).await?;
        notes.push(format!(
            "Replication, synchronous_replicas = {synchronous}: {PROBE} (the probe's marker \
             row, one shard) is read on its secondaries {}.",
            prepared
                .probe_secondaries
                .iter()
                .filter_map(|f| f.file_stem())
                .map(|s| s.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" and ")
        ));
        clusters.push(prepared);
    }
    let sync = clusters.pop().context("two clusters")?;
    let asynchronous = clusters.pop().context("two clusters")?;
    Ok((asynchronous, sync))
}

async fn prepare(
    cluster: ProcessCluster,
    rows: i64,
    with_single: bool,
) -> anyhow::Result<Prepared> {
    let client = cluster.target().connect().await?;
    let table = |name: &str, factor: &str, shards: u32| {
        format!(
            "CREATE TABLE {name} (id bigint PRIMARY KEY, v bigint NOT NULL, pad text NOT NULL) \
             WITH (mycelium.shard_keys = 'id', mycelium.shards = {shards}, \
             mycelium.replication_factor = {factor})"
        )
    };
    let mut ddl = vec![table(REPLICATED, "1", 6), table(PROBE, "1", 1)];
    if with_single {
        ddl.push(table(SINGLE, "0.01", 6));
    }
    for statement in &ddl {
        execute(&client, statement).await?;
    }
    let pad = "x".repeat(32);
    let mut tables = vec![REPLICATED];
    if with_single {
        tables.push(SINGLE);
    }
    for table in tables {
        let mut start = 1;
        while start <= rows {
            let end = (start + BATCH - 1).min(rows);
            let values: Vec<String> = (start..=end)
                .map(|id| format!("({id}, 0, '{pad}')"))
                .collect();
            execute(
                &client,
                &format!(
                    "INSERT INTO {table} (id, v, pad) VALUES {}",
                    values.join(", ")
                ),
            )
            .await
            .with_context(|| format!("loading {table} failed at {start}"))?;
            start = end + 1;
        }
    }
    execute(
        &client,
        &format!("INSERT INTO {PROBE} (id, v, pad) VALUES (1, 0, '')"),
    )
    .await
    .context("inserting the probe's row failed")?;
    let probe_secondaries = secondaries(&client, PROBE)
        .await?
        .iter()
        .map(|node| cluster.node_file(node))
        .collect::<Vec<_>>();
    anyhow::ensure!(
        !probe_secondaries.is_empty(),
        "SHOW MYCELIUM SHARDS lists no secondary of {PROBE}"
    );
    if with_single {
        let single = secondaries(&client, SINGLE).await?;
        anyhow::ensure!(
            single.is_empty(),
            "{SINGLE} was meant to have one copy per shard, but has secondaries {single:?}"
        );
    }
    let prepared = Prepared {
        cluster,
        probe_secondaries,
    };
    converge(&prepared.cluster, Duration::from_secs(120)).await?;
    Ok(prepared)
}

/// `statement`, retried while it fails with 40001 (a node refuses a statement routed by the
/// cluster map of before the previous `CREATE TABLE`, "cluster map changed ... retry it").
async fn execute(client: &tokio_postgres::Client, statement: &str) -> anyhow::Result<()> {
    let mut attempts = 0;
    loop {
        match client.batch_execute(statement).await {
            Ok(()) => return Ok(()),
            Err(e)
                if attempts < 50
                    && e.code()
                        == Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE) =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                let text: String = statement.chars().take(200).collect();
                return Err(e).with_context(|| format!("{text} failed"));
            }
        }
    }
}

/// The secondaries of shard 0 of `table` in `SHOW MYCELIUM SHARDS` (`n1 (primary), n2
/// (secondary), ...`).
async fn secondaries(client: &tokio_postgres::Client, table: &str) -> anyhow::Result<Vec<String>> {
    for message in client
        .simple_query("SHOW MYCELIUM SHARDS")
        .await
        .context("SHOW MYCELIUM SHARDS failed")?
    {
        let tokio_postgres::SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        if row.get(0) != Some(table) || row.get(1) != Some("0") {
            continue;
        }
        let nodes = row
            .get(3)
            .context("SHOW MYCELIUM SHARDS: no nodes column")?;
        return Ok(nodes
            .split(',')
            .filter_map(|copy| copy.trim().strip_suffix(" (secondary)"))
            .map(str::to_owned)
            .collect());
    }
    anyhow::bail!("SHOW MYCELIUM SHARDS lists no shard 0 of {table}")
}

/// Waits until every node's file holds the same rows of the replicated table (count and sum
/// of `v`), so that no backlog of an earlier run is shipped during the next.
async fn converge(cluster: &ProcessCluster, within: Duration) -> anyhow::Result<()> {
    let files: Vec<PathBuf> = NODES.iter().map(|(id, _)| cluster.node_file(id)).collect();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + within;
        loop {
            let states: Vec<(i64, i64)> = files
                .iter()
                .map(|file| {
                    let conn = read_only(file)?;
                    Ok(conn.query_row(
                        &format!("SELECT count(*), coalesce(sum(v), 0) FROM {REPLICATED}"),
                        [],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )?)
                })
                .collect::<anyhow::Result<_>>()?;
            if states.windows(2).all(|pair| pair[0] == pair[1]) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the copies of {REPLICATED} did not converge within {within:?}: (rows, sum) per \
                 node {states:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .context("the convergence check panicked")?
}

fn read_only(file: &Path) -> anyhow::Result<Connection> {
    Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", file.display()))
}

/// pgbench scripts of the load, in a temporary directory with the pgbench logs.
struct Scripts {
    dir: TempDir,
}

impl Scripts {
    fn write(rows: i64) -> anyhow::Result<Scripts> {
        let dir = tempfile::Builder::new()
            .prefix("mycelium-bench-replication-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        for table in [REPLICATED, SINGLE] {
            let path = dir.path().join(format!("{table}.sql"));
            std::fs::write(
                &path,
                format!(
                    "\\set id random(1, {rows})\nUPDATE {table} SET v = v + 1 WHERE id = :id;\n"
                ),
            )
            .with_context(|| format!("cannot write {}", path.display()))?;
        }
        std::fs::create_dir_all(dir.path().join("logs"))
            .context("cannot create the pgbench log directory")?;
        Ok(Scripts { dir })
    }

    fn script(&self, mode: Mode) -> PathBuf {
        let table = if mode == Mode::Off {
            SINGLE
        } else {
            REPLICATED
        };
        self.dir.path().join(format!("{table}.sql"))
    }
}

/// What the probe saw: latencies in ns from the acknowledgement.
#[derive(Default)]
struct ProbeResult {
    first: Vec<u64>,
    all: Vec<u64>,
    lost: u64,
    at_ack: u64,
}

/// Until `stop`: write the marker row through the proxy (`UPDATE ... SET v = n`), and once the
/// commit is acknowledged read the secondaries' files until both show `v >= n`.
fn probe(
    target: Target,
    files: Vec<PathBuf>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<ProbeResult> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the probe's runtime")?;
    let client = runtime.block_on(target.connect())?;
    let update = runtime
        .block_on(client.prepare(&format!("UPDATE {PROBE} SET v = $1 WHERE id = 1")))
        .context("cannot prepare the probe's UPDATE")?;
    let readers: Vec<Connection> = files
        .iter()
        .map(|f| read_only(f))
        .collect::<anyhow::Result<_>>()?;
    let mut statements = readers
        .iter()
        .map(|c| c.prepare(&format!("SELECT v FROM {PROBE} WHERE id = 1")))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot read the probe's row on a secondary")?;
    let mut result = ProbeResult::default();
    let mut value: i64 = runtime
        .block_on(client.query_one(&format!("SELECT v FROM {PROBE} WHERE id = 1"), &[]))
        .context("cannot read the probe's row")?
        .get(0);
    while !stop.load(Ordering::Relaxed) {
        value += 1;
        runtime
            .block_on(client.execute(&update, &[&value]))
            .context("the probe's UPDATE failed")?;
        let acked = Instant::now();
        let mut seen: Vec<Option<u64>> = vec![None; statements.len()];
        let mut first_look = true;
        while seen.iter().any(Option::is_none) && acked.elapsed() < PROBE_GIVE_UP {
            for (slot, statement) in seen.iter_mut().zip(&mut statements) {
                if slot.is_some() {
                    continue;
                }
                let v: i64 = statement.query_row([], |row| row.get(0))?;
                if v >= value {
                    *slot = Some(acked.elapsed().as_nanos() as u64);
                    if first_look {
                        result.at_ack += 1;
                        first_look = false;
                    }
                }
            }
            first_look = false;
            if seen.iter().any(Option::is_none) {
                std::thread::sleep(POLL);
            }
        }
        let times: Vec<u64> = seen.iter().flatten().copied().collect();
        if let Some(first) = times.iter().min() {
            result.first.push(*first);
        }
        if times.len() == seen.len() {
            result.all.push(times.iter().copied().max().unwrap_or(0));
        } else {
            result.lost += 1;
        }
        std::thread::sleep(PROBE_PAUSE);
    }
    result.first.sort_unstable();
    result.all.sort_unstable();
    Ok(result)
}

fn cpu_ticks(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter()
        .map(|pid| procfs::process_ticks(*pid).context("a mycelium process is gone"))
        .sum()
}

/// One run: the probe in a thread of its own (not for `Off`), pgbench for `seconds`.
async fn measure(
    prepared: &Prepared,
    scripts: &Scripts,
    mode: Mode,
    clients: u32,
    round: u32,
    seconds: u32,
) -> anyhow::Result<ReplMeasurement> {
    let cluster = &prepared.cluster;
    converge(cluster, Duration::from_secs(60)).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = (mode != Mode::Off).then(|| {
        let (target, files, stop) = (
            cluster.target(),
            prepared.probe_secondaries.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || probe(target, files, stop))
    });
    let pids = cluster.pids();
    let before = cpu_ticks(&pids)?;
    let script = scripts.script(mode);
    let run = pgbench::measure_script(
        &cluster.target(),
        &Script {
            file: &script,
            mode: QueryMode::Prepared,
            clients,
            threads: clients.min(2),
        },
        seconds,
        &scripts.dir.path().join("logs"),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let after = cpu_ticks(&pids);
    let probed = match prober {
        Some(thread) => Some(
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .context("joining the probe failed")?
                .map_err(|_| anyhow::anyhow!("the probe panicked"))??,
        ),
        None => None,
    };
    let after = after?;
    let (output, latencies) = run?;
    anyhow::ensure!(output.success, "pgbench failed: {}", output.describe());
    let summary = parse_pgbench(&output.stdout)
        .map_err(|e| anyhow::anyhow!("cannot read pgbench's output: {e}\n{}", output.describe()))?;
    let probes = probed.as_ref().map_or(0, |p| p.all.len() as u64 + p.lost);
    let micros = |sorted: &[u64], p: f64| percentile(sorted, p).map(|ns| ns as f64 / 1000.0);
    let writes = summary.transactions + probes;
    let cpu_s = after.saturating_sub(before) as f64 / procfs::clock_ticks_per_second();
    Ok(ReplMeasurement {
        mode: mode.name(),
        clients,
        round,
        writes_per_s: summary.tps,
        writes: summary.transactions,
        failed: summary.failed,
        p50_us: percentile(&latencies, 50.0).map(|us| us as f64),
        p99_us: percentile(&latencies, 99.0).map(|us| us as f64),
        cpu_us_per_write: if writes == 0 {
            f64::NAN
        } else {
            cpu_s * 1e6 / writes as f64
        },
        probes,
        probes_lost: probed.as_ref().map_or(0, |p| p.lost),
        apply_first_p50_us: probed.as_ref().and_then(|p| micros(&p.first, 50.0)),
        apply_first_p99_us: probed.as_ref().and_then(|p| micros(&p.first, 99.0)),
        apply_all_p50_us: probed.as_ref().and_then(|p| micros(&p.all, 50.0)),
        apply_all_p99_us: probed.as_ref().and_then(|p| micros(&p.all, 99.0)),
        visible_at_ack_pct: probed
            .as_ref()
            .filter(|_| probes > 0)
            .map(|p| 100.0 * p.at_ack as f64 / probes as f64),
    })
}
