//! The Postgres-wire front end: clients connect here as if to one Postgres server.
//!
//! `startup` negotiates TLS and authenticates, `session` runs the simple and extended query
//! protocols and tracks the transaction state, `copy` runs COPY, `backend` encodes what goes
//! back, and `error` is the one place errors become SQLSTATEs. Statements run on nodes through
//! [`mycelium_protocol::NodeLink`]; this crate never opens a database file.

mod admin;
mod advisory;
mod audit;
mod auth;
mod backend;
mod cancel;
mod cluster;
mod conn;
mod copy;
mod copy_binary;
mod create_as;
mod describe;
mod error;
mod execute;
mod explain;
mod limits;
mod lock_order;
mod map_sync;
mod metrics;
mod named_sequences;
mod params;
mod policy_store;
mod privileges;
mod replicas;
mod scatter;
mod sequences;
mod session;
mod settings;
mod startup;
mod tls;
mod users;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use mycelium_config::{ProxyConfig, TransactionConfig, UserConfig};
use mycelium_router::{PlanCache, RouterError, TableAccess};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use auth::{BadVerifier, Verifier};
pub use cluster::{Cluster, ClusterNode, DEFAULT_GROUP, policy_from_config};
pub use map_sync::{SYNC_INTERVAL, sync_map_forever};
pub use params::SERVER_VERSION;
pub use tls::TlsError;

use crate::cancel::CancelRegistry;
use crate::describe::DescriptionCache;
use crate::startup::Opening;

/// Errors that stop a proxy from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Users(#[from] BadVerifier),
    #[error("{0}")]
    Policy(String),
    #[error("cannot open the audit log {path}: {source}")]
    Audit {
        path: String,
        source: std::io::Error,
    },
}

/// Everything the sessions of one proxy share.
pub struct Proxy {
    config: ProxyConfig,
    /// Who may log in: the config file's users and the SQL roles with LOGIN and a password.
    /// Swapped whole on reload (SIGHUP); a session reads it once, when it authenticates.
    users: std::sync::RwLock<Arc<auth::Users>>,
    /// The config file's users: the bootstrap superusers.
    config_users: std::sync::RwLock<Arc<auth::Users>>,
    /// Roles, grants and owners as last read from the nodes.
    catalog: std::sync::RwLock<Arc<privileges::Catalog>>,
    /// What each statement text needs to be allowed, for the checks of non-superusers.
    table_access: dashmap::DashMap<Arc<str>, Arc<Result<TableAccess, RouterError>>>,
    tls: tokio_rustls::TlsAcceptor,
    cluster: Cluster,
    audit: audit::AuditLog,
    limits: limits::UserLimits,
    auth_backoff: limits::AuthBackoff,
    plans: PlanCache,
    descriptions: DescriptionCache,
    cancels: CancelRegistry,
    /// The advisory locks the proxy holds for its sessions.
    advisory: Arc<advisory::AdvisoryLocks>,
    connections: Arc<Semaphore>,
    next_pid: AtomicI32,
    /// Runs every client transaction's commit (one- or two-phase).
    coordinator: mycelium_txn::Coordinator,
    /// Orders client transactions for the nodes' wait-die.
    lock_clock: lock_order::LockClock,
}

impl Proxy {
    /// Builds a proxy over `cluster`. The TLS certificate comes from the config or is
    /// generated (self-signed) in `data_dir` on first start.
    pub fn new(
        config: ProxyConfig,
        users: &[UserConfig],
        data_dir: &Path,
        cluster: Cluster,
        transactions: TransactionConfig,
    ) -> Result<Proxy, StartError> {
        let configured = config.tls_cert.as_deref().zip(config.tls_key.as_deref());
        let tls = tls::acceptor(configured, data_dir)?;
        let audit_path = data_dir.join(&config.audit_log);
        let audit = audit::AuditLog::open(&audit_path, config.audit_max_bytes, config.audit_keep)
            .map_err(|source| StartError::Audit {
            path: audit_path.display().to_string(),
            source,
        })?;
        let config_users = Arc::new(auth::Users::from_config(users)?);
        Ok(Proxy {
            audit,
            auth_backoff: limits::AuthBackoff::default(),
            limits: limits::UserLimits::new(
                config.max_connections_per_user,
                config.rate_limit_per_user,
            ),
            users: std::sync::RwLock::new(config_users.clone()),
            config_users: std::sync::RwLock::new(config_users),
            catalog: std::sync::RwLock::new(Arc::default()),
            table_access: dashmap::DashMap::new(),
            tls,
            cluster,
            plans: PlanCache::new(config.plan_cache_size),
            descriptions: DescriptionCache::new(config.plan_cache_size),
            cancels: CancelRegistry::default(),
            advisory: Default::default(),
            connections: Arc::new(Semaphore::new(config.max_connections)),
            next_pid: AtomicI32::new(1000),
            coordinator: mycelium_txn::Coordinator::new(transactions),
            lock_clock: lock_order::LockClock::default(),
            config,
        })
    }
}

impl Proxy {
    /// Replaces users and configured policies (a SIGHUP reload), and reads the roles and
    /// grants stored on the nodes again. Open sessions keep running; new logins see the new
    /// users, statements from now on the new policies and grants.
    pub fn reload(
        self: &Arc<Self>,
        users: &[UserConfig],
        policies: Vec<mycelium_router::TablePolicy>,
    ) -> Result<(), StartError> {
        let users = Arc::new(auth::Users::from_config(users)?);
        for policy in &policies {
            self.cluster
                .check_policy(policy)
                .map_err(|e| StartError::Policy(e.to_client().message))?;
        }
        if let Ok(mut current) = self.config_users.write() {
            *current = users;
        }
        self.install_catalog((*self.catalog()).clone());
        for policy in policies {
            self.cluster.set_policy(policy);
        }
        let proxy = self.clone();
        tokio::spawn(async move {
            if let Err(e) = proxy.load_access().await {
                tracing::warn!(error = %e, "reload: cannot read roles and grants from the nodes");
            }
        });
        tracing::info!("configuration reloaded");
        Ok(())
    }

    /// Installs roles and grants read from the nodes; logins from now on see their passwords.
    pub(crate) fn install_catalog(&self, catalog: privileges::Catalog) {
        let logins = Arc::new(self.config_users().with_roles(&catalog));
        self.cluster.set_access_digest(catalog.digest());
        if let Ok(mut current) = self.catalog.write() {
            *current = Arc::new(catalog);
        }
        if let Ok(mut current) = self.users.write() {
            *current = logins;
        }
    }

    pub(crate) fn config_users(&self) -> Arc<auth::Users> {
        read_lock(&self.config_users)
    }

    pub(crate) fn catalog(&self) -> Arc<privileges::Catalog> {
        read_lock(&self.catalog)
    }

    /// Config-file users, and roles with SUPERUSER: never checked.
    pub(crate) fn is_superuser(&self, user: &str) -> bool {
        self.config_users().verifier(user).is_some()
            || self.catalog().roles.get(user).is_some_and(|r| r.superuser)
    }

    /// What a statement needs to be allowed, computed once per text.
    pub(crate) fn table_access(&self, sql: &str) -> Arc<Result<TableAccess, RouterError>> {
        if let Some(access) = self.table_access.get(sql) {
            return access.clone();
        }
        let access = Arc::new(mycelium_router::table_access(sql));
        if self.table_access.len() > 10_000 {
            self.table_access.clear();
        }
        self.table_access.insert(Arc::from(sql), access.clone());
        access
    }

    /// The policy of tables nobody configured.
    /// One round of agreeing on the cluster map with the nodes (see `map_sync`); returns its
    /// epoch.
    pub async fn sync_map(&self) -> u64 {
        let round = self.cluster.sync_map().await;
        self.after_round(&round).await;
        round.epoch
    }

    /// A map round that must reach every node (a policy changed); the nodes it missed.
    pub(crate) async fn sync_map_to_all(&self) -> Vec<String> {
        let round = self.cluster.sync_map_to_all().await;
        self.after_round(&round).await;
        round.missed
    }

    async fn after_round(&self, round: &map_sync::MapRound) {
        if round.access != self.cluster.access_digest() {
            tracing::info!("roles and grants changed through another proxy: reading them again");
            if let Err(e) = self.load_access().await {
                tracing::warn!(error = %e, "cannot read roles and grants from the nodes");
            }
        }
    }

    pub fn policy_defaults(&self) -> mycelium_router::PolicyDefaults {
        self.cluster.defaults().clone()
    }

    pub(crate) fn users(&self) -> Arc<auth::Users> {
        read_lock(&self.users)
    }
}

fn read_lock<T>(lock: &std::sync::RwLock<Arc<T>>) -> Arc<T> {
    lock.read()
        .map(|u| u.clone())
        .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
}

/// Serves clients on `listener` until `shutdown` fires, then closes every session (idle ones
/// get 57P01) and waits for them, up to a few seconds.
pub async fn run(listener: TcpListener, proxy: Arc<Proxy>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let pid = proxy.next_pid.fetch_add(1, Ordering::Relaxed);
        let span =
            tracing::info_span!("session", id = pid, peer = %peer, user = tracing::field::Empty);
        tracker.spawn(
            handle_connection(socket, peer, pid, proxy.clone(), shutdown.clone()).instrument(span),
        );
    }
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("sessions still running after 5 s; leaving them");
    }
}

async fn handle_connection(
    socket: TcpStream,
    peer: std::net::SocketAddr,
    pid: i32,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
) {
    let opening = match startup::open(socket, &proxy.tls).await {
        Ok(opening) => opening,
        Err(e) => {
            tracing::debug!(error = %e, "connection closed during startup");
            return;
        }
    };
    let request = match opening {
        Opening::Cancel { pid, secret } => {
            let cancelled = proxy.cancels.cancel(pid, secret);
            tracing::info!(target_pid = pid, cancelled, "cancel request");
            return;
        }
        Opening::Startup(request) => request,
    };
    let Ok(_permit) = proxy.connections.clone().try_acquire_owned() else {
        metrics::CONNECTIONS_REFUSED
            .with_label_values(&["max_connections"])
            .inc();
        refuse(request.stream, "53300", "sorry, too many clients already").await;
        return;
    };
    session::run(request, peer, pid, proxy, shutdown).await;
}

async fn refuse(mut stream: Box<dyn conn::ClientStream>, code: &str, message: &str) {
    let mut out = BytesMut::new();
    backend::fatal_response(&mut out, code, message);
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}
