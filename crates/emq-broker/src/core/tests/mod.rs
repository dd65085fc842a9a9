//! Core tests with simulated time: no sockets, no sleeps, a fixed seed. One
//! file per subject; [`Sim`] drives a [`Router`] and reads what it sends.

use super::*;
use emq_proto::{
    decode, ContentType, Envelope, Headers, Inform, JobManagerState, JobState, Outcome, PeerType, Reply, Request,
    ResultFrames, Timing,
};

use crate::core::handlers::HandlerId;
use crate::core::jobs::Place;
use crate::UnknownQueuePolicy;

mod admin;
mod batch;
mod clients;
mod delayed;
mod fleet;
mod flow;
mod graphs;
mod guaranteed;
mod handlers;
mod observe;
mod pair;
mod random;
mod routing;
mod schedules;

/// The seed of every simulated router: runs repeat exactly.
const SEED: u128 = 0x5EED_0000_0000_0000_0000_0000_0000_0001;

pub(super) struct Sim {
    pub r: Router,
    pub now: Now,
    /// Jobmanagers that [`Sim::run_for`] keeps alive with heartbeats.
    pub alive: Vec<String>,
    /// What [`Sim::commit`] wrote, for [`Sim::restart`].
    pub journal: MemJournal,
    /// REQUESTs a helper drained before the test read them.
    pub stash: Vec<(String, emq_proto::JobCall)>,
    config: Config,
}

/// A journal in memory that applies store operations as the redb store does.
#[derive(Debug, Default, Clone)]
pub(super) struct MemJournal(pub std::collections::BTreeMap<(Table, String), Vec<u8>>);

impl MemJournal {
    pub(super) fn apply(&mut self, ops: Vec<StoreOp>) {
        for op in ops {
            match op {
                StoreOp::Put { table, key, value } => {
                    self.0.insert((table, key), value);
                }
                StoreOp::Delete { table, key } => {
                    self.0.remove(&(table, key));
                }
            }
        }
    }

    pub(super) fn rows(&self) -> Vec<Row> {
        self.0
            .iter()
            .map(|((table, key), value)| Row {
                table: *table,
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }
}

/// The msgid of the job whose record is put under journal key `row` in
/// `ops` (job rows are keyed by arrival order, the msgid is in the record).
pub(super) fn msgid_of_row(ops: &[StoreOp], row: &str) -> Option<String> {
    ops.iter().find_map(|op| match op {
        StoreOp::Put {
            table: Table::Records,
            key,
            value,
        } if key == row => rmp_serde::from_slice::<crate::tracking::JobRecord>(value).ok()?.id,
        _ => None,
    })
}

/// The record put for job `msgid` in `ops`, if any.
pub(super) fn record_put(ops: &[StoreOp], msgid: &str) -> Option<crate::tracking::JobRecord> {
    ops.iter().find_map(|op| match op {
        StoreOp::Put {
            table: Table::Records,
            value,
            ..
        } => rmp_serde::from_slice::<crate::tracking::JobRecord>(value)
            .ok()
            .filter(|r| r.id.as_deref() == Some(msgid)),
        _ => None,
    })
}

/// The JSON of the first notice (an admin answer) in `out`.
pub(super) fn notice(out: &[(Endpoint, String, Envelope)]) -> serde_json::Value {
    let json = out
        .iter()
        .find_map(|(_, _, e)| match &e.message {
            Message::Reply(Reply::Notice(n)) => Some(n.0.clone()),
            _ => None,
        })
        .expect("a notice");
    serde_json::from_str(&json).unwrap()
}

pub(super) fn peer(s: &str) -> PeerId {
    PeerId(s.as_bytes().to_vec())
}

impl Sim {
    /// The journal key of tracked job `msgid`'s rows.
    pub(super) fn row_of(&self, msgid: &str) -> String {
        self.r
            .guaranteed
            .record(&JobKey::from(msgid))
            .expect("tracked")
            .row_key()
    }

    pub(super) fn new(config: Config) -> Sim {
        Sim::at(config, 1_700_000_000_000)
    }

    /// A router whose wall clock starts at `unix_ms`. Restored jobs are
    /// queued at once (no `restore_grace`): the tests of what a restart
    /// keeps check that; `with_restore_grace` tests the grace.
    pub(super) fn at(config: Config, unix_ms: i64) -> Sim {
        Sim::with_restore_grace(
            Config {
                restore_grace: Duration::ZERO,
                ..config
            },
            unix_ms,
        )
    }

    /// A router with `config` as given, its restore grace included.
    pub(super) fn with_restore_grace(config: Config, unix_ms: i64) -> Sim {
        let now = Now::new(Instant::now(), unix_ms);
        Sim {
            r: Router::new(config.clone(), now, SEED),
            now,
            alive: Vec::new(),
            journal: MemJournal::default(),
            stash: Vec::new(),
            config,
        }
    }

    /// Commit what the router asked to journal.
    pub(super) fn commit(&mut self) {
        let ops = self.r.take_store_ops();
        self.journal.apply(ops);
    }

    /// The router dies (after its last commit: what it did not commit is
    /// lost), stays down for `down`, and starts again on its journal.
    pub(super) fn restart(&mut self, down: Duration) {
        let _lost = self.r.take_store_ops();
        let _unsent: Vec<Outgoing> = self.r.take_outgoing().collect();
        self.now = self.now.after(down);
        self.r = Router::new(self.config.clone(), self.now, SEED);
        self.r.restore(self.now, self.journal.rows()).expect("journal restores");
    }

    pub(super) fn default() -> Sim {
        Sim::new(Config {
            liveness: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
            ..Config::default()
        })
    }

    pub(super) fn send(&mut self, ep: Endpoint, from: &str, msgid: &str, msg: Message) {
        let frames = msg.encode_with_id(msgid);
        self.r.handle(self.now, ep, peer(from), &frames);
    }

    pub(super) fn inform(&mut self, jm: &str, queues: &[(i64, &str)]) {
        let queues = queues.iter().map(|(w, q)| (*w, q.to_string())).collect();
        let timing = Some(Timing {
            heartbeat_ms: 1000,
            liveness_ms: 3000,
        });
        self.send(
            Endpoint::Backend,
            jm,
            "inform",
            Message::Inform(Inform {
                queues,
                peer_type: PeerType::Worker,
                timing,
                capabilities: Default::default(),
            }),
        );
    }

    /// An EventMQ jobmanager (no timing) INFORMs, for the router's default queues.
    pub(super) fn inform_eventmq(&mut self, jm: &str) {
        self.send(
            Endpoint::Backend,
            jm,
            "i",
            Message::Inform(Inform {
                queues: vec![],
                peer_type: PeerType::Worker,
                timing: None,
                capabilities: Default::default(),
            }),
        );
    }

    pub(super) fn ready(&mut self, jm: &str, n: usize) {
        for _ in 0..n {
            self.send(Endpoint::Backend, jm, "r", Message::Ready { count: 1 });
        }
    }

    pub(super) fn request(&mut self, client: &str, id: &str, queue: &str, headers: &str) {
        let req = Request {
            queue: queue.into(),
            headers: Headers::parse(headers),
            body: b"[]".to_vec(),
        };
        self.send(Endpoint::Frontend, client, id, Message::Request(req));
    }

    pub(super) fn reply(&mut self, jm: &str, of: &str) {
        let r = ResultFrames {
            of: of.into(),
            outcome: Outcome::Ok,
            content_type: ContentType::Json,
            body: br#"{"value":1}"#.to_vec(),
        };
        self.send(Endpoint::Backend, jm, "rep", Message::Reply(Reply::Result(r)));
    }

    /// A REPLY from `jm` for `of` with `outcome` (its body names an error,
    /// whatever the outcome).
    pub(super) fn reply_with(&mut self, jm: &str, of: &str, outcome: Outcome) {
        let r = ResultFrames {
            of: of.into(),
            outcome,
            content_type: ContentType::Json,
            body: br#"{"value":null,"error":"x"}"#.to_vec(),
        };
        self.send(Endpoint::Backend, jm, "rep", Message::Reply(Reply::Result(r)));
    }

    /// A HEARTBEAT from jobmanager `jm`.
    pub(super) fn heartbeat(&mut self, jm: &str) {
        let hb = Message::Heartbeat {
            unix_time: "0".into(),
            state: None,
            workers: None,
        };
        self.send(Endpoint::Backend, jm, "hb", hb);
    }

    pub(super) fn advance(&mut self, d: Duration) {
        self.now = self.now.after(d);
        self.r.tick(self.now);
    }

    /// Let `d` pass, ticking at every deadline the router asks for (as the
    /// transport would), not just once at the end; the jobmanagers in
    /// `alive` send a HEARTBEAT every second.
    pub(super) fn run_for(&mut self, d: Duration) {
        let end = self.now.mono + d;
        let mut next_heartbeat = self.now.mono;
        loop {
            if !self.alive.is_empty() && next_heartbeat <= self.now.mono {
                for jm in self.alive.clone() {
                    self.heartbeat(&jm);
                }
                next_heartbeat = self.now.mono + Duration::from_secs(1);
            }
            let mut next = self.r.next_deadline().max(self.now.mono);
            if !self.alive.is_empty() {
                next = next.min(next_heartbeat);
            }
            if next > end {
                break;
            }
            self.now = self.now.after(next - self.now.mono);
            self.r.tick(self.now);
        }
        self.now = self.now.after(end - self.now.mono);
    }

    /// What the router sent, in order, a BATCH's entries one by one.
    pub(super) fn drain(&mut self) -> Vec<(Endpoint, String, Envelope)> {
        let sent: Vec<Outgoing> = self.r.take_outgoing().collect();
        sent.into_iter()
            .flat_map(|o| {
                unbatch(&o.frames)
                    .into_iter()
                    .map(move |e| (o.endpoint, o.peer.to_string(), e))
            })
            .collect()
    }

    /// REQUESTs sent to jobmanagers, as (jobmanager, msgid).
    pub(super) fn dispatched(&mut self) -> Vec<(String, String)> {
        self.drain()
            .into_iter()
            .filter_map(|(ep, p, e)| match (ep, e.message) {
                (Endpoint::Backend, Message::Request(_)) => Some((p, e.msgid)),
                _ => None,
            })
            .collect()
    }
}

/// The messages in `frames`: the entries of a BATCH, or the one message.
pub(super) fn unbatch(frames: &[Vec<u8>]) -> Vec<Envelope> {
    let Some(entries) = emq_proto::batch_entries(frames) else {
        return vec![decode(frames).expect("router sends valid frames")];
    };
    let mut entries = entries.expect("router sends valid BATCHes");
    let (mut entry, mut all) = (Vec::new(), Vec::new());
    while let Some(read) = entries.next_message(&mut entry, usize::MAX) {
        all.push(read.expect("valid entries"));
    }
    all
}

pub(super) fn d(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}
