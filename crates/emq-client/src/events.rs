//! Reading a router's event stream (`emq-router --events ENDPOINT`):
//! a SUB socket, bursts put back in order, a filter, and gap and restart
//! detection from each event's sequence number and router instance.
//!
//! The router publishes a burst every few milliseconds as one message per
//! topic; a [`Subscriber`] collects a burst's messages, sorts their events
//! by sequence number and hands them out one at a time, so that events come
//! in the order they happened.
//!
//! ```no_run
//! use std::time::Duration;
//! use emq_client::events::{Subscriber, Filter};
//!
//! let mut sub = Subscriber::connect("tcp://127.0.0.1:47294", &Filter::all(), Default::default())?;
//! while let Some(got) = sub.next(Duration::from_secs(1))? {
//!     if got.missed > 0 {
//!         eprintln!("lost {} events", got.missed);
//!     }
//!     println!("{} {:?}", got.event.kind, got.event.job);
//! }
//! # Ok::<(), emq_client::ClientError>(())
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use emq_net::handshake::Watched;
pub use emq_proto::events::{topic_prefix, Event, EventKind};

/// How long an incomplete burst is held for its missing parts when no
/// newer burst comes (one does within milliseconds while the router is
/// busy, and shows that the parts were lost) before its events are handed
/// out anyway. A burst's parts leave the router back to back: a part only
/// misses this if it was dropped.
const BURST_PATIENCE: Duration = Duration::from_secs(1);

use crate::{ClientError, ClientOptions};

/// Which events to pass on. A [`Subscriber`] receives every event and
/// filters on this side, so that a jump in the sequence is always a real
/// loss; a raw SUB socket can instead filter at the router by topic
/// ([`topic_prefix`]), at the price of not telling losses from events it
/// did not ask for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Kinds wanted (none: all). A kind's text or a prefix of kinds
    /// (`job.`) as given by `--kind` is resolved by [`Filter::kinds_from`].
    pub kinds: Vec<EventKind>,
    /// Only events of this queue.
    pub queue: Option<String>,
}

impl Filter {
    /// Every event.
    pub fn all() -> Filter {
        Filter::default()
    }

    /// Kinds named by `names`: exact (`job.finished`) or a prefix ending in
    /// a dot (`job.`, `jobmanager.`).
    pub fn kinds_from(names: &[String]) -> Result<Vec<EventKind>, String> {
        use strum::VariantArray;
        let mut kinds = Vec::new();
        for name in names {
            let matching: Vec<EventKind> = EventKind::VARIANTS
                .iter()
                .copied()
                .filter(|k| k.as_str() == name || (name.ends_with('.') && k.as_str().starts_with(name.as_str())))
                .collect();
            if matching.is_empty() {
                let all: Vec<&str> = EventKind::VARIANTS.iter().map(|k| k.as_str()).collect();
                return Err(format!("no event kind {name:?}; kinds: {}", all.join(", ")));
            }
            kinds.extend(matching);
        }
        Ok(kinds)
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &Event<'_>) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && self.queue.as_deref().is_none_or(|q| {
                event
                    .queue
                    .as_deref()
                    .is_some_and(|eq| eq.split(',').any(|one| one == q))
            })
    }
}

/// One event received, with what came (or did not) before it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The event.
    pub event: Event<'static>,
    /// Events lost just before this one (a jump in the sequence), of any
    /// kind: the filter does not hide losses.
    pub missed: u64,
    /// The router restarted since the previous event (a new instance).
    pub restarted: bool,
}

/// A subscription to a router's event stream.
pub struct Subscriber {
    _ctx: zmq::Context,
    /// The SUB socket and its handshake monitor.
    watched: Watched,
    filter: Filter,
    last: Option<(String, u64)>,
    /// Gaps and restarts seen before events the filter dropped, reported
    /// with the next event that passes.
    pending: (u64, bool),
    /// The burst being collected: `(router, burst)`, parts seen and
    /// expected, its events, and when its first part came.
    collecting: Option<Collecting>,
    /// Events of completed bursts, in order, not yet handed out (boxed:
    /// an event is a few hundred bytes, and it is sorted and queued).
    ready: VecDeque<Box<Event<'static>>>,
}

struct Collecting {
    id: (String, u64),
    seen: u32,
    parts: u32,
    // Boxed on purpose: sorting moves the elements, and an event is a few
    // hundred bytes.
    #[allow(clippy::vec_box)]
    events: Vec<Box<Event<'static>>>,
    since: Instant,
}

impl Subscriber {
    /// Subscribe to `endpoint` (the router's `--events`). With CURVE the
    /// key in `options` must be on the router's admins allowlist.
    pub fn connect(endpoint: &str, filter: &Filter, options: ClientOptions) -> Result<Subscriber, ClientError> {
        Self::connect_with_hwm(endpoint, filter, options, 0)
    }

    /// As [`Subscriber::connect`], with at most `hwm` events queued on this
    /// side (0: no limit). Tests use a small one to see what a slow reader
    /// loses.
    pub fn connect_with_hwm(
        endpoint: &str,
        filter: &Filter,
        options: ClientOptions,
        hwm: i32,
    ) -> Result<Subscriber, ClientError> {
        let ctx = zmq::Context::new();
        let socket = ctx.socket(zmq::SUB)?;
        socket.set_linger(0)?;
        socket.set_rcvhwm(hwm)?;
        if let Some(keys) = &options.curve {
            keys.apply(&socket)?;
        }
        socket.set_subscribe(b"")?;
        let watched = Watched::new(&ctx, socket, options.curve.is_some())?;
        watched.socket().connect(endpoint)?;
        match watched.monitor().await_handshake(1, options.connect_timeout) {
            Ok(true) => {}
            Ok(false) => {
                return Err(ClientError::Unreachable {
                    endpoint: endpoint.to_string(),
                    waited: options.connect_timeout,
                })
            }
            Err(refused) => return Err(ClientError::Rejected(refused.to_string())),
        }
        Ok(Subscriber {
            _ctx: ctx,
            watched,
            filter: filter.clone(),
            last: None,
            pending: (0, false),
            collecting: None,
            ready: VecDeque::new(),
        })
    }

    /// The next event that passes the filter, waiting up to `within`;
    /// `None` if none came.
    pub fn next(&mut self, within: Duration) -> Result<Option<Received>, ClientError> {
        let deadline = Instant::now() + within;
        loop {
            while let Some(event) = self.ready.pop_front() {
                if let Some(got) = self.account(*event) {
                    return Ok(Some(got));
                }
            }
            // Wait for a message, or for an incomplete burst's patience.
            let now = Instant::now();
            let mut until = deadline;
            if let Some(c) = &self.collecting {
                until = until.min(c.since + BURST_PATIENCE);
            }
            let mut items = [self.watched.socket().as_poll_item(zmq::POLLIN)];
            let wait = until.saturating_duration_since(now);
            zmq::poll(&mut items, wait.as_millis().min(i64::MAX as u128) as i64)?;
            if items[0].is_readable() {
                let frames = self.watched.socket().recv_multipart(0)?;
                let [_topic, envelope] = frames.as_slice() else {
                    return Err(ClientError::Protocol(format!(
                        "event message of {} frames, not 2",
                        frames.len()
                    )));
                };
                let env = emq_proto::events::read_envelope(envelope)
                    .map_err(|e| ClientError::Protocol(format!("event message: {e}")))?;
                self.collect(env);
                continue;
            }
            if self
                .collecting
                .as_ref()
                .is_some_and(|c| Instant::now() >= c.since + BURST_PATIENCE)
            {
                self.release();
                continue;
            }
            if Instant::now() >= deadline {
                if let Some(refused) = self.watched.monitor().failures().pop() {
                    return Err(ClientError::Rejected(refused.to_string()));
                }
                return Ok(None);
            }
        }
    }

    /// Add a message to its burst; a message of another burst completes
    /// the one being collected.
    fn collect(&mut self, env: emq_proto::events::Envelope<'static>) {
        let id = (env.router.into_owned(), env.burst);
        if self.collecting.as_ref().is_some_and(|c| c.id != id) {
            self.release();
        }
        let c = self.collecting.get_or_insert_with(|| Collecting {
            id,
            seen: 0,
            parts: env.parts,
            events: Vec::new(),
            since: Instant::now(),
        });
        c.seen += 1;
        c.events.extend(env.events.into_iter().map(Box::new));
        if c.seen >= c.parts {
            self.release();
        }
    }

    /// Hand out the burst being collected, in sequence order.
    fn release(&mut self) {
        if let Some(mut c) = self.collecting.take() {
            if !c.events.is_sorted_by_key(|e| e.seq) {
                c.events.sort_unstable_by_key(|e| e.seq);
            }
            self.ready.extend(c.events);
        }
    }

    /// Note `event`'s place in the sequence; the event if it passes the
    /// filter, with the losses and restarts since the last one that did.
    fn account(&mut self, event: Event<'static>) -> Option<Received> {
        let (missed, restarted) = match &self.last {
            Some((router, seq)) if *router == event.router => (event.seq.saturating_sub(seq + 1), false),
            Some(_) => (event.seq.saturating_sub(1), true),
            None => (0, false),
        };
        self.last = Some((event.router.to_string(), event.seq));
        let missed = self.pending.0 + missed;
        let restarted = self.pending.1 || restarted;
        if self.filter.matches(&event) {
            self.pending = (0, false);
            return Some(Received {
                event,
                missed,
                restarted,
            });
        }
        self.pending = (missed, restarted);
        None
    }
}
