//! The pieces `up`, `node` and `proxy` assemble: a node served over mTLS, a proxy over a set of
//! nodes, the `/metrics` endpoint, and shutdown on SIGINT/SIGTERM.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mycelium_config::{
    ClusterConfig, PolicyConfig, ProxyConfig, ReplicationConfig, StorageConfig, TransactionConfig,
    UserConfig,
};
use mycelium_network::rpc::{RemoteNode, serve_node};
use mycelium_network::{
    Listener, NetworkError, Pool, PoolOptions, ServerOptions, TlsIdentity, UnixSocketListener,
};
use mycelium_node::Node;
use mycelium_protocol::{DbError, NodeLink, TxnRecord};
use mycelium_proxy::{Cluster, ClusterNode, Proxy, policy_from_config};
use mycelium_router::{NodeInfo, NodeType, PolicyDefaults};
use mycelium_txn::{RecordStore, Resolver, Sweeper};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A node serving the node protocol.
pub struct RunningNode {
    pub node: Arc<Node>,
    pub addr: SocketAddr,
    server: JoinHandle<Result<(), NetworkError>>,
}

impl RunningNode {
    /// Waits for the server to stop (after its shutdown token fired), then closes the file.
    pub async fn stop(self) {
        match tokio::time::timeout(Duration::from_secs(10), self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "node server stopped with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "node server task failed"),
            Err(_) => tracing::warn!("node server did not stop within 10 s"),
        }
        self.node.shutdown();
    }
}

/// Opens the node's backend, serves it on `listen` (and on the Unix socket `socket`, when
/// given), and starts replicating the shards its cluster map places on it, reaching its peers
/// with `identity`.
#[expect(
    clippy::too_many_arguments,
    reason = "the pieces of one node, each from its own config section"
)]
pub async fn start_node(
    id: &str,
    miner: bool,
    file: &Path,
    storage: &StorageConfig,
    replication: &ReplicationConfig,
    identity: TlsIdentity,
    listen: SocketAddr,
    socket: Option<&Path>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningNode> {
    let node = Arc::new(match storage.backend() {
        mycelium_config::StorageBackend::Sqlite => {
            Node::open_sqlite_with(id, miner, file, storage, replication)?
        }
        mycelium_config::StorageBackend::Postgres(url) => {
            let options = mycelium_node::PostgresOptions::from_config(id, url, &storage.postgres);
            Node::open_postgres(
                id,
                miner,
                options,
                mycelium_node::map_file(file),
                replication,
            )
            .await?
        }
    });
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("node {id}: cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let mut listener = Listener::from(listener);
    if let Some(socket) = socket {
        let unix = UnixSocketListener::bind(socket)
            .await
            .with_context(|| format!("node {id}: cannot listen on {}", socket.display()))?;
        listener = listener.with_unix(unix);
    }
    node.start_replication(identity.clone(), shutdown.clone());
    let server = tokio::spawn(serve_node(
        listener,
        identity,
        ServerOptions::default(),
        node.clone(),
        Some(node.replication_handoff(shutdown.clone())),
        shutdown,
    ));
    Ok(RunningNode { node, addr, server })
}

/// Starts resolving `node`'s transactions in doubt, asking `peers` (id, address) for the
/// outcomes they decided, and sweeping the transaction records `node` decided once no peer
/// holds them prepared.
pub fn start_resolver(
    node: Arc<Node>,
    identity: TlsIdentity,
    peers: &[(String, String)],
    transactions: &TransactionConfig,
    shutdown: CancellationToken,
) {
    let pool = Pool::new(identity, PoolOptions::default());
    let mut links: HashMap<String, Arc<dyn NodeLink>> = HashMap::new();
    for (id, addr) in peers {
        pool.add_peer(id.clone(), addr.clone());
        links.insert(id.clone(), Arc::new(RemoteNode::new(id, pool.clone())));
    }
    let sweeper = Sweeper::new(
        Arc::new(NodeRecords(node.clone())),
        node.clone(),
        links.clone(),
        transactions.clone(),
    );
    tokio::spawn(sweeper.run(shutdown.clone()));
    let resolver = Resolver::new(node, links, transactions.clone());
    tokio::spawn(resolver.run(shutdown));
}

/// A node's own transaction records, for its sweeper.
struct NodeRecords(Arc<Node>);

#[async_trait::async_trait]
impl RecordStore for NodeRecords {
    async fn txn_records(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> Result<Vec<TxnRecord>, DbError> {
        self.0.txn_records(older_than, limit).await
    }

    async fn delete_txn_records(&self, records: &[TxnRecord]) -> Result<u64, DbError> {
        self.0.delete_txn_records(records).await
    }
}

pub fn parse_node_type(text: &str) -> NodeType {
    if text == "miner" {
        NodeType::Miner
    } else {
        NodeType::Validator
    }
}

/// Everything a proxy is built from.
pub struct ProxyParts<'a> {
    pub proxy: &'a ProxyConfig,
    pub cluster: &'a ClusterConfig,
    pub users: &'a [UserConfig],
    pub policies: &'a [PolicyConfig],
    pub transactions: &'a TransactionConfig,
    pub data_dir: &'a Path,
    pub identity: TlsIdentity,
    pub nodes: Vec<NodeEndpoint>,
}

/// A node as a proxy knows it.
pub struct NodeEndpoint {
    pub info: NodeInfo,
    /// Where the proxy reaches it.
    pub addr: String,
    /// Where other nodes reach it (the cluster map tells them).
    pub peer_addr: String,
    /// The node itself, when it runs in this process.
    pub local: Option<Arc<Node>>,
}

/// Connects to the nodes, loads the stored policies, and builds the proxy.
pub async fn build_proxy(
    parts: ProxyParts<'_>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<Proxy>> {
    let pool = Pool::new(
        parts.identity,
        PoolOptions {
            max_per_peer: parts.proxy.max_connections.max(16),
            ..PoolOptions::default()
        },
    );
    let mut cluster_nodes = Vec::new();
    for NodeEndpoint {
        info,
        addr,
        peer_addr,
        local,
    } in parts.nodes
    {
        pool.add_peer(info.id.clone(), addr);
        let link: Arc<dyn NodeLink> = match local {
            Some(node) => Arc::new(mycelium_node::LocalLink::new(node)),
            None => Arc::new(RemoteNode::new(&info.id, pool.clone())),
        };
        cluster_nodes.push(ClusterNode::new(info.clone(), peer_addr, link));
    }
    tokio::spawn(pool.heartbeat(shutdown.clone()));
    let defaults = PolicyDefaults {
        replication_factor: parts.cluster.default_replication_factor,
        min_validator_copies: parts.cluster.min_validator_copies,
    };
    let policies = parts
        .policies
        .iter()
        .map(|p| policy_from_config(p, &defaults))
        .collect::<Result<Vec<_>, _>>()
        .context("invalid [[policies]] entry")?;
    let cluster = Cluster::new(cluster_nodes, defaults, policies);
    cluster
        .check()
        .context("the configured policies do not fit this cluster")?;
    let proxy = Arc::new(Proxy::new(
        parts.proxy.clone(),
        parts.users,
        parts.data_dir,
        cluster,
        parts.transactions.clone(),
    )?);
    proxy
        .load_policies()
        .await
        .context("cannot load table policies from the nodes")?;
    proxy
        .load_access()
        .await
        .context("cannot load users, roles and grants from the nodes")?;
    proxy.sync_map().await;
    tokio::spawn(mycelium_proxy::sync_map_forever(
        proxy.clone(),
        shutdown.clone(),
    ));
    Ok(proxy)
}

/// Serves `/metrics` until `shutdown`; returns the bound address.
pub async fn serve_metrics(
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for /metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(crate::metrics_http::serve(listener, shutdown));
    Ok(bound)
}

/// Fires `shutdown` on SIGINT or SIGTERM.
pub async fn stop_on_signal(shutdown: CancellationToken) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C still stops");
                let _ = tokio::signal::ctrl_c().await;
                shutdown.cancel();
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    shutdown.cancel();
}

/// On SIGHUP, reads the configuration again (`load`) and gives the proxy its users and
/// policies; a bad file is logged and changes nothing. Connections stay up.
pub fn reload_on_sighup<F>(proxy: Arc<Proxy>, load: F, shutdown: CancellationToken)
where
    F: Fn() -> anyhow::Result<(Vec<UserConfig>, Vec<PolicyConfig>)> + Send + 'static,
{
    tokio::spawn(async move {
        let mut hangups =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP; reload needs a restart");
                    return;
                }
            };
        loop {
            tokio::select! {
                _ = hangups.recv() => {}
                () = shutdown.cancelled() => return,
            }
            let reloaded = load().and_then(|(users, policies)| {
                let defaults = proxy.policy_defaults();
                let policies = policies
                    .iter()
                    .map(|p| policy_from_config(p, &defaults))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(proxy.reload(&users, policies)?)
            });
            if let Err(e) = reloaded {
                tracing::warn!(error = %format!("{e:#}"), "SIGHUP: configuration not reloaded");
            }
        }
    });
}
