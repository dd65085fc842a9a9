//! The client's errors: one variant per thing a caller may want to handle.

use emq_proto::{ErrorCode, Outcome, Value};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("queue {queue:?} is full")]
    QueueFull { queue: String },
    #[error("no handler {handler:?} on the jobmanager")]
    UnknownHandler { handler: String, message: String },
    #[error("no result within {0:?}")]
    Timeout(std::time::Duration),
    #[error("job {outcome}: {message}", outcome = outcome.as_str())]
    JobFailed {
        outcome: Outcome,
        message: String,
        value: Value,
    },
    #[error("router unreachable at {endpoint} (no connection within {waited:?})")]
    Unreachable {
        endpoint: String,
        waited: std::time::Duration,
    },
    /// The connection was refused during its handshake: a key not on the
    /// allowlist, CURVE on one side only, or the router's connection limit.
    #[error("connection rejected: {0}")]
    Rejected(String),
    /// Bad CURVE settings (e.g. this libzmq has no CURVE).
    #[error("security settings: {0}")]
    Security(#[from] emq_net::curve::CurveError),
    #[error("router refused the message: {code}: {reason}")]
    Refused { code: ErrorCode, reason: String },
    #[error("unknown job {0} (never submitted, or its result expired)")]
    UnknownJob(String),
    #[error("bad answer from router: {0}")]
    Protocol(String),
    #[error("zeromq: {0}")]
    Zmq(#[from] zmq::Error),
}
