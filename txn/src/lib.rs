//! Distributed transactions: the two-phase commit coordinator the proxy runs for every
//! client transaction, and the resolver every node runs for transactions left in doubt.
//!
//! # Protocol
//!
//! A transaction that wrote on one node commits there in one phase. One that wrote on several
//! ("writers") commits in two:
//!
//! 1. **Prepare** every writer but one, the *decider*, in parallel: each makes its changes
//!    durable under the transaction's global id (gid) and keeps its locks
//!    ([`NodeSession::prepare`]). Any error, "no" or timeout aborts everywhere.
//! 2. **Decide**: the decider commits its own changes together with the transaction record
//!    "gid committed" in one backend transaction ([`NodeSession::commit_decision`]). That
//!    commit *is* the decision, and it lives on a participant, not in the proxy.
//! 3. **Commit** the prepared writers ([`NodeLink::finish_prepared`]).
//!
//! Nodes that only read are simply committed first: they hold no changes.
//!
//! # Recovery (presumed abort)
//!
//! A proxy may die at any instant. A participant holding a prepared transaction older than
//! the recovery timeout asks the decider for the outcome ([`NodeLink::txn_outcome`]): a record
//! says committed; no record means it never committed, and asking writes an "aborted" record
//! so that a slow coordinator's decision commit fails rather than contradict it. The
//! [`Resolver`] does this on every node.
//!
//! # Forgetting records
//!
//! Once every prepared writer acknowledged its commit, the coordinator tells the decider to
//! delete the record ([`NodeLink::forget_txn`], in the background: the client does not wait).
//! Each node's [`Sweeper`] deletes the rest (abort records, records whose forget never came)
//! after `record_retention_seconds`, once no node holds the gid prepared; `sweeper.rs`
//! argues why that is safe.
//!
//! [`NodeSession::prepare`]: mycelium_protocol::NodeSession::prepare
//! [`NodeLink::forget_txn`]: mycelium_protocol::NodeLink::forget_txn
//! [`NodeSession::commit_decision`]: mycelium_protocol::NodeSession::commit_decision
//! [`NodeLink::finish_prepared`]: mycelium_protocol::NodeLink::finish_prepared
//! [`NodeLink::txn_outcome`]: mycelium_protocol::NodeLink::txn_outcome

mod coordinator;
mod metrics;
mod resolver;
mod sweeper;

pub use coordinator::{
    CommitProtocol, Committed, Coordinator, Participant, TxId, TxnEvent, TxnState, TxnView,
};
pub use resolver::{Resolved, Resolver};
pub use sweeper::{RecordStore, Sweeper, Swept};
