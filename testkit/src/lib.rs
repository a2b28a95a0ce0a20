//! Test helpers shared by the integration suites (dev-only, never published).
//!
//! [`PgCluster`] is a throwaway PostgreSQL 15 server: `initdb` into a temporary directory, a
//! free port on 127.0.0.1, password authentication for the user [`PG_USER`], and
//! `max_prepared_transactions` set so that two-phase commit works. Postgres refuses to run as
//! root, and the suites run as root in CI, so the server runs as the `postgres` user (through
//! `runuser`) in a directory that user owns. Dropping the guard stops the server
//! (`pg_ctl stop -m immediate`) and removes the directory, also when the test panicked.
//!
//! `MYCELIUM_SKIP_POSTGRES=1` makes [`PgCluster::start_or_skip`] return `None`.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// Where the Debian/Ubuntu `postgresql-15` package installs the server binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The superuser of every throwaway cluster, and its password.
pub const PG_USER: &str = "mycelium";
pub const PG_PASSWORD: &str = "mycelium";
/// Set to `1` to skip the tests that need a PostgreSQL server.
pub const SKIP_VAR: &str = "MYCELIUM_SKIP_POSTGRES";

#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error(
        "{0} is missing: the PostgreSQL tests need PostgreSQL 15's server binaries \
         (Debian/Ubuntu: apt-get install postgresql-15), or set MYCELIUM_SKIP_POSTGRES=1 to \
         skip them"
    )]
    Missing(String),
    #[error("cannot prepare the throwaway PostgreSQL cluster: {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} failed ({status}):\n{output}")]
    Command {
        what: String,
        status: String,
        output: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestkitError {
    let what = what.into();
    move |source| TestkitError::Io { what, source }
}

/// A running throwaway PostgreSQL server; stopped and deleted on drop.
pub struct PgCluster {
    port: u16,
    data: PathBuf,
    log: PathBuf,
    running: bool,
    /// Removed after the server stopped (fields drop after `Drop::drop`).
    dir: TempDir,
}

impl PgCluster {
    /// Whether `MYCELIUM_SKIP_POSTGRES=1` asks to skip PostgreSQL tests.
    pub fn skipped() -> bool {
        std::env::var(SKIP_VAR).is_ok_and(|v| v == "1")
    }

    /// A new cluster with `max_prepared_transactions = 20`.
    pub fn start() -> Result<PgCluster, TestkitError> {
        PgCluster::start_with(&[("max_prepared_transactions", "20")])
    }

    /// [`PgCluster::start`], or `None` when PostgreSQL tests are skipped. A cluster that
    /// cannot start fails the test with the reason.
    #[expect(
        clippy::panic,
        reason = "a test helper: failing to start fails the test"
    )]
    pub fn start_or_skip() -> Option<PgCluster> {
        if PgCluster::skipped() {
            eprintln!("skipped: {SKIP_VAR}=1");
            return None;
        }
        match PgCluster::start() {
            Ok(cluster) => Some(cluster),
            Err(e) => panic!("{e}"),
        }
    }

    /// A new cluster with these `postgresql.conf` settings (name, value as written in the file).
    pub fn start_with(settings: &[(&str, &str)]) -> Result<PgCluster, TestkitError> {
        for tool in ["initdb", "pg_ctl", "createdb"] {
            let path = Path::new(PG_BIN).join(tool);
            if !path.is_file() {
                return Err(TestkitError::Missing(path.display().to_string()));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("mycelium-pg-")
            .tempdir()
            .map_err(io("create a temporary directory"))?;
        run(
            Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()),
            "chown postgres (is there a `postgres` user? this needs root)",
        )?;
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{PG_PASSWORD}\n")).map_err(io("write the pwfile"))?;
        run(
            as_postgres("initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    PG_USER,
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
            .map_err(io("open postgresql.conf"))?;
        let port = free_port()?;
        let mut text = format!(
            "\n# mycelium-testkit\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nmax_connections = 100\n",
            dir.path().display()
        );
        for (name, value) in settings {
            text.push_str(&format!("{name} = {value}\n"));
        }
        conf.write_all(text.as_bytes())
            .map_err(io("write postgresql.conf"))?;
        drop(conf);
        let log = dir.path().join("postgres.log");
        // The guard exists before the start, so a failed start still gets a stop.
        let mut cluster = PgCluster {
            port,
            data,
            log,
            running: false,
            dir,
        };
        cluster.restart()?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory holding the data directory, the socket and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `postgres://` URL for database `db` as the cluster's superuser.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// Creates database `name`.
    pub fn create_database(&self, name: &str) -> Result<(), TestkitError> {
        run(
            Command::new(Path::new(PG_BIN).join("createdb"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    PG_USER,
                ])
                .env("PGPASSWORD", PG_PASSWORD)
                .env("PGSSLMODE", "disable")
                .arg(name),
            "createdb",
        )
    }

    /// Stops the server the way a crash would: `pg_ctl stop -m immediate` (the postmaster and
    /// every backend quit at once, without a checkpoint; prepared transactions survive).
    pub fn kill_postmaster(&mut self) -> Result<(), TestkitError> {
        if !std::mem::take(&mut self.running) {
            return Ok(());
        }
        run(
            as_postgres("pg_ctl").arg("-D").arg(&self.data).args([
                "-m",
                "immediate",
                "-w",
                "-t",
                "60",
                "stop",
            ]),
            "pg_ctl stop -m immediate",
        )
    }

    /// Starts the server again (after [`PgCluster::kill_postmaster`]) on the same port and
    /// data; returns once it accepts connections.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        if self.running {
            return Ok(());
        }
        self.running = true;
        run(
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(&self.log)
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        )
        .map_err(|e| match e {
            TestkitError::Command {
                what,
                status,
                output,
            } => TestkitError::Command {
                what,
                status,
                output: format!("{output}\n{}", self.log_tail()),
            },
            other => other,
        })
    }

    /// The last lines of the server log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "PostgreSQL log ({}):\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        )
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Err(e) = self.kill_postmaster() {
            eprintln!("warning: the throwaway PostgreSQL may still run: {e}");
        }
    }
}

/// `tool` from [`PG_BIN`] run as the `postgres` user.
fn as_postgres(tool: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(Path::new(PG_BIN).join(tool));
    command
}

fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io("find a free port"))?
        .port();
    Ok(port)
}

/// Runs a command to completion; on failure the error carries its output.
fn run(command: &mut Command, what: &str) -> Result<(), TestkitError> {
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(io(format!("run {what}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(TestkitError::Command {
        what: what.to_owned(),
        status: output.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}
