//! Mutual TLS: members of one cluster talk; everyone else is refused, and the refusal logged.

use std::sync::Arc;

use mycelium_network::{ConnectOptions, NetworkError, PeerAddr, connect};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::support::{
    Cluster, EchoServer, TestResult, hello_from, raw_handshake, round_trip, with_logs,
};

#[tokio::test]
async fn members_of_one_cluster_round_trip() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let mut server = EchoServer::start(cluster.identity("n2")?).await?;

    let mut conn = connect(
        server.addr,
        "n2",
        &cluster.identity("n1")?,
        &ConnectOptions::default(),
    )
    .await?;
    assert_eq!(conn.peer().name, "n2");
    assert_eq!(conn.peer().addr, PeerAddr::Tcp(server.addr));
    round_trip(&mut conn, b"hello").await?;
    round_trip(&mut conn, b"").await?;
    conn.ping().await?;
    conn.close().await?;

    let (peer, outcome) = server.next_outcome().await.ok_or("no outcome")?;
    assert_eq!(peer.name, "n1", "the server learns the client's name");
    assert_eq!(outcome, Ok(()));
    server.stop().await
}

#[tokio::test]
async fn server_certificate_is_checked_against_the_expected_name() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2", "n3"])?;
    let server = EchoServer::start(cluster.identity("n2")?).await?;
    let client = cluster.identity("n1")?;
    // Reaching n2's address while expecting n3 must fail: the certificate says n2.
    let err = connect(server.addr, "n3", &client, &ConnectOptions::default()).await;
    assert!(matches!(err, Err(NetworkError::Tls { .. })), "{err:?}");
    // localhost is in every member certificate, for loopback setups.
    let conn = connect(
        server.addr,
        "localhost",
        &client,
        &ConnectOptions::default(),
    )
    .await?;
    assert_eq!(conn.peer().name, "n2");
    server.stop().await
}

/// A client config that trusts the cluster CA but presents `client_auth` (or nothing).
fn client_config(
    cluster: &Cluster,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ClientConfig>, Box<dyn std::error::Error>> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(
        cluster.dir.path().join("ca.pem"),
    )?)?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let config = match client_auth {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
    };
    Ok(Arc::new(config))
}

/// Asserts that a misbehaving client gets no hello back, that the server logged a warning
/// naming the peer's address and `reason`, and that it goes on serving members.
async fn assert_refused(
    cluster: &Cluster,
    config: Arc<rustls::ClientConfig>,
    reason: &str,
) -> TestResult {
    let (result, logs) = with_logs(async {
        let server = EchoServer::start(cluster.identity("n2")?).await?;
        let client_addr = match raw_handshake(server.addr, config, hello_from("n1")).await {
            Err(e) => format!("(no connection: {e})"),
            Ok((framed, Err(_))) => framed.get_ref().get_ref().0.local_addr()?.to_string(),
            Ok((_, Ok(frame))) => return Err(format!("refused client got {frame:?}").into()),
        };
        let mut conn = connect(
            server.addr,
            "n2",
            &cluster.identity("n1")?,
            &ConnectOptions::default(),
        )
        .await?;
        round_trip(&mut conn, b"still here").await?;
        server.stop().await?;
        Ok::<_, Box<dyn std::error::Error>>(client_addr)
    })
    .await;
    let client_addr = result?;
    let line = logs
        .lines()
        .find(|l| l.contains("cluster connection refused"))
        .ok_or_else(|| format!("no refusal logged:\n{logs}"))?;
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(&format!("peer={client_addr}")),
        "{client_addr}: {line}"
    );
    assert!(line.contains(reason), "{reason}: {line}");
    Ok(())
}

#[tokio::test]
async fn client_without_certificate_is_refused() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let config = client_config(&cluster, None)?;
    assert_refused(&cluster, config, "peer sent no certificates").await
}

#[tokio::test]
async fn client_with_self_signed_certificate_is_refused() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["n1".to_owned(), "localhost".to_owned()])?;
    let key = PrivateKeyDer::try_from(signing_key.serialize_der())?;
    let config = client_config(&cluster, Some((vec![cert.der().clone()], key)))?;
    assert_refused(&cluster, config, "not issued by this cluster's CA").await
}

#[tokio::test]
async fn client_from_another_cluster_is_refused() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let other = Cluster::new(&["n1"])?;
    let dir = other.dir.path();
    let chain = vec![CertificateDer::from_pem_file(dir.join("n1.pem"))?];
    let key = PrivateKeyDer::from_pem_file(dir.join("n1-key.pem"))?;
    let config = client_config(&cluster, Some((chain, key)))?;
    assert_refused(&cluster, config, "not issued by this cluster's CA").await?;

    // The same through the library's own client, which, trusting only its own CA, already
    // refuses the server's certificate.
    let server = EchoServer::start(cluster.identity("n2")?).await?;
    let err = connect(
        server.addr,
        "n2",
        &other.identity("n1")?,
        &ConnectOptions::default(),
    )
    .await;
    assert!(
        matches!(&err, Err(NetworkError::Tls { reason, .. }) if reason.contains("not issued by this cluster's CA")),
        "{err:?}"
    );
    server.stop().await
}

#[tokio::test]
async fn server_from_another_cluster_is_refused() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let other = Cluster::new(&["n2"])?;
    let (result, logs) = with_logs(async {
        let impostor = EchoServer::start(other.identity("n2")?).await?;
        let result = connect(
            impostor.addr,
            "n2",
            &cluster.identity("n1")?,
            &ConnectOptions::default(),
        )
        .await;
        assert_eq!(
            impostor.accepted(),
            0,
            "the impostor never got a connection"
        );
        impostor.stop().await?;
        Ok::<_, Box<dyn std::error::Error>>(result.map(|_| ()))
    })
    .await;
    let err = result?;
    assert!(
        matches!(&err, Err(NetworkError::Tls { reason, .. }) if reason.contains("not issued by this cluster's CA")),
        "{err:?}"
    );
    assert!(
        logs.lines().any(|l| l.contains("WARN")
            && l.contains("cluster connection refused")
            && l.contains("peer=127.0.0.1:")),
        "{logs}"
    );
    Ok(())
}
