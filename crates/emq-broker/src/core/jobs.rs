//! A job as the router holds it, and where it is.

use std::fmt;
use std::num::NonZeroU64;
use std::rc::Rc;
use std::time::Instant;

use super::handlers::HandlerId;
use super::PeerId;

/// A job's msgid, as the jobs map, the waiting lists and the timers hold it.
///
/// Sixteen bytes and no allocation for the ids clients draw (lower-case
/// hyphenated uuids: EventMQ's and emq's): a million waiting jobs would
/// otherwise spend 64 bytes each on a shared string. Any other msgid is kept
/// as text. A given msgid always takes the same form, so equality and hashing
/// are those of the text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey(KeyRepr);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum KeyRepr {
    /// A uuid whose second half is not zero (the zero is the other
    /// variant's tag, which keeps the key at 16 bytes). A uuid4's second
    /// half never is (its variant bits), nor is a counter's (emq's msgids).
    Uuid {
        hi: u64,
        lo: NonZeroU64,
    },
    Text(Rc<String>),
}

/// The length of a hyphenated uuid.
const UUID_LEN: usize = 36;

impl JobKey {
    /// `msgid` as a uuid key, if it is kept as one.
    fn uuid(msgid: &str) -> Option<JobKey> {
        let (hi, lo) = parse_uuid(msgid)?;
        Some(JobKey(KeyRepr::Uuid {
            hi,
            lo: NonZeroU64::new(lo)?,
        }))
    }

    /// The msgid as text (on the stack for a uuid).
    pub fn text(&self) -> KeyText {
        match &self.0 {
            KeyRepr::Uuid { hi, lo } => {
                let mut buf = [0u8; UUID_LEN];
                write_uuid(&mut buf, *hi, lo.get());
                KeyText::Uuid(buf)
            }
            KeyRepr::Text(text) => KeyText::Text(text.clone()),
        }
    }

    /// The msgid as an owned string.
    pub fn to_text(&self) -> String {
        self.text().to_owned()
    }
}

/// A [`JobKey`]'s text, borrowed as a `str`.
pub enum KeyText {
    Uuid([u8; UUID_LEN]),
    Text(Rc<String>),
}

impl KeyText {
    /// The text's bytes, without the check a `str` makes of a uuid's.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            KeyText::Uuid(buf) => buf,
            KeyText::Text(text) => text.as_bytes(),
        }
    }
}

impl std::ops::Deref for KeyText {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            KeyText::Uuid(buf) => std::str::from_utf8(buf).expect("hex digits and hyphens"),
            KeyText::Text(text) => text,
        }
    }
}

impl From<&str> for JobKey {
    fn from(msgid: &str) -> JobKey {
        JobKey::uuid(msgid).unwrap_or_else(|| JobKey(KeyRepr::Text(Rc::new(msgid.to_owned()))))
    }
}

impl From<String> for JobKey {
    fn from(msgid: String) -> JobKey {
        JobKey::uuid(&msgid).unwrap_or_else(|| JobKey(KeyRepr::Text(Rc::new(msgid))))
    }
}

impl From<&String> for JobKey {
    fn from(msgid: &String) -> JobKey {
        JobKey::from(msgid.as_str())
    }
}

impl From<&JobKey> for String {
    fn from(key: &JobKey) -> String {
        key.to_text()
    }
}

impl<'a> From<&JobKey> for std::borrow::Cow<'a, str> {
    fn from(key: &JobKey) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Owned(key.to_text())
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl fmt::Debug for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text(), f)
    }
}

impl PartialEq<str> for JobKey {
    fn eq(&self, other: &str) -> bool {
        *self.text() == *other
    }
}

impl PartialEq<&str> for JobKey {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

/// Where the two hex digits of each of a hyphenated uuid's 16 bytes are.
const BYTE_AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

/// A byte's value as a lower-case hex digit; 0xff for any other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// A lower-case hyphenated uuid's two halves; `None` for any other text
/// (upper case included, so that the text is given back exactly as it came).
/// Runs once per submission and per result: a table, not a parser.
fn parse_uuid(text: &str) -> Option<(u64, u64)> {
    let b: &[u8; UUID_LEN] = text.as_bytes().try_into().ok()?;
    if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let mut invalid = 0u8;
    let mut bytes = [0u8; 16];
    for (byte, &at) in bytes.iter_mut().zip(&BYTE_AT) {
        let (high, low) = (HEX_VALUE[usize::from(b[at])], HEX_VALUE[usize::from(b[at + 1])]);
        invalid |= high | low;
        *byte = (high << 4) | (low & 0xf);
    }
    let n = u128::from_be_bytes(bytes);
    (invalid & 0xf0 == 0).then_some(((n >> 64) as u64, n as u64))
}

fn write_uuid(buf: &mut [u8; UUID_LEN], hi: u64, lo: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes();
    for (byte, &at) in bytes.iter().zip(&BYTE_AT) {
        buf[at] = HEX[usize::from(byte >> 4)];
        buf[at + 1] = HEX[usize::from(byte & 0xf)];
    }
    for i in [8, 13, 18, 23] {
        buf[i] = b'-';
    }
}

/// Where a job is. A job is in exactly one of these places until its first
/// REPLY (or its cancellation) removes it from the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// In its queue's waiting list.
    Waiting,
    /// Waiting for a time (a retry's backoff), in the timers, not in a list.
    Delayed { until: Instant },
    /// A graph's node waiting for its parents: in no queue.
    Blocked,
    /// Sent to a jobmanager.
    Running {
        jobmanager: Rc<PeerId>,
        /// When it was sent, in dispatch order.
        dispatch_seq: u64,
        since: Instant,
    },
}

/// Whether and how a job's result goes to its client (one byte, where two
/// flags would make a `Job` a malloc size class larger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultTo {
    /// Not asked for (`reply-requested` absent): kept for lookup.
    Nobody,
    /// Sent alone.
    Client,
    /// Sent in the turn's BATCH for the client, which reads them
    /// (`batch-reply`).
    ClientBatched,
}

impl ResultTo {
    pub(super) fn of(headers: &emq_proto::Headers) -> ResultTo {
        match (headers.reply_requested, headers.batch_reply) {
            (false, _) => ResultTo::Nobody,
            (true, false) => ResultTo::Client,
            (true, true) => ResultTo::ClientBatched,
        }
    }

    /// Whether the client asked for the result.
    pub(super) fn requested(self) -> bool {
        self != ResultTo::Nobody
    }
}

/// A job the router holds. Kept small: a million of them may wait, so peers
/// and queue names are shared, not copied, and the job itself is boxed so
/// that the jobs map's spare capacity costs a pointer, not a job.
#[derive(Debug)]
pub(crate) struct Job {
    pub client: Rc<PeerId>,
    pub queue: Rc<str>,
    /// The headers frame, forwarded to the jobmanager; shared between jobs
    /// with the same headers. A thin pointer (`Rc<String>`, not `Rc<str>`):
    /// the 8 bytes saved make a `Job` 104 bytes, one malloc size class
    /// (16 bytes) below 112.
    pub headers: Rc<String>,
    pub body: Box<[u8]>,
    pub result_to: ResultTo,
    pub guarantee: bool,
    /// The handler it calls, read from its body only when routing needs it.
    pub handler: HandlerId,
    /// Attempts started so far (dispatches).
    pub attempts: u16,
    pub max_attempts: u16,
    /// When it became ready to run (accepted, or its not-before time came):
    /// the waiting and end-to-end times count from here. Microseconds on
    /// the router's clock in 48 bits (8.9 years), split so that they fit
    /// the room the other small fields leave ([`super::observe::Stamp`]).
    pub ready: super::observe::Stamp,
    pub place: Place,
    /// Key, expiry, extra result recipients: most jobs have none.
    pub extra: Option<Box<super::flow::JobExtra>>,
}

impl Job {
    /// Not started yet: waiting in its queue, for a time, or for its parents.
    pub(super) fn is_waiting(&self) -> bool {
        matches!(self.place, Place::Waiting | Place::Delayed { .. } | Place::Blocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A million waiting jobs are a million of these (plus their key, body
    /// and map and list entries): its size is part of the memory budget.
    #[test]
    fn a_job_fits_a_112_byte_malloc_chunk() {
        assert_eq!(std::mem::size_of::<super::Job>(), 104);
    }

    /// The key is in the jobs map and in a waiting list for each waiting
    /// job: 16 bytes and, for a uuid, nothing on the heap.
    #[test]
    fn a_key_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<JobKey>(), 16);
        assert!(matches!(
            JobKey::from("0b5f4c2e-3f9a-4d1c-9e7b-2a6c8d0e1f35").0,
            KeyRepr::Uuid { .. }
        ));
    }

    #[test]
    fn every_msgid_comes_back_as_it_came() {
        for msgid in [
            "0b5f4c2e-3f9a-4d1c-9e7b-2a6c8d0e1f35",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "00000000-0000-0000-0000-000000000001",
            // Not kept as uuids: the zero second half, upper case, misplaced
            // hyphens, wrong lengths, anything else.
            "00000000-0000-0001-0000-000000000000",
            "0B5F4C2E-3F9A-4D1C-9E7B-2A6C8D0E1F35",
            "0b5f4c2e3-f9a-4d1c-9e7b-2a6c8d0e1f35",
            "0b5f4c2e-3f9a-4d1c-9e7b-2a6c8d0e1f3",
            "0b5f4c2e-3f9a-4d1c-9e7b-2a6c8d0e1f35x",
            "0b5f4c2e-3f9a-4d1c-9e7b-2a6c8d0e1f3g",
            "sched:tick:1800000010000",
            "",
            "ünïcode",
        ] {
            let key = JobKey::from(msgid);
            assert_eq!(key.to_text(), msgid);
            assert_eq!(key, JobKey::from(msgid.to_owned()));
            assert_eq!(key, *msgid);
            assert_eq!(format!("{key}"), msgid);
        }
        assert!(matches!(
            JobKey::from("00000000-0000-0001-0000-000000000000").0,
            KeyRepr::Text(_)
        ));
        assert!(matches!(
            JobKey::from("00000000-0000-0000-0000-00006e6f6f70").0,
            KeyRepr::Uuid { .. }
        ));
        assert_ne!(JobKey::from("a"), JobKey::from("b"));
    }

    /// Against the uuid crate's text, over values spread across the range.
    #[test]
    fn uuids_round_trip_through_sixteen_bytes() {
        let mut n: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3211;
        for _ in 0..10_000 {
            n = n
                .wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645)
                .wrapping_add(1);
            let text = emq_proto::uuid_text(n);
            let key = JobKey::from(text.as_str());
            assert_eq!(matches!(key.0, KeyRepr::Uuid { .. }), n as u64 != 0, "{text}");
            assert_eq!(key.to_text(), text);
            assert_eq!(key.text().as_bytes(), text.as_bytes());
        }
    }

    /// Uuids order as their text does, so listings sorted by key read the same.
    #[test]
    fn uuid_keys_order_as_their_text() {
        let later = JobKey::from("10000000-0000-0000-0000-000000000001");
        let earlier = JobKey::from("0fffffff-ffff-ffff-ffff-ffffffffffff");
        assert!(matches!(
            (&earlier.0, &later.0),
            (KeyRepr::Uuid { .. }, KeyRepr::Uuid { .. })
        ));
        assert!(earlier < later);
    }
}
