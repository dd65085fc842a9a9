//! Decode errors and the ERROR codes that carry them back to a peer.

use thiserror::Error;

/// Why a multipart message could not be decoded. Each variant maps to the
/// [`ErrorCode`] the router answers with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("message has {got} frames, {command} needs at least {need}")]
    TooFewFrames {
        command: &'static str,
        need: usize,
        got: usize,
    },
    #[error("message has {got} frames, at most {max} are allowed")]
    TooManyFrames { got: usize, max: usize },
    #[error("first frame must be empty (the DEALER delimiter)")]
    MissingDelimiter,
    #[error("frame {index} is not UTF-8")]
    NotUtf8 { index: usize },
    #[error("unsupported protocol version {theirs:?}, this router speaks {ours}")]
    VersionMismatch { ours: &'static str, theirs: String },
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("frame {index} is {size} bytes, the limit is {max}")]
    FrameTooLarge { index: usize, size: usize, max: usize },
    #[error("bad {what}: {reason}")]
    BadPayload { what: &'static str, reason: String },
}

impl DecodeError {
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
    /// The peer must INFORM before it sends this command.
    NotInformed,
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
