//! Transaction records are deleted once no participant can ask about them: the coordinator's
//! forget after every commit was acknowledged, and the decider's sweep, which keeps what a
//! node still holds prepared or cannot be asked about.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mycelium_node::Node;
use mycelium_protocol::{
    ClusterMap, CommitPosition, DbError, NodeLink, NodeSession, NodeStatus, PreparedTxn,
    TxnOutcome, TxnRecord,
};
use mycelium_txn::{Coordinator, RecordStore, Sweeper, Swept};

use crate::coordinator::{config, nodes, participants, writes};

struct Records(Arc<Node>);

#[async_trait]
impl RecordStore for Records {
    async fn txn_records(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> Result<Vec<TxnRecord>, DbError> {
        self.0.txn_records(older_than, limit).await
    }

    async fn delete_txn_records(&self, records: &[TxnRecord]) -> Result<u64, DbError> {
        self.0.delete_txn_records(records).await
    }
}

/// A node that answers nothing.
struct Down(&'static str);

fn down(id: &str) -> DbError {
    DbError::new("08006", format!("node {id} is down"))
}

#[async_trait]
impl NodeLink for Down {
    fn node_id(&self) -> &str {
        self.0
    }
    async fn open_session(&self) -> Result<Box<dyn NodeSession>, DbError> {
        Err(down(self.0))
    }
    async fn finish_prepared(
        &self,
        _gid: &str,
        _commit: bool,
    ) -> Result<Vec<CommitPosition>, DbError> {
        Err(down(self.0))
    }
    async fn prepared(&self) -> Result<Vec<PreparedTxn>, DbError> {
        Err(down(self.0))
    }
    async fn txn_outcome(&self, _gid: &str) -> Result<TxnOutcome, DbError> {
        Err(down(self.0))
    }
    async fn status(&self) -> Result<NodeStatus, DbError> {
        Err(down(self.0))
    }
    async fn exchange_map(
        &self,
        _offer: Option<ClusterMap>,
    ) -> Result<Option<ClusterMap>, DbError> {
        Err(down(self.0))
    }
}

async fn records(node: &Node) -> Vec<(String, bool)> {
    let mut records: Vec<(String, bool)> = node
        .txn_records(Duration::ZERO, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.gid, r.committed))
        .collect();
    records.sort();
    records
}

fn sweeper(decider: &Arc<Node>, peers: Vec<Arc<dyn NodeLink>>) -> Sweeper {
    let peers: HashMap<String, Arc<dyn NodeLink>> = peers
        .into_iter()
        .map(|p| (p.node_id().to_owned(), p))
        .collect();
    let mut config = config();
    config.record_retention_seconds = 0;
    Sweeper::new(
        Arc::new(Records(decider.clone())),
        decider.clone(),
        peers,
        config,
    )
}

#[tokio::test]
async fn the_decider_forgets_a_transaction_every_participant_committed() {
    let nodes = nodes(3);
    let coordinator = Coordinator::new(config());
    for round in 0..5 {
        let ids = [round * 3 + 1, round * 3 + 2, round * 3 + 3];
        let (tx, mut sessions) = writes(&nodes, &coordinator, &ids).await;
        let parts = participants(&nodes, &mut sessions);
        coordinator.commit(&tx, parts).await.unwrap();
    }
    // The forget runs after the client's commit returned, in the background.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !records(&nodes.nodes[0]).await.is_empty() {
        assert!(Instant::now() < deadline, "the decider kept its records");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_sweep_keeps_what_a_participant_may_still_ask_about() {
    let nodes = nodes(2);
    let coordinator = Coordinator::new(config());
    let (n1, n2) = (nodes.nodes[0].clone(), nodes.nodes[1].clone());
    // Decided by n1, still prepared on n2 (its coordinator vanished after the decision).
    let (tx, mut sessions) = writes(&nodes, &coordinator, &[1, 2]).await;
    sessions[1].prepare(&tx, "n1").await.unwrap();
    sessions[0]
        .commit_decision(&tx, &["n1".to_owned(), "n2".to_owned()])
        .await
        .unwrap();
    // Presumed aborts: one asked by n2, one by a node no longer around.
    assert_eq!(n1.txn_outcome("g-gone").await.unwrap(), TxnOutcome::Aborted);
    tokio::time::sleep(Duration::from_millis(5)).await;

    // n2 holds the committed one: it stays; the abort record goes (nobody holds it).
    let sweep = sweeper(&n1, vec![n2.clone()]);
    assert_eq!(
        sweep.sweep_once().await,
        Swept {
            deleted: 1,
            kept: 1
        }
    );
    assert_eq!(records(&n1).await, vec![(tx.to_string(), true)]);

    // An unreachable participant keeps it too, even once n2 finished.
    n2.finish_prepared(&tx, true).await.unwrap();
    let blind = sweeper(&n1, vec![Arc::new(Down("n2"))]);
    assert_eq!(
        blind.sweep_once().await,
        Swept {
            deleted: 0,
            kept: 1
        }
    );
    // A participant the decider does not know of as well.
    let stranger = sweeper(&n1, vec![]);
    assert_eq!(
        stranger.sweep_once().await,
        Swept {
            deleted: 0,
            kept: 1
        }
    );

    // Every participant answered and none holds it: the record goes.
    assert_eq!(
        sweep.sweep_once().await,
        Swept {
            deleted: 1,
            kept: 0
        }
    );
    assert!(records(&n1).await.is_empty());

    // An abort record stays while any node cannot be asked (it names no participants).
    assert_eq!(n1.txn_outcome("g-lost").await.unwrap(), TxnOutcome::Aborted);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        blind.sweep_once().await,
        Swept {
            deleted: 0,
            kept: 1
        }
    );
    assert_eq!(
        sweep.sweep_once().await,
        Swept {
            deleted: 1,
            kept: 0
        }
    );
}
