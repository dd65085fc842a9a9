//! The journal's shape: named tables of `key -> MessagePack value`. The core
//! modules that own durable state (guaranteed jobs, schedules) write
//! [`StoreOp`]s and read their [`Row`]s back at start; a
//! [`crate::store::JobStore`] commits them without knowing what they mean.
//! One commit per batch of the router's loop: whatever a batch changed in
//! several tables (a schedule's fire and the job it fired) lands together or
//! not at all.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A table of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, strum::EnumIter)]
pub enum Table {
    /// Guaranteed jobs' records (`tracking::JobRecord`), by job id.
    Records,
    /// Guaranteed jobs' bodies (`tracking::JobBody`), by job id, written once.
    Bodies,
    /// Schedules: what each is (`core::schedules::ScheduleDef`), by name.
    Schedules,
    /// Schedules: where each is (`core::schedules::ScheduleState`), by name;
    /// rewritten at each fire.
    ScheduleState,
    /// Queues' flow control (`core::flow::QueueControl`), by queue name.
    Queues,
    /// Workflows (`core::graphs::GraphDef`), by graph id.
    Graphs,
}

impl Table {
    /// Its name in the store.
    pub fn name(self) -> &'static str {
        match self {
            Table::Records => "records",
            Table::Bodies => "bodies",
            Table::Schedules => "schedules",
            Table::ScheduleState => "schedule_state",
            Table::Queues => "queues",
            Table::Graphs => "graphs",
        }
    }
}

/// A change for the store, applied (in one transaction per batch) before any
/// message produced with it is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    /// Create or replace `key` in `table`.
    Put {
        /// Where.
        table: Table,
        /// Its key.
        key: String,
        /// MessagePack, encoded when the change is made (cheaper than
        /// keeping a copy of the value until the commit).
        value: Vec<u8>,
    },
    /// Remove `key` from `table` (absent keys are fine).
    Delete {
        /// Where.
        table: Table,
        /// Its key.
        key: String,
    },
}

impl StoreOp {
    /// Store `value` under `key`.
    pub fn put<T: Serialize>(table: Table, key: impl Into<String>, value: &T) -> StoreOp {
        StoreOp::Put {
            table,
            key: key.into(),
            value: encode(value),
        }
    }

    /// Store a row already encoded: a guaranteed job's rows, MessagePack
    /// arrays without field names written by `tracking::rows` (a record is a
    /// third smaller than with names, and redb's cost goes with the bytes).
    pub fn put_row(table: Table, key: impl Into<String>, value: Vec<u8>) -> StoreOp {
        StoreOp::Put {
            table,
            key: key.into(),
            value,
        }
    }

    /// Remove `key`.
    pub fn delete(table: Table, key: impl Into<String>) -> StoreOp {
        StoreOp::Delete { table, key: key.into() }
    }

    /// The row it changes.
    pub fn row(&self) -> (Table, &str) {
        let (StoreOp::Put { table, key, .. } | StoreOp::Delete { table, key }) = self;
        (*table, key)
    }
}

/// The operations of a batch that decide what it leaves, in the batch's
/// order: the last one on each row (one transaction applies the batch, so
/// an earlier write to a row is overwritten unseen). Under load a short
/// guaranteed job's record is put and deleted in the same commit: only the
/// delete is written.
pub fn final_ops(ops: &[StoreOp]) -> impl Iterator<Item = &StoreOp> {
    let mut last: crate::HashMap<(Table, &str), usize> = crate::HashMap::default();
    last.reserve(ops.len());
    for (i, op) in ops.iter().enumerate() {
        last.insert(op.row(), i);
    }
    ops.iter()
        .enumerate()
        .filter(move |(i, op)| last.get(&op.row()) == Some(i))
        .map(|(_, op)| op)
}

/// One stored value, as loaded at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Its table.
    pub table: Table,
    /// Its key.
    pub key: String,
    /// Its MessagePack value.
    pub value: Vec<u8>,
}

impl Row {
    /// A row holding `value` (what a store would load after `StoreOp::put`).
    pub fn new<T: Serialize>(table: Table, key: &str, value: &T) -> Row {
        Row {
            table,
            key: key.to_string(),
            value: encode(value),
        }
    }

    /// The value, decoded.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CorruptRow> {
        rmp_serde::from_slice(&self.value).map_err(|e| CorruptRow {
            table: self.table.name(),
            key: self.key.clone(),
            reason: e.to_string(),
        })
    }
}

/// A stored value that does not decode: the router refuses to start rather
/// than silently drop what it promised.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("journal table {table}, key {key:?}: {reason}")]
pub struct CorruptRow {
    /// The table.
    pub table: &'static str,
    /// The key.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

/// MessagePack of plain serde-derived data, which cannot fail to encode.
/// Sized for a job's record at the start: growing from empty reallocated
/// it four or five times (7% of the router's time on guaranteed jobs).
fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENCODED_CAPACITY);
    match rmp_serde::encode::write_named(&mut out, v) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

/// What a journaled value's buffer starts with.
const ENCODED_CAPACITY: usize = 512;
