//! `mycelium node` processes (on SQLite files or PostgreSQL databases) and a `mycelium proxy`,
//! talking mutual TLS on loopback (TCP, or the nodes' Unix sockets), each with its own config file in a temporary directory;
//! every process is stopped with SIGTERM when the cluster is dropped, and the directory removed.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tempfile::TempDir;

use crate::pgbench::Target;
use crate::postgres::Postgres;

/// The nodes and their types (as `mycelium up --nodes 3`: a third of them miners).
pub const NODES: [(&str, &str); 3] = [("n1", "validator"), ("n2", "validator"), ("n3", "miner")];

/// One running process.
struct Member {
    child: Child,
}

impl Member {
    /// Starts `binary ARGS` (stderr into `log`) and waits for its "is ready" line.
    fn start(binary: &Path, args: &[&str], log: &Path) -> anyhow::Result<Member> {
        let stderr = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let member = Member { child };
        // The ready line arrives on a thread that then keeps draining stdout.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = tx.send(reader.read_line(&mut line).map(|_| line));
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let tail = || {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        };
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(line)) if line.contains("is ready") => Ok(member),
            Ok(Ok(line)) => anyhow::bail!(
                "mycelium {args:?} printed {line:?} instead of its ready line\n{}",
                tail()
            ),
            Ok(Err(e)) => anyhow::bail!("cannot read the output of mycelium {args:?}: {e}"),
            Err(_) => anyhow::bail!(
                "mycelium {args:?} printed no ready line within 120 s\n{}",
                tail()
            ),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, without waiting.
    fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("warning: a mycelium process did not stop within 30 s of SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct ProcessCluster {
    pub port: u16,
    /// In the order they were given; stopped before the proxy (fields drop in order).
    nodes: Vec<Member>,
    proxy: Member,
    /// Removed after every process stopped.
    dir: TempDir,
}

/// Where a cluster's nodes keep their data.
pub enum Storage<'a> {
    /// A SQLite file per node in the cluster's directory ([`ProcessCluster::node_file`]).
    Sqlite,
    /// A database per node on `server`, named `<prefix>_<node id>` as `mycelium up` names its
    /// nodes' databases, reached through the server's Unix-domain socket and created by the
    /// node when missing.
    Postgres {
        server: &'a Postgres,
        prefix: &'a str,
    },
}

/// How the proxy reaches its nodes and the nodes each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// TCP on loopback: what members on different hosts use.
    Tcp,
    /// Each node's Unix socket (`node.socket`, addresses `unix:<path>`): members on one host.
    UnixSocket,
}

impl Storage<'_> {
    /// The lines that say where node `id` keeps its data, written at the end of the node
    /// config's `[node]` table: a key of it, or a table of their own.
    fn node_toml(&self, dir: &Path, id: &str) -> String {
        match self {
            Storage::Sqlite => format!(
                "data = \"{}\"\n",
                dir.join(format!("{id}.sqlite")).display()
            ),
            Storage::Postgres { server, prefix } => format!(
                "[storage]\nbackend = \"{}\"\n[storage.postgres]\ncreate_database = true\n",
                server.url(&format!("{prefix}_{id}"))
            ),
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

impl ProcessCluster {
    /// `mycelium certs`, a config per node of `nodes` (id, node type) keeping its data in
    /// `storage`, with `node_toml` appended (e.g. a `[replication]` section), the nodes, then
    /// the proxy, all reaching each other over `link`.
    pub fn start(
        binary: &Path,
        nodes: &[(&str, &str)],
        storage: &Storage,
        node_toml: &str,
        link: Link,
    ) -> anyhow::Result<ProcessCluster> {
        let dir = tempfile::Builder::new()
            .prefix("mycelium-bench-cluster-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let certs = dir.path().join("certs");
        let ids: Vec<&str> = nodes.iter().map(|(id, _)| *id).collect();
        let status = Command::new(binary)
            .args(["certs", "--out"])
            .arg(&certs)
            .args(["--nodes", &ids.join(",")])
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("cannot run {} certs", binary.display()))?;
        anyhow::ensure!(status.success(), "mycelium certs failed: {status}");
        let mut listens = Vec::new();
        let mut peers = String::new();
        for (id, node_type) in nodes {
            let listen = format!("127.0.0.1:{}", free_port()?);
            let mut node_lines = format!("listen = \"{listen}\"\n");
            let addr = match link {
                Link::Tcp => listen,
                Link::UnixSocket => {
                    let socket = dir.path().join(format!("{id}.sock"));
                    node_lines.push_str(&format!("socket = \"{}\"\n", socket.display()));
                    format!("unix:{}", socket.display())
                }
            };
            peers.push_str(&format!(
                "[[peers]]\nid = \"{id}\"\naddr = \"{addr}\"\nnode_type = \"{node_type}\"\n"
            ));
            listens.push(node_lines);
        }
        let mut members = Vec::new();
        for ((id, node_type), node_lines) in nodes.iter().zip(&listens) {
            let config = dir.path().join(format!("{id}.toml"));
            std::fs::write(
                &config,
                format!(
                    "{peers}[node]\nid = \"{id}\"\nnode_type = \"{node_type}\"\n\
                     {node_lines}certs = \"{}\"\n{}{node_toml}\n",
                    certs.display(),
                    storage.node_toml(dir.path(), id),
                ),
            )
            .with_context(|| format!("cannot write {}", config.display()))?;
            members.push(Member::start(
                binary,
                &[
                    "node",
                    "--config",
                    &config.to_string_lossy(),
                    "--metrics-listen",
                    "127.0.0.1:0",
                ],
                &dir.path().join(format!("{id}.log")),
            )?);
        }
        let port = free_port()?;
        let config = dir.path().join("proxy.toml");
        std::fs::write(
            &config,
            format!(
                "certs = \"{}\"\ndata_dir = \"{}\"\n{}[proxy]\nlisten = \"127.0.0.1:{port}\"\n",
                certs.display(),
                dir.path().join("proxy").display(),
                peers.replace("[[peers]]", "[[nodes]]"),
            ),
        )
        .with_context(|| format!("cannot write {}", config.display()))?;
        let proxy = Member::start(
            binary,
            &[
                "proxy",
                "--config",
                &config.to_string_lossy(),
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            &dir.path().join("proxy.log"),
        )?;
        Ok(ProcessCluster {
            port,
            nodes: members,
            proxy,
            dir,
        })
    }

    pub fn target(&self) -> Target {
        Target {
            port: self.port,
            user: "mycelium",
            password: "mycelium",
            dbname: "mycelium",
        }
    }

    /// The SQLite file of node `id`.
    pub fn node_file(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}.sqlite"))
    }

    /// SIGTERM to every process, without waiting: a node takes seconds to stop, so clusters
    /// that are dropped together stop in parallel when all were told first.
    pub fn terminate(&self) {
        for member in self.nodes.iter().chain([&self.proxy]) {
            member.terminate();
        }
    }

    /// The pids of the nodes and the proxy, whose CPU time a measurement reads.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = self.node_pids();
        pids.push(self.proxy_pid());
        pids
    }

    pub fn proxy_pid(&self) -> u32 {
        self.proxy.pid()
    }

    /// In the order the nodes were given.
    pub fn node_pids(&self) -> Vec<u32> {
        self.nodes.iter().map(Member::pid).collect()
    }
}

impl Drop for ProcessCluster {
    /// Every process is told first; the members then wait for their own ends.
    fn drop(&mut self) {
        self.terminate();
    }
}
