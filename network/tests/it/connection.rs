//! The connection API: requests, pings, limits, timeouts and shutdown.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mycelium_network::{ConnectOptions, NetworkError, ServerOptions, connect, kind};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::support::{Cluster, EchoServer, KIND_ECHO, TestResult, round_trip};

#[tokio::test]
async fn reserved_kinds_cannot_be_sent() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let server = EchoServer::start(cluster.identity("n2")?).await?;
    let mut conn = connect(
        server.addr,
        "n2",
        &cluster.identity("n1")?,
        &ConnectOptions::default(),
    )
    .await?;
    for reserved in [kind::HELLO, kind::PING, kind::PONG, kind::REFUSE, 0x0f] {
        let err = conn.send(reserved, Bytes::new()).await;
        assert!(
            matches!(err, Err(NetworkError::ReservedKind(k)) if k == reserved),
            "{err:?}"
        );
    }
    // Refusing to send left the connection intact.
    round_trip(&mut conn, b"ok").await?;
    server.stop().await
}

#[tokio::test]
async fn oversized_outgoing_frame_is_refused_locally() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let server = EchoServer::start(cluster.identity("n2")?).await?;
    let options = ConnectOptions {
        max_frame_len: 1024,
        ..ConnectOptions::default()
    };
    let mut conn = connect(server.addr, "n2", &cluster.identity("n1")?, &options).await?;
    let err = conn.send(KIND_ECHO, Bytes::from(vec![0u8; 1024])).await;
    assert!(
        matches!(
            err,
            Err(NetworkError::FrameTooLarge {
                size: 1025,
                max: 1024
            })
        ),
        "{err:?}"
    );
    assert!(!conn.is_reusable());
    server.stop().await
}

#[tokio::test]
async fn large_frames_within_the_limit_pass() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let server = EchoServer::start(cluster.identity("n2")?).await?;
    let mut conn = connect(
        server.addr,
        "n2",
        &cluster.identity("n1")?,
        &ConnectOptions::default(),
    )
    .await?;
    let payload = Bytes::from((0..4_000_000u32).map(|i| i as u8).collect::<Vec<u8>>());
    let answer = conn.request(KIND_ECHO, payload.clone()).await?;
    assert_eq!(answer.payload, payload);
    server.stop().await
}

#[tokio::test]
async fn connect_times_out_when_the_peer_never_speaks_tls() -> TestResult {
    let cluster = Cluster::new(&["n1"])?;
    // Accepts TCP, then says nothing.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let options = ConnectOptions {
        handshake_timeout: Duration::from_millis(200),
        ..ConnectOptions::default()
    };
    let start = Instant::now();
    let err = connect(addr, "n2", &cluster.identity("n1")?, &options).await;
    assert!(matches!(err, Err(NetworkError::Timeout { .. })), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    Ok(())
}

#[tokio::test]
async fn server_drops_clients_that_never_finish_the_handshake() -> TestResult {
    let cluster = Cluster::new(&["n2"])?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let options = ServerOptions {
        handshake_timeout: Duration::from_millis(200),
        ..crate::support::quick_shutdown()
    };
    let server = EchoServer::start_on(listener, cluster.identity("n2")?, options);
    let mut idle = TcpStream::connect(server.addr).await?;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf)).await?;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    server.stop().await
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes_connections() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let server = EchoServer::start(cluster.identity("n2")?).await?;
    let addr = server.addr;
    let client = cluster.identity("n1")?;
    let mut conn = connect(addr, "n2", &client, &ConnectOptions::default()).await?;
    round_trip(&mut conn, b"before").await?;
    tokio::time::timeout(Duration::from_secs(2), server.stop()).await??;
    // The handler was dropped with its connection, and nobody listens any more.
    let after = conn.recv().await;
    assert!(matches!(after, Ok(None) | Err(_)), "{after:?}");
    assert!(
        connect(addr, "n2", &client, &ConnectOptions::default())
            .await
            .is_err()
    );
    Ok(())
}
