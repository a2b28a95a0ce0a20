//! Three `mycelium node` processes (SQLite files) and a `mycelium proxy`, talking mutual TLS on
//! loopback, each with its own config file in a temporary directory; every process is stopped
//! with SIGTERM when the cluster is dropped, and the directory removed.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tempfile::TempDir;

use crate::pgbench::Target;

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
    /// By [`NODES`]; stopped before the proxy (fields drop in order).
    nodes: Vec<Member>,
    proxy: Member,
    /// Removed after every process stopped.
    dir: TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

impl ProcessCluster {
    /// `mycelium certs`, a config per node with `node_toml` appended (e.g. a `[replication]`
    /// section), the nodes, then the proxy.
    pub fn start(binary: &Path, node_toml: &str) -> anyhow::Result<ProcessCluster> {
        let dir = tempfile::Builder::new()
            .prefix("mycelium-bench-cluster-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let certs = dir.path().join("certs");
        let status = Command::new(binary)
            .args(["certs", "--out"])
            .arg(&certs)
            .args(["--nodes", "n1,n2,n3"])
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("cannot run {} certs", binary.display()))?;
        anyhow::ensure!(status.success(), "mycelium certs failed: {status}");
        let mut peers = String::new();
        for (id, node_type) in NODES {
            let port = free_port()?;
            peers.push_str(&format!(
                "[[peers]]\nid = \"{id}\"\naddr = \"127.0.0.1:{port}\"\nnode_type = \"{node_type}\"\n"
            ));
        }
        let mut nodes = Vec::new();
        for (id, node_type) in NODES {
            let listen = peers
                .split("[[peers]]")
                .find(|peer| peer.contains(&format!("id = \"{id}\"")))
                .and_then(|peer| peer.split("addr = \"").nth(1))
                .and_then(|rest| rest.split('"').next())
                .context("a node's address")?
                .to_owned();
            let config = dir.path().join(format!("{id}.toml"));
            std::fs::write(
                &config,
                format!(
                    "{peers}[node]\nid = \"{id}\"\nnode_type = \"{node_type}\"\n\
                     listen = \"{listen}\"\ndata = \"{}\"\ncerts = \"{}\"\n{node_toml}\n",
                    dir.path().join(format!("{id}.sqlite")).display(),
                    certs.display()
                ),
            )
            .with_context(|| format!("cannot write {}", config.display()))?;
            nodes.push(Member::start(
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
            nodes,
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
        self.nodes
            .iter()
            .chain([&self.proxy])
            .map(Member::pid)
            .collect()
    }
}

impl Drop for ProcessCluster {
    /// Every process is told first; the members then wait for their own ends.
    fn drop(&mut self) {
        self.terminate();
    }
}
