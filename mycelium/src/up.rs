//! `mycelium up`: the embedded cluster. The proxy and its node run in one process, but the
//! proxy reaches the node the way it would across machines: over the node protocol on a
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
use mycelium_proxy::Proxy;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::UpArgs;

/// The proxy's name in the cluster's certificates.
const PROXY_MEMBER: &str = "proxy";
const NODE_ID: &str = "n1";

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut config = UpConfig::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.proxy.listen = listen;
    }
    let data_dir = &args.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let certs_dir = data_dir.join("certs");
    certs::ensure_cluster(&certs_dir, &[PROXY_MEMBER, NODE_ID])?;

    let node = Arc::new(Node::open_sqlite(
        NODE_ID,
        &data_dir.join("n1.sqlite"),
        &config.storage,
    )?);
    let node_shutdown = CancellationToken::new();
    let node_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen for the node")?;
    let node_addr = node_listener.local_addr()?;
    let node_server = tokio::spawn(serve_node(
        node_listener,
        TlsIdentity::load_member(&certs_dir, NODE_ID)?,
        ServerOptions::default(),
        node.clone(),
        node_shutdown.clone(),
    ));

    let pool = Pool::new(
        TlsIdentity::load_member(&certs_dir, PROXY_MEMBER)?,
        PoolOptions {
            max_per_peer: config.proxy.max_connections.max(16),
            ..PoolOptions::default()
        },
    );
    pool.add_peer(NODE_ID, node_addr.to_string());
    tokio::spawn(pool.heartbeat(node_shutdown.clone()));
    let link = Arc::new(RemoteNode::new(NODE_ID, pool));
    let proxy = Proxy::new(config.proxy.clone(), &config.users, data_dir, link)?;

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
    announce(&listener, &metrics_addr, data_dir)?;
    let proxy_shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(proxy_shutdown.clone()));
    mycelium_proxy::run(listener, Arc::new(proxy), proxy_shutdown).await;

    // Clients are gone; now the node can stop serving and close its file.
    node_shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(10), node_server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "node server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "node server task failed"),
        Err(_) => tracing::warn!("node server did not stop within 10 s"),
    }
    node.shutdown();
    tracing::info!("stopped");
    Ok(())
}

fn announce(
    listener: &TcpListener,
    metrics: &std::net::SocketAddr,
    data_dir: &Path,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    writeln!(
        std::io::stdout().lock(),
        "Mycelium is ready: psql \"postgresql://{}@{}:{}/mycelium\" (metrics on http://{metrics}/metrics, data in {})",
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
