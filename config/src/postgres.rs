//! The storage backend keys: `storage.backend` picks SQLite or a PostgreSQL database, and
//! `[storage.postgres]` tunes the connection pool (the seed's DatabaseConfig).

use serde::Deserialize;

use crate::{ConfigError, StorageConfig, invalid};

/// How a node whose backend is PostgreSQL pools its connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connections in the pool (the seed's `max_connections`).
    pub pool_size: u32,
    /// An idle connection is closed after this long.
    pub idle_timeout_ms: u64,
    /// How long connecting, or waiting for a free connection, may take.
    pub connect_timeout_ms: u64,
    /// Longest pause between reconnection attempts while PostgreSQL is unreachable.
    pub retry_interval_ms: u64,
    /// Prepared statements kept per connection; 0 disables the cache.
    pub statement_cache_size: usize,
    /// Create the node's database when it does not exist.
    pub create_database: bool,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            pool_size: 20,
            idle_timeout_ms: 300_000,
            connect_timeout_ms: 30_000,
            retry_interval_ms: 5_000,
            statement_cache_size: 1000,
            create_database: false,
        }
    }
}

/// Where a node keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageBackend<'a> {
    /// A SQLite file (`node.data`, or one per node under `mycelium up`'s data directory).
    Sqlite,
    /// A PostgreSQL database, by URL.
    Postgres(&'a str),
}

/// The default of `storage.backend`.
pub(crate) fn default_backend() -> String {
    "sqlite".to_owned()
}

impl StorageConfig {
    /// The backend `storage.backend` names (validated when the file was loaded).
    pub fn backend(&self) -> StorageBackend<'_> {
        if self.backend == "sqlite" {
            StorageBackend::Sqlite
        } else {
            StorageBackend::Postgres(&self.backend)
        }
    }

    pub(crate) fn validate_backend(&self, file: &str) -> Result<(), ConfigError> {
        let url = self.backend.as_str();
        if url != "sqlite" && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(invalid(
                file,
                "storage.backend",
                "must be `sqlite` or a PostgreSQL URL (postgres://user:password@host:port/database, \
                 or through a Unix-domain socket: postgres://user@%2Fvar%2Frun%2Fpostgresql/database)",
            ));
        }
        if let Some(dir) = socket_dir(url)
            && !std::path::Path::new(&dir).is_dir()
        {
            return Err(invalid(
                file,
                "storage.backend",
                &format!(
                    "names the Unix-domain socket directory {dir}, which does not exist (it is \
                     PostgreSQL's unix_socket_directories, where .s.PGSQL.<port> lives)"
                ),
            ));
        }
        let pg = &self.postgres;
        for (key, value) in [
            ("storage.postgres.pool_size", u64::from(pg.pool_size)),
            ("storage.postgres.idle_timeout_ms", pg.idle_timeout_ms),
            ("storage.postgres.connect_timeout_ms", pg.connect_timeout_ms),
            ("storage.postgres.retry_interval_ms", pg.retry_interval_ms),
        ] {
            if value == 0 {
                return Err(invalid(file, key, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// The directory of the Unix-domain socket a PostgreSQL URL connects through, if it names one:
/// a host that is a percent-encoded absolute path (`postgres://u@%2Frun%2Fpostgresql/db`) or a
/// `host=/path` parameter, as libpq and tokio-postgres read them.
pub(crate) fn socket_dir(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = host.split(':').next().unwrap_or("");
    let from_query = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("host="))
        .map(percent_decode);
    let host = from_query.unwrap_or_else(|| percent_decode(host));
    host.starts_with('/').then_some(host)
}

/// `%XX` escapes decoded; anything malformed is kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
