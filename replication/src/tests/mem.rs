//! An in-memory `ShardLog`: a model of a storage backend for the pure-logic tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};

use crate::{
    ApplyOutcome, ApplyTxn, Change, Conflict, ConflictPolicy, Hlc, HlcClock, LogError, NodeId,
    ReadResult, RowChange, RowClock, RowOp, ShardId, ShardLog, SnapshotChunk, SnapshotItem,
    SnapshotRow, SqlValue, VersionVector, WalEntry, apply_entry, record_local,
};

pub type RowKey = (Arc<str>, Vec<SqlValue>);
pub type ConflictKey = (Arc<str>, Vec<SqlValue>, NodeId, NodeId);

/// A row: its content (`None` once deleted) and its clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemRow {
    pub columns: Arc<[String]>,
    pub values: Option<Vec<SqlValue>>,
    pub clock: RowClock,
}

/// What a backend's tables would hold: data, row clocks, conflicts, schema, position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemData {
    pub rows: HashMap<RowKey, MemRow>,
    pub conflicts: HashMap<ConflictKey, Conflict>,
    pub ddl: Vec<String>,
    pub applied: VersionVector,
    pub log: Vec<WalEntry>,
    /// Per origin, the sequence through which the log was truncated.
    pub truncated: VersionVector,
    pub last_hlc: Option<Hlc>,
}

impl ApplyTxn for MemData {
    type Error = LogError;

    fn applied(&mut self, origin: &NodeId) -> Result<u64, LogError> {
        Ok(self.applied.get(origin))
    }

    fn row_clock(&mut self, table: &str, key: &[SqlValue]) -> Result<Option<RowClock>, LogError> {
        Ok(self
            .rows
            .get(&(Arc::from(table), key.to_vec()))
            .map(|r| r.clock.clone()))
    }

    fn write_row(&mut self, change: &RowChange, clock: &RowClock) -> Result<(), LogError> {
        self.rows.insert(
            (change.table.clone(), change.key.clone()),
            MemRow {
                columns: change.columns.clone(),
                values: change.new.clone(),
                clock: clock.clone(),
            },
        );
        Ok(())
    }

    fn set_row_clock(
        &mut self,
        table: &str,
        key: &[SqlValue],
        clock: &RowClock,
    ) -> Result<(), LogError> {
        let row = self
            .rows
            .entry((Arc::from(table), key.to_vec()))
            .or_insert_with(|| MemRow {
                columns: Arc::from(Vec::new()),
                values: None,
                clock: RowClock::default(),
            });
        row.clock = clock.clone();
        Ok(())
    }

    fn execute_ddl(&mut self, sql: &str) -> Result<(), LogError> {
        self.ddl.push(sql.to_owned());
        Ok(())
    }

    fn conflict(
        &mut self,
        table: &str,
        key: &[SqlValue],
        first: &NodeId,
        second: &NodeId,
    ) -> Result<Option<Conflict>, LogError> {
        Ok(self
            .conflicts
            .get(&(
                Arc::from(table),
                key.to_vec(),
                first.clone(),
                second.clone(),
            ))
            .cloned())
    }

    fn put_conflict(&mut self, c: &Conflict) -> Result<(), LogError> {
        let key = (
            c.table.clone(),
            c.key.clone(),
            c.first.origin.clone(),
            c.second.origin.clone(),
        );
        self.conflicts.insert(key, c.clone());
        Ok(())
    }

    fn log_entry(&mut self, entry: &WalEntry) -> Result<(), LogError> {
        self.applied.observe(&entry.origin, entry.sequence);
        if self.last_hlc.as_ref().is_none_or(|h| h < &entry.hlc) {
            self.last_hlc = Some(entry.hlc.clone());
        }
        self.log.push(entry.clone());
        Ok(())
    }
}

/// One node's copy of one shard.
#[derive(Debug)]
pub struct MemLog {
    pub shard: ShardId,
    pub node: NodeId,
    data: Mutex<MemData>,
    staged: Mutex<Option<MemData>>,
    /// Calls of `read_after`: what shipping costs a backend.
    reads: std::sync::atomic::AtomicUsize,
}

impl MemLog {
    pub fn new(shard: ShardId, node: &str) -> MemLog {
        MemLog {
            shard,
            node: NodeId::new(node),
            data: Mutex::new(MemData::default()),
            staged: Mutex::new(None),
            reads: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn data(&self) -> MemData {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemData> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A local transaction as a backend runs it: the statement writes the rows, then the
    /// entry describing them is recorded in the same (here: locked) transaction.
    pub fn commit_local(&self, clock: &HlcClock, epoch: u64, changes: Vec<Change>) -> WalEntry {
        let mut data = self.lock();
        let entry = WalEntry::next_local(
            self.shard.clone(),
            &data.applied,
            epoch,
            clock.now(),
            format!("txn-{}", data.log.len() + 1),
            changes,
        );
        for change in &entry.changes {
            match change {
                Change::Ddl(sql) => data.ddl.push(sql.clone()),
                Change::Row(row) => {
                    let key = (row.table.clone(), row.key.clone());
                    let clock = data
                        .rows
                        .get(&key)
                        .map(|r| r.clock.clone())
                        .unwrap_or_default();
                    data.rows.insert(
                        key,
                        MemRow {
                            columns: row.columns.clone(),
                            values: row.new.clone(),
                            clock,
                        },
                    );
                }
            }
        }
        let recorded: Result<(), LogError> = record_local(&mut *data, &entry);
        assert!(recorded.is_ok(), "in-memory record_local cannot fail");
        entry
    }
}

#[async_trait]
impl ShardLog for MemLog {
    async fn applied(&self) -> Result<VersionVector, LogError> {
        Ok(self.lock().applied.clone())
    }

    async fn read_after(
        &self,
        after: &VersionVector,
        limit: usize,
    ) -> Result<ReadResult, LogError> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data = self.lock();
        if data
            .truncated
            .iter()
            .any(|(node, seq)| after.get(node) < seq)
        {
            return Ok(ReadResult::Truncated);
        }
        Ok(ReadResult::Entries(
            data.log
                .iter()
                .filter(|e| e.sequence > after.get(&e.origin))
                .take(limit)
                .cloned()
                .collect(),
        ))
    }

    async fn apply(
        &self,
        entry: &WalEntry,
        policy: ConflictPolicy,
    ) -> Result<ApplyOutcome, LogError> {
        let mut data = self.lock();
        // All or nothing, as a backend transaction.
        let mut txn = data.clone();
        let outcome = apply_entry(&mut txn, entry, policy)?;
        *data = txn;
        Ok(outcome)
    }

    async fn truncate(&self, through: &VersionVector) -> Result<(), LogError> {
        let mut data = self.lock();
        let applied = data.applied.clone();
        data.log.retain(|e| e.sequence > through.get(&e.origin));
        for (node, seq) in through.iter() {
            data.truncated.observe(node, seq.min(applied.get(node)));
        }
        Ok(())
    }

    async fn snapshot(
        &self,
        rows_per_chunk: usize,
    ) -> Result<BoxStream<'static, Result<SnapshotChunk, LogError>>, LogError> {
        let data = self.lock().clone();
        let mut items: Vec<SnapshotItem> =
            data.ddl.iter().cloned().map(SnapshotItem::Ddl).collect();
        items.extend(data.rows.iter().map(|((table, key), row)| {
            SnapshotItem::Row(SnapshotRow {
                table: table.clone(),
                columns: row.columns.clone(),
                key: key.clone(),
                values: row.values.clone(),
                clock: row.clock.clone(),
            })
        }));
        items.extend(data.conflicts.values().cloned().map(SnapshotItem::Conflict));
        let hlc = data
            .last_hlc
            .clone()
            .unwrap_or_else(|| Hlc::new(0, 0, self.node.clone()));
        let pieces: Vec<Vec<SnapshotItem>> = if items.is_empty() {
            vec![Vec::new()]
        } else {
            items
                .chunks(rows_per_chunk.max(1))
                .map(<[_]>::to_vec)
                .collect()
        };
        let count = pieces.len();
        let shard = self.shard.clone();
        let chunks = pieces.into_iter().enumerate().map(move |(i, items)| {
            Ok(SnapshotChunk {
                shard: shard.clone(),
                index: u32::try_from(i).unwrap_or(u32::MAX),
                last: i + 1 == count,
                applied: data.applied.clone(),
                hlc: hlc.clone(),
                items,
            })
        });
        Ok(stream::iter(chunks.collect::<Vec<_>>()).boxed())
    }

    async fn load_snapshot_chunk(&self, chunk: SnapshotChunk) -> Result<(), LogError> {
        let mut staged = self.staged.lock().unwrap_or_else(PoisonError::into_inner);
        if chunk.index == 0 {
            *staged = Some(MemData::default());
        }
        let Some(data) = staged.as_mut() else {
            return Err(LogError::new("snapshot chunk without chunk 0"));
        };
        for item in chunk.items {
            match item {
                SnapshotItem::Ddl(sql) => data.ddl.push(sql),
                SnapshotItem::Row(row) => {
                    data.rows.insert(
                        (row.table, row.key),
                        MemRow {
                            columns: row.columns,
                            values: row.values,
                            clock: row.clock,
                        },
                    );
                }
                SnapshotItem::Conflict(c) => {
                    data.put_conflict(&c)?;
                }
            }
        }
        if chunk.last {
            let Some(mut data) = staged.take() else {
                return Err(LogError::new("snapshot chunk without chunk 0"));
            };
            data.applied = chunk.applied.clone();
            data.truncated = chunk.applied;
            data.last_hlc = Some(chunk.hlc);
            *self.lock() = data;
        }
        Ok(())
    }
}

/// Table `t (k integer primary key, v text)`.
pub fn columns() -> Arc<[String]> {
    Arc::from(vec!["k".to_owned(), "v".to_owned()])
}

/// A row change of table `t`: `Some(v)` writes `(k, v)`, `None` deletes key `k`.
pub fn put(k: i64, v: Option<&str>) -> Change {
    let image = |v: &str| vec![SqlValue::Integer(k), SqlValue::Text(v.to_owned())];
    Change::Row(RowChange {
        table: Arc::from("t"),
        columns: columns(),
        key: vec![SqlValue::Integer(k)],
        op: if v.is_some() {
            RowOp::Update
        } else {
            RowOp::Delete
        },
        old: None,
        new: v.map(image),
    })
}
