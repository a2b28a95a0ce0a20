//! `mycelium node` and `mycelium proxy`: one cluster member per process.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use mycelium_config::{NodeFileConfig, ProxyFileConfig};
use mycelium_network::TlsIdentity;
use mycelium_router::NodeInfo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::parts::{
    NodeEndpoint, ProxyParts, build_proxy, parse_node_type, reload_on_sighup, serve_metrics,
    start_node, start_resolver, stop_on_signal,
};
use crate::up::{PROXY_MEMBER, announce};

pub async fn node(config_file: &Path, metrics_listen: SocketAddr) -> anyhow::Result<()> {
    let config = NodeFileConfig::load(config_file)?;
    let id = &config.node.id;
    let identity = TlsIdentity::load_member(&config.node.certs, id)
        .with_context(|| format!("node {id}: certificates in {}", config.node.certs.display()))?;
    let shutdown = CancellationToken::new();
    let running = start_node(
        id,
        config.node.node_type == "miner",
        &config.node.data,
        &config.storage,
        &config.replication,
        identity.clone(),
        config.node.listen,
        config.node.socket.as_deref(),
        shutdown.clone(),
    )
    .await?;
    let peers: Vec<(String, String)> = config
        .peers
        .iter()
        .filter(|peer| &peer.id != id)
        .map(|peer| (peer.id.clone(), peer.peer_addr().to_owned()))
        .collect();
    start_resolver(
        running.node.clone(),
        identity,
        &peers,
        &config.transactions,
        shutdown.clone(),
    );
    let metrics = serve_metrics(metrics_listen, shutdown.clone()).await?;
    writeln!(
        std::io::stdout().lock(),
        "Mycelium node {id} ({}) is ready on {}{} (metrics on http://{metrics}/metrics, data in {})",
        config.node.node_type,
        running.addr,
        config
            .node
            .socket
            .as_ref()
            .map(|socket| format!(" and unix:{}", socket.display()))
            .unwrap_or_default(),
        config.node.data.display()
    )?;
    stop_on_signal(shutdown).await;
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}

pub async fn proxy(config_file: &Path, metrics_listen: SocketAddr) -> anyhow::Result<()> {
    let config = ProxyFileConfig::load(config_file)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let nodes = config
        .nodes
        .iter()
        .map(|n| NodeEndpoint {
            info: NodeInfo {
                id: n.id.clone(),
                node_type: parse_node_type(&n.node_type),
            },
            addr: n.addr.clone(),
            peer_addr: n.peer_addr().to_owned(),
            local: None,
        })
        .collect();
    let background = CancellationToken::new();
    let proxy = build_proxy(
        ProxyParts {
            proxy: &config.proxy,
            cluster: &config.cluster,
            users: &config.users,
            policies: &config.policies,
            transactions: &config.transactions,
            data_dir: &config.data_dir,
            identity: TlsIdentity::load_member(&config.certs, PROXY_MEMBER)?,
            nodes,
        },
        &background,
    )
    .await?;
    let listener = TcpListener::bind(config.proxy.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.proxy.listen))?;
    let metrics = serve_metrics(metrics_listen, background.clone()).await?;
    announce(
        &listener,
        &metrics,
        &format!("{} nodes", config.nodes.len()),
    )?;
    let file = config_file.to_owned();
    reload_on_sighup(
        proxy.clone(),
        move || {
            let config = ProxyFileConfig::load(&file)?;
            Ok((config.users, config.policies))
        },
        background.clone(),
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    mycelium_proxy::run(listener, proxy, shutdown).await;
    background.cancel();
    tracing::info!("stopped");
    Ok(())
}
