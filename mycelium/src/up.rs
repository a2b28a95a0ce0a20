//! `mycelium up`: the embedded cluster. The proxy and its nodes run in one process, but the
//! proxy reaches every node the way it would across machines: over the node protocol on a
//! mutually authenticated TLS connection on loopback.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use mycelium_config::UpConfig;
use mycelium_network::{TlsIdentity, certs};
use mycelium_router::{NodeInfo, NodeType};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::UpArgs;
use crate::parts::{
    ProxyParts, build_proxy, reload_on_sighup, serve_metrics, start_node, stop_on_signal,
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
            &config.storage,
            TlsIdentity::load_member(&certs_dir, &info.id)?,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            node_shutdown.clone(),
        )
        .await?;
        addresses.push((info.clone(), node.addr.to_string()));
        running.push(node);
    }
    let proxy = build_proxy(
        ProxyParts {
            proxy: &config.proxy,
            cluster: &config.cluster,
            users: &config.users,
            policies: &config.policies,
            data_dir,
            identity: TlsIdentity::load_member(&certs_dir, PROXY_MEMBER)?,
            nodes: addresses,
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
