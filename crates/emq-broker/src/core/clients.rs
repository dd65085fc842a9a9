//! Clients: submissions (REQUEST), queries (QUERY), cancellation (CANCEL),
//! and the end of a job: its result to the client that asked, or kept for
//! lookup.

use std::time::{Duration, Instant};

use emq_proto::views::JobDetail;
use emq_proto::{
    ContentType, ErrorCode, Headers, Inform, JobCall, JobResult, JobState, Message, Outcome, PeerType, Reply, Request,
    ResultFrames, TimeSpec,
};
use log::{debug, info, warn};

use super::handlers::HandlerId;
use super::jobs::{Job, JobKey, Place, ResultTo};
use super::{Carries, Endpoint, PeerId, Router};
use crate::UnknownQueuePolicy;
use emq_proto::views::Admission;

/// Whether the router acknowledges a REQUEST with these headers: one it
/// journals (guaranteed, delayed) or one with a key (the ACK says what
/// became of it).
fn acknowledged(headers: &emq_proto::Headers) -> bool {
    headers.guarantee || headers.not_before.is_some() || headers.key.is_some()
}

/// The state of a job that ended with `outcome` (not retried).
pub(super) fn ended(outcome: Outcome) -> JobState {
    match outcome {
        Outcome::Ok => JobState::Finished,
        Outcome::Cancelled => JobState::Cancelled,
        Outcome::Superseded => JobState::Superseded,
        Outcome::Expired => JobState::Expired,
        _ => JobState::Failed,
    }
}

/// The furthest ahead a job may be delayed: 100 years.
const MAX_DELAY_MS: i64 = 100 * 366 * 24 * 3600 * 1000;

impl Router {
    pub(super) fn on_client(&mut self, now: Instant, peer: PeerId, msgid: String, msg: Message) {
        match msg {
            Message::Request(req) => self.on_request(now, peer, msgid, req),
            Message::Query { of } => self.answer_query(Endpoint::Frontend, &peer, &of),
            Message::Cancel { of } => self.cancel(now, Endpoint::Frontend, &peer, &of),
            Message::Graph { spec } => self.on_graph(now, peer, msgid, *spec),
            Message::GraphQuery { id } => self.on_graph_query(Endpoint::Frontend, &peer, &msgid, &id),
            Message::GraphCancel { id } => self.on_graph_cancel(now, Endpoint::Frontend, &peer, &msgid, &id),
            Message::Heartbeat { .. } | Message::Kbye | Message::Ack { .. } | Message::Hello => {}
            Message::Disconnect
            | Message::Status
            | Message::RouterShowWorkers
            | Message::RouterShowSchedulers
            | Message::Dead
            | Message::Retry { .. }
            | Message::Purge { .. }
            | Message::Waiting { .. }
            | Message::Discard { .. }
            | Message::Schedules
            | Message::ScheduleSet { .. }
            | Message::ScheduleCtl { .. }
            | Message::QueueSet { .. }
            | Message::Graphs => self.refuse(
                Endpoint::Frontend,
                &peer,
                &msgid,
                ErrorCode::AdminOnly,
                "admin commands are only accepted on the admin endpoint",
            ),
            Message::Schedule(req) => self.on_eventmq_schedule(self.now(), &peer, &msgid, req),
            Message::Unschedule(req) => self.on_eventmq_unschedule(&peer, &msgid, req),
            Message::Inform(Inform {
                peer_type: PeerType::Scheduler,
                ..
            }) => self.refuse(
                Endpoint::Frontend,
                &peer,
                &msgid,
                ErrorCode::UnknownCommand,
                "emq-router keeps schedules itself (send SCHEDULE as a client); it takes no scheduler processes",
            ),
            other => {
                let reason = format!("{} is not a client command", other.command().as_str());
                self.refuse(Endpoint::Frontend, &peer, &msgid, ErrorCode::UnknownCommand, &reason)
            }
        }
    }

    fn on_request(&mut self, now: Instant, client: PeerId, msgid: String, req: Request) {
        if self.stopping() {
            return self.error(
                Endpoint::Frontend,
                &client,
                &msgid,
                ErrorCode::ShuttingDown,
                "router is shutting down",
            );
        }
        if msgid.is_empty() {
            return self.refuse(
                Endpoint::Frontend,
                &client,
                &msgid,
                ErrorCode::Malformed,
                "REQUEST needs a msgid",
            );
        }
        let key = JobKey::from(msgid.as_str());
        if self.jobs.contains_key(&key) {
            debug!("duplicate REQUEST {msgid} from {client}: already queued or running");
            if acknowledged(&req.headers) {
                let admission = req.headers.key.is_some().then(|| Admission {
                    job: msgid.clone(),
                    deduplicated: false,
                    replaced: None,
                });
                let ack = Message::Ack {
                    of: msgid,
                    timing: None,
                    admission,
                    capabilities: Default::default(),
                };
                self.send_journaled(&client, ack, Carries::Other);
            }
            return;
        }
        if self.guaranteed.is_tracked(&key) {
            debug!("duplicate REQUEST {msgid} from {client}: a guaranteed job already finished");
            return self.resend_tracked(&client, &key, req.headers.reply_requested);
        }
        if let Some(done) = self.results.get(&msgid) {
            debug!("duplicate REQUEST {msgid} from {client}: already finished");
            if req.headers.reply_requested {
                let result = done.result.clone();
                self.send(Endpoint::Frontend, &client, Message::Reply(Reply::Result(result)));
            }
            return;
        }
        let mut queue = req.queue;
        if queue.is_empty() {
            queue = emq_proto::DEFAULT_QUEUE.to_string();
        }
        let served = self.queues.get(&queue).is_some_and(|q| !q.members.is_empty());
        if !served && self.config.unknown_queue == UnknownQueuePolicy::Reroute {
            debug!("no jobmanager serves queue {queue:?}: rerouting {msgid} to default");
            queue = emq_proto::DEFAULT_QUEUE.to_string();
        }
        let extra = match self.job_extra(&req.headers) {
            Ok(extra) => extra,
            Err(reason) => return self.refuse(Endpoint::Frontend, &client, &msgid, ErrorCode::Invalid, &reason),
        };
        let queue_name = self.queues.entry(&queue).name.clone();
        // A live job of its unique key is this submission's job.
        if let Some(holder) = self.unique_holder(&queue_name, extra.as_deref()) {
            return self.deduplicate(&client, &msgid, &holder, req.headers.reply_requested);
        }
        // A waiting job of its coalesce key is replaced by it.
        let replaces = self.coalesce_holder(&queue_name, extra.as_deref());
        let not_before = match &req.headers.not_before {
            None => None,
            Some(TimeSpec::After(d)) => {
                let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                Some(self.wall_ms.saturating_add(ms))
            }
            Some(TimeSpec::At(ms)) => Some(*ms),
            Some(TimeSpec::Unreadable(header)) => {
                let reason = format!(
                    "header {header}: give delay:SECONDS or not-before:TIME (RFC 3339, e.g. 2026-12-01T10:00:00Z)"
                );
                return self.refuse(Endpoint::Frontend, &client, &msgid, ErrorCode::Invalid, &reason);
            }
        };
        // How long it waits before it enters its queue, if at all.
        let wait = match not_before.map(|at| at.saturating_sub(self.wall_ms)) {
            Some(ms) if ms > MAX_DELAY_MS => {
                let reason = "not-before time more than 100 years ahead";
                return self.refuse(Endpoint::Frontend, &client, &msgid, ErrorCode::Invalid, reason);
            }
            Some(ms) if ms > 0 => Some(Duration::from_millis(ms as u64)),
            _ => None,
        };
        if wait.is_some() && self.timers.len() >= self.config.max_delayed {
            if let Some(more) = self.refusals.report(now) {
                warn!(
                    "{} jobs already wait for a time: refusing delayed job {msgid} from {client}{more}",
                    self.timers.len()
                );
            }
            let reason = format!(
                "too many delayed jobs ({}); the limit is --max-delayed",
                self.timers.len()
            );
            return self.error(Endpoint::Frontend, &client, &msgid, ErrorCode::QueueFull, &reason);
        }
        // Refuse only when the job would have to wait and there is no room
        // (one that replaces a waiting job takes no more room).
        if wait.is_none() && replaces.is_none() && !self.has_free_jobmanager(&queue) {
            let waiting = self.queues.waiting_len(&queue);
            let total = self.queues.waiting_total();
            if waiting >= self.config.max_waiting_per_queue || total >= self.config.max_waiting_total {
                if let Some(more) = self.refusals.report(now) {
                    warn!("queue {queue:?} full ({waiting} waiting, {total} in all): refusing {msgid} from {client}{more}");
                }
                return self.error(
                    Endpoint::Frontend,
                    &client,
                    &msgid,
                    ErrorCode::QueueFull,
                    &format!("queue {queue} is full"),
                );
            }
        }
        // A job with a not-before time is journaled like a guaranteed job:
        // a promise about the future must survive a restart.
        let guarantee = req.headers.guarantee || not_before.is_some();
        let max_attempts = self.max_attempts(&req.headers);
        let mut headers = req.headers;
        if guarantee {
            // The router owns a guaranteed job's retries: the jobmanager must
            // not retry it on its own as well.
            headers.retry_count = 0;
        }
        let acked_with = acknowledged(&headers);
        let keyed = headers.key.is_some();
        // The jobmanager gets the job when it is due and before it expires,
        // with no key: times and keys are the router's business.
        headers.not_before = None;
        headers.expires = None;
        headers.key = None;
        let acked = client.clone();
        let client = self.intern(client);
        let headers_frame = self.shared_headers(headers.encode());
        let mut job = Box::new(Job {
            client,
            queue: queue_name.clone(),
            headers: headers_frame,
            body: req.body.into_boxed_slice(),
            result_to: ResultTo::of(&headers),
            guarantee,
            handler: HandlerId::UNREAD,
            attempts: 0,
            max_attempts,
            ready: Default::default(),
            place: Place::Waiting,
            extra,
        });
        if guarantee {
            // Journaled in this batch; the transport commits it before it
            // sends the ACK.
            let origin = acked.after("accepted from ");
            let entry = match not_before.filter(|_| wait.is_some()) {
                Some(t) => super::guaranteed::Entry::WaitUntil(t),
                None => super::guaranteed::Entry::Queue,
            };
            self.accept_guaranteed(&key, &job, entry, origin);
        }
        if acked_with {
            let admission = keyed.then(|| Admission {
                job: key.to_text(),
                deduplicated: false,
                replaced: replaces.as_ref().map(|r| r.to_string()),
            });
            let ack = Message::Ack {
                of: key.to_text(),
                timing: None,
                admission,
                capabilities: Default::default(),
            };
            match headers.batch_reply {
                true => self.send_batched(&job.client, ack, true, None),
                false => self.send_journaled(&acked, ack, Carries::Other),
            }
        }
        if let Some(extra) = &job.extra {
            self.hold_flow(&key, &queue_name, extra, false);
        }
        self.note_submitted(now, &key, &mut job, None);
        self.jobs.insert(key.clone(), job);
        match (replaces, wait) {
            (Some(old), wait) => self.supersede(now, old, &key, wait),
            (None, Some(wait)) => self.delay(key, now + wait),
            (None, None) => {
                self.enqueue(&key, false);
                self.dispatch_queue(now, &queue);
            }
        }
    }

    /// A `unique` submission whose key a live job holds: that job is the
    /// answer. The submitter hears its id (ACK, with the admission frame)
    /// and, if it asked, gets its result too.
    fn deduplicate(&mut self, client: &PeerId, msgid: &str, holder: &JobKey, reply_requested: bool) {
        debug!("REQUEST {msgid} from {client}: its unique key is held by {holder}");
        self.note_deduplicated(msgid, holder);
        if reply_requested {
            let peer = self.intern(client.clone());
            if let Some(job) = self.jobs.get_mut(holder) {
                let extra = job.extra.get_or_insert_with(Default::default);
                if *job.client != *client && !extra.also_reply.contains(&peer) {
                    extra.also_reply.push(peer);
                }
            }
        }
        let ack = Message::Ack {
            of: msgid.to_string(),
            timing: None,
            admission: Some(Admission {
                job: holder.to_text(),
                deduplicated: true,
                replaced: None,
            }),
            capabilities: Default::default(),
        };
        // After this batch's commit: the holder may have been journaled in it.
        self.send_journaled(client, ack, Carries::Other);
    }

    /// Job `new` (in the jobs map) replaces waiting job `old` of its
    /// coalesce key: it takes `old`'s place in the queue, unless it has a
    /// time of its own to wait for; `old` ends SUPERSEDED.
    fn supersede(&mut self, now: Instant, old: JobKey, new: &JobKey, wait: Option<Duration>) {
        let (old, old_job) = self
            .jobs
            .remove_entry(&old)
            .expect("a coalesce holder is in the jobs map");
        let queue = old_job.queue.clone();
        match (&old_job.place, wait) {
            (Place::Waiting, None) => {
                let new_handler = if self.queues.is_mixed(&queue) {
                    self.read_handler(new)
                } else {
                    HandlerId::UNREAD
                };
                self.queues
                    .replace(&queue, &old, new.clone(), (old_job.handler, new_handler));
                if let Some(job) = self.jobs.get_mut(new) {
                    job.place = Place::Waiting;
                }
            }
            (_, wait) => {
                self.detach(&old, &old_job, None);
                match wait {
                    Some(wait) => self.delay(new.clone(), now + wait),
                    None => self.enqueue(new, false),
                }
            }
        }
        debug!("job {old} superseded by {new} (coalesce key)");
        self.finish_superseded(now, &old, old_job, new);
        self.dispatch_queue(now, &queue);
    }

    pub(super) fn answer_query(&mut self, endpoint: Endpoint, peer: &PeerId, of: &str) {
        let key = JobKey::from(of);
        let mut msg = if let Some(msg) = self.tracked_job_message(&key) {
            msg
        } else if let Some(job) = self.jobs.get(&key) {
            let (state, jobmanager) = match &job.place {
                Place::Waiting | Place::Delayed { .. } => (JobState::Queued, None),
                Place::Blocked => (JobState::Blocked, None),
                Place::Running { jobmanager, .. } => (JobState::Running, Some(jobmanager.to_string())),
            };
            Message::Job {
                of: of.to_string(),
                state,
                detail: Box::new(JobDetail {
                    queue: job.queue.to_string(),
                    jobmanager,
                    expires: job
                        .extra
                        .as_ref()
                        .and_then(|e| e.expires_ms)
                        .map(emq_proto::views::timestamp_ms),
                    key: job.extra.as_ref().and_then(|e| e.key_text()),
                    ..JobDetail::default()
                }),
                result: None,
            }
        } else if let Some(done) = self.results.get(of) {
            Message::Job {
                of: of.to_string(),
                state: ended(done.result.outcome),
                detail: Box::new(JobDetail {
                    queue: done.queue.clone(),
                    ..JobDetail::default()
                }),
                result: Some(done.result.clone()),
            }
        } else {
            Message::Error {
                of: of.to_string(),
                code: ErrorCode::UnknownJob,
                reason: format!("no job {of} (never seen, or its result has expired)"),
            }
        };
        if let Message::Job { detail, .. } = &mut msg {
            self.describe_body(&key, detail);
        }
        self.send(endpoint, peer, msg);
    }

    /// Job `of`'s handler, headers and body (cut to a preview) into
    /// `detail`, while the router holds its body: waiting, running or dead.
    fn describe_body(&self, of: &JobKey, detail: &mut JobDetail) {
        let Some(job) = self.jobs.get(of).map(|j| &**j).or_else(|| self.dead_job(of)) else {
            return;
        };
        let content_type = Headers::parse(&job.headers).content_type;
        detail.handler = JobCall::handler_of(&job.body, content_type).ok();
        detail.headers = Some(job.headers.to_string());
        detail.body = Some(emq_proto::views::body_preview(&job.body));
        detail.body_bytes = Some(job.body.len() as u64);
    }

    /// Where job `of` is, if the router knows it.
    pub(super) fn state_of(&self, of: &str) -> Option<JobState> {
        let key = JobKey::from(of);
        if let Some(Message::Job { state, .. }) = self.tracked_job_message(&key) {
            return Some(state);
        }
        if let Some(job) = self.jobs.get(&key) {
            return Some(match job.place {
                Place::Waiting | Place::Delayed { .. } => JobState::Queued,
                Place::Blocked => JobState::Blocked,
                Place::Running { .. } => JobState::Running,
            });
        }
        self.results.get(of).map(|done| ended(done.result.outcome))
    }

    pub(super) fn cancel(&mut self, now: Instant, endpoint: Endpoint, peer: &PeerId, of: &str) {
        if self.cancel_waiting(now, &JobKey::from(of)) {
            info!("job {of} cancelled by {peer}");
        }
        self.answer_query(endpoint, peer, of);
    }

    /// Cancel job `of` if it has not started; its client gets a cancelled
    /// result. Returns whether it was cancelled.
    pub(super) fn cancel_waiting(&mut self, now: Instant, of: &JobKey) -> bool {
        self.cancel_not_started(now, of, "cancelled")
    }

    /// Cancel job `of` if it has not started (waiting, backing off or
    /// blocked), saying why in its result. Returns whether it was cancelled.
    pub(super) fn cancel_not_started(&mut self, now: Instant, of: &JobKey, reason: &str) -> bool {
        if !self.jobs.get(of).is_some_and(|j| j.is_waiting()) {
            return false;
        }
        let (key, job) = self.jobs.remove_entry(of).expect("checked above");
        self.detach(&key, &job, None);
        self.finish_cancelled(now, &key, job, reason);
        true
    }

    /// End a job (out of every place) CANCELLED, `reason` as its error.
    pub(super) fn finish_cancelled(&mut self, now: Instant, key: &JobKey, job: Box<Job>, reason: &str) {
        let result = ResultFrames {
            of: key.to_text(),
            outcome: Outcome::Cancelled,
            content_type: ContentType::Json,
            body: JobResult::failed(Outcome::Cancelled, reason).encode_body(ContentType::Json),
        };
        self.finish(now, key, job, result, true);
    }

    /// Send a finished job's result to its client when it asked for it;
    /// keep it for lookup when nobody is waiting for it (or `keep`). A result
    /// that cannot be delivered is kept too (see `undeliverable`).
    pub(super) fn finish(&mut self, now: Instant, key: &JobKey, mut job: Box<Job>, result: ResultFrames, keep: bool) {
        let dead = job.guarantee && Self::retried_when_guaranteed(result.outcome);
        self.note_ended(now, key, &job, result.outcome, dead, &result.body);
        let carries = Carries::Result {
            of: key.clone(),
            queue: job.queue.clone(),
        };
        // The one door out: a key never outlives its job.
        if let Some(extra) = job.extra.as_mut() {
            for peer in std::mem::take(&mut extra.also_reply) {
                let reply = Message::Reply(Reply::Result(result.clone()));
                self.push(Endpoint::Frontend, &peer, reply, job.guarantee, carries.clone());
            }
            self.release_flow(key, &job);
        }
        if job.guarantee {
            self.track_finish(now, key, job.as_ref(), &result);
            if job.result_to.requested() {
                // Only once its end is journaled: a client that has the result
                // must never see the job run again after a crash.
                let reply = Message::Reply(Reply::Result(result));
                if job.result_to == ResultTo::ClientBatched {
                    self.send_batched(&job.client, reply, true, Some((key.clone(), job.queue.clone())));
                } else {
                    self.send_journaled(&job.client, reply, carries);
                }
            }
            self.keep_if_dead(key, job);
            return;
        }
        if keep || !job.result_to.requested() {
            self.results.insert(now, job.queue.to_string(), result.clone());
        }
        if job.result_to == ResultTo::ClientBatched {
            // With the others of this turn for the same client, in a BATCH.
            let reply = Message::Reply(Reply::Result(result));
            self.send_batched(&job.client, reply, false, Some((key.clone(), job.queue.clone())));
        } else if job.result_to == ResultTo::Client {
            // The common case moves the result; only a kept one is copied.
            let reply = Message::Reply(Reply::Result(result));
            self.push(Endpoint::Frontend, &job.client, reply, false, carries);
        }
    }
}
