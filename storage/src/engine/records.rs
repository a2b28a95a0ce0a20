//! Garbage collection of `__mycelium_txn_records`, the table of two kinds of rows:
//!
//! - a decider's records: `committed` (written with the deciding commit) and `aborted`
//!   (written when a participant asked about a transaction without a decision: presumed
//!   abort). They answer participants in doubt, and an `aborted` one makes a late decision
//!   fail. `txn_records` lists old ones, `delete` removes those the caller checked no
//!   participant still holds prepared, `forget` removes one committed record every
//!   participant finished.
//! - a participant's `applied` markers, written with COMMIT PREPARED so that a crash before
//!   the redo row is deleted cannot apply the transaction twice. Once the redo row is gone
//!   the marker answers nothing; `delete` removes those.
//!
//! All of it runs on a worker's connection, in short write transactions of its own.

use std::collections::HashSet;

use mycelium_protocol::TxnRecord;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

/// Decider records decided before `before_ms`, oldest first.
pub(super) fn list(
    conn: &Connection,
    before_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<TxnRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT gid, state, participants, decided_at_ms FROM __mycelium_txn_records \
         WHERE state IN ('committed', 'aborted') AND decided_at_ms < ?1 \
         ORDER BY decided_at_ms LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![before_ms, limit], |row| {
        let participants: String = row.get(2)?;
        Ok(TxnRecord {
            gid: row.get(0)?,
            committed: row.get::<_, String>(1)? == "committed",
            participants: participants
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            decided_at_ms: row.get(3)?,
        })
    })?;
    rows.collect()
}

/// Deletes `records` and the `applied` markers of transactions without a redo row (`held`:
/// the gids the redo store holds, read before this runs; a marker is written only while its
/// redo row exists, so one whose gid was not there has lost its redo row for good). Takes
/// the write lock only when there is something to delete.
pub(super) fn delete(
    conn: &Connection,
    records: &[TxnRecord],
    held: &HashSet<String>,
) -> rusqlite::Result<u64> {
    let finished: Vec<String> = conn
        .prepare_cached("SELECT gid FROM __mycelium_txn_records WHERE state = 'applied'")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .filter(|gid| !held.contains(gid))
        .collect();
    if records.is_empty() && finished.is_empty() {
        return Ok(0);
    }
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let mut deleted = 0;
    {
        let mut record =
            tx.prepare_cached("DELETE FROM __mycelium_txn_records WHERE gid = ?1 AND state = ?2")?;
        for r in records {
            let state = if r.committed { "committed" } else { "aborted" };
            deleted += record.execute(params![r.gid, state])? as u64;
        }
        let mut marker = tx.prepare_cached(
            "DELETE FROM __mycelium_txn_records WHERE gid = ?1 AND state = 'applied'",
        )?;
        for gid in &finished {
            marker.execute([gid])?;
        }
    }
    tx.commit()?;
    Ok(deleted)
}

/// Deletes the committed record of `gid`.
pub(super) fn forget(conn: &Connection, gid: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "DELETE FROM __mycelium_txn_records WHERE gid = ?1 AND state = 'committed'",
        [gid],
    )? > 0)
}
