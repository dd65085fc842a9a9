//! Decode errors and the ERROR codes that carry them back to a peer.

use thiserror::Error;

/// Why a multipart message could not be decoded. Each variant maps to the
/// [`ErrorCode`] the router answers with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer frames than the command needs.
    #[error("message has {got} frames, {command} needs at least {need}")]
    TooFewFrames {
        /// The command (or "any").
        command: &'static str,
        /// Frames it needs, envelope included.
        need: usize,
        /// Frames the message has.
        got: usize,
    },
    /// More frames than any message may have.
    #[error("message has {got} frames, at most {max} are allowed")]
    TooManyFrames {
        /// Frames the message has.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// Frame 0 is not the empty delimiter a DEALER sends.
    #[error("first frame must be empty (the DEALER delimiter)")]
    MissingDelimiter,
    /// A frame that must be text is not UTF-8.
    #[error("frame {index} is not UTF-8")]
    NotUtf8 {
        /// Which frame (0 = the delimiter).
        index: usize,
    },
    /// Frame 1 names a version this implementation does not speak.
    #[error("unsupported protocol version {theirs:?}, this router speaks {ours}")]
    VersionMismatch {
        /// The version spoken here.
        ours: &'static str,
        /// The version the peer sent (truncated).
        theirs: String,
    },
    /// Frame 2 is no known command.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// A frame over the size limit.
    #[error("frame {index} is {size} bytes, the limit is {max}")]
    FrameTooLarge {
        /// Which frame.
        index: usize,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A payload frame that does not parse.
    #[error("bad {what}: {reason}")]
    BadPayload {
        /// Which part of the message.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl DecodeError {
    /// The ERROR code that answers this.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::VersionMismatch { .. } => ErrorCode::Version,
            DecodeError::UnknownCommand(_) => ErrorCode::UnknownCommand,
            DecodeError::FrameTooLarge { .. } | DecodeError::TooManyFrames { .. } => ErrorCode::TooLarge,
            _ => ErrorCode::Malformed,
        }
    }

    pub(crate) fn bad(what: &'static str, reason: impl ToString) -> Self {
        DecodeError::BadPayload {
            what,
            reason: reason.to_string(),
        }
    }
}

/// The machine-readable code in an ERROR message (its second payload frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The message could not be parsed.
    Malformed,
    /// The version frame is not one this router speaks.
    Version,
    /// The command is unknown, or not allowed on this endpoint.
    UnknownCommand,
    /// A frame or the message is over the configured size limit.
    TooLarge,
    /// The queue's waiting buffer (or the router's total) is full.
    QueueFull,
    /// An admin command arrived on a non-admin endpoint.
    AdminOnly,
    /// A query named a msgid the router does not know (or no longer keeps).
    UnknownJob,
    /// The jobmanager has no handler of that name.
    UnknownHandler,
    /// The job exists, but its state does not allow this (RETRY of a job
    /// that is not dead-lettered, say).
    WrongState,
    /// The peer must INFORM before it sends this command.
    NotInformed,
    /// The message parses but a value in it cannot be used: a malformed
    /// delay, a cron expression or time zone that does not parse, an
    /// interval of zero.
    Invalid,
    /// No schedule of that name (UNSCHEDULE, schedule admin commands).
    UnknownSchedule,
    /// No graph of that id (GRAPH_QUERY, GRAPH_CANCEL).
    UnknownGraph,
    /// The router is stopping and takes no new work.
    ShuttingDown,
    /// A code this build does not know; kept verbatim.
    Other,
}

impl ErrorCode {
    /// The code as it travels.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// A code from its text; one this build does not know is [`ErrorCode::Other`].
    pub fn parse(s: &str) -> ErrorCode {
        s.parse().unwrap_or(ErrorCode::Other)
    }
}
