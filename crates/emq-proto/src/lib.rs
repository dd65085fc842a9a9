//! The eMQP/1.0 wire format, and nothing else: every byte emq puts on a socket is
//! built here, and every byte it receives is decoded here. No sockets, no clocks.
//!
//! `protocol.md` at the repository root is the normative description; this crate
//! is its implementation. Decoding never panics: malformed input of any kind is a
//! [`DecodeError`].

#[cfg(feature = "zmq")]
pub mod curve;
mod error;
mod headers;
mod job;
mod message;

/// Read one multipart message into `zmq::Message` frames, which [`decode`]
/// reads in place: no copy per frame. `flags` applies to the first frame (the
/// rest of a multipart message is always there once its first frame is).
#[cfg(feature = "zmq")]
pub fn recv_frames(socket: &zmq::Socket, flags: i32) -> Result<Vec<zmq::Message>, zmq::Error> {
    let mut frames = Vec::with_capacity(8);
    let mut flags = flags;
    loop {
        let mut m = zmq::Message::new();
        socket.recv(&mut m, flags)?;
        flags = 0;
        let more = m.get_more();
        frames.push(m);
        if !more {
            return Ok(frames);
        }
    }
}

/// Call `f` with the frames as plain slices. Each access to a
/// `zmq::Message`'s bytes is two calls into libzmq (data and size), and
/// decoding touches a frame many times: resolving them once here took about
/// a tenth of the router's instructions per job away.
#[cfg(feature = "zmq")]
pub fn with_slices<R>(frames: &[zmq::Message], f: impl FnOnce(&[&[u8]]) -> R) -> R {
    const ON_STACK: usize = MAX_FRAMES + 2;
    if frames.len() <= ON_STACK {
        let mut slices: [&[u8]; ON_STACK] = [&[]; ON_STACK];
        for (slice, frame) in slices.iter_mut().zip(frames) {
            *slice = frame;
        }
        f(&slices[..frames.len()])
    } else {
        let slices: Vec<&[u8]> = frames.iter().map(|m| &**m).collect();
        f(&slices)
    }
}

pub use error::{DecodeError, ErrorCode};
pub use headers::Headers;
pub use job::{ContentType, JobCall, JobResult, Outcome, Value};
pub use message::{
    decode, decode_with_limit, new_msgid, peek_msgid, Command, Envelope, Frame, Inform, Message, PeerType, Reply,
    ReplyNotice, Request, ResultFrames, Timing,
};

/// The protocol version every frame carries, as EventMQ 0.3.13 spells it.
pub const VERSION: &str = "eMQP/1.0";
/// Versions this implementation accepts; anything else is answered with
/// `ERROR version`.
pub const SUPPORTED_VERSIONS: &[&str] = &[VERSION];

/// EventMQ's default ports, kept so that unmodified EventMQ peers find us.
pub const DEFAULT_BACKEND_PORT: u16 = 47290;
pub const DEFAULT_FRONTEND_PORT: u16 = 47291;
pub const DEFAULT_ADMIN_PORT: u16 = 47293;

/// The queue a job goes to when it names none.
pub const DEFAULT_QUEUE: &str = "default";
/// The weight a queue gets when a jobmanager names none.
pub const DEFAULT_WEIGHT: i64 = 10;

/// Largest single frame the decoder accepts, unless the caller sets its own.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
/// Most frames one message may have (identity and envelope included).
pub const MAX_FRAMES: usize = 16;
