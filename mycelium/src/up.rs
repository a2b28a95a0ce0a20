//! `mycelium up`: the embedded cluster. The proxy and its nodes run in one process, but the
//! proxy reaches every node the way it would across machines: over the node protocol on a
//! mutually authenticated TLS connection on loopback.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mycelium_config::UpConfig;
use mycelium_network::rpc::{RemoteNode, serve_node};
use mycelium_network::{Pool, PoolOptions, ServerOptions, TlsIdentity, certs};
use mycelium_node::Node;
use mycelium_proxy::{Cluster, ClusterNode, Proxy, policy_from_config};
use mycelium_router::{NodeInfo, NodeType, PolicyDefaults};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::UpArgs;

/// The proxy's name in the cluster's certificates.
const PROXY_MEMBER: &str = "proxy";

/// The node ids and types of an embedded cluster of `count` nodes: a third of them (rounded
/// down) are miners, the rest validators, so the default three are two validators and a miner.
pub fn embedded_nodes(count: usize) -> Vec<NodeInfo> {
    let miners = count / 3;
    (1..=count)
        .map(|i| NodeInfo {
            id: format!("n{i}"),
            node_type: if i > count - miners {
                NodeType::Miner
            } else {
                NodeType::Validator
            },
        })
        .collect()
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut config = UpConfig::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.proxy.listen = listen;
    }
    if let Some(nodes) = args.nodes {
        anyhow::ensure!(nodes >= 1, "--nodes must be at least 1");
        config.cluster.nodes = nodes;
    }
    let data_dir = &args.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let certs_dir = data_dir.join("certs");
    let infos = embedded_nodes(config.cluster.nodes);
    let mut members = vec![PROXY_MEMBER];
    members.extend(infos.iter().map(|n| n.id.as_str()));
    certs::ensure_cluster(&certs_dir, &members)?;

    let node_shutdown = CancellationToken::new();
    let pool = Pool::new(
        TlsIdentity::load_member(&certs_dir, PROXY_MEMBER)?,
        PoolOptions {
            max_per_peer: config.proxy.max_connections.max(16),
            ..PoolOptions::default()
        },
    );
    let mut nodes = Vec::new();
    let mut servers: Vec<JoinHandle<_>> = Vec::new();
    let mut cluster_nodes = Vec::new();
    for info in &infos {
        let file = data_dir.join(format!("{}.sqlite", info.id));
        let node = Arc::new(Node::open_sqlite(&info.id, &file, &config.storage)?);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .with_context(|| format!("cannot listen for node {}", info.id))?;
        pool.add_peer(info.id.clone(), listener.local_addr()?.to_string());
        servers.push(tokio::spawn(serve_node(
            listener,
            TlsIdentity::load_member(&certs_dir, &info.id)?,
            ServerOptions::default(),
            node.clone(),
            node_shutdown.clone(),
        )));
        cluster_nodes.push(ClusterNode {
            info: info.clone(),
            link: Arc::new(RemoteNode::new(&info.id, pool.clone())),
        });
        nodes.push(node);
    }
    tokio::spawn(pool.heartbeat(node_shutdown.clone()));

    let defaults = PolicyDefaults {
        replication_factor: config.cluster.default_replication_factor,
        min_validator_copies: config.cluster.min_validator_copies,
    };
    let policies = config
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
        config.proxy.clone(),
        &config.users,
        data_dir,
        cluster,
    )?);
    proxy
        .load_policies()
        .await
        .context("cannot load table policies from the nodes")?;

    let listener = TcpListener::bind(config.proxy.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.proxy.listen))?;
    let metrics_listener = TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("cannot listen for /metrics on {}", args.metrics_listen))?;
    let metrics_addr = metrics_listener.local_addr()?;
    tokio::spawn(crate::metrics_http::serve(
        metrics_listener,
        node_shutdown.clone(),
    ));
    announce(&listener, &metrics_addr, data_dir, infos.len())?;
    let proxy_shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(proxy_shutdown.clone()));
    mycelium_proxy::run(listener, proxy, proxy_shutdown).await;

    // Clients are gone; now the nodes can stop serving and close their files.
    node_shutdown.cancel();
    for server in servers {
        match tokio::time::timeout(Duration::from_secs(10), server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "node server stopped with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "node server task failed"),
            Err(_) => tracing::warn!("node server did not stop within 10 s"),
        }
    }
    for node in nodes {
        node.shutdown();
    }
    tracing::info!("stopped");
    Ok(())
}

fn announce(
    listener: &TcpListener,
    metrics: &std::net::SocketAddr,
    data_dir: &Path,
    nodes: usize,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    writeln!(
        std::io::stdout().lock(),
        "Mycelium is ready: psql \"postgresql://{}@{}:{}/mycelium\" ({nodes} nodes, metrics on http://{metrics}/metrics, data in {})",
        mycelium_config::DEFAULT_USER,
        addr.ip(),
        addr.port(),
        data_dir.display()
    )?;
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
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
