//! A router core and a jobmanager core (`emq_worker::core::JobManager`)
//! wired together in memory, as quinn-proto's tests wire a client and a
//! server: [`Pair::step`] advances simulated time to the earliest thing that
//! happens next (a delivery, a deadline of either core, a job finishing) and
//! can delay or drop messages each way. Heartbeats, liveness, failover and
//! slot accounting are checked here in simulated microseconds, without
//! sockets or sleeps.

use std::collections::VecDeque;

use emq_proto::{JobCall, Now};
use emq_worker::core::{Action, JobManager, State};

use super::*;

/// What the simulated network does to messages in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Delivered after the latency.
    Up,
    /// Lost.
    Down,
}

struct Pair {
    now: Now,
    router: Router,
    jm: JobManager,
    /// The jobmanager's current identity (a fresh one per connection).
    jm_peer: PeerId,
    connections: usize,
    latency: Duration,
    to_router: Link,
    to_jm: Link,
    /// Frames on their way, with their delivery time.
    in_flight_to_router: VecDeque<(Instant, Vec<Vec<u8>>)>,
    in_flight_to_jm: VecDeque<(Instant, Vec<Vec<u8>>)>,
    /// Jobs running in the simulated pool, with their end time.
    pool: Vec<(Instant, String)>,
    /// Jobs in the pool's shared queue, taken by the next free worker.
    queued: VecDeque<String>,
    /// The pool's workers.
    workers: usize,
    job_time: Duration,
    /// Results the client received, by job id.
    results: Vec<String>,
    /// REQUESTs the jobmanager received (with repeats).
    received: Vec<String>,
}

const CLIENT: &str = "client";

impl Pair {
    fn new(router_config: Config, jm_config: emq_worker::Config) -> Pair {
        let now = Now::new(Instant::now(), 1_700_000_000_000);
        let mut pair = Pair {
            now,
            router: Router::new(router_config, now, SEED),
            jm: JobManager::new(jm_config.clone(), now, 7),
            jm_peer: peer("jm-0"),
            connections: 0,
            latency: Duration::from_millis(1),
            to_router: Link::Up,
            to_jm: Link::Up,
            in_flight_to_router: VecDeque::new(),
            in_flight_to_jm: VecDeque::new(),
            pool: Vec::new(),
            queued: VecDeque::new(),
            workers: jm_config.concurrency,
            job_time: Duration::from_millis(5),
            results: Vec::new(),
            received: Vec::new(),
        };
        pair.exchange();
        pair
    }

    fn jm_config(concurrency: usize, prefetch: usize) -> emq_worker::Config {
        emq_worker::Config {
            routers: vec!["r".into()],
            concurrency,
            prefetch: Some(prefetch),
            heartbeat: Duration::from_secs(1),
            liveness: Duration::from_secs(3),
            ..emq_worker::Config::default()
        }
    }

    /// Move what both cores produced onto the links and into the pool.
    fn exchange(&mut self) {
        loop {
            // Free workers take queued jobs.
            while self.pool.len() < self.workers {
                let Some(msgid) = self.queued.pop_front() else { break };
                self.jm.on_job_started(self.now, &msgid);
                self.pool.push((self.now.mono + self.job_time, msgid));
            }
            let actions: Vec<Action> = self.jm.take_actions().collect();
            let outgoing: Vec<Outgoing> = self.router.take_outgoing().collect();
            if actions.is_empty() && outgoing.is_empty() {
                return;
            }
            let _ = self.router.take_store_ops();
            // As the jobmanager's transport does: a turn's messages in one
            // BATCH to a router that reads them.
            let batching = self.jm.router_reads_batches();
            let mut batch = emq_proto::BatchWriter::new();
            for action in actions {
                match action {
                    Action::Connect { .. } => {
                        self.connections += 1;
                        self.jm_peer = peer(&format!("jm-{}", self.connections));
                        // A new connection: what was on the old one is gone.
                        self.in_flight_to_jm.clear();
                    }
                    Action::Send { msgid, message } => {
                        if self.to_router == Link::Up {
                            let at = self.now.mono + self.latency;
                            match batching {
                                true => batch.push_message(&msgid, message).expect("small messages"),
                                false => self.in_flight_to_router.push_back((at, message.into_frames(&msgid))),
                            }
                        }
                    }
                    Action::Start { msgid, .. } => self.queued.push_back(msgid),
                    Action::Kill { msgid } => self.pool.retain(|(_, id)| *id != msgid),
                    Action::Withdraw => {
                        for msgid in std::mem::take(&mut self.queued).into_iter().rev() {
                            self.jm.on_job_returned(&msgid);
                        }
                    }
                    Action::KillAll | Action::Resize { .. } | Action::Exit => {}
                }
            }
            if !batch.is_empty() {
                let frames = batch.take_frames(&self.jm.next_msgid());
                self.in_flight_to_router
                    .push_back((self.now.mono + self.latency, frames));
            }
            for out in outgoing {
                match out.endpoint {
                    Endpoint::Backend if out.peer == self.jm_peer && self.to_jm == Link::Up => {
                        self.in_flight_to_jm
                            .push_back((self.now.mono + self.latency, out.frames));
                    }
                    Endpoint::Frontend => {
                        if let Ok(env) = emq_proto::decode(&out.frames) {
                            if let Message::Reply(Reply::Result(r)) = env.message {
                                self.results.push(r.of);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn next_event(&self) -> Instant {
        let mut next = self.router.next_deadline().min(self.jm.next_deadline());
        for at in [
            self.in_flight_to_router.front().map(|(at, _)| *at),
            self.in_flight_to_jm.front().map(|(at, _)| *at),
            self.pool.iter().map(|(at, _)| *at).min(),
        ]
        .into_iter()
        .flatten()
        {
            next = next.min(at);
        }
        next
    }

    /// Advance to the next event and handle everything due then.
    fn step(&mut self) {
        let next = self.next_event().max(self.now.mono);
        self.now = self.now.after(next - self.now.mono);
        let now = self.now;
        while self.in_flight_to_router.front().is_some_and(|(at, _)| *at <= now.mono) {
            let (_, frames) = self.in_flight_to_router.pop_front().expect("peeked");
            self.router
                .handle(now, Endpoint::Backend, self.jm_peer.clone(), &frames);
        }
        while self.in_flight_to_jm.front().is_some_and(|(at, _)| *at <= now.mono) {
            let (_, frames) = self.in_flight_to_jm.pop_front().expect("peeked");
            let mut messages = Vec::new();
            match emq_proto::batch_entries(&frames) {
                None => messages.push(emq_proto::decode(&frames).expect("the router sends valid frames")),
                Some(entries) => {
                    let mut entries = entries.expect("the router sends valid frames");
                    let mut entry = Vec::new();
                    while let Some(read) = entries.next_message(&mut entry, usize::MAX) {
                        messages.push(read.expect("valid entries"));
                    }
                }
            }
            for env in messages {
                if let Message::Request(_) = env.message {
                    self.received.push(env.msgid.clone());
                }
                self.jm.on_router(now, &env.msgid, env.message);
            }
        }
        let (done, running): (Vec<_>, Vec<_>) = self.pool.drain(..).partition(|(at, _)| *at <= now.mono);
        self.pool = running;
        for (_, id) in done {
            self.jm
                .on_job_done(now, &id, Outcome::Ok, ContentType::Json, br#"{"value":null}"#.to_vec());
        }
        if now.mono >= self.router.next_deadline() {
            self.router.tick(now);
        }
        if now.mono >= self.jm.next_deadline() {
            self.jm.tick(now);
        }
        self.exchange();
        self.check_slots();
    }

    /// Run until `d` of simulated time has passed.
    fn run_for(&mut self, d: Duration) {
        let until = self.now.mono + d;
        while self.now.mono < until {
            self.step();
        }
    }

    /// Run until `cond` holds; returns how long that took.
    fn run_until(&mut self, within: Duration, mut cond: impl FnMut(&Pair) -> bool) -> Duration {
        let start = self.now.mono;
        while !cond(self) {
            assert!(self.now.mono - start < within, "not within {within:?}");
            self.step();
        }
        self.now.mono - start
    }

    fn submit(&mut self, id: &str) {
        let req = Request {
            queue: "default".into(),
            headers: Headers::parse("reply-requested"),
            body: JobCall::new("emq.noop").encode(ContentType::Json),
        };
        let frames = Message::Request(req).encode_with_id(id);
        self.router.handle(self.now, Endpoint::Frontend, peer(CLIENT), &frames);
        self.exchange();
    }

    fn router_knows_jm(&self) -> bool {
        self.router.fleet.contains_key(&self.jm_peer)
    }

    /// Slots are never over-announced: what the router may still send the
    /// jobmanager, plus what is on its way to it, plus what it holds, never
    /// exceeds what it can hold.
    fn check_slots(&self) {
        let Some(jm) = self.router.fleet.get(&self.jm_peer) else {
            return;
        };
        let on_the_way = self
            .in_flight_to_jm
            .iter()
            .filter(|(_, f)| f.get(2).is_some_and(|c| c == b"REQUEST"))
            .count();
        let promised = jm.slots as usize + on_the_way + self.jm.held();
        assert!(
            promised <= self.jm.capacity(),
            "at {:?}: router slots {} + {on_the_way} on the way + {} held > capacity {}",
            self.now.mono,
            jm.slots,
            self.jm.held(),
            self.jm.capacity()
        );
    }
}

#[test]
fn an_idle_pair_stays_connected_on_heartbeats_alone() {
    let mut p = Pair::new(Config::default(), Pair::jm_config(2, 0));
    p.run_until(Duration::from_secs(1), |p| p.jm.state() == State::Idle);
    p.run_for(Duration::from_secs(600));
    assert_eq!(p.connections, 1, "no spurious reconnect in ten idle minutes");
    assert!(p.router_knows_jm());
    assert_eq!(p.jm.state(), State::Idle);
}

#[test]
fn a_cut_link_is_noticed_by_both_sides_within_their_windows_and_heals() {
    let mut p = Pair::new(Config::default(), Pair::jm_config(2, 0));
    p.run_until(Duration::from_secs(1), |p| p.jm.state() == State::Idle);
    p.run_for(Duration::from_millis(2_500));
    let cut_peer = p.jm_peer.clone();
    p.to_router = Link::Down;
    p.to_jm = Link::Down;
    // The router: dead after its liveness window (5 s, as the jobmanager
    // announced a 1 s heartbeat), counted from the last message heard.
    let router_noticed = p.run_until(Duration::from_secs(10), |p| !p.router.fleet.contains_key(&cut_peer));
    assert!(
        router_noticed > Duration::from_millis(3_900) && router_noticed <= Duration::from_secs(5),
        "router took {router_noticed:?}"
    );
    // The jobmanager: reconnects after max(its 3 s liveness, 3 x the
    // router's 1 s heartbeat), counted from the last message heard.
    assert!(p.connections >= 2, "the jobmanager reconnected meanwhile");
    assert_eq!(p.jm.state(), State::Offline);
    p.to_router = Link::Up;
    p.to_jm = Link::Up;
    let healed = p.run_until(Duration::from_secs(10), |p| {
        p.jm.state() == State::Idle && p.router_knows_jm()
    });
    assert!(healed <= Duration::from_secs(6), "healed in {healed:?}");
    for i in 0..10 {
        p.submit(&format!("after-{i}"));
    }
    p.run_until(Duration::from_secs(5), |p| p.results.len() == 10);
}

#[test]
fn slots_are_never_over_announced_under_load_loss_and_restart() {
    let mut p = Pair::new(Config::default(), Pair::jm_config(4, 6));
    p.run_until(Duration::from_secs(1), |p| p.jm.state() == State::Idle);
    for i in 0..300 {
        p.submit(&format!("a-{i}"));
    }
    p.run_for(Duration::from_millis(150));
    // Lose everything the router sends, long enough for the jobmanager to
    // give up on the connection and make a new one: what was sent on the
    // old one is lost, and comes back when the router declares it dead.
    p.to_jm = Link::Down;
    p.run_for(Duration::from_secs(4));
    p.to_jm = Link::Up;
    p.run_until(Duration::from_secs(60), |p| p.results.len() == 300);
    // A router restart: a fresh core that knows nobody.
    let now = p.now;
    p.router = Router::new(Config::default(), now, SEED + 1);
    p.run_until(Duration::from_secs(10), |p| {
        p.router_knows_jm() && p.jm.state() == State::Idle
    });
    for i in 0..100 {
        p.submit(&format!("b-{i}"));
    }
    p.run_until(Duration::from_secs(60), |p| p.results.len() == 400);
    let mut ids = p.results.clone();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 400, "every job's result arrived once");
}
