//! Members on one host over a Unix socket: the same mutual TLS and frames as over TCP.

use std::io::ErrorKind;

use mycelium_network::{ConnectOptions, NetworkError, PeerAddr, UnixSocketListener, connect};

use crate::support::{Cluster, EchoServer, TestResult, round_trip, with_logs};

#[tokio::test]
async fn members_on_one_host_talk_over_a_unix_socket() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let socket = cluster.dir.path().join("n2.sock");
    let mut server = EchoServer::start_with_socket(cluster.identity("n2")?, &socket).await?;
    let client = cluster.identity("n1")?;

    let mut conn = connect(
        format!("unix:{}", socket.display()),
        "n2",
        &client,
        &ConnectOptions::default(),
    )
    .await?;
    assert_eq!(conn.peer().name, "n2");
    assert_eq!(conn.peer().addr, PeerAddr::Unix(socket.clone()));
    round_trip(&mut conn, b"over the socket").await?;
    conn.close().await?;
    let (peer, outcome) = server.next_outcome().await.ok_or("no outcome")?;
    assert_eq!(peer.name, "n1", "the certificate names the client here too");
    assert_eq!(peer.addr, PeerAddr::Unix(socket.clone()));
    assert_eq!(outcome, Ok(()));

    // The TCP port serves alongside.
    let mut tcp = connect(server.addr, "n2", &client, &ConnectOptions::default()).await?;
    round_trip(&mut tcp, b"over tcp").await?;
    tcp.close().await?;

    server.stop().await?;
    assert!(
        !socket.exists(),
        "the server removes its socket file when it stops"
    );
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_unix_socket_still_refuses_another_clusters_certificate() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let stranger = Cluster::new(&["n1"])?;
    let socket = cluster.dir.path().join("n2.sock");
    let (result, logs) = with_logs(async {
        let server = EchoServer::start_with_socket(cluster.identity("n2")?, &socket).await?;
        let attempt = connect(
            format!("unix:{}", socket.display()),
            "n2",
            &stranger.identity("n1")?,
            &ConnectOptions::default(),
        )
        .await;
        let accepted = server.accepted();
        server.stop().await.map_err(|e| e.to_string())?;
        Ok::<_, Box<dyn std::error::Error>>((attempt, accepted))
    })
    .await;
    let (attempt, accepted) = result?;
    assert!(
        matches!(
            attempt,
            Err(NetworkError::Tls { .. } | NetworkError::Handshake { .. })
        ),
        "{attempt:?}"
    );
    assert_eq!(accepted, 0, "the handler never sees the stranger");
    assert!(
        logs.contains("cluster connection refused") && logs.contains("unix:"),
        "the refusal is logged with the socket: {logs}"
    );
    Ok(())
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced_and_a_live_one_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("n1.sock");
    // What a killed node leaves: the file, with nobody accepting on it.
    drop(std::os::unix::net::UnixListener::bind(&path)?);
    assert!(path.exists());

    let live = UnixSocketListener::bind(&path).await?;
    let second = UnixSocketListener::bind(&path).await;
    match second {
        Err(e) => assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e}"),
        Ok(_) => return Err("a second listener took a socket in use".into()),
    }
    assert!(path.exists(), "the refused bind left the live socket alone");
    drop(live);
    assert!(!path.exists());

    let not_a_socket = dir.path().join("data.sqlite");
    std::fs::write(&not_a_socket, b"precious")?;
    match UnixSocketListener::bind(&not_a_socket).await {
        Err(e) => assert!(e.to_string().contains("not a socket"), "{e}"),
        Ok(_) => return Err("bound over a regular file".into()),
    }
    assert_eq!(std::fs::read(&not_a_socket)?, b"precious");
    Ok(())
}
