//! Starts the real `mycelium` binary on a free port with its own data directory, its nodes on
//! SQLite, on PostgreSQL, or on both ([`Cluster::start_on`]).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mycelium_testkit::PgCluster;

pub use crate::processes::Backend;
use crate::processes::ProcessCluster;

pub const PASSWORD: &str = "mycelium";

pub struct Cluster {
    child: Option<Child>,
    pub port: u16,
    pub metrics_port: u16,
    pub data_dir: PathBuf,
    env: Vec<(String, String)>,
    config: Option<PathBuf>,
    /// Extra arguments of `mycelium up`.
    args: Vec<String>,
    _temp: Option<tempfile::TempDir>,
    /// Where the nodes keep their data.
    pub backend: Backend,
    /// `Backend::Mixed`: separate node and proxy processes (`mycelium up` gives all its nodes
    /// one backend); `child` is then unused.
    processes: Option<ProcessCluster>,
    /// `Backend::Postgres`: the server holding the nodes' databases. Declared after `child`
    /// and `processes`, and stopped after them (the `Drop` below kills the child first).
    pg: Option<PgCluster>,
}

impl Cluster {
    /// `mycelium up` in a fresh temporary data directory.
    pub fn start() -> Cluster {
        Cluster::start_with_env(&[])
    }

    pub fn start_with_env(env: &[(&str, &str)]) -> Cluster {
        Cluster::start_with(env, None)
    }

    /// `mycelium up --config FILE` with `config` as the file's text.
    pub fn start_with_config(config: &str) -> Cluster {
        Cluster::start_with(&[], Some(config))
    }

    /// `mycelium up` with extra command-line arguments (`--backend postgres --pg-url ...`).
    pub fn start_with_args(args: &[&str]) -> Cluster {
        let mut cluster = Cluster::prepare(&[], None);
        cluster.args = args.iter().map(|a| (*a).to_owned()).collect();
        cluster.launch();
        cluster
    }

    fn start_with(env: &[(&str, &str)], config: Option<&str>) -> Cluster {
        let mut cluster = Cluster::prepare(env, config);
        cluster.launch();
        cluster
    }

    fn prepare(env: &[(&str, &str)], config: Option<&str>) -> Cluster {
        let temp = tempfile::tempdir().expect("tempdir");
        let config = config.map(|text| {
            let path = temp.path().join("mycelium.toml");
            std::fs::write(&path, text).expect("write config");
            path
        });
        let data_dir = temp.path().join("data");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Cluster {
            child: None,
            port: 0,
            metrics_port: 0,
            data_dir,
            env,
            config,
            args: Vec::new(),
            _temp: Some(temp),
            backend: Backend::Sqlite,
            processes: None,
            pg: None,
        }
    }

    fn launch(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mycelium"));
        command
            .arg("up")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        command.args(&self.args);
        let mut child = command.spawn().expect("spawn mycelium");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        assert!(
            line.contains("Mycelium is ready"),
            "unexpected first line: {line:?}"
        );
        let port = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .expect("port in ready line");
        self.port = port;
        self.metrics_port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .expect("metrics port in ready line");
        self.child = Some(child);
    }

    pub fn conn_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=mycelium password={PASSWORD} dbname=mycelium",
            self.port
        )
    }

    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.conn_string(), tokio_postgres::NoTls)
                .await
                .expect("connect");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Stops with SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) {
        if let Some(processes) = &mut self.processes {
            processes.stop_all();
        }
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let status = wait_with_timeout(&mut child, Duration::from_secs(15));
            assert!(
                status.is_some_and(|s| s.success()),
                "mycelium did not stop cleanly: {status:?}"
            );
        }
    }

    /// Kills the process with SIGKILL (no shutdown at all) and starts it again on the same
    /// port and data directory.
    pub fn crash_and_restart(&mut self) {
        if let Some(processes) = &mut self.processes {
            processes.restart_all();
            return;
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.launch();
    }

    /// Rewrites the config file and sends SIGHUP.
    pub fn reload(&self, config: &str) {
        assert!(self.processes.is_none(), "reload of a mixed cluster");
        let path = self.config.as_ref().expect("started with a config file");
        std::fs::write(path, config).expect("rewrite config");
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
    }

    /// Stops and starts again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        match &mut self.processes {
            Some(processes) => processes.restart_all(),
            None => self.launch(),
        }
    }

    /// The text of `GET /metrics` (of the proxy, which in `mycelium up` is also the nodes').
    pub fn metrics(&self) -> String {
        scrape(self.metrics_port)
    }

    /// The value of one sample line (`name{labels}` exactly as exposed), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        sample(&self.metrics(), series)
    }

    pub fn node_file(&self) -> PathBuf {
        self.data_dir.join("n1.sqlite")
    }

    pub fn data_path(&self) -> &Path {
        &self.data_dir
    }
}

/// The text of `GET /metrics` on `127.0.0.1:port`.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("metrics request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("metrics response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of one sample line of a metrics text, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

pub(crate) fn wait_with_timeout(
    child: &mut Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The rows of a simple query as text, each row's fields joined by `|` (NULL as `NULL`).
pub async fn text_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL"))
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(error: &tokio_postgres::Error) -> String {
    error
        .code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

impl Cluster {
    /// Connects as `user` with `password`; the error (e.g. 28P01) is the caller's to check.
    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user={} password={} dbname=mycelium",
                self.port,
                quote(user),
                quote(password)
            ),
            tokio_postgres::NoTls,
        )
        .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The audit log's current text, once it holds `expected` (it is written in the
    /// background); panics after a few seconds without it.
    pub fn audit_log_containing(&self, expected: &str) -> String {
        let path = self.data_dir.join("audit.log");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains(expected) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "audit log lacks {expected:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// --- Clusters on every backend: the front-end suites (wire.rs, clients.rs) run their scenarios
// on SQLite nodes, on PostgreSQL nodes and on a mix, with `on_every_backend!`. -------------------

impl Cluster {
    /// A cluster of three nodes on `backend`: `mycelium up` on SQLite files, or `mycelium up
    /// --backend postgres` with one database per node on a throwaway PostgreSQL server; for a
    /// mix, `mycelium node` processes (n2 on PostgreSQL, n1 and n3 on SQLite) behind a `mycelium
    /// proxy` (see `ProcessCluster::start_front_end`), since `up` gives all its nodes one
    /// backend. `None` when PostgreSQL is needed and `MYCELIUM_SKIP_POSTGRES=1`.
    pub fn start_on(backend: Backend) -> Option<Cluster> {
        Cluster::start_on_with_config(backend, None)
    }

    /// [`Cluster::start_on`] with `config` as the text of the configuration file (of `up`, or
    /// of the proxy of a mixed cluster).
    pub fn start_on_with_config(backend: Backend, config: Option<&str>) -> Option<Cluster> {
        match backend {
            Backend::Sqlite => Some(Cluster::start_with(&[], config)),
            Backend::Postgres => {
                let pg = PgCluster::start_or_skip()?;
                let mut cluster = Cluster::prepare(&[], config);
                cluster.args = vec![
                    "--backend".to_owned(),
                    "postgres".to_owned(),
                    "--pg-url".to_owned(),
                    pg.url("mycelium"),
                ];
                cluster.backend = backend;
                cluster.pg = Some(pg);
                cluster.launch();
                Some(cluster)
            }
            Backend::Mixed => {
                let processes = ProcessCluster::start_front_end(config.unwrap_or(""))?;
                let mut cluster = Cluster::prepare(&[], None);
                cluster.port = processes.port;
                cluster.metrics_port = processes.proxy.metrics_port();
                cluster.data_dir = processes.dir.path().join("proxy");
                cluster.backend = backend;
                cluster.processes = Some(processes);
                Some(cluster)
            }
        }
    }

    /// The sum of one sample over the nodes' metrics (all in `up`'s one endpoint, or one
    /// endpoint per node process).
    pub fn node_metric(&self, series: &str) -> f64 {
        match &self.processes {
            Some(processes) => processes
                .nodes
                .iter()
                .map(|node| sample(&scrape(node.metrics_port()), series))
                .sum(),
            None => self.metric(series),
        }
    }

    /// `SELECT count(*) FROM table` on each node's own store, n1 first, read directly (its
    /// SQLite file or its PostgreSQL database), not through the proxy.
    pub async fn counts_on_nodes(&self, table: &str) -> Vec<i64> {
        let sql = format!("SELECT count(*) FROM {table}");
        let mut counts = Vec::new();
        for index in 0..3 {
            let node = format!("n{}", index + 1);
            let count = match (&self.processes, &self.pg) {
                (Some(processes), _) => processes.node_ints(index, &sql).await[0][0],
                (None, Some(pg)) => {
                    let (client, connection) = tokio_postgres::connect(
                        &pg.url(&format!("mycelium_{node}")),
                        tokio_postgres::NoTls,
                    )
                    .await
                    .expect("connect to the node's database");
                    tokio::spawn(connection);
                    client
                        .query_one(sql.as_str(), &[])
                        .await
                        .unwrap_or_else(|e| panic!("{sql} on {node}: {e}"))
                        .get(0)
                }
                (None, None) => rusqlite::Connection::open_with_flags(
                    self.data_dir.join(format!("{node}.sqlite")),
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .and_then(|db| db.query_row(&sql, [], |row| row.get(0)))
                .unwrap_or_else(|e| panic!("{sql} on {node}: {e}")),
            };
            counts.push(count);
        }
        counts
    }
}
