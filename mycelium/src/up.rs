//! `mycelium up`: the embedded cluster. The proxy and its nodes run in one process, and the
//! proxy calls its nodes directly (`node::LocalLink`); the nodes still serve the node protocol
//! over mutually authenticated TLS on loopback, where they replicate to each other, resolve
//! each other's transactions in doubt, and where any other proxy reaches them.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use mycelium_config::{StorageBackend, StorageConfig, UpConfig};
use mycelium_network::{TlsIdentity, certs};
use mycelium_router::{NodeInfo, NodeType};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::{BackendKind, UpArgs};
use crate::parts::{
    NodeEndpoint, ProxyParts, build_proxy, reload_on_sighup, serve_metrics, start_node,
    start_resolver, stop_on_signal,
};

/// The proxy's name in the cluster's certificates.
pub const PROXY_MEMBER: &str = "proxy";

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
    match (args.backend, &args.pg_url) {
        (Some(BackendKind::Postgres), Some(url)) => config.storage.backend = url.clone(),
        (Some(BackendKind::Postgres), None) => {
            anyhow::bail!("--backend postgres needs --pg-url postgres://user:password@host:port/db")
        }
        (Some(BackendKind::Sqlite), _) => config.storage.backend = "sqlite".to_owned(),
        (None, Some(_)) => anyhow::bail!("--pg-url goes with --backend postgres"),
        (None, None) => {}
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
    let mut running = Vec::new();
    let mut addresses = Vec::new();
    for info in &infos {
        let node = start_node(
            &info.id,
            info.node_type == NodeType::Miner,
            &data_dir.join(format!("{}.sqlite", info.id)),
            &node_storage(&config.storage, &info.id)?,
            &config.replication,
            TlsIdentity::load_member(&certs_dir, &info.id)?,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            None,
            node_shutdown.clone(),
        )
        .await?;
        addresses.push((info.clone(), node.addr.to_string(), node.node.clone()));
        running.push(node);
    }
    for node in &running {
        let id = mycelium_protocol::NodeLink::node_id(node.node.as_ref()).to_owned();
        let peers: Vec<(String, String)> = addresses
            .iter()
            .filter(|(info, _, _)| info.id != id)
            .map(|(info, addr, _)| (info.id.clone(), addr.clone()))
            .collect();
        start_resolver(
            node.node.clone(),
            TlsIdentity::load_member(&certs_dir, &id)?,
            &peers,
            &config.transactions,
            node_shutdown.clone(),
        );
    }
    let proxy = build_proxy(
        ProxyParts {
            proxy: &config.proxy,
            cluster: &config.cluster,
            users: &config.users,
            policies: &config.policies,
            transactions: &config.transactions,
            data_dir,
            identity: TlsIdentity::load_member(&certs_dir, PROXY_MEMBER)?,
            nodes: addresses
                .into_iter()
                .map(|(info, addr, node)| NodeEndpoint {
                    info,
                    peer_addr: addr.clone(),
                    addr,
                    local: Some(node),
                })
                .collect(),
        },
        &node_shutdown,
    )
    .await?;
    let listener = TcpListener::bind(config.proxy.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.proxy.listen))?;
    let metrics = serve_metrics(args.metrics_listen, node_shutdown.clone()).await?;
    announce(
        &listener,
        &metrics,
        &format!("{} nodes, data in {}", infos.len(), data_dir.display()),
    )?;
    let config_file = args.config.clone();
    reload_on_sighup(
        proxy.clone(),
        move || {
            let config = UpConfig::load(config_file.as_deref())?;
            Ok((config.users, config.policies))
        },
        node_shutdown.clone(),
    );
    let proxy_shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(proxy_shutdown.clone()));
    mycelium_proxy::run(listener, proxy, proxy_shutdown).await;

    // Clients are gone; now the nodes can stop serving and close their files.
    node_shutdown.cancel();
    for node in running {
        node.stop().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// A node's storage: with a PostgreSQL backend, its own database on that server, named after
/// the URL's database and the node (`mycelium_n1`), created if missing.
fn node_storage(storage: &StorageConfig, node: &str) -> anyhow::Result<StorageConfig> {
    let mut storage = storage.clone();
    if let StorageBackend::Postgres(url) = storage.backend() {
        storage.backend = node_database_url(url, node)?;
        storage.postgres.create_database = true;
    }
    Ok(storage)
}

/// `postgres://u@h:5432/db?x=y` → `postgres://u@h:5432/db_n1?x=y`; without a database in the
/// URL the user name stands in, as libpq's default database does.
fn node_database_url(url: &str, node: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .with_context(|| format!("{url} is not a postgres:// URL"))?;
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, format!("?{query}")),
        None => (rest, String::new()),
    };
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let base = if database.is_empty() {
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| user)
            .unwrap_or("");
        let user = user.split(':').next().unwrap_or("");
        if user.is_empty() { "mycelium" } else { user }
    } else {
        database
    };
    Ok(format!("{scheme}://{authority}/{base}_{node}{query}"))
}

/// The one line that says where to connect.
pub fn announce(listener: &TcpListener, metrics: &SocketAddr, what: &str) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    writeln!(
        std::io::stdout().lock(),
        "Mycelium is ready: psql \"postgresql://{}@{}:{}/mycelium\" (metrics on http://{metrics}/metrics, {what})",
        mycelium_config::DEFAULT_USER,
        addr.ip(),
        addr.port(),
    )?;
    Ok(())
}
