//! The client's errors: one variant per thing a caller may want to handle.

use emq_proto::{ErrorCode, Outcome, Value};

/// Why a call to the router did not give what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The queue's waiting buffer (or the router's) is full: try later.
    #[error("queue {queue:?} is full")]
    QueueFull {
        /// The queue.
        queue: String,
    },
    /// No jobmanager has a handler of that name.
    #[error("no handler {handler:?} on the jobmanager")]
    UnknownHandler {
        /// The handler asked for.
        handler: String,
        /// The jobmanager's message.
        message: String,
    },
    /// No answer within the time given.
    #[error("no result within {0:?}")]
    Timeout(std::time::Duration),
    /// The job ran and did not succeed.
    #[error("job {outcome}: {message}", outcome = outcome.as_str())]
    JobFailed {
        /// How it ended.
        outcome: Outcome,
        /// Why.
        message: String,
        /// What it left (a program's output, say).
        value: Value,
    },
    /// Nothing answered at the router's address.
    #[error("router unreachable at {endpoint} (no connection within {waited:?})")]
    Unreachable {
        /// The address(es) tried.
        endpoint: String,
        /// How long we waited.
        waited: std::time::Duration,
    },
    /// The connection was refused during its handshake: a key not on the
    /// allowlist, CURVE on one side only, or the router's connection limit.
    #[error("connection rejected: {0}")]
    Rejected(String),
    /// Bad CURVE settings (e.g. a key file that does not parse).
    #[error("security settings: {0}")]
    Security(#[from] emq_net::curve::CurveError),
    /// The router refused the message.
    #[error("router refused the message: {code}: {reason}")]
    Refused {
        /// Machine-readable.
        code: ErrorCode,
        /// For people.
        reason: String,
    },
    /// The router does not know the job.
    #[error("unknown job {0} (never submitted, or its result expired)")]
    UnknownJob(String),
    /// The job was not guaranteed and its router restarted before it ended:
    /// the router does not know it any more (send it again, or send it
    /// guaranteed).
    #[error("job lost: {0}")]
    Lost(String),
    /// The router's answer made no sense to this client.
    #[error("bad answer from router: {0}")]
    Protocol(String),
    /// ZeroMQ failed.
    #[error("zeromq: {0}")]
    Zmq(#[from] zmq::Error),
}
