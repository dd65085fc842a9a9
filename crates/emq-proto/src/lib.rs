//! The eMQP/1.0 wire format, and nothing else: every byte emq puts on a socket is
//! built here, and every byte it receives is decoded here. No sockets, no clocks,
//! no randomness (ids count from a seed the caller gives).
//!
//! `protocol.md` at the repository root is the normative description; this crate
//! is its implementation. Decoding never panics: malformed input of any kind is a
//! [`DecodeError`].
//!
//! - [`message`](Message): commands and their frames;
//! - [`Headers`]: the REQUEST headers frame;
//! - [`JobCall`], [`JobResult`]: job bodies and results;
//! - [`views`]: the typed JSON answers (status, job details, dead letters);
//! - [`events`]: the event stream the router publishes;
//! - [`graph`]: workflows: graph and batch specs, their checks, views and DOT;
//! - [`keys`]: CURVE keys, key files and allowlists as text;
//! - [`MsgIds`]: msgids from a seed;
//! - [`BatchWriter`], [`batch_entries`]: several messages in one (BATCH).

mod batch;
mod error;
pub mod events;
pub mod graph;
mod headers;
mod ids;
mod job;
pub mod keys;
mod message;
mod time;
pub mod views;

pub use batch::{
    batch_entries, batch_frames, batchable, push_entry, push_reply, push_request, unbatched_results, BatchEntries,
    BatchWriter, BATCH_BYTES, BATCH_ENTRY_FRAME_MAX,
};
pub use error::{DecodeError, ErrorCode};
pub use headers::{Headers, JobKeyHeader, TimeSpec};
pub use ids::{uuid_text, MsgIds};
pub use job::{ContentType, JobCall, JobResult, Outcome, Value};
pub use message::{
    decode, decode_with_limit, peek_msgid, request_frames, Capabilities, Command, Envelope, Frame, Inform, Message,
    PeerType, Reply, ReplyNotice, Request, ResultFrames, ScheduleRequest, Timing,
};
pub use time::Now;
pub use views::{JobManagerState, JobState};

/// `text` as it may be shown on a terminal or in a log line: control
/// characters (escape sequences, newlines, ...) written out as `\u{1b}`, the
/// rest untouched. Everything a peer or a job controls (queue and handler
/// names, identities, reasons, results) goes through this before it is shown.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The protocol version every frame carries, as EventMQ 0.3.13 spells it.
pub const VERSION: &str = "eMQP/1.0";
/// Versions this implementation accepts; anything else is answered with
/// `ERROR version`.
pub const SUPPORTED_VERSIONS: &[&str] = &[VERSION];

/// EventMQ's default port for jobmanagers, kept so that unmodified EventMQ
/// peers find us.
pub const DEFAULT_BACKEND_PORT: u16 = 47290;
/// EventMQ's default port for clients.
pub const DEFAULT_FRONTEND_PORT: u16 = 47291;
/// EventMQ's default port for admin tools.
pub const DEFAULT_ADMIN_PORT: u16 = 47293;
/// Where `emq-cli watch` looks for the event stream unless told (the router
/// publishes none unless started with `--events`).
pub const DEFAULT_EVENTS_PORT: u16 = 47294;

/// The queue a job goes to when it names none.
pub const DEFAULT_QUEUE: &str = "default";
/// The weight a queue gets when a jobmanager names none.
pub const DEFAULT_WEIGHT: i64 = 10;

/// Largest single frame the decoder accepts, unless the caller sets its own.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
/// Most frames one message may have (identity and envelope included).
pub const MAX_FRAMES: usize = 16;

#[cfg(test)]
mod tests {
    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(super::printable("plain näme"), "plain näme");
        assert_eq!(
            super::printable("IDLE\n[fake] log\x1b[2J"),
            "IDLE\\n[fake] log\\u{1b}[2J"
        );
    }
}
