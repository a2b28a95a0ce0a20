//! `mycelium up` (the proxy and its nodes in one process; SQLite files or PostgreSQL databases)
//! in a temporary data directory, stopped with SIGTERM when the guard is dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::pgbench::Target;

pub struct Mycelium {
    pub port: u16,
    pub pid: u32,
    /// The Prometheus endpoint.
    pub metrics: SocketAddr,
    child: Child,
    log: std::path::PathBuf,
    /// Removed after the process stopped (fields drop after `Drop::drop`).
    dir: TempDir,
}

impl Mycelium {
    /// Where the nodes' SQLite files are (`n1.sqlite`, ...).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub fn target(&self) -> Target {
        Target {
            port: self.port,
            user: "mycelium",
            password: "mycelium",
            dbname: "mycelium",
        }
    }

    /// Starts `binary up ARGS` on a free port and waits for its "Mycelium is ready" line.
    pub fn start(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Mycelium> {
        let dir = tempfile::Builder::new()
            .prefix("mycelium-bench-data-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let log = dir.path().join("mycelium.log");
        let stderr = std::fs::File::create(&log).context("cannot create mycelium.log")?;
        let mut command = Command::new(binary);
        command
            .arg("up")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("no stdout")?;
        // The ready line arrives on a thread that then keeps draining stdout.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = tx.send(reader.read_line(&mut line).map(|_| line));
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let mut server = Mycelium {
            port: 0,
            pid,
            metrics: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            log,
            dir,
        };
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => anyhow::bail!("cannot read mycelium's output: {e}"),
            Err(_) => anyhow::bail!(
                "mycelium printed no ready line within 120 s\n{}",
                server.log_tail()
            ),
        };
        let (port, metrics) = ready_line(&line).with_context(|| {
            format!(
                "unexpected first line from mycelium: {line:?}\n{}",
                server.log_tail()
            )
        })?;
        server.port = port;
        server.metrics = metrics;
        Ok(server)
    }

    /// The value of one sample of `/metrics`, e.g. `mycelium_txn_commits_total{protocol="2pc"}`
    /// (0 when the series does not exist yet).
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        Ok(self
            .metrics_text()
            .await?
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0))
    }

    /// Waits until every secondary has applied all its primaries wrote (a load leaves a
    /// replica seconds behind, applying what would otherwise count against the first
    /// measurement); answers how long that took.
    pub async fn wait_for_replicas(&self, limit: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut caught_up_polls = 0;
        loop {
            let text = self.metrics_text().await?;
            caught_up_polls = if replicas_caught_up(&text) {
                caught_up_polls + 1
            } else {
                0
            };
            // Twice in a row: a gauge may lag the apply it reports by one update.
            if caught_up_polls == 2 {
                return Ok(started.elapsed());
            }
            anyhow::ensure!(
                started.elapsed() < limit,
                "replicas still behind after {} s",
                limit.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn metrics_text(&self) -> anyhow::Result<String> {
        let mut stream = tokio::net::TcpStream::connect(self.metrics)
            .await
            .with_context(|| format!("cannot connect to {}", self.metrics))?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut body = String::new();
        stream
            .read_to_string(&mut body)
            .await
            .context("cannot read /metrics")?;
        Ok(body)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "mycelium's log:\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }
}

/// Whether the exposition text says every replica is current: no primary counts entries a
/// peer has yet to take (`mycelium_replication_lag_entries`), and every node reports the same
/// applied sequence for each origin and shard (`mycelium_replication_applied_sequence`).
fn replicas_caught_up(metrics: &str) -> bool {
    let mut applied: std::collections::HashMap<(String, String), f64> =
        std::collections::HashMap::new();
    for line in metrics.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if series.starts_with("mycelium_replication_lag_entries{") && value != 0.0 {
            return false;
        }
        if series.starts_with("mycelium_replication_applied_sequence{") {
            let key = (label(series, "origin"), label(series, "shard"));
            match applied.get(&key) {
                Some(seen) if *seen != value => return false,
                _ => {
                    applied.insert(key, value);
                }
            }
        }
    }
    true
}

/// The value of `name="..."` among a series' labels ("" when it has none).
fn label(series: &str, name: &str) -> String {
    let pattern = format!("{name}=\"");
    series
        .split_once(&pattern)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or_else(String::new, |(value, _)| value.to_owned())
}

/// The client port and the metrics address in `Mycelium is ready: psql
/// "postgresql://mycelium@127.0.0.1:PORT/mycelium" (metrics on http://ADDR/metrics, ...)`.
fn ready_line(line: &str) -> Option<(u16, SocketAddr)> {
    let rest = line.split("Mycelium is ready").nth(1)?;
    let rest = rest.split("@127.0.0.1:").nth(1)?;
    let port = rest.split('/').next()?.parse().ok()?;
    let metrics = rest.split("metrics on http://").nth(1)?;
    let metrics = metrics.split('/').next()?.parse().ok()?;
    Some((port, metrics))
}

impl Drop for Mycelium {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("warning: mycelium did not stop within 30 s of SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn port_and_metrics_from_the_ready_line() {
        let line = "Mycelium is ready: psql \"postgresql://mycelium@127.0.0.1:40123/mycelium\" \
                    (metrics on http://127.0.0.1:9187/metrics, 3 nodes, data in /tmp/x)\n";
        assert_eq!(
            super::ready_line(line),
            Some((40123, std::net::SocketAddr::from(([127, 0, 0, 1], 9187))))
        );
        assert_eq!(super::ready_line("error: cannot listen\n"), None);
    }

    #[test]
    fn replicas_are_caught_up_when_no_lag_and_equal_sequences() {
        let current = "# TYPE mycelium_replication_applied_sequence gauge\n\
            mycelium_replication_applied_sequence{node=\"n1\",origin=\"n1\",shard=\"t/0\"} 42\n\
            mycelium_replication_applied_sequence{node=\"n3\",origin=\"n1\",shard=\"t/0\"} 42\n\
            mycelium_replication_applied_sequence{node=\"n2\",origin=\"n2\",shard=\"t/1\"} 7\n\
            mycelium_replication_lag_entries{node=\"n1\",peer=\"n3\",shard=\"t/0\"} 0\n";
        assert!(super::replicas_caught_up(current));
        let behind = current.replace(
            "n3\",origin=\"n1\",shard=\"t/0\"} 42",
            "n3\",origin=\"n1\",shard=\"t/0\"} 40",
        );
        assert!(!super::replicas_caught_up(&behind));
        let lagging = current.replace("} 0\n", "} 3\n");
        assert!(!super::replicas_caught_up(&lagging));
        assert!(super::replicas_caught_up(""));
    }
}
