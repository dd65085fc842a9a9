//! Admin commands (admin endpoint only): DISCONNECT, STATUS,
//! ROUTER_SHOW_WORKERS, ROUTER_SHOW_SCHEDULERS, DEAD, RETRY, PURGE, the
//! schedule commands (handled in `schedules.rs`), and the typed views they
//! answer with (`emq_proto::views`).

use std::collections::BTreeMap;
use std::time::Instant;

use emq_proto::views::{
    EventMqWorker, JobManagerStatus, JobPage, PeerKind, Purged, RouterStatus, SchedulersView, WaitingJob, WorkersView,
};
use emq_proto::{ErrorCode, Headers, JobCall, Message, Reply, ReplyNotice};
use log::{info, warn};

use super::jobs::{JobKey, Place};
use super::{Endpoint, Lifecycle, PeerId, Router};
use crate::HashMap;

/// Most jobs one WAITING answer lists.
pub(crate) const MAX_PAGE: u64 = 1000;

impl Router {
    pub(super) fn on_admin(&mut self, now: Instant, peer: PeerId, msgid: String, msg: Message) {
        match msg {
            Message::Disconnect => {
                info!("DISCONNECT from admin {peer}: stopping");
                let ack = Message::Ack {
                    of: msgid,
                    timing: None,
                    admission: None,
                    capabilities: Default::default(),
                };
                self.send(Endpoint::Admin, &peer, ack);
                self.lifecycle = Lifecycle::StopRequested;
            }
            Message::Status => {
                let view = self.status_view(now);
                self.answer(&peer, ReplyNotice::of(&view));
            }
            Message::RouterShowWorkers => {
                let view = self.workers_view(now);
                self.answer(&peer, ReplyNotice::of(&view));
            }
            Message::RouterShowSchedulers => {
                let view = SchedulersView {
                    connected_schedulers: BTreeMap::new(),
                    schedules: self.schedules.len() as u64,
                    next_fire: self.next_fire().map(emq_proto::views::timestamp_ms),
                };
                self.answer(&peer, ReplyNotice::of(&view));
            }
            Message::Schedules => {
                let view = self.schedule_list();
                self.answer(&peer, ReplyNotice::of(&view));
            }
            Message::QueueSet { queue, change } => match self.set_queue_control(now, &queue, &change) {
                Ok(view) => {
                    info!("queue {queue:?} set by admin {peer}: {change:?}");
                    let notice = Message::Reply(Reply::Notice(ReplyNotice::of(&view)));
                    self.push(Endpoint::Admin, &peer, notice, true, super::Carries::Other);
                }
                Err(reason) => self.refuse(Endpoint::Admin, &peer, &msgid, ErrorCode::Invalid, &reason),
            },
            Message::ScheduleSet { spec, body } => self.on_schedule_set(self.now(), &peer, &msgid, spec, body),
            Message::ScheduleCtl { name, action } => self.on_schedule_ctl(self.now(), &peer, &msgid, &name, action),
            Message::Dead => {
                let view = self.dead_list();
                self.answer(&peer, ReplyNotice::of(&view));
            }
            Message::Query { of } => self.answer_query(Endpoint::Admin, &peer, &of),
            Message::Graphs => {
                let view = self.graph_list();
                self.answer(&peer, ReplyNotice::of(&view));
            }
            Message::GraphQuery { id } => self.on_graph_query(Endpoint::Admin, &peer, &msgid, &id),
            Message::GraphCancel { id } => self.on_graph_cancel(now, Endpoint::Admin, &peer, &msgid, &id),
            Message::Cancel { of } => self.cancel(now, Endpoint::Admin, &peer, &of),
            Message::Retry { of } => self.retry_dead(now, &peer, &of),
            Message::Purge { queue } => self.purge_queue(now, &peer, &queue),
            Message::Waiting { queue, offset, limit } => {
                let view = self.waiting_page(now, &queue, offset, limit);
                self.answer(&peer, ReplyNotice::of(&view));
            }
            Message::Discard { of } => self.discard_dead(&peer, &of),
            Message::Heartbeat { .. } | Message::Kbye | Message::Hello => {}
            other => {
                let reason = format!("{} is not an admin command", other.command().as_str());
                self.refuse(Endpoint::Admin, &peer, &msgid, ErrorCode::UnknownCommand, &reason)
            }
        }
    }

    fn answer(&mut self, peer: &PeerId, notice: ReplyNotice) {
        self.send(Endpoint::Admin, peer, Message::Reply(Reply::Notice(notice)));
    }

    /// PURGE: cancel every job waiting (or backing off) in `queue`. The
    /// waiting list is taken whole (cancelling one by one would search it
    /// once per job).
    fn purge_queue(&mut self, now: Instant, peer: &PeerId, queue: &str) {
        let mut purged = 0;
        for key in self.queues.take_all(queue) {
            if let Some(job) = self.jobs.remove(&key) {
                debug_assert!(matches!(job.place, Place::Waiting));
                self.finish_cancelled(now, &key, job, "cancelled");
                purged += 1;
            }
        }
        let delayed: Vec<JobKey> = self
            .jobs
            .iter()
            .filter(|(_, j)| &*j.queue == queue && matches!(j.place, Place::Delayed { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        purged += delayed.iter().filter(|id| self.cancel_waiting(now, id)).count() as u64;
        warn!("queue {queue:?} purged by {peer}: {purged} waiting jobs cancelled");
        let view = Purged {
            queue: queue.to_string(),
            purged,
        };
        self.answer(peer, ReplyNotice::of(&view));
    }

    /// WAITING: a page of `queue`'s waiting jobs, oldest first; at most
    /// [`MAX_PAGE`] jobs whatever `limit` asks.
    fn waiting_page(&self, now: Instant, queue: &str, offset: u64, limit: u64) -> JobPage {
        let Some(q) = self.queues.get(queue) else {
            return JobPage {
                queue: queue.to_string(),
                offset,
                ..JobPage::default()
            };
        };
        let jobs = q
            .waiting()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit.min(MAX_PAGE) as usize)
            .filter_map(|key| {
                let job = self.jobs.get(key)?;
                let content_type = Headers::parse(&job.headers).content_type;
                Some(WaitingJob {
                    id: key.to_text(),
                    handler: JobCall::handler_of(&job.body, content_type).ok(),
                    guaranteed: job.guarantee,
                    attempts: u32::from(job.attempts),
                    waited_ms: self.since_ready(now, job).map(|d| d.as_millis() as u64),
                })
            })
            .collect();
        JobPage {
            queue: queue.to_string(),
            total: q.waiting_len() as u64,
            offset,
            jobs,
        }
    }

    /// Running jobs per queue: `(count, sum of ages in ms, oldest in ms)`.
    fn running_by_queue(&self, now: Instant) -> HashMap<&str, (u64, u128, u128)> {
        let mut by_queue: HashMap<&str, (u64, u128, u128)> = HashMap::with_hasher(self.hasher.clone());
        for job in self.jobs.values() {
            if let Place::Running { since, .. } = job.place {
                let age = now.saturating_duration_since(since).as_millis();
                let e = by_queue.entry(&*job.queue).or_default();
                e.0 += 1;
                e.1 += age;
                e.2 = e.2.max(age);
            }
        }
        by_queue
    }

    /// The answer to STATUS.
    pub(crate) fn status_view(&self, now: Instant) -> RouterStatus {
        let running = self.running_by_queue(now);
        let mut status = RouterStatus {
            jobmanagers: self.jobmanager_views(now),
            waiting_total: self.queues.waiting_total() as u64,
            results_kept: self.results.len() as u64,
            delayed: self.timers.len() as u64,
            schedules: self.schedules.len() as u64,
            graphs: self.graphs.len() as u64,
            blocked: self.graphs.blocked() as u64,
            uptime_s: self.uptime(now).as_secs(),
            ha: self.ha.clone(),
            ..RouterStatus::default()
        };
        for (q, (n, sum, max)) in &running {
            status.inflight_messages_by_queue.insert(q.to_string(), *n);
            status
                .latency_messages_by_queue
                .insert(q.to_string(), (sum / (*n).max(1) as u128) as u64);
            status.max_latency_messages_by_queue.insert(q.to_string(), *max as u64);
        }
        for (name, q) in self.queues.iter() {
            if q.has_waiting() {
                status
                    .waiting_messages_by_queue
                    .insert(name.clone(), q.waiting_len() as u64);
            }
            status.processed_messages_by_queue.insert(name.clone(), q.processed);
            let running = running.get(name.as_str()).map_or(0, |e| e.0);
            status.queues.insert(name.clone(), self.queue_status(name, running));
        }
        for (peer, jm) in &self.fleet {
            status
                .processed_messages_by_worker
                .insert(peer.to_string(), jm.processed);
        }
        status
    }

    fn jobmanager_views(&self, now: Instant) -> BTreeMap<String, JobManagerStatus> {
        self.fleet
            .iter()
            .map(|(peer, jm)| {
                let view = JobManagerStatus {
                    queues: jm.queues.clone(),
                    slots: u64::from(jm.slots),
                    running: jm.running.len() as u64,
                    processed: jm.processed,
                    state: jm.state,
                    last_seen_ms: now.saturating_duration_since(jm.last_seen).as_millis() as u64,
                    liveness_ms: jm.window.as_millis() as u64,
                    kind: if jm.is_eventmq() {
                        PeerKind::Eventmq
                    } else {
                        PeerKind::Emq
                    },
                    workers: jm.workers,
                };
                (peer.to_string(), view)
            })
            .collect()
    }

    /// The answer to ROUTER_SHOW_WORKERS, in EventMQ's shape plus emq's.
    pub(crate) fn workers_view(&self, now: Instant) -> WorkersView {
        let connected_workers = self
            .fleet
            .iter()
            .map(|(peer, jm)| {
                let age = now.saturating_duration_since(jm.last_seen).as_secs_f64();
                let view = EventMqWorker {
                    queues: jm.queues.clone(),
                    hb: -age,
                    available_slots: u64::from(jm.slots),
                    state: jm.state,
                };
                (peer.to_string(), view)
            })
            .collect();
        let connected_queues = self
            .queues
            .iter()
            .map(|(name, q)| {
                let members = q.members.iter().map(|m| (m.weight, m.peer.to_string())).collect();
                (name.clone(), members)
            })
            .collect();
        WorkersView {
            connected_workers,
            connected_queues,
            jobmanagers: self.jobmanager_views(now),
        }
    }
}
