//! `mycelium-bench`: pgbench against Mycelium (one PostgreSQL node in the proxy's process or in
//! a process of its own, two PostgreSQL shards, three SQLite nodes), PostgreSQL itself, a plain
//! TCP relay in front of PostgreSQL (the ceiling for any proxy) and PgBouncer, with the CPU
//! each server side spends per transaction; point operations against in-process SQLite,
//! cross-node transfers and scattered reads; WAL replication under load (writes/s with
//! `synchronous_replicas` 0 and 1, commit-to-apply latency); and the memory Mycelium holds per
//! idle client connection. See `bench/README.md`.

mod cluster;
mod memory;
mod mycelium;
mod parse;
mod pgbench;
mod pgbouncer;
mod postgres;
mod procfs;
mod relay;
mod replication;
mod report;
mod run;
mod sharded;
mod workloads;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

pub use parse::{PgbenchSummary, parse_pgbench};

#[derive(Parser)]
#[command(
    name = "mycelium-bench",
    about = "Benchmarks Mycelium against PostgreSQL, a TCP relay and PgBouncer"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything: pgbench throughput, latency and CPU per transaction, then memory per idle
    /// connection; writes a table to stdout and results.json + ratios.svg to --out.
    All(AllArgs),
}

#[derive(clap::Args, Clone, Debug)]
pub struct AllArgs {
    /// Short run to check that everything works: scale 1, one round of 1 s per measurement.
    #[arg(long)]
    pub quick: bool,
    /// Directory for results.json and ratios.svg.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// The `mycelium` binary; default: next to this executable.
    #[arg(long)]
    pub mycelium: Option<PathBuf>,
    /// pgbench scale factor (default 10, quick 1).
    #[arg(long)]
    pub scale: Option<u32>,
    /// Seconds per measurement (default 10, quick 1).
    #[arg(long)]
    pub seconds: Option<u32>,
    /// Rounds of every measurement; the median is reported (default 3, quick 1).
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Idle client connections opened for the memory measurement.
    #[arg(long, default_value_t = 2000)]
    pub connections: u32,
    /// Measure only these setups of the pgbench matrix, comma-separated: direct, relay,
    /// pgbouncer, pg1, pg1-split, pg1-unix, pg2, sqlite. With --setups or --workloads only the pgbench
    /// matrix runs (no memory), and replication and the point operations, transfers and
    /// scattered reads only when --workloads names them.
    #[arg(long, value_delimiter = ',')]
    pub setups: Vec<String>,
    /// Run only these workloads, comma-separated: the pgbench workloads select-simple-c1,
    /// select-prepared-c1, select-simple-c8, select-prepared-c8, tpcb-simple-c8, and/or the
    /// sections with clusters of their own: `replication` (three-node clusters) and
    /// `operations` (point reads and writes, transfers and scattered reads on three SQLite
    /// nodes). Those sections alone start no other server.
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<String>,
}

/// The settings of one run, defaults filled in.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Settings {
    pub quick: bool,
    pub scale: u32,
    pub seconds: u32,
    pub rounds: u32,
    pub connections: u32,
    /// The setups measured (all when empty).
    pub setups: Vec<&'static str>,
    /// The pgbench workloads run (all when empty).
    pub workloads: Vec<&'static str>,
    #[serde(skip)]
    pub out: PathBuf,
    #[serde(skip)]
    pub mycelium: PathBuf,
}

impl Settings {
    fn from_args(args: AllArgs) -> anyhow::Result<Settings> {
        let mycelium = match args.mycelium {
            Some(path) => {
                anyhow::ensure!(
                    path.is_file(),
                    "--mycelium {}: no such file",
                    path.display()
                );
                path
            }
            None => {
                let exe = std::env::current_exe().context("cannot find this executable")?;
                let path = exe.with_file_name("mycelium");
                anyhow::ensure!(
                    path.is_file(),
                    "no mycelium binary at {}: build it into the same target directory with \
                     `cargo build --release -p mycelium`, or pass --mycelium PATH",
                    path.display()
                );
                path
            }
        };
        let (scale, seconds, rounds) = if args.quick { (1, 1, 1) } else { (10, 10, 3) };
        let setups = args
            .setups
            .iter()
            .map(|key| {
                run::Setup::ALL
                    .into_iter()
                    .find(|setup| setup.key() == key.trim())
                    .map(run::Setup::name)
                    .with_context(|| {
                        format!(
                            "--setups {key}: no such setup; the setups are {}",
                            run::Setup::ALL.map(run::Setup::key).join(", ")
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()?;
        let workloads = args
            .workloads
            .iter()
            .map(|key| {
                if let Some(section) = [REPLICATION, OPERATIONS]
                    .into_iter()
                    .find(|section| key.trim() == *section)
                {
                    return Ok(section);
                }
                pgbench::WORKLOADS
                    .iter()
                    .find(|workload| workload.key() == key.trim())
                    .map(|workload| workload.name)
                    .with_context(|| {
                        let keys: Vec<String> = pgbench::WORKLOADS
                            .iter()
                            .map(pgbench::Workload::key)
                            .collect();
                        format!(
                            "--workloads {key}: no such workload; the workloads are {}, \
                             {REPLICATION}, {OPERATIONS}",
                            keys.join(", ")
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Settings {
            quick: args.quick,
            scale: args.scale.unwrap_or(scale),
            seconds: args.seconds.unwrap_or(seconds).max(1),
            rounds: args.rounds.unwrap_or(rounds).max(1),
            connections: args.connections,
            setups,
            workloads,
            out: args.out,
            mycelium,
        })
    }
}

/// The `--workloads` word of the replication section.
pub const REPLICATION: &str = "replication";

/// The `--workloads` word of the point operations, transfers and scattered reads.
pub const OPERATIONS: &str = "operations";

impl Settings {
    /// Whether only part of the pgbench matrix was asked for (no point operations, transfers,
    /// scattered reads or memory).
    pub fn matrix_only(&self) -> bool {
        !self.setups.is_empty() || !self.workloads.is_empty()
    }

    /// Whether the replication section runs: in a full run, or when `--workloads` names it.
    pub fn runs_replication(&self) -> bool {
        !self.matrix_only() || self.workloads.contains(&REPLICATION)
    }

    /// Whether the point operations, transfers and scattered reads run: in a full run, or
    /// when `--workloads` names them.
    pub fn runs_operations(&self) -> bool {
        !self.matrix_only() || self.workloads.contains(&OPERATIONS)
    }

    /// `--workloads` of sections with servers of their own only (replication, operations):
    /// no PostgreSQL, relay or PgBouncer starts.
    pub fn sections_only(&self) -> bool {
        self.setups.is_empty() && !self.workloads.is_empty() && self.matrix_workloads().is_empty()
    }

    /// The pgbench workloads asked for (all when empty).
    pub fn matrix_workloads(&self) -> Vec<&'static str> {
        self.workloads
            .iter()
            .copied()
            .filter(|w| *w != REPLICATION && *w != OPERATIONS)
            .collect()
    }
}

/// The entry point of the binary.
pub fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::All(args) => {
            let settings = Settings::from_args(args)?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(run::all(settings))
        }
    }
}
