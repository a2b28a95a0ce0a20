//! Statement descriptions shared across sessions, so a driver that prepares the same text on
//! every connection (or every execution, as `pgbench -M extended` does) asks a node once.

use std::sync::Arc;

use dashmap::DashMap;
use mycelium_protocol::StatementDescription;

type Key = (Arc<str>, Vec<u32>);

pub struct DescriptionCache {
    entries: DashMap<Key, StatementDescription>,
    capacity: usize,
}

impl DescriptionCache {
    pub fn new(capacity: usize) -> DescriptionCache {
        DescriptionCache {
            entries: DashMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn get(&self, sql: &Arc<str>, param_types: &[u32]) -> Option<StatementDescription> {
        self.entries
            .get(&(sql.clone(), param_types.to_vec()))
            .map(|d| d.clone())
    }

    pub fn insert(&self, sql: Arc<str>, param_types: Vec<u32>, description: StatementDescription) {
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries.insert((sql, param_types), description);
    }

    /// Forgets everything: after DDL a cached column type may be wrong.
    pub fn clear(&self) {
        self.entries.clear();
    }
}
