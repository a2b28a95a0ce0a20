//! A throwaway PostgreSQL 15 server in a temporary directory, run as the `postgres` user (root
//! may not run it). It is stopped when the guard is dropped, also on error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use tempfile::TempDir;

use crate::pgbench::Target;

const BIN: &str = "/usr/lib/postgresql/15/bin";
pub const USER: &str = "bench";
pub const PASSWORD: &str = "bench";
pub const DATABASE: &str = "bench";

/// `program` run as the `postgres` user.
pub fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(program)
        .stdin(Stdio::null());
    command
}

/// A temporary directory the `postgres` user owns: the server's data directory, its socket,
/// and PgBouncer's files live in it.
pub fn postgres_owned_tempdir() -> anyhow::Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("mycelium-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let status = Command::new("chown")
        .arg("postgres:postgres")
        .arg(dir.path())
        .status()
        .context("cannot run chown")?;
    anyhow::ensure!(
        status.success(),
        "cannot give {} to the postgres user (is there a `postgres` user? this needs root)",
        dir.path().display()
    );
    Ok(dir)
}

pub struct Postgres {
    pub port: u16,
    pub postmaster: u32,
    data: PathBuf,
    log: PathBuf,
    running: bool,
    /// Removed after the server stopped (fields drop after `Drop::drop`).
    dir: TempDir,
}

impl Postgres {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn target(&self) -> Target {
        Target {
            port: self.port,
            user: USER,
            password: PASSWORD,
            dbname: DATABASE,
        }
    }

    /// The URL of database `database` on this server, for `mycelium up --pg-url`: through the
    /// server's Unix-domain socket (the host is its directory, percent-encoded), as a node
    /// deployed next to its PostgreSQL connects, and as the relay and PgBouncer connect.
    pub fn url(&self, database: &str) -> String {
        // The temporary directory's name has no other character a URL would need escaped.
        let dir = self.dir.path().display().to_string().replace('/', "%2F");
        format!(
            "postgres://{USER}:{PASSWORD}@{dir}:{}/{database}",
            self.port
        )
    }

    /// The server's Unix-domain socket (in its temporary directory, owned by `postgres`).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join(format!(".s.PGSQL.{}", self.port))
    }

    /// `SELECT count(*) FROM table` in `database` of this server (a Mycelium node's own
    /// database, read directly).
    pub async fn count_rows(&self, database: &str, table: &str) -> anyhow::Result<i64> {
        let conninfo = format!(
            "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname={database} \
             sslmode=disable",
            self.port
        );
        let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("cannot connect to database {database}"))?;
        let driver = tokio::spawn(connection);
        let row = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .with_context(|| format!("cannot count the rows of {table} in {database}"))?;
        drop(client);
        let _ = driver.await;
        Ok(row.get(0))
    }

    /// initdb, start on `port`, create the benchmark database. `max_prepared_transactions`
    /// is set (Mycelium's PostgreSQL nodes need it for two-phase commit); it only reserves
    /// shared memory and changes nothing for the direct baseline.
    pub fn start(port: u16, max_connections: u32) -> anyhow::Result<Postgres> {
        for tool in ["initdb", "pg_ctl"] {
            let path = Path::new(BIN).join(tool);
            anyhow::ensure!(
                path.is_file(),
                "{} is missing: install PostgreSQL 15 (Debian: apt-get install postgresql-15)",
                path.display()
            );
        }
        let dir = postgres_owned_tempdir()?;
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{PASSWORD}\n")).context("cannot write the pwfile")?;
        run_quietly(
            as_postgres(Path::new(BIN).join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    USER,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .args(["-E", "UTF8", "--locale=C", "--no-sync"]),
            "initdb",
        )?;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .context("cannot open postgresql.conf")?;
        writeln!(
            conf,
            "\n# mycelium-bench\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nmax_connections = {max_connections}\n\
             max_prepared_transactions = {max_connections}\n",
            dir.path().display()
        )?;
        drop(conf);
        let log = dir.path().join("postgres.log");
        // The guard exists before the start, so a failed start still gets a stop.
        let mut server = Postgres {
            port,
            postmaster: 0,
            data,
            log,
            running: true,
            dir,
        };
        run_quietly(
            as_postgres(Path::new(BIN).join("pg_ctl"))
                .arg("-D")
                .arg(&server.data)
                .arg("-l")
                .arg(&server.log)
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        )
        .with_context(|| server.log_tail())?;
        let pid_file = std::fs::read_to_string(server.data.join("postmaster.pid"))
            .context("cannot read postmaster.pid")?;
        server.postmaster = pid_file
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .context("no pid in postmaster.pid")?;
        run_quietly(
            Command::new("createdb")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER])
                .env("PGPASSWORD", PASSWORD)
                .env("PGSSLMODE", "disable")
                .arg(DATABASE),
            "createdb",
        )?;
        Ok(server)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "PostgreSQL log:\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }

    fn stop(&mut self) {
        if !std::mem::take(&mut self.running) {
            return;
        }
        let status = as_postgres(Path::new(BIN).join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("warning: pg_ctl stop failed ({status:?}); PostgreSQL may still run");
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a command to completion; on failure the error carries its output.
pub fn run_quietly(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
