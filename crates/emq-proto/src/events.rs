//! The event stream (protocol.md section 17): what the router publishes on
//! its PUB socket. The router publishes in bursts (every few milliseconds):
//! a burst is one two-frame message per topic, the topic (`KIND QUEUE`, so
//! that a subscription can filter by kind, or by kind and queue) and a JSON
//! [`Envelope`] with that topic's events of the burst. Every event carries
//! the router's sequence number: sorted by it, a burst's events are in the
//! order they happened.
//!
//! One [`Event`] type serves both sides: the router writes it from borrowed
//! text, subscribers read it into owned text.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::job::Outcome;
use crate::views::JobManagerState;

/// What happened. The text form (`job.finished`) is the topic's first word
/// and the event's `kind`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    Serialize,
    Deserialize,
)]
pub enum EventKind {
    /// A job was accepted (from a client, a schedule or a graph).
    #[strum(serialize = "job.submitted")]
    #[serde(rename = "job.submitted")]
    Submitted,
    /// A `unique` submission found a live job of its key: no new job; `job`
    /// is the submission's id, `detail` the live job's.
    #[strum(serialize = "job.deduplicated")]
    #[serde(rename = "job.deduplicated")]
    Deduplicated,
    /// Sent to (claimed by) a jobmanager: attempt `attempt` starts.
    #[strum(serialize = "job.dispatched")]
    #[serde(rename = "job.dispatched")]
    Dispatched,
    /// An attempt failed and the job will run again after `detail` ms.
    #[strum(serialize = "job.retry")]
    #[serde(rename = "job.retry")]
    Retry,
    /// Its jobmanager was lost while it ran: it is handed back (a `retry`
    /// or `dispatched` event follows) or, on its last attempt, it fails.
    #[strum(serialize = "job.abandoned")]
    #[serde(rename = "job.abandoned")]
    Abandoned,
    /// Ended with outcome `ok`.
    #[strum(serialize = "job.finished")]
    #[serde(rename = "job.finished")]
    Finished,
    /// Ended with a failure outcome (`failed`, `crashed`, `timeout`, ...).
    #[strum(serialize = "job.failed")]
    #[serde(rename = "job.failed")]
    Failed,
    /// A guaranteed job out of attempts: ended, and kept in the dead-letter
    /// set.
    #[strum(serialize = "job.dead")]
    #[serde(rename = "job.dead")]
    Dead,
    /// Cancelled before it started.
    #[strum(serialize = "job.cancelled")]
    #[serde(rename = "job.cancelled")]
    Cancelled,
    /// Not started by its expiry time.
    #[strum(serialize = "job.expired")]
    #[serde(rename = "job.expired")]
    Expired,
    /// Replaced before it ran by a newer job of its `coalesce` key
    /// (`detail`).
    #[strum(serialize = "job.superseded")]
    #[serde(rename = "job.superseded")]
    Superseded,
    /// A schedule fired job `job`.
    #[strum(serialize = "schedule.fired")]
    #[serde(rename = "schedule.fired")]
    ScheduleFired,
    /// A graph was accepted.
    #[strum(serialize = "graph.submitted")]
    #[serde(rename = "graph.submitted")]
    GraphSubmitted,
    /// A graph ended; `detail` is its state.
    #[strum(serialize = "graph.ended")]
    #[serde(rename = "graph.ended")]
    GraphEnded,
    /// A jobmanager INFORMed.
    #[strum(serialize = "jobmanager.joined")]
    #[serde(rename = "jobmanager.joined")]
    JobManagerJoined,
    /// A jobmanager left (KBYE) or was declared dead; `detail` says which.
    #[strum(serialize = "jobmanager.left")]
    #[serde(rename = "jobmanager.left")]
    JobManagerLeft,
    /// A jobmanager reported a new state (`state`).
    #[strum(serialize = "jobmanager.state")]
    #[serde(rename = "jobmanager.state")]
    JobManagerState,
}

impl EventKind {
    /// The kind as text: `job.finished`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether the job's story ends with this event: every accepted job has
    /// exactly one of these.
    pub fn is_terminal(self) -> bool {
        use EventKind as K;
        matches!(
            self,
            K::Finished | K::Failed | K::Dead | K::Cancelled | K::Expired | K::Superseded
        )
    }

    /// The terminal kind of a job that ended with `outcome` (`dead`: a
    /// guaranteed job out of attempts).
    pub fn of_outcome(outcome: Outcome, dead: bool) -> EventKind {
        match outcome {
            Outcome::Ok => EventKind::Finished,
            Outcome::Cancelled => EventKind::Cancelled,
            Outcome::Expired => EventKind::Expired,
            Outcome::Superseded => EventKind::Superseded,
            _ if dead => EventKind::Dead,
            _ => EventKind::Failed,
        }
    }
}

/// One event. Fields that do not apply to its kind are left out of the
/// JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event<'a> {
    /// Per router instance, from 1, with no gaps: a subscriber that sees a
    /// jump lost events (it was too slow, or its connection was down).
    pub seq: u64,
    /// The router instance: a new value means the router restarted and
    /// `seq` starts again from 1. On the wire it is in the [`Envelope`];
    /// readers copy it into each event.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub router: Cow<'a, str>,
    /// When, in milliseconds since the Unix epoch.
    pub unix_ms: i64,
    /// What happened.
    /// In an [`Envelope`] the kind is the envelope's.
    #[serde(default = "kind_from_envelope")]
    pub kind: EventKind,
    /// The job (its msgid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Cow<'a, str>>,
    /// Its queue, or the jobmanager's queues joined by commas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<Cow<'a, str>>,
    /// The jobmanager involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobmanager: Option<Cow<'a, str>>,
    /// The attempt (dispatches so far) for `dispatched`, `retry`,
    /// `abandoned` and terminal events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// How a job ended (terminal events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// A jobmanager's state (`jobmanager.state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobManagerState>,
    /// The schedule that fired the job, or the graph it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Cow<'a, str>>,
    /// Whatever else the kind says (see [`EventKind`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Cow<'a, str>>,
    /// The job's body (`job.submitted`) or its result (terminal events),
    /// only when the router runs with `--events-bodies`, as text when it
    /// is UTF-8 ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Cow<'a, str>>,
    /// ... and in hexadecimal otherwise (MessagePack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_hex: Option<String>,
}

impl<'a> Event<'a> {
    /// An event with only its sequence, router, time and kind set.
    pub fn new(seq: u64, router: &'a str, unix_ms: i64, kind: EventKind) -> Event<'a> {
        Event {
            seq,
            router: Cow::Borrowed(router),
            unix_ms,
            kind,
            job: None,
            queue: None,
            jobmanager: None,
            attempt: None,
            outcome: None,
            state: None,
            origin: None,
            detail: None,
            body: None,
            body_hex: None,
        }
    }

    /// Set the body from bytes: text when UTF-8, hexadecimal otherwise.
    pub fn set_body(&mut self, body: &'a [u8]) {
        match std::str::from_utf8(body) {
            Ok(text) => self.body = Some(Cow::Borrowed(text)),
            Err(_) => self.body_hex = Some(body.iter().map(|b| format!("{b:02x}")).collect()),
        }
    }

    /// Append the topic frame, `KIND QUEUE` (`KIND ` when there is no
    /// queue), to `out`.
    pub fn write_topic(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.push(b' ');
        if let Some(q) = &self.queue {
            out.extend_from_slice(q.as_bytes());
        }
    }

    /// Append the event as a JSON object to `out`: the same text serde
    /// would write, by hand, because the router writes one per transition
    /// (serde_json's generic string escaping was most of that cost).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_fields(out, None, true);
    }

    /// The event as the router puts it in an [`Envelope`]: without its kind
    /// and queue, which the envelope (and the topic) carry, and with its
    /// time written from `unix_ms_text` when that is its time in decimal
    /// (the router writes many events per millisecond).
    pub fn write_in_envelope(&self, out: &mut Vec<u8>, unix_ms_text: Option<&[u8]>) {
        self.write_fields(out, unix_ms_text, false);
    }

    fn write_fields(&self, out: &mut Vec<u8>, unix_ms_text: Option<&[u8]>, kind_and_queue: bool) {
        out.extend_from_slice(b"{\"seq\":");
        write_u64(out, self.seq);
        if !self.router.is_empty() {
            write_key_str(out, "router", &self.router);
        }
        out.extend_from_slice(b",\"unix_ms\":");
        match unix_ms_text {
            Some(text) => out.extend_from_slice(text),
            None => write_i64(out, self.unix_ms),
        }
        if kind_and_queue {
            write_key_str(out, "kind", self.kind.as_str());
            if let Some(q) = &self.queue {
                write_key_str(out, "queue", q);
            }
        }
        for (key, value) in [("job", &self.job), ("jobmanager", &self.jobmanager)] {
            if let Some(v) = value {
                write_key_str(out, key, v);
            }
        }
        if let Some(a) = self.attempt {
            out.extend_from_slice(b",\"attempt\":");
            write_u64(out, u64::from(a));
        }
        if let Some(o) = self.outcome {
            write_key_str(out, "outcome", o.as_str());
        }
        if let Some(s) = self.state {
            write_key_str(out, "state", s.as_str());
        }
        for (key, value) in [("origin", &self.origin), ("detail", &self.detail), ("body", &self.body)] {
            if let Some(v) = value {
                write_key_str(out, key, v);
            }
        }
        if let Some(v) = &self.body_hex {
            write_key_str(out, "body_hex", v);
        }
        out.push(b'}');
    }

    /// Read an event's JSON frame.
    pub fn from_json(frame: &[u8]) -> Result<Event<'static>, serde_json::Error> {
        serde_json::from_slice::<Event<'_>>(frame).map(Event::into_owned)
    }

    /// The same event owning its text.
    pub fn into_owned(self) -> Event<'static> {
        let own = |c: Option<Cow<'_, str>>| c.map(|c| Cow::Owned(c.into_owned()));
        Event {
            seq: self.seq,
            router: Cow::Owned(self.router.into_owned()),
            unix_ms: self.unix_ms,
            kind: self.kind,
            job: own(self.job),
            queue: own(self.queue),
            jobmanager: own(self.jobmanager),
            attempt: self.attempt,
            outcome: self.outcome,
            state: self.state,
            origin: own(self.origin),
            detail: own(self.detail),
            body: own(self.body),
            body_hex: self.body_hex,
        }
    }
}

/// `,"key":"value"` with `value` escaped as JSON requires.
fn write_key_str(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    write_str(out, value);
}

/// A JSON string. Ids, queue names and kinds rarely need escaping: one scan
/// finds out, and then the bytes are copied as they are.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    if !needs_escape(s.as_bytes()) {
        out.extend_from_slice(s.as_bytes());
    } else {
        for c in s.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }
    out.push(b'"');
}

/// Whether `bytes` hold a byte JSON strings must escape (a control
/// character, `"` or `\`), eight bytes at a time.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Whether some byte of `w` is zero (the classic bit trick).
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS != 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        // A byte below 0x20 (ASCII bytes only: one with its high bit set
        // is part of a multi-byte character, never below 0x20).
        let below = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
        if below != 0 || has_zero(w ^ (ONES * u64::from(b'"'))) || has_zero(w ^ (ONES * u64::from(b'\\'))) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// A signed number in decimal.
pub fn write_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    write_u64(out, n.unsigned_abs());
}

/// A number in decimal, without the formatting machinery.
fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// What an event read without its kind holds until its envelope's kind is
/// copied in.
fn kind_from_envelope() -> EventKind {
    EventKind::Submitted
}

// serde hands `skip_serializing_if` a reference to the field itself.
#[allow(clippy::ptr_arg)]
fn is_empty(s: &Cow<'_, str>) -> bool {
    s.is_empty()
}

/// The second frame of an event message: one topic's events of one burst.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<'a> {
    /// The router instance (see [`Event::router`]).
    #[serde(borrow)]
    pub router: Cow<'a, str>,
    /// The burst, counted per router instance from 1.
    pub burst: u64,
    /// This message's place in its burst (from 0) ...
    pub part: u32,
    /// ... and how many messages (topics) the burst has.
    pub parts: u32,
    /// The kind of every event in it ...
    pub kind: EventKind,
    /// ... and their queue (a jobmanager's queues, joined by commas), if any.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub queue: Option<Cow<'a, str>>,
    /// The events, by sequence number.
    #[serde(borrow)]
    pub events: Vec<Event<'a>>,
}

/// Open an envelope for events of `kind` (and `queue`) from `router`: the
/// router then appends the events ([`Event::write_in_envelope`], separated
/// by commas) and closes it with [`close_envelope`], so that a message is
/// written once, in place.
pub fn open_envelope(out: &mut Vec<u8>, router: &str, kind: EventKind, queue: Option<&str>) {
    out.extend_from_slice(b"{\"router\":");
    write_str(out, router);
    write_key_str(out, "kind", kind.as_str());
    if let Some(q) = queue {
        write_key_str(out, "queue", q);
    }
    out.extend_from_slice(b",\"events\":[");
}

/// Close an envelope [`open_envelope`] began: this message is part `part`
/// (from 0) of `parts` in burst `burst`.
pub fn close_envelope(out: &mut Vec<u8>, burst: u64, part: u32, parts: u32) {
    out.extend_from_slice(b"],\"burst\":");
    write_u64(out, burst);
    out.extend_from_slice(b",\"part\":");
    write_u64(out, u64::from(part));
    out.extend_from_slice(b",\"parts\":");
    write_u64(out, u64::from(parts));
    out.push(b'}');
}

/// Read an event message's envelope; its events get the envelope's
/// router, kind and queue. The router's own output (no escapes, no unknown
/// fields) is read by a small reader made for it, about four times
/// cheaper than serde's; anything else by serde_json, so what is accepted
/// does not change.
pub fn read_envelope(frame: &[u8]) -> Result<Envelope<'static>, serde_json::Error> {
    if let Some(env) = fast::envelope(frame) {
        return Ok(env);
    }
    read_envelope_with_serde(frame)
}

/// [`read_envelope`] by serde_json alone.
pub fn read_envelope_with_serde(frame: &[u8]) -> Result<Envelope<'static>, serde_json::Error> {
    let env: Envelope<'_> = serde_json::from_slice(frame)?;
    let router = env.router.into_owned();
    let queue = env.queue.map(Cow::into_owned);
    Ok(Envelope {
        events: env
            .events
            .into_iter()
            .map(|e| {
                let mut e = e.into_owned();
                e.router = Cow::Owned(router.clone());
                e.kind = env.kind;
                if e.queue.is_none() {
                    e.queue = queue.clone().map(Cow::Owned);
                }
                e
            })
            .collect(),
        router: Cow::Owned(router),
        burst: env.burst,
        part: env.part,
        parts: env.parts,
        kind: env.kind,
        queue: queue.map(Cow::Owned),
    })
}

/// A reader for envelopes as the router writes them: a JSON object of
/// known keys whose strings have no escapes. It gives up (`None`) on
/// anything else, and [`read_envelope`] asks serde.
mod fast {
    use std::borrow::Cow;

    use super::{Envelope, Event, EventKind};

    struct Reader<'a> {
        text: &'a str,
        at: usize,
    }

    impl<'a> Reader<'a> {
        fn peek(&self) -> Option<u8> {
            self.text.as_bytes().get(self.at).copied()
        }

        fn eat(&mut self, byte: u8) -> Option<()> {
            (self.peek()? == byte).then(|| self.at += 1)
        }

        /// A string without escapes (the router escapes almost nothing).
        fn string(&mut self) -> Option<&'a str> {
            self.eat(b'"')?;
            let rest = &self.text.as_bytes()[self.at..];
            let len = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
            if rest[len] != b'"' {
                return None;
            }
            let s = &self.text[self.at..self.at + len];
            self.at += len + 1;
            Some(s)
        }

        /// An integer (at most 19 digits, so that it cannot overflow).
        fn number(&mut self) -> Option<i128> {
            let negative = self.eat(b'-').is_some();
            let (start, mut n) = (self.at, 0i128);
            while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
                n = n * 10 + i128::from(d - b'0');
                self.at += 1;
            }
            let digits = self.at - start;
            ((1..=19).contains(&digits)).then_some(if negative { -n } else { n })
        }

        fn unsigned<T: TryFrom<i128>>(&mut self) -> Option<T> {
            T::try_from(self.number()?).ok()
        }

        /// `"key":` then `value`, for each member of an object.
        fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
            self.eat(b'{')?;
            if self.eat(b'}').is_some() {
                return Some(());
            }
            loop {
                let key = self.string()?;
                self.eat(b':')?;
                member(self, key)?;
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                self.eat(b',')?;
            }
        }
    }

    fn owned(s: &str) -> Option<Cow<'static, str>> {
        Some(Cow::Owned(s.to_string()))
    }

    fn event(r: &mut Reader<'_>) -> Option<Event<'static>> {
        let mut e = Event::new(0, "", 0, EventKind::Submitted);
        r.object(|r, key| {
            match key {
                "seq" => e.seq = r.unsigned()?,
                "unix_ms" => e.unix_ms = i64::try_from(r.number()?).ok()?,
                "attempt" => e.attempt = Some(r.unsigned()?),
                "job" => e.job = owned(r.string()?),
                "jobmanager" => e.jobmanager = owned(r.string()?),
                "queue" => e.queue = owned(r.string()?),
                "origin" => e.origin = owned(r.string()?),
                "detail" => e.detail = owned(r.string()?),
                "body" => e.body = owned(r.string()?),
                "body_hex" => e.body_hex = Some(r.string()?.to_string()),
                "outcome" => e.outcome = Some(r.string()?.parse().ok()?),
                "state" => e.state = Some(r.string()?.parse().ok()?),
                _ => return None,
            }
            Some(())
        })?;
        Some(e)
    }

    pub(super) fn envelope(frame: &[u8]) -> Option<Envelope<'static>> {
        let text = std::str::from_utf8(frame).ok()?;
        let mut r = Reader { text, at: 0 };
        let (mut router, mut kind, mut queue) = (None, None, None);
        let (mut burst, mut part, mut parts) = (None, None, None);
        let mut events = Vec::new();
        r.object(|r, key| {
            match key {
                "router" => router = Some(r.string()?.to_string()),
                "kind" => kind = Some(r.string()?.parse::<EventKind>().ok()?),
                "queue" => queue = Some(r.string()?.to_string()),
                "burst" => burst = Some(r.unsigned()?),
                "part" => part = Some(r.unsigned()?),
                "parts" => parts = Some(r.unsigned()?),
                "events" => {
                    r.eat(b'[')?;
                    if r.eat(b']').is_none() {
                        loop {
                            events.push(event(r)?);
                            if r.eat(b']').is_some() {
                                break;
                            }
                            r.eat(b',')?;
                        }
                    }
                }
                _ => return None,
            }
            Some(())
        })?;
        // Nothing may follow the object.
        if r.at != text.len() {
            return None;
        }
        let (router, kind) = (router?, kind?);
        for e in &mut events {
            e.router = Cow::Owned(router.clone());
            e.kind = kind;
            if e.queue.is_none() {
                e.queue = queue.clone().map(Cow::Owned);
            }
        }
        Some(Envelope {
            router: Cow::Owned(router),
            burst: burst?,
            part: part?,
            parts: parts?,
            kind,
            queue: queue.map(Cow::Owned),
            events,
        })
    }
}

/// The topic prefix that selects events of `kind` (all queues), or of
/// `kind` in `queue`. ZeroMQ matches prefixes, so a queue whose name starts
/// with `queue` matches too: check [`Event::queue`] when that matters.
pub fn topic_prefix(kind: EventKind, queue: Option<&str>) -> String {
    match queue {
        Some(q) => format!("{} {q}", kind.as_str()),
        None => format!("{} ", kind.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn events_round_trip_through_json_and_name_their_topic() {
        let mut e = Event::new(7, "r1", 1_700_000_000_000, EventKind::Finished);
        e.job = Some("j1".into());
        e.queue = Some("q".into());
        e.outcome = Some(Outcome::Ok);
        e.attempt = Some(1);
        e.set_body(b"{\"value\": 1}");
        let mut json = Vec::new();
        e.write_json(&mut json);
        assert_eq!(Event::from_json(&json).unwrap(), e);
        let mut topic = Vec::new();
        e.write_topic(&mut topic);
        assert_eq!(topic, b"job.finished q");
        assert!(topic.starts_with(topic_prefix(EventKind::Finished, Some("q")).as_bytes()));
        // Absent fields stay out of the JSON.
        let text = String::from_utf8(json).unwrap();
        assert!(!text.contains("jobmanager") && !text.contains("body_hex"), "{text}");
    }

    #[test]
    fn envelopes_wrap_encoded_events_and_read_back_with_the_router_in_each() {
        let mut e1 = Event::new(1, "", 5, EventKind::Dispatched);
        e1.job = Some("j\"1".into());
        e1.queue = Some("q".into());
        let mut e3 = Event::new(3, "", 6, EventKind::Dispatched);
        e3.queue = Some("q".into());
        let mut out = Vec::new();
        open_envelope(&mut out, "r-1", EventKind::Dispatched, Some("q"));
        let mut a = Vec::new();
        e1.write_in_envelope(&mut a, None);
        out.extend_from_slice(&a);
        out.push(b',');
        e3.write_in_envelope(&mut out, Some(b"6"));
        close_envelope(&mut out, 9, 0, 2);
        let env = read_envelope(&out).unwrap();
        assert_eq!((env.router.as_ref(), env.burst, env.part, env.parts), ("r-1", 9, 0, 2));
        assert_eq!(env.events.len(), 2);
        assert_eq!(env.events[0].job.as_deref(), Some("j\"1"));
        let mut e1_read = e1.clone();
        e1_read.router = "r-1".into();
        assert_eq!(
            env.events[0], e1_read,
            "kind, queue and router come back from the envelope"
        );
        assert_eq!(env.events[1].unix_ms, 6);
        let text = String::from_utf8(a).unwrap();
        assert!(
            !text.contains("router") && !text.contains("kind") && !text.contains("queue"),
            "{text}"
        );
    }

    #[test]
    fn the_hand_written_json_is_what_serde_writes_for_every_field_and_odd_text() {
        let mut e = Event::new(u64::MAX, "r\u{1}", -5, EventKind::JobManagerState);
        e.job = Some("a\"b\\c\nd\te\u{7f}é\u{2}".into());
        e.queue = Some("q".into());
        e.jobmanager = Some("jm".into());
        e.attempt = Some(0);
        e.outcome = Some(Outcome::TimedOut);
        e.state = Some(JobManagerState::Steady);
        e.origin = Some("o".into());
        e.detail = Some("".into());
        e.body = Some("{\"x\":1}".into());
        e.body_hex = Some("00".into());
        let mut ours = Vec::new();
        e.write_json(&mut ours);
        let theirs = serde_json::to_vec(&e).unwrap();
        let (a, b): (serde_json::Value, serde_json::Value) = (
            serde_json::from_slice(&ours).unwrap(),
            serde_json::from_slice(&theirs).unwrap(),
        );
        assert_eq!(a, b, "{}", String::from_utf8_lossy(&ours));
        assert_eq!(Event::from_json(&ours).unwrap(), e);
        for text in [
            "",
            "abcdefgh",
            "abcdefg\"",
            "\\abcdefghijk",
            "é€𝄞 long enough text",
            "tab\tin the second word",
        ] {
            assert_eq!(
                needs_escape(text.as_bytes()),
                serde_json::to_string(text).unwrap().len() != text.len() + 2,
                "{text:?}"
            );
        }
        for n in [0, 7, 10, 1_234_567_890_123] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn the_fast_reader_agrees_with_serde_and_leaves_what_it_does_not_know_to_it() {
        let mut out = Vec::new();
        open_envelope(&mut out, "r-1", EventKind::Finished, Some("images"));
        let mut e = Event::new(42, "", 1_700_000_000_123, EventKind::Finished);
        e.job = Some("job-1".into());
        e.attempt = Some(2);
        e.outcome = Some(Outcome::Ok);
        e.origin = Some("g1".into());
        e.body = Some("é ok".into());
        e.write_in_envelope(&mut out, None);
        out.push(b',');
        let mut odd = Event::new(43, "", -1, EventKind::Finished);
        odd.detail = Some("a \"quoted\" word".into());
        odd.write_in_envelope(&mut out, None);
        close_envelope(&mut out, 7, 1, 3);
        // An escaped string: the fast reader gives up, serde reads it.
        assert!(fast::envelope(&out).is_none());
        let by_serde = read_envelope_with_serde(&out).unwrap();
        assert_eq!(read_envelope(&out).unwrap(), by_serde);
        assert_eq!(by_serde.events[1].detail.as_deref(), Some("a \"quoted\" word"));
        // Without it, both read the same.
        let mut plain = Vec::new();
        open_envelope(&mut plain, "r-1", EventKind::Finished, Some("images"));
        e.write_in_envelope(&mut plain, None);
        close_envelope(&mut plain, 7, 1, 3);
        let fast = fast::envelope(&plain).expect("the router's own output");
        assert_eq!(fast, read_envelope_with_serde(&plain).unwrap());
        assert_eq!(fast.events[0].queue.as_deref(), Some("images"));
        // Unknown keys, nulls, trailing bytes: serde's business.
        for other in [
            br#"{"router":"r","kind":"job.finished","new":1,"events":[],"burst":1,"part":0,"parts":1}"#.as_slice(),
            br#"{"router":"r","kind":"job.finished","events":[{"seq":1,"unix_ms":0,"job":null}],"burst":1,"part":0,"parts":1}"#,
            br#"{"router":"r","kind":"job.finished","events":[],"burst":1,"part":0,"parts":1} x"#,
        ] {
            assert!(fast::envelope(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn binary_bodies_are_hex_and_kinds_read_back_from_text() {
        let mut e = Event::new(1, "r", 0, EventKind::Submitted);
        e.set_body(&[0x81, 0xff]);
        assert_eq!(e.body_hex.as_deref(), Some("81ff"));
        for kind in EventKind::VARIANTS {
            assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), *kind);
        }
        assert_eq!(EventKind::of_outcome(Outcome::Crashed, true), EventKind::Dead);
        assert_eq!(EventKind::of_outcome(Outcome::Crashed, false), EventKind::Failed);
        assert!(EventKind::of_outcome(Outcome::Expired, false).is_terminal());
        assert!(!EventKind::Retry.is_terminal());
    }
}
