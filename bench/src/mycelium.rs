//! `mycelium up` (the proxy and its SQLite nodes in one process) in a temporary data directory,
//! stopped with SIGTERM when the guard is dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tempfile::TempDir;

use crate::pgbench::Target;

pub struct Mycelium {
    pub port: u16,
    pub pid: u32,
    child: Child,
    log: std::path::PathBuf,
    /// Removed after the process stopped (fields drop after `Drop::drop`).
    _dir: TempDir,
}

impl Mycelium {
    pub fn target(&self) -> Target {
        Target {
            port: self.port,
            user: "mycelium",
            password: "mycelium",
            dbname: "mycelium",
        }
    }

    /// Starts `binary up` on a free port and waits for its "Mycelium is ready" line.
    pub fn start(binary: &Path, env: &[(&str, &str)]) -> anyhow::Result<Mycelium> {
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
            child,
            log,
            _dir: dir,
        };
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => anyhow::bail!("cannot read mycelium's output: {e}"),
            Err(_) => anyhow::bail!(
                "mycelium printed no ready line within 120 s\n{}",
                server.log_tail()
            ),
        };
        server.port = ready_port(&line).with_context(|| {
            format!(
                "unexpected first line from mycelium: {line:?}\n{}",
                server.log_tail()
            )
        })?;
        Ok(server)
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

/// The client port in `Mycelium is ready: psql "postgresql://mycelium@127.0.0.1:PORT/mycelium" ...`.
fn ready_port(line: &str) -> Option<u16> {
    let rest = line.split("Mycelium is ready").nth(1)?;
    let rest = rest.split("@127.0.0.1:").nth(1)?;
    rest.split('/').next()?.parse().ok()
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
    fn port_from_the_ready_line() {
        let line = "Mycelium is ready: psql \"postgresql://mycelium@127.0.0.1:40123/mycelium\" \
                    (metrics on http://127.0.0.1:9187/metrics, 3 nodes, data in /tmp/x)\n";
        assert_eq!(super::ready_port(line), Some(40123));
        assert_eq!(super::ready_port("error: cannot listen\n"), None);
    }
}
