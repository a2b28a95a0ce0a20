//! Bad frames after the handshake close that one connection; the server serves on.

use std::time::Duration;

use mycelium_network::{ConnectOptions, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Cluster, EchoServer, TestResult, hello_from, raw_handshake, round_trip};

/// Sends `bytes` right after a correct handshake and checks that the server closes that
/// connection with an error containing `expected`, while a second connection keeps working.
async fn assert_closes(bytes: &[u8], expected: &str) -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let mut server = EchoServer::start(cluster.identity("n2")?).await?;
    let client = cluster.identity("n1")?;
    let mut bystander = connect(server.addr, "n2", &client, &ConnectOptions::default()).await?;
    round_trip(&mut bystander, b"before").await?;

    let (framed, hello) =
        raw_handshake(server.addr, client.client_config(), hello_from("n1")).await?;
    hello?;
    let mut tls = framed.into_inner();
    tls.write_all(bytes).await?;
    tls.flush().await?;

    let (peer, outcome) = server
        .next_outcome()
        .await
        .ok_or("the handler never ended")?;
    assert_eq!(peer.name, "n1");
    let error = outcome.err().ok_or("the handler should fail")?;
    assert!(
        error.contains(expected),
        "expected {expected:?} in {error:?}"
    );

    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await?;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "connection still open: {read:?}"
    );

    round_trip(&mut bystander, b"after").await?;
    let mut newcomer = connect(server.addr, "n2", &client, &ConnectOptions::default()).await?;
    round_trip(&mut newcomer, b"new").await?;
    server.stop().await
}

#[tokio::test]
async fn one_gib_length_prefix_closes_the_connection() -> TestResult {
    // Nothing but the prefix and a kind byte: the server must refuse without waiting for (or
    // allocating) the announced gigabyte.
    assert_closes(
        &[0x40, 0x00, 0x00, 0x00, 0x10],
        "frame of 1073741824 bytes exceeds the maximum of 67108864 bytes",
    )
    .await
}

#[tokio::test]
async fn http_request_closes_the_connection() -> TestResult {
    assert_closes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "exceeds the maximum").await
}

#[tokio::test]
async fn zero_length_frame_closes_the_connection() -> TestResult {
    assert_closes(&[0, 0, 0, 0, 0xff, 0xff], "malformed frame").await
}

#[tokio::test]
async fn reserved_kind_after_handshake_closes_the_connection() -> TestResult {
    // A second hello.
    assert_closes(&[0, 0, 0, 1, 0x00], "reserved kind 0x00").await
}

#[tokio::test]
async fn truncated_frame_then_close_is_an_error() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let mut server = EchoServer::start(cluster.identity("n2")?).await?;
    let client = cluster.identity("n1")?;
    let (framed, hello) =
        raw_handshake(server.addr, client.client_config(), hello_from("n1")).await?;
    hello?;
    let mut tls = framed.into_inner();
    tls.write_all(&[0, 0, 0, 10, 0x10, 1, 2]).await?;
    tls.shutdown().await?;
    let (_, outcome) = server
        .next_outcome()
        .await
        .ok_or("the handler never ended")?;
    assert!(outcome.is_err(), "a frame cut short is not a clean close");
    server.stop().await
}

#[tokio::test]
async fn garbage_below_tls_closes_the_connection() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let mut server = EchoServer::start(cluster.identity("n2")?).await?;
    let client = cluster.identity("n1")?;
    let mut bystander = connect(server.addr, "n2", &client, &ConnectOptions::default()).await?;
    let (framed, hello) =
        raw_handshake(server.addr, client.client_config(), hello_from("n1")).await?;
    hello?;
    // Bypass TLS: raw bytes on the socket are not a valid TLS record.
    let (mut tcp, _) = framed.into_inner().into_inner();
    tcp.write_all(b"\x17\x03\x03\x00\x05garbage that is not a record")
        .await?;
    let (_, outcome) = server
        .next_outcome()
        .await
        .ok_or("the handler never ended")?;
    assert!(outcome.is_err(), "{outcome:?}");
    round_trip(&mut bystander, b"unaffected").await?;
    server.stop().await
}
