//! Durable storage for guaranteed jobs behind a small trait, so the backend
//! can change; the one here is redb (an embedded, pure-Rust, crash-safe
//! B-tree). One transaction per batch of operations: that is the group commit
//! that keeps durability from costing an fsync per job.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::tracking::{JobBody, JobRecord, StoreOp};

/// Records: msgid -> MessagePack `JobRecord`.
const RECORDS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("records");
/// Bodies: msgid -> MessagePack `JobBody`, written once.
const BODIES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("bodies");

/// The journal failed: the router stops rather than promise what it
/// cannot keep.
#[derive(Debug, thiserror::Error)]
#[error("job store: {0}")]
pub struct StoreError(String);

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// A stored job as loaded at start.
pub struct Loaded {
    /// The job's id.
    pub id: String,
    /// Its record.
    pub record: JobRecord,
    /// Its body (absent for jobs whose body was no longer needed).
    pub body: Option<JobBody>,
}

/// Where guaranteed jobs are journaled. One `commit` per batch of the
/// router's loop: the group commit.
pub trait JobStore {
    /// Everything stored, in no particular order.
    fn load(&self) -> Result<Vec<Loaded>, StoreError>;
    /// Apply all operations atomically and durably.
    fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError>;
}

/// The embedded journal: a redb file.
pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    /// Open (or create) the journal file. The errors say what to do.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let db = Database::create(path).map_err(|e| {
            let shown = path.display();
            StoreError(match e {
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
        txn.open_table(RECORDS).map_err(err)?;
        txn.open_table(BODIES).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(RedbStore { db })
    }
}

impl JobStore for RedbStore {
    fn load(&self) -> Result<Vec<Loaded>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let records = txn.open_table(RECORDS).map_err(err)?;
        let bodies = txn.open_table(BODIES).map_err(err)?;
        let mut out = Vec::new();
        for row in records.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let id = k.value().to_string();
            let record: JobRecord = rmp_serde::from_slice(v.value()).map_err(err)?;
            let body = match bodies.get(id.as_str()).map_err(err)? {
                Some(b) => Some(rmp_serde::from_slice::<JobBody>(b.value()).map_err(err)?),
                None => None,
            };
            out.push(Loaded { id, record, body });
        }
        Ok(out)
    }

    fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut records = txn.open_table(RECORDS).map_err(err)?;
            let mut bodies = txn.open_table(BODIES).map_err(err)?;
            for op in ops {
                match op {
                    StoreOp::Put { id, record, body } => {
                        records.insert(id.as_str(), record.as_slice()).map_err(err)?;
                        if let Some(b) = body {
                            bodies.insert(id.as_str(), b.as_slice()).map_err(err)?;
                        }
                    }
                    StoreOp::Delete { id } => {
                        records.remove(id.as_str()).map_err(err)?;
                        bodies.remove(id.as_str()).map_err(err)?;
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
    use emq_proto::JobState as Status;

    fn record(status: Status) -> JobRecord {
        JobRecord {
            queue: "q".into(),
            client: vec![0, 1],
            accepted_seq: 1,
            attempts: 0,
            max_attempts: 3,
            status,
            log: vec![],
            result: None,
            finished_unix_ms: None,
        }
    }

    #[test]
    fn commits_survive_reopening_and_deletes_remove_both_tables() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("journal.redb");
        {
            let mut s = RedbStore::open(&dir).unwrap();
            let body = JobBody {
                headers: "guarantee".into(),
                body: vec![0xff, 0x00],
            };
            s.commit(&[
                StoreOp::put("a", &record(Status::Queued), Some(&body)),
                StoreOp::put("b", &record(Status::Queued), Some(&body)),
            ])
            .unwrap();
            s.commit(&[
                StoreOp::put("a", &record(Status::Finished), None),
                StoreOp::Delete { id: "b".into() },
            ])
            .unwrap();
        }
        let s = RedbStore::open(&dir).unwrap();
        let loaded = s.load().unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].id, "a");
        assert_eq!(loaded[0].record.status, Status::Finished);
        assert_eq!(
            loaded[0].body.as_ref().unwrap().body,
            vec![0xff, 0x00],
            "body kept from the first put"
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
