//! The client connection: DEALER sockets to one or several routers
//! (`links.rs`), plus the bookkeeping that matches answers to submitted jobs.
//!
//! A submission waits (up to the connect timeout) for a router whose
//! handshake succeeded, so one to a router that cannot be reached fails with
//! [`ClientError::Unreachable`] instead of queueing forever; receive buffers
//! are unbounded so that thousands of results in flight are never dropped on
//! our side. A result that still went missing (the router found us
//! unreachable) is fetched by QUERY before `wait` gives up. A connection the
//! router refuses during its handshake (CURVE key not allowed, connection
//! limit) is [`ClientError::Rejected`] at once, not a timeout.

/// Maps keyed by job id: fast, still seeded per process.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
use std::time::{Duration, Instant};

use emq_net::curve::ClientKeys;
use emq_net::handshake::Watched;
use emq_proto::views::{
    Admission, DeadList, Discarded, JobDetail, JobPage, Purged, QueueChange, QueueView, RouterStatus, ScheduleAction,
    ScheduleInfo, ScheduleList, ScheduleSpec, WorkersView,
};
use emq_proto::{BatchWriter, ErrorCode, JobResult, JobState, Message, MsgIds, Outcome, Reply, Request, ResultFrames};

use crate::graph::{Graph, GraphView};
use crate::links::Links;
use crate::{ClientError, Job, JobId, JobOutput};

/// How long [`Client::submit_many`] waits for a submission's ACK before
/// sending it again.
pub const RESEND_AFTER: Duration = Duration::from_secs(1);

/// How a [`Client`] connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long a send may wait for a connection before the router counts as
    /// unreachable.
    pub connect_timeout: Duration,
    /// CURVE: the router's public key and ours. `None` for a plain router.
    pub curve: Option<ClientKeys>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            curve: None,
        }
    }
}

/// A job's state as the router reports it (answer to QUERY).
#[derive(Debug)]
pub struct JobStatus {
    /// The job.
    pub id: JobId,
    /// Where it is.
    pub state: JobState,
    /// Its queue, attempts and log.
    pub detail: JobDetail,
    /// Its result, once it has one.
    pub result: Option<Result<JobOutput, ClientError>>,
}

struct Pending {
    handler: String,
    queue: String,
}

/// What became of a submission ([`Client::submit_detailed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The job that carries it: its own id, or, when deduplicated, the
    /// live job's of its `unique` key (whose result it gets).
    pub id: JobId,
    /// It made no job of its own: a job of its `unique` key lives.
    pub deduplicated: bool,
    /// The waiting job of its `coalesce` key it replaced (which ended
    /// SUPERSEDED).
    pub replaced: Option<JobId>,
}

/// A connection to one router (or several, for failover), with the
/// bookkeeping that matches answers to the jobs submitted on it.
pub struct Client {
    _ctx: zmq::Context,
    links: Links,
    options: ClientOptions,
    /// Ids of the jobs and messages this client sends.
    ids: MsgIds,
    pending: HashMap<JobId, Pending>,
    done: HashMap<JobId, Result<JobOutput, ClientError>>,
    /// ACKs received, with what the router made of a keyed submission.
    acked: HashMap<JobId, Option<Admission>>,
    statuses: HashMap<JobId, Result<JobStatus, ClientError>>,
    /// While `submit_many` runs: ids in the order their results arrived, so it
    /// never scans its whole window.
    arrivals: Option<Vec<JobId>>,
    /// The latest GRAPH_INFO of each graph, until read.
    graph_infos: HashMap<String, GraphView>,
}

impl Client {
    /// Connect with the default options (plain ZeroMQ, 5 s connect timeout).
    pub fn connect(endpoints: &[impl AsRef<str>]) -> Result<Client, ClientError> {
        Client::connect_with(endpoints, ClientOptions::default())
    }

    /// Connect with `options`. Nothing is sent yet: a router that cannot be
    /// reached shows at the first submission.
    pub fn connect_with(endpoints: &[impl AsRef<str>], options: ClientOptions) -> Result<Client, ClientError> {
        let ctx = zmq::Context::new();
        let identity = uuid::Uuid::new_v4().to_string();
        let links = Links::connect(
            &ctx,
            endpoints,
            identity.as_bytes(),
            options.curve.is_some(),
            |socket| {
                socket.set_linger(1000)?;
                socket.set_rcvhwm(0)?;
                socket.set_sndhwm(0)?;
                socket.set_sndtimeo(options.connect_timeout.as_millis().min(i32::MAX as u128) as i32)?;
                if let Some(keys) = &options.curve {
                    keys.apply(socket)?;
                }
                Ok(())
            },
        )?;
        Ok(Client {
            _ctx: ctx,
            links,
            options,
            ids: MsgIds::from_seed(emq_net::random_seed()),
            pending: HashMap::default(),
            done: HashMap::default(),
            acked: HashMap::default(),
            statuses: HashMap::default(),
            arrivals: None,
            graph_infos: HashMap::default(),
        })
    }

    fn send(&self, frames: Vec<Vec<u8>>) -> Result<(), ClientError> {
        self.links.send(frames, self.options.connect_timeout)
    }

    /// Submit a job; returns its id without waiting for the result. A
    /// guaranteed, delayed or keyed job returns once the router has
    /// acknowledged it; for a `unique` job whose key a live job holds, the
    /// id returned is that job's (see [`Client::submit_detailed`]).
    pub fn submit(&mut self, job: &Job) -> Result<JobId, ClientError> {
        Ok(self.submit_detailed(job)?.id)
    }

    /// Submit a job and say what became of it: deduplicated into a live
    /// job of its `unique` key, or replacing a waiting job of its
    /// `coalesce` key.
    pub fn submit_detailed(&mut self, job: &Job) -> Result<Submitted, ClientError> {
        let id = self.send_job(job)?;
        let mut submitted = Submitted {
            id: id.clone(),
            deduplicated: false,
            replaced: None,
        };
        if !job.is_acknowledged() {
            return Ok(submitted);
        }
        let job = job.clone().with_id(id.clone());
        if let Some(admission) = self.await_ack(&job, &id)? {
            submitted.replaced = admission.replaced.map(JobId);
            if admission.deduplicated {
                // Its result comes as the live job's.
                let holder = JobId(admission.job);
                if let Some(p) = self.pending.remove(&id) {
                    self.pending.entry(holder.clone()).or_insert(p);
                }
                submitted.deduplicated = true;
                submitted.id = holder;
            }
        }
        Ok(submitted)
    }

    fn send_job(&mut self, job: &Job) -> Result<JobId, ClientError> {
        let (id, frames) = self.job_frames(job);
        self.send(frames)?;
        self.expect_result(job, &id);
        Ok(id)
    }

    /// A job's REQUEST, and its id.
    fn job_frames(&mut self, job: &Job) -> (JobId, Vec<Vec<u8>>) {
        let id = self.job_id(job);
        let frames = request_frames(job, &id, job.call.encode(job.content_type));
        (id, frames)
    }

    fn job_id(&mut self, job: &Job) -> JobId {
        job.id.clone().unwrap_or_else(|| JobId(self.ids.next()))
    }

    /// Submit `job` into `batch`, straight from its parts (no frames built
    /// and copied); a full batch is sent, and a job too large for one goes
    /// alone after it.
    fn batch_job(&mut self, batch: &mut BatchWriter, job: &Job) -> (JobId, Result<(), ClientError>) {
        let id = self.job_id(job);
        let body = job.call.encode(job.content_type);
        let sent = if batch.push_request(&id.0, &job.queue, &job.headers().encode(), &body) {
            match batch.is_full() {
                true => self.send_batch(batch),
                false => Ok(()),
            }
        } else {
            let alone = request_frames(job, &id, body);
            self.send_batch(batch).and_then(|()| self.send(alone))
        };
        (id, sent)
    }

    fn expect_result(&mut self, job: &Job, id: &JobId) {
        let pending = Pending {
            handler: job.call.handler.clone(),
            queue: job.queue.clone(),
        };
        self.pending.insert(id.clone(), pending);
    }

    /// Send the REQUESTs gathered in `batch` as one BATCH.
    fn send_batch(&mut self, batch: &mut BatchWriter) -> Result<(), ClientError> {
        if batch.is_empty() {
            return Ok(());
        }
        let frames = batch.take_frames(&self.ids.next());
        self.send(frames)
    }

    /// Wait for the router's ACK of a guaranteed, delayed or keyed job (or
    /// its refusal); what the router made of a keyed one. Sent again (same
    /// id) each [`RESEND_AFTER`] without an answer: a router that died took
    /// what it had not journaled with it.
    fn await_ack(&mut self, job: &Job, id: &JobId) -> Result<Option<Admission>, ClientError> {
        let deadline = Instant::now() + self.options.connect_timeout;
        let mut resend_at = Instant::now() + RESEND_AFTER;
        loop {
            if let Some(admission) = self.acked.remove(id) {
                return Ok(admission);
            }
            if let Some(Err(_)) = self.done.get(id) {
                return Err(self.done.remove(id).expect("present").expect_err("is an error"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(self.options.connect_timeout));
            }
            if Instant::now() >= resend_at {
                log::info!("job {id} not acknowledged within {RESEND_AFTER:?}: sending it again");
                self.send_job(job)?;
                resend_at = Instant::now() + RESEND_AFTER;
            }
            self.pump(left.min(resend_at.saturating_duration_since(Instant::now())))?;
        }
    }

    /// Wait for a submitted job's result. If the connection to the router
    /// is lost and made again meanwhile, an ordinary job the router no
    /// longer knows (it restarted) ends at once with [`ClientError::Lost`].
    pub fn wait(&mut self, id: &JobId, timeout: Duration) -> Result<JobOutput, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.done.remove(id) {
                self.acked.remove(id);
                return r;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return self.recover(id, timeout);
            }
            // Woken at least this often to look at the connection.
            self.pump(left.min(Duration::from_millis(250)))?;
            if self.links.take_reconnected() {
                if let Some(lost) = self.lost_with_router(id) {
                    return Err(lost);
                }
            }
        }
    }

    /// After a reconnection: [`ClientError::Lost`] if the router no longer
    /// knows job `id` and its result has not come. A result the router kept
    /// but did not send (it died between journaling the job's end and
    /// sending it) is taken from the answer, so a waiter has it now, not at
    /// its timeout.
    fn lost_with_router(&mut self, id: &JobId) -> Option<ClientError> {
        if self.done.contains_key(id) {
            return None;
        }
        match self.status(id, Duration::from_secs(1).min(self.options.connect_timeout)) {
            Ok(JobStatus { result: Some(r), .. }) if !self.done.contains_key(id) => {
                self.pending.remove(id);
                self.done.insert(id.clone(), r);
                self.arrived(id.clone());
                None
            }
            Err(ClientError::UnknownJob(_)) if !self.done.contains_key(id) => {
                self.pending.remove(id);
                Some(ClientError::Lost(format!(
                    "job {id} was not guaranteed, and the router restarted before it ended"
                )))
            }
            _ => None,
        }
    }

    /// A result that did not arrive may still be kept by the router.
    fn recover(&mut self, id: &JobId, timeout: Duration) -> Result<JobOutput, ClientError> {
        match self.status(id, Duration::from_secs(1).min(self.options.connect_timeout)) {
            Ok(JobStatus { result: Some(r), .. }) => {
                self.pending.remove(id);
                r
            }
            _ => Err(ClientError::Timeout(timeout)),
        }
    }

    /// Submit and wait.
    pub fn call(&mut self, job: &Job, timeout: Duration) -> Result<JobOutput, ClientError> {
        let id = self.submit(job)?;
        self.wait(&id, timeout)
    }

    /// Submit many jobs with at most `window` in flight, calling `on_result`
    /// for each as it finishes. Jobs whose result does not arrive within
    /// `idle_timeout` of the last progress end with [`ClientError::Timeout`].
    ///
    /// Jobs the router acknowledges (guaranteed, delayed, keyed) are sent
    /// again, with the same id, when no ACK has come within
    /// [`RESEND_AFTER`]: a router that died took the submissions it had not
    /// journaled with it, and a submission is idempotent by id. Once the
    /// connection is made again (the router may have restarted), every
    /// acknowledged job still waiting for its result is sent again once
    /// too: the router
    /// answers a finished one with its result (which a crash between its
    /// journal commit and its sending would otherwise hold back until the
    /// idle timeout) and a waiting or running one with another ACK.
    pub fn submit_many(
        &mut self,
        jobs: impl IntoIterator<Item = Job>,
        window: usize,
        idle_timeout: Duration,
        mut on_result: impl FnMut(JobId, Result<JobOutput, ClientError>),
    ) -> Result<(), ClientError> {
        let window = window.max(1);
        let mut jobs = jobs.into_iter();
        let mut in_flight: HashSet<JobId> = HashSet::default();
        // Acknowledged kinds of job in flight, kept to send again: the job
        // and when it was last sent while unacknowledged (`None`: acked).
        let mut resendable: HashMap<JobId, (Job, Option<Instant>)> = HashMap::default();
        // Jobs sent more than once: a second answer for one is dropped.
        let mut resent: HashSet<JobId> = HashSet::default();
        let mut exhausted = false;
        let mut last_progress = Instant::now();
        let mut batch = BatchWriter::new();
        loop {
            // To a router that reads BATCH (it sent us one), the jobs that
            // fill the window go in one (or a few) messages.
            let batching = self.links.reads_batches();
            while !exhausted && in_flight.len() < window {
                match jobs.next() {
                    Some(job) => {
                        // Acknowledgements are not awaited one by one here:
                        // a refusal arrives as this job's result.
                        let mut job = job.reply(true);
                        if job.is_acknowledged() && job.id.is_none() {
                            job = job.with_id(JobId(self.ids.next()));
                        }
                        let (id, sent) = match batching {
                            true => self.batch_job(&mut batch, &job),
                            false => {
                                let (id, frames) = self.job_frames(&job);
                                (id, self.send(frames))
                            }
                        };
                        match sent {
                            Ok(()) => {
                                self.expect_result(&job, &id);
                                in_flight.insert(id.clone());
                                if job.is_acknowledged() {
                                    resendable.insert(id, (job, Some(Instant::now())));
                                }
                            }
                            Err(e @ (ClientError::Unreachable { .. } | ClientError::Rejected(_))) => return Err(e),
                            Err(e) => on_result(id, Err(e)),
                        }
                    }
                    None => exhausted = true,
                }
            }
            match self.send_batch(&mut batch) {
                Err(e @ (ClientError::Unreachable { .. } | ClientError::Rejected(_))) => return Err(e),
                // The jobs in it end at the idle timeout, asked for one by one.
                Err(e) => log::warn!("cannot send a BATCH of submissions: {e}"),
                Ok(()) => {}
            }
            if in_flight.is_empty() {
                return Ok(());
            }
            self.arrivals = Some(self.arrivals.take().unwrap_or_default());
            let pumped = self.pump(Duration::from_millis(100));
            let mut arrived = self.arrivals.take().unwrap_or_default();
            pumped?;
            for id in arrived.drain(..) {
                if in_flight.remove(&id) {
                    self.acked.remove(&id);
                    resendable.remove(&id);
                    last_progress = Instant::now();
                    if let Some(r) = self.done.remove(&id) {
                        on_result(id, r);
                    }
                } else if resent.contains(&id) {
                    self.done.remove(&id);
                    self.acked.remove(&id);
                }
            }
            self.arrivals = Some(arrived);
            let reconnected = self.links.take_reconnected();
            self.resend_unacknowledged(&mut resendable, &mut resent, reconnected)?;
            if reconnected {
                // The router may have restarted: an ordinary job it no
                // longer knows will never end; say so now, not at the idle
                // timeout. (Acknowledged ones are sent again above.)
                let ordinary: Vec<JobId> = in_flight
                    .iter()
                    .filter(|id| !resendable.contains_key(*id))
                    .cloned()
                    .collect();
                for id in ordinary {
                    if let Some(lost) = self.lost_with_router(&id) {
                        in_flight.remove(&id);
                        last_progress = Instant::now();
                        on_result(id, Err(lost));
                    }
                }
            }
            if last_progress.elapsed() >= idle_timeout {
                let stuck: Vec<JobId> = in_flight.drain().collect();
                for id in stuck {
                    resendable.remove(&id);
                    let r = self.recover(&id, idle_timeout);
                    on_result(id, r);
                }
                last_progress = Instant::now();
            }
        }
    }

    /// [`Client::submit_many`]'s resending: jobs unacknowledged for
    /// [`RESEND_AFTER`] again; and, when the connection was made again
    /// (`reconnected`: the router may have restarted), every acknowledged
    /// job still in flight once.
    fn resend_unacknowledged(
        &mut self,
        resendable: &mut HashMap<JobId, (Job, Option<Instant>)>,
        resent: &mut HashSet<JobId>,
        reconnected: bool,
    ) -> Result<(), ClientError> {
        for (id, (_, unacked_since)) in resendable.iter_mut() {
            if unacked_since.is_some() && self.acked.contains_key(id) {
                *unacked_since = None;
            }
        }
        let due: Vec<JobId> = resendable
            .iter()
            .filter(|(_, (_, since))| since.is_some_and(|t| t.elapsed() >= RESEND_AFTER))
            .map(|(id, _)| id.clone())
            .collect();
        if !due.is_empty() {
            log::info!(
                "{} submissions not acknowledged within {RESEND_AFTER:?}: sending them again",
                due.len()
            );
        }
        for id in due {
            if let Some((job, since)) = resendable.get_mut(&id) {
                self.send_job(job)?;
                *since = Some(Instant::now());
                resent.insert(id);
            }
        }
        if reconnected {
            // A restarted router lost what it had not journaled (sent again
            // above, as it comes due); what it had journaled but not
            // answered is asked for again.
            let mut asked = 0;
            for (id, (job, since)) in resendable.iter() {
                if since.is_none() {
                    self.send_job(job)?;
                    resent.insert(id.clone());
                    asked += 1;
                }
            }
            log::info!("connected again: asked again for {asked} acknowledged jobs in flight");
        }
        Ok(())
    }

    /// Submit a graph (or batch) in one message; returns it as the router
    /// accepted it (every node's job id), once journaled. Sent again if no
    /// answer comes within a second (the same id is never run twice), up to
    /// the connect timeout; a refused graph is [`ClientError::Refused`]
    /// with the reason (a cycle, an unknown name, its size).
    pub fn submit_graph(&mut self, graph: &Graph) -> Result<GraphView, ClientError> {
        let mut spec = graph.spec.clone();
        let id = spec.id.clone().unwrap_or_else(|| self.ids.next());
        spec.id = Some(id.clone());
        // Told when it ends: `wait_graph` needs no polling.
        spec.notify = true;
        let msg = Message::Graph { spec: Box::new(spec) };
        self.graph_exchange(&id, &msg, self.options.connect_timeout)
    }

    /// A graph's state now.
    pub fn graph_status(&mut self, id: &str, timeout: Duration) -> Result<GraphView, ClientError> {
        let msg = Message::GraphQuery { id: id.to_string() };
        self.graph_exchange(id, &msg, timeout)
    }

    /// Cancel every node of a graph that has not started; running ones
    /// finish. Returns the graph afterwards.
    pub fn cancel_graph(&mut self, id: &str, timeout: Duration) -> Result<GraphView, ClientError> {
        let msg = Message::GraphCancel { id: id.to_string() };
        self.graph_exchange(id, &msg, timeout)
    }

    /// Wait until every node of graph `id` has ended. The router tells a
    /// graph's submitter when it ends; the state is also asked for every
    /// few seconds, so a router restart or another connection loses
    /// nothing.
    pub fn wait_graph(&mut self, id: &str, timeout: Duration) -> Result<GraphView, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(timeout));
            }
            let view = self.graph_status(id, left.min(Duration::from_secs(5)))?;
            if view.state.is_final() {
                return Ok(view);
            }
            let until = Instant::now() + left.min(Duration::from_secs(3));
            loop {
                if let Some(v) = self.graph_infos.remove(id) {
                    if v.state.is_final() {
                        return Ok(v);
                    }
                }
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.pump(left)?;
            }
        }
    }

    /// Send `msg` about graph `id` and wait for its GRAPH_INFO (or ERROR),
    /// sending again every second until `timeout`.
    fn graph_exchange(&mut self, id: &str, msg: &Message, timeout: Duration) -> Result<GraphView, ClientError> {
        let deadline = Instant::now() + timeout;
        self.graph_infos.remove(id);
        loop {
            let msgid = match msg {
                Message::Graph { .. } => id.to_string(),
                _ => self.ids.next(),
            };
            self.send(msg.encode_with_id(&msgid))?;
            let resend = Instant::now() + Duration::from_secs(1);
            loop {
                if let Some(view) = self.graph_infos.remove(id) {
                    return Ok(view);
                }
                if let Some(Err(e)) = self.done.remove(&JobId(msgid.clone())) {
                    return Err(e);
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(ClientError::Timeout(timeout));
                }
                if now >= resend {
                    break;
                }
                self.pump(resend.min(deadline) - now)?;
            }
        }
    }

    /// Ask the router for a job's state and, when finished, its result.
    pub fn status(&mut self, id: &JobId, timeout: Duration) -> Result<JobStatus, ClientError> {
        self.statuses.remove(id);
        let frames = Message::Query { of: id.0.clone() }.encode_with_id(&self.ids.next());
        self.send(frames)?;
        self.await_status(id, timeout)
    }

    /// Cancel a job that has not started; returns its state afterwards.
    pub fn cancel(&mut self, id: &JobId, timeout: Duration) -> Result<JobStatus, ClientError> {
        self.statuses.remove(id);
        let frames = Message::Cancel { of: id.0.clone() }.encode_with_id(&self.ids.next());
        self.send(frames)?;
        self.await_status(id, timeout)
    }

    fn await_status(&mut self, id: &JobId, timeout: Duration) -> Result<JobStatus, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.statuses.remove(id) {
                return s;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(timeout));
            }
            self.pump(left)?;
        }
    }

    /// Wait up to `timeout` for a message, then take everything available.
    fn pump(&mut self, timeout: Duration) -> Result<(), ClientError> {
        if !self.links.poll(timeout)? {
            return Ok(());
        }
        while let Some(frames) = self.links.try_recv()? {
            emq_net::with_slices(&frames, |frames| self.on_message(frames));
        }
        Ok(())
    }

    fn arrived(&mut self, id: JobId) {
        if let Some(a) = &mut self.arrivals {
            a.push(id);
        }
    }

    fn on_message(&mut self, frames: &[&[u8]]) {
        let Some(batch) = emq_proto::batch_entries(frames) else {
            return self.on_decoded(emq_proto::decode(frames));
        };
        let mut entries = match batch {
            Ok(entries) => entries,
            Err(e) => return log::warn!("undecodable BATCH from router: {e}"),
        };
        let mut entry = Vec::with_capacity(emq_proto::MAX_FRAMES);
        while let Some(read) = entries.next_message(&mut entry, emq_proto::DEFAULT_MAX_FRAME) {
            self.on_decoded(read);
        }
    }

    fn on_decoded(&mut self, decoded: Result<emq_proto::Envelope, emq_proto::DecodeError>) {
        let env = match decoded {
            Ok(env) => env,
            Err(e) => {
                log::warn!("undecodable message from router: {e}");
                return;
            }
        };
        match env.message {
            Message::Reply(Reply::Result(r)) => {
                let id = JobId(r.of.clone());
                let handler = self.pending.remove(&id).map(|p| p.handler).unwrap_or_default();
                self.done.insert(id.clone(), to_output(id.clone(), &handler, r));
                self.arrived(id);
            }
            Message::Error { of, code, reason } => {
                let id = JobId(of);
                let pending = self.pending.remove(&id);
                let err = match code {
                    ErrorCode::QueueFull => ClientError::QueueFull {
                        queue: pending.map(|p| p.queue).unwrap_or_default(),
                    },
                    ErrorCode::UnknownJob => ClientError::UnknownJob(id.0.clone()),
                    code => ClientError::Refused { code, reason },
                };
                if code == ErrorCode::UnknownJob {
                    self.statuses.insert(id, Err(err));
                } else {
                    self.done.insert(id.clone(), Err(err));
                    self.arrived(id);
                }
            }
            Message::Ack { of, admission, .. } => {
                self.acked.insert(JobId(of), admission);
            }
            Message::Job {
                of,
                state,
                detail,
                result,
            } => {
                let id = JobId(of);
                let handler = self.pending.get(&id).map(|p| p.handler.clone()).unwrap_or_default();
                let result = result.map(|r| to_output(id.clone(), &handler, r));
                self.statuses.insert(
                    id.clone(),
                    Ok(JobStatus {
                        id,
                        state,
                        detail: *detail,
                        result,
                    }),
                );
            }
            Message::GraphInfo { view } => {
                self.graph_infos.insert(view.id.clone(), *view);
            }
            Message::Kbye => log::warn!("router is shutting down"),
            _ => {}
        }
    }
}

/// `job`'s REQUEST frames, with id `id` and its encoded call `body`.
fn request_frames(job: &Job, id: &JobId, body: Vec<u8>) -> Vec<Vec<u8>> {
    let req = Request {
        queue: job.queue.clone(),
        headers: job.headers(),
        body,
    };
    Message::Request(req).into_frames(&id.0)
}

fn to_output(id: JobId, handler: &str, r: ResultFrames) -> Result<JobOutput, ClientError> {
    let decoded = match JobResult::decode_body(r.outcome, &r.body, r.content_type) {
        Ok(d) => d,
        Err(e) => return Err(ClientError::Protocol(format!("result of {id}: {e}"))),
    };
    match r.outcome {
        Outcome::Ok => Ok(JobOutput {
            id,
            value: decoded.value,
        }),
        Outcome::UnknownHandler => Err(ClientError::UnknownHandler {
            // The submitter knows the name; a later reader finds it in the
            // value emq's jobmanager puts there.
            handler: if handler.is_empty() {
                decoded.value["handler"].as_str().unwrap_or_default().to_string()
            } else {
                handler.to_string()
            },
            message: decoded.error.unwrap_or_default(),
        }),
        outcome => Err(ClientError::JobFailed {
            outcome,
            message: decoded.error.unwrap_or_else(|| outcome.as_str().to_string()),
            value: decoded.value,
        }),
    }
}

/// Admin commands, on the router's admin endpoint.
pub mod admin {
    use super::*;

    /// One request on a fresh connection to the admin endpoint; `options`
    /// gives the timeout (for the connection and for the answer) and, with
    /// CURVE, the keys (an admin key: the router allows only those here).
    /// `endpoint` may list several, comma-separated (an active router and
    /// its standbys, which stay unbound): the request goes to the first that
    /// answers.
    fn ask(endpoint: &str, msg: Message, options: &ClientOptions) -> Result<emq_proto::Envelope, ClientError> {
        let timeout = options.connect_timeout;
        let ctx = zmq::Context::new();
        let s = ctx.socket(zmq::DEALER)?;
        s.set_linger(0)?;
        s.set_sndtimeo(timeout.as_millis().min(i32::MAX as u128) as i32)?;
        if let Some(keys) = &options.curve {
            keys.apply(&s)?;
        }
        // Not ZMQ_IMMEDIATE: with it, a router that answers and closes the
        // connection at once (DISCONNECT) could take its answer with it
        // before it is read. Instead, wait for the handshake, then send.
        let watched = Watched::new(&ctx, s, options.curve.is_some())?;
        let (s, handshakes) = (watched.socket(), watched.monitor());
        let endpoints: Vec<&str> = endpoint.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        for e in &endpoints {
            s.connect(e)?;
        }
        match handshakes.await_handshake(endpoints.len(), timeout) {
            Ok(true) => {
                // Only the one that answered keeps a pipe, so the request
                // cannot wait in one to a router that is not there.
                let answered = handshakes.first_answered();
                for e in endpoints.iter().filter(|e| answered.as_deref() != Some(**e)) {
                    let _ = s.disconnect(e);
                }
            }
            Ok(false) => {
                return Err(ClientError::Unreachable {
                    endpoint: endpoint.to_string(),
                    waited: timeout,
                })
            }
            Err(refused) => return Err(ClientError::Rejected(refused.to_string())),
        }
        let msgid = emq_proto::uuid_text(emq_net::random_seed());
        s.send_multipart(msg.encode_with_id(&msgid), 0)?;
        let mut items = [s.as_poll_item(zmq::POLLIN)];
        if zmq::poll(&mut items, timeout.as_millis() as i64)? == 0 {
            return Err(ClientError::Timeout(timeout));
        }
        let frames = s.recv_multipart(0)?;
        emq_proto::decode(&frames).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    fn view<T: serde::de::DeserializeOwned>(env: emq_proto::Envelope) -> Result<T, ClientError> {
        match env.message {
            Message::Reply(Reply::Notice(notice)) => notice.view().map_err(|e| ClientError::Protocol(e.to_string())),
            Message::Error { code, reason, .. } => Err(ClientError::Refused { code, reason }),
            other => Err(ClientError::Protocol(format!(
                "unexpected {}",
                other.command().as_str()
            ))),
        }
    }

    /// STATUS: queues, jobmanagers, in flight, waiting, processed.
    pub fn status(endpoint: &str, options: &ClientOptions) -> Result<RouterStatus, ClientError> {
        view(ask(endpoint, Message::Status, options)?)
    }

    /// ROUTER_SHOW_WORKERS.
    pub fn workers(endpoint: &str, options: &ClientOptions) -> Result<WorkersView, ClientError> {
        view(ask(endpoint, Message::RouterShowWorkers, options)?)
    }

    /// DEAD: the dead-letter set.
    pub fn dead(endpoint: &str, options: &ClientOptions) -> Result<DeadList, ClientError> {
        view(ask(endpoint, Message::Dead, options)?)
    }

    /// RETRY: put a dead-lettered job back in its queue; returns its new state.
    pub fn retry(endpoint: &str, id: &str, options: &ClientOptions) -> Result<JobState, ClientError> {
        match ask(endpoint, Message::Retry { of: id.to_string() }, options)?.message {
            Message::Job { state, .. } => Ok(state),
            Message::Error {
                code: ErrorCode::UnknownJob,
                ..
            } => Err(ClientError::UnknownJob(id.to_string())),
            Message::Error { code, reason, .. } => Err(ClientError::Refused { code, reason }),
            other => Err(ClientError::Protocol(format!(
                "unexpected {}",
                other.command().as_str()
            ))),
        }
    }

    /// DISCARD: drop a dead-lettered job for good.
    pub fn discard(endpoint: &str, id: &str, options: &ClientOptions) -> Result<Discarded, ClientError> {
        view(ask(endpoint, Message::Discard { of: id.to_string() }, options)?).map_err(|e| match e {
            ClientError::Refused {
                code: ErrorCode::UnknownJob,
                ..
            } => ClientError::UnknownJob(id.to_string()),
            other => other,
        })
    }

    /// WAITING: the jobs waiting in `queue`, oldest first, `limit` of them
    /// (at most 1,000) after skipping `offset`.
    pub fn waiting(
        endpoint: &str,
        queue: &str,
        offset: u64,
        limit: u64,
        options: &ClientOptions,
    ) -> Result<JobPage, ClientError> {
        let msg = Message::Waiting {
            queue: queue.to_string(),
            offset,
            limit,
        };
        view(ask(endpoint, msg, options)?)
    }

    /// PURGE: cancel every job waiting in `queue`; returns how many.
    pub fn purge(endpoint: &str, queue: &str, options: &ClientOptions) -> Result<Purged, ClientError> {
        let purge = Message::Purge {
            queue: queue.to_string(),
        };
        view(ask(endpoint, purge, options)?)
    }

    /// QUEUE_SET: pause or resume `queue`, set or clear its concurrency and
    /// rate limits. Returns the queue as it is now.
    pub fn queue_set(
        endpoint: &str,
        queue: &str,
        change: QueueChange,
        options: &ClientOptions,
    ) -> Result<QueueView, ClientError> {
        let msg = Message::QueueSet {
            queue: queue.to_string(),
            change,
        };
        view(ask(endpoint, msg, options)?)
    }

    /// GRAPHS: every graph the router holds, oldest first.
    pub fn graphs(endpoint: &str, options: &ClientOptions) -> Result<crate::graph::GraphList, ClientError> {
        view(ask(endpoint, Message::Graphs, options)?)
    }

    /// SCHEDULES: every schedule the router keeps.
    pub fn schedules(endpoint: &str, options: &ClientOptions) -> Result<ScheduleList, ClientError> {
        view(ask(endpoint, Message::Schedules, options)?)
    }

    /// SCHEDULE_SET: create or replace schedule `spec.name`, firing `job`
    /// (its queue, headers and call; `spec.queue` and `spec.headers` are
    /// taken from it). Returns the schedule as the router keeps it.
    pub fn schedule(
        endpoint: &str,
        mut spec: ScheduleSpec,
        job: &Job,
        options: &ClientOptions,
    ) -> Result<ScheduleInfo, ClientError> {
        spec.queue = job.queue.clone();
        spec.headers = job.headers().encode();
        let body = job.call.encode(job.content_type);
        view(ask(endpoint, Message::ScheduleSet { spec, body }, options)?)
    }

    /// SCHEDULE_CTL: pause, resume or remove schedule `name`. Returns it (as
    /// it was, when removed).
    pub fn schedule_ctl(
        endpoint: &str,
        name: &str,
        action: ScheduleAction,
        options: &ClientOptions,
    ) -> Result<ScheduleInfo, ClientError> {
        let msg = Message::ScheduleCtl {
            name: name.to_string(),
            action,
        };
        view(ask(endpoint, msg, options)?)
    }

    /// DISCONNECT: stop the router.
    pub fn shutdown(endpoint: &str, options: &ClientOptions) -> Result<(), ClientError> {
        match ask(endpoint, Message::Disconnect, options)?.message {
            Message::Ack { .. } => Ok(()),
            Message::Error { code, reason, .. } => Err(ClientError::Refused { code, reason }),
            other => Err(ClientError::Protocol(format!(
                "unexpected {}",
                other.command().as_str()
            ))),
        }
    }
}
