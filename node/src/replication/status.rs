//! Where replication stands on a node, as plain data for `SHOW MYCELIUM REPLICATION`.

/// The replication of every shard the cluster map places on a node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicationStatus {
    pub node: String,
    /// Whether this node replicates at all (PostgreSQL nodes do not yet).
    pub enabled: bool,
    /// The epoch of the cluster map the shards come from (0: none yet).
    pub map_epoch: u64,
    pub shards: Vec<ShardStatus>,
    /// Totals over the shards, since the node started.
    pub entries_shipped: u64,
    pub entries_applied: u64,
    pub conflicts: u64,
    pub snapshots_sent: u64,
    pub snapshots_received: u64,
}

/// This node's copy of one shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardStatus {
    /// The table, or `__default` for the tables without a policy.
    pub table: String,
    pub shard: u32,
    pub role: ShardRole,
    /// The primary epoch this copy follows.
    pub epoch: u64,
    /// What this node holds of each origin's log of the shard: (origin, last sequence).
    pub applied: Vec<(String, u64)>,
    /// The last sequence of the primary's own log held here.
    pub sequence: u64,
    /// On a primary, its secondaries; on a secondary, its primary.
    pub peers: Vec<PeerStatus>,
    /// Entries and encoded bytes in this node's log of the shard.
    pub wal_entries: u64,
    pub wal_bytes: u64,
    /// Since the node started (or this copy took its role).
    pub entries_shipped: u64,
    pub entries_applied: u64,
    pub conflicts: u64,
    pub snapshots_sent: u64,
    pub snapshots_received: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardRole {
    Primary,
    Secondary,
}

impl ShardRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ShardRole::Primary => "primary",
            ShardRole::Secondary => "secondary",
        }
    }
}

/// The other end of a shard's replication, as this node sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    pub node: String,
    /// The last sequence of the primary's log the secondary holds (on a secondary: the
    /// primary's own last sequence, from its latest report).
    pub applied_sequence: u64,
    /// Entries the secondary lacks.
    pub lag_entries: u64,
    /// Age of the oldest commit the secondary lacks (0 when caught up).
    pub lag_seconds: f64,
    pub state: PeerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Linked and caught up.
    Connected,
    /// Linked, entries still to apply.
    CatchingUp,
    /// Linked, a snapshot of the shard in transfer.
    Snapshot,
    /// No replication connection.
    Down,
}

impl PeerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Connected => "connected",
            PeerState::CatchingUp => "catching-up",
            PeerState::Snapshot => "snapshot",
            PeerState::Down => "down",
        }
    }
}
