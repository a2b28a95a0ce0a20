//! Waiting for the node's SQLite write lock, with wait-die between distributed transactions.
//!
//! A SQLite file has one write lock, so two distributed transactions that each hold one
//! node's lock and then ask for the other's wait for each other, and only the lock timeout
//! (`busy_timeout`, seconds) ends it. Crossing transfers between accounts on two nodes do this
//! all the time. The proxy gives every transaction a [`LockOrder`]; a transaction that holds
//! locks on other nodes waits here for an older holder only [`DIE_AFTER`], then fails with
//! 40001 ("wait-die"): every wait in a cycle but the short ones would be an older transaction
//! waiting for a younger one, which cannot close. Nobody dies waiting for a holder that waits
//! for no lock any more: one without an order (autocommit statements, replication) or one
//! being prepared, prepared or committing. A transaction that holds nothing elsewhere cannot
//! be part of a cycle and waits as before.
//!
//! Waiters sleep on a condition variable that a worker signals when its transaction ends, so
//! a queue of writers hands the lock on without SQLite's busy-handler sleeps.

use std::cell::Cell;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mycelium_protocol::{DbError, LockOrder};

/// Longest single sleep: releases the registry does not see (a worker's autocommit write
/// ends inside SQLite) are noticed this late at worst.
const POLL: Duration = Duration::from_millis(5);

/// How long a transaction that holds locks elsewhere waits for an older holder before it
/// dies: enough for a holder that is about to finish, short next to any lock timeout.
pub(crate) const DIE_AFTER: Duration = Duration::from_millis(5);

/// Who holds the write lock, as far as the workers have said.
#[derive(Default)]
pub(crate) struct WriteLock {
    state: Mutex<State>,
    released: Condvar,
}

#[derive(Default)]
struct State {
    holder: Option<Holder>,
    /// Bumped at every release, so a waiter knows whether to try again.
    releases: u64,
    waiters: usize,
}

#[derive(Clone, Copy)]
struct Holder {
    worker: usize,
    /// The priority of the holder's distributed transaction; `None` for a transaction without
    /// an order, which waits for nothing outside the node.
    priority: Option<u64>,
    /// The holder is being prepared, is prepared or is committing: it asks for no lock again.
    finishing: bool,
}

impl WriteLock {
    /// Worker `worker` began a write transaction (it holds the lock, or is about to).
    pub fn acquired(&self, worker: usize, order: Option<LockOrder>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.holder = Some(Holder {
            worker,
            priority: order.map(|o| o.priority),
            finishing: false,
        });
    }

    /// Worker `worker`'s transaction ran its last statement: it is being prepared or
    /// committed, and keeps the lock only until its outcome, whatever others hold.
    pub fn finishing(&self, worker: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(holder) = state.holder.as_mut()
            && holder.worker == worker
        {
            holder.finishing = true;
        }
    }

    /// Worker `worker` has no transaction open any more; wakes the waiters, if any.
    pub fn released(&self, worker: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.holder.is_some_and(|h| h.worker == worker) {
            state.holder = None;
        }
        if state.waiters > 0 {
            state.releases += 1;
            drop(state);
            self.released.notify_all();
        }
    }

    /// One turn of a busy wait of worker `worker` for transaction `order`, waiting since
    /// `since`: `Wait::Retry` after the lock was released or a short sleep, `Wait::Die` when
    /// wait-die forbids waiting longer, `Wait::GiveUp` once `deadline` passed.
    fn wait(
        &self,
        worker: usize,
        order: Option<LockOrder>,
        since: Instant,
        deadline: Instant,
    ) -> Wait {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let (Some(order), Some(holder)) = (order, state.holder)
            && order.holds_elsewhere
            && holder.worker != worker
            && !holder.finishing
            && holder.priority.is_some_and(|older| older <= order.priority)
            && since.elapsed() >= DIE_AFTER
        {
            return Wait::Die;
        }
        let now = Instant::now();
        if now >= deadline {
            return Wait::GiveUp;
        }
        let seen = state.releases;
        state.waiters += 1;
        let (mut state, _) = self
            .released
            .wait_timeout_while(state, POLL.min(deadline - now), |s| s.releases == seen)
            .unwrap_or_else(PoisonError::into_inner);
        state.waiters -= 1;
        Wait::Retry
    }
}

enum Wait {
    Retry,
    Die,
    GiveUp,
}

thread_local! {
    /// The lock order of the transaction the worker on this thread is running a statement of.
    static ORDER: Cell<Option<LockOrder>> = const { Cell::new(None) };
    /// The current lock wait ended by wait-die.
    static DIED: Cell<bool> = const { Cell::new(false) };
    /// When the current lock wait began.
    static WAIT_STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The lock order of the statement running on this worker thread.
pub(crate) fn current_order() -> Option<LockOrder> {
    ORDER.with(Cell::get)
}

/// Runs `work` (a statement on this worker thread) as part of the transaction of `order`.
pub(crate) fn with_order<T>(order: Option<LockOrder>, work: impl FnOnce() -> T) -> T {
    ORDER.with(|o| o.set(order));
    DIED.with(|d| d.set(false));
    let result = work();
    ORDER.with(|o| o.set(None));
    result
}

/// The busy handler of worker `worker`'s connection: SQLite calls it with how many times it
/// already did for the same lock request.
pub(crate) fn busy_handler(
    lock: std::sync::Arc<WriteLock>,
    worker: usize,
    timeout: Duration,
) -> impl FnMut(i32) -> bool + Send + 'static {
    move |attempt| {
        let since = match WAIT_STARTED.with(Cell::get) {
            Some(since) if attempt > 0 => since,
            _ => {
                let now = Instant::now();
                WAIT_STARTED.with(|d| d.set(Some(now)));
                now
            }
        };
        match lock.wait(worker, current_order(), since, since + timeout) {
            Wait::Retry => true,
            Wait::GiveUp => false,
            Wait::Die => {
                DIED.with(|d| d.set(true));
                false
            }
        }
    }
}

/// `error` as the client should see it: a busy error that wait-die caused says so.
pub(crate) fn explain(error: DbError) -> DbError {
    if error.code == "40001" && DIED.with(Cell::get) {
        DbError::new(
            "40001",
            "could not serialize access due to concurrent update",
        )
        .with_detail(
            "The node's write lock is held by an older distributed transaction, and this \
             transaction holds locks on other nodes: waiting could deadlock.",
        )
        .with_hint("Retry the transaction.")
    } else {
        error
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn order(priority: u64, holds_elsewhere: bool) -> Option<LockOrder> {
        Some(LockOrder {
            priority,
            holds_elsewhere,
        })
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    /// A wait that began `DIE_AFTER` ago.
    fn long_ago() -> Instant {
        Instant::now() - DIE_AFTER
    }

    #[test]
    fn a_younger_transaction_holding_locks_elsewhere_dies_after_a_short_wait() {
        let lock = WriteLock::default();
        lock.acquired(0, order(10, false));
        let just_now = Instant::now();
        assert!(matches!(
            lock.wait(1, order(11, true), just_now, soon()),
            Wait::Retry
        ));
        for younger_or_tied in [11, 10] {
            assert!(matches!(
                lock.wait(1, order(younger_or_tied, true), long_ago(), soon()),
                Wait::Die
            ));
        }
    }

    #[test]
    fn older_transactions_and_ones_holding_nothing_elsewhere_wait() {
        let lock = WriteLock::default();
        lock.acquired(0, order(10, true));
        for waiter in [order(9, true), order(11, false), None] {
            assert!(matches!(
                lock.wait(1, waiter, long_ago(), soon()),
                Wait::Retry
            ));
        }
        lock.acquired(0, None);
        assert!(matches!(
            lock.wait(1, order(11, true), long_ago(), soon()),
            Wait::Retry
        ));
    }

    #[test]
    fn nobody_dies_waiting_for_a_finishing_holder() {
        let lock = WriteLock::default();
        lock.acquired(0, order(10, false));
        lock.finishing(2);
        assert!(matches!(
            lock.wait(1, order(11, true), long_ago(), soon()),
            Wait::Die
        ));
        lock.finishing(0);
        assert!(matches!(
            lock.wait(1, order(11, true), long_ago(), soon()),
            Wait::Retry
        ));
    }

    #[test]
    fn a_released_lock_lets_anyone_wait() {
        let lock = WriteLock::default();
        lock.acquired(0, order(10, false));
        lock.released(0);
        assert!(matches!(
            lock.wait(1, order(11, true), long_ago(), soon()),
            Wait::Retry
        ));
        lock.acquired(0, order(10, false));
        lock.released(2);
        assert!(matches!(
            lock.wait(1, order(11, true), long_ago(), soon()),
            Wait::Die
        ));
    }

    #[test]
    fn a_wait_past_its_deadline_gives_up() {
        let lock = WriteLock::default();
        lock.acquired(0, None);
        assert!(matches!(
            lock.wait(1, None, long_ago(), Instant::now()),
            Wait::GiveUp
        ));
    }

    #[test]
    fn a_release_wakes_a_waiter_before_its_sleep_ends() {
        let lock = Arc::new(WriteLock::default());
        lock.acquired(0, None);
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                let far = Instant::now() + Duration::from_secs(60);
                let mut turns = 0;
                // POLL-long sleeps until the release bumps the count; one wait then returns.
                while lock.state.lock().unwrap().releases == 0 {
                    assert!(matches!(
                        lock.wait(1, None, Instant::now(), far),
                        Wait::Retry
                    ));
                    turns += 1;
                }
                turns
            })
        };
        while lock.state.lock().unwrap().waiters == 0 {
            std::thread::yield_now();
        }
        lock.released(0);
        let turns = waiter.join().unwrap();
        assert!(turns >= 1);
        assert_eq!(lock.state.lock().unwrap().releases, 1);
    }
}
