//! A cluster of separate processes: three `mycelium node`s and a `mycelium proxy`, talking
//! mutual TLS, each of which a test can SIGKILL, freeze, arm with failpoints and restart. The
//! nodes keep their data in SQLite files, in databases of one throwaway PostgreSQL server, or
//! a mix of both.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub const NODES: [(&str, &str); 3] = [("n1", "validator"), ("n2", "validator"), ("n3", "miner")];

/// Where the nodes keep their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// n2 on PostgreSQL, n1 and n3 on SQLite.
    Mixed,
}

impl Backend {
    pub fn on_postgres(self, index: usize) -> bool {
        match self {
            Backend::Sqlite => false,
            Backend::Postgres => true,
            Backend::Mixed => index == 1,
        }
    }
}

/// One running member process.
pub struct Member {
    child: Child,
    pub first_line: String,
}

impl Member {
    /// Starts `mycelium ARGS` with extra environment and waits for its ready line.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Member {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mycelium"));
        command
            .args(args)
            // MYCELIUM_TEST_LOG (a RUST_LOG filter) makes the members say more.
            .env(
                "RUST_LOG",
                std::env::var("MYCELIUM_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn member");
        let stdout = child.stdout.take().expect("stdout");
        let mut first_line = String::new();
        BufReader::new(stdout)
            .read_line(&mut first_line)
            .expect("ready line");
        assert!(
            first_line.contains("is ready"),
            "unexpected first line of mycelium {args:?}: {first_line:?}"
        );
        Member { child, first_line }
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process exits within a few seconds (a failpoint aborted it).
    pub fn exited(&mut self) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }

    /// SIGSTOP / SIGCONT: the process keeps its sockets open but answers nothing.
    ///
    /// A stop takes effect when one of the process's threads handles the signal, which on a
    /// loaded machine can be milliseconds after `kill` returns: long enough for another
    /// thread to answer a request sent meanwhile. So a freeze waits until every thread is
    /// stopped.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let pid = self.child.id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        if !frozen {
            return;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !all_threads_stopped(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} did not stop"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in `/proc/PID/task/*/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                .is_some_and(|state| state == 'T' || state == 't')
        })
    })
}

impl Drop for Member {
    fn drop(&mut self) {
        // A frozen process must be thawed to die.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        self.kill();
    }
}

/// A port for a member to listen on, below Linux's ephemeral range (32768-60999): a port the
/// kernel handed out for `:0` can be taken again by any outgoing connection before the member
/// binds it (the suite makes thousands), which failed a start now and then with EADDRINUSE.
/// Each test process walks its own stretch of ports, and skips those in use.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % 64 * 190;
    loop {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(20_000 + (start + step) % 12_000).unwrap_or(20_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct ProcessCluster {
    pub nodes: Vec<Member>,
    pub node_ports: Vec<u16>,
    pub proxy: Member,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    /// Declared last: it stops after every node (fields drop in order).
    pg: Option<mycelium_testkit::PgCluster>,
}

impl ProcessCluster {
    /// With extra keys in every node's `[storage]`, extra TOML appended to every node's config
    /// and to the proxy's. `None` when PostgreSQL is needed and `MYCELIUM_SKIP_POSTGRES=1`.
    pub fn start_with(
        backend: Backend,
        storage_toml: &str,
        node_toml: &str,
        proxy_toml: &str,
    ) -> Option<ProcessCluster> {
        Self::start_with_peer_ports(backend, storage_toml, node_toml, proxy_toml, &[])
    }

    /// As [`ProcessCluster::start_with`], with node `i` reached by the other nodes on
    /// `peer_ports[i]` (its `peer_addr`) instead of its own port: where a test puts a relay.
    /// The proxy still reaches every node directly.
    pub fn start_with_peer_ports(
        backend: Backend,
        storage_toml: &str,
        node_toml: &str,
        proxy_toml: &str,
        peer_ports: &[u16],
    ) -> Option<ProcessCluster> {
        Self::start_inner(
            backend,
            storage_toml,
            node_toml,
            proxy_toml,
            peer_ports,
            false,
        )
    }

    /// Every node also listening on a Unix socket (`<id>.sock` in the cluster's directory),
    /// and the proxy and the nodes reaching each other only there (`unix:` addresses).
    pub fn start_on_unix_sockets(backend: Backend) -> Option<ProcessCluster> {
        Self::start_inner(backend, "", "", "", &[], true)
    }

    /// The Unix socket of node `id` (used by [`ProcessCluster::start_on_unix_sockets`]).
    pub fn node_socket(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}.sock"))
    }

    fn start_inner(
        backend: Backend,
        storage_toml: &str,
        node_toml: &str,
        proxy_toml: &str,
        peer_ports: &[u16],
        unix_sockets: bool,
    ) -> Option<ProcessCluster> {
        let pg = if backend == Backend::Sqlite {
            None
        } else {
            Some(mycelium_testkit::PgCluster::start_or_skip()?)
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = dir.path().join("certs");
        let status = Command::new(env!("CARGO_BIN_EXE_mycelium"))
            .args(["certs", "--out"])
            .arg(&certs)
            .args(["--nodes", "n1,n2,n3"])
            .stdout(Stdio::null())
            .status()
            .expect("mycelium certs");
        assert!(status.success());
        let node_ports: Vec<u16> = NODES.iter().map(|_| free_port()).collect();
        let mut peers = String::new();
        let socket = |id: &str| dir.path().join(format!("{id}.sock"));
        for (index, ((id, node_type), port)) in NODES.iter().zip(&node_ports).enumerate() {
            let addr = if unix_sockets {
                format!("unix:{}", socket(id).display())
            } else {
                format!("127.0.0.1:{port}")
            };
            peers.push_str(&format!(
                "[[peers]]\nid = \"{id}\"\naddr = \"{addr}\"\nnode_type = \"{node_type}\"\n"
            ));
            if let Some(peer_port) = peer_ports.get(index) {
                peers.push_str(&format!("peer_addr = \"127.0.0.1:{peer_port}\"\n"));
            }
        }
        for (index, ((id, node_type), port)) in NODES.iter().zip(&node_ports).enumerate() {
            let store = match &pg {
                Some(pg) if backend.on_postgres(index) => {
                    pg.create_database(id).expect("create the node's database");
                    // Wait-die breaks lock cycles across nodes; a lock timeout bounds any
                    // wait it leaves (for a prepared holder whose outcome is late).
                    format!(
                        "backend = \"{}?options=-c%20lock_timeout%3D3000\"\n",
                        pg.url(id)
                    )
                }
                _ => String::new(),
            };
            let socket_line = if unix_sockets {
                format!("socket = \"{}\"\n", socket(id).display())
            } else {
                String::new()
            };
            std::fs::write(
                dir.path().join(format!("{id}.toml")),
                format!(
                    "{peers}[node]\nid = \"{id}\"\nnode_type = \"{node_type}\"\n\
                     listen = \"127.0.0.1:{port}\"\n{socket_line}data = \"{}\"\ncerts = \"{}\"\n\
                     [storage]\n{store}{storage_toml}\n{node_toml}\n",
                    dir.path().join(format!("{id}.sqlite")).display(),
                    certs.display()
                ),
            )
            .expect("node config");
        }
        let port = free_port();
        std::fs::write(
            dir.path().join("proxy.toml"),
            format!(
                "certs = \"{}\"\ndata_dir = \"{}\"\n{}[proxy]\nlisten = \"127.0.0.1:{port}\"\n{proxy_toml}\n",
                certs.display(),
                dir.path().join("proxy").display(),
                peers.replace("[[peers]]", "[[nodes]]"),
            ),
        )
        .expect("proxy config");
        let nodes = (0..NODES.len())
            .map(|i| Self::launch_node(dir.path(), i, &[]))
            .collect();
        let proxy = Self::launch_proxy(dir.path(), &[]);
        assert!(
            proxy.first_line.contains(&format!("127.0.0.1:{port}")),
            "{}",
            proxy.first_line
        );
        Some(ProcessCluster {
            nodes,
            node_ports,
            proxy,
            port,
            dir,
            backend,
            pg,
        })
    }

    fn launch_node(dir: &std::path::Path, index: usize, env: &[(&str, &str)]) -> Member {
        let config = dir.join(format!("{}.toml", NODES[index].0));
        Member::start(
            &[
                "node",
                "--config",
                &config.to_string_lossy(),
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            env,
        )
    }

    fn launch_proxy(dir: &std::path::Path, env: &[(&str, &str)]) -> Member {
        let config = dir.join("proxy.toml");
        Member::start(
            &[
                "proxy",
                "--config",
                &config.to_string_lossy(),
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            env,
        )
    }

    /// SIGKILLs node `index` (if it still runs) and starts it again with `env`.
    pub fn restart_node(&mut self, index: usize, env: &[(&str, &str)]) {
        self.nodes[index].kill();
        self.nodes[index] = Self::launch_node(self.dir.path(), index, env);
    }

    /// SIGKILLs the proxy (if it still runs) and starts it again with `env`.
    pub fn restart_proxy(&mut self, env: &[(&str, &str)]) {
        self.proxy.kill();
        self.proxy = Self::launch_proxy(self.dir.path(), env);
    }

    pub async fn connect(&self) -> tokio_postgres::Client {
        self.try_connect().await.expect("connect")
    }

    pub async fn try_connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.connect_as("mycelium", "mycelium").await
    }

    /// Connects as `user` with `password`.
    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user={user} password={password} dbname=mycelium \
                 connect_timeout=5",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The PostgreSQL server of a cluster whose nodes use one.
    pub fn postgres(&mut self) -> &mut mycelium_testkit::PgCluster {
        self.pg.as_mut().expect("a cluster with PostgreSQL nodes")
    }

    pub fn node_file(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}.sqlite"))
    }

    /// Integer rows of a query run directly on node `index`'s database (its SQLite file, or
    /// its PostgreSQL database), not through the proxy.
    pub async fn node_ints(&self, index: usize, sql: &str) -> Vec<Vec<i64>> {
        self.node_rows(
            index,
            sql,
            |row| (0..row.len()).map(|i| row.get(i)).collect(),
            |row, columns| (0..columns).map(|i| row.get(i)).collect(),
        )
        .await
    }

    /// The first column of a query's rows as text, run directly on node `index`'s database.
    pub async fn node_texts(&self, index: usize, sql: &str) -> Vec<String> {
        self.node_rows(index, sql, |row| row.get(0), |row, _| row.get(0))
            .await
    }

    async fn node_rows<T>(
        &self,
        index: usize,
        sql: &str,
        from_postgres: impl Fn(&tokio_postgres::Row) -> T,
        from_sqlite: impl Fn(&rusqlite::Row<'_>, usize) -> rusqlite::Result<T>,
    ) -> Vec<T> {
        if let Some(client) = self.direct(index).await {
            return client
                .query(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql} on node {index}: {e}"))
                .iter()
                .map(from_postgres)
                .collect();
        }
        let db = self.sqlite(index);
        let mut statement = db.prepare(sql).expect("prepare");
        let columns = statement.column_count();
        statement
            .query_map([], |row| from_sqlite(row, columns))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// Transactions node `index` holds prepared (its redo store, or `pg_prepared_xacts`).
    pub async fn prepared_on(&self, index: usize) -> i64 {
        if let Some(client) = self.direct(index).await {
            return client
                .query_one(
                    "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()",
                    &[],
                )
                .await
                .expect("pg_prepared_xacts")
                .get(0);
        }
        let path = self
            .dir
            .path()
            .join(format!("{}.sqlite.prepared", NODES[index].0));
        if !path.exists() {
            return 0;
        }
        let db = rusqlite::Connection::open(path).expect("open redo store");
        db.query_row("SELECT count(*) FROM prepared", [], |r| r.get(0))
            .expect("count prepared")
    }

    /// The rows of a query run directly on node `index`'s database, as SQLite values
    /// (integers, reals, text, blobs and NULL; other PostgreSQL types are not read). A table
    /// that does not exist (yet) reads as no rows.
    pub async fn node_values(&self, index: usize, sql: &str) -> Vec<Vec<rusqlite::types::Value>> {
        use rusqlite::types::Value;
        use tokio_postgres::types::Type;
        if let Some(client) = self.direct(index).await {
            let Ok(rows) = client.query(sql, &[]).await else {
                return Vec::new();
            };
            return rows
                .iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| {
                            let ty = row.columns()[i].type_().clone();
                            let value = match ty {
                                Type::INT2 => row
                                    .get::<_, Option<i16>>(i)
                                    .map(|v| Value::Integer(v.into())),
                                Type::INT4 => row
                                    .get::<_, Option<i32>>(i)
                                    .map(|v| Value::Integer(v.into())),
                                Type::INT8 => row.get::<_, Option<i64>>(i).map(Value::Integer),
                                Type::FLOAT8 => row.get::<_, Option<f64>>(i).map(Value::Real),
                                Type::TEXT | Type::VARCHAR => {
                                    row.get::<_, Option<String>>(i).map(Value::Text)
                                }
                                Type::BYTEA => row.get::<_, Option<Vec<u8>>>(i).map(Value::Blob),
                                other => {
                                    panic!("{sql} on node {index}: column of type {other} not read")
                                }
                            };
                            value.unwrap_or(Value::Null)
                        })
                        .collect()
                })
                .collect();
        }
        let db = self.sqlite(index);
        let Ok(mut statement) = db.prepare(sql) else {
            return Vec::new();
        };
        let width = statement.column_count();
        statement
            .query_map([], |row| {
                (0..width)
                    .map(|i| row.get::<_, Value>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    fn sqlite(&self, index: usize) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.node_file(NODES[index].0),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open node file")
    }

    /// A direct connection to node `index`'s PostgreSQL database; `None` for a SQLite node.
    async fn direct(&self, index: usize) -> Option<tokio_postgres::Client> {
        let pg = self
            .pg
            .as_ref()
            .filter(|_| self.backend.on_postgres(index))?;
        let (client, connection) =
            tokio_postgres::connect(&pg.url(NODES[index].0), tokio_postgres::NoTls)
                .await
                .expect("connect to the node's database");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Some(client)
    }
}

/// Each scenario runs with SQLite nodes, PostgreSQL nodes, and a mix (n2 on PostgreSQL).
macro_rules! on_every_backend {
    (multi_thread: $($scenario:ident),* $(,)?) => {
        $crate::processes::on_every_backend!(
            @tests [tokio::test(flavor = "multi_thread", worker_threads = 2)] $($scenario),*
        );
    };
    (@tests [$test:meta] $($scenario:ident),*) => {
        $(
            mod $scenario {
                use crate::processes::Backend;

                #[$test]
                async fn sqlite() {
                    super::$scenario(Backend::Sqlite).await;
                }

                #[$test]
                async fn postgres() {
                    super::$scenario(Backend::Postgres).await;
                }

                #[$test]
                async fn mixed() {
                    super::$scenario(Backend::Mixed).await;
                }
            }
        )*
    };
    ($($scenario:ident),* $(,)?) => {
        $crate::processes::on_every_backend!(@tests [tokio::test] $($scenario),*);
    };
}
pub(crate) use on_every_backend;

// --- The mixed cluster of the front-end suites (harness::Cluster::start_on(Backend::Mixed)) ----

impl Member {
    /// SIGTERM; panics unless the process exits cleanly within 15 s.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status =
            crate::harness::wait_with_timeout(&mut self.child, std::time::Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| s.success()),
            "{} did not stop cleanly: {status:?}",
            self.first_line.trim()
        );
    }

    /// The port of the metrics endpoint its ready line names.
    pub fn metrics_port(&self) -> u16 {
        self.first_line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no metrics port in {:?}", self.first_line))
    }
}

impl ProcessCluster {
    /// A mixed cluster (n2 on PostgreSQL, n1 and n3 on SQLite) whose proxy lists n2 first,
    /// with `proxy_toml` appended to the proxy's config. The proxy sends statements that name
    /// no table to its first node, and answers DDL (run on every node) with the first node's
    /// answer, while the tables without a policy live on n1 (their placement's primary) with a
    /// copy of the schema on n3; so a client's session mixes PostgreSQL's answers and
    /// SQLite's, and every CREATE TABLE commits on both kinds of node.
    pub fn start_front_end(proxy_toml: &str) -> Option<ProcessCluster> {
        let mut cluster = ProcessCluster::start_with(Backend::Mixed, "", "", proxy_toml)?;
        let nodes: String = [1, 0, 2]
            .iter()
            .map(|&i| {
                format!(
                    "[[nodes]]\nid = \"{}\"\naddr = \"127.0.0.1:{}\"\nnode_type = \"{}\"\n",
                    NODES[i].0, cluster.node_ports[i], NODES[i].1
                )
            })
            .collect();
        let dir = cluster.dir.path();
        std::fs::write(
            dir.join("proxy.toml"),
            format!(
                "certs = \"{}\"\ndata_dir = \"{}\"\n{nodes}[proxy]\nlisten = \"127.0.0.1:{}\"\n\
                 {proxy_toml}\n",
                dir.join("certs").display(),
                dir.join("proxy").display(),
                cluster.port,
            ),
        )
        .expect("proxy config");
        cluster.restart_proxy(&[]);
        Some(cluster)
    }

    /// SIGTERM to the proxy, then to every node; each must exit cleanly.
    pub fn stop_all(&mut self) {
        self.proxy.terminate();
        for node in &mut self.nodes {
            node.terminate();
        }
    }

    /// SIGKILLs every node and the proxy (those still running) and starts them again.
    pub fn restart_all(&mut self) {
        self.proxy.kill();
        for index in 0..self.nodes.len() {
            self.restart_node(index, &[]);
        }
        self.restart_proxy(&[]);
    }
}
