//! What the backend asks the node while it captures writes (the SQLite commit hook, the
//! PostgreSQL sealer): which shard a row belongs to, under which primary epoch, and which
//! shards' logs carry DDL. Answered from the current cluster map, read at every call, so a
//! map change takes effect at the next commit (the next seal on PostgreSQL).
//!
//! The map reaches a node a moment after the DDL that set a policy (the proxy pushes it once
//! the statement committed), so a write right after `CREATE TABLE ... WITH (mycelium.*)` may
//! find no policy for its table in the map. The policy is already in the node's own
//! `__mycelium_policies` then (written in the same transaction as the DDL): a table the map
//! has no policy for is looked up there, once per table and map epoch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use mycelium_replication::{ShardId, SqlValue};
use mycelium_router::{PolicyDefaults, TablePlacement, TablePolicy, apply_options};
use mycelium_storage::{PostgresBackend, ReplicationIdentity};
use tokio::sync::watch;

use super::Shared;
use crate::shard_function::key_value;
use crate::topology::Topology;

/// The primary epoch `topology` gives `shard` (the first one without a map).
pub(crate) fn epoch_of(topology: Option<&Topology>, shard: &ShardId) -> u64 {
    topology.map_or(mycelium_router::FIRST_EPOCH, |t| {
        t.primary_epoch(&shard.table, shard.shard)
    })
}

/// The one shard of the tables without a policy: they share one placement, so one log.
pub(crate) fn default_shard() -> ShardId {
    ShardId::new(TablePlacement::DEFAULT_GROUP, 0)
}

/// What was found for each table, as of one map epoch.
type PolicyCache = (u64, HashMap<String, Option<Arc<TablePolicy>>>);

/// Where the node keeps the policies the proxy stored on it.
enum PolicyStore {
    /// `__mycelium_policies` in the SQLite data file, read on a connection of its own.
    Sqlite(PathBuf),
    /// `mycelium.__mycelium_policies` in the node's database. Read from the sealer's
    /// blocking thread, which may wait for the runtime.
    Postgres(Arc<PostgresBackend>),
}

/// Policies stored on the node for tables the current map has none for, by table; cleared
/// when the map changes.
pub(crate) struct StoredPolicies {
    store: PolicyStore,
    cache: Mutex<PolicyCache>,
}

impl StoredPolicies {
    pub fn in_sqlite(file: &Path) -> StoredPolicies {
        StoredPolicies::new(PolicyStore::Sqlite(file.to_owned()))
    }

    pub fn in_postgres(backend: Arc<PostgresBackend>) -> StoredPolicies {
        StoredPolicies::new(PolicyStore::Postgres(backend))
    }

    fn new(store: PolicyStore) -> StoredPolicies {
        StoredPolicies {
            store,
            cache: Mutex::new((0, HashMap::new())),
        }
    }

    /// The policy `table` has in the node's `__mycelium_policies`, as of map `epoch`.
    fn get(&self, epoch: u64, table: &str) -> Option<Arc<TablePolicy>> {
        {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.0 != epoch {
                *cache = (epoch, HashMap::new());
            }
            if let Some(found) = cache.1.get(table) {
                return found.clone();
            }
        }
        let found = self.read(table).map(Arc::new);
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .insert(table.to_owned(), found.clone());
        found
    }

    fn read(&self, table: &str) -> Option<TablePolicy> {
        let options = match &self.store {
            PolicyStore::Sqlite(file) => {
                let conn = rusqlite::Connection::open_with_flags(
                    file,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .ok()?;
                conn.query_row(
                    "SELECT options FROM __mycelium_policies WHERE table_name = ?1",
                    [table],
                    |row| row.get::<_, String>(0),
                )
                .ok()?
            }
            // The sealer runs on a blocking thread of the runtime (never on a worker), where
            // waiting for a query is allowed.
            PolicyStore::Postgres(backend) => {
                let runtime = tokio::runtime::Handle::try_current().ok()?;
                match runtime.block_on(backend.stored_policy(table)) {
                    Ok(options) => options?,
                    Err(e) => {
                        tracing::warn!(table, error = %e.message, "cannot read the table's stored policy");
                        return None;
                    }
                }
            }
        };
        let options: Vec<(String, String)> = options
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        // Defaults decide copies, not shards: the shard of a row needs none of them.
        apply_options(
            TablePolicy::default_for(table, &PolicyDefaults::default()),
            &options,
        )
        .ok()
    }
}

/// The shard of a row of `table` (`columns` names the values of `row`): for a table with a
/// policy, by its shard-key values, read as `__mycelium_shard` reads them (so a row is
/// captured under the shard the proxy's scoped statements see it in); the default group's
/// shard for a table without one; none for the node's own `__mycelium_*` tables. Without a
/// map yet every table counts as policy-less. A row lacking a shard-key column of its policy
/// is not attributed (not replicated).
pub(crate) fn shard_of(
    topology: Option<&Topology>,
    stored: &StoredPolicies,
    table: &str,
    columns: &[String],
    row: &[SqlValue],
) -> Option<ShardId> {
    if table.starts_with("__mycelium") {
        return None;
    }
    let stored_policy;
    let policy = match topology.and_then(|t| t.policy(table)) {
        Some(policy) => policy,
        None => {
            let epoch = topology.map_or(0, |t| t.epoch());
            stored_policy = stored.get(epoch, table);
            match &stored_policy {
                Some(policy) => policy,
                None => return Some(default_shard()),
            }
        }
    };
    let mut key = Vec::with_capacity(policy.shard_keys.len());
    for column in &policy.shard_keys {
        let at = columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))?;
        key.push(key_value(row.get(at)?));
    }
    Some(ShardId::new(table, policy.shard_of(&key)))
}

/// The shards `node` is primary for in `topology`.
pub(crate) fn primary_shards(topology: &Topology, node: &str) -> Vec<ShardId> {
    topology
        .held_by(node)
        .into_iter()
        .filter(|held| held.primary)
        .map(|held| ShardId::new(&held.table, held.shard))
        .collect()
}

/// The backend's view of the node, reading `map` at every call.
pub(crate) fn identity(
    shared: &Arc<Shared>,
    map: watch::Receiver<Option<Arc<Topology>>>,
    stored: StoredPolicies,
) -> ReplicationIdentity {
    let for_rows = map.clone();
    let for_epochs = map.clone();
    let for_ddl = map;
    let node = shared.node.as_str().to_owned();
    let on_commit = shared.clone();
    ReplicationIdentity {
        clock: shared.clock.clone(),
        epoch: Arc::new(move |shard| epoch_of(for_epochs.borrow().as_deref(), shard)),
        shard_of: Arc::new(move |table, columns, row| {
            let topology = for_rows.borrow().clone();
            shard_of(topology.as_deref(), &stored, table, columns, row)
        }),
        ddl_shards: Arc::new(move || {
            for_ddl
                .borrow()
                .as_deref()
                .map(|t| primary_shards(t, &node))
                .unwrap_or_default()
        }),
        on_commit: Some(Arc::new(move |entry| on_commit.committed(entry))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_tables_have_no_shard_and_others_default_without_a_map() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stored = StoredPolicies::in_sqlite(&dir.path().join("none.sqlite"));
        assert_eq!(
            shard_of(None, &stored, "__mycelium_policies", &[], &[]),
            None
        );
        assert_eq!(
            shard_of(None, &stored, "t", &[], &[]),
            Some(default_shard())
        );
    }

    #[test]
    fn a_policy_stored_on_the_node_counts_before_the_map_brings_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("n.sqlite");
        let db = rusqlite::Connection::open(&file).expect("open");
        db.execute_batch(
            "CREATE TABLE __mycelium_policies (table_name text PRIMARY KEY, options text);
             INSERT INTO __mycelium_policies VALUES ('t', 'shard_keys=id\nshards=4\n');",
        )
        .expect("policy");
        let stored = StoredPolicies::in_sqlite(&file);
        let columns = ["id".to_owned(), "v".to_owned()];
        let shards: std::collections::BTreeSet<u32> = (0..40)
            .filter_map(|id| {
                shard_of(
                    None,
                    &stored,
                    "t",
                    &columns,
                    &[SqlValue::Integer(id), SqlValue::Null],
                )
            })
            .map(|shard| {
                assert_eq!(shard.table, "t");
                shard.shard
            })
            .collect();
        assert_eq!(
            shards.len(),
            4,
            "rows spread over the stored policy's shards"
        );
    }
}
