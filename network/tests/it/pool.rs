//! The pool: reuse, limits, retry with backoff, and heartbeats.

use std::time::{Duration, Instant};

use mycelium_network::{
    ConnectOptions, NetworkError, Pool, PoolOptions, RetryPolicy, ServerOptions,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::support::{
    Cluster, EchoServer, KIND_HANG_UP, TestResult, eventually, quick_shutdown, round_trip,
};

fn fast_options() -> PoolOptions {
    PoolOptions {
        max_per_peer: 2,
        acquire_timeout: Duration::from_millis(300),
        connect: ConnectOptions {
            connect_timeout: Duration::from_millis(300),
            handshake_timeout: Duration::from_millis(500),
            ..ConnectOptions::default()
        },
        retry: RetryPolicy {
            base: Duration::from_millis(20),
            max: Duration::from_millis(100),
            attempts: 3,
        },
        heartbeat_interval: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_millis(400),
    }
}

/// A loopback port that was free a moment ago, for servers that start later.
fn free_port() -> Result<u16, std::io::Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::test]
async fn idle_connections_are_reused_and_broken_ones_dropped() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let server = EchoServer::start(cluster.identity("n2")?).await?;
    let pool = Pool::new(cluster.identity("n1")?, fast_options());
    pool.add_peer("n2", server.addr.to_string());

    for _ in 0..3 {
        let mut conn = pool.get("n2").await?;
        round_trip(&mut conn, b"reuse me").await?;
    }
    assert_eq!(
        server.accepted(),
        1,
        "one connection served all three requests"
    );

    // The server hangs up; the pool must not hand that connection out again.
    {
        let mut conn = pool.get("n2").await?;
        conn.send(KIND_HANG_UP, bytes::Bytes::new()).await?;
        assert!(conn.recv().await?.is_none());
    }
    let mut conn = pool.get("n2").await?;
    round_trip(&mut conn, b"fresh").await?;
    assert_eq!(server.accepted(), 2);
    drop(conn);
    server.stop().await
}

#[tokio::test]
async fn idle_connection_closed_by_the_server_is_not_reused() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let port = free_port()?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let server = EchoServer::start_on(listener, cluster.identity("n2")?, quick_shutdown());
    let pool = Pool::new(cluster.identity("n1")?, fast_options());
    pool.add_peer("n2", server.addr.to_string());
    round_trip(&mut *pool.get("n2").await?, b"one").await?;
    server.stop().await?;

    // Restarted: the idle connection is dead, and the pool notices without a failed request.
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let server = EchoServer::start_on(listener, cluster.identity("n2")?, quick_shutdown());
    tokio::time::sleep(Duration::from_millis(50)).await;
    round_trip(&mut *pool.get("n2").await?, b"two").await?;
    server.stop().await
}

#[tokio::test]
async fn max_connections_per_peer_is_enforced() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let server = EchoServer::start(cluster.identity("n2")?).await?;
    let pool = Pool::new(cluster.identity("n1")?, fast_options());
    pool.add_peer("n2", server.addr.to_string());

    let a = pool.get("n2").await?;
    let b = pool.get("n2").await?;
    let err = pool.get("n2").await;
    assert!(matches!(err, Err(NetworkError::Timeout { .. })), "{err:?}");
    drop(a);
    let c = pool.get("n2").await?;
    drop((b, c));
    assert_eq!(server.accepted(), 2);
    server.stop().await
}

#[tokio::test]
async fn retry_with_backoff_reaches_a_server_that_starts_late() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let port = free_port()?;
    let options = PoolOptions {
        retry: RetryPolicy {
            base: Duration::from_millis(25),
            max: Duration::from_millis(150),
            attempts: 20,
        },
        ..fast_options()
    };
    let pool = Pool::new(cluster.identity("n1")?, options);
    pool.add_peer("n2", format!("127.0.0.1:{port}"));

    let identity = cluster.identity("n2")?;
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        Ok::<_, std::io::Error>(EchoServer::start_on(listener, identity, quick_shutdown()))
    });
    let start = Instant::now();
    let mut conn = pool.get("n2").await?;
    assert!(
        start.elapsed() >= Duration::from_millis(350),
        "{:?}",
        start.elapsed()
    );
    round_trip(&mut conn, b"finally").await?;
    drop(conn);
    late.await??.stop().await
}

#[tokio::test]
async fn retries_give_up_with_peer_down() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let port = free_port()?;
    let pool = Pool::new(cluster.identity("n1")?, fast_options());
    pool.add_peer("n2", format!("127.0.0.1:{port}"));
    let err = pool.get("n2").await;
    assert!(
        matches!(err, Err(NetworkError::PeerDown { attempts: 3, .. })),
        "{err:?}"
    );
    let err = pool.get("n9").await;
    assert!(matches!(err, Err(NetworkError::UnknownPeer(_))), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn certificate_errors_are_not_retried() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let other = Cluster::new(&["n1"])?;
    let server = EchoServer::start(cluster.identity("n2")?).await?;
    let options = PoolOptions {
        retry: RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(1),
            attempts: 5,
        },
        ..fast_options()
    };
    let pool = Pool::new(other.identity("n1")?, options);
    pool.add_peer("n2", server.addr.to_string());
    let start = Instant::now();
    let err = pool.get("n2").await;
    assert!(matches!(err, Err(NetworkError::Tls { .. })), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "no backoff sleep for a permanent error"
    );
    server.stop().await
}

#[tokio::test]
async fn heartbeat_tracks_a_peer_going_down_and_coming_back() -> TestResult {
    let cluster = Cluster::new(&["n1", "n2"])?;
    let port = free_port()?;
    let pool = Pool::new(cluster.identity("n1")?, fast_options());
    pool.add_peer("n2", format!("127.0.0.1:{port}"));
    assert!(!pool.is_up("n2"), "unknown before the first heartbeat");
    let stop_heartbeat = CancellationToken::new();
    let heartbeat = tokio::spawn(pool.heartbeat(stop_heartbeat.clone()));

    let start = |identity| async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        Ok::<_, std::io::Error>(EchoServer::start_on(
            listener,
            identity,
            ServerOptions {
                shutdown_grace: Duration::ZERO,
                ..ServerOptions::default()
            },
        ))
    };
    let began = Instant::now();
    let server = start(cluster.identity("n2")?).await?;
    assert!(
        eventually(Duration::from_secs(2), || pool.is_up("n2")).await,
        "never up"
    );

    server.stop().await?;
    assert!(
        eventually(Duration::from_secs(2), || !pool.is_up("n2")).await,
        "never down"
    );

    let server = start(cluster.identity("n2")?).await?;
    assert!(
        eventually(Duration::from_secs(2), || pool.is_up("n2")).await,
        "never up again"
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );

    stop_heartbeat.cancel();
    tokio::time::timeout(Duration::from_secs(1), heartbeat).await??;
    server.stop().await
}

#[test]
fn backoff_grows_exponentially_with_jitter_and_a_ceiling() {
    let policy = RetryPolicy {
        base: Duration::from_millis(100),
        max: Duration::from_millis(1000),
        attempts: 10,
    };
    for _ in 0..100 {
        for (attempt, ceiling) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (40, 1000),
        ] {
            let delay = policy.delay(attempt);
            let ceiling = Duration::from_millis(ceiling);
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{attempt}: {delay:?}"
            );
        }
    }
    let spread: std::collections::HashSet<Duration> = (0..20).map(|_| policy.delay(3)).collect();
    assert!(spread.len() > 1, "no jitter");
}
