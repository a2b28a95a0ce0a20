//! Typed configuration for every Mycelium process.
//!
//! One TOML file per process, then `MYCELIUM_*` environment overrides, then validation.
//! An override names a key path with `__` between sections: `MYCELIUM_PROXY__LISTEN=0.0.0.0:6432`
//! sets `proxy.listen`. Values parse as TOML literals when they can (`MYCELIUM_STORAGE__WORKERS=8`
//! is an integer) and as strings otherwise. `MYCELIUM_PASSWORD` sets the password of the default
//! user. Every error names the file and the key.

mod env;
pub mod failpoint;
mod postgres;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use env::apply_env_overrides;
pub use postgres::{PostgresConfig, StorageBackend};

/// Errors reading or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {file}: {message}")]
    Parse { file: String, message: String },
    #[error("config file {file}: key `{key}`: {reason}")]
    Invalid {
        file: String,
        key: String,
        reason: String,
    },
}

/// Configuration of `mycelium up`: one proxy and its local SQLite node(s) in one process.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct UpConfig {
    pub proxy: ProxyConfig,
    pub storage: StorageConfig,
    pub cluster: ClusterConfig,
    pub users: Vec<UserConfig>,
    pub policies: Vec<PolicyConfig>,
    pub transactions: TransactionConfig,
    pub replication: ReplicationConfig,
}

/// Distributed transactions (the seed's TransactionConfig), for coordinators (proxies) and
/// participants (nodes) alike.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransactionConfig {
    /// Bound on the whole commit of a transaction that spans nodes (prepare, decision,
    /// commit); past it the coordinator gives up on what is not decided yet.
    pub default_timeout_ms: u64,
    /// How long the coordinator waits for one participant's vote before aborting, when the
    /// participant is down by then (a node that answers heartbeats is waited for).
    pub prepare_timeout_ms: u64,
    /// The same for the decision and for each commit.
    pub commit_timeout_ms: u64,
    /// How often a node looks for prepared transactions in doubt.
    pub cleanup_interval_ms: u64,
    /// A prepared transaction older than this whose coordinator went quiet is resolved by
    /// its node, from the decider's record (presumed abort when there is none).
    pub recovery_timeout_ms: u64,
    /// Transactions one proxy coordinates at once; more are refused with SQLSTATE 53400.
    pub max_transactions: usize,
    /// How long a decider keeps a transaction record before its sweep may delete it (only
    /// once no participant holds the transaction prepared). Also the sweep's pace: it runs
    /// every quarter of this, at least every `cleanup_interval_ms` and at most every minute.
    /// Committed records every participant acknowledged are deleted at once anyway.
    pub record_retention_seconds: u64,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            default_timeout_ms: 30_000,
            prepare_timeout_ms: 5_000,
            commit_timeout_ms: 5_000,
            cleanup_interval_ms: 1_000,
            recovery_timeout_ms: 3_000,
            max_transactions: 10_000,
            record_retention_seconds: 3_600,
        }
    }
}

impl TransactionConfig {
    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        for (key, value) in [
            ("transactions.default_timeout_ms", self.default_timeout_ms),
            ("transactions.prepare_timeout_ms", self.prepare_timeout_ms),
            ("transactions.commit_timeout_ms", self.commit_timeout_ms),
            ("transactions.cleanup_interval_ms", self.cleanup_interval_ms),
            ("transactions.recovery_timeout_ms", self.recovery_timeout_ms),
            (
                "transactions.max_transactions",
                self.max_transactions as u64,
            ),
            (
                "transactions.record_retention_seconds",
                self.record_retention_seconds,
            ),
        ] {
            if value == 0 {
                return Err(invalid(file, key, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// How a shard's replicas resolve two concurrent writes of one row.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicyConfig {
    /// The highest hybrid timestamp wins, then the highest node id.
    #[default]
    Lww,
    /// The write made under the newest primary epoch wins, then as `lww`.
    PrimaryWins,
}

/// WAL replication between the copies of a shard (nodes on SQLite or PostgreSQL).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// Secondaries that must acknowledge a commit before the client hears of it (0:
    /// asynchronous). Capped at the number of secondaries the map gives the shard.
    pub synchronous_replicas: usize,
    /// How long a commit waits for `synchronous_replicas`; past it the client gets SQLSTATE
    /// 08007 (committed on the primary, not confirmed on enough replicas).
    pub synchronous_timeout_ms: u64,
    /// Entries kept in a shard's WAL after every secondary acknowledged them, so a secondary
    /// that falls behind briefly catches up from the log rather than from a snapshot.
    pub wal_retain_entries: u64,
    /// Acknowledged entries younger than this are kept too.
    pub wal_retain_seconds: u64,
    /// Hard cap on a shard's WAL, acknowledged or not: a secondary further behind (or down
    /// while more was written) gets a snapshot when it returns.
    pub wal_max_entries: u64,
    /// `lww` (last writer wins) or `primary_wins`.
    pub conflict_policy: ConflictPolicyConfig,
    /// How often a primary tells its secondaries its position (lag in seconds and entries);
    /// a secondary that hears nothing for three intervals (and at least 2 s) reconnects.
    pub heartbeat_interval_ms: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            synchronous_replicas: 0,
            synchronous_timeout_ms: 5_000,
            wal_retain_entries: 10_000,
            wal_retain_seconds: 3_600,
            wal_max_entries: 1_000_000,
            conflict_policy: ConflictPolicyConfig::Lww,
            heartbeat_interval_ms: 1_000,
        }
    }
}

impl ReplicationConfig {
    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        for (key, value) in [
            (
                "replication.synchronous_timeout_ms",
                self.synchronous_timeout_ms,
            ),
            (
                "replication.heartbeat_interval_ms",
                self.heartbeat_interval_ms,
            ),
            ("replication.wal_max_entries", self.wal_max_entries),
        ] {
            if value == 0 {
                return Err(invalid(file, key, "must be at least 1"));
            }
        }
        if self.wal_retain_entries > self.wal_max_entries {
            return Err(invalid(
                file,
                "replication.wal_retain_entries",
                "must not exceed replication.wal_max_entries",
            ));
        }
        Ok(())
    }
}

/// The shape of the cluster and the policy of tables nobody configured (the seed's ShardConfig).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Nodes `mycelium up` runs; a third of them (rounded down) are miners, the rest validators.
    pub nodes: usize,
    /// Fraction of eligible nodes holding each shard of a table without a policy.
    pub default_replication_factor: f64,
    /// Validator copies of each shard of a table without a policy.
    pub min_validator_copies: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nodes: 3,
            default_replication_factor: 0.5,
            min_validator_copies: 1,
        }
    }
}

/// A table policy (the seed's TablePolicy, plus the shard count and range split points).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub table: String,
    #[serde(default)]
    pub shard_keys: Vec<String>,
    #[serde(default)]
    pub shards: Option<u32>,
    #[serde(default)]
    pub replication_factor: Option<f64>,
    #[serde(default)]
    pub validator_only: bool,
    #[serde(default)]
    pub min_validator_copies: Option<usize>,
    #[serde(default)]
    pub read_roles: Option<Vec<String>>,
    #[serde(default)]
    pub write_roles: Option<Vec<String>>,
    #[serde(default)]
    pub range_sharding: bool,
    #[serde(default)]
    pub ranges: Vec<i64>,
}

/// The Postgres-wire front end.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Address clients connect to.
    pub listen: SocketAddr,
    /// Client connections allowed at once; one more is refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// Largest protocol message a client may send, in bytes.
    pub max_message_size: usize,
    /// Server certificate (PEM). When unset, a self-signed one is generated in the data dir.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Distinct statement texts whose plans are kept.
    pub plan_cache_size: usize,
    /// Sessions one user may have open at once (0 = no limit beyond `max_connections`).
    pub max_connections_per_user: usize,
    /// Statements per second one user may run, summed over its sessions (0 = no limit);
    /// more are refused with SQLSTATE 53400.
    pub rate_limit_per_user: u32,
    /// Audit log (JSON lines); relative paths are under the data directory.
    pub audit_log: PathBuf,
    /// The audit log rotates past this size; `audit_keep` old files are kept.
    pub audit_max_bytes: u64,
    pub audit_keep: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 6432)),
            max_connections: 1000,
            max_message_size: 64 * 1024 * 1024,
            tls_cert: None,
            tls_key: None,
            plan_cache_size: 10_000,
            max_connections_per_user: 0,
            rate_limit_per_user: 0,
            audit_log: PathBuf::from("audit.log"),
            audit_max_bytes: 10 * 1024 * 1024,
            audit_keep: 5,
        }
    }
}

/// How a node keeps its data: a SQLite file (the default) or a PostgreSQL database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite`, or the URL of the node's PostgreSQL database (see [`StorageConfig::backend`]).
    pub backend: String,
    /// SQLite connections (each on its own thread) a node starts with. Each open transaction
    /// holds one from its first statement to its end.
    pub workers: usize,
    /// How many connections a SQLite node may open when every one is held; past that,
    /// statements wait up to `busy_timeout_ms` for one (then 53300).
    pub max_workers: usize,
    /// How long a writer waits for the SQLite write lock before failing with 40001.
    pub busy_timeout_ms: u64,
    /// `full` survives power loss; `normal` survives a process crash only.
    pub synchronous: Synchronous,
    /// The connection pool of a PostgreSQL backend.
    pub postgres: PostgresConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: postgres::default_backend(),
            postgres: PostgresConfig::default(),
            workers: 4,
            max_workers: 128,
            busy_timeout_ms: 10_000,
            synchronous: Synchronous::Full,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Full,
    Normal,
}

/// A user allowed to connect. Give `scram_verifier` (as `mycelium passwd` prints it) or, for
/// local development, `password`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub scram_verifier: Option<String>,
}

/// The user that exists when the config names none.
pub const DEFAULT_USER: &str = "mycelium";
/// Its password unless `MYCELIUM_PASSWORD` says otherwise.
pub const DEFAULT_PASSWORD: &str = "mycelium";

impl UpConfig {
    /// Reads `file` (or starts from defaults when `None`), applies the process environment and
    /// validates the result.
    pub fn load(file: Option<&Path>) -> Result<UpConfig, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        UpConfig::load_with_env(file, &vars)
    }

    /// As [`UpConfig::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        vars: &[(String, String)],
    ) -> Result<UpConfig, ConfigError> {
        let (name, mut config): (String, UpConfig) = load_toml(file, vars)?;
        apply_users(&mut config.users, vars);
        config.validate(&name)?;
        Ok(config)
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            file: file.to_owned(),
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        if self.proxy.max_connections == 0 {
            return Err(invalid("proxy.max_connections", "must be at least 1"));
        }
        if self.proxy.max_message_size < 1024 {
            return Err(invalid(
                "proxy.max_message_size",
                "must be at least 1024 bytes",
            ));
        }
        if self.proxy.tls_cert.is_some() != self.proxy.tls_key.is_some() {
            return Err(invalid(
                "proxy.tls_cert",
                "tls_cert and tls_key must be given together",
            ));
        }
        if self.cluster.nodes == 0 {
            return Err(invalid("cluster.nodes", "must be at least 1"));
        }
        let rf = self.cluster.default_replication_factor;
        if !(rf > 0.0 && rf <= 1.0) {
            return Err(invalid(
                "cluster.default_replication_factor",
                "must be in (0, 1]",
            ));
        }
        for (i, policy) in self.policies.iter().enumerate() {
            if policy.table.is_empty() {
                return Err(invalid(
                    &format!("policies[{i}].table"),
                    "must not be empty",
                ));
            }
        }
        if self.storage.workers == 0 {
            return Err(invalid("storage.workers", "must be at least 1"));
        }
        if self.storage.max_workers < self.storage.workers {
            return Err(invalid(
                "storage.max_workers",
                "must be at least storage.workers",
            ));
        }
        self.storage.validate_backend(file)?;
        validate_users(file, &self.users)?;
        self.transactions.validate(file)?;
        self.replication.validate(file)?;
        Ok(())
    }
}

/// Reads a TOML file (or nothing), applies `MYCELIUM_*` overrides and deserializes it; returns
/// the name to use in errors too.
fn load_toml<T: serde::de::DeserializeOwned>(
    file: Option<&Path>,
    vars: &[(String, String)],
) -> Result<(String, T), ConfigError> {
    let (name, text) = match file {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                file: path.to_owned(),
                source,
            })?,
        ),
        None => ("<defaults>".to_owned(), String::new()),
    };
    let mut value: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        file: name.clone(),
        message: e.message().to_owned() + &span_hint(&text, e.span()),
    })?;
    apply_env_overrides(&mut value, vars);
    let config = T::deserialize(value).map_err(|e| ConfigError::Parse {
        file: name.clone(),
        message: e.to_string().trim().to_owned(),
    })?;
    Ok((name, config))
}

/// The default user when none is configured, and `MYCELIUM_PASSWORD` for it.
fn apply_users(users: &mut Vec<UserConfig>, vars: &[(String, String)]) {
    if users.is_empty() {
        users.push(UserConfig {
            name: DEFAULT_USER.to_owned(),
            password: Some(DEFAULT_PASSWORD.to_owned()),
            scram_verifier: None,
        });
    }
    if let Some((_, password)) = vars.iter().find(|(k, _)| k == "MYCELIUM_PASSWORD") {
        for user in users.iter_mut().filter(|u| u.name == DEFAULT_USER) {
            user.password = Some(password.clone());
            user.scram_verifier = None;
        }
    }
}

fn invalid(file: &str, key: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_owned(),
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

fn validate_users(file: &str, users: &[UserConfig]) -> Result<(), ConfigError> {
    for (i, user) in users.iter().enumerate() {
        if user.name.is_empty() {
            return Err(invalid(
                file,
                &format!("users[{i}].name"),
                "must not be empty",
            ));
        }
        if user.password.is_none() && user.scram_verifier.is_none() {
            return Err(invalid(
                file,
                &format!("users[{i}]"),
                "needs `scram_verifier` (see `mycelium passwd`) or `password`",
            ));
        }
    }
    Ok(())
}

/// Configuration of `mycelium node`: one node process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFileConfig {
    pub node: NodeSection,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub transactions: TransactionConfig,
    #[serde(default)]
    pub replication: ReplicationConfig,
    /// The other nodes of the cluster: a node asks a transaction's decider for its outcome.
    #[serde(default)]
    pub peers: Vec<NodeAddress>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The node's name; its certificate must carry it (`mycelium certs --nodes`).
    pub id: String,
    /// `validator` or `miner`.
    #[serde(default = "default_node_type")]
    pub node_type: String,
    /// Address proxies connect to.
    pub listen: SocketAddr,
    /// A Unix socket the node accepts on as well, for proxies and nodes on the same host
    /// (their `addr = "unix:<path>"`): the same mutual TLS, without the TCP stack's cost.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// The SQLite file (unused when `storage.backend` is a PostgreSQL URL).
    #[serde(default)]
    pub data: PathBuf,
    /// Directory written by `mycelium certs`.
    pub certs: PathBuf,
}

fn default_node_type() -> String {
    "validator".to_owned()
}

impl NodeFileConfig {
    pub fn load(file: &Path) -> Result<NodeFileConfig, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let (name, config): (String, NodeFileConfig) = load_toml(Some(file), &vars)?;
        if config.node.id.is_empty() {
            return Err(invalid(&name, "node.id", "must not be empty"));
        }
        if !matches!(config.node.node_type.as_str(), "validator" | "miner") {
            return Err(invalid(
                &name,
                "node.node_type",
                "must be `validator` or `miner`",
            ));
        }
        if config.storage.workers == 0 {
            return Err(invalid(&name, "storage.workers", "must be at least 1"));
        }
        if config.storage.max_workers < config.storage.workers {
            return Err(invalid(
                &name,
                "storage.max_workers",
                "must be at least storage.workers",
            ));
        }
        config.storage.validate_backend(&name)?;
        if let Some(socket) = &config.node.socket {
            check_socket_path(socket).map_err(|reason| invalid(&name, "node.socket", &reason))?;
        }
        if config.storage.backend() == StorageBackend::Sqlite
            && config.node.data.as_os_str().is_empty()
        {
            return Err(invalid(
                &name,
                "node.data",
                "the SQLite file is required unless storage.backend names a PostgreSQL database",
            ));
        }
        config.transactions.validate(&name)?;
        config.replication.validate(&name)?;
        validate_addresses(&name, "peers", &config.peers)?;
        Ok(config)
    }
}

/// Configuration of `mycelium proxy`: a proxy in front of separately running nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFileConfig {
    #[serde(default)]
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Directory written by `mycelium certs` (the proxy uses the `proxy` certificate).
    pub certs: PathBuf,
    /// Where the proxy keeps files it generates (its client TLS certificate).
    #[serde(default = "default_proxy_data")]
    pub data_dir: PathBuf,
    pub nodes: Vec<NodeAddress>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    #[serde(default)]
    pub transactions: TransactionConfig,
}

fn default_proxy_data() -> PathBuf {
    PathBuf::from("mycelium-proxy-data")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAddress {
    pub id: String,
    /// Where this member reaches the node.
    pub addr: String,
    #[serde(default = "default_node_type")]
    pub node_type: String,
    /// Where the other nodes reach it (replication, transaction outcomes), when that is not
    /// `addr`: nodes that talk over their own network, or through a relay.
    #[serde(default)]
    pub peer_addr: Option<String>,
}

impl NodeAddress {
    /// The address other nodes use.
    pub fn peer_addr(&self) -> &str {
        self.peer_addr.as_deref().unwrap_or(&self.addr)
    }
}

impl ProxyFileConfig {
    pub fn load(file: &Path) -> Result<ProxyFileConfig, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let (name, mut config): (String, ProxyFileConfig) = load_toml(Some(file), &vars)?;
        apply_users(&mut config.users, &vars);
        validate_users(&name, &config.users)?;
        if config.nodes.is_empty() {
            return Err(invalid(&name, "nodes", "list at least one node"));
        }
        config.transactions.validate(&name)?;
        validate_addresses(&name, "nodes", &config.nodes)?;
        Ok(config)
    }
}

/// Checks a list of `[[nodes]]` or `[[peers]]`: names unique and not empty, types known, and
/// addresses of the form `host:port` or `unix:<path>`, so a typo is reported with its key at start instead of
/// as a connection that never succeeds.
fn validate_addresses(file: &str, list: &str, nodes: &[NodeAddress]) -> Result<(), ConfigError> {
    for (i, node) in nodes.iter().enumerate() {
        let key = |field: &str| format!("{list}[{i}].{field}");
        if node.id.is_empty() {
            return Err(invalid(file, &key("id"), "must not be empty"));
        }
        if nodes[..i].iter().any(|other| other.id == node.id) {
            return Err(invalid(
                file,
                &key("id"),
                &format!("node `{}` is listed twice", node.id),
            ));
        }
        if !matches!(node.node_type.as_str(), "validator" | "miner") {
            return Err(invalid(
                file,
                &key("node_type"),
                "must be `validator` or `miner`",
            ));
        }
        check_address(&node.addr).map_err(|reason| invalid(file, &key("addr"), &reason))?;
        if let Some(peer_addr) = &node.peer_addr {
            check_address(peer_addr).map_err(|reason| invalid(file, &key("peer_addr"), &reason))?;
        }
    }
    Ok(())
}

/// The prefix of a member address that names a Unix socket (`unix:/run/mycelium/n1.sock`).
const UNIX_ADDRESS_PREFIX: &str = "unix:";

/// A member's address: `host:port`, or `unix:<path>` for a node's `node.socket` on this host.
fn check_address(addr: &str) -> Result<(), String> {
    match addr.strip_prefix(UNIX_ADDRESS_PREFIX) {
        Some(path) => check_socket_path(Path::new(path)),
        None => check_host_port(addr),
    }
}

/// Longest Unix socket path Linux accepts: `sun_path` is 108 bytes with the closing NUL.
const MAX_SOCKET_PATH: usize = 107;

fn check_socket_path(path: &Path) -> Result<(), String> {
    let len = path.as_os_str().len();
    if len == 0 {
        return Err("the Unix socket path is empty".to_owned());
    }
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "`{}` is {len} bytes; a Unix socket path may have at most {MAX_SOCKET_PATH}",
            path.display()
        ));
    }
    Ok(())
}

/// `host:port`, `a.b.c.d:port` or `[v6]:port`, with a port from 1 to 65535.
fn check_host_port(addr: &str) -> Result<(), String> {
    let expected = || format!("`{addr}` is not host:port (e.g. `10.0.0.5:7001`)");
    let (host, port) = addr.rsplit_once(':').ok_or_else(expected)?;
    let host_ok = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        }
    };
    if !host_ok {
        return Err(expected());
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(format!(
            "`{addr}`: the port must be a number from 1 to 65535"
        )),
    }
}

fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].lines().count().max(1);
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
