//! Exit codes, one table for every command (README "emq-cli"), and how
//! each error maps onto it.

use emq_client::ClientError;

/// What `emq-cli` exits with. A program run with `send --wait -- PROGRAM`
/// passes its own exit code through instead (128 + N when killed by signal N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done as asked.
    Ok = 0,
    /// The job ran and failed (failed, crashed, timed out, unknown handler,
    /// bad request, cancelled).
    JobFailed = 1,
    /// The router refused: queue full, unknown job, a job not in a state
    /// that allows the command (cancel a running job, retry one not dead),
    /// an admin command on the wrong endpoint.
    Refused = 2,
    /// The router could not be reached.
    Unreachable = 3,
    /// No answer (or no result) in time.
    Timeout = 4,
    /// The router refused the connection (key not allowed, CURVE on one side
    /// only, too many connections).
    Rejected = 5,
    /// The command line or its input cannot be used (bad flags, bad JSON,
    /// nothing to send, a missing file, a bad key file).
    Usage = 64,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Its name in `--json` errors.
    pub fn kind(self) -> &'static str {
        match self {
            Exit::Ok => "ok",
            Exit::JobFailed => "job-failed",
            Exit::Refused => "refused",
            Exit::Unreachable => "unreachable",
            Exit::Timeout => "timeout",
            Exit::Rejected => "rejected",
            Exit::Usage => "usage",
        }
    }

    /// The code for a client error.
    pub fn of(error: &ClientError) -> Exit {
        match error {
            ClientError::UnknownHandler { .. } | ClientError::JobFailed { .. } => Exit::JobFailed,
            ClientError::QueueFull { .. } | ClientError::Refused { .. } | ClientError::UnknownJob(_) => Exit::Refused,
            ClientError::Unreachable { .. } => Exit::Unreachable,
            ClientError::Timeout(_) => Exit::Timeout,
            ClientError::Rejected(_) => Exit::Rejected,
            ClientError::Security(_) => Exit::Usage,
            // A router that answers nonsense, or ZeroMQ failing: the request
            // failed, nothing was refused.
            _ => Exit::JobFailed,
        }
    }
}

/// Why a command did not succeed: what to say and what to exit with.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// The reason, for people (`emq-cli: ...` on stderr) and for `--json`.
    pub message: String,
    /// The job it is about, when there is one.
    pub id: Option<String>,
}

impl Failure {
    /// A command line or input that cannot be used.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            exit: Exit::Usage,
            message: message.into(),
            id: None,
        }
    }

    /// A refusal (by the router, or of a job's state).
    pub fn refused(message: impl Into<String>) -> Failure {
        Failure {
            exit: Exit::Refused,
            message: message.into(),
            id: None,
        }
    }

    /// The same failure, about job `id`.
    pub fn about(mut self, id: &str) -> Failure {
        self.id = Some(id.to_string());
        self
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let exit = Exit::of(&e);
        let message = match &e {
            // The router's reason names what it refused; say who refused.
            ClientError::Refused { code, reason } => {
                format!("router refused: {code}: {}", emq_client::printable(reason))
            }
            other => emq_client::printable(&other.to_string()).into_owned(),
        };
        Failure {
            exit,
            message,
            id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emq_client::{ErrorCode, Outcome};
    use std::time::Duration;

    /// The README's table, error by error.
    #[test]
    fn every_error_has_the_code_the_readme_gives() {
        let cases: Vec<(ClientError, u8)> = vec![
            (
                ClientError::JobFailed {
                    outcome: Outcome::Crashed,
                    message: String::new(),
                    value: Default::default(),
                },
                1,
            ),
            (
                ClientError::UnknownHandler {
                    handler: "x".into(),
                    message: String::new(),
                },
                1,
            ),
            (ClientError::QueueFull { queue: "q".into() }, 2),
            (ClientError::UnknownJob("j".into()), 2),
            (
                ClientError::Refused {
                    code: ErrorCode::AdminOnly,
                    reason: String::new(),
                },
                2,
            ),
            (
                ClientError::Unreachable {
                    endpoint: "tcp://x:1".into(),
                    waited: Duration::from_secs(1),
                },
                3,
            ),
            (ClientError::Timeout(Duration::from_secs(1)), 4),
            (ClientError::Rejected("no".into()), 5),
        ];
        for (error, code) in cases {
            assert_eq!(Exit::of(&error).code(), code, "{error}");
        }
        assert_eq!(Failure::usage("x").exit.code(), 64);
        assert_eq!(
            emq_cmd::EXIT_USAGE,
            Exit::Usage.code(),
            "one usage code for every binary"
        );
    }
}
