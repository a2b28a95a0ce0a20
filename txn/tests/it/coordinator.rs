use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mycelium_config::{StorageConfig, TransactionConfig};
use mycelium_node::Node;
use mycelium_protocol::{CommitPosition, DbError, Execute, NodeLink, NodeSession, Reply};
use mycelium_txn::{CommitProtocol, Coordinator, Participant, Resolver, TxnEvent, TxnState};

pub(crate) struct Nodes {
    pub(crate) nodes: Vec<Arc<Node>>,
    _dir: tempfile::TempDir,
}

pub(crate) fn nodes(count: usize) -> Nodes {
    let dir = tempfile::tempdir().unwrap();
    let nodes = (1..=count)
        .map(|i| {
            let path = dir.path().join(format!("n{i}.sqlite"));
            Arc::new(
                Node::open_sqlite(&format!("n{i}"), false, &path, &StorageConfig::default())
                    .unwrap(),
            )
        })
        .collect();
    Nodes { nodes, _dir: dir }
}

async fn run(session: &mut dyn NodeSession, sql: &str) -> Result<Vec<String>, DbError> {
    let mut stream = session.execute(Execute::simple(sql)).await?;
    let mut values = Vec::new();
    while let Some(reply) = stream.recv().await {
        match reply? {
            Reply::Rows(rows) => {
                for row in rows.iter() {
                    for value in row {
                        values.push(String::from_utf8_lossy(value.unwrap_or(b"NULL")).into_owned());
                    }
                }
            }
            Reply::Complete { .. } => return Ok(values),
            Reply::Columns(_) => {}
        }
    }
    Err(DbError::new("08006", "stream ended"))
}

async fn count(node: &Node, sql: &str) -> String {
    let mut session = node.open_session().await.unwrap();
    run(session.as_mut(), sql).await.unwrap().remove(0)
}

pub(crate) fn config() -> TransactionConfig {
    TransactionConfig {
        recovery_timeout_ms: 1,
        ..TransactionConfig::default()
    }
}

/// Opens a session per node, creates `t` on each and starts a transaction writing `id` there.
pub(crate) async fn writes(
    nodes: &Nodes,
    coordinator: &Coordinator,
    ids: &[i64],
) -> (mycelium_txn::TxId, Vec<Box<dyn NodeSession>>) {
    let tx = coordinator.begin().unwrap();
    let mut sessions = Vec::new();
    for (node, id) in nodes.nodes.iter().zip(ids) {
        let mut session = node.open_session().await.unwrap();
        run(
            session.as_mut(),
            "CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY)",
        )
        .await
        .unwrap();
        run(session.as_mut(), "BEGIN").await.unwrap();
        run(session.as_mut(), &format!("INSERT INTO t VALUES ({id})"))
            .await
            .unwrap();
        coordinator
            .add_operation(&tx, node.node_id(), true)
            .unwrap();
        sessions.push(session);
    }
    (tx, sessions)
}

pub(crate) fn participants<'a>(
    nodes: &Nodes,
    sessions: &'a mut [Box<dyn NodeSession>],
) -> Vec<Participant<'a>> {
    nodes
        .nodes
        .iter()
        .zip(sessions.iter_mut())
        .map(|(node, session)| Participant {
            node: node.node_id().to_owned(),
            link: node.clone(),
            session: session.as_mut(),
            writes: true,
        })
        .collect()
}

fn drain(events: &mut tokio::sync::broadcast::Receiver<TxnEvent>) -> Vec<TxnEvent> {
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    seen
}

fn states(events: &[TxnEvent]) -> Vec<TxnState> {
    events
        .iter()
        .filter_map(|e| match e {
            TxnEvent::StateChanged { new_state, .. } => Some(*new_state),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn two_writers_commit_in_two_phases_and_say_so() {
    let nodes = nodes(2);
    let coordinator = Coordinator::new(config());
    let mut events = coordinator.subscribe();
    let (tx, mut sessions) = writes(&nodes, &coordinator, &[1, 2]).await;
    let listed = coordinator.transactions();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].writers, vec!["n1", "n2"]);
    let committed = coordinator
        .commit(&tx, participants(&nodes, &mut sessions))
        .await
        .unwrap();
    assert_eq!(committed.protocol, CommitProtocol::TwoPhase);
    // The prepared participant (n2; n1 decides) says where its commit landed, and the
    // decider's session does.
    assert!(!committed.positions.is_empty());
    assert!(
        committed.positions.iter().all(|p| p.origin == "n2"),
        "{:?}",
        committed.positions
    );
    let decided = sessions[0].take_commit_positions();
    assert!(
        !decided.is_empty() && decided.iter().all(|p| p.origin == "n1"),
        "{decided:?}"
    );
    for node in &nodes.nodes {
        assert_eq!(count(node, "SELECT count(*) FROM t").await, "1");
        assert!(node.prepared().await.unwrap().is_empty());
    }
    // The decider (n1) wrote the record; once n2 acknowledged its commit the coordinator
    // tells n1 to forget it (records.rs).
    let seen = drain(&mut events);
    assert_eq!(
        states(&seen),
        vec![
            TxnState::Preparing,
            TxnState::Deciding,
            TxnState::Committing,
            TxnState::Committed
        ]
    );
    assert!(matches!(
        seen.last(),
        Some(TxnEvent::Completed { success: true, tx_id, .. }) if *tx_id == tx
    ));
    assert!(coordinator.transactions().is_empty());
}

#[tokio::test]
async fn one_writer_commits_in_one_phase() {
    let nodes = nodes(2);
    let coordinator = Coordinator::new(config());
    let (tx, mut sessions) = writes(&nodes, &coordinator, &[1, 2]).await;
    let mut participants = participants(&nodes, &mut sessions);
    participants[1].writes = false;
    // n2's insert is committed too: "writes" only decides the protocol.
    let committed = coordinator.commit(&tx, participants).await.unwrap();
    assert_eq!(committed.protocol, CommitProtocol::OnePhase);
    assert_eq!(count(&nodes.nodes[0], "SELECT count(*) FROM t").await, "1");
}

#[tokio::test]
async fn a_no_vote_aborts_everywhere_and_is_reported() {
    let nodes = nodes(3);
    let coordinator = Coordinator::new(config());
    let mut events = coordinator.subscribe();
    let (tx, mut sessions) = writes(&nodes, &coordinator, &[1, 2, 3]).await;
    // n3's transaction fails: its vote is no.
    assert!(
        run(sessions[2].as_mut(), "INSERT INTO t VALUES (3)")
            .await
            .is_err()
    );
    let error = coordinator
        .commit(&tx, participants(&nodes, &mut sessions))
        .await
        .unwrap_err();
    assert_eq!(error.code, "40001");
    assert!(error.message.contains("n3"), "{}", error.message);
    for node in &nodes.nodes {
        assert_eq!(count(node, "SELECT count(*) FROM t").await, "0");
        assert!(node.prepared().await.unwrap().is_empty());
    }
    let seen = drain(&mut events);
    assert_eq!(
        states(&seen),
        vec![TxnState::Preparing, TxnState::Aborting, TxnState::Aborted]
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, TxnEvent::Error { error, .. } if error.code == "40001"))
    );
    assert!(matches!(
        seen.last(),
        Some(TxnEvent::Completed { success: false, .. })
    ));
}

#[tokio::test]
async fn the_resolver_settles_what_a_vanished_coordinator_left_prepared() {
    let nodes = nodes(2);
    let coordinator = Coordinator::new(config());
    // Committed: the decider has the record, n2 is still prepared.
    let (tx, mut sessions) = writes(&nodes, &coordinator, &[1, 2]).await;
    sessions[1].prepare(&tx, "n1").await.unwrap();
    let participants: Vec<String> = vec!["n1".into(), "n2".into()];
    sessions[0]
        .commit_decision(&tx, &participants)
        .await
        .unwrap();
    let peers: HashMap<String, Arc<dyn NodeLink>> =
        HashMap::from([("n1".to_owned(), nodes.nodes[0].clone() as Arc<dyn NodeLink>)]);
    let resolver = Resolver::new(nodes.nodes[1].clone(), peers, config());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let resolved = resolver.resolve_once().await;
    assert_eq!(
        (resolved.committed, resolved.aborted, resolved.waiting),
        (1, 0, 0)
    );
    assert_eq!(count(&nodes.nodes[1], "SELECT count(*) FROM t").await, "1");

    // Never decided: n2 prepared, the decider's transaction went away.
    let (lost, mut lost_sessions) = writes(&nodes, &coordinator, &[10, 20]).await;
    lost_sessions[1].prepare(&lost, "n1").await.unwrap();
    drop(lost_sessions);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let resolved = resolver.resolve_once().await;
    assert_eq!(
        (resolved.committed, resolved.aborted, resolved.waiting),
        (0, 1, 0)
    );
    assert_eq!(count(&nodes.nodes[1], "SELECT count(*) FROM t").await, "1");
    assert!(nodes.nodes[1].prepared().await.unwrap().is_empty());
    // The abort is on record: the lost transaction can never commit now.
    assert_eq!(
        nodes.nodes[0].txn_outcome(&lost).await.unwrap(),
        mycelium_protocol::TxnOutcome::Aborted
    );
}

#[tokio::test]
async fn limits_refuse_with_sqlstates() {
    let coordinator = Coordinator::new(TransactionConfig {
        max_transactions: 2,
        default_timeout_ms: 50,
        ..TransactionConfig::default()
    });
    let first = coordinator.begin().unwrap();
    let second = coordinator.begin().unwrap();
    assert_eq!(coordinator.begin().unwrap_err().code, "53400");
    coordinator.abandon(&second);
    coordinator.begin().unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        coordinator
            .add_operation(&first, "n1", true)
            .unwrap_err()
            .code,
        "25P04"
    );
}

/// A node whose heartbeats stopped: it answers what reaches it, but the pool says it is down.
struct Unhealthy(Arc<Node>);

#[async_trait::async_trait]
impl NodeLink for Unhealthy {
    fn node_id(&self) -> &str {
        self.0.node_id()
    }
    fn is_up(&self) -> bool {
        false
    }
    async fn open_session(&self) -> Result<Box<dyn NodeSession>, DbError> {
        self.0.open_session().await
    }
    async fn finish_prepared(
        &self,
        gid: &str,
        commit: bool,
    ) -> Result<Vec<CommitPosition>, DbError> {
        self.0.finish_prepared(gid, commit).await
    }
    async fn prepared(&self) -> Result<Vec<mycelium_protocol::PreparedTxn>, DbError> {
        self.0.prepared().await
    }
    async fn txn_outcome(&self, gid: &str) -> Result<mycelium_protocol::TxnOutcome, DbError> {
        self.0.txn_outcome(gid).await
    }
    async fn status(&self) -> Result<mycelium_protocol::NodeStatus, DbError> {
        self.0.status().await
    }
    async fn exchange_map(
        &self,
        offer: Option<mycelium_protocol::ClusterMap>,
    ) -> Result<Option<mycelium_protocol::ClusterMap>, DbError> {
        self.0.exchange_map(offer).await
    }
}

/// Timeouts far shorter than preparing or committing the rows of [`bulk`].
fn hasty() -> TransactionConfig {
    TransactionConfig {
        prepare_timeout_ms: 1,
        commit_timeout_ms: 1,
        ..config()
    }
}

/// Adds 50,000 rows to each session's transaction, so that preparing and committing it take
/// tens of milliseconds.
async fn bulk(sessions: &mut [Box<dyn NodeSession>]) {
    for (i, session) in sessions.iter_mut().enumerate() {
        let from = 1_000_000 * (i + 1);
        run(
            session.as_mut(),
            &format!(
                "WITH RECURSIVE s(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM s \
                 WHERE i < {from} + 49999) INSERT INTO t SELECT i FROM s"
            ),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn a_node_that_is_up_may_take_longer_than_the_timeouts() {
    let nodes = nodes(3);
    let coordinator = Coordinator::new(hasty());
    let (tx, mut sessions) = writes(&nodes, &coordinator, &[1, 2, 3]).await;
    bulk(&mut sessions).await;
    let committed = coordinator
        .commit(&tx, participants(&nodes, &mut sessions))
        .await
        .unwrap();
    assert_eq!(committed.protocol, CommitProtocol::TwoPhase);
    for node in &nodes.nodes {
        assert_eq!(count(node, "SELECT count(*) FROM t").await, "50001");
        assert!(node.prepared().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_node_that_is_down_is_not_waited_for_past_prepare_timeout() {
    let nodes = nodes(2);
    let coordinator = Coordinator::new(hasty());
    let (tx, mut sessions) = writes(&nodes, &coordinator, &[1, 2]).await;
    bulk(&mut sessions).await;
    let mut participants = participants(&nodes, &mut sessions);
    participants[1].link = Arc::new(Unhealthy(nodes.nodes[1].clone()));
    let error = coordinator.commit(&tx, participants).await.unwrap_err();
    assert_eq!(error.code, "08006", "{error:?}");
    assert!(
        error.message.contains("n2") && error.message.contains("prepare_timeout"),
        "{}",
        error.message
    );
    drop(sessions);
    // n2 may have prepared after the coordinator stopped waiting; the abort reaches it, or
    // its resolver presumes abort.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !nodes.nodes[1].prepared().await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "n2 kept the transaction prepared"
        );
        let peers: HashMap<String, Arc<dyn NodeLink>> =
            HashMap::from([("n1".to_owned(), nodes.nodes[0].clone() as Arc<dyn NodeLink>)]);
        Resolver::new(nodes.nodes[1].clone(), peers, config())
            .resolve_once()
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for node in &nodes.nodes {
        assert_eq!(count(node, "SELECT count(*) FROM t").await, "0");
    }
}
