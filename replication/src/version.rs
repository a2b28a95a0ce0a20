//! Node identities and version vectors.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A cluster member, by the name its certificate vouches for (`network::PeerInfo::name`).
///
/// Ordered by name: the order breaks HLC ties, so it must be the same on every node.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

impl NodeId {
    pub fn new(name: &str) -> NodeId {
        NodeId(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NodeId {
    fn from(name: &str) -> NodeId {
        NodeId::new(name)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// How two version vectors relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causality {
    Equal,
    /// `self` happened before `other`: every component is `<=`, at least one `<`.
    Before,
    /// `self` happened after `other`.
    After,
    /// Neither saw everything the other saw.
    Concurrent,
}

/// Per origin node, the highest sequence seen from it (entries of one origin are applied in
/// sequence order, so "seen sequence n" means "seen 1..=n"). An absent origin is sequence 0;
/// zero components are never stored, so equal vectors compare equal structurally.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionVector {
    entries: BTreeMap<NodeId, u64>,
}

impl VersionVector {
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    /// The sequence seen from `node` (0 when none).
    pub fn get(&self, node: &NodeId) -> u64 {
        self.entries.get(node).copied().unwrap_or(0)
    }

    /// Sets the component of `node`, whatever it was.
    pub fn set(&mut self, node: NodeId, sequence: u64) {
        if sequence == 0 {
            self.entries.remove(&node);
        } else {
            self.entries.insert(node, sequence);
        }
    }

    /// Raises the component of `node` to `sequence` if it is lower.
    pub fn observe(&mut self, node: &NodeId, sequence: u64) {
        if sequence > self.get(node) {
            self.entries.insert(node.clone(), sequence);
        }
    }

    /// Adds one to the component of `node` and returns the new value.
    pub fn increment(&mut self, node: &NodeId) -> u64 {
        let next = self.get(node) + 1;
        self.entries.insert(node.clone(), next);
        next
    }

    /// Component-wise maximum.
    pub fn merge(&mut self, other: &VersionVector) {
        for (node, &sequence) in &other.entries {
            self.observe(node, sequence);
        }
    }

    /// Whether `self` has seen everything `other` has (`>=` in every component).
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other
            .entries
            .iter()
            .all(|(node, &seq)| self.get(node) >= seq)
    }

    pub fn compare(&self, other: &VersionVector) -> Causality {
        let mut less = false;
        let mut greater = false;
        for node in self.entries.keys().chain(other.entries.keys()) {
            match self.get(node).cmp(&other.get(node)) {
                Ordering::Less => less = true,
                Ordering::Greater => greater = true,
                Ordering::Equal => {}
            }
        }
        match (less, greater) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Before,
            (false, true) => Causality::After,
            (true, true) => Causality::Concurrent,
        }
    }

    /// Components in node order; never yields a zero sequence.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        self.entries.iter().map(|(node, &seq)| (node, seq))
    }

    /// Number of non-zero components.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum over origins of how far `self` is behind `other`: the entries it lacks.
    pub fn missing_from(&self, other: &VersionVector) -> u64 {
        other
            .entries
            .iter()
            .map(|(node, &seq)| seq.saturating_sub(self.get(node)))
            .sum()
    }
}

impl fmt::Debug for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries.iter()).finish()
    }
}

impl FromIterator<(NodeId, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (NodeId, u64)>>(iter: I) -> VersionVector {
        let mut vv = VersionVector::new();
        for (node, seq) in iter {
            vv.observe(&node, seq);
        }
        vv
    }
}
