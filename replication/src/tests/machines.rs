//! The primary and secondary state machines over in-memory links and logs, and once over a
//! real mutual-TLS connection.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::mem::{MemLog, put};
use crate::{
    Error, HlcClock, MessageLink, NodeId, Primary, PrimaryOptions, ReplicationMessage, Secondary,
    SecondaryOptions, ShardId, ShardLog, VersionVector, WalEntry,
};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

type Task = tokio::task::JoinHandle<Result<(), Error>>;

const WAIT: Duration = Duration::from_secs(5);

/// One end of an in-memory link. Entries whose sequence is in `drop_once` are lost the first
/// time they are sent; with `duplicate` every entry is sent twice.
struct MemLink {
    peer: String,
    tx: mpsc::UnboundedSender<ReplicationMessage>,
    rx: mpsc::UnboundedReceiver<ReplicationMessage>,
    drop_once: Arc<Mutex<HashSet<u64>>>,
    duplicate: bool,
}

fn link_pair(a: &str, b: &str) -> (MemLink, MemLink) {
    let (to_b, from_a) = mpsc::unbounded_channel();
    let (to_a, from_b) = mpsc::unbounded_channel();
    let end = |peer: &str, tx, rx| MemLink {
        peer: peer.to_owned(),
        tx,
        rx,
        drop_once: Arc::default(),
        duplicate: false,
    };
    (end(b, to_b, from_b), end(a, to_a, from_a))
}

#[async_trait]
impl MessageLink for MemLink {
    fn peer(&self) -> &str {
        &self.peer
    }

    async fn send(&mut self, message: &ReplicationMessage) -> Result<(), Error> {
        if let ReplicationMessage::WalEntry(e) = message {
            if self
                .drop_once
                .lock()
                .map_err(|_| Error::Closed)?
                .remove(&e.sequence)
            {
                return Ok(());
            }
            if self.duplicate {
                self.tx.send(message.clone()).map_err(|_| Error::Closed)?;
            }
        }
        self.tx.send(message.clone()).map_err(|_| Error::Closed)
    }

    async fn recv(&mut self) -> Result<Option<ReplicationMessage>, Error> {
        Ok(self.rx.recv().await)
    }
}

struct Node {
    log: Arc<MemLog>,
    clock: Arc<HlcClock>,
}

fn node(name: &str) -> Node {
    Node {
        log: Arc::new(MemLog::new(shard(), name)),
        clock: Arc::new(HlcClock::new(NodeId::new(name))),
    }
}

fn shard() -> ShardId {
    ShardId::new("t", 0)
}

fn options() -> PrimaryOptions {
    PrimaryOptions {
        heartbeat_interval: Duration::from_millis(20),
        snapshot_rows_per_chunk: 2,
        ..PrimaryOptions::default()
    }
}

fn primary_of(n: &Node, epoch: u64) -> Arc<Primary<MemLog>> {
    Arc::new(Primary::new(
        shard(),
        epoch,
        n.log.clone(),
        n.clock.clone(),
        options(),
    ))
}

fn secondary_of(n: &Node, epoch: u64) -> Arc<Secondary<MemLog>> {
    Arc::new(Secondary::new(
        shard(),
        epoch,
        n.log.clone(),
        n.clock.clone(),
        SecondaryOptions::default(),
    ))
}

/// A local commit on the primary's node, announced to its shipping tasks.
fn commit(n: &Node, primary: &Primary<MemLog>, key: i64, value: Option<&str>) -> WalEntry {
    let entry = n
        .log
        .commit_local(&n.clock, primary.epoch(), vec![put(key, value)]);
    primary.committed(entry.sequence);
    entry
}

/// Runs a primary serving one secondary over `links`, in two tasks.
fn connect(
    primary: &Arc<Primary<MemLog>>,
    secondary: &Arc<Secondary<MemLog>>,
    (mut p_end, mut s_end): (MemLink, MemLink),
) -> (Task, Task) {
    let p = primary.clone();
    let s = secondary.clone();
    (
        tokio::spawn(async move { p.serve(&mut p_end).await }),
        tokio::spawn(async move { s.run(&mut s_end).await }),
    )
}

fn applied_of(n: &Node) -> VersionVector {
    n.log.data().applied
}

async fn caught_up(secondary: &Secondary<MemLog>, primary_node: &Node) -> bool {
    secondary
        .wait_applied(&applied_of(primary_node), WAIT)
        .await
}

#[tokio::test]
async fn a_secondary_catches_up_then_follows_commits_and_acks_for_sync_replication() -> TestResult {
    let (a, b) = (node("n1"), node("n2"));
    let primary = primary_of(&a, 1);
    let secondary = secondary_of(&b, 1);
    for k in 0..3 {
        commit(&a, &primary, k, Some("before"));
    }
    let (p_task, s_task) = connect(&primary, &secondary, link_pair("n1", "n2"));
    assert!(caught_up(&secondary, &a).await);

    let e = commit(&a, &primary, 1, Some("live"));
    primary.wait_replicated(e.sequence, 1, WAIT).await?;
    assert_eq!(b.log.data().rows, a.log.data().rows);
    assert_eq!(secondary.status().entries_applied, 4);

    // Two replicas are asked for and only one exists: the wait times out, saying how many.
    let e = commit(&a, &primary, 2, None);
    match primary
        .wait_replicated(e.sequence, 2, Duration::from_millis(100))
        .await
    {
        Err(Error::SyncTimeout { acked, wanted, .. }) => assert_eq!((acked, wanted), (1, 2)),
        other => panic!("expected a sync timeout, got {other:?}"),
    }
    assert!(caught_up(&secondary, &a).await);
    assert_eq!(b.log.data().rows, a.log.data().rows);
    primary
        .wait_replicated(e.sequence, 0, Duration::ZERO)
        .await?;

    let lag = primary.lag().await?;
    assert_eq!(lag.len(), 1);
    assert_eq!((lag[0].peer.as_str(), lag[0].entries), ("n2", 0));
    assert_eq!(primary.acked_by_all(), applied_of(&a));

    p_task.abort();
    assert!(
        s_task.await?.is_ok(),
        "the secondary ends cleanly when the link closes"
    );
    Ok(())
}

/// Shipping reads the primary's log once per commit it wakes for: a read that returned less
/// than a batch took everything, so it does not read again to find nothing, nor after the
/// acknowledgement. (Heartbeats, which read it too, are out of the way here.)
#[tokio::test]
async fn a_primary_reads_its_log_once_per_commit_shipped() -> TestResult {
    let (a, b) = (node("n1"), node("n2"));
    let primary = Arc::new(Primary::new(
        shard(),
        1,
        a.log.clone(),
        a.clock.clone(),
        PrimaryOptions {
            heartbeat_interval: Duration::from_secs(3600),
            ..options()
        },
    ));
    let secondary = secondary_of(&b, 1);
    let (p_task, s_task) = connect(&primary, &secondary, link_pair("n1", "n2"));
    let before = a.log.reads();
    for k in 0..20 {
        let e = commit(&a, &primary, k, Some("shipped"));
        primary.wait_replicated(e.sequence, 1, WAIT).await?;
    }
    let reads = a.log.reads() - before;
    // One read per commit (each waits for the one before to ship), and at most a couple more:
    // a commit that lands while the log is being read is in that read and announced too, so
    // one more read finds nothing (here: the connection's first reads racing the first commit).
    // Reading again after every acknowledgement made it 40.
    assert!(
        (20..=22).contains(&reads),
        "{reads} reads of the log for 20 commits shipped one by one"
    );
    assert_eq!(b.log.data().rows, a.log.data().rows);
    p_task.abort();
    assert!(s_task.await?.is_ok());
    Ok(())
}

#[tokio::test]
async fn lost_entries_are_asked_for_again_and_duplicates_change_nothing() -> TestResult {
    let (a, b) = (node("n1"), node("n2"));
    let primary = primary_of(&a, 1);
    let secondary = secondary_of(&b, 1);
    let (mut p_end, s_end) = link_pair("n1", "n2");
    let to_drop = p_end.drop_once.clone();
    *to_drop.lock().map_err(|e| e.to_string())? = HashSet::from([2, 4]);
    p_end.duplicate = true;
    let (p_task, _s_task) = connect(&primary, &secondary, (p_end, s_end));
    // Let the statuses cross first so every entry goes out live, one frame each.
    assert!(caught_up(&secondary, &a).await);

    for k in 0..6 {
        commit(&a, &primary, k % 3, Some(&format!("v{k}")));
        tokio::task::yield_now().await;
    }
    assert!(caught_up(&secondary, &a).await);
    assert_eq!(b.log.data().rows, a.log.data().rows);
    let status = secondary.status();
    assert_eq!(status.entries_applied, 6, "each entry applied exactly once");
    assert_eq!(status.applied, applied_of(&a));
    assert!(
        to_drop.lock().map_err(|e| e.to_string())?.is_empty(),
        "entries 2 and 4 were lost on the way, so the gap path ran"
    );
    p_task.abort();
    Ok(())
}

#[tokio::test]
async fn a_secondary_behind_a_truncated_log_gets_a_snapshot_then_the_log() -> TestResult {
    let (a, b) = (node("n1"), node("n2"));
    let primary = primary_of(&a, 1);
    for k in 0..5 {
        commit(&a, &primary, k, Some("old"));
    }
    commit(&a, &primary, 0, None);
    a.log.truncate(&applied_of(&a)).await?;

    let secondary = secondary_of(&b, 1);
    let (p_task, _s_task) = connect(&primary, &secondary, link_pair("n1", "n2"));
    assert!(caught_up(&secondary, &a).await);
    assert_eq!(secondary.status().snapshots_loaded, 1);
    assert_eq!(
        b.log.data().rows,
        a.log.data().rows,
        "tombstones travel too"
    );

    let e = commit(&a, &primary, 7, Some("after snapshot"));
    primary.wait_replicated(e.sequence, 1, WAIT).await?;
    assert_eq!(b.log.data().rows, a.log.data().rows);
    assert_eq!(secondary.status().snapshots_loaded, 1);
    p_task.abort();
    Ok(())
}

#[tokio::test]
async fn a_primary_with_a_stale_epoch_is_refused_and_fenced() -> TestResult {
    let (a, b) = (node("n1"), node("n2"));
    let old_primary = primary_of(&a, 2);
    commit(&a, &old_primary, 1, Some("divergent"));
    let secondary = secondary_of(&b, 3);
    let (p_task, s_task) = connect(&old_primary, &secondary, link_pair("n1", "n2"));
    match p_task.await? {
        Err(Error::Fenced { epoch, newer, .. }) => assert_eq!((epoch, newer), (2, 3)),
        other => panic!("expected the old primary to be fenced, got {other:?}"),
    }
    assert_eq!(old_primary.fenced(), Some(3));
    match s_task.await? {
        Err(Error::StalePrimary { epoch, ours, .. }) => assert_eq!((epoch, ours), (2, 3)),
        other => panic!("expected the secondary to refuse, got {other:?}"),
    }
    assert!(
        b.log.data().rows.is_empty(),
        "nothing applied from a stale primary"
    );
    Ok(())
}

#[tokio::test]
async fn lag_counts_unacknowledged_entries_and_their_age() -> TestResult {
    let (a, b) = (node("n1"), node("n2"));
    let primary = primary_of(&a, 1);
    let secondary = secondary_of(&b, 1);
    let (p_task, s_task) = connect(&primary, &secondary, link_pair("n1", "n2"));
    commit(&a, &primary, 1, Some("x"));
    assert!(caught_up(&secondary, &a).await);
    // The secondary goes away; two more commits it never sees.
    s_task.abort();
    p_task.abort();
    commit(&a, &primary, 2, Some("y"));
    commit(&a, &primary, 3, Some("z"));
    tokio::time::sleep(Duration::from_millis(30)).await;
    let lag = primary.lag().await?;
    assert_eq!(lag.len(), 1);
    assert_eq!(lag[0].entries, 2);
    assert!(lag[0].seconds >= 0.03, "{lag:?}");
    Ok(())
}

#[tokio::test]
async fn replication_runs_over_mutual_tls() -> TestResult {
    use mycelium_network::{ConnectOptions, Server, ServerOptions, TlsIdentity, certs, connect};
    use tokio_util::sync::CancellationToken;

    let dir = tempfile::tempdir()?;
    certs::generate_cluster(dir.path(), &["n1", "n2"])?;
    let (a, b) = (node("n1"), node("n2"));
    let primary = primary_of(&a, 1);
    let secondary = secondary_of(&b, 1);
    commit(&a, &primary, 1, Some("over tls"));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let serving = primary.clone();
    let server_side = Server::new(
        TlsIdentity::load_member(dir.path(), "n1")?,
        ServerOptions::default(),
    );
    let server = tokio::spawn(server_side.serve(
        listener,
        move |mut conn, _peer| {
            let primary = serving.clone();
            async move {
                // As a node's server does: the first message says which shard's primary.
                let first = MessageLink::recv(&mut conn).await;
                let served = match first {
                    Ok(Some(first @ ReplicationMessage::Status { .. })) => {
                        primary.serve_from(&mut conn, first).await
                    }
                    Ok(other) => Err(Error::Protocol(format!(
                        "unexpected first message {other:?}"
                    ))),
                    Err(e) => Err(e),
                };
                served.map_err(|e| mycelium_network::NetworkError::Protocol(e.to_string()))
            }
        },
        shutdown.clone(),
    ));
    let mut conn = connect(
        addr,
        "n1",
        &TlsIdentity::load_member(dir.path(), "n2")?,
        &ConnectOptions::default(),
    )
    .await?;
    let running = secondary.clone();
    let s_task = tokio::spawn(async move { running.run(&mut conn).await });

    assert!(caught_up(&secondary, &a).await);
    let e = commit(&a, &primary, 2, Some("second"));
    primary.wait_replicated(e.sequence, 1, WAIT).await?;
    assert_eq!(b.log.data().rows, a.log.data().rows);
    assert_eq!(
        primary
            .acked()
            .keys()
            .map(NodeId::as_str)
            .collect::<Vec<_>>(),
        ["n2"],
        "acknowledgements count under the certificate's name"
    );
    s_task.abort();
    shutdown.cancel();
    server.await??;
    Ok(())
}

#[tokio::test]
async fn a_fenced_primary_rejoins_and_its_divergent_writes_become_conflicts() -> TestResult {
    let (a, b, c) = (node("n1"), node("n2"), node("n3"));
    let old_primary = primary_of(&a, 1);
    let (to_b, to_c) = (secondary_of(&b, 1), secondary_of(&c, 1));
    let (p1, s1) = connect(&old_primary, &to_b, link_pair("n1", "n2"));
    let (p2, s2) = connect(&old_primary, &to_c, link_pair("n1", "n3"));
    commit(&a, &old_primary, 1, Some("agreed"));
    commit(&a, &old_primary, 2, Some("agreed"));
    assert!(caught_up(&to_b, &a).await && caught_up(&to_c, &a).await);

    // Partition: n1 goes on writing key 1 while n2 is promoted (epoch 2) and writes it too.
    for task in [p1, s1, p2, s2] {
        task.abort();
    }
    commit(&a, &old_primary, 1, Some("n1 during the partition"));
    let new_primary = primary_of(&b, 2);
    tokio::time::sleep(Duration::from_millis(2)).await;
    commit(&b, &new_primary, 1, Some("n2 after promotion"));
    commit(&b, &new_primary, 3, Some("n2 only"));

    // n3 follows the new primary; the old one rejoins as a secondary of it.
    let (to_c, rejoined) = (secondary_of(&c, 2), secondary_of(&a, 2));
    let (_p3, _s3) = connect(&new_primary, &to_c, link_pair("n2", "n3"));
    let (_p4, _s4) = connect(&new_primary, &rejoined, link_pair("n2", "n1"));

    let everything: VersionVector = [(NodeId::new("n1"), 3), (NodeId::new("n2"), 2)]
        .into_iter()
        .collect();
    for s in [&to_c, &rejoined] {
        assert!(s.wait_applied(&everything, WAIT).await, "{:?}", s.status());
    }
    assert!(
        to_c.wait_applied(&applied_of(&b), WAIT).await && applied_of(&b) == everything,
        "the new primary took n1's divergent entry and relayed it"
    );
    let (da, db, dc) = (a.log.data(), b.log.data(), c.log.data());
    assert_eq!(da.rows, db.rows);
    assert_eq!(db.rows, dc.rows);
    assert_eq!(db.conflicts.len(), 1, "{:?}", db.conflicts);
    assert_eq!(da.conflicts, db.conflicts);
    assert_eq!(dc.conflicts, db.conflicts);
    let conflict = db.conflicts.values().next().ok_or("no conflict")?;
    assert_eq!(
        (
            conflict.first.sequence,
            conflict.second.sequence,
            conflict.winner.as_str()
        ),
        (3, 1, "n2"),
        "n1's third write against n2's first; the later clock wins"
    );
    Ok(())
}
