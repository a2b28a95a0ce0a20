use std::sync::Arc;

use dashmap::DashMap;

use crate::{Plan, RouterError, classify};

/// Plans by statement text, shared by every session of a proxy.
///
/// Bounded: when full, an arbitrary half is dropped. Statement texts in a real workload are few
/// (drivers send the same prepared texts again and again); a workload of unique literal texts
/// gains nothing from caching and only needs the bound.
pub struct PlanCache {
    plans: DashMap<Arc<str>, Arc<Plan>>,
    capacity: usize,
}

impl PlanCache {
    pub fn new(capacity: usize) -> PlanCache {
        PlanCache {
            plans: DashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The plan of one statement, from the cache or planned now. Returns whether it was a hit.
    pub fn plan(&self, sql: &str) -> (Result<Arc<Plan>, RouterError>, bool) {
        if let Some(plan) = self.plans.get(sql) {
            return (Ok(plan.clone()), true);
        }
        let plan = match classify(sql) {
            Ok(plan) => Arc::new(plan),
            Err(error) => return (Err(error), false),
        };
        if self.plans.len() >= self.capacity {
            self.evict_half();
        }
        self.plans.insert(Arc::from(sql), plan.clone());
        (Ok(plan), false)
    }

    pub fn len(&self) -> usize {
        self.plans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }

    fn evict_half(&self) {
        let victims: Vec<Arc<str>> = self
            .plans
            .iter()
            .take(self.capacity / 2 + 1)
            .map(|entry| entry.key().clone())
            .collect();
        for key in victims {
            self.plans.remove(&key);
        }
    }
}
