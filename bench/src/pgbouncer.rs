//! PgBouncer in front of the benchmark's PostgreSQL, run as the `postgres` user with its ini and
//! userlist in the server's temporary directory.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::pgbench::Target;
use crate::postgres::{self, as_postgres};

pub const BINARY: &str = "/usr/sbin/pgbouncer";

pub struct PgBouncer {
    pub port: u16,
    pub pid: u32,
    child: Child,
}

impl PgBouncer {
    pub fn target(&self) -> Target {
        Target {
            port: self.port,
            user: postgres::USER,
            password: postgres::PASSWORD,
            dbname: postgres::DATABASE,
        }
    }

    /// Starts PgBouncer on `port` with `pool_mode` (`transaction` or `session`), accepting up to
    /// `max_client_conn` clients; it reaches PostgreSQL through its Unix-domain socket in `dir`
    /// (the server's directory), as the relay and Mycelium's nodes do.
    pub fn start(
        dir: &Path,
        port: u16,
        postgres_port: u16,
        pool_mode: &str,
        max_client_conn: u32,
    ) -> anyhow::Result<PgBouncer> {
        let userlist = dir.join("userlist.txt");
        std::fs::write(
            &userlist,
            format!("\"{}\" \"{}\"\n", postgres::USER, postgres::PASSWORD),
        )
        .context("cannot write the PgBouncer userlist")?;
        let log = dir.join(format!("pgbouncer-{pool_mode}.log"));
        let pid_file = dir.join(format!("pgbouncer-{pool_mode}.pid"));
        let ini = dir.join(format!("pgbouncer-{pool_mode}.ini"));
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 {db} = host={socket_dir} port={postgres_port} dbname={db}\n\
                 \n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = scram-sha-256\n\
                 auth_file = {userlist}\n\
                 pool_mode = {pool_mode}\n\
                 max_client_conn = {max_client_conn}\n\
                 default_pool_size = 20\n\
                 log_connections = 0\n\
                 log_disconnections = 0\n\
                 logfile = {log}\n\
                 pidfile = {pid_file}\n\
                 ignore_startup_parameters = extra_float_digits\n",
                db = postgres::DATABASE,
                socket_dir = dir.display(),
                userlist = userlist.display(),
                log = log.display(),
                pid_file = pid_file.display(),
            ),
        )
        .context("cannot write pgbouncer.ini")?;
        // `runuser` starts it with the default soft limit of open files (1024 here), too few
        // for thousands of clients: raise it to the hard limit first.
        let mut child = as_postgres("sh")
            .args([
                "-c",
                "ulimit -n \"$(ulimit -Hn)\" && exec \"$0\" \"$@\"",
                BINARY,
            ])
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start pgbouncer")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid = loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                anyhow::bail!("pgbouncer exited at start ({status}); its log:\n{log}");
            }
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok());
            if let Some(pid) = pid
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                break pid;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                anyhow::bail!("pgbouncer did not listen on port {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok(PgBouncer { port, pid, child })
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // SIGTERM to PgBouncer itself (the child is `runuser`, which waits for it).
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
