//! The whole benchmark, in order: servers up, data loaded, warm-up, rounds of measurements,
//! memory, report. Every server is behind a guard that stops it when dropped, on error too.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::Settings;
use crate::cluster::{Link, ProcessCluster, Storage};
use crate::memory;
use crate::mycelium::Mycelium;
use crate::parse::{SystemCpu, parse_pgbench};
use crate::pgbench::{self, QueryMode, Target, WORKLOADS, Workload};
use crate::pgbouncer::{self, PgBouncer};
use crate::postgres::Postgres;
use crate::procfs;
use crate::relay::Relay;
use crate::replication;
use crate::report::{self, Report};
use crate::sharded;
use crate::workloads::{self, OpMeasurement, TESTS};

pub async fn all(settings: Settings) -> anyhow::Result<()> {
    tokio::select! {
        result = run(&settings) => result,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the servers were stopped"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    Direct,
    Relay,
    PgBouncer,
    /// `mycelium up --backend postgres --nodes 1` on the benchmark's PostgreSQL.
    MyceliumPg1,
    /// One `mycelium node` process on the benchmark's PostgreSQL and a `mycelium proxy`
    /// process in front of it: the configuration issue 9's targets are stated for.
    MyceliumPg1Split,
    /// As [`Setup::MyceliumPg1Split`], the proxy reaching the node over its Unix socket.
    MyceliumPg1Unix,
    /// `mycelium up --backend postgres --nodes 2`, pgbench's tables sharded over both.
    MyceliumPg2,
    /// `mycelium up`: three SQLite nodes, pgbench's tables unsharded (on one node).
    MyceliumSqlite,
}

impl Setup {
    pub const ALL: [Setup; 8] = [
        Setup::Direct,
        Setup::Relay,
        Setup::PgBouncer,
        Setup::MyceliumPg1,
        Setup::MyceliumPg1Split,
        Setup::MyceliumPg1Unix,
        Setup::MyceliumPg2,
        Setup::MyceliumSqlite,
    ];

    /// The setup as a command-line word (`--setups`).
    pub fn key(self) -> &'static str {
        match self {
            Setup::Direct => "direct",
            Setup::Relay => "relay",
            Setup::PgBouncer => "pgbouncer",
            Setup::MyceliumPg1 => "pg1",
            Setup::MyceliumPg1Split => "pg1-split",
            Setup::MyceliumPg1Unix => "pg1-unix",
            Setup::MyceliumPg2 => "pg2",
            Setup::MyceliumSqlite => "sqlite",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Setup::Direct => "postgres (direct)",
            Setup::Relay => "tcp relay",
            Setup::PgBouncer => "pgbouncer",
            Setup::MyceliumPg1 => "mycelium 1 pg node",
            Setup::MyceliumPg1Split => "mycelium proxy + 1 pg node, separate processes",
            Setup::MyceliumPg1Unix => "mycelium proxy + 1 pg node, separate, Unix socket",
            Setup::MyceliumPg2 => "mycelium 2 pg shards",
            Setup::MyceliumSqlite => "mycelium 3 sqlite nodes",
        }
    }

    /// Whether PostgreSQL does this setup's storage work (all but Mycelium on SQLite), so
    /// that its CPU is part of the server's.
    pub fn uses_postgres(self) -> bool {
        self != Setup::MyceliumSqlite
    }

    fn mycelium_index(self) -> Option<usize> {
        match self {
            Setup::MyceliumPg1 => Some(0),
            Setup::MyceliumPg2 => Some(1),
            Setup::MyceliumSqlite => Some(2),
            _ => None,
        }
    }
}

/// One pgbench run and the CPU every process spent while it ran.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Measurement {
    pub setup: &'static str,
    pub workload: &'static str,
    pub round: u32,
    pub tps: f64,
    pub latency_ms: f64,
    pub transactions: u64,
    pub failed: u64,
    /// Wall time from just before pgbench started to just after it ended (and the server's
    /// backends were reaped).
    pub wall_s: f64,
    /// The proxy's own CPU: mycelium (proxy and nodes: the `mycelium up` process, or the
    /// `mycelium proxy` and `mycelium node` processes together; with PostgreSQL nodes the
    /// backends serving them are in `postgres_cpu_s`), pgbouncer, or this process for the
    /// relay.
    pub proxy_cpu_s: Option<f64>,
    /// With proxy and nodes in separate processes: the `mycelium proxy` process's part of
    /// `proxy_cpu_s`.
    pub proxy_process_cpu_s: Option<f64>,
    /// With proxy and nodes in separate processes: the `mycelium node` processes' part of
    /// `proxy_cpu_s`.
    pub node_processes_cpu_s: Option<f64>,
    /// PostgreSQL: the postmaster and all its children.
    pub postgres_cpu_s: f64,
    /// pgbench itself.
    pub client_cpu_s: f64,
    /// This benchmark process (the relay runs in it).
    pub bench_cpu_s: f64,
    /// CPU time of every other user-space process on the machine (builds, editors...): large
    /// values mean the numbers were disturbed.
    pub other_cpu_s: f64,
    /// irq + softirq time (loopback networking is partly here, not in any process).
    pub interrupt_cpu_s: f64,
    pub steal_s: f64,
    /// The machine's capacity over the run: wall time × CPUs.
    pub capacity_cpu_s: f64,
}

/// Processes whose CPU time is read around every run.
struct Probe {
    ticks_per_second: f64,
    postmaster: u32,
    /// The proxies and Mycelium's node processes, with what they are (for errors).
    servers: Vec<(&'static str, u32)>,
}

struct Sample {
    at: Instant,
    system: SystemCpu,
    bench: u64,
    children: u64,
    postgres: u64,
    /// By pid, every process of [`Probe::servers`].
    servers: HashMap<u32, u64>,
    others: HashMap<u32, u64>,
}

impl Probe {
    fn sample(&self) -> anyhow::Result<Sample> {
        let me = procfs::self_stat()?;
        let mut servers = HashMap::new();
        for (what, pid) in &self.servers {
            let ticks = procfs::process_ticks(*pid)
                .with_context(|| format!("{what} (pid {pid}) is gone"))?;
            servers.insert(*pid, ticks);
        }
        let ours: HashSet<u32> = [std::process::id(), self.postmaster]
            .into_iter()
            .chain(self.servers.iter().map(|(_, pid)| *pid))
            .collect();
        let parents: HashSet<u32> = [std::process::id(), self.postmaster].into();
        Ok(Sample {
            others: procfs::other_processes_ticks(&ours, &parents)?,
            at: Instant::now(),
            system: procfs::system_cpu()?,
            bench: me.own,
            children: me.children,
            postgres: procfs::postgres_ticks(self.postmaster)?,
            servers,
        })
    }

    fn seconds(&self, ticks: u64) -> f64 {
        ticks as f64 / self.ticks_per_second
    }

    /// CPU seconds process `pid` of [`Probe::servers`] spent between two samples.
    fn server_seconds(&self, before: &Sample, after: &Sample, pid: u32) -> f64 {
        let ticks = |sample: &Sample| sample.servers.get(&pid).copied().unwrap_or(0);
        self.seconds(ticks(after).saturating_sub(ticks(before)))
    }
}

/// Whose CPU is a setup's proxy's.
enum ProxyCpu {
    /// Direct PostgreSQL: no proxy.
    None,
    /// This process, where the relay runs.
    Bench,
    /// One process: PgBouncer, or `mycelium up` with its nodes.
    Process(u32),
    /// A `mycelium proxy` process and its `mycelium node` processes, counted together.
    Split { proxy: u32, nodes: Vec<u32> },
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(1))
        .unwrap_or(1)
}

/// The servers of the run and which one serves which setup and query mode.
struct Servers {
    postgres: Postgres,
    relay: Relay,
    /// Transaction pooling (simple protocol), then session pooling (prepared statements
    /// need it: PgBouncer 1.18 cannot keep them in transaction mode).
    pgbouncer: Option<(PgBouncer, PgBouncer)>,
    /// By [`Setup::mycelium_index`].
    mycelium: [Mycelium; 3],
    /// [`Setup::MyceliumPg1Split`].
    split: ProcessCluster,
    /// [`Setup::MyceliumPg1Unix`].
    split_unix: ProcessCluster,
}

impl Servers {
    fn setups(&self) -> Vec<Setup> {
        let mut setups = vec![Setup::Direct, Setup::Relay];
        if self.pgbouncer.is_some() {
            setups.push(Setup::PgBouncer);
        }
        setups.extend([
            Setup::MyceliumPg1,
            Setup::MyceliumPg1Split,
            Setup::MyceliumPg1Unix,
            Setup::MyceliumPg2,
            Setup::MyceliumSqlite,
        ]);
        setups
    }

    /// The target, and whose CPU is the proxy's.
    fn target(&self, setup: Setup, mode: QueryMode) -> anyhow::Result<(Target, ProxyCpu)> {
        Ok(match setup {
            Setup::Direct => (self.postgres.target(), ProxyCpu::None),
            Setup::Relay => (
                Target {
                    port: self.relay.port,
                    ..self.postgres.target()
                },
                ProxyCpu::Bench,
            ),
            Setup::PgBouncer => {
                let (tx, session) = self
                    .pgbouncer
                    .as_ref()
                    .context("the pgbouncer setup without pgbouncer")?;
                let bouncer = match mode {
                    QueryMode::Simple => tx,
                    QueryMode::Prepared => session,
                };
                (bouncer.target(), ProxyCpu::Process(bouncer.pid))
            }
            Setup::MyceliumPg1 | Setup::MyceliumPg2 | Setup::MyceliumSqlite => {
                let index = setup.mycelium_index().context("a mycelium setup")?;
                let mycelium = &self.mycelium[index];
                (mycelium.target(), ProxyCpu::Process(mycelium.pid))
            }
            Setup::MyceliumPg1Split | Setup::MyceliumPg1Unix => {
                let cluster = match setup {
                    Setup::MyceliumPg1Split => &self.split,
                    _ => &self.split_unix,
                };
                (
                    cluster.target(),
                    ProxyCpu::Split {
                        proxy: cluster.proxy_pid(),
                        nodes: cluster.node_pids(),
                    },
                )
            }
        })
    }
}

fn progress(text: String) {
    eprintln!("[{}] {text}", chrono::Local::now().format("%H:%M:%S"));
}

/// The replication section when the run includes it; its failures and notes join the run's.
async fn replication_section(
    settings: &Settings,
    failures: &mut usize,
    notes: &mut Vec<String>,
) -> Vec<replication::ReplMeasurement> {
    if !settings.runs_replication() {
        return Vec::new();
    }
    let outcome = replication::run(settings, &progress).await;
    *failures += outcome.failures;
    notes.extend(outcome.notes);
    outcome.measurements
}

/// `--workloads replication` and/or `operations` alone: their own clusters, nothing else.
async fn sections_only(settings: &Settings) -> anyhow::Result<()> {
    let started = chrono::Local::now();
    let mut notes = Vec::new();
    let mut failures = 0;
    let mut operations = Vec::new();
    if settings.runs_operations() {
        progress(format!(
            "mycelium up, 3 SQLite nodes ({})",
            settings.mycelium.display()
        ));
        let sqlite = Mycelium::start(&settings.mycelium, &[], &[])?;
        let outcome = sharded_workloads(&sqlite, settings, &mut notes, &progress).await;
        failures += outcome.failures;
        operations = outcome.measurements;
    }
    let replicated = replication_section(settings, &mut failures, &mut notes).await;
    let report = Report::new(
        started,
        settings,
        cpus(),
        versions(settings),
        Vec::new(),
        Vec::new(),
        operations,
        replicated,
        Vec::new(),
        notes,
    );
    report::write(&report, &settings.out)?;
    progress(format!(
        "wrote {}",
        settings.out.join("results.json").display()
    ));
    anyhow::ensure!(
        failures == 0,
        "{failures} measurement(s) failed; the notes of the report say which"
    );
    Ok(())
}

async fn run(settings: &Settings) -> anyhow::Result<()> {
    if settings.sections_only() {
        return sections_only(settings).await;
    }
    let started = chrono::Local::now();
    procfs::ensure_open_files(u64::from(settings.connections) * 2 + 1000)?;
    let mut notes = Vec::new();

    progress(format!(
        "PostgreSQL 15: initdb, start, pgbench -i -s {}",
        settings.scale
    ));
    let postgres = Postgres::start(free_port()?, 200)?;
    let init_postgres = pgbench::initialize(&postgres.target(), settings.scale).await?;
    progress(format!(
        "mycelium up --backend postgres --nodes 1 ({}), pgbench -i -s {}",
        settings.mycelium.display(),
        settings.scale
    ));
    let pg1_url = postgres.url("mycelium_pg1");
    let pg1 = Mycelium::start(
        &settings.mycelium,
        &[
            "--backend",
            "postgres",
            "--nodes",
            "1",
            "--pg-url",
            &pg1_url,
        ],
        &[],
    )?;
    let init_pg1 = pgbench::initialize(&pg1.target(), settings.scale).await?;
    progress(format!(
        "mycelium node (PostgreSQL database {SPLIT_DATABASES}_{}) + mycelium proxy, separate \
         processes, pgbench -i -s {}",
        SPLIT_NODES[0].0, settings.scale
    ));
    let start_split = |prefix, link| {
        ProcessCluster::start(
            &settings.mycelium,
            &SPLIT_NODES,
            &Storage::Postgres {
                server: &postgres,
                prefix,
            },
            "",
            link,
        )
    };
    let split = start_split(SPLIT_DATABASES, Link::Tcp)?;
    let init_split = pgbench::initialize(&split.target(), settings.scale).await?;
    progress(format!(
        "the same over the node's Unix socket (database {SPLIT_UNIX_DATABASES}_{}), pgbench -i \
         -s {}",
        SPLIT_NODES[0].0, settings.scale
    ));
    let split_unix = start_split(SPLIT_UNIX_DATABASES, Link::UnixSocket)?;
    let init_split_unix = pgbench::initialize(&split_unix.target(), settings.scale).await?;
    progress(format!(
        "mycelium up --backend postgres --nodes 2, pgbench tables sharded, scale {}",
        settings.scale
    ));
    let pg2_url = postgres.url("mycelium_pg2");
    let pg2 = Mycelium::start(
        &settings.mycelium,
        &[
            "--backend",
            "postgres",
            "--nodes",
            "2",
            "--pg-url",
            &pg2_url,
        ],
        &[],
    )?;
    let init_pg2 = sharded::initialize(&pg2.target(), settings.scale).await?;
    notes.push(sharded_note(&pg2, &postgres).await?);
    progress(format!(
        "mycelium up (3 SQLite nodes), pgbench -i -s {}",
        settings.scale
    ));
    let sqlite = Mycelium::start(&settings.mycelium, &[], &[])?;
    let init_sqlite = pgbench::initialize(&sqlite.target(), settings.scale).await?;
    progress("waiting for every Mycelium replica to apply the load".to_owned());
    let mut caught_up = Vec::new();
    for (name, mycelium) in [
        ("mycelium 1 pg node", &pg1),
        ("mycelium 2 pg shards", &pg2),
        ("mycelium 3 sqlite nodes", &sqlite),
    ] {
        let took = mycelium
            .wait_for_replicas(Duration::from_secs(600))
            .await
            .with_context(|| format!("{name}: replicas did not catch up with the load"))?;
        caught_up.push(format!("{name} {:.1} s", took.as_secs_f64()));
    }
    notes.push(format!(
        "Measurements start once every replica has applied the load (waited: {}).",
        caught_up.join(", ")
    ));
    let relay = Relay::start(postgres.socket()).await?;
    let max_clients = settings.connections + 500;
    let pgbouncer = if Path::new(pgbouncer::BINARY).is_file() {
        let tx = PgBouncer::start(
            postgres.dir(),
            free_port()?,
            postgres.port,
            "transaction",
            max_clients,
        )?;
        let session = PgBouncer::start(
            postgres.dir(),
            free_port()?,
            postgres.port,
            "session",
            max_clients,
        )?;
        Some((tx, session))
    } else {
        notes.push(format!(
            "PgBouncer skipped: {} is missing (Debian package `pgbouncer`).",
            pgbouncer::BINARY
        ));
        None
    };
    let servers = Servers {
        postgres,
        relay,
        pgbouncer,
        mycelium: [pg1, pg2, sqlite],
        split,
        split_unix,
    };
    let mut processes: Vec<(&'static str, u32)> = servers
        .mycelium
        .iter()
        .map(|mycelium| ("mycelium up", mycelium.pid))
        .collect();
    for cluster in [&servers.split, &servers.split_unix] {
        processes.push(("mycelium proxy", cluster.proxy_pid()));
        processes.extend(
            cluster
                .node_pids()
                .into_iter()
                .map(|pid| ("mycelium node", pid)),
        );
    }
    processes.extend(
        servers
            .pgbouncer
            .iter()
            .flat_map(|(tx, session)| [("pgbouncer", tx.pid), ("pgbouncer", session.pid)]),
    );
    let probe = Probe {
        ticks_per_second: procfs::clock_ticks_per_second(),
        postmaster: servers.postgres.postmaster,
        servers: processes,
    };
    let mut setups = servers.setups();
    if !settings.setups.is_empty() {
        setups.retain(|setup| settings.setups.contains(&setup.name()));
    }
    let chosen = settings.matrix_workloads();
    let workloads: Vec<&Workload> = WORKLOADS
        .iter()
        .filter(|w| chosen.is_empty() || chosen.contains(&w.name))
        .collect();
    anyhow::ensure!(
        !setups.is_empty() && !workloads.is_empty(),
        "nothing to measure: no selected setup is available"
    );

    // Warm-up: caches, connection pools, plan caches. Not measured.
    let warm_up = if settings.quick { 1 } else { 3 };
    for setup in &setups {
        for workload in [&WORKLOADS[2], &WORKLOADS[3]] {
            progress(format!("warm-up: {} / {}", setup.name(), workload.name));
            let (target, _) = servers.target(*setup, workload.mode)?;
            let output = pgbench::measure(&target, workload, warm_up).await?;
            anyhow::ensure!(
                output.success,
                "warm-up of {} failed: {}",
                setup.name(),
                output.describe()
            );
        }
    }

    // Measurements that failed: noted in the report, and the run's exit status.
    let mut failures = 0;
    let mut measurements = Vec::new();
    let total = settings.rounds as usize * workloads.len() * setups.len();
    for round in 0..settings.rounds {
        for (index, workload) in workloads.iter().copied().enumerate() {
            let mut order = setups.clone();
            order.rotate_left((round as usize + index) % setups.len());
            for setup in order {
                progress(format!(
                    "[{}/{total}] round {} {} / {}",
                    measurements.len() + 1,
                    round + 1,
                    setup.name(),
                    workload.name
                ));
                match measure(&servers, &probe, setup, workload, round, settings.seconds).await {
                    Ok(measurement) => {
                        if measurement.failed > 0 {
                            notes.push(format!(
                                "{} / {} round {}: {} failed transactions.",
                                setup.name(),
                                workload.name,
                                round + 1,
                                measurement.failed
                            ));
                        }
                        measurements.push(measurement);
                    }
                    Err(e) => {
                        failures += 1;
                        progress(format!("  FAILED: {e:#}"));
                        notes.push(format!(
                            "{} / {} round {} failed: {}",
                            setup.name(),
                            workload.name,
                            round + 1,
                            format!("{e:#}").lines().next().unwrap_or_default()
                        ));
                    }
                }
            }
        }
    }
    let operations = if !settings.runs_operations() {
        notes.push(
            "Only part of the pgbench matrix was run (--setups/--workloads): no point \
             operations, transfers, scattered reads or memory."
                .to_owned(),
        );
        Vec::new()
    } else {
        let operations =
            sharded_workloads(&servers.mycelium[2], settings, &mut notes, &progress).await;
        failures += operations.failures;
        operations.measurements
    };
    let Servers {
        postgres,
        relay,
        pgbouncer,
        mycelium,
        split,
        split_unix,
    } = servers;
    // Told first, so that their processes stop while the `mycelium up` ones are waited for.
    split.terminate();
    split_unix.terminate();
    drop(mycelium);
    drop(split);
    drop(split_unix);
    drop(relay);

    let replicated = replication_section(settings, &mut failures, &mut notes).await;

    let mut memory = Vec::new();
    if !settings.matrix_only() {
        failures += measure_memory(
            settings,
            pgbouncer.as_ref(),
            &mut memory,
            &mut notes,
            &progress,
        )
        .await?;
    }
    drop(pgbouncer);
    drop(postgres);

    let report = Report::new(
        started,
        settings,
        cpus(),
        versions(settings),
        vec![
            ("postgres (pgbench -i)", init_postgres.as_secs_f64()),
            ("mycelium 1 pg node (pgbench -i)", init_pg1.as_secs_f64()),
            (
                "mycelium proxy + 1 pg node, separate processes (pgbench -i)",
                init_split.as_secs_f64(),
            ),
            (
                "mycelium proxy + 1 pg node, separate, Unix socket (pgbench -i)",
                init_split_unix.as_secs_f64(),
            ),
            (
                "mycelium 2 pg shards (CREATE TABLE with policies + pgbench -i -I gv)",
                init_pg2.as_secs_f64(),
            ),
            (
                "mycelium 3 sqlite nodes (pgbench -i)",
                init_sqlite.as_secs_f64(),
            ),
        ],
        measurements,
        operations,
        replicated,
        memory,
        notes,
    );
    report::write(&report, &settings.out)?;
    progress(format!(
        "wrote {} and {}",
        settings.out.join("results.json").display(),
        settings.out.join("ratios.svg").display()
    ));
    anyhow::ensure!(
        failures == 0,
        "{failures} measurement(s) failed; the notes of the report say which"
    );
    Ok(())
}

/// The node of [`Setup::MyceliumPg1Split`], a validator as `mycelium up --nodes 1` makes it.
const SPLIT_NODES: [(&str, &str); 1] = [("n1", "validator")];

/// The prefix of the databases of [`Setup::MyceliumPg1Split`]'s nodes (`mycelium_pg1split_n1`).
const SPLIT_DATABASES: &str = "mycelium_pg1split";

/// The prefix of the databases of [`Setup::MyceliumPg1Unix`]'s nodes.
const SPLIT_UNIX_DATABASES: &str = "mycelium_pg1unix";

/// Memory per idle connection: a fresh `mycelium up`, then PgBouncer; returns the failures.
async fn measure_memory(
    settings: &Settings,
    pgbouncer: Option<&(PgBouncer, PgBouncer)>,
    memory: &mut Vec<memory::MemoryResult>,
    notes: &mut Vec<String>,
    progress: &impl Fn(String),
) -> anyhow::Result<usize> {
    let mut failures = 0;
    progress(format!(
        "memory: a fresh mycelium up, then {} idle connections",
        settings.connections
    ));
    let max = (settings.connections + 1000).to_string();
    let fresh = Mycelium::start(
        &settings.mycelium,
        &[],
        &[("MYCELIUM_PROXY__MAX_CONNECTIONS", max.as_str())],
    )?;
    match memory::idle_connections("mycelium", fresh.pid, &fresh.target(), settings.connections)
        .await
    {
        Ok(result) => memory.push(result),
        Err(e) => {
            failures += 1;
            notes.push(format!("mycelium memory measurement failed: {e:#}"));
        }
    }
    drop(fresh);
    if let Some((tx, _)) = pgbouncer {
        progress(format!(
            "memory: pgbouncer with {} idle connections",
            settings.connections
        ));
        match memory::idle_connections(
            "pgbouncer (transaction)",
            tx.pid,
            &tx.target(),
            settings.connections,
        )
        .await
        {
            Ok(result) => memory.push(result),
            Err(e) => {
                failures += 1;
                notes.push(format!("pgbouncer memory measurement failed: {e:#}"));
            }
        }
    }
    Ok(failures)
}

/// One pgbench run against `setup`, with the CPU every process spent during it.
async fn measure(
    servers: &Servers,
    probe: &Probe,
    setup: Setup,
    workload: &Workload,
    round: u32,
    seconds: u32,
) -> anyhow::Result<Measurement> {
    let (target, proxy) = servers.target(setup, workload.mode)?;
    if !workload.select_only {
        pgbench::tidy_before_tpcb(&target).await?;
    }
    // Let the tidy-up's backend end before the first sample.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = probe.sample()?;
    let output = pgbench::measure(&target, workload, seconds).await?;
    // Let the server's backends end and be reaped, so their CPU time is in the postmaster's.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = probe.sample()?;
    anyhow::ensure!(output.success, "pgbench failed: {}", output.describe());
    let summary = parse_pgbench(&output.stdout)
        .map_err(|e| anyhow::anyhow!("cannot read pgbench's output: {e}\n{}", output.describe()))?;

    let ticks = |f: fn(&Sample) -> u64| probe.seconds(f(&after).saturating_sub(f(&before)));
    let bench_cpu_s = ticks(|s| s.bench);
    let client_cpu_s = ticks(|s| s.children);
    let postgres_cpu_s = ticks(|s| s.postgres);
    let server_s = |pid: u32| probe.server_seconds(&before, &after, pid);
    let (proxy_cpu_s, proxy_process_cpu_s, node_processes_cpu_s) = match proxy {
        ProxyCpu::None => (None, None, None),
        ProxyCpu::Bench => (Some(bench_cpu_s), None, None),
        ProxyCpu::Process(pid) => (Some(server_s(pid)), None, None),
        ProxyCpu::Split { proxy, nodes } => {
            let proxy_s = server_s(proxy);
            let nodes_s: f64 = nodes.into_iter().map(server_s).sum();
            (Some(proxy_s + nodes_s), Some(proxy_s), Some(nodes_s))
        }
    };
    let wall_s = after.at.duration_since(before.at).as_secs_f64();
    Ok(Measurement {
        setup: setup.name(),
        workload: workload.name,
        round: round + 1,
        tps: summary.tps,
        latency_ms: summary.latency_ms,
        transactions: summary.transactions,
        failed: summary.failed,
        wall_s,
        proxy_cpu_s,
        proxy_process_cpu_s,
        node_processes_cpu_s,
        postgres_cpu_s,
        client_cpu_s,
        bench_cpu_s,
        other_cpu_s: probe.seconds(procfs::ticks_between(&before.others, &after.others)),
        interrupt_cpu_s: ticks(|s| s.system.interrupts),
        steal_s: ticks(|s| s.system.steal),
        capacity_cpu_s: wall_s * f64::from(cpus()),
    })
}

/// Versions of the tools, for the record.
fn versions(settings: &Settings) -> Vec<(String, String)> {
    let mut versions = Vec::new();
    let mut version = |name: &str, program: &str, args: &[&str]| {
        if let Ok(output) = std::process::Command::new(program).args(args).output() {
            let text = String::from_utf8_lossy(&output.stdout);
            if let Some(line) = text.lines().next().filter(|l| !l.is_empty()) {
                versions.push((name.to_owned(), line.trim().to_owned()));
            }
        }
    };
    version("pgbench", "pgbench", &["--version"]);
    version("pgbouncer", pgbouncer::BINARY, &["--version"]);
    version(
        "mycelium",
        &settings.mycelium.display().to_string(),
        &["--version"],
    );
    // The commit of the tree mycelium-bench was built from (usually mycelium's too).
    version(
        "bench source commit",
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    version("kernel", "uname", &["-sr"]);
    versions
}

/// Where the two-node setup put pgbench's rows: shards per node and accounts per node, counted
/// in each node's own database.
async fn sharded_note(mycelium: &Mycelium, postgres: &Postgres) -> anyhow::Result<String> {
    let client = mycelium.target().connect().await?;
    let mut parts = Vec::new();
    for (table, key) in sharded::POLICIES {
        parts.push(format!(
            "{table} by {key} ({})",
            sharded::shards_per_node(&sharded::primaries(&client, table).await?)
        ));
    }
    let mut accounts = Vec::new();
    for node in ["n1", "n2"] {
        let rows = postgres
            .count_rows(&format!("mycelium_pg2_{node}"), "pgbench_accounts")
            .await?;
        accounts.push(format!("{node} {rows}"));
    }
    Ok(format!(
        "mycelium 2 pg shards: pgbench's tables have {} hash shards each, every table by its \
         own id and history by aid: {}; pgbench_accounts rows per node: {}. Created by the bench \
         (CREATE TABLE ... WITH (mycelium.shard_keys, mycelium.shards)), loaded by \
         pgbench -i -I gv (COPY, routed row by row to the shards).",
        sharded::SHARDS,
        parts.join("; "),
        accounts.join(", ")
    ))
}

struct Operations {
    measurements: Vec<OpMeasurement>,
    failures: usize,
}

/// Point operations, transfers and scattered reads on the three-SQLite-node Mycelium (see
/// `workloads`), in rounds with the order of the setups rotated. A failure becomes a note.
async fn sharded_workloads(
    mycelium: &Mycelium,
    settings: &Settings,
    notes: &mut Vec<String>,
    progress: &impl Fn(String),
) -> Operations {
    let rows = if settings.quick { 20_000 } else { 100_000 };
    progress(format!(
        "point/transfer/scatter tables on mycelium 3 sqlite nodes ({rows} rows) and rusqlite"
    ));
    let prepared = match workloads::prepare(mycelium, rows).await {
        Ok(prepared) => prepared,
        Err(e) => {
            progress(format!("  FAILED: {e:#}"));
            notes.push(format!("point/transfer/scatter workloads not run: {e:#}"));
            return Operations {
                measurements: Vec::new(),
                failures: 1,
            };
        }
    };
    let mut failures = 0;
    notes.extend(prepared.notes.iter().cloned());
    let mut measurements = Vec::new();
    for round in 1..=settings.rounds {
        for (index, test) in TESTS.iter().enumerate() {
            let mut order = test.setups().to_vec();
            let shift = (round as usize + index) % order.len();
            order.rotate_left(shift);
            for setup in order {
                progress(format!("round {round} {setup} / {}", test.name));
                match prepared
                    .measure(mycelium, test, setup, round, settings.seconds)
                    .await
                {
                    Ok(measurement) => {
                        if measurement.failed > 0 {
                            notes.push(format!(
                                "{setup} / {} round {round}: {} failed transactions.",
                                test.name, measurement.failed
                            ));
                        }
                        measurements.push(measurement);
                    }
                    Err(e) => {
                        failures += 1;
                        progress(format!("  FAILED: {e:#}"));
                        notes.push(format!(
                            "{setup} / {} round {round} failed: {}",
                            test.name,
                            format!("{e:#}").lines().next().unwrap_or_default()
                        ));
                    }
                }
            }
        }
    }
    Operations {
        measurements,
        failures,
    }
}
