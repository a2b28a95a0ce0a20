//! WAL replication between the replicas of a shard: the pure core. Entries, version vectors,
//! hybrid logical clocks, the binary codec, conflict detection and resolution, apply order,
//! and the primary and secondary state machines over a storage trait. No SQL and no files:
//! a backend implements [`ShardLog`] (and [`ApplyTxn`] inside its transactions), the node
//! wires the state machines to `network` connections.
//!
//! # Model
//!
//! The unit of replication is a [`WalEntry`]: the row-level changes of one committed
//! transaction on one shard (never statement text, so `now()`, `random()`, defaults and
//! triggers replicate as the values they produced), written by the backend in the same
//! transaction as the data. Rows are typed [`SqlValue`]s with whole-row images, independent of
//! SQLite's changeset format, so SQLite and Postgres nodes produce and apply the same entries.
//!
//! Each entry names its origin node and its `sequence` in that origin's log of the shard
//! (1, 2, 3, ... without gaps), the primary `epoch` it was written under, its [`Hlc`]
//! timestamp, and a [`VersionVector`]: for every origin, the last sequence the writer had
//! applied when it committed (its own sequence included). A node's applied vector is its
//! position; an entry is *covered* by a vector whose component for its origin is at or past
//! its sequence.
//!
//! - **Apply order** ([`order`]): a replica applies an origin's entries in sequence order and
//!   only after everything in the entry's version vector (causal order); duplicates are
//!   dropped; a gap makes it ask for the entries after its applied vector.
//! - **Conflicts** ([`resolve_row`]): each row keeps a [`RowClock`], the latest write of each
//!   origin that wrote it. A write concurrent with another origin's (neither saw the other) is
//!   a conflict; the row keeps the version of highest rank ([`ConflictPolicy`]: HLC then node
//!   id, or epoch first), which is the same on every replica in any delivery order, and the
//!   conflict is recorded ([`Conflict`]).
//! - **Shipping** ([`Primary`]): per secondary, everything its vector does not cover, then each
//!   commit as it happens; a snapshot first when the log was truncated past its position.
//!   Acknowledgements carry the secondary's applied vector; [`Primary::wait_replicated`] holds
//!   a commit until `k` secondaries cover it.
//! - **Applying** ([`Secondary`]): statuses exchanged (an older primary epoch is refused, a
//!   newer one fences the old primary), then entries applied through [`ShardLog::apply`] and
//!   acknowledged. The HLC takes in every applied entry's timestamp, so a later local write
//!   always ranks above what it saw.
//! - **Rejoin**: when a secondary's status shows entries the primary lacks (a fenced old
//!   primary's writes from before it learned of the promotion), the primary asks for them,
//!   applies them as conflicts dictate and ships them on like its own, so nothing is dropped.
//!
//! # Wiring (a node)
//!
//! One [`HlcClock`] per node, shared by everything. Per shard: a backend that implements
//! [`ShardLog`]; in every local write transaction it builds the entry with
//! [`WalEntry::next_local`] (applied vector read in that transaction, timestamp from
//! `clock.now()`) and calls [`record_local`] before committing, then [`Primary::committed`].
//! The primary of a shard serves each secondary's connection with [`Primary::serve`] (a
//! server dispatches connections whose first frame kind satisfies [`kind::is_replication`])
//! and holds a commit with [`Primary::wait_replicated`] for `synchronous_replicas = k`. A
//! secondary connects to its primary and runs [`Secondary::run`], reconnecting with backoff
//! when it returns. [`Primary::lag`] and [`Secondary::status`] feed
//! `SHOW MYCELIUM REPLICATION` and metrics; [`Primary::acked_by_all`] bounds truncation.
//!
//! # Wire format
//!
//! One message per `network` frame; frame kinds `0x40..=0x4f` ([`kind`]):
//!
//! | kind   | message            | payload                                               |
//! |--------|--------------------|-------------------------------------------------------|
//! | `0x40` | `WalEntry`         | entry                                                 |
//! | `0x41` | `RequestEntries`   | shard, vv (`after`)                                   |
//! | `0x42` | `ResponseEntries`  | shard, u32 n, n × (u32 len, entry of len bytes)      |
//! | `0x43` | `Snapshot`         | shard, u32 index, u8 last, vv, hlc, u32 n, n × item   |
//! | `0x44` | `Ack`              | shard, vv (`applied`)                                 |
//! | `0x45` | `Status`           | shard, u8 role (0 primary, 1 secondary), u64 epoch, vv|
//! | `0x46` | `Heartbeat`        | u32 n, n × (shard, vv), hlc                           |
//!
//! Integers are big-endian and fixed width. `str` is a u32 byte length and UTF-8; `shard` is
//! str table, u32 number; `node` is a non-empty str; `vv` is u32 n, n × (node, u64 sequence)
//! in node order with no zero sequence; `hlc` is u64 ms, u32 logical, node; a value is a tag
//! byte (0 null, 1 integer i64, 2 real as IEEE-754 bits u64, 3 text str, 4 blob u32 len +
//! bytes); `values` is u32 n, n × value; an optional image is u8 0, or u8 1 then values.
//!
//! Entry (also the stored form, [`encode_entry`]): u8 format (1), shard, node origin, u64
//! sequence, u64 epoch, vv, hlc, str txn id, u32 n × shape (str table, u32 m, m × str column),
//! u32 n × change. A change is u8 0 + str DDL, or u8 1 + u32 shape index + u8 op (0 insert,
//! 1 update, 2 delete) + values key + optional old image + optional new image. Decoding
//! checks that the sequence is the origin's component of the vector and the clock's node,
//! that images match their shape's width, and that only deletes lack a new image.
//!
//! Snapshot item: u8 0 + str DDL; u8 1 + str table + u32 m × str column + values key +
//! optional image (absent: tombstone) + u32 n × stamp; u8 2 + conflict. A stamp is node origin,
//! u64 sequence, u64 epoch, hlc; a conflict is str table, values key, stamp first, stamp
//! second (origins in order), node winner.
//!
//! Decoding is bounds-checked throughout: a count is refused when the remaining bytes could
//! not hold that many items, so hostile input neither panics nor allocates beyond its size.

mod clock;
mod codec;
mod conflict;
mod entry;
mod link;
mod log;
mod message;
pub mod order;
mod primary;
mod secondary;
mod version;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use clock::{Hlc, HlcClock};
pub use codec::{DecodeError, ENTRY_FORMAT, decode_entry, encode_entry};
pub use conflict::{Conflict, ConflictPolicy, RowClock, RowDecision, RowStamp, resolve_row};
pub use entry::{Change, RowChange, RowOp, ShardId, SqlValue, WalEntry};
pub use link::MessageLink;
pub use log::{ApplyOutcome, ApplyTxn, LogError, ReadResult, ShardLog, apply_entry, record_local};
pub use message::{ReplicationMessage, Role, SnapshotChunk, SnapshotItem, SnapshotRow, kind};
pub use primary::{PeerLag, Primary, PrimaryOptions};
pub use secondary::{Secondary, SecondaryOptions, SecondaryStatus};
pub use version::{Causality, NodeId, VersionVector};

/// Errors of replication.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Network(#[from] mycelium_network::NetworkError),

    #[error(transparent)]
    Decode(#[from] DecodeError),

    #[error(transparent)]
    Log(#[from] LogError),

    /// A well-formed message that does not fit the conversation.
    #[error("replication protocol violation: {0}")]
    Protocol(String),

    /// A peer knows a newer primary epoch: this node must stop writing the shard.
    #[error(
        "shard {shard}: this node is primary for epoch {epoch}, but epoch {newer} exists; rejoin as a secondary"
    )]
    Fenced {
        shard: ShardId,
        epoch: u64,
        newer: u64,
    },

    /// A node claiming to be primary with an epoch older than one this node has seen.
    #[error("shard {shard}: refusing a primary of epoch {epoch}; epoch {ours} is current")]
    StalePrimary {
        shard: ShardId,
        epoch: u64,
        ours: u64,
    },

    /// `synchronous_replicas` were not reached in time; the commit is durable locally but not
    /// yet on enough replicas.
    #[error(
        "shard {shard}: entry {sequence} acknowledged by {acked} of {wanted} required replicas after {after:?}"
    )]
    SyncTimeout {
        shard: ShardId,
        sequence: u64,
        wanted: usize,
        acked: usize,
        after: Duration,
    },

    #[error("replication link closed")]
    Closed,
}
