//! Resident memory of a server idle, with many idle client connections, and after they closed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::pgbench::Target;
use crate::procfs;

#[derive(Debug, Clone, serde::Serialize)]
pub struct MemoryResult {
    pub server: String,
    pub connections: u32,
    pub idle_rss_bytes: u64,
    pub connected_rss_bytes: u64,
    pub after_close_rss_bytes: u64,
    /// (connected − idle) / connections.
    pub bytes_per_connection: f64,
}

/// Connections opened at once: enough to be quick, few enough not to time out the handshakes.
const CONCURRENT_CONNECTS: usize = 32;
/// A server that stops accepting (out of file descriptors, say) fails the measurement, not
/// hangs it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens `connections` tokio-postgres clients to `target` (startup + authentication, then idle)
/// and reads the RSS of `pid` before, while they are open, and after they closed.
pub async fn idle_connections(
    server: &str,
    pid: u32,
    target: &Target,
    connections: u32,
) -> anyhow::Result<MemoryResult> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_bytes = procfs::rss(pid)?;
    let limit = Arc::new(Semaphore::new(CONCURRENT_CONNECTS));
    let conninfo = Arc::new(target.conninfo());
    let mut connecting = JoinSet::new();
    for _ in 0..connections {
        let permit = Arc::clone(&limit).acquire_owned().await?;
        let conninfo = Arc::clone(&conninfo);
        connecting.spawn(async move {
            let connected = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_postgres::connect(&conninfo, tokio_postgres::NoTls),
            )
            .await;
            drop(permit);
            let connected = match connected {
                Ok(connected) => connected.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
            };
            connected.map(|(client, connection)| {
                let driver = tokio::spawn(async move {
                    let _ = connection.await;
                });
                (client, driver)
            })
        });
    }
    let mut clients = Vec::with_capacity(connections as usize);
    let mut first_error = None;
    while let Some(joined) = connecting.join_next().await {
        match joined.context("a connecting task panicked")? {
            Ok(client) => clients.push(client),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        anyhow::bail!(
            "{server}: only {} of {connections} connections opened; first error: {e}",
            clients.len()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected_rss_bytes = procfs::rss(pid)?;
    for (client, driver) in clients {
        drop(client);
        let _ = driver.await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_close_rss_bytes = procfs::rss(pid)?;
    Ok(MemoryResult {
        server: server.to_owned(),
        connections,
        idle_rss_bytes,
        connected_rss_bytes,
        after_close_rss_bytes,
        bytes_per_connection: (connected_rss_bytes as f64 - idle_rss_bytes as f64)
            / f64::from(connections.max(1)),
    })
}
