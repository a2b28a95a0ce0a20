//! Wait-die on a PostgreSQL node: the same rule as a SQLite node's write lock
//! (`engine/lock_wait.rs`), for PostgreSQL's row and table locks.
//!
//! A distributed transaction runs on each node it touches as a separate PostgreSQL session, so
//! a cycle of lock waits that spans nodes is a cycle no server sees, even when the nodes share
//! one server: PostgreSQL's deadlock detector follows waits between its own backends, and the
//! hop from one node's session to the same transaction's session on another node is not one
//! of them. Such a cycle would otherwise last until a `lock_timeout`, or for ever.
//!
//! So every statement of a transaction that holds locks on other nodes is watched: if it still
//! runs after [`DIE_AFTER`], the node asks PostgreSQL whom it waits for
//! (`pg_blocking_pids`), and when one of them is the session of an *older* distributed
//! transaction, cancels it (`pg_cancel_backend`); the statement then fails with 40001 instead
//! of 57014. Every wait left in a cycle would be an older transaction waiting for a younger
//! one, which cannot close. As on SQLite nodes, nobody dies waiting for a holder without an
//! order (autocommit statements, plain transactions, replication) or one that is committing
//! or prepared: such holders ask for no further lock. The priorities are the proxies' lock
//! orders ([`mycelium_protocol::LockOrder`]); the node maps its connections' backend pids to
//! them.
//!
//! The checks go over a connection of their own, outside the pool, so that a pool full of
//! waiting sessions cannot keep them from running. A check that fails (the server is gone)
//! leaves the statement waiting as it would without wait-die.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mycelium_protocol::DbError;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::pool::Manager;

/// How long a statement of a transaction that holds locks elsewhere runs before the node
/// looks at what it waits for: enough for most statements to finish unwatched, short next to
/// any lock timeout.
const DIE_AFTER: Duration = Duration::from_millis(5);

/// The longest pause between two looks at a statement that still runs (the pauses double
/// from [`DIE_AFTER`]): a long statement that waits for nothing costs a look this often.
const MAX_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// The node's distributed transactions by backend pid, and the connection the checks use.
pub(crate) struct WaitDie {
    /// Backend pid → the priority of the distributed transaction open on that connection.
    priorities: Mutex<HashMap<i32, u64>>,
    monitor: tokio::sync::Mutex<Option<Arc<Client>>>,
    manager: Manager,
    node: String,
}

impl WaitDie {
    pub fn new(manager: Manager, node: String) -> WaitDie {
        WaitDie {
            priorities: Mutex::new(HashMap::new()),
            monitor: tokio::sync::Mutex::new(None),
            manager,
            node,
        }
    }

    /// Says that the connection with backend `pid` runs a distributed transaction of this
    /// `priority`, until the returned registration is dropped.
    pub fn register(self: &Arc<Self>, pid: i32, priority: u64) -> Registration {
        self.priorities
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pid, priority);
        Registration {
            wait_die: self.clone(),
            pid,
            priority,
        }
    }

    /// Starts watching a statement of the transaction of `priority`, running on the
    /// connection with backend `pid`; the watch ends when the returned guard is dropped.
    pub fn watch(self: &Arc<Self>, pid: i32, priority: u64) -> Watch {
        let died = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(self.clone().look(pid, priority, died.clone()));
        Watch { task, died }
    }

    async fn look(self: Arc<Self>, pid: i32, priority: u64, died: Arc<AtomicBool>) {
        let mut pause = DIE_AFTER;
        loop {
            tokio::time::sleep(pause).await;
            match self.cancel_if_waiting_for_older(pid, priority, &died).await {
                Ok(true) => return,
                Ok(false) => pause = (pause * 2).min(MAX_CHECK_INTERVAL),
                Err(e) => {
                    tracing::debug!(node = %self.node, pid, error = %e,
                        "cannot look at a statement's lock waits; it waits unwatched");
                    return;
                }
            }
        }
    }

    /// Cancels the statement on backend `pid` if one of the backends it waits for runs an
    /// older distributed transaction; whether it did. `died` is set before the cancel goes
    /// out, since the statement's error can reach its session before the answer to the cancel
    /// reaches this one, and cleared again when nothing was canceled.
    async fn cancel_if_waiting_for_older(
        &self,
        pid: i32,
        priority: u64,
        died: &AtomicBool,
    ) -> Result<bool, tokio_postgres::Error> {
        let monitor = self.monitor().await?;
        let blockers: Vec<i32> = monitor
            .query_one("SELECT pg_catalog.pg_blocking_pids($1)", &[&pid])
            .await?
            .try_get(0)?;
        let Some(older) = self.older_than(priority, &blockers) else {
            return Ok(false);
        };
        // Only while it still waits for that one: the statement may have got its lock, or
        // ended, since the look above.
        died.store(true, Ordering::Release);
        let canceled = monitor
            .query_opt(
                "SELECT pg_catalog.pg_cancel_backend($1) \
                 WHERE $2 = ANY (pg_catalog.pg_blocking_pids($1))",
                &[&pid, &older],
            )
            .await
            .and_then(|row| row.map(|row| row.try_get::<_, bool>(0)).transpose());
        let canceled = match canceled {
            Ok(canceled) => canceled == Some(true),
            Err(e) => {
                died.store(false, Ordering::Release);
                return Err(e);
            }
        };
        if canceled {
            tracing::debug!(node = %self.node, pid, priority, blocker = older,
                "wait-die: canceled a younger transaction waiting for an older one");
        } else {
            died.store(false, Ordering::Release);
        }
        Ok(canceled)
    }

    /// The first of `blockers` that runs a distributed transaction older than `priority`.
    fn older_than(&self, priority: u64, blockers: &[i32]) -> Option<i32> {
        let priorities = self
            .priorities
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        blockers
            .iter()
            .copied()
            .find(|pid| priorities.get(pid).is_some_and(|&p| p < priority))
    }

    /// The checks' connection, opened on first use and again after it closed.
    async fn monitor(&self) -> Result<Arc<Client>, tokio_postgres::Error> {
        let mut monitor = self.monitor.lock().await;
        if let Some(client) = monitor.as_ref()
            && !client.is_closed()
        {
            return Ok(client.clone());
        }
        let client = Arc::new(self.manager.connect_direct().await?.client);
        *monitor = Some(client.clone());
        Ok(client)
    }
}

/// A connection's distributed transaction, known to the node's wait-die until dropped.
pub(crate) struct Registration {
    wait_die: Arc<WaitDie>,
    pid: i32,
    priority: u64,
}

impl Registration {
    /// Whether it registers this connection's transaction of this priority.
    pub fn is(&self, pid: i32, priority: u64) -> bool {
        self.pid == pid && self.priority == priority
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut priorities = self
            .wait_die
            .priorities
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if priorities.get(&self.pid) == Some(&self.priority) {
            priorities.remove(&self.pid);
        }
    }
}

/// A statement under watch; dropping it stops the watch.
pub(crate) struct Watch {
    task: JoinHandle<()>,
    died: Arc<AtomicBool>,
}

impl Watch {
    /// `error` as the client should see it: the cancel wait-die caused says why.
    pub fn explain(&self, error: DbError) -> DbError {
        if error.code == "57014" && self.died.load(Ordering::Acquire) {
            DbError::new(
                "40001",
                "could not serialize access due to concurrent update",
            )
            .with_detail(
                "A lock this statement needs is held by an older distributed transaction, and \
                 this transaction holds locks on other nodes: waiting could deadlock.",
            )
            .with_hint("Retry the transaction.")
        } else {
            error
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn wait_die() -> Arc<WaitDie> {
        let config: tokio_postgres::Config = "host=/nonexistent user=nobody".parse().unwrap();
        let health = Arc::new(super::super::pool::Health::new(Duration::from_secs(1)));
        Arc::new(WaitDie::new(Manager::new(config, 0, health), "n1".into()))
    }

    #[test]
    fn only_an_older_registered_transaction_is_a_reason_to_die() {
        let wait_die = wait_die();
        let _older = wait_die.register(10, 100);
        let _younger = wait_die.register(11, 300);
        // 12 runs no distributed transaction; 0 is a prepared transaction.
        assert_eq!(wait_die.older_than(200, &[12, 0, 11]), None);
        assert_eq!(wait_die.older_than(200, &[12, 11, 10]), Some(10));
        assert_eq!(wait_die.older_than(50, &[10, 11]), None);
    }

    #[test]
    fn a_dropped_registration_is_forgotten_unless_the_pid_was_registered_again() {
        let wait_die = wait_die();
        let first = wait_die.register(10, 100);
        drop(first);
        assert_eq!(wait_die.older_than(200, &[10]), None);
        let stale = wait_die.register(10, 100);
        let _fresh = wait_die.register(10, 150);
        drop(stale);
        assert_eq!(wait_die.older_than(200, &[10]), Some(10));
    }
}
