//! What the router remembers about guaranteed jobs, as in the ATP task
//! tracker: a status, a log of transitions, attempts, and the result, kept
//! until a retention passes. Pure data; [`crate::store`] persists it. The
//! states are `emq_proto::JobState`, which reads the names older journals
//! wrote too.

use serde::{Deserialize, Serialize};

use emq_proto::{ContentType, JobState, Outcome, ResultFrames};

/// One transition of a job. Part of [`JobRecord`]'s positional rows:
/// fields only ever appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When, in ms since the Unix epoch.
    pub unix_ms: i64,
    /// The state entered.
    pub status: JobState,
    /// What happened.
    pub message: String,
}

/// The persisted part of a job that changes: everything but its body.
///
/// Journaled as a MessagePack array (`StoreOp::put_positional`: a third
/// smaller than with field names, and the journal's cost goes with its
/// bytes), so **fields are only ever appended**, each with
/// `#[serde(default)]`, and none is skipped when empty; rows written with
/// names (before) read as well. `positional_rows_keep_their_layout` pins it.
///
/// Its row (and its body's) is keyed by [`JobRecord::row_key`], the order in
/// which the router accepted it, not by its msgid: clients' msgids are often
/// random (uuid4), and random keys scattered each commit's inserts over the
/// whole tree (redb rewrote a page per job: 14 KB written per job, against
/// 1.6 KB in arrival order). Journals written before keep msgid keys (no
/// `id`) and are rewritten in arrival order when a router loads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's msgid; absent in rows keyed by msgid (older journals).
    #[serde(default)]
    pub id: Option<String>,
    /// Its queue.
    pub queue: String,
    /// The identity of the client that submitted it.
    pub client: Vec<u8>,
    /// Order of acceptance, so that a restart re-queues in the same order.
    pub accepted_seq: u64,
    /// Attempts started.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Its state now.
    pub status: JobState,
    /// Every transition, oldest first.
    pub log: Vec<LogEntry>,
    /// Its result, once finished.
    pub result: Option<StoredOutcome>,
    /// When it finished (the retention counts from then).
    pub finished_unix_ms: Option<i64>,
    /// When it may start, for a delayed job (ms since the Unix epoch).
    #[serde(default)]
    pub not_before_unix_ms: Option<i64>,
    /// Its key and expiry as headers (`unique:K,expires-at:TIME`), so that a
    /// restart rebuilds its lock and its expiry.
    #[serde(default)]
    pub flow: Option<String>,
}

/// The journal key of the job accepted `seq`th.
pub fn row_key(seq: u64) -> String {
    // Two or three of these per guaranteed job: by hand, not `format!`
    // (which cost 5% of the router's instructions on guaranteed jobs).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut key = String::with_capacity(17);
    key.push('#');
    for shift in (0..16).rev() {
        key.push(HEX[(seq >> (shift * 4)) as usize & 0xf] as char);
    }
    key
}

/// The persisted part of a job that never changes. Journaled as an array,
/// as [`JobRecord`] is: fields only ever appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobBody {
    /// The headers frame as forwarded to jobmanagers.
    pub headers: String,
    /// The body as the client sent it.
    #[serde(with = "serde_bytes_compat")]
    pub body: Vec<u8>,
}

/// A finished job's result as journaled. Part of [`JobRecord`]'s positional
/// rows: fields only ever appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredOutcome {
    /// How it ended.
    pub outcome: Outcome,
    /// The body's encoding.
    pub content_type: ContentType,
    /// The REPLY body.
    #[serde(with = "serde_bytes_compat")]
    pub body: Vec<u8>,
}

impl StoredOutcome {
    /// The journaled form of a result.
    pub fn from_frames(r: &ResultFrames) -> StoredOutcome {
        StoredOutcome {
            outcome: r.outcome,
            content_type: r.content_type,
            body: r.body.clone(),
        }
    }

    /// The result again, for job `of`.
    pub fn to_frames(&self, of: &str) -> ResultFrames {
        ResultFrames {
            of: of.to_string(),
            outcome: self.outcome,
            content_type: self.content_type,
            body: self.body.clone(),
        }
    }
}

/// Bytes as a MessagePack bin, not an array of integers.
pub(crate) mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

impl JobRecord {
    /// The key of its rows in the journal: its acceptance order, in hex of
    /// fixed width so that keys sort as numbers.
    pub fn row_key(&self) -> String {
        row_key(self.accepted_seq)
    }

    /// Enter `status`, logging why.
    pub fn push_log(&mut self, unix_ms: i64, status: JobState, message: impl Into<String>) {
        self.status = status;
        self.log.push(LogEntry {
            unix_ms,
            status,
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{StoreOp, Table};

    fn positional<T: Serialize>(value: &T) -> Vec<u8> {
        match StoreOp::put_positional(Table::Records, "k", value) {
            StoreOp::Put { value, .. } => value,
            StoreOp::Delete { .. } => unreachable!(),
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The journal's rows are positional: this pins their layout, so that a
    /// field moved or inserted (not appended) fails here, not in a journal.
    #[test]
    fn positional_rows_keep_their_layout() {
        let record = JobRecord {
            id: Some("j".into()),
            queue: "q".into(),
            client: vec![1],
            accepted_seq: 7,
            attempts: 1,
            max_attempts: 4,
            status: JobState::Finished,
            log: vec![LogEntry {
                unix_ms: 5,
                status: JobState::Queued,
                message: "m".into(),
            }],
            result: Some(StoredOutcome {
                outcome: Outcome::Ok,
                content_type: ContentType::Json,
                body: vec![0x80],
            }),
            finished_unix_ms: Some(6),
            not_before_unix_ms: None,
            flow: Some("f".into()),
        };
        let bytes = positional(&record);
        assert_eq!(
            hex(&bytes),
            "9ca16aa1719101070104a846494e4953484544919305a6515545554544a16d93a26f6ba46a736f6ec4018006c0a166"
        );
        assert_eq!(rmp_serde::from_slice::<JobRecord>(&bytes).unwrap(), record);
        // Rows written with field names (before) read the same.
        let named = rmp_serde::to_vec_named(&record).unwrap();
        assert_eq!(rmp_serde::from_slice::<JobRecord>(&named).unwrap(), record);
        // Empty fields are written (nil), never skipped: later ones keep their place.
        let bare = JobRecord {
            id: None,
            result: None,
            finished_unix_ms: None,
            flow: None,
            not_before_unix_ms: Some(9),
            ..record
        };
        assert_eq!(rmp_serde::from_slice::<JobRecord>(&positional(&bare)).unwrap(), bare);
        let body = JobBody {
            headers: "h".into(),
            body: vec![1, 2],
        };
        let bytes = positional(&body);
        assert_eq!(hex(&bytes), "92a168c4020102");
        assert_eq!(rmp_serde::from_slice::<JobBody>(&bytes).unwrap(), body);
    }

    #[test]
    fn row_keys_are_sixteen_hex_digits_that_sort_as_numbers() {
        for seq in [0, 1, 0xabc, u64::MAX / 3, u64::MAX] {
            assert_eq!(row_key(seq), format!("#{seq:016x}"));
        }
        assert!(row_key(9) < row_key(10) && row_key(0xff) < row_key(0x100));
    }
}
