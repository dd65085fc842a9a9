//! The formats between the jobmanager and its workers (internal to one host
//! and one binary, so not part of the wire protocol).
//!
//! Jobs go into the queue all workers share, a `SOCK_SEQPACKET` socket (one
//! message per job, so no length); a job too large for one message goes as
//! a ticket, and its body follows on the worker's own pipe once it says it
//! took it. Workers answer on their own pipe with length-prefixed records:
//!
//! ```text
//! job (queue):     b'J' | u16 id_len | msgid | u8 content_type | body
//! ticket (queue):  b'T' | u16 id_len | msgid | u8 content_type
//! body (pipe):     u32 len | body
//! started (pipe):  u32 len | b'S' | u16 id_len | msgid
//! result (pipe):   u32 len | b'R' | u16 id_len | msgid | u8 outcome_len | outcome | u8 content_type | body
//! ```
//!
//! Bodies pass through undecoded: the worker decodes the call and encodes the
//! result, so the jobmanager's loop never parses JSON or MessagePack.

use emq_proto::{ContentType, Outcome};

/// Largest record accepted from a pipe.
pub(crate) const MAX_RECORD: usize = 1 << 30;

fn ct_byte(ct: ContentType) -> u8 {
    match ct {
        ContentType::Json => 0,
        ContentType::MsgPack => 1,
    }
}

fn ct_from(b: u8) -> Option<ContentType> {
    match b {
        0 => Some(ContentType::Json),
        1 => Some(ContentType::MsgPack),
        _ => None,
    }
}

fn record(parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// Largest job message put in the shared queue whole; a larger one goes as
/// a ticket (the socket's send buffer bounds a message, and small messages
/// let many jobs wait in it).
pub(crate) const MAX_INLINE: usize = 16 * 1024;

/// A job message for the shared queue: the job itself, or its ticket when
/// the body is larger than [`MAX_INLINE`].
pub(crate) fn encode_job(msgid: &str, ct: ContentType, body: &[u8]) -> Vec<u8> {
    let id_len = (msgid.len() as u16).to_le_bytes();
    let inline = 1 + 2 + msgid.len() + 1 + body.len() <= MAX_INLINE;
    let mut out = Vec::with_capacity(4 + msgid.len() + if inline { body.len() } else { 0 });
    out.push(if inline { b'J' } else { b'T' });
    out.extend_from_slice(&id_len);
    out.extend_from_slice(msgid.as_bytes());
    out.push(ct_byte(ct));
    if inline {
        out.extend_from_slice(body);
    }
    out
}

/// A job taken from the shared queue: `Some(body)` inline, `None` for a
/// ticket (the body follows on the worker's pipe).
pub(crate) struct Taken {
    pub msgid: String,
    pub content_type: ContentType,
    pub body: Option<Vec<u8>>,
}

pub(crate) fn decode_job(msg: &[u8]) -> Option<Taken> {
    let (&kind, rest) = msg.split_first()?;
    let mut c = Cursor(rest);
    let msgid = c.id()?;
    let content_type = ct_from(c.take(1)?[0])?;
    let body = match kind {
        b'J' => Some(c.0.to_vec()),
        b'T' if c.0.is_empty() => None,
        _ => return None,
    };
    Some(Taken {
        msgid,
        content_type,
        body,
    })
}

/// A ticket's body, on the worker's pipe.
pub(crate) fn encode_body(body: &[u8]) -> Vec<u8> {
    record(&[body])
}

/// The worker took `msgid` from the queue: it runs from now.
pub(crate) fn encode_started(msgid: &str, out: &mut Vec<u8>) {
    let len = 1 + 2 + msgid.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(b'S');
    out.extend_from_slice(&(msgid.len() as u16).to_le_bytes());
    out.extend_from_slice(msgid.as_bytes());
}

pub(crate) fn encode_response(msgid: &str, outcome: Outcome, ct: ContentType, body: &[u8]) -> Vec<u8> {
    let id_len = (msgid.len() as u16).to_le_bytes();
    let o = outcome.as_str().as_bytes();
    record(&[
        b"R",
        &id_len,
        msgid.as_bytes(),
        &[o.len() as u8],
        o,
        &[ct_byte(ct)],
        body,
    ])
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn id(&mut self) -> Option<String> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// A record a worker wrote on its pipe.
#[derive(Debug, PartialEq)]
pub(crate) enum Report {
    /// It took this job from the queue.
    Started(String),
    /// A job's end.
    Result {
        msgid: String,
        outcome: Outcome,
        content_type: ContentType,
        body: Vec<u8>,
    },
}

pub(crate) fn decode_report(rec: &[u8]) -> Option<Report> {
    let (&kind, rest) = rec.split_first()?;
    let mut c = Cursor(rest);
    let msgid = c.id()?;
    match kind {
        b'S' if c.0.is_empty() => Some(Report::Started(msgid)),
        b'R' => {
            let n = c.take(1)?[0] as usize;
            let outcome = Outcome::parse(std::str::from_utf8(c.take(n)?).ok()?)?;
            let content_type = ct_from(c.take(1)?[0])?;
            Some(Report::Result {
                msgid,
                outcome,
                content_type,
                body: c.0.to_vec(),
            })
        }
        _ => None,
    }
}

/// Splits a byte stream into records.
#[derive(Default)]
pub(crate) struct RecordReader {
    buf: Vec<u8>,
    /// Where the records not yet taken start: taking one moves this, not
    /// the bytes after it (a read holds many records when a worker sends
    /// a burst of results; shifting the rest at each record was a third of
    /// the jobmanager's instructions).
    start: usize,
}

impl RecordReader {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete record, or `Err` if the stream is corrupt.
    pub(crate) fn next_record(&mut self) -> Result<Option<Vec<u8>>, ()> {
        let rest = &self.buf[self.start..];
        if rest.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_RECORD {
            return Err(());
        }
        if rest.len() < 4 + len {
            return Ok(None);
        }
        let rec = rest[4..4 + len].to_vec();
        self.start += 4 + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_across_split_reads() {
        let mut a = Vec::new();
        encode_started("id-1", &mut a);
        let b = encode_response("id-2", Outcome::TimedOut, ContentType::Json, b"{}");
        let stream: Vec<u8> = [a, b].concat();
        let mut r = RecordReader::default();
        let mut got = Vec::new();
        for chunk in stream.chunks(3) {
            r.push(chunk);
            while let Some(rec) = r.next_record().unwrap() {
                got.push(rec);
            }
        }
        assert_eq!(decode_report(&got[0]), Some(Report::Started("id-1".into())));
        assert_eq!(
            decode_report(&got[1]),
            Some(Report::Result {
                msgid: "id-2".into(),
                outcome: Outcome::TimedOut,
                content_type: ContentType::Json,
                body: b"{}".to_vec()
            })
        );
        assert_eq!(decode_report(b"\x05"), None);
        assert_eq!(decode_report(b"S\x01\x00ax"), None);
    }

    #[test]
    fn large_jobs_go_as_tickets() {
        let small = encode_job("j1", ContentType::MsgPack, b"\x01\x02");
        let t = decode_job(&small).unwrap();
        assert_eq!((t.msgid.as_str(), t.body.as_deref()), ("j1", Some(&b"\x01\x02"[..])));
        let big = vec![7u8; MAX_INLINE];
        let ticket = encode_job("j2", ContentType::Json, &big);
        assert!(ticket.len() < 16);
        let t = decode_job(&ticket).unwrap();
        assert_eq!(
            (t.msgid.as_str(), t.content_type, t.body),
            ("j2", ContentType::Json, None)
        );
        assert!(decode_job(b"X\x01\x00a\x00").is_none());
    }
}
