//! Snapshot items assembled into chunks, for the SQLite and the PostgreSQL shard logs alike.

use mycelium_replication::{Hlc, LogError, ShardId, SnapshotChunk, SnapshotItem, VersionVector};
use tokio::sync::mpsc;

/// The receiver of a snapshot went away (the secondary's link closed).
#[derive(Debug)]
pub(crate) struct SnapshotReceiverGone;

/// Sends snapshot items in chunks of about `per_chunk`, holding one full chunk back so the
/// final one can be marked `last`. Runs on a blocking thread.
pub(crate) struct Chunker {
    shard: ShardId,
    applied: VersionVector,
    hlc: Hlc,
    per_chunk: usize,
    index: u32,
    held: Option<SnapshotChunk>,
    items: Vec<SnapshotItem>,
    out: mpsc::Sender<Result<SnapshotChunk, LogError>>,
}

impl Chunker {
    pub(crate) fn new(
        shard: ShardId,
        applied: VersionVector,
        hlc: Hlc,
        per_chunk: usize,
        out: mpsc::Sender<Result<SnapshotChunk, LogError>>,
    ) -> Chunker {
        Chunker {
            shard,
            applied,
            hlc,
            per_chunk: per_chunk.max(1),
            index: 0,
            held: None,
            items: Vec::new(),
            out,
        }
    }

    fn chunk(&mut self, items: Vec<SnapshotItem>) -> SnapshotChunk {
        let chunk = SnapshotChunk {
            shard: self.shard.clone(),
            index: self.index,
            last: false,
            applied: self.applied.clone(),
            hlc: self.hlc.clone(),
            items,
        };
        self.index += 1;
        chunk
    }

    fn send(&self, chunk: SnapshotChunk) -> Result<(), SnapshotReceiverGone> {
        self.out
            .blocking_send(Ok(chunk))
            .map_err(|_| SnapshotReceiverGone)
    }

    pub(crate) fn push(&mut self, item: SnapshotItem) -> Result<(), SnapshotReceiverGone> {
        self.items.push(item);
        if self.items.len() >= self.per_chunk {
            let items = std::mem::take(&mut self.items);
            let next = self.chunk(items);
            if let Some(held) = self.held.replace(next) {
                self.send(held)?;
            }
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<(), SnapshotReceiverGone> {
        let last = match (self.held.take(), self.items.is_empty()) {
            (Some(held), true) => held,
            (held, _) => {
                if let Some(held) = held {
                    self.send(held)?;
                }
                let items = std::mem::take(&mut self.items);
                self.chunk(items)
            }
        };
        self.send(SnapshotChunk { last: true, ..last })
    }
}
