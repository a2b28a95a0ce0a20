//! A cluster of separate processes: three `mycelium node`s and a `mycelium proxy`, talking
//! mutual TLS, each of which a test can SIGKILL, freeze, arm with failpoints and restart.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub const NODES: [(&str, &str); 3] = [("n1", "validator"), ("n2", "validator"), ("n3", "miner")];

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
            .env("RUST_LOG", "warn")
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
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct ProcessCluster {
    pub nodes: Vec<Member>,
    pub node_ports: Vec<u16>,
    pub proxy: Member,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl ProcessCluster {
    pub fn start() -> ProcessCluster {
        ProcessCluster::start_with("", "")
    }

    /// With extra TOML appended to every node's config and to the proxy's.
    pub fn start_with(node_toml: &str, proxy_toml: &str) -> ProcessCluster {
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
        for ((id, node_type), port) in NODES.iter().zip(&node_ports) {
            peers.push_str(&format!(
                "[[peers]]\nid = \"{id}\"\naddr = \"127.0.0.1:{port}\"\nnode_type = \"{node_type}\"\n"
            ));
        }
        for ((id, node_type), port) in NODES.iter().zip(&node_ports) {
            std::fs::write(
                dir.path().join(format!("{id}.toml")),
                format!(
                    "{peers}[node]\nid = \"{id}\"\nnode_type = \"{node_type}\"\n\
                     listen = \"127.0.0.1:{port}\"\ndata = \"{}\"\ncerts = \"{}\"\n{node_toml}\n",
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
        ProcessCluster {
            nodes,
            node_ports,
            proxy,
            port,
            dir,
        }
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
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=mycelium password=mycelium dbname=mycelium \
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

    pub fn node_file(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}.sqlite"))
    }

    /// Rows of a query run directly on node `id`'s SQLite file (read-only).
    pub fn file_rows(&self, id: &str, sql: &str) -> Vec<Vec<i64>> {
        let db = rusqlite::Connection::open_with_flags(
            self.node_file(id),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open node file");
        let mut statement = db.prepare(sql).expect("prepare");
        let columns = statement.column_count();
        statement
            .query_map([], |row| (0..columns).map(|i| row.get(i)).collect())
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// Prepared transactions a node still holds, from its redo store.
    pub fn prepared_on(&self, id: &str) -> i64 {
        let path = self.dir.path().join(format!("{id}.sqlite.prepared"));
        if !path.exists() {
            return 0;
        }
        let db = rusqlite::Connection::open(path).expect("open redo store");
        db.query_row("SELECT count(*) FROM prepared", [], |r| r.get(0))
            .expect("count prepared")
    }
}
