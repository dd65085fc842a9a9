//! The dashboard's line to the routing loop: a DEALER socket connected to
//! the admin socket over `inproc://` (same process, no handshake), speaking
//! the admin protocol like `emq-cli`. Whatever the dashboard does, an admin
//! can do with `emq-cli`, and the core has one way in.

use std::time::Duration;

use emq_proto::{Message, MsgIds, Reply};

/// Where the admin socket also listens for the dashboard.
pub(crate) const ENDPOINT: &str = "inproc://emq-dashboard";

/// Longest wait for an answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Why an admin command brought no view.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AskError {
    /// The router refused it (ERROR), with its reason.
    #[error("{code}: {reason}")]
    Refused {
        /// The ERROR code.
        code: emq_proto::ErrorCode,
        /// Its reason.
        reason: String,
    },
    /// No answer in time, a socket error, or an answer of the wrong kind.
    #[error("{0}")]
    Broken(String),
}

/// The DEALER and its msgids.
pub(crate) struct AdminLink {
    socket: zmq::Socket,
    ids: MsgIds,
}

impl AdminLink {
    /// Connect `socket` (a DEALER of the router's context) to [`ENDPOINT`].
    pub(crate) fn connect(socket: zmq::Socket) -> Result<AdminLink, zmq::Error> {
        socket.set_identity(b"dashboard")?;
        socket.set_linger(0)?;
        socket.connect(ENDPOINT)?;
        Ok(AdminLink {
            socket,
            ids: MsgIds::from_seed(emq_net::random_seed()),
        })
    }

    /// Send `msg` and wait for its answer. Answers do not name the
    /// request they answer; the router answers each in turn, and one left
    /// over from a request that timed out is dropped before sending.
    pub(crate) fn ask(&mut self, msg: Message) -> Result<Message, AskError> {
        let broken = |e: zmq::Error| AskError::Broken(format!("router link: {e}"));
        while self.socket.recv_multipart(zmq::DONTWAIT).is_ok() {}
        let msgid = self.ids.next();
        self.socket
            .send_multipart(msg.encode_with_id(&msgid), 0)
            .map_err(broken)?;
        if self
            .socket
            .poll(zmq::POLLIN, ANSWER_WITHIN.as_millis() as i64)
            .map_err(broken)?
            == 0
        {
            return Err(AskError::Broken(format!(
                "the router did not answer within {ANSWER_WITHIN:?}"
            )));
        }
        let frames = self.socket.recv_multipart(0).map_err(broken)?;
        match emq_proto::decode(&frames)
            .map_err(|e| AskError::Broken(e.to_string()))?
            .message
        {
            Message::Error { code, reason, .. } => Err(AskError::Refused { code, reason }),
            other => Ok(other),
        }
    }

    /// Send `msg` and read its answer as the JSON view `T`.
    pub(crate) fn view<T: serde::de::DeserializeOwned>(&mut self, msg: Message) -> Result<T, AskError> {
        match self.ask(msg)? {
            Message::Reply(Reply::Notice(n)) => n.view().map_err(|e| AskError::Broken(e.to_string())),
            other => Err(AskError::Broken(format!("unexpected {}", other.command().as_str()))),
        }
    }
}
