//! Hybrid logical clocks: wall-clock milliseconds plus a logical counter, so timestamps follow
//! causality (a write that saw another has a larger timestamp) while staying close to real time.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::version::NodeId;

/// A remote timestamp this far ahead of our wall clock is logged: it drags every later
/// timestamp of this node forward with it.
const SUSPICIOUS_LEAD_MS: u64 = 60_000;

/// A hybrid logical clock timestamp. Ordered by physical time, then the logical counter, then
/// the node id, so two timestamps from different nodes are never equal.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (the largest wall-clock reading seen).
    pub physical_ms: u64,
    /// Counts events within one `physical_ms`.
    pub logical: u32,
    /// The node that issued the timestamp: the final tie-break.
    pub node: NodeId,
}

impl Hlc {
    pub fn new(physical_ms: u64, logical: u32, node: NodeId) -> Hlc {
        Hlc {
            physical_ms,
            logical,
            node,
        }
    }
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.physical_ms, self.logical, self.node)
    }
}

type WallClock = Box<dyn Fn() -> u64 + Send + Sync>;

/// The clock of one node. Every timestamp it issues is larger than every timestamp it issued
/// or received before, even when the wall clock goes back.
pub struct HlcClock {
    node: NodeId,
    wall: WallClock,
    /// `(physical_ms, logical)` of the last timestamp issued or received.
    last: Mutex<(u64, u32)>,
}

impl fmt::Debug for HlcClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HlcClock")
            .field("node", &self.node)
            .field("last", &self.last())
            .finish_non_exhaustive()
    }
}

fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The successor of `(physical, logical)` at the same physical time; a logical counter that
/// would overflow moves to the next millisecond instead, which keeps the order strict.
fn tick(physical: u64, logical: u32) -> (u64, u32) {
    match logical.checked_add(1) {
        Some(next) => (physical, next),
        None => (physical.saturating_add(1), 0),
    }
}

impl HlcClock {
    /// A clock reading the system time.
    pub fn new(node: NodeId) -> HlcClock {
        HlcClock::with_wall_clock(node, system_ms)
    }

    /// A clock reading milliseconds from `wall` (tests drive time by hand with it).
    pub fn with_wall_clock(node: NodeId, wall: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        HlcClock {
            node,
            wall: Box::new(wall),
            last: Mutex::new((0, 0)),
        }
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// A timestamp for a local event (a commit), larger than any before.
    pub fn now(&self) -> Hlc {
        let wall = (self.wall)();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        *last = if wall > last.0 {
            (wall, 0)
        } else {
            tick(last.0, last.1)
        };
        Hlc::new(last.0, last.1, self.node.clone())
    }

    /// Takes in a timestamp received from another node (an applied entry) and returns a local
    /// timestamp larger than both it and everything this clock issued before.
    pub fn update(&self, remote: &Hlc) -> Hlc {
        let wall = (self.wall)();
        if remote.physical_ms > wall.saturating_add(SUSPICIOUS_LEAD_MS) {
            tracing::warn!(
                remote = ?remote,
                wall_ms = wall,
                "remote hybrid clock is far ahead of our wall clock; check NTP on both nodes"
            );
        }
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let physical = wall.max(last.0).max(remote.physical_ms);
        *last = if physical == last.0 && physical == remote.physical_ms {
            tick(physical, last.1.max(remote.logical))
        } else if physical == last.0 {
            tick(physical, last.1)
        } else if physical == remote.physical_ms {
            tick(physical, remote.logical)
        } else {
            (physical, 0)
        };
        Hlc::new(last.0, last.1, self.node.clone())
    }

    /// The last timestamp issued or received, without advancing the clock.
    pub fn last(&self) -> Hlc {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        Hlc::new(last.0, last.1, self.node.clone())
    }
}
