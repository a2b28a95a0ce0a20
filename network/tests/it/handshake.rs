//! The hello exchange: magic, version and name are checked, and refusals explained.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use mycelium_network::{
    ConnectOptions, Frame, FrameCodec, Hello, NetworkError, PROTOCOL_VERSION, connect, kind,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Framed;

use crate::support::{Cluster, EchoServer, TestResult, raw_handshake, with_logs};

/// Sends `hello` from member n1 and returns the server's REFUSE reason.
async fn refusal_for(hello: Frame) -> Result<(String, String), Box<dyn std::error::Error>> {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let (result, logs) = with_logs(async {
        let server = EchoServer::start(cluster.identity("n2")?).await?;
        let (_, answer) =
            raw_handshake(server.addr, cluster.identity("n1")?.client_config(), hello).await?;
        let answer = answer?;
        assert_eq!(
            server.accepted(),
            0,
            "the handler must never see a refused peer"
        );
        server.stop().await?;
        Ok::<_, Box<dyn std::error::Error>>(answer)
    })
    .await;
    let answer = result?;
    assert_eq!(answer.kind, kind::REFUSE, "{answer:?}");
    Ok((String::from_utf8(answer.payload.to_vec())?, logs))
}

#[tokio::test]
async fn version_mismatch_is_refused() -> TestResult {
    let mut hello = Hello::new("n1");
    hello.version = PROTOCOL_VERSION + 1;
    let (reason, logs) = refusal_for(hello.to_frame()).await?;
    assert!(
        reason.contains(&format!(
            "protocol version {} is not supported",
            PROTOCOL_VERSION + 1
        )),
        "{reason}"
    );
    assert!(
        logs.contains("cluster connection refused")
            && logs.contains(&format!("version {}", PROTOCOL_VERSION + 1)),
        "{logs}"
    );
    Ok(())
}

#[tokio::test]
async fn wrong_magic_is_refused() -> TestResult {
    let mut hello = Hello::new("n1");
    hello.magic = *b"PGSQ";
    let (reason, _) = refusal_for(hello.to_frame()).await?;
    assert!(reason.contains("not a Mycelium cluster member"), "{reason}");
    Ok(())
}

#[tokio::test]
async fn name_not_in_the_certificate_is_refused() -> TestResult {
    // n1's certificate, claiming to be n3.
    let (reason, _) = refusal_for(Hello::new("n3").to_frame()).await?;
    assert!(
        reason.contains("\"n3\"") && reason.contains("n1"),
        "{reason}"
    );
    let (reason, _) = refusal_for(Hello::new("localhost").to_frame()).await?;
    assert!(reason.contains("localhost"), "{reason}");
    Ok(())
}

#[tokio::test]
async fn malformed_hello_closes_without_answer() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let server = EchoServer::start(cluster.identity("n2")?).await?;
    let (_, answer) = raw_handshake(
        server.addr,
        cluster.identity("n1")?.client_config(),
        Frame::new(kind::HELLO, Bytes::from_static(b"MYC")),
    )
    .await?;
    assert!(answer.is_err(), "{answer:?}");
    server.stop().await
}

#[tokio::test]
async fn client_refuses_a_server_of_another_version() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(cluster.identity("n2")?.server_config());
    // A future n2 that speaks the next version.
    let future_server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let tls = acceptor.accept(tcp).await?;
        let mut framed = Framed::new(tls, FrameCodec::default());
        let _their_hello = framed.next().await;
        let mut hello = Hello::new("n2");
        hello.version = PROTOCOL_VERSION + 1;
        framed.send(hello.to_frame()).await?;
        Ok::<_, NetworkError>(framed)
    });
    let err = connect(
        addr,
        "n2",
        &cluster.identity("n1")?,
        &ConnectOptions::default(),
    )
    .await;
    match err {
        Err(NetworkError::Handshake { reason, .. }) => {
            assert!(
                reason.contains(&format!(
                    "protocol version {} is not supported",
                    PROTOCOL_VERSION + 1
                )),
                "{reason}"
            );
        }
        other => return Err(format!("expected a handshake error, got {other:?}").into()),
    }
    future_server.await??;
    Ok(())
}
