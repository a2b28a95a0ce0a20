//! Messages between the replicas of a shard, and their network frames.

use std::sync::Arc;

use bytes::Bytes;
use mycelium_network::Frame;

use crate::clock::Hlc;
use crate::codec::{self, DecodeError};
use crate::conflict::{Conflict, RowClock};
use crate::entry::{ShardId, SqlValue, WalEntry};
use crate::version::VersionVector;

/// Frame kinds of replication messages: `0x40..=0x4f` (the node protocol uses `0x10..=0x2f`).
pub mod kind {
    pub const WAL_ENTRY: u8 = 0x40;
    pub const REQUEST_ENTRIES: u8 = 0x41;
    pub const RESPONSE_ENTRIES: u8 = 0x42;
    pub const SNAPSHOT: u8 = 0x43;
    pub const ACK: u8 = 0x44;
    pub const STATUS: u8 = 0x45;
    pub const HEARTBEAT: u8 = 0x46;

    /// Whether a frame of this kind belongs to replication, for a server that dispatches
    /// connections by their first frame.
    pub fn is_replication(kind: u8) -> bool {
        (0x40..=0x4f).contains(&kind)
    }
}

/// A node's replication role for one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Primary,
    Secondary,
}

/// One item of a shard snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotItem {
    /// Schema, replayed before any row (all DDL items come first).
    Ddl(String),
    Row(SnapshotRow),
    Conflict(Conflict),
}

/// A row with its replication metadata; `values: None` is a tombstone (a deleted row whose
/// clock must survive so an older concurrent write cannot bring it back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    pub table: Arc<str>,
    pub columns: Arc<[String]>,
    pub key: Vec<SqlValue>,
    pub values: Option<Vec<SqlValue>>,
    pub clock: RowClock,
}

/// One piece of a snapshot of a shard. Chunk 0 tells the receiver to start over; the chunk
/// with `last` set tells it to commit the whole snapshot and take `applied` as its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub shard: ShardId,
    pub index: u32,
    pub last: bool,
    /// What the snapshot holds of each origin (the same in every chunk of one snapshot).
    pub applied: VersionVector,
    /// The sender's clock when it took the snapshot: the receiver's clock takes it in, so its
    /// later writes rank above everything in the snapshot.
    pub hlc: Hlc,
    pub items: Vec<SnapshotItem>,
}

/// The replication protocol (the seed's `ReplicationMessage`), carried one per frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// An entry pushed by the primary as it commits (or relayed from another origin).
    WalEntry(WalEntry),
    /// Send me every entry not covered by `after` (my applied vector).
    RequestEntries {
        shard: ShardId,
        after: VersionVector,
    },
    ResponseEntries {
        shard: ShardId,
        entries: Vec<WalEntry>,
    },
    Snapshot(SnapshotChunk),
    /// Everything in `applied` is durably applied on the sender.
    Ack {
        shard: ShardId,
        applied: VersionVector,
    },
    /// The first message in each direction: who I am for this shard and where I stand.
    Status {
        shard: ShardId,
        role: Role,
        epoch: u64,
        applied: VersionVector,
    },
    /// Periodic position report, for lag in entries and seconds.
    Heartbeat {
        applied: Vec<(ShardId, VersionVector)>,
        hlc: Hlc,
    },
}

impl ReplicationMessage {
    pub fn kind(&self) -> u8 {
        match self {
            ReplicationMessage::WalEntry(_) => kind::WAL_ENTRY,
            ReplicationMessage::RequestEntries { .. } => kind::REQUEST_ENTRIES,
            ReplicationMessage::ResponseEntries { .. } => kind::RESPONSE_ENTRIES,
            ReplicationMessage::Snapshot(_) => kind::SNAPSHOT,
            ReplicationMessage::Ack { .. } => kind::ACK,
            ReplicationMessage::Status { .. } => kind::STATUS,
            ReplicationMessage::Heartbeat { .. } => kind::HEARTBEAT,
        }
    }

    /// The frame payload (the kind travels in the frame header).
    pub fn encode_payload(&self) -> Bytes {
        Bytes::from(codec::encode_message(self))
    }

    pub fn decode_payload(kind: u8, payload: &[u8]) -> Result<ReplicationMessage, DecodeError> {
        codec::decode_message(kind, payload)
    }

    pub fn to_frame(&self) -> Frame {
        Frame::new(self.kind(), self.encode_payload())
    }

    pub fn from_frame(frame: &Frame) -> Result<ReplicationMessage, DecodeError> {
        ReplicationMessage::decode_payload(frame.kind, &frame.payload)
    }
}
