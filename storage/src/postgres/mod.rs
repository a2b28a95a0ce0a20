//! The PostgreSQL backend: a node whose data lives in a real Postgres database.
//!
//! # Design
//!
//! **Connections.** A bb8 pool of tokio-postgres clients (`pool.rs`), each with its own LRU
//! cache of prepared statements (`statement_cache_size`). An autocommit statement borrows a
//! connection for as long as its rows stream; `BEGIN` pins one to the session until COMMIT,
//! ROLLBACK or PREPARE TRANSACTION (the statements themselves go to Postgres as sent). Every
//! connection starts with the settings the proxy reports to clients (`TimeZone=UTC`,
//! `DateStyle=ISO, MDY`, `IntervalStyle=postgres`, `extra_float_digits=1`,
//! `bytea_output=hex`), because the proxy answers SET itself and never forwards it.
//!
//! **Statements** go to Postgres untouched: no dialect rewriting, parameters bound as the
//! client's raw bytes in the client's format. A text a connection has not run before goes as
//! the unnamed statement, Parse to Execute in one round trip (its columns come with the first
//! row; a statement that can return rows but returned none is described afterwards); a text
//! that repeats (`SELECT`, DML) is prepared as a named statement and kept in the cache, and
//! runs in one round trip from then on. Texts full of literals (the simple protocol) thus
//! cost one round trip and leave nothing prepared on the server. tokio-postgres always asks for binary results;
//! a column the client wants in binary is copied as is, one it wants in text is transcoded
//! (`results.rs`): with the protocol's value codec for the common scalar types, with exact
//! code for `numeric` (display scale kept), arrays, `int2vector`/`oidvector` and records, and
//! for every other type by asking Postgres itself (`value::text` over the same connection),
//! which is exactly what Postgres would have sent. Such statements buffer their rows first.
//! Command tags are rebuilt from the statement's leading keywords and the row count, because
//! tokio-postgres does not expose the tag (`sql.rs`).
//!
//! **Two-phase commit.** [`NodeSession::prepare`] runs `PREPARE TRANSACTION` with a Postgres
//! gid `{gid}@{decider}@{database}` (the database keeps gids unique when several nodes share
//! one Postgres server, since Postgres's gids are server-wide) and checks that the transaction
//! is in `pg_prepared_xacts` before voting yes. The decision record is a row of
//! `mycelium.txn_records`, written in the deciding transaction; `txn_outcome` inserts an
//! `aborted` row if there is none (waiting at most a short `lock_timeout` for an undecided
//! writer of the same gid), so a late decision conflicts on the primary key and fails.
//! Records are deleted by the coordinator's forget and the node's record sweep (see
//! [`crate::Backend::delete_txn_records`]); the decision returns `now()`, its transaction's
//! start, for the sweep's fence against late decisions.
//!
//! **Lock waits across nodes** (`wait_die.rs`): a statement of a distributed transaction
//! that holds locks on other nodes is canceled, and fails with 40001, when it waits for the
//! session of an older one; no server can see such a cycle.
//!
//! **Outages.** When a connection attempt fails the backend marks itself down: statements
//! fail at once with 08006 naming the database, and a probe reconnects with exponential
//! backoff (100 ms doubling up to `retry_interval`). The first successful connection marks it
//! up again; connections that died with the server are dropped as they are checked out.

mod pool;
mod replication;
mod results;
mod session;
mod sql;
mod transcode;
mod wait_die;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use mycelium_protocol::{DbError, NodeSession, PreparedTxn, TxnOutcome, TxnRecord};

pub use replication::{PgReplicationError, PostgresReplication, PostgresShardLog};
pub use session::PostgresSession;

use pool::{Conn, Health, Manager, Pooled};

/// Errors opening a Postgres backend.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("node {node}: invalid PostgreSQL URL: {reason}")]
    Url { node: String, reason: String },
    #[error(
        "node {node}: cannot connect to PostgreSQL database \"{database}\" at {endpoint}: {source}"
    )]
    Connect {
        node: String,
        database: String,
        endpoint: String,
        source: tokio_postgres::Error,
    },
    #[error(
        "node {node}: PostgreSQL at {endpoint} has max_prepared_transactions = 0, but Mycelium \
         needs prepared transactions for two-phase commit: set max_prepared_transactions \
         (for example to the server's max_connections) in postgresql.conf and restart PostgreSQL"
    )]
    PreparedTransactionsDisabled { node: String, endpoint: String },
    #[error("node {node}: cannot set up PostgreSQL database \"{database}\": {source}")]
    Setup {
        node: String,
        database: String,
        source: tokio_postgres::Error,
    },
}

/// How a node reaches its Postgres database (the seed's DatabaseConfig).
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The node's id, for errors and logs.
    pub node: String,
    /// `postgres://user:password@host:port/database` (or a libpq key=value string).
    pub url: String,
    /// Connections in the pool.
    pub pool_size: u32,
    /// An idle connection is closed after this long.
    pub idle_timeout: Duration,
    /// How long connecting, or waiting for a free connection, may take.
    pub connect_timeout: Duration,
    /// Longest pause between reconnection attempts while the database is unreachable.
    pub retry_interval: Duration,
    /// Prepared statements kept per connection (0 disables the cache).
    pub statement_cache_size: usize,
    /// Create the database when it does not exist (connecting to `postgres` to do it).
    pub create_database: bool,
}

impl PostgresOptions {
    /// Options for `url` with the defaults of the seed's DatabaseConfig.
    pub fn new(node: &str, url: &str) -> PostgresOptions {
        PostgresOptions {
            node: node.to_owned(),
            url: url.to_owned(),
            pool_size: 20,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(30),
            retry_interval: Duration::from_secs(5),
            statement_cache_size: 1000,
            create_database: false,
        }
    }

    /// Options from a node's `[storage]` configuration (`backend` holds the URL).
    pub fn from_config(
        node: &str,
        url: &str,
        config: &mycelium_config::PostgresConfig,
    ) -> PostgresOptions {
        PostgresOptions {
            node: node.to_owned(),
            url: url.to_owned(),
            pool_size: config.pool_size,
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            retry_interval: Duration::from_millis(config.retry_interval_ms),
            statement_cache_size: config.statement_cache_size,
            create_database: config.create_database,
        }
    }
}

/// What the backend knows of a type from `pg_type`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TypeInfo {
    pub typlen: i16,
    pub typarray: u32,
}

/// State shared by the backend and its sessions.
pub(crate) struct Shared {
    pub pool: bb8::Pool<Manager>,
    pub node: String,
    pub database: String,
    /// `host:port` (or the socket file), for messages.
    pub endpoint: String,
    pub health: Arc<Health>,
    pub types: RwLock<HashMap<u32, TypeInfo>>,
    pub closed: AtomicBool,
    pub connect_timeout: Duration,
    /// A deciding transaction that began at or before this (ms since the Unix epoch, on the
    /// server's clock) may not commit its decision: an `aborted` record written after it
    /// began may have been deleted (see [`crate::Backend::delete_txn_records`]). In memory
    /// only: the node's connections, and with them its transactions, end with the process.
    pub decisions_fenced_ms: AtomicI64,
    /// The node's distributed transactions by connection, for wait-die.
    pub wait_die: Arc<wait_die::WaitDie>,
}

/// A node backend in a PostgreSQL database.
pub struct PostgresBackend {
    shared: Arc<Shared>,
}

/// How long `txn_outcome` waits for an undecided transaction holding the record's key.
const OUTCOME_LOCK_TIMEOUT: &str = "500ms";

const SETUP_DDL: &str = "CREATE SCHEMA IF NOT EXISTS mycelium; \
     CREATE TABLE IF NOT EXISTS mycelium.txn_records (\
     gid text PRIMARY KEY, state text NOT NULL, participants text NOT NULL, \
     decided_at timestamptz NOT NULL DEFAULT now())";

impl PostgresBackend {
    /// Connects, checks that the server allows prepared transactions, and creates the
    /// `mycelium` schema (and, when asked, the database) if missing.
    pub async fn connect(options: PostgresOptions) -> Result<PostgresBackend, PostgresError> {
        let node = options.node.clone();
        let mut config =
            tokio_postgres::Config::from_str(&options.url).map_err(|e| PostgresError::Url {
                node: node.clone(),
                reason: e.to_string(),
            })?;
        let endpoint = endpoint(&config);
        let database = config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres")
            .to_owned();
        config.connect_timeout(options.connect_timeout);
        config.application_name(format!("mycelium-{node}"));
        let session_options = "-c TimeZone=UTC -c DateStyle=ISO,MDY -c IntervalStyle=postgres \
             -c extra_float_digits=1 -c bytea_output=hex -c client_min_messages=warning";
        // Postgres's default search_path starts with "$user": for a role named `mycelium`
        // that would be the internal schema, and client tables would land in it.
        let session_options = if config.get_user() == Some("mycelium") {
            format!("{session_options} -c search_path=public")
        } else {
            session_options.to_owned()
        };
        let combined = match config.get_options() {
            Some(user) => format!("{session_options} {user}"),
            None => session_options,
        };
        config.options(&combined);
        let connect_err = |source| PostgresError::Connect {
            node: node.clone(),
            database: database.clone(),
            endpoint: endpoint.clone(),
            source,
        };
        if options.create_database {
            create_database(&config, &database)
                .await
                .map_err(&connect_err)?;
        }

        let health = Arc::new(Health::new(options.retry_interval));
        let manager = Manager::new(config, options.statement_cache_size, health.clone());
        let mut first = manager.connect_direct().await.map_err(&connect_err)?;
        let setup_err = |source| PostgresError::Setup {
            node: node.clone(),
            database: database.clone(),
            source,
        };
        let max_prepared = first
            .client
            .query_one(
                "SELECT current_setting('max_prepared_transactions')::int4",
                &[],
            )
            .await
            .map_err(setup_err)?
            .try_get::<_, i32>(0)
            .map_err(setup_err)?;
        if max_prepared == 0 {
            return Err(PostgresError::PreparedTransactionsDisabled { node, endpoint });
        }
        first
            .client
            .batch_execute(SETUP_DDL)
            .await
            .map_err(setup_err)?;
        let types = load_types(&mut first).await.map_err(setup_err)?;

        let pool = bb8::Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(None)
            .idle_timeout(Some(options.idle_timeout))
            .connection_timeout(options.connect_timeout)
            .test_on_check_out(false)
            .retry_connection(false)
            // The connection used last goes out first: its backend process and its caches
            // are warm, and connections a burst opened stay idle until they time out.
            .queue_strategy(bb8::QueueStrategy::Lifo)
            .error_sink(Box::new(pool::HealthSink::new(
                health.clone(),
                manager.clone(),
            )))
            .build_unchecked(manager.clone());
        // A full pool (size 1 with a connection already made) just closes this one.
        let _ = pool.add(first);
        tracing::info!(node = %node, database = %database, endpoint = %endpoint, "PostgreSQL backend connected");
        let wait_die = Arc::new(wait_die::WaitDie::new(manager, node.clone()));
        Ok(PostgresBackend {
            shared: Arc::new(Shared {
                pool,
                node,
                database,
                endpoint,
                health,
                types: RwLock::new(types),
                closed: AtomicBool::new(false),
                connect_timeout: options.connect_timeout,
                decisions_fenced_ms: AtomicI64::new(i64::MIN),
                wait_die,
            }),
        })
    }

    /// A new session; holds no connection until a statement runs.
    pub fn session(&self) -> PostgresSession {
        PostgresSession::new(self.shared.clone())
    }

    /// Whether the last connection attempt succeeded.
    pub fn is_healthy(&self) -> bool {
        !self.shared.health.is_down()
    }

    /// The database this backend writes to.
    pub fn database(&self) -> &str {
        &self.shared.database
    }
}

/// Where the backend connects, for messages: `host:port`, or the socket file of a Unix-domain
/// socket (its directory is the URL's host), so a wrong path is plain to see.
fn endpoint(config: &tokio_postgres::Config) -> String {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => format!("{host}:{port}"),
        Some(tokio_postgres::config::Host::Unix(dir)) => {
            dir.join(format!(".s.PGSQL.{port}")).display().to_string()
        }
        None => format!("localhost:{port}"),
    }
}

/// Creates `database` through the server's `postgres` database when it does not exist.
async fn create_database(
    config: &tokio_postgres::Config,
    database: &str,
) -> Result<(), tokio_postgres::Error> {
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin.connect(tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await?
        .is_some();
    if !exists {
        let created = client
            .batch_execute(&format!(
                "CREATE DATABASE {}",
                sql::quote_identifier(database)
            ))
            .await;
        // Another node creating the same database at the same moment is not a failure.
        if let Err(e) = created
            && e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
        {
            return Err(e);
        }
        tracing::info!(database, "created PostgreSQL database");
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

async fn load_types(conn: &mut Conn) -> Result<HashMap<u32, TypeInfo>, tokio_postgres::Error> {
    let rows = conn
        .client
        .query("SELECT oid, typlen, typarray FROM pg_catalog.pg_type", &[])
        .await?;
    let mut types = HashMap::with_capacity(rows.len());
    for row in rows {
        let oid: u32 = row.try_get(0)?;
        types.insert(
            oid,
            TypeInfo {
                typlen: row.try_get(1)?,
                typarray: row.try_get(2)?,
            },
        );
    }
    Ok(types)
}

impl Shared {
    /// A pooled connection, or 08006 at once while the database is unreachable.
    pub async fn acquire(&self) -> Result<Pooled, DbError> {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(DbError::new(
                    "57P01",
                    format!(
                        "terminating connection: node {} is shutting down",
                        self.node
                    ),
                ));
            }
            if self.health.is_down() {
                return Err(self.unreachable());
            }
            let got = tokio::select! {
                got = self.pool.get_owned() => got,
                () = self.health.went_down() => return Err(self.unreachable()),
            };
            let mut conn = match got {
                Ok(conn) => conn,
                Err(bb8::RunError::User(e)) => return Err(self.error(&e)),
                Err(bb8::RunError::TimedOut) => {
                    return Err(DbError::new(
                        "53300",
                        format!(
                            "node {}: no connection to PostgreSQL database \"{}\" became free \
                             within {:?} ({} connections open)",
                            self.node,
                            self.database,
                            self.connect_timeout,
                            self.pool.state().connections
                        ),
                    )
                    .with_hint("raise storage.postgres.pool_size or connect_timeout_ms"));
                }
            };
            // A connection that died with the server is dropped here rather than failing the
            // statement (bb8 discards it when it sees it broken).
            if conn.client.is_closed() {
                conn.broken = true;
                continue;
            }
            return Ok(conn);
        }
    }

    fn unreachable(&self) -> DbError {
        DbError::new(
            "08006",
            format!(
                "node {}: PostgreSQL database \"{}\" at {} is unreachable: {}",
                self.node,
                self.database,
                self.endpoint,
                self.health.last_error()
            ),
        )
        .with_hint("the node reconnects by itself once PostgreSQL accepts connections again")
    }

    /// A tokio-postgres error as the client should see it: Postgres's own fields when the
    /// server sent it, else 08006 naming the database.
    pub fn error(&self, e: &tokio_postgres::Error) -> DbError {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            let message = if code.starts_with("57P") {
                format!(
                    "{} (node {}, PostgreSQL database \"{}\")",
                    db.message(),
                    self.node,
                    self.database
                )
            } else {
                db.message().to_owned()
            };
            return DbError {
                code: code.to_owned(),
                message,
                detail: db.detail().map(str::to_owned),
                hint: db.hint().map(str::to_owned),
            };
        }
        DbError::new(
            "08006",
            format!(
                "node {}: lost the connection to PostgreSQL database \"{}\" at {}: {e}",
                self.node, self.database, self.endpoint
            ),
        )
    }

    /// `typlen` and `typarray` of a type, from the cache or `pg_type`.
    pub async fn type_info(&self, conn: &Conn, oid: u32) -> Result<TypeInfo, DbError> {
        if let Ok(types) = self.types.read()
            && let Some(info) = types.get(&oid)
        {
            return Ok(*info);
        }
        let row = conn
            .client
            .query_opt(
                "SELECT typlen, typarray FROM pg_catalog.pg_type WHERE oid = $1",
                &[&oid],
            )
            .await
            .map_err(|e| self.error(&e))?;
        let info = match row {
            Some(row) => TypeInfo {
                typlen: row.try_get(0).map_err(|e| self.error(&e))?,
                typarray: row.try_get(1).map_err(|e| self.error(&e))?,
            },
            None => TypeInfo {
                typlen: -1,
                typarray: 0,
            },
        };
        if let Ok(mut types) = self.types.write() {
            types.insert(oid, info);
        }
        Ok(info)
    }

    /// The Postgres gid of a distributed transaction on this node.
    pub fn pg_gid(&self, gid: &str, decider: &str) -> Result<String, DbError> {
        if decider.contains('@') {
            return Err(DbError::new(
                "22023",
                format!("decider node id \"{decider}\" must not contain '@'"),
            ));
        }
        let pg_gid = format!("{gid}@{decider}@{}", self.database);
        // Postgres keeps gids in a 200-byte buffer, terminator included.
        if pg_gid.len() > 199 {
            return Err(DbError::new(
                "22023",
                format!(
                    "transaction id \"{gid}\" is too long for PostgreSQL: with the decider and \
                     the database name it must fit in 199 bytes"
                ),
            ));
        }
        Ok(pg_gid)
    }

    /// Splits a Postgres gid of this database into (gid, decider).
    fn parse_pg_gid<'a>(&self, pg_gid: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = pg_gid
            .strip_suffix(self.database.as_str())?
            .strip_suffix('@')?;
        rest.rsplit_once('@')
    }

    async fn prepared_gids(&self) -> Result<Vec<(String, String, String, i64)>, DbError> {
        let conn = self.acquire().await?;
        let rows = conn
            .client
            .query(
                "SELECT gid, (extract(epoch FROM prepared) * 1000)::int8 \
                 FROM pg_catalog.pg_prepared_xacts WHERE database = current_database()",
                &[],
            )
            .await
            .map_err(|e| self.error(&e))?;
        let mut out = Vec::new();
        for row in rows {
            let pg_gid: String = row.try_get(0).map_err(|e| self.error(&e))?;
            let at: i64 = row.try_get(1).map_err(|e| self.error(&e))?;
            if let Some((gid, decider)) = self.parse_pg_gid(&pg_gid) {
                out.push((gid.to_owned(), decider.to_owned(), pg_gid.clone(), at));
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl crate::Backend for PostgresBackend {
    fn session(&self) -> Box<dyn NodeSession> {
        Box::new(PostgresBackend::session(self))
    }

    async fn finish_prepared(&self, gid: &str, commit: bool) -> Result<(), DbError> {
        let shared = &self.shared;
        for (found, _, pg_gid, _) in shared.prepared_gids().await? {
            if found != gid {
                continue;
            }
            let verb = if commit { "COMMIT" } else { "ROLLBACK" };
            let conn = shared.acquire().await?;
            let done = conn
                .client
                .batch_execute(&format!("{verb} PREPARED {}", sql::literal(&pg_gid)))
                .await;
            match done {
                Ok(()) => {
                    tracing::info!(node = %shared.node, gid, commit, "finished prepared transaction");
                }
                // Finished by someone else in the meantime.
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT) => {}
                Err(e) => return Err(shared.error(&e)),
            }
        }
        Ok(())
    }

    async fn prepared(&self) -> Result<Vec<PreparedTxn>, DbError> {
        Ok(self
            .shared
            .prepared_gids()
            .await?
            .into_iter()
            .map(|(gid, decider, _, at)| PreparedTxn {
                gid,
                decider,
                prepared_at_ms: at,
            })
            .collect())
    }

    async fn txn_outcome(&self, gid: &str) -> Result<TxnOutcome, DbError> {
        let shared = &self.shared;
        let mut conn = shared.acquire().await?;
        let result = outcome_in_transaction(&mut conn, gid).await;
        match result {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                let _ = conn.client.batch_execute("ROLLBACK").await;
                if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
                    Ok(TxnOutcome::Pending)
                } else {
                    Err(shared.error(&e))
                }
            }
        }
    }

    async fn forget_txn(&self, gid: &str) -> Result<bool, DbError> {
        let shared = &self.shared;
        let conn = shared.acquire().await?;
        let deleted = conn
            .client
            .execute(
                "DELETE FROM mycelium.txn_records WHERE gid = $1 AND state = 'committed'",
                &[&gid],
            )
            .await
            .map_err(|e| shared.error(&e))?;
        Ok(deleted > 0)
    }

    async fn txn_records(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> Result<Vec<TxnRecord>, DbError> {
        let shared = &self.shared;
        let conn = shared.acquire().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = conn
            .client
            .query(
                "SELECT gid, state, participants, \
                 (extract(epoch FROM decided_at) * 1000)::int8 FROM mycelium.txn_records \
                 WHERE state IN ('committed', 'aborted') \
                 AND decided_at < now() - make_interval(secs => $1) \
                 ORDER BY decided_at LIMIT $2",
                &[&older_than.as_secs_f64(), &limit],
            )
            .await
            .map_err(|e| shared.error(&e))?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get(1)?;
                let participants: String = row.try_get(2)?;
                Ok(TxnRecord {
                    gid: row.try_get(0)?,
                    committed: state == "committed",
                    participants: participants
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    decided_at_ms: row.try_get(3)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| shared.error(&e))
    }

    async fn delete_txn_records(&self, records: &[TxnRecord]) -> Result<u64, DbError> {
        let shared = &self.shared;
        // The fence goes up before any abort record goes away: a decision that finds the
        // record gone (its insert succeeds) reads the fence after that, and fails.
        if let Some(fence) = records
            .iter()
            .filter(|r| !r.committed)
            .map(|r| r.decided_at_ms)
            .max()
        {
            shared
                .decisions_fenced_ms
                .fetch_max(fence, Ordering::SeqCst);
        }
        if records.is_empty() {
            return Ok(0);
        }
        let (committed, aborted): (Vec<&TxnRecord>, Vec<&TxnRecord>) =
            records.iter().partition(|r| r.committed);
        let gids = |list: Vec<&TxnRecord>| list.into_iter().map(|r| r.gid.clone()).collect();
        let (committed, aborted): (Vec<String>, Vec<String>) = (gids(committed), gids(aborted));
        let conn = shared.acquire().await?;
        conn.client
            .execute(
                "DELETE FROM mycelium.txn_records WHERE (state = 'committed' AND gid = ANY($1)) \
                 OR (state = 'aborted' AND gid = ANY($2))",
                &[&committed, &aborted],
            )
            .await
            .map_err(|e| shared.error(&e))
    }

    fn info(&self) -> crate::BackendInfo {
        crate::BackendInfo {
            kind: "postgres",
            location: self.database().to_owned(),
        }
    }

    fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.health.stopped.store(true, Ordering::Release);
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        self.shared.health.stopped.store(true, Ordering::Release);
    }
}

async fn outcome_in_transaction(
    conn: &mut Conn,
    gid: &str,
) -> Result<TxnOutcome, tokio_postgres::Error> {
    conn.client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL lock_timeout = '{OUTCOME_LOCK_TIMEOUT}'"
        ))
        .await?;
    conn.client
        .execute(
            "INSERT INTO mycelium.txn_records (gid, state, participants) \
             VALUES ($1, 'aborted', '') ON CONFLICT (gid) DO NOTHING",
            &[&gid],
        )
        .await?;
    let state: Option<String> = conn
        .client
        .query_opt(
            "SELECT state FROM mycelium.txn_records WHERE gid = $1",
            &[&gid],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    conn.client.batch_execute("COMMIT").await?;
    Ok(match state.as_deref() {
        Some("committed") => TxnOutcome::Committed,
        _ => TxnOutcome::Aborted,
    })
}
