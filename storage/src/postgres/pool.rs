//! Pooled Postgres connections, each with its own prepared-statement cache, and the
//! backend's health: down after a failed connection attempt, probed with backoff until a
//! connection succeeds again.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Statement};

pub(crate) type Pooled = bb8::PooledConnection<'static, Manager>;

/// One connection to Postgres.
pub(crate) struct Conn {
    pub client: Client,
    /// The server process serving the connection (`pg_backend_pid()`).
    pub pid: i32,
    cache: StatementCache,
    seen: SeenTexts,
    /// Set when the connection must not be reused (its transaction state is unknown).
    pub broken: bool,
    /// The `TimeZone` the server session has; `None` when unknown (a transaction that set
    /// it ended, and a rollback puts the old value back).
    zone: Option<Arc<str>>,
    /// The zone was set inside the open transaction, which may still undo it.
    zone_in_transaction: bool,
}

impl Conn {
    /// Gives the server session the client's `TimeZone` (one round trip, only when it
    /// differs from what the connection has). `in_transaction`: a rollback would undo it.
    pub async fn use_zone(
        &mut self,
        zone: &Arc<str>,
        in_transaction: bool,
    ) -> Result<(), tokio_postgres::Error> {
        if self.zone.as_deref() == Some(&**zone) {
            return Ok(());
        }
        let quoted = zone.replace('\'', "''");
        self.client
            .batch_execute(&format!("SET TimeZone TO '{quoted}'"))
            .await?;
        self.zone = Some(zone.clone());
        self.zone_in_transaction |= in_transaction;
        Ok(())
    }

    /// The transaction ended, or rolled back to a savepoint: a zone it set may be undone.
    pub fn transaction_ended(&mut self) {
        if std::mem::take(&mut self.zone_in_transaction) {
            self.zone = None;
        }
    }

    /// The cached statement for `sql` with these parameter types.
    pub fn cached(&mut self, sql: &str, param_types: &[u32]) -> Option<Statement> {
        self.cache.get(sql, param_types)
    }

    /// Whether `sql` with these parameter types ran on this connection before without a
    /// cached statement (and is worth one now); remembers it when not.
    pub fn repeated(&mut self, sql: &str, param_types: &[u32]) -> bool {
        self.seen.check(sql, param_types)
    }

    /// The prepared statement for `sql` with these parameter types, from the cache when it
    /// is there; `cache` says whether to keep a new one.
    pub async fn prepare(
        &mut self,
        sql: &str,
        param_types: &[u32],
        cache: bool,
    ) -> Result<(Statement, bool), tokio_postgres::Error> {
        if let Some(statement) = self.cache.get(sql, param_types) {
            return Ok((statement, true));
        }
        let types: Vec<Type> = param_types.iter().map(|&oid| type_for_oid(oid)).collect();
        let statement = self.client.prepare_typed(sql, &types).await?;
        if cache {
            self.cache.insert(sql, param_types, statement.clone());
        }
        Ok((statement, false))
    }

    /// Forgets a cached statement (its plan changed under it).
    pub fn forget(&mut self, sql: &str, param_types: &[u32]) {
        self.cache.remove(sql, param_types);
    }
}

/// A tokio-postgres type for an OID: the built-in one, or a stand-in that only carries the
/// OID (which is all a Parse message needs; 0 lets Postgres infer the type).
pub(crate) fn type_for_oid(oid: u32) -> Type {
    static UNSPECIFIED: LazyLock<Type> = LazyLock::new(|| stand_in(0));
    if oid == 0 {
        return UNSPECIFIED.clone();
    }
    Type::from_oid(oid).unwrap_or_else(|| stand_in(oid))
}

fn stand_in(oid: u32) -> Type {
    Type::new(
        format!("oid_{oid}"),
        oid,
        tokio_postgres::types::Kind::Simple,
        "pg_catalog".to_owned(),
    )
}

/// Statement texts run once on a connection without a cached statement, so that the second
/// run prepares and caches one: a fixed table of hashes of (text, parameter types). A
/// collision forgets a text (it is cached on a later repeat) or caches one a run early; both
/// only cost a round trip.
struct SeenTexts {
    slots: Box<[u64]>,
}

/// Most slots a connection's table of seen texts has (32 KiB).
const MAX_SEEN_SLOTS: usize = 4096;

impl SeenTexts {
    /// Room for about twice the statements the cache keeps; none when nothing is cached.
    fn new(cache_capacity: usize) -> SeenTexts {
        let slots = if cache_capacity == 0 {
            0
        } else {
            cache_capacity
                .saturating_mul(2)
                .clamp(64, MAX_SEEN_SLOTS)
                .next_power_of_two()
        };
        SeenTexts {
            slots: vec![0; slots].into_boxed_slice(),
        }
    }

    /// True when the text was seen (and forgets it: it is about to be cached); else
    /// remembers it.
    fn check(&mut self, sql: &str, param_types: &[u32]) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let mut hasher = DefaultHasher::new();
        sql.hash(&mut hasher);
        param_types.hash(&mut hasher);
        // 0 marks an empty slot.
        let fingerprint = hasher.finish() | 1;
        let index = (fingerprint >> 32) as usize & (self.slots.len() - 1);
        let slot = &mut self.slots[index];
        if *slot == fingerprint {
            *slot = 0;
            true
        } else {
            *slot = fingerprint;
            false
        }
    }
}

/// A cached statement: its parameter types, the statement, when it was last used.
type Entry = (Vec<u32>, Statement, u64);

/// Least-recently-used prepared statements of one connection, by text and then parameter
/// types (looked up without allocating).
struct StatementCache {
    capacity: usize,
    len: usize,
    tick: u64,
    entries: HashMap<String, Vec<Entry>>,
}

impl StatementCache {
    fn get(&mut self, sql: &str, param_types: &[u32]) -> Option<Statement> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self
            .entries
            .get_mut(sql)?
            .iter_mut()
            .find(|(types, _, _)| types == param_types)?;
        entry.2 = tick;
        Some(entry.1.clone())
    }

    fn remove(&mut self, sql: &str, param_types: &[u32]) {
        if let Some(entries) = self.entries.get_mut(sql) {
            let before = entries.len();
            entries.retain(|(types, _, _)| types != param_types);
            self.len -= before - entries.len();
            if entries.is_empty() {
                self.entries.remove(sql);
            }
        }
    }

    fn insert(&mut self, sql: &str, param_types: &[u32], statement: Statement) {
        if self.capacity == 0 {
            return;
        }
        if self.len >= self.capacity {
            // Dropping the Statement closes it on the server.
            let oldest = self
                .entries
                .iter()
                .flat_map(|(sql, entries)| entries.iter().map(move |e| (sql, &e.0, e.2)))
                .min_by_key(|(_, _, used)| *used)
                .map(|(sql, types, _)| (sql.clone(), types.clone()));
            if let Some((sql, types)) = oldest {
                self.remove(&sql, &types);
            }
        }
        self.tick += 1;
        self.len += 1;
        self.entries.entry(sql.to_owned()).or_default().push((
            param_types.to_vec(),
            statement,
            self.tick,
        ));
    }
}

/// Opens connections for bb8, each with a statement cache.
#[derive(Clone)]
pub(crate) struct Manager {
    config: tokio_postgres::Config,
    cache_size: usize,
    health: Arc<Health>,
}

impl Manager {
    pub fn new(config: tokio_postgres::Config, cache_size: usize, health: Arc<Health>) -> Manager {
        Manager {
            config,
            cache_size,
            health,
        }
    }

    /// A new connection outside the pool's bookkeeping.
    pub async fn connect_direct(&self) -> Result<Conn, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        let pid = client
            .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
            .await?
            .try_get(0)?;
        self.health.up();
        Ok(Conn {
            client,
            pid,
            cache: StatementCache {
                capacity: self.cache_size,
                len: 0,
                tick: 0,
                entries: HashMap::new(),
            },
            seen: SeenTexts::new(self.cache_size),
            broken: false,
            // The connection options set it.
            zone: Some(Arc::from("UTC")),
            zone_in_transaction: false,
        })
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Conn;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Conn, tokio_postgres::Error> {
        self.connect_direct().await
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), tokio_postgres::Error> {
        conn.client.simple_query("").await.map(|_| ())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken || conn.client.is_closed()
    }
}

/// Whether the database is reachable, as the last connection attempt said.
pub(crate) struct Health {
    down: watch::Sender<bool>,
    last_error: Mutex<String>,
    probing: AtomicBool,
    /// Set when the backend shuts down: probing stops.
    pub stopped: AtomicBool,
    retry_interval: Duration,
}

/// The first pause before reconnecting.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

impl Health {
    pub fn new(retry_interval: Duration) -> Health {
        Health {
            down: watch::Sender::new(false),
            last_error: Mutex::new(String::new()),
            probing: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            retry_interval,
        }
    }

    pub fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// Resolves when the database is (or becomes) unreachable.
    pub async fn went_down(&self) {
        let mut rx = self.down.subscribe();
        if rx.wait_for(|down| *down).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    fn up(&self) {
        self.down
            .send_if_modified(|down| std::mem::replace(down, false));
    }

    fn failed(&self, error: &tokio_postgres::Error) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = error.to_string();
        }
        if self
            .down
            .send_if_modified(|down| !std::mem::replace(down, true))
        {
            tracing::warn!(error = %error, "PostgreSQL is unreachable; reconnecting with backoff");
        }
    }

    /// Tries to connect with exponential backoff until it works; one prober at a time.
    fn probe(self: &Arc<Self>, manager: Manager) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let health = self.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.probing.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(async move {
            let mut backoff = MIN_BACKOFF;
            loop {
                tokio::time::sleep(backoff).await;
                if health.stopped.load(Ordering::Acquire) {
                    break;
                }
                match manager.connect_direct().await {
                    Ok(_) => {
                        tracing::info!("PostgreSQL is reachable again");
                        break;
                    }
                    Err(e) => {
                        health.failed(&e);
                        backoff = (backoff * 2).min(health.retry_interval.max(MIN_BACKOFF));
                    }
                }
            }
            health.probing.store(false, Ordering::Release);
        });
    }
}

/// Receives bb8's connection errors: the database is down, start probing.
pub(crate) struct HealthSink {
    health: Arc<Health>,
    manager: Manager,
}

impl HealthSink {
    pub fn new(health: Arc<Health>, manager: Manager) -> HealthSink {
        HealthSink { health, manager }
    }
}

impl std::fmt::Debug for HealthSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HealthSink")
    }
}

impl bb8::ErrorSink<tokio_postgres::Error> for HealthSink {
    fn sink(&self, error: tokio_postgres::Error) {
        self.health.failed(&error);
        self.health.probe(self.manager.clone());
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<tokio_postgres::Error>> {
        Box::new(HealthSink {
            health: self.health.clone(),
            manager: self.manager.clone(),
        })
    }
}
