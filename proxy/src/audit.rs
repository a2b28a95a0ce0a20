//! The audit log: authentication, DDL, policy changes, changes of users, roles and privileges,
//! and refused statements, one JSON object per line, rotated by size. Never passwords and never parameter values: statement texts are
//! logged with their string literals masked.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::json;
use tokio::sync::mpsc;

/// Where audit events go. Cheap to clone; writing happens on a background thread so a slow
/// disk never stalls a session.
#[derive(Clone)]
pub struct AuditLog {
    events: mpsc::UnboundedSender<serde_json::Value>,
}

impl AuditLog {
    /// Opens (creating) `path`; rotates to `path.1` .. `path.<keep>` past `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<AuditLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut writer = Writer {
            file: OpenOptions::new().create(true).append(true).open(path)?,
            path: path.to_owned(),
            max_bytes,
            keep,
        };
        let (events, mut receiver) = mpsc::unbounded_channel::<serde_json::Value>();
        std::thread::Builder::new()
            .name("mycelium-audit".to_owned())
            .spawn(move || {
                while let Some(event) = receiver.blocking_recv() {
                    if let Err(e) = writer.write(&event) {
                        tracing::warn!(error = %e, "cannot write the audit log");
                    }
                }
            })?;
        Ok(AuditLog { events })
    }

    fn record(&self, mut event: serde_json::Value) {
        if let Some(object) = event.as_object_mut() {
            object.insert("time".to_owned(), json!(unix_time_now()));
        }
        let _ = self.events.send(event);
    }

    pub fn authenticated(&self, user: &str, peer: SocketAddr, tls: bool) {
        self.record(
            json!({"event": "auth_success", "user": user, "peer": peer.to_string(), "tls": tls}),
        );
    }

    pub fn authentication_failed(&self, user: &str, peer: SocketAddr) {
        self.record(json!({"event": "auth_failure", "user": user, "peer": peer.to_string()}));
    }

    pub fn ddl(&self, user: &str, peer: SocketAddr, statement: &str) {
        self.record(json!({"event": "ddl", "user": user, "peer": peer.to_string(), "statement": mask_literals(statement)}));
    }

    /// A statement refused before it ran; `message` is what the client was told (it names a
    /// table or a feature, never a value).
    pub fn refused(
        &self,
        user: &str,
        peer: SocketAddr,
        sqlstate: &str,
        message: &str,
        statement: &str,
    ) {
        self.record(json!({"event": "refused", "user": user, "peer": peer.to_string(), "sqlstate": sqlstate, "message": message, "statement": mask_literals(statement)}));
    }

    /// A change of users, roles or privileges (CREATE/ALTER/DROP ROLE, GRANT, REVOKE). The
    /// statement's literals are masked, so a password typed into it never reaches the log.
    pub fn access(&self, user: &str, peer: SocketAddr, statement: &str) {
        self.record(json!({"event": "access", "user": user, "peer": peer.to_string(), "statement": mask_literals(statement)}));
    }
}

struct Writer {
    file: File,
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
}

impl Writer {
    fn write(&mut self, event: &serde_json::Value) -> std::io::Result<()> {
        let mut line = event.to_string();
        line.push('\n');
        let size = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        if size > 0 && size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.file.flush()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            self.file.set_len(0)?;
            return Ok(());
        }
        let _ = std::fs::remove_file(numbered(self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        Ok(())
    }
}

/// Seconds since the Unix epoch with milliseconds.
fn unix_time_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

/// Replaces the contents of string literals (`'...'`, `E'...'`, `$$...$$`) with `***`, so a
/// password in `... PASSWORD 'x'` or a value typed into DDL never reaches the log.
pub fn mask_literals(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            out.push_str("'***'");
            while let Some(d) = chars.next() {
                if d == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                        continue;
                    }
                    break;
                }
            }
        } else if c == '$' && chars.peek() == Some(&'$') {
            chars.next();
            out.push_str("$$***$$");
            let mut previous = ' ';
            for d in chars.by_ref() {
                if previous == '$' && d == '$' {
                    break;
                }
                previous = d;
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_masked() {
        assert_eq!(
            mask_literals("CREATE USER bob WITH PASSWORD 'it''s secret'"),
            "CREATE USER bob WITH PASSWORD '***'"
        );
        assert_eq!(mask_literals("SELECT $$a'b$$, 1"), "SELECT $$***$$, 1");
    }

    #[test]
    fn rotates_by_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let mut writer = Writer {
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .expect("open"),
            path: path.clone(),
            max_bytes: 100,
            keep: 2,
        };
        for i in 0..10 {
            writer
                .write(&json!({"n": i, "pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}))
                .expect("write");
        }
        assert!(path.exists());
        assert!(dir.path().join("audit.log.1").exists());
        assert!(dir.path().join("audit.log.2").exists());
        assert!(!dir.path().join("audit.log.3").exists());
        let current = std::fs::read_to_string(&path).expect("read");
        assert!(
            current
                .lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
        assert!(current.len() <= 100);
    }
}
