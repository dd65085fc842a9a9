//! The pipe format between the jobmanager and its workers (internal to one
//! host and one binary, so not part of the wire protocol): length-prefixed
//! records.
//!
//! ```text
//! request:  u32 len | u16 id_len | msgid | u8 content_type | body
//! response: u32 len | u16 id_len | msgid | u8 outcome_len | outcome | u8 content_type | body
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

pub(crate) fn encode_request(msgid: &str, ct: ContentType, body: &[u8]) -> Vec<u8> {
    let id_len = (msgid.len() as u16).to_le_bytes();
    record(&[&id_len, msgid.as_bytes(), &[ct_byte(ct)], body])
}

pub(crate) fn encode_response(msgid: &str, outcome: Outcome, ct: ContentType, body: &[u8]) -> Vec<u8> {
    let id_len = (msgid.len() as u16).to_le_bytes();
    let o = outcome.as_str().as_bytes();
    record(&[&id_len, msgid.as_bytes(), &[o.len() as u8], o, &[ct_byte(ct)], body])
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

/// `(msgid, content_type, body)` of a request record (without its length).
pub(crate) fn decode_request(rec: &[u8]) -> Option<(String, ContentType, Vec<u8>)> {
    let mut c = Cursor(rec);
    let id = c.id()?;
    let ct = ct_from(c.take(1)?[0])?;
    Some((id, ct, c.0.to_vec()))
}

/// `(msgid, outcome, content_type, body)` of a response record.
pub(crate) fn decode_response(rec: &[u8]) -> Option<(String, Outcome, ContentType, Vec<u8>)> {
    let mut c = Cursor(rec);
    let id = c.id()?;
    let n = c.take(1)?[0] as usize;
    let outcome = Outcome::parse(std::str::from_utf8(c.take(n)?).ok()?)?;
    let ct = ct_from(c.take(1)?[0])?;
    Some((id, outcome, ct, c.0.to_vec()))
}

/// Splits a byte stream into records.
#[derive(Default)]
pub(crate) struct RecordReader {
    buf: Vec<u8>,
}

impl RecordReader {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete record, or `Err` if the stream is corrupt.
    pub(crate) fn next_record(&mut self) -> Result<Option<Vec<u8>>, ()> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_RECORD {
            return Err(());
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let rec = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_across_split_reads() {
        let a = encode_request("id-1", ContentType::MsgPack, b"\x00\x01");
        let b = encode_response("id-2", Outcome::TimedOut, ContentType::Json, b"{}");
        let stream: Vec<u8> = [a.clone(), b.clone()].concat();
        let mut r = RecordReader::default();
        let mut got = Vec::new();
        for chunk in stream.chunks(3) {
            r.push(chunk);
            while let Some(rec) = r.next_record().unwrap() {
                got.push(rec);
            }
        }
        assert_eq!(
            decode_request(&got[0]),
            Some(("id-1".into(), ContentType::MsgPack, b"\x00\x01".to_vec()))
        );
        assert_eq!(
            decode_response(&got[1]),
            Some(("id-2".into(), Outcome::TimedOut, ContentType::Json, b"{}".to_vec()))
        );
        assert_eq!(decode_request(b"\x05"), None);
    }
}
