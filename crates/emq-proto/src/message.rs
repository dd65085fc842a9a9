//! Typed eMQP/1.0 messages and their multipart framing.
//!
//! As a DEALER sends it (a ROUTER sees the peer identity prepended, which the
//! transport strips before calling [`decode`]):
//!
//! ```text
//! ["", "eMQP/1.0", COMMAND, MSGID, payload...]
//! ```

use serde::{Deserialize, Serialize};

use crate::views::{Admission, JobDetail, JobManagerState, JobState, QueueChange, ScheduleAction, ScheduleSpec};
use crate::{
    ContentType, DecodeError, ErrorCode, Headers, Outcome, DEFAULT_MAX_FRAME, MAX_FRAMES, SUPPORTED_VERSIONS, VERSION,
};

/// Every command of eMQP/1.0 plus emq's extensions (ERROR, QUERY, JOB, ...).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumIter, strum::EnumString, strum::IntoStaticStr, strum::Display,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)] // Each is described in protocol.md section 4.
pub enum Command {
    Inform,
    Ack,
    Ready,
    Request,
    Reply,
    Heartbeat,
    Kbye,
    Disconnect,
    Status,
    RouterShowWorkers,
    RouterShowSchedulers,
    Schedule,
    Unschedule,
    Error,
    Query,
    Job,
    Cancel,
    Hello,
    Dead,
    Retry,
    Purge,
    Waiting,
    Discard,
    Schedules,
    ScheduleSet,
    ScheduleCtl,
    QueueSet,
    Graph,
    GraphQuery,
    GraphCancel,
    GraphInfo,
    Graphs,
    Batch,
}

impl Command {
    /// The command frame's text.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// A command from its frame's text.
    pub fn parse(s: &str) -> Option<Command> {
        s.parse().ok()
    }
}

/// What kind of peer an INFORM announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerType {
    /// A jobmanager (EventMQ calls it a worker).
    Worker,
    /// An EventMQ scheduler process (emq-router refuses it).
    Scheduler,
}

/// Heartbeat timing a peer announces (INFORM from a jobmanager, ACK from the
/// router), so that neither side assumes the other's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// How often the announcing side sends HEARTBEAT.
    pub heartbeat_ms: u64,
    /// How long the announcing side waits in silence before it declares the
    /// other side dead.
    pub liveness_ms: u64,
}

/// INFORM: a jobmanager says which queues it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Inform {
    /// `(weight, queue)`; empty means "the router's default queues".
    pub queues: Vec<(i64, String)>,
    /// What kind of peer it is.
    pub peer_type: PeerType,
    /// emq extension (third frame); absent from EventMQ peers.
    pub timing: Option<Timing>,
    /// emq extension (fourth frame): what else the jobmanager declares.
    pub capabilities: Capabilities,
}

/// What an emq jobmanager declares at INFORM beyond its queues and timing
/// (a JSON object; unknown keys are ignored, so more can be added).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The handlers it has; the router sends it only jobs for those (when
    /// another jobmanager of the queue has the job's handler). Absent: it
    /// takes any job, as EventMQ jobmanagers do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handlers: Option<Vec<String>>,
    /// BATCH (section 4): at INFORM, the jobmanager reads BATCHes of
    /// REQUESTs; in the router's ACK, the router reads BATCHes of the
    /// jobmanager's messages.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
}

impl Capabilities {
    fn is_empty(&self) -> bool {
        *self == Capabilities::default()
    }
}

/// REQUEST: a job, from a client to the router and from the router to a
/// jobmanager. Its msgid is the job's id.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The queue; empty means `default`.
    pub queue: String,
    /// The headers frame, parsed.
    pub headers: Headers,
    /// The job body (`JobCall`), in the encoding the headers name.
    pub body: Vec<u8>,
}

/// SCHEDULE and UNSCHEDULE as EventMQ 0.3.13's client sends them:
/// `[queue, headers, interval_secs, body, cron]` (its protocol document
/// lists one frame fewer: the cron frame may be absent).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRequest {
    /// The queue the fired jobs go to; empty means `default`.
    pub queue: String,
    /// The fired jobs' headers, plus EventMQ's `nohaste` and `run_count:N`
    /// (which stay in [`Headers::other`]).
    pub headers: Headers,
    /// Every this long; `None` (a negative frame, EventMQ's `-1`): use `cron`.
    pub interval: Option<std::time::Duration>,
    /// The job body (EventMQ: `["run", {"path", "callable", ...}]`).
    pub body: Vec<u8>,
    /// A cron expression when `interval` is `None`.
    pub cron: String,
}

impl ScheduleRequest {
    fn interval_text(&self) -> String {
        match self.interval {
            None => "-1".into(),
            Some(d) if d.subsec_nanos() == 0 => d.as_secs().to_string(),
            Some(d) => d.as_secs_f64().to_string(),
        }
    }
}

/// The frames of a job result: `[body, of_msgid, outcome, content_type]`.
/// EventMQ's jobmanager sends only the first two, which decode as a JSON
/// success.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultFrames {
    /// The job (its REQUEST's msgid).
    pub of: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The body's encoding.
    pub content_type: ContentType,
    /// `{"value": ..., "error": ...}` (`JobResult`).
    pub body: Vec<u8>,
}

impl ResultFrames {
    /// Take apart the frames of a REPLY made by [`Message::into_frames`]
    /// (the router's own output, handed back when it could not be sent),
    /// moving the body out instead of copying it.
    pub fn from_reply_frames(mut frames: Vec<Vec<u8>>) -> Result<ResultFrames, DecodeError> {
        if frames.len() != 8 {
            return Err(DecodeError::TooFewFrames {
                command: "REPLY",
                need: 8,
                got: frames.len(),
            });
        }
        fn text(frames: &[Vec<u8>], i: usize) -> Result<&str, DecodeError> {
            std::str::from_utf8(&frames[i]).map_err(|_| DecodeError::NotUtf8 { index: i })
        }
        let outcome = parse_outcome(text(&frames, 6)?)?;
        let content_type = parse_content_type(text(&frames, 7)?)?;
        let of = text(&frames, 5)?.to_string();
        Ok(ResultFrames {
            of,
            outcome,
            content_type,
            body: std::mem::take(&mut frames[4]),
        })
    }
}

/// A one-frame REPLY: an admin command's JSON answer, or EventMQ's dispatch
/// notice carrying a request msgid. Which one is known by whoever asked.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyNotice(pub String);

/// REPLY, in its two shapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// One frame: an admin answer or a dispatch notice.
    Notice(ReplyNotice),
    /// A job's result.
    Result(ResultFrames),
}

/// One eMQP message, typed. Each command is described in protocol.md
/// section 4; fields named `of` hold the msgid the message is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A jobmanager announces itself.
    Inform(Inform),
    /// Acknowledges the message `of` (INFORM, a guaranteed, delayed or
    /// keyed REQUEST, DISCONNECT); to an INFORM the router adds its timing.
    Ack {
        /// The acknowledged message.
        of: String,
        /// The router's heartbeat timing (extension).
        timing: Option<Timing>,
        /// What became of a keyed submission (extension, third frame).
        admission: Option<Admission>,
        /// To an INFORM that asked for batches: what the router reads
        /// (extension, fourth frame; empty is not sent).
        capabilities: Capabilities,
    },
    /// `count` free slots (extension: a count frame; absent means 1, which is
    /// all EventMQ sends).
    Ready {
        /// Slots announced.
        count: u32,
    },
    /// A job.
    Request(Request),
    /// A result, or a one-frame answer.
    Reply(Reply),
    /// A sign of life, both ways.
    Heartbeat {
        /// The sender's clock, decimal seconds (informational).
        unix_time: String,
        /// Extension: the jobmanager's state.
        state: Option<JobManagerState>,
        /// Extension (after `state`): the jobmanager's workers, for the
        /// router's gauges.
        workers: Option<crate::views::WorkerCounts>,
    },
    /// Goodbye: a jobmanager leaving, or the router stopping.
    Kbye,
    /// Admin: stop the router.
    Disconnect,
    /// Admin: the router's status ([`crate::views::RouterStatus`]).
    Status,
    /// Admin: the jobmanagers ([`crate::views::WorkersView`]).
    RouterShowWorkers,
    /// Admin: EventMQ's schedulers ([`crate::views::SchedulersView`]).
    RouterShowSchedulers,
    /// Create or replace a schedule (EventMQ's client command).
    Schedule(ScheduleRequest),
    /// Remove the schedule a SCHEDULE with the same call and queue made.
    Unschedule(ScheduleRequest),
    /// Extension (admin): list the schedules ([`crate::views::ScheduleList`]).
    Schedules,
    /// Extension (admin): create or replace the schedule `spec.name`, firing
    /// jobs with `body`; answered with its [`crate::views::ScheduleInfo`].
    ScheduleSet {
        /// What to fire, where, when.
        spec: ScheduleSpec,
        /// The fired jobs' body, in the encoding `spec.headers` names.
        body: Vec<u8>,
    },
    /// Extension (admin): change a queue's flow control (pause, concurrency,
    /// rate); answered with its [`crate::views::QueueView`].
    QueueSet {
        /// The queue.
        queue: String,
        /// What to set.
        change: QueueChange,
    },
    /// Extension: submit a graph of jobs (protocol.md section 15); answered
    /// with GRAPH_INFO once journaled, or ERROR naming the problem.
    Graph {
        /// The graph.
        spec: Box<crate::graph::GraphSpec>,
    },
    /// Extension: ask for a graph's state; answered with GRAPH_INFO.
    GraphQuery {
        /// The graph's id.
        id: String,
    },
    /// Extension: cancel every node of a graph that has not started;
    /// answered with GRAPH_INFO.
    GraphCancel {
        /// The graph's id.
        id: String,
    },
    /// Extension: a graph's state (answer to GRAPH, GRAPH_QUERY,
    /// GRAPH_CANCEL, and sent when a graph submitted with `notify` ends).
    GraphInfo {
        /// The graph.
        view: Box<crate::graph::GraphView>,
    },
    /// Extension (admin): list the graphs ([`crate::graph::GraphList`]).
    Graphs,
    /// Extension (admin): pause, resume or remove a schedule; answered with
    /// its [`crate::views::ScheduleInfo`] (as it was, for `remove`).
    ScheduleCtl {
        /// The schedule.
        name: String,
        /// What to do.
        action: ScheduleAction,
    },
    /// Extension: a refusal, naming the msgid it answers (may be empty).
    Error {
        /// The refused message.
        of: String,
        /// Machine-readable.
        code: ErrorCode,
        /// For people.
        reason: String,
    },
    /// Extension: ask for the state (and result) of a job by msgid.
    Query {
        /// The job.
        of: String,
    },
    /// Extension: answer to QUERY; `detail` travels as a JSON object.
    Job {
        /// The job.
        of: String,
        /// Where it is.
        state: JobState,
        /// Its queue, attempts, log (boxed: the largest part of any message).
        detail: Box<JobDetail>,
        /// Its result, once it has one.
        result: Option<ResultFrames>,
    },
    /// Extension: cancel a job that has not started.
    Cancel {
        /// The job.
        of: String,
    },
    /// Sent by EventMQ's admin shell on connect; never answered.
    Hello,
    /// Extension (admin): list dead-lettered jobs; answered by a JSON notice.
    Dead,
    /// Extension (admin): put a dead-lettered job back in its queue.
    Retry {
        /// The job.
        of: String,
    },
    /// Extension (admin): cancel every job waiting in a queue; answered by a
    /// JSON notice `{"queue", "purged"}`.
    Purge {
        /// The queue.
        queue: String,
    },
    /// Extension (admin): a page of the jobs waiting in a queue, oldest
    /// first; answered by a JSON notice ([`crate::views::JobPage`]).
    Waiting {
        /// The queue.
        queue: String,
        /// Jobs skipped from the oldest.
        offset: u64,
        /// Most jobs listed.
        limit: u64,
    },
    /// Extension (admin): drop a dead-lettered job for good; answered by a
    /// JSON notice ([`crate::views::Discarded`]).
    Discard {
        /// The job.
        of: String,
    },
}

impl Message {
    /// Its command.
    pub fn command(&self) -> Command {
        match self {
            Message::Inform(_) => Command::Inform,
            Message::Ack { .. } => Command::Ack,
            Message::Ready { .. } => Command::Ready,
            Message::Request(_) => Command::Request,
            Message::Reply(_) => Command::Reply,
            Message::Heartbeat { .. } => Command::Heartbeat,
            Message::Kbye => Command::Kbye,
            Message::Disconnect => Command::Disconnect,
            Message::Status => Command::Status,
            Message::RouterShowWorkers => Command::RouterShowWorkers,
            Message::RouterShowSchedulers => Command::RouterShowSchedulers,
            Message::Schedule(_) => Command::Schedule,
            Message::Unschedule(_) => Command::Unschedule,
            Message::Schedules => Command::Schedules,
            Message::ScheduleSet { .. } => Command::ScheduleSet,
            Message::ScheduleCtl { .. } => Command::ScheduleCtl,
            Message::QueueSet { .. } => Command::QueueSet,
            Message::Graph { .. } => Command::Graph,
            Message::GraphQuery { .. } => Command::GraphQuery,
            Message::GraphCancel { .. } => Command::GraphCancel,
            Message::GraphInfo { .. } => Command::GraphInfo,
            Message::Graphs => Command::Graphs,
            Message::Error { .. } => Command::Error,
            Message::Query { .. } => Command::Query,
            Message::Job { .. } => Command::Job,
            Message::Cancel { .. } => Command::Cancel,
            Message::Hello => Command::Hello,
            Message::Dead => Command::Dead,
            Message::Retry { .. } => Command::Retry,
            Message::Purge { .. } => Command::Purge,
            Message::Waiting { .. } => Command::Waiting,
            Message::Discard { .. } => Command::Discard,
        }
    }

    /// Like [`Message::encode_with_id`], but consuming the message, so that
    /// a result's or a request's body moves into its frame instead of being
    /// copied (the hot path of the router and the jobmanager).
    pub fn into_frames(self, msgid: &str) -> Vec<Vec<u8>> {
        match self {
            Message::Reply(Reply::Result(r)) => {
                let mut f = envelope(Command::Reply, msgid);
                f.push(r.body);
                f.push(r.of.into_bytes());
                f.push(r.outcome.as_str().as_bytes().to_vec());
                f.push(r.content_type.as_str().as_bytes().to_vec());
                f
            }
            Message::Request(r) => {
                let mut f = envelope(Command::Request, msgid);
                f.push(r.queue.into_bytes());
                f.push(r.headers.encode().into_bytes());
                f.push(r.body);
                f
            }
            other => other.encode_with_id(msgid),
        }
    }

    /// `["", VERSION, COMMAND, msgid, payload...]`.
    pub fn encode_with_id(&self, msgid: &str) -> Vec<Vec<u8>> {
        let mut f = envelope(self.command(), msgid);
        let s = |x: &str| x.as_bytes().to_vec();
        match self {
            Message::Inform(i) => {
                let queues: Vec<(i64, &str)> = i.queues.iter().map(|(w, q)| (*w, q.as_str())).collect();
                f.push(if queues.is_empty() {
                    Vec::new()
                } else {
                    serde_json::to_vec(&queues).unwrap_or_default()
                });
                f.push(s(match i.peer_type {
                    PeerType::Worker => "worker",
                    PeerType::Scheduler => "scheduler",
                }));
                if let Some(t) = &i.timing {
                    f.push(serde_json::to_vec(t).unwrap_or_default());
                    if !i.capabilities.is_empty() {
                        f.push(serde_json::to_vec(&i.capabilities).unwrap_or_default());
                    }
                }
            }
            Message::Ack {
                of,
                timing,
                admission,
                capabilities,
            } => {
                f.push(s(of));
                let more = admission.is_some() || !capabilities.is_empty();
                match timing {
                    Some(t) => f.push(serde_json::to_vec(t).unwrap_or_default()),
                    None if more => f.push(Vec::new()),
                    None => {}
                }
                match admission {
                    Some(a) => f.push(serde_json::to_vec(a).unwrap_or_default()),
                    None if !capabilities.is_empty() => f.push(Vec::new()),
                    None => {}
                }
                if !capabilities.is_empty() {
                    f.push(serde_json::to_vec(capabilities).unwrap_or_default());
                }
            }
            Message::Request(r) => {
                f.push(s(&r.queue));
                f.push(s(&r.headers.encode()));
                f.push(r.body.clone());
            }
            Message::Reply(Reply::Notice(ReplyNotice(text))) => f.push(s(text)),
            Message::Reply(Reply::Result(r)) => push_result(&mut f, r),
            Message::Heartbeat {
                unix_time,
                state,
                workers,
            } => {
                f.push(s(unix_time));
                if let Some(st) = state {
                    f.push(s(st.as_str()));
                    if let Some(w) = workers {
                        f.push(serde_json::to_vec(w).unwrap_or_default());
                    }
                }
            }
            Message::Schedule(r) | Message::Unschedule(r) => {
                f.push(s(&r.queue));
                f.push(s(&r.headers.encode()));
                f.push(s(&r.interval_text()));
                f.push(r.body.clone());
                f.push(s(&r.cron));
            }
            Message::ScheduleSet { spec, body } => {
                f.push(serde_json::to_vec(spec).unwrap_or_default());
                f.push(body.clone());
            }
            Message::ScheduleCtl { name, action } => {
                f.push(s(name));
                f.push(s(action.as_str()));
            }
            Message::QueueSet { queue, change } => {
                f.push(s(queue));
                f.push(serde_json::to_vec(change).unwrap_or_default());
            }
            Message::Graph { spec } => f.push(serde_json::to_vec(spec).unwrap_or_default()),
            Message::GraphQuery { id } | Message::GraphCancel { id } => f.push(s(id)),
            Message::GraphInfo { view } => {
                f.push(s(&view.id));
                f.push(serde_json::to_vec(view).unwrap_or_default());
            }
            Message::Error { of, code, reason } => {
                f.push(s(of));
                f.push(s(code.as_str()));
                f.push(s(reason));
            }
            Message::Query { of } | Message::Cancel { of } | Message::Retry { of } | Message::Discard { of } => {
                f.push(s(of))
            }
            Message::Purge { queue } => f.push(s(queue)),
            Message::Waiting { queue, offset, limit } => {
                f.push(s(queue));
                f.push(s(&offset.to_string()));
                f.push(s(&limit.to_string()));
            }
            Message::Job {
                of,
                state,
                detail,
                result,
            } => {
                f.push(s(of));
                f.push(s(state.as_str()));
                f.push(serde_json::to_vec(detail).unwrap_or_default());
                if let Some(r) = result {
                    f.push(s(r.outcome.as_str()));
                    f.push(s(r.content_type.as_str()));
                    f.push(r.body.clone());
                }
            }
            Message::Ready { count } => {
                if *count != 1 {
                    f.push(s(&count.to_string()));
                }
            }
            Message::Kbye
            | Message::Disconnect
            | Message::Status
            | Message::RouterShowWorkers
            | Message::RouterShowSchedulers
            | Message::Hello
            | Message::Dead
            | Message::Schedules
            | Message::Graphs => {}
        }
        f
    }
}

/// The frames of a REQUEST from borrowed parts: what the router forwards to
/// a jobmanager (the headers frame as the router keeps it, the body as the
/// client sent it).
pub fn request_frames(msgid: &str, queue: &str, headers: &str, body: &[u8]) -> Vec<Vec<u8>> {
    let mut f = envelope(Command::Request, msgid);
    f.push(queue.as_bytes().to_vec());
    f.push(headers.as_bytes().to_vec());
    f.push(body.to_vec());
    f
}

/// The first four frames of every message.
fn envelope(command: Command, msgid: &str) -> Vec<Vec<u8>> {
    let mut f: Vec<Vec<u8>> = Vec::with_capacity(8);
    f.push(Vec::new());
    f.push(VERSION.as_bytes().to_vec());
    f.push(command.as_str().as_bytes().to_vec());
    f.push(msgid.as_bytes().to_vec());
    f
}

fn push_result(f: &mut Vec<Vec<u8>>, r: &ResultFrames) {
    f.push(r.body.clone());
    f.push(r.of.as_bytes().to_vec());
    f.push(r.outcome.as_str().as_bytes().to_vec());
    f.push(r.content_type.as_str().as_bytes().to_vec());
}

/// A decoded message with its msgid.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The message's own id (frame 3).
    pub msgid: String,
    /// What it says.
    pub message: Message,
}

/// Anything that holds a frame's bytes: `Vec<u8>`, `&[u8]`, `zmq::Message`
/// (which the transports receive into, so decoding copies nothing it drops).
pub trait Frame: std::ops::Deref<Target = [u8]> {
    /// The frame's bytes.
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl<T: std::ops::Deref<Target = [u8]>> Frame for T {}

/// Frame `index` as text (it exists).
pub(crate) fn utf8(frames: &[impl Frame], index: usize) -> Result<&str, DecodeError> {
    std::str::from_utf8(frames[index].bytes()).map_err(|_| DecodeError::NotUtf8 { index })
}

/// A msgid or a queue name: text that ends up in logs and on terminals, so
/// it may hold no control characters.
fn name_text<'a>(what: &'static str, text: &'a str) -> Result<&'a str, DecodeError> {
    // Control characters are C0 (one byte below 0x20), DEL, and C1 (U+0080
    // to U+009F, two bytes 0xC2 0x80..=0x9F): a byte scan finds them without
    // decoding characters, which mattered on the hot path.
    let bytes = text.as_bytes();
    if bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Ok(text);
    }
    let control = bytes.iter().enumerate().any(|(i, &b)| {
        b < 0x20 || b == 0x7f || (b == 0xc2 && bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
    });
    if control {
        return Err(DecodeError::bad(what, "control characters are not allowed"));
    }
    Ok(text)
}

fn need(command: Command, payload_len: usize, need: usize) -> Result<(), DecodeError> {
    if payload_len < need {
        return Err(DecodeError::TooFewFrames {
            command: command.as_str(),
            need: need + 4,
            got: payload_len + 4,
        });
    }
    Ok(())
}

/// The msgid of a message that failed to decode, if it can be read, so that the
/// ERROR answering it can name it.
pub fn peek_msgid(frames: &[impl Frame]) -> Option<String> {
    let f = frames.get(3)?;
    let s = std::str::from_utf8(f.bytes()).ok()?;
    (s.len() <= 128).then(|| s.to_string())
}

/// Decode `["", version, COMMAND, msgid, payload...]` with the default frame
/// limit. Never panics.
pub fn decode(frames: &[impl Frame]) -> Result<Envelope, DecodeError> {
    decode_with_limit(frames, DEFAULT_MAX_FRAME)
}

/// Decode with an explicit per-frame size limit.
pub fn decode_with_limit(frames: &[impl Frame], max_frame: usize) -> Result<Envelope, DecodeError> {
    if frames.len() > MAX_FRAMES {
        return Err(DecodeError::TooManyFrames {
            got: frames.len(),
            max: MAX_FRAMES,
        });
    }
    if let Some((index, f)) = frames.iter().enumerate().find(|(_, f)| f.bytes().len() > max_frame) {
        return Err(DecodeError::FrameTooLarge {
            index,
            size: f.bytes().len(),
            max: max_frame,
        });
    }
    if frames.len() < 4 {
        return Err(DecodeError::TooFewFrames {
            command: "any",
            need: 4,
            got: frames.len(),
        });
    }
    if !frames[0].bytes().is_empty() {
        return Err(DecodeError::MissingDelimiter);
    }
    let version = utf8(frames, 1)?;
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(DecodeError::VersionMismatch {
            ours: VERSION,
            theirs: version.chars().take(64).collect(),
        });
    }
    let name = utf8(frames, 2)?;
    let command = Command::parse(name).ok_or_else(|| DecodeError::UnknownCommand(name.chars().take(64).collect()))?;
    let msgid = name_text("msgid", utf8(frames, 3)?)?.to_string();
    let p = &frames[4..];
    let text = |i: usize| utf8(frames, i + 4);
    let message = match command {
        Command::Inform => {
            need(command, p.len(), 2)?;
            let queues = parse_queues(text(0)?)?;
            let peer_type = match text(1)? {
                "worker" => PeerType::Worker,
                "scheduler" => PeerType::Scheduler,
                other => {
                    return Err(DecodeError::bad(
                        "INFORM type",
                        format!("{other:?} is neither worker nor scheduler"),
                    ))
                }
            };
            let timing = match p.get(2) {
                Some(_) => Some(serde_json::from_str(text(2)?).map_err(|e| DecodeError::bad("INFORM timing", e))?),
                None => None,
            };
            let capabilities = match (&timing, p.get(3)) {
                (Some(_), Some(_)) => {
                    serde_json::from_str(text(3)?).map_err(|e| DecodeError::bad("INFORM capabilities", e))?
                }
                _ => Capabilities::default(),
            };
            Message::Inform(Inform {
                queues,
                peer_type,
                timing,
                capabilities,
            })
        }
        Command::Ack => {
            need(command, p.len(), 1)?;
            let timing = match p.get(1) {
                Some(f) if !f.bytes().is_empty() => serde_json::from_str(text(1)?).ok(),
                _ => None,
            };
            let admission = match p.get(2) {
                Some(f) if !f.bytes().is_empty() => {
                    Some(serde_json::from_str(text(2)?).map_err(|e| DecodeError::bad("ACK admission", e))?)
                }
                _ => None,
            };
            let capabilities = match p.get(3) {
                Some(_) => serde_json::from_str(text(3)?).map_err(|e| DecodeError::bad("ACK capabilities", e))?,
                None => Capabilities::default(),
            };
            Message::Ack {
                of: text(0)?.to_string(),
                timing,
                admission,
                capabilities,
            }
        }
        Command::Ready => {
            let count = match p.first() {
                None => 1,
                Some(_) => match text(0)?.parse::<u32>() {
                    Ok(n @ 1..=1_000_000) => n,
                    _ => return Err(DecodeError::bad("READY count", "not a number from 1 to 1000000")),
                },
            };
            Message::Ready { count }
        }
        Command::Request => {
            need(command, p.len(), 3)?;
            Message::Request(Request {
                queue: name_text("queue", text(0)?)?.to_string(),
                headers: Headers::parse(text(1)?),
                body: p[2].bytes().to_vec(),
            })
        }
        Command::Reply => {
            need(command, p.len(), 1)?;
            if p.len() == 1 {
                Message::Reply(Reply::Notice(ReplyNotice(text(0)?.to_string())))
            } else {
                Message::Reply(Reply::Result(parse_result(frames, 4)?))
            }
        }
        Command::Heartbeat => Message::Heartbeat {
            unix_time: if p.is_empty() {
                String::new()
            } else {
                text(0)?.to_string()
            },
            state: if p.len() > 1 {
                let text = text(1)?;
                let state = text.parse().map_err(|_| {
                    DecodeError::bad("HEARTBEAT state", format!("unknown state {:?}", text.escape_debug()))
                })?;
                Some(state)
            } else {
                None
            },
            workers: if p.len() > 2 {
                Some(serde_json::from_str(text(2)?).map_err(|e| DecodeError::bad("HEARTBEAT workers", e))?)
            } else {
                None
            },
        },
        Command::Kbye => Message::Kbye,
        Command::Hello => Message::Hello,
        Command::Dead => Message::Dead,
        Command::Disconnect => Message::Disconnect,
        Command::Status => Message::Status,
        Command::RouterShowWorkers => Message::RouterShowWorkers,
        Command::RouterShowSchedulers => Message::RouterShowSchedulers,
        Command::Schedule | Command::Unschedule => {
            need(command, p.len(), 4)?;
            let interval = text(2)?.trim();
            let secs: f64 = interval.parse().map_err(|_| {
                DecodeError::bad(
                    "SCHEDULE interval",
                    format!("{:?} is not a number of seconds (-1 for cron)", interval.escape_debug()),
                )
            })?;
            let interval = if secs < 0.0 {
                None
            } else {
                Some(
                    std::time::Duration::try_from_secs_f64(secs)
                        .map_err(|e| DecodeError::bad("SCHEDULE interval", e))?,
                )
            };
            let request = ScheduleRequest {
                queue: name_text("queue", text(0)?)?.to_string(),
                headers: Headers::parse(text(1)?),
                interval,
                body: p[3].bytes().to_vec(),
                cron: if p.len() > 4 {
                    text(4)?.trim().to_string()
                } else {
                    String::new()
                },
            };
            if command == Command::Schedule {
                Message::Schedule(request)
            } else {
                Message::Unschedule(request)
            }
        }
        Command::Schedules => Message::Schedules,
        Command::Graphs => Message::Graphs,
        // Its entries are messages: read with `batch_entries`, not here.
        Command::Batch => return Err(DecodeError::bad("BATCH", "not accepted here")),
        Command::Graph => {
            need(command, p.len(), 1)?;
            Message::Graph {
                spec: Box::new(serde_json::from_str(text(0)?).map_err(|e| DecodeError::bad("GRAPH spec", e))?),
            }
        }
        Command::GraphQuery | Command::GraphCancel => {
            need(command, p.len(), 1)?;
            let id = name_text("graph id", text(0)?)?.to_string();
            if command == Command::GraphQuery {
                Message::GraphQuery { id }
            } else {
                Message::GraphCancel { id }
            }
        }
        Command::GraphInfo => {
            need(command, p.len(), 2)?;
            Message::GraphInfo {
                view: Box::new(serde_json::from_str(text(1)?).map_err(|e| DecodeError::bad("GRAPH_INFO", e))?),
            }
        }
        Command::QueueSet => {
            need(command, p.len(), 2)?;
            Message::QueueSet {
                queue: name_text("queue", text(0)?)?.to_string(),
                change: serde_json::from_str(text(1)?).map_err(|e| DecodeError::bad("QUEUE_SET change", e))?,
            }
        }
        Command::ScheduleSet => {
            need(command, p.len(), 2)?;
            Message::ScheduleSet {
                spec: serde_json::from_str(text(0)?).map_err(|e| DecodeError::bad("SCHEDULE_SET spec", e))?,
                body: p[1].bytes().to_vec(),
            }
        }
        Command::ScheduleCtl => {
            need(command, p.len(), 2)?;
            let action = text(1)?;
            Message::ScheduleCtl {
                name: name_text("schedule name", text(0)?)?.to_string(),
                action: action.parse().map_err(|_| {
                    DecodeError::bad(
                        "SCHEDULE_CTL action",
                        format!("{:?} is not pause, resume or remove", action.escape_debug()),
                    )
                })?,
            }
        }
        Command::Error => {
            need(command, p.len(), 3)?;
            Message::Error {
                of: text(0)?.to_string(),
                code: ErrorCode::parse(text(1)?),
                reason: text(2)?.to_string(),
            }
        }
        Command::Purge => {
            need(command, p.len(), 1)?;
            Message::Purge {
                queue: name_text("queue", text(0)?)?.to_string(),
            }
        }
        Command::Waiting => {
            need(command, p.len(), 3)?;
            let number = |i: usize, what: &'static str| -> Result<u64, DecodeError> {
                let t = text(i)?;
                t.parse()
                    .map_err(|_| DecodeError::bad(what, format!("{:?} is not a count", t.escape_debug())))
            };
            Message::Waiting {
                queue: name_text("queue", text(0)?)?.to_string(),
                offset: number(1, "WAITING offset")?,
                limit: number(2, "WAITING limit")?,
            }
        }
        Command::Query | Command::Cancel | Command::Retry | Command::Discard => {
            need(command, p.len(), 1)?;
            let of = text(0)?.to_string();
            match command {
                Command::Query => Message::Query { of },
                Command::Cancel => Message::Cancel { of },
                Command::Discard => Message::Discard { of },
                _ => Message::Retry { of },
            }
        }
        Command::Job => {
            need(command, p.len(), 3)?;
            let result = if p.len() >= 6 {
                Some(ResultFrames {
                    of: text(0)?.to_string(),
                    outcome: parse_outcome(text(3)?)?,
                    content_type: parse_content_type(text(4)?)?,
                    body: p[5].bytes().to_vec(),
                })
            } else {
                None
            };
            let state = text(1)?;
            Message::Job {
                of: text(0)?.to_string(),
                state: state
                    .parse()
                    .map_err(|_| DecodeError::bad("JOB state", format!("unknown state {:?}", state.escape_debug())))?,
                detail: serde_json::from_str(text(2)?).map_err(|e| DecodeError::bad("JOB detail", e))?,
                result,
            }
        }
    };
    Ok(Envelope { msgid, message })
}

fn parse_outcome(s: &str) -> Result<Outcome, DecodeError> {
    Outcome::parse(s).ok_or_else(|| DecodeError::bad("outcome", format!("unknown outcome {s:?}")))
}

fn parse_content_type(s: &str) -> Result<ContentType, DecodeError> {
    ContentType::parse(s).ok_or_else(|| DecodeError::bad("content type", format!("unknown content type {s:?}")))
}

/// `[body, of, (outcome, content_type)]` starting at `start`.
fn parse_result(frames: &[impl Frame], start: usize) -> Result<ResultFrames, DecodeError> {
    let p = &frames[start..];
    let of = utf8(frames, start + 1)?.to_string();
    let (outcome, content_type) = if p.len() >= 4 {
        (
            parse_outcome(utf8(frames, start + 2)?)?,
            parse_content_type(utf8(frames, start + 3)?)?,
        )
    } else {
        // EventMQ jobmanager: a JSON `{"value": ...}` success.
        (Outcome::Ok, ContentType::Json)
    };
    Ok(ResultFrames {
        of,
        outcome,
        content_type,
        body: p[0].bytes().to_vec(),
    })
}

/// INFORM's queue frame: a JSON list of `[weight, name]` (EventMQ also accepts
/// bare names, which get the default weight); empty means "router default".
fn parse_queues(s: &str) -> Result<Vec<(i64, String)>, DecodeError> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<serde_json::Value> = serde_json::from_str(s).map_err(|e| DecodeError::bad("INFORM queues", e))?;
    let mut queues = Vec::with_capacity(items.len());
    for item in items {
        let pair = match &item {
            serde_json::Value::String(name) => Some((crate::DEFAULT_WEIGHT, name.clone())),
            serde_json::Value::Array(a) if a.len() == 2 => match (&a[0], &a[1]) {
                (w, serde_json::Value::String(name)) => w
                    .as_i64()
                    .or_else(|| w.as_str().and_then(|s| s.parse().ok()))
                    .map(|w| (w, name.clone())),
                _ => None,
            },
            _ => None,
        };
        match pair {
            Some((w, _)) if w < 0 => {
                return Err(DecodeError::bad(
                    "INFORM queues",
                    format!("{item}: weights are zero or more"),
                ))
            }
            Some((w, name)) if !name.is_empty() => queues.push((w, name_text("queue", &name)?.to_string())),
            _ => {
                return Err(DecodeError::bad(
                    "INFORM queues",
                    format!("{item} is not [weight, name]"),
                ))
            }
        }
    }
    Ok(queues)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&[u8]]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.to_vec()).collect()
    }

    #[test]
    fn decodes_eventmq_request_byte_literal() {
        let f = frames(&[
            b"",
            b"eMQP/1.0",
            b"REQUEST",
            b"5b1d6a0e-msg",
            b"default",
            b"reply-requested,timeout:5",
            br#"["run",{"callable":"echo","path":"emq"}]"#,
        ]);
        let env = decode(&f).unwrap();
        assert_eq!(env.msgid, "5b1d6a0e-msg");
        let Message::Request(r) = env.message else {
            panic!("not a request")
        };
        assert_eq!(r.queue, "default");
        assert!(r.headers.reply_requested);
        assert_eq!(r.headers.timeout_secs, 5);
        // Re-encoding gives the same bytes.
        assert_eq!(Message::Request(r).encode_with_id("5b1d6a0e-msg"), f);
    }

    #[test]
    fn decodes_eventmq_inform_and_reply() {
        let f = frames(&[
            b"",
            b"eMQP/1.0",
            b"INFORM",
            b"m1",
            br#"[[10, "default"], [5, "images"]]"#,
            b"worker",
        ]);
        let Message::Inform(i) = decode(&f).unwrap().message else {
            panic!()
        };
        assert_eq!(i.queues, vec![(10, "default".to_string()), (5, "images".to_string())]);
        assert_eq!(i.peer_type, PeerType::Worker);
        assert_eq!(i.timing, None);

        // EventMQ's jobmanager REPLY: [body, request msgid].
        let f = frames(&[b"", b"eMQP/1.0", b"REPLY", b"m2", br#"{"value": 3}"#, b"req-1"]);
        let Message::Reply(Reply::Result(r)) = decode(&f).unwrap().message else {
            panic!()
        };
        assert_eq!(
            (r.of.as_str(), r.outcome, r.content_type),
            ("req-1", Outcome::Ok, ContentType::Json)
        );

        // A one-frame REPLY is an admin answer or a dispatch notice.
        let f = frames(&[b"", b"eMQP/1.0", b"REPLY", b"m3", b"{}"]);
        assert_eq!(
            decode(&f).unwrap().message,
            Message::Reply(Reply::Notice(ReplyNotice("{}".into())))
        );
    }

    #[test]
    fn inform_with_timing_and_empty_queues() {
        let mut msg = Message::Inform(Inform {
            queues: vec![],
            peer_type: PeerType::Worker,
            timing: Some(Timing {
                heartbeat_ms: 250,
                liveness_ms: 1000,
            }),
            capabilities: Capabilities::default(),
        });
        let f = msg.encode_with_id("x");
        assert_eq!(f[4], b"");
        assert_eq!(f[6], br#"{"heartbeat_ms":250,"liveness_ms":1000}"#);
        assert_eq!(f.len(), 7, "no capabilities frame when there are none");
        assert_eq!(decode(&f).unwrap().message, msg);
        if let Message::Inform(i) = &mut msg {
            i.capabilities.handlers = Some(vec!["myapp.add".into(), "emq.echo".into()]);
        }
        let f = msg.encode_with_id("x");
        assert_eq!(f[7], br#"{"handlers":["myapp.add","emq.echo"]}"#);
        assert_eq!(decode(&f).unwrap().message, msg);
    }

    #[test]
    fn every_message_round_trips() {
        let result = ResultFrames {
            of: "r".into(),
            outcome: Outcome::Failed,
            content_type: ContentType::MsgPack,
            body: vec![0x81, 0xff],
        };
        let all = vec![
            Message::Ack {
                of: "a".into(),
                timing: Some(Timing {
                    heartbeat_ms: 1,
                    liveness_ms: 2,
                }),
                admission: None,
                capabilities: Default::default(),
            },
            Message::Ack {
                of: "a".into(),
                timing: None,
                admission: None,
                capabilities: Default::default(),
            },
            Message::Ready { count: 1 },
            Message::Ready { count: 7 },
            Message::Reply(Reply::Result(result.clone())),
            Message::Heartbeat {
                unix_time: "1.5".into(),
                state: Some(JobManagerState::Steady),
                workers: None,
            },
            Message::Heartbeat {
                unix_time: "1.5".into(),
                state: Some(JobManagerState::Active),
                workers: Some(crate::views::WorkerCounts {
                    workers: 4,
                    busy: 3,
                    queued: 2,
                }),
            },
            Message::Heartbeat {
                unix_time: "1.5".into(),
                state: None,
                workers: None,
            },
            Message::Kbye,
            Message::Hello,
            Message::Dead,
            Message::Retry { of: "d".into() },
            Message::Purge { queue: "q".into() },
            Message::Waiting {
                queue: "q".into(),
                offset: 100,
                limit: 50,
            },
            Message::Discard { of: "j1".into() },
            Message::Disconnect,
            Message::Status,
            Message::RouterShowWorkers,
            Message::RouterShowSchedulers,
            Message::Ack {
                of: "a".into(),
                timing: None,
                admission: Some(crate::views::Admission {
                    job: "first".into(),
                    deduplicated: true,
                    replaced: None,
                }),
                capabilities: Capabilities::default(),
            },
            Message::Ack {
                of: "i".into(),
                timing: None,
                admission: None,
                capabilities: Capabilities {
                    handlers: None,
                    batch: true,
                },
            },
            Message::QueueSet {
                queue: "q".into(),
                change: QueueChange {
                    paused: Some(true),
                    concurrency: Some(4),
                    rate: Some(crate::views::Rate { jobs: 10, per_ms: 1000 }),
                },
            },
            Message::Schedules,
            Message::ScheduleCtl {
                name: "nightly".into(),
                action: ScheduleAction::Pause,
            },
            Message::ScheduleSet {
                spec: ScheduleSpec {
                    name: "nightly".into(),
                    queue: "q".into(),
                    cron: Some("0 3 * * *".into()),
                    tz: Some("Europe/Berlin".into()),
                    ..ScheduleSpec::default()
                },
                body: b"{}".to_vec(),
            },
            Message::Schedule(ScheduleRequest {
                queue: "q2".into(),
                headers: Headers::parse("guarantee,nohaste,run_count:3"),
                interval: Some(std::time::Duration::from_secs(5)),
                body: br#"["run", {"callable": "f", "path": "m"}]"#.to_vec(),
                cron: String::new(),
            }),
            Message::Schedule(ScheduleRequest {
                queue: "q".into(),
                headers: Headers::default(),
                interval: None,
                body: b"[]".to_vec(),
                cron: "*/5 * * * *".into(),
            }),
            Message::Unschedule(ScheduleRequest {
                queue: "q".into(),
                headers: Headers::default(),
                interval: Some(std::time::Duration::from_millis(1500)),
                body: b"[]".to_vec(),
                cron: String::new(),
            }),
            Message::Error {
                of: "e".into(),
                code: ErrorCode::QueueFull,
                reason: "full".into(),
            },
            Message::Query { of: "q".into() },
            Message::Cancel { of: "q".into() },
            Message::Job {
                of: "r".into(),
                state: JobState::Finished,
                detail: Box::default(),
                result: Some(result),
            },
            Message::Job {
                of: "r".into(),
                state: JobState::Queued,
                detail: Box::new(JobDetail {
                    queue: "q".into(),
                    guaranteed: true,
                    attempts: Some(1),
                    max_attempts: Some(4),
                    jobmanager: Some("jm".into()),
                    not_before: Some(crate::views::timestamp_ms(1_700_000_000_000)),
                    expires: Some(crate::views::timestamp_ms(1_700_000_060_000)),
                    key: Some("k".into()),
                    log: vec![crate::views::LogEntry {
                        time: crate::views::timestamp_ms(1_700_000_000_123),
                        status: JobState::Queued,
                        message: "queued in q".into(),
                    }],
                    handler: Some("app.add".into()),
                    headers: Some("guarantee".into()),
                    body: Some("[\"run\", {}]".into()),
                    body_bytes: Some(12),
                }),
                result: None,
            },
        ];
        for m in all {
            assert_eq!(m.clone().into_frames("id"), m.encode_with_id("id"), "{m:?}");
            assert_eq!(
                decode(&m.encode_with_id("id")).unwrap(),
                Envelope {
                    msgid: "id".into(),
                    message: m.clone()
                },
                "{m:?}"
            );
        }
    }

    /// As `eventmq.client.messages.send_schedule_request` sends them: nine
    /// frames, the interval as `str(interval_secs or -1)`, the cron last.
    #[test]
    fn eventmq_schedule_frames_decode() {
        let body = br#"["run", {"callable": "job", "path": "tasks", "args": [1], "kwargs": {}, "class_args": [], "class_kwargs": {}}]"#;
        let f = frames(&[
            b"",
            b"eMQP/1.0",
            b"SCHEDULE",
            b"id",
            b"q2",
            b"guarantee,nohaste",
            b"5",
            body,
            b"",
        ]);
        match decode(&f).unwrap().message {
            Message::Schedule(r) => {
                assert_eq!(r.queue, "q2");
                assert!(r.headers.guarantee);
                assert_eq!(r.headers.other, vec!["nohaste"]);
                assert_eq!(r.interval, Some(std::time::Duration::from_secs(5)));
                assert_eq!(r.body, body.to_vec());
                assert_eq!(r.cron, "");
            }
            other => panic!("{other:?}"),
        }
        let f = frames(&[
            b"",
            b"eMQP/1.0",
            b"SCHEDULE",
            b"id",
            b"default",
            b"guarantee",
            b"-1",
            body,
            b"*/5 * * * *",
        ]);
        match decode(&f).unwrap().message {
            Message::Schedule(r) => assert_eq!((r.interval, r.cron.as_str()), (None, "*/5 * * * *")),
            other => panic!("{other:?}"),
        }
        // Its protocol document's seven-frame form (no cron frame).
        let f = frames(&[b"", b"eMQP/1.0", b"UNSCHEDULE", b"id", b"default", b"", b"-1", body]);
        assert!(matches!(decode(&f).unwrap().message, Message::Unschedule(_)));
        let f = frames(&[
            b"",
            b"eMQP/1.0",
            b"SCHEDULE",
            b"id",
            b"default",
            b"",
            b"soon",
            body,
            b"",
        ]);
        let e = decode(&f).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Malformed);
        assert!(e.to_string().contains("not a number of seconds"), "{e}");
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        let cases: Vec<(Vec<Vec<u8>>, ErrorCode)> = vec![
            (frames(&[]), ErrorCode::Malformed),
            (frames(&[b"", b"eMQP/1.0", b"REQUEST"]), ErrorCode::Malformed),
            (frames(&[b"x", b"eMQP/1.0", b"READY", b"m"]), ErrorCode::Malformed),
            (
                frames(&[b"", b"eMQP/1.0", b"REQUEST", b"m", b"q", b"h"]),
                ErrorCode::Malformed,
            ),
            (frames(&[b"", b"\xff\xfe", b"READY", b"m"]), ErrorCode::Malformed),
            (frames(&[b"", b"eMQP/1.0", b"READY", b"\xc3\x28"]), ErrorCode::Malformed),
            (frames(&[b"", b"eMQP/2.0", b"READY", b"m"]), ErrorCode::Version),
            (frames(&[b"", b"eMQP/1.0", b"FROB", b"m"]), ErrorCode::UnknownCommand),
            (
                frames(&[b"", b"eMQP/1.0", b"INFORM", b"m", b"{not json", b"worker"]),
                ErrorCode::Malformed,
            ),
            (
                frames(&[b"", b"eMQP/1.0", b"INFORM", b"m", br#"[[1]]"#, b"worker"]),
                ErrorCode::Malformed,
            ),
            (
                frames(&[b"", b"eMQP/1.0", b"INFORM", b"m", b"", b"robot"]),
                ErrorCode::Malformed,
            ),
            (
                frames(&[b"", b"eMQP/1.0", b"REPLY", b"m", b"{}", b"of", b"weird", b"json"]),
                ErrorCode::Malformed,
            ),
            (
                frames(&[b"", b"eMQP/1.0", b"REQUEST", b"m", b"\xff", b"", b""]),
                ErrorCode::Malformed,
            ),
            (vec![Vec::new(); MAX_FRAMES + 1], ErrorCode::TooLarge),
            (
                frames(&[b"", b"eMQP/1.0", b"INFORM", b"m", br#"[[-1, "q"]]"#, b"worker"]),
                ErrorCode::Malformed,
            ),
            (
                frames(&[b"", b"eMQP/1.0", b"HEARTBEAT", b"m", b"1.0", b"IDLE\n[fake] log line"]),
                ErrorCode::Malformed,
            ),
            (frames(&[b"", b"eMQP/1.0", b"READY", b"m\x1b[2J"]), ErrorCode::Malformed),
            (
                frames(&[b"", b"eMQP/1.0", b"REQUEST", b"m", b"q\nfake", b"", b"[]"]),
                ErrorCode::Malformed,
            ),
            (
                frames(&[b"", b"eMQP/1.0", b"INFORM", b"m", b"[[1, \"a\\u001b\"]]", b"worker"]),
                ErrorCode::Malformed,
            ),
        ];
        for (f, code) in cases {
            let err = decode(&f).expect_err(&format!("{f:?} should not decode"));
            assert_eq!(err.code(), code, "{f:?}: {err}");
        }
        let big = frames(&[b"", b"eMQP/1.0", b"REQUEST", b"m", b"q", b"", &[b'x'; 100]]);
        assert!(matches!(
            decode_with_limit(&big, 64),
            Err(DecodeError::FrameTooLarge { index: 6, .. })
        ));
    }

    /// The byte scan of msgids and queue names finds exactly the control
    /// characters.
    #[test]
    fn name_text_refuses_exactly_the_control_characters() {
        for c in (0..0x3_0000).filter_map(char::from_u32) {
            let text = format!("a{c}b");
            assert_eq!(name_text("msgid", &text).is_err(), c.is_control(), "{:?}", c);
        }
    }

    #[test]
    fn reply_frames_come_apart_again() {
        let result = ResultFrames {
            of: "j".into(),
            outcome: Outcome::TimedOut,
            content_type: ContentType::MsgPack,
            body: vec![0x81, 0x00],
        };
        let frames = Message::Reply(Reply::Result(result.clone())).into_frames("id");
        assert_eq!(ResultFrames::from_reply_frames(frames).unwrap(), result);
        let ack = Message::Ack {
            of: "x".into(),
            timing: None,
            admission: None,
            capabilities: Default::default(),
        };
        assert!(ResultFrames::from_reply_frames(ack.encode_with_id("id")).is_err());
    }

    #[test]
    fn binary_bodies_survive() {
        let f = frames(&[
            b"",
            b"eMQP/1.0",
            b"REQUEST",
            b"m",
            b"q",
            b"content-type:msgpack",
            b"\x00\xff\x80",
        ]);
        let Message::Request(r) = decode(&f).unwrap().message else {
            panic!()
        };
        assert_eq!(r.body, b"\x00\xff\x80");
        assert_eq!(r.headers.content_type, ContentType::MsgPack);
    }
}

/// Random frame sequences: decoding never panics, and what decodes
/// re-encodes to frames that decode to the same message.
#[cfg(test)]
pub(crate) mod properties {
    use super::*;
    use proptest::prelude::*;
    use strum::IntoEnumIterator;

    /// Pieces that make frames often almost valid: real prefixes and
    /// commands, bad UTF-8, JSON fragments and empty frames.
    const PIECES: [&[u8]; 16] = [
        b"",
        b"eMQP/1.0",
        b"eMQP/2.0",
        b"REQUEST",
        b"REPLY",
        b"INFORM",
        b"READY",
        b"\xff\xfe",
        b"[[10,\"q\"]]",
        b"worker",
        b"{\"heartbeat_ms\":1,\"liveness_ms\":2}",
        b"reply-requested,guarantee,retry-count:9",
        b"ok",
        b"json",
        b"STEADY",
        b"{\"handlers\":[\"a\",\"b\"]}",
    ];

    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            3 => proptest::sample::select(&PIECES[..]).prop_map(|p| p.to_vec()),
            1 => proptest::collection::vec(any::<u8>(), 0..40),
        ]
    }

    /// A message whose first three frames are usually a valid envelope.
    pub(crate) fn frames() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let commands: Vec<&'static str> = Command::iter().map(Command::as_str).collect();
        let delimiter = prop_oneof![4 => Just(Vec::new()), 1 => piece()];
        let version = prop_oneof![4 => Just(VERSION.as_bytes().to_vec()), 1 => piece()];
        let command = prop_oneof![
            4 => proptest::sample::select(commands).prop_map(|c| c.as_bytes().to_vec()),
            1 => piece()
        ];
        (
            delimiter,
            version,
            command,
            proptest::collection::vec(piece(), 0..9),
            0..12usize,
        )
            .prop_map(|(d, v, c, rest, len)| {
                let mut f = vec![d, v, c];
                f.extend(rest);
                f.truncate(len);
                f
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn random_frames_never_panic_and_round_trip(f in frames()) {
            if let Ok(env) = decode_with_limit(&f, 64) {
                let again = decode(&env.message.encode_with_id(&env.msgid));
                prop_assert_eq!(again.as_ref(), Ok(&env));
            }
        }
    }

    /// The generator must reach the decoder's success paths, not only its
    /// errors.
    #[test]
    fn generated_frames_often_decode() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let strategy = frames();
        let decoded = (0..2_000)
            .filter(|_| decode(&strategy.new_tree(&mut runner).unwrap().current()).is_ok())
            .count();
        assert!(decoded > 100, "only {decoded} of 2000 decoded");
    }
}
