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
                "must be `sqlite` or a PostgreSQL URL (postgres://user:password@host:port/database)",
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
