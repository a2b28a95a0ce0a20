//! Running pgbench (and psql for the housekeeping between TPC-B runs) against one server.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::parse::parse_pgbench_log;

/// Where and as whom a libpq client connects (always 127.0.0.1, `sslmode=disable`).
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub port: u16,
    pub user: &'static str,
    pub password: &'static str,
    pub dbname: &'static str,
}

impl Target {
    /// A tokio-postgres connection string.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={} password={} dbname={} sslmode=disable",
            self.port, self.user, self.password, self.dbname
        )
    }

    /// A tokio-postgres client; its connection is driven by a task that ends with it.
    pub async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(&self.conninfo(), tokio_postgres::NoTls)
            .await
            .with_context(|| format!("cannot connect to port {} as {}", self.port, self.user))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryMode {
    Simple,
    Prepared,
}

impl QueryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            QueryMode::Simple => "simple",
            QueryMode::Prepared => "prepared",
        }
    }
}

/// One pgbench workload.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Workload {
    pub name: &'static str,
    /// `-S` (select only) rather than the default TPC-B script.
    pub select_only: bool,
    pub mode: QueryMode,
    pub clients: u32,
    pub threads: u32,
}

impl Workload {
    /// The name as a command-line word: `select-simple-c1`.
    pub fn key(&self) -> String {
        self.name.replace(' ', "-")
    }
}

pub const WORKLOADS: [Workload; 5] = [
    Workload {
        name: "select simple c1",
        select_only: true,
        mode: QueryMode::Simple,
        clients: 1,
        threads: 1,
    },
    Workload {
        name: "select prepared c1",
        select_only: true,
        mode: QueryMode::Prepared,
        clients: 1,
        threads: 1,
    },
    Workload {
        name: "select simple c8",
        select_only: true,
        mode: QueryMode::Simple,
        clients: 8,
        threads: 2,
    },
    Workload {
        name: "select prepared c8",
        select_only: true,
        mode: QueryMode::Prepared,
        clients: 8,
        threads: 2,
    },
    Workload {
        name: "tpcb simple c8",
        select_only: false,
        mode: QueryMode::Simple,
        clients: 8,
        threads: 2,
    },
];

/// A libpq client with a clean environment: no PG* variables leak in from the caller.
fn libpq_command(program: &str, target: &Target) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            command.env_remove(&name);
        }
    }
    command
        .env("PGPASSWORD", target.password)
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .env("LC_ALL", "C")
        .args(["-h", "127.0.0.1", "-p", &target.port.to_string()])
        .args(["-U", target.user])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
    pub status: String,
}

impl Output {
    pub fn describe(&self) -> String {
        format!(
            "exit status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout.trim_end(),
            tail(&self.stderr, 20)
        )
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn run(
    mut command: tokio::process::Command,
    what: &str,
    timeout: Duration,
) -> anyhow::Result<Output> {
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .with_context(|| format!("{what} did not finish within {timeout:?}"))?
        .with_context(|| format!("cannot run {what} (is it installed and on PATH?)"))?;
    Ok(Output {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        success: output.status.success(),
        status: output.status.to_string(),
    })
}

/// `pgbench -i -s SCALE`; returns how long it took.
pub async fn initialize(target: &Target, scale: u32) -> anyhow::Result<Duration> {
    initialize_steps(target, scale, None).await
}

/// `pgbench -i -s SCALE`, with only the initialization `steps` (`-I`) when given.
pub async fn initialize_steps(
    target: &Target,
    scale: u32,
    steps: Option<&str>,
) -> anyhow::Result<Duration> {
    let mut command = libpq_command("pgbench", target);
    command.args(["-i", "-q", "-s", &scale.to_string()]);
    if let Some(steps) = steps {
        command.args(["-I", steps]);
    }
    command.arg(target.dbname);
    let started = Instant::now();
    let what = format!("pgbench -i -s {scale} on port {}", target.port);
    let output = run(command, &what, Duration::from_secs(3600)).await?;
    anyhow::ensure!(output.success, "{what} failed: {}", output.describe());
    Ok(started.elapsed())
}

/// What pgbench's own vacuum step would do before a TPC-B run, done separately (and through
/// the same server) so that it stays out of the measured CPU time.
pub async fn tidy_before_tpcb(target: &Target) -> anyhow::Result<()> {
    let mut command = libpq_command("psql", target);
    command
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target.dbname])
        .args(["-c", "VACUUM pgbench_branches"])
        .args(["-c", "VACUUM pgbench_tellers"])
        .args(["-c", "TRUNCATE pgbench_history"]);
    let what = format!("psql (vacuum before TPC-B) on port {}", target.port);
    let output = run(command, &what, Duration::from_secs(600)).await?;
    anyhow::ensure!(output.success, "{what} failed: {}", output.describe());
    Ok(())
}

/// One timed pgbench run (`-n`: the vacuum step is [`tidy_before_tpcb`]'s job).
pub async fn measure(target: &Target, workload: &Workload, seconds: u32) -> anyhow::Result<Output> {
    let mut command = libpq_command("pgbench", target);
    command
        .args(["-n", "-T", &seconds.to_string()])
        .args(["-c", &workload.clients.to_string()])
        .args(["-j", &workload.threads.to_string()])
        .args(["-M", workload.mode.as_str()]);
    if workload.select_only {
        command.arg("-S");
    }
    command.arg(target.dbname);
    let what = format!("pgbench ({}) on port {}", workload.name, target.port);
    run(
        command,
        &what,
        Duration::from_secs(u64::from(seconds) + 300),
    )
    .await
}

/// A custom pgbench script (`-f`) and how to run it.
#[derive(Clone, Copy, Debug)]
pub struct Script<'a> {
    pub file: &'a Path,
    pub mode: QueryMode,
    pub clients: u32,
    pub threads: u32,
}

/// One timed run of a custom script with pgbench's per-transaction log (`-l`, written into
/// `log_dir`, which must be empty); returns the output and the sorted latencies in µs.
pub async fn measure_script(
    target: &Target,
    script: &Script<'_>,
    seconds: u32,
    log_dir: &Path,
) -> anyhow::Result<(Output, Vec<u64>)> {
    let prefix = log_dir.join("txn");
    let mut command = libpq_command("pgbench", target);
    command
        .args(["-n", "-T", &seconds.to_string()])
        .args(["-c", &script.clients.to_string()])
        .args(["-j", &script.threads.to_string()])
        .args(["-M", script.mode.as_str()])
        .arg("-f")
        .arg(script.file)
        .arg("-l")
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg(target.dbname);
    let what = format!(
        "pgbench -f {} on port {}",
        script.file.display(),
        target.port
    );
    let output = run(
        command,
        &what,
        Duration::from_secs(u64::from(seconds) + 300),
    )
    .await?;
    let mut latencies = Vec::new();
    for entry in
        std::fs::read_dir(log_dir).with_context(|| format!("cannot list {}", log_dir.display()))?
    {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read pgbench's log {}", path.display()))?;
        latencies.extend(parse_pgbench_log(&text));
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    latencies.sort_unstable();
    Ok((output, latencies))
}
