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
/// Journaled as a MessagePack array ([`rows::record`] writes what serde
/// writes for it as an array: a third smaller than with field names, and
/// the journal's cost goes with its bytes), so **fields are only ever
/// appended**, each with `#[serde(default)]`, and none is skipped when
/// empty; rows written with names (before) read as well.
/// `positional_rows_keep_their_layout` pins it.
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

/// A guaranteed job's journal rows, written by hand: the very bytes serde
/// (`rmp_serde::encode::write`) writes for a [`JobRecord`] and a [`JobBody`]
/// (`hand_written_rows_are_the_bytes_serde_writes` holds them to it), without
/// serde's machinery, which for the record alone took 10% of the router's
/// instructions on guaranteed jobs, and without copying a body into a
/// `JobBody` first. The structs are destructured whole: a field added to
/// one fails to compile here until it is written too.
pub mod rows {
    use super::{JobRecord, LogEntry, StoredOutcome};

    /// Room for a typical record without growing.
    const RECORD_CAPACITY: usize = 512;

    /// A record's row.
    pub fn record(record: &JobRecord) -> Vec<u8> {
        let JobRecord {
            id,
            queue,
            client,
            accepted_seq,
            attempts,
            max_attempts,
            status,
            log,
            result,
            finished_unix_ms,
            not_before_unix_ms,
            flow,
        } = record;
        let mut out = Vec::with_capacity(RECORD_CAPACITY);
        let w = &mut out;
        // The twelve fields above, in their order.
        array_len(w, 12);
        opt_str(w, id.as_deref());
        str(w, queue);
        // A `Vec<u8>` without serde_bytes: an array of integers (a client's
        // identity is 5 to 36 bytes: byte by byte, without a call each).
        array_len(w, client.len());
        w.reserve(client.len() * 2);
        for &b in client {
            if b < 128 {
                w.push(b);
            } else {
                w.extend_from_slice(&[0xcc, b]);
            }
        }
        uint(w, *accepted_seq);
        uint(w, u64::from(*attempts));
        uint(w, u64::from(*max_attempts));
        str(w, status.as_str());
        array_len(w, log.len());
        for LogEntry {
            unix_ms,
            status,
            message,
        } in log
        {
            array_len(w, 3);
            sint(w, *unix_ms);
            str(w, status.as_str());
            str(w, message);
        }
        match result {
            Some(StoredOutcome {
                outcome,
                content_type,
                body,
            }) => {
                array_len(w, 3);
                str(w, outcome.as_str());
                str(w, content_type.as_str());
                bin(w, body);
            }
            None => w.push(NIL),
        }
        opt_sint(w, *finished_unix_ms);
        opt_sint(w, *not_before_unix_ms);
        opt_str(w, flow.as_deref());
        out
    }

    /// A body's row: its headers frame and its body.
    pub fn body(headers: &str, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(headers.len() + body.len() + 11);
        array_len(&mut out, 2);
        str(&mut out, headers);
        bin(&mut out, body);
        out
    }

    // MessagePack, with the markers rmp (under rmp_serde) picks: the
    // smallest that holds the value.
    const NIL: u8 = 0xc0;

    /// A length or an unsigned value behind one of three markers (8, 16 or
    /// 32 bits; the callers handle the fix forms).
    #[inline]
    fn sized(w: &mut Vec<u8>, n: usize, markers: [u8; 3]) {
        if let Ok(n) = u8::try_from(n) {
            w.extend_from_slice(&[markers[0], n]);
        } else if let Ok(n) = u16::try_from(n) {
            w.push(markers[1]);
            w.extend_from_slice(&n.to_be_bytes());
        } else {
            w.push(markers[2]);
            w.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }

    #[inline]
    fn array_len(w: &mut Vec<u8>, n: usize) {
        match n {
            0..16 => w.push(0x90 | n as u8),
            16..65_536 => {
                w.push(0xdc);
                w.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                w.push(0xdd);
                w.extend_from_slice(&(n as u32).to_be_bytes());
            }
        }
    }

    #[inline]
    fn str(w: &mut Vec<u8>, s: &str) {
        match s.len() {
            n @ 0..32 => w.push(0xa0 | n as u8),
            // str 8 (0xd9), 16, 32.
            n => sized(w, n, [0xd9, 0xda, 0xdb]),
        }
        w.extend_from_slice(s.as_bytes());
    }

    #[inline]
    fn opt_str(w: &mut Vec<u8>, s: Option<&str>) {
        match s {
            Some(s) => str(w, s),
            None => w.push(NIL),
        }
    }

    #[inline]
    fn opt_sint(w: &mut Vec<u8>, v: Option<i64>) {
        match v {
            Some(v) => sint(w, v),
            None => w.push(NIL),
        }
    }

    #[inline]
    fn bin(w: &mut Vec<u8>, b: &[u8]) {
        sized(w, b.len(), [0xc4, 0xc5, 0xc6]);
        w.extend_from_slice(b);
    }

    #[inline]
    fn uint(w: &mut Vec<u8>, v: u64) {
        match v {
            0..128 => w.push(v as u8),
            128..256 => w.extend_from_slice(&[0xcc, v as u8]),
            256..65_536 => {
                w.push(0xcd);
                w.extend_from_slice(&(v as u16).to_be_bytes());
            }
            65_536..0x1_0000_0000 => {
                w.push(0xce);
                w.extend_from_slice(&(v as u32).to_be_bytes());
            }
            _ => {
                w.push(0xcf);
                w.extend_from_slice(&v.to_be_bytes());
            }
        }
    }

    /// As rmp's `write_sint`: negative values in the signed forms,
    /// others as unsigned.
    #[inline]
    fn sint(w: &mut Vec<u8>, v: i64) {
        match v {
            0.. => uint(w, v as u64),
            -32..0 => w.push(v as i8 as u8),
            -128..-32 => w.extend_from_slice(&[0xd0, v as i8 as u8]),
            -32_768..-128 => {
                w.push(0xd1);
                w.extend_from_slice(&(v as i16).to_be_bytes());
            }
            -2_147_483_648..-32_768 => {
                w.push(0xd2);
                w.extend_from_slice(&(v as i32).to_be_bytes());
            }
            _ => {
                w.push(0xd3);
                w.extend_from_slice(&v.to_be_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde writes for `value` as an array: the layout the rows keep.
    fn positional<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        rmp_serde::encode::write(&mut out, value).expect("encodes");
        out
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

    /// The rows written by hand are byte for byte what serde writes, over
    /// every state, outcome and encoding, and over the sizes where
    /// MessagePack changes its markers (fix, 8, 16 and 32 bits).
    #[test]
    fn hand_written_rows_are_the_bytes_serde_writes() {
        use strum::VariantArray;
        let states = [
            JobState::Accepted,
            JobState::Scheduled,
            JobState::Blocked,
            JobState::Queued,
            JobState::Running,
            JobState::Finished,
            JobState::Failed,
            JobState::Dead,
            JobState::Cancelled,
            JobState::Superseded,
            JobState::Expired,
        ];
        let text = |n: usize| "é".repeat(n / 2) + &"x".repeat(n % 2);
        let ints: [i64; 9] = [0, 1, 127, 128, 255, 65_536, -1, -33, i64::MIN];
        let sizes = [0, 1, 15, 16, 31, 32, 255, 256, 65_535, 65_536];
        for (i, &size) in sizes.iter().enumerate() {
            let record = JobRecord {
                id: (i % 2 == 0).then(|| text(size)),
                queue: text(size / 3),
                client: (0..size.min(300)).map(|b| b as u8).collect(),
                accepted_seq: [0, 1, 200, 70_000, u64::MAX][i % 5],
                attempts: [0, 3, 300, u32::MAX][i % 4],
                max_attempts: (i * 1000) as u32,
                status: states[i % states.len()],
                log: (0..size.min(20))
                    .map(|n| LogEntry {
                        unix_ms: ints[n % ints.len()],
                        status: states[n % states.len()],
                        message: text(n * 7),
                    })
                    .collect(),
                result: (i % 3 != 0).then(|| StoredOutcome {
                    outcome: Outcome::VARIANTS[i % Outcome::VARIANTS.len()],
                    content_type: [ContentType::Json, ContentType::MsgPack][i % 2],
                    body: vec![0x80; size],
                }),
                finished_unix_ms: (i % 2 == 1).then_some(ints[i % ints.len()]),
                not_before_unix_ms: (i % 3 == 1).then_some(i64::MAX),
                flow: (i % 4 == 0).then(|| text(size / 2)),
            };
            assert_eq!(rows::record(&record), positional(&record), "record of size {size}");
            let body = JobBody {
                headers: text(size),
                body: vec![7; size],
            };
            assert_eq!(
                rows::body(&body.headers, &body.body),
                positional(&body),
                "body of size {size}"
            );
        }
        for outcome in Outcome::VARIANTS {
            let record = JobRecord {
                result: Some(StoredOutcome {
                    outcome: *outcome,
                    content_type: ContentType::Json,
                    body: vec![],
                }),
                ..JobRecord {
                    id: None,
                    queue: String::new(),
                    client: vec![],
                    accepted_seq: 0,
                    attempts: 0,
                    max_attempts: 0,
                    status: JobState::Finished,
                    log: vec![],
                    result: None,
                    finished_unix_ms: None,
                    not_before_unix_ms: None,
                    flow: None,
                }
            };
            assert_eq!(rows::record(&record), positional(&record), "{outcome:?}");
        }
    }

    #[test]
    fn row_keys_are_sixteen_hex_digits_that_sort_as_numbers() {
        for seq in [0, 1, 0xabc, u64::MAX / 3, u64::MAX] {
            assert_eq!(row_key(seq), format!("#{seq:016x}"));
        }
        assert!(row_key(9) < row_key(10) && row_key(0xff) < row_key(0x100));
    }
}
