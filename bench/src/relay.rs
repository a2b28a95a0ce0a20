//! A plain relay: every TCP client connection gets its own upstream connection to
//! PostgreSQL's Unix-domain socket (as Mycelium's nodes and PgBouncer connect) and bytes are
//! copied both ways, nothing parsed. The least any proxy can cost.

use std::path::PathBuf;

use anyhow::Context;
use tokio::net::{TcpListener, UnixStream};
use tokio::task::JoinHandle;

/// The relay runs as a task of this process until the guard is dropped.
pub struct Relay {
    pub port: u16,
    task: JoinHandle<()>,
}

impl Relay {
    pub async fn start(upstream: PathBuf) -> anyhow::Result<Relay> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("cannot bind the relay")?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = UnixStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Ok(Relay { port, task })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
