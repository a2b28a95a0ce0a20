//! A session that reports its commits to replication: on a PostgreSQL node they are sealed
//! into entries (see [`super::store::Sealer`]), and with `synchronous_replicas` they are
//! answered only once enough secondaries acknowledged them.
//!
//! The SQLite backend announces each commit's entries on its worker thread before it answers
//! the statement; a PostgreSQL node's sealer announces them once sealed (at once for a commit
//! that waits). Every announcement bumps a generation. A statement that may have
//! committed (one that leaves the session outside a transaction and whose tag is a write or
//! COMMIT) holds its `Complete` until the shards whose last commit came after the
//! generation read when it started are acknowledged up to that commit. A concurrent commit
//! of another session on the same shard can lengthen the wait (its entry is acknowledged with
//! or after this one's), never shorten it.
//!
//! Two-phase commits are not held (see [`ReplicatedSession::commit_decision`]): the coordinator
//! would have to wait for replication after its last commit, which the node protocol cannot
//! ask for yet.
//!
//! Read-your-writes: a committing statement's `Complete` reports where its commits landed (the
//! last sequence of this node's log of each shard written since it started), and a statement
//! given a read fence first waits until this node's copies applied it.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use mycelium_protocol::{
    CommitPosition, CopyIn, DbError, Execute, LockOrder, NodeSession, Reply, ReplySource,
    ReplyStream, StatementDescription,
};

use super::Shared;

/// Command tags of statements that write or commit.
/// A read's tag (`SELECT`, `SHOW`) is not among them: it committed nothing of its own, and
/// waiting for other sessions' commits would only slow it down.
const WRITING_TAGS: [&str; 10] = [
    "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "COMMIT", "CREATE", "ALTER", "DROP", "TRUNCATE",
];

fn may_have_written(tag: &str) -> bool {
    let word = tag.split_whitespace().next().unwrap_or_default();
    WRITING_TAGS.contains(&word)
}

/// A session of a node, as replication sees it.
pub(crate) struct ReplicatedSession {
    inner: Box<dyn NodeSession>,
    shared: Arc<Shared>,
    /// The read fence of the next statement.
    fence: Vec<CommitPosition>,
    /// Where the last statement's commits landed (written when its `Complete` passes).
    positions: Arc<Mutex<Vec<CommitPosition>>>,
}

impl ReplicatedSession {
    pub fn new(inner: Box<dyn NodeSession>, shared: Arc<Shared>) -> ReplicatedSession {
        ReplicatedSession {
            inner,
            shared,
            fence: Vec::new(),
            positions: Arc::default(),
        }
    }
}

/// Replies of one statement, with its `Complete` held until replication confirmed.
struct HoldComplete {
    inner: ReplyStream,
    shared: Arc<Shared>,
    since: u64,
    positions: Arc<Mutex<Vec<CommitPosition>>>,
}

#[async_trait]
impl ReplySource for HoldComplete {
    async fn next(&mut self) -> Option<Result<Reply, DbError>> {
        let reply = self.inner.recv().await?;
        if let Ok(Reply::Complete { tag }) = &reply
            && may_have_written(tag)
        {
            if let Err(e) = self.shared.committed_here(self.since).await {
                return Some(Err(e));
            }
            if self.shared.announces_before_answering() {
                *self
                    .positions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) =
                    self.shared.positions_since(self.since);
            }
        }
        Some(reply)
    }
}

#[async_trait]
impl NodeSession for ReplicatedSession {
    async fn describe(
        &mut self,
        sql: &str,
        param_types: &[u32],
    ) -> Result<StatementDescription, DbError> {
        self.inner.describe(sql, param_types).await
    }

    async fn execute(&mut self, request: Execute) -> Result<ReplyStream, DbError> {
        let fence = std::mem::take(&mut self.fence);
        if !fence.is_empty() {
            self.shared.wait_for_fence(&fence).await?;
        }
        let since = self.shared.generation();
        let stream = self.inner.execute(request).await?;
        if self.inner.in_transaction() {
            return Ok(stream);
        }
        Ok(ReplyStream::from_source(Box::new(HoldComplete {
            inner: stream,
            shared: self.shared.clone(),
            since,
            positions: self.positions.clone(),
        })))
    }

    fn set_read_fence(&mut self, fence: Vec<CommitPosition>) {
        self.fence = fence;
    }

    fn take_commit_positions(&mut self) -> Vec<CommitPosition> {
        std::mem::take(
            &mut *self
                .positions
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    async fn copy_in(&mut self, batch: CopyIn) -> Result<u64, DbError> {
        let since = self.shared.generation();
        let rows = self.inner.copy_in(batch).await?;
        if !self.inner.in_transaction() {
            self.shared.committed_here(since).await?;
        }
        Ok(rows)
    }

    fn set_user(&mut self, user: &str) {
        self.inner.set_user(user);
    }

    fn set_time_zone(&mut self, zone: &str) {
        self.inner.set_time_zone(zone);
    }

    fn set_lock_order(&mut self, order: Option<LockOrder>) {
        self.inner.set_lock_order(order);
    }

    fn in_transaction(&self) -> bool {
        self.inner.in_transaction()
    }

    async fn prepare(&mut self, gid: &str, decider: &str) -> Result<(), DbError> {
        self.inner.prepare(gid, decider).await
    }

    /// Not held: a secondary of this node's shards may be a participant of the same
    /// transaction, whose prepared copy holds its write lock until the coordinator has this
    /// answer, so the secondary could not apply the entry before the timeout.
    async fn commit_decision(&mut self, gid: &str, participants: &[String]) -> Result<(), DbError> {
        let since = self.shared.generation();
        self.inner.commit_decision(gid, participants).await?;
        self.shared.finished_prepared();
        if self.shared.announces_before_answering() {
            *self
                .positions
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = self.shared.positions_since(since);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::may_have_written;

    #[test]
    fn writes_and_commits_are_held_reads_are_not() {
        for tag in [
            "INSERT 0 3",
            "UPDATE 1",
            "DELETE 0",
            "COMMIT",
            "COPY 5",
            "CREATE TABLE",
        ] {
            assert!(may_have_written(tag), "{tag}");
        }
        for tag in ["SELECT 2", "ROLLBACK", "BEGIN", "SHOW", "SET"] {
            assert!(!may_have_written(tag), "{tag}");
        }
    }
}
