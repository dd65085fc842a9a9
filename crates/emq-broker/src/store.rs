//! Durable storage behind a small trait, so the backend can change: redb
//! here (an embedded, pure-Rust, crash-safe B-tree, one redb table per
//! [`Table`]), the default for one router; Postgres in [`postgres`], shared
//! by an active router and its standbys. One transaction per batch of
//! operations: that is the group commit that keeps durability from costing
//! an fsync per job.

pub mod postgres;

use std::path::Path;
use std::time::Instant;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use strum::IntoEnumIterator;

use crate::journal::{Row, StoreOp, Table};

/// The journal failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// It cannot be used: the router stops rather than promise what it
    /// cannot keep.
    #[error("job store: {0}")]
    Failed(String),
    /// This router may no longer act on a shared journal: another took
    /// over, or its lease ran out before it could renew it. It steps down.
    #[error("stepping down: {0}")]
    Deposed(String),
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(e.to_string())
}

/// Where the router's durable state is journaled. One `commit` per batch of
/// the router's loop: the group commit.
pub trait JobStore: Send {
    /// Every stored row, in no particular order.
    fn load(&mut self) -> Result<Vec<Row>, StoreError>;
    /// Apply all operations atomically and durably.
    fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError>;
    /// Until when this router may act (send anything) without renewing its
    /// hold on a shared journal; `None`: a journal of its own, always.
    fn tenure(&self) -> Option<Instant> {
        None
    }
    /// Renew the hold on a shared journal if it is due (`Deposed` once it
    /// is lost); nothing for a journal of its own.
    fn keep(&mut self, _now: Instant) -> Result<(), StoreError> {
        Ok(())
    }
    /// When [`JobStore::keep`] next has something to do.
    fn next_keep(&self) -> Option<Instant> {
        None
    }
    /// A clean stop: let a standby take over at once.
    fn release(&mut self) {}
    /// Who shares the journal, for the status view.
    fn peers(&self) -> Option<emq_proto::views::HaStatus> {
        None
    }
}

/// The embedded journal: a redb file.
pub struct RedbStore {
    db: Database,
}

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

impl RedbStore {
    /// Open (or create) the journal file. The errors say what to do.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let db = Database::create(path).map_err(|e| {
            let shown = path.display();
            StoreError::Failed(match e {
                redb::DatabaseError::DatabaseAlreadyOpen => format!(
                    "journal {shown} is in use by another process (another emq-router?): \
                     give each router its own --journal, or stop the other one"
                ),
                redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
                    let hint = match io.kind() {
                        std::io::ErrorKind::NotFound => ": create its directory, or pass another --journal",
                        std::io::ErrorKind::PermissionDenied => ": make it writable, or pass another --journal",
                        _ => "",
                    };
                    format!("cannot open journal {shown}: {io}{hint}")
                }
                other => format!("cannot open journal {shown}: {other}"),
            })
        })?;
        let txn = db.begin_write().map_err(err)?;
        for table in Table::iter() {
            txn.open_table(definition(table)).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        Ok(RedbStore { db })
    }
}

impl JobStore for RedbStore {
    fn load(&mut self) -> Result<Vec<Row>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let mut out = Vec::new();
        for table in Table::iter() {
            let t = txn.open_table(definition(table)).map_err(err)?;
            for row in t.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                out.push(Row {
                    table,
                    key: k.value().to_string(),
                    value: v.value().to_vec(),
                });
            }
        }
        Ok(out)
    }

    fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(err)?;
        {
            // Only the tables this batch touches are opened: opening and
            // closing one costs as much as a few writes.
            let mut tables: Vec<Option<redb::Table<'_, &str, &[u8]>>> = Table::iter().map(|_| None).collect();
            for op in crate::journal::final_ops(ops) {
                let (table, _) = op.row();
                let slot = &mut tables[table as usize];
                let open = match slot {
                    Some(t) => t,
                    None => slot.insert(txn.open_table(definition(table)).map_err(err)?),
                };
                match op {
                    StoreOp::Put { key, value, .. } => {
                        open.insert(key.as_str(), value.as_slice()).map_err(err)?;
                    }
                    StoreOp::Delete { key, .. } => {
                        open.remove(key.as_str()).map_err(err)?;
                    }
                }
            }
        }
        txn.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::JobRecord;
    use emq_proto::JobState as Status;

    fn rows(store: &mut RedbStore) -> Vec<(Table, String, Vec<u8>)> {
        let mut rows: Vec<_> = store
            .load()
            .unwrap()
            .into_iter()
            .map(|r| (r.table, r.key, r.value))
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn commits_survive_reopening_and_each_table_keeps_its_own_keys() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("journal.redb");
        let put = |table, key: &str, value: &[u8]| StoreOp::Put {
            table,
            key: key.into(),
            value: value.to_vec(),
        };
        {
            let mut s = RedbStore::open(&path).unwrap();
            s.commit(&[
                put(Table::Records, "a", b"r1"),
                put(Table::Bodies, "a", b"b1"),
                put(Table::Records, "b", b"r1"),
                put(Table::Schedules, "a", b"s1"),
            ])
            .unwrap();
            s.commit(&[
                put(Table::Records, "a", b"r2"),
                StoreOp::delete(Table::Records, "b"),
                StoreOp::delete(Table::Bodies, "never-stored"),
            ])
            .unwrap();
        }
        let mut s = RedbStore::open(&path).unwrap();
        assert_eq!(
            rows(&mut s),
            vec![
                (Table::Records, "a".into(), b"r2".to_vec()),
                (Table::Bodies, "a".into(), b"b1".to_vec()),
                (Table::Schedules, "a".into(), b"s1".to_vec()),
            ]
        );
    }

    /// Within one commit only the last operation on a row is applied: a
    /// row put and deleted is absent (whether or not it was stored
    /// before), and one deleted then put again holds the new value.
    #[test]
    fn the_last_operation_on_a_row_in_a_commit_decides_it() {
        let scratch = tempfile::tempdir().unwrap();
        let mut s = RedbStore::open(&scratch.path().join("journal.redb")).unwrap();
        let put = |key: &str, value: &[u8]| StoreOp::Put {
            table: Table::Records,
            key: key.into(),
            value: value.to_vec(),
        };
        s.commit(&[put("old", b"1")]).unwrap();
        let ops = [
            put("new", b"1"),
            put("old", b"2"),
            StoreOp::delete(Table::Records, "new"),
            StoreOp::delete(Table::Records, "old"),
            StoreOp::delete(Table::Records, "again"),
            put("again", b"3"),
            put("kept", b"4"),
        ];
        let applied: Vec<&StoreOp> = crate::journal::final_ops(&ops).collect();
        assert_eq!(applied, [&ops[2], &ops[3], &ops[5], &ops[6]]);
        s.commit(&ops).unwrap();
        assert_eq!(
            rows(&mut s),
            vec![
                (Table::Records, "again".into(), b"3".to_vec()),
                (Table::Records, "kept".into(), b"4".to_vec()),
            ]
        );
    }

    /// Journals written before job states and outcomes were typed spelled
    /// them `"Finished"` and `"timeout"`: they still load.
    #[test]
    fn records_of_older_journals_load() {
        #[derive(serde::Serialize)]
        struct OldOutcome {
            outcome: &'static str,
            content_type: &'static str,
            #[serde(with = "serde_bytes_compat")]
            body: Vec<u8>,
        }
        mod serde_bytes_compat {
            pub(crate) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(v)
            }
        }
        #[derive(serde::Serialize)]
        struct OldEntry {
            unix_ms: u64,
            status: &'static str,
            message: &'static str,
        }
        #[derive(serde::Serialize)]
        struct OldRecord {
            queue: &'static str,
            client: Vec<u8>,
            accepted_seq: u64,
            attempts: u32,
            max_attempts: u32,
            status: &'static str,
            log: Vec<OldEntry>,
            result: Option<OldOutcome>,
            finished_unix_ms: Option<u64>,
        }
        let old = OldRecord {
            queue: "q",
            client: vec![1],
            accepted_seq: 7,
            attempts: 2,
            max_attempts: 4,
            status: "Dead",
            log: vec![OldEntry {
                unix_ms: 1_700_000_000_000,
                status: "Queued",
                message: "queued in q",
            }],
            result: Some(OldOutcome {
                outcome: "timeout",
                content_type: "msgpack",
                body: vec![0x80],
            }),
            finished_unix_ms: Some(1_700_000_000_500),
        };
        let bytes = rmp_serde::to_vec_named(&old).unwrap();
        let record: JobRecord = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(record.status, Status::Dead);
        assert_eq!(record.log[0].status, Status::Queued);
        let result = record.result.unwrap();
        assert_eq!(result.outcome, emq_proto::Outcome::TimedOut);
        assert_eq!(result.content_type, emq_proto::ContentType::MsgPack);
        assert_eq!(record.finished_unix_ms, Some(1_700_000_000_500));
    }
}
