//! BATCH (emq extension): several messages in one ZeroMQ message, so that a
//! busy link carries one message per burst instead of one per job.
//!
//! ```text
//! ["", "eMQP/1.0", "BATCH", MSGID, PACKED]
//! PACKED = entry*
//! entry  = count:u16be (length:u32be bytes){count}
//! ```
//!
//! An entry is one message from its COMMAND frame on (`[COMMAND, MSGID,
//! payload...]`); its delimiter and version are the BATCH's. Entries are
//! handled in order, as if each had arrived alone. A BATCH holds no BATCH.
//! Who may send one to whom is negotiated (`protocol.md`, section 4).

use crate::message::{utf8, Frame};
use crate::{Command, DecodeError, Envelope, Message, Reply, ResultFrames, MAX_FRAMES, VERSION};

/// A sender closes a batch once its entries reach this many bytes and starts
/// another: a batch stays far below any receiver's frame limit.
pub const BATCH_BYTES: usize = 1 << 20;

/// A message with a frame larger than this goes alone, not in a batch
/// (copying it into one would cost more than the frames it saves).
pub const BATCH_ENTRY_FRAME_MAX: usize = 64 << 10;

/// Frames an entry may have: a message's limit, less the delimiter and the
/// version it shares with its batch.
const ENTRY_MAX_FRAMES: usize = MAX_FRAMES - 2;

/// Whether a message of these frames (from COMMAND on) may go in a batch.
pub fn batchable(frames: &[&[u8]]) -> bool {
    frames.len() <= ENTRY_MAX_FRAMES && frames.iter().all(|f| f.len() <= BATCH_ENTRY_FRAME_MAX)
}

/// Append one entry (a message's frames from COMMAND on) to a batch's
/// packed frame. The caller checked [`batchable`].
pub fn push_entry(packed: &mut Vec<u8>, frames: &[&[u8]]) {
    let size: usize = frames.iter().map(|f| 4 + f.len()).sum();
    packed.reserve(2 + size);
    packed.extend_from_slice(&(frames.len() as u16).to_be_bytes());
    for f in frames {
        packed.extend_from_slice(&(f.len() as u32).to_be_bytes());
        packed.extend_from_slice(f);
    }
}

/// Append a REQUEST entry: what the router forwards to a jobmanager.
pub fn push_request(packed: &mut Vec<u8>, msgid: &str, queue: &str, headers: &str, body: &[u8]) {
    push_entry(
        packed,
        &[
            Command::Request.as_str().as_bytes(),
            msgid.as_bytes(),
            queue.as_bytes(),
            headers.as_bytes(),
            body,
        ],
    );
}

/// Append a REPLY entry (a result): what the router sends a client.
pub fn push_reply(packed: &mut Vec<u8>, msgid: &str, result: &ResultFrames) {
    push_entry(
        packed,
        &[
            Command::Reply.as_str().as_bytes(),
            msgid.as_bytes(),
            &result.body,
            result.of.as_bytes(),
            result.outcome.as_str().as_bytes(),
            result.content_type.as_str().as_bytes(),
        ],
    );
}

/// The results in a BATCH of REPLYs (`frames` as sent), in order: what
/// the router keeps of a batch it could not deliver.
pub fn unbatched_results(frames: &[Vec<u8>]) -> Vec<ResultFrames> {
    let Some(Ok(mut entries)) = batch_entries(frames) else {
        return Vec::new();
    };
    let (mut entry, mut results) = (Vec::new(), Vec::new());
    while let Some(read) = entries.next_message(&mut entry, usize::MAX) {
        if let Ok(Envelope {
            message: Message::Reply(Reply::Result(r)),
            ..
        }) = read
        {
            results.push(r);
        }
    }
    results
}

/// The frames of a BATCH with id `msgid` and entries `packed`.
pub fn batch_frames(msgid: &str, packed: Vec<u8>) -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        VERSION.as_bytes().to_vec(),
        Command::Batch.as_str().as_bytes().to_vec(),
        msgid.as_bytes().to_vec(),
        packed,
    ]
}

/// Messages packed into one BATCH, built by a sender.
#[derive(Debug, Default)]
pub struct BatchWriter {
    packed: Vec<u8>,
    entries: usize,
}

impl BatchWriter {
    /// An empty batch.
    pub fn new() -> BatchWriter {
        BatchWriter::default()
    }

    /// Add a message given as its frames (as [`crate::Message::into_frames`]
    /// makes them: delimiter and version first, which the batch shares).
    /// Returns the frames back if the message must go alone
    /// ([`batchable`]).
    pub fn push(&mut self, frames: Vec<Vec<u8>>) -> Result<(), Vec<Vec<u8>>> {
        let mut from_command: [&[u8]; ENTRY_MAX_FRAMES] = [&[]; ENTRY_MAX_FRAMES];
        let n = frames.len().saturating_sub(2);
        if frames.len() < 4 || n > ENTRY_MAX_FRAMES {
            return Err(frames);
        }
        for (slot, f) in from_command.iter_mut().zip(&frames[2..]) {
            *slot = f;
        }
        if !batchable(&from_command[..n]) {
            return Err(frames);
        }
        push_entry(&mut self.packed, &from_command[..n]);
        self.entries += 1;
        Ok(())
    }

    /// Add a REQUEST from its parts (what a client submits most), without
    /// building its frames first. Returns false if it must go alone
    /// ([`batchable`]): nothing was added.
    pub fn push_request(&mut self, msgid: &str, queue: &str, headers: &str, body: &[u8]) -> bool {
        if !batchable(&[msgid.as_bytes(), queue.as_bytes(), headers.as_bytes(), body]) {
            return false;
        }
        push_request(&mut self.packed, msgid, queue, headers, body);
        self.entries += 1;
        true
    }

    /// Add `message` with id `msgid`; a result (what a jobmanager sends
    /// most) goes in from its parts, without building its frames first.
    /// Returns the message's frames if it must go alone ([`batchable`]).
    pub fn push_message(&mut self, msgid: &str, message: Message) -> Result<(), Vec<Vec<u8>>> {
        match message {
            Message::Reply(Reply::Result(r))
                if r.body.len() <= BATCH_ENTRY_FRAME_MAX && r.of.len() <= BATCH_ENTRY_FRAME_MAX =>
            {
                push_reply(&mut self.packed, msgid, &r);
                self.entries += 1;
                Ok(())
            }
            other => self.push(other.into_frames(msgid)),
        }
    }

    /// Entries so far.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether it has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Whether it reached [`BATCH_BYTES`] and should be sent.
    pub fn is_full(&self) -> bool {
        self.packed.len() >= BATCH_BYTES
    }

    /// The BATCH's frames, and the writer emptied for the next one, with
    /// room for as many bytes as this one had (batches of a steady load
    /// are alike: the next fills without growing step by step).
    pub fn take_frames(&mut self, msgid: &str) -> Vec<Vec<u8>> {
        self.entries = 0;
        let room = Vec::with_capacity(self.packed.len());
        batch_frames(msgid, std::mem::replace(&mut self.packed, room))
    }
}

/// If `frames` is a BATCH, its entries; `None` for any other message
/// (decode it with [`crate::decode`]).
pub fn batch_entries(frames: &[impl Frame]) -> Option<Result<BatchEntries<'_>, DecodeError>> {
    let command = frames.get(2)?;
    if command.bytes() != Command::Batch.as_str().as_bytes() {
        return None;
    }
    Some(read_envelope(frames))
}

fn read_envelope(frames: &[impl Frame]) -> Result<BatchEntries<'_>, DecodeError> {
    if !frames[0].bytes().is_empty() {
        return Err(DecodeError::MissingDelimiter);
    }
    let version = utf8(frames, 1)?;
    if version != VERSION {
        return Err(DecodeError::VersionMismatch {
            ours: VERSION,
            theirs: version.chars().take(64).collect(),
        });
    }
    if frames.len() != 5 {
        return Err(DecodeError::bad("BATCH", "a BATCH has exactly 5 frames"));
    }
    Ok(BatchEntries {
        msgid: utf8(frames, 3)?,
        rest: frames[4].bytes(),
    })
}

/// The entries of a received BATCH, read one at a time without copies.
#[derive(Debug)]
pub struct BatchEntries<'a> {
    /// The BATCH's own msgid.
    pub msgid: &'a str,
    rest: &'a [u8],
}

impl<'a> BatchEntries<'a> {
    /// The next entry, as the full frames of a message (the delimiter and
    /// version included, so that [`crate::decode`] reads it), put in
    /// `frames`; `None` after the last. A malformed entry is an error, and
    /// ends the batch (what follows it cannot be found).
    pub fn next_into(&mut self, frames: &mut Vec<&'a [u8]>) -> Option<Result<(), DecodeError>> {
        if self.rest.is_empty() {
            return None;
        }
        let bad = |reason: &str| {
            Some(Err(DecodeError::BadPayload {
                what: "BATCH entry",
                reason: reason.to_string(),
            }))
        };
        let Some((count, mut rest)) = split_be::<2>(self.rest) else {
            self.rest = &[];
            return bad("truncated frame count");
        };
        let count = u16::from_be_bytes(count) as usize;
        if !(2..=ENTRY_MAX_FRAMES).contains(&count) {
            self.rest = &[];
            return bad("an entry has 2 to 14 frames");
        }
        frames.clear();
        frames.push(&[]);
        frames.push(VERSION.as_bytes());
        for _ in 0..count {
            let Some((len, after)) = split_be::<4>(rest) else {
                self.rest = &[];
                return bad("truncated frame length");
            };
            let len = u32::from_be_bytes(len) as usize;
            if after.len() < len {
                self.rest = &[];
                return bad("frame longer than the batch");
            }
            frames.push(&after[..len]);
            rest = &after[len..];
        }
        self.rest = rest;
        if frames[2] == Command::Batch.as_str().as_bytes() {
            return bad("a BATCH inside a BATCH");
        }
        Some(Ok(()))
    }

    /// The next entry decoded, frames over `max_frame` refused as a lone
    /// message's are; its frames stay in `entry` (for an ERROR that names
    /// it). `None` after the last.
    pub fn next_message(
        &mut self,
        entry: &mut Vec<&'a [u8]>,
        max_frame: usize,
    ) -> Option<Result<Envelope, DecodeError>> {
        let read = self.next_into(entry)?;
        Some(read.and_then(|()| crate::decode_with_limit(entry, max_frame)))
    }
}

/// The first `N` bytes of `bytes` and the rest, if it has them.
fn split_be<const N: usize>(bytes: &[u8]) -> Option<([u8; N], &[u8])> {
    let head: [u8; N] = bytes.get(..N)?.try_into().ok()?;
    Some((head, &bytes[N..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, Outcome};

    fn entries(frames: &[Vec<u8>]) -> Vec<Result<Vec<Vec<u8>>, DecodeError>> {
        let mut batch = batch_entries(frames).expect("a batch").expect("well formed");
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(r) = batch.next_into(&mut buf) {
            out.push(r.map(|()| buf.iter().map(|f| f.to_vec()).collect()));
        }
        out
    }

    #[test]
    fn messages_come_out_as_they_went_in() {
        let reply = Message::Reply(Reply::Result(ResultFrames {
            of: "job-1".into(),
            outcome: Outcome::Ok,
            content_type: crate::ContentType::Json,
            body: b"{\"value\":1}".to_vec(),
        }));
        let ready = Message::Ready { count: 3 };
        let mut writer = BatchWriter::new();
        writer.push_message("m1", reply.clone()).unwrap();
        writer.push(ready.clone().into_frames("m2")).unwrap();
        let mut packed = Vec::new();
        push_request(&mut packed, "job-2", "q", "guarantee", b"body");
        assert_eq!(writer.len(), 2);
        let frames = writer.take_frames("b1");
        assert!(writer.is_empty());
        let got = entries(&frames);
        assert_eq!(got.len(), 2);
        let first = decode(got[0].as_ref().unwrap()).unwrap();
        assert_eq!((first.msgid.as_str(), first.message), ("m1", reply));
        let second = decode(got[1].as_ref().unwrap()).unwrap();
        assert_eq!((second.msgid.as_str(), second.message), ("m2", ready));
        let request = entries(&batch_frames("b2", packed));
        let request = decode(request[0].as_ref().unwrap()).unwrap();
        assert_eq!(request.msgid, "job-2");
        let Message::Request(r) = request.message else {
            panic!("a REQUEST")
        };
        assert_eq!(
            (r.queue.as_str(), r.body.as_slice(), r.headers.guarantee),
            ("q", &b"body"[..], true)
        );
    }

    #[test]
    fn large_frames_and_inner_batches_do_not_go_in() {
        let mut writer = BatchWriter::new();
        let big = Message::Reply(Reply::Result(ResultFrames {
            of: "j".into(),
            outcome: Outcome::Ok,
            content_type: crate::ContentType::Json,
            body: vec![b'x'; BATCH_ENTRY_FRAME_MAX + 1],
        }));
        assert!(writer.push(big.into_frames("m")).is_err());
        assert!(writer.is_empty());
        let mut packed = Vec::new();
        push_entry(&mut packed, &[b"BATCH", b"x", b""]);
        let got = entries(&batch_frames("b", packed));
        assert!(matches!(got[0], Err(DecodeError::BadPayload { .. })));
    }

    /// A REQUEST pushed from its parts is the entry its frames make, and
    /// one too large for a BATCH is left out, the batch untouched.
    #[test]
    fn a_request_pushed_from_its_parts_is_the_entry_its_frames_make() {
        let headers = "reply-requested,batch-reply";
        let request = Message::Request(crate::Request {
            queue: "q".into(),
            headers: crate::Headers::parse(headers),
            body: b"[1]".to_vec(),
        });
        let (mut by_parts, mut by_frames) = (BatchWriter::new(), BatchWriter::new());
        assert!(by_parts.push_request("m1", "q", headers, b"[1]"));
        by_frames.push(request.into_frames("m1")).expect("batchable");
        assert_eq!(by_parts.take_frames("b"), by_frames.take_frames("b"));
        assert!(!by_parts.push_request("m2", "q", "", &vec![b'x'; BATCH_ENTRY_FRAME_MAX + 1]));
        assert!(by_parts.is_empty());
    }

    proptest::proptest! {
        /// Any bytes as a BATCH's entries: errors or messages, never a
        /// panic, and never more entries than the bytes could hold.
        #[test]
        fn random_packed_bytes_never_panic(packed in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let len = packed.len();
            let got = entries(&batch_frames("b", packed));
            proptest::prop_assert!(got.len() <= len / 2 + 1);
        }
    }

    #[test]
    fn malformed_batches_are_errors_never_panics() {
        let other = Message::Kbye.into_frames("m");
        assert!(batch_entries(&other).is_none());
        let short: Vec<Vec<u8>> = vec![b"".to_vec(), VERSION.into(), b"BATCH".to_vec(), b"m".to_vec()];
        assert!(batch_entries(&short).unwrap().is_err());
        // Every truncation of a good batch: errors, never a panic.
        let mut packed = Vec::new();
        push_request(&mut packed, "job", "q", "", b"body");
        push_entry(&mut packed, &[b"READY", b"m2"]);
        for cut in 0..packed.len() {
            let frames = batch_frames("b", packed[..cut].to_vec());
            let got = entries(&frames);
            assert!(got.iter().filter(|r| r.is_ok()).count() <= 1, "cut {cut}");
        }
        let mut bad_count = vec![0xff, 0xff];
        bad_count.extend_from_slice(&packed);
        assert!(entries(&batch_frames("b", bad_count))[0].is_err());
    }
}
