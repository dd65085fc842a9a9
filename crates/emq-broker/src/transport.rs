//! The router's only I/O: three ROUTER sockets, a signal pipe and one poll
//! loop that blocks until a message arrives or the core's next deadline.
//!
//! Sockets are `ROUTER_MANDATORY`, so a send to a peer that has gone away fails
//! at once (EHOSTUNREACH) instead of being dropped silently; such messages go
//! back to the core through [`Router::undeliverable`].
//!
//! A jobmanager whose connection closes (its process died) is dead at once
//! ([`Router::connection_closed`]): each backend message's connection
//! descriptor is noted (`conns.rs`), and the backend's socket monitor, read
//! on the admission thread, passes closed descriptors back on a datagram
//! socket. The liveness window remains for silent failures.
//!
//! With `--events` a PUB socket publishes the core's events once the
//! journal commit they follow is done, never waiting: a subscriber that
//! falls behind loses events (libzmq drops them at its high-water mark) and
//! sees the gap in their sequence numbers. Events go out in bursts, at most
//! [`EVENTS_WINDOW`] after the first of them (or at [`EVENTS_BURST`]
//! events): one wakeup of ZeroMQ's I/O thread, and of each subscriber, per
//! burst rather than per event. With `--http` a thread serves
//! `/metrics` from snapshots this loop hands over once a second
//! ([`crate::http`]).
//!
//! Admission happens before any message: libzmq asks the ZAP handler (a REP
//! socket on `inproc://zeromq.zap.01`) about every new connection, and
//! [`Gate`] answers from the allowlists and the connection counts that socket
//! monitors report. That runs on a thread of its own: those sockets are busy
//! only when peers come and go, and in the routing loop's poll set they cost
//! every wakeup about a tenth of the router's instructions per job.

use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Instant;

use log::{error, info, warn};

use emq_net::curve::{CurveError, WatchedAllowlist};
use emq_net::handshake::{monitor_event, MECHANISM_MISMATCH};

use crate::committer::{Committed, Committer};
use crate::config::ConfigError;
use crate::config::{Journal, PostgresJournal};
use crate::conns::Connections;
use crate::core::{Endpoint, EventBurst, Outgoing, PeerId, Router};
use crate::gate::{self, Gate, Verdict};
use crate::metrics::LoopStats;
use crate::store::postgres::{Attempt, PgStore};
use crate::store::{JobStore, RedbStore, StoreError};
use crate::Config;

/// Why the router stopped other than by a signal or DISCONNECT.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// ZeroMQ refused something (binding an endpoint, most often).
    #[error("cannot {what}: {source}")]
    Zmq {
        /// What was being done.
        what: String,
        /// What ZeroMQ said.
        source: zmq::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[from] std::io::Error),
    /// Guaranteed jobs cannot be journaled: the router stops rather than
    /// acknowledge what it cannot keep.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The journal holds something this router cannot read.
    #[error("{0}: refusing to start rather than drop it (restore the journal from a backup, or move it aside)")]
    Journal(#[from] crate::journal::CorruptRow),
    /// The HTTP server (`--http`) could not start.
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    /// The CURVE settings are not usable.
    #[error(transparent)]
    Curve(#[from] CurveError),
}

fn zerr(what: impl Into<String>) -> impl FnOnce(zmq::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Zmq { what, source }
}

/// The endpoints actually bound (a `:*` or `:0` port resolved).
#[derive(Debug, Clone)]
pub struct Bound {
    /// Where clients connect.
    pub frontend: String,
    /// Where jobmanagers connect.
    pub backend: String,
    /// Where admin tools connect.
    pub admin: String,
    /// Where events are published (`--events`).
    pub events: Option<String>,
    /// Where `/metrics` is served (`--http`), `host:port`.
    pub http: Option<String>,
    /// The lease's fencing epoch, with a shared (Postgres) journal.
    pub epoch: Option<u64>,
}

/// Most messages read from one socket before the others get a turn.
const BATCH: usize = 512;

/// Longest an event waits before it is published.
const EVENTS_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

/// Events, or bytes of them, that are published at once without waiting
/// for the window.
const EVENTS_BURST: usize = 4096;
const EVENTS_BURST_BYTES: usize = 1 << 20;

/// The event stream's PUB socket and when its oldest unpublished event
/// came.
struct Publisher {
    socket: zmq::Socket,
    burst: EventBurst,
    pending_since: Option<Instant>,
    /// Topics subscribed to, as the XPUB socket reports them.
    subscriptions: std::collections::HashSet<Vec<u8>>,
    /// Bursts published.
    bursts: u64,
}

impl Publisher {
    /// After a commit: publish what the core has if the window has passed
    /// or the burst is full (or `now_anyway`, when the router stops).
    fn after_commit(&mut self, core: &mut Router, now: Instant, now_anyway: bool) {
        if !self.ready(core, now, now_anyway) {
            return;
        }
        core.swap_events(&mut self.burst);
        self.bursts += 1;
        self.burst.close(self.bursts);
        for (topic, envelope) in self.burst.messages() {
            // PUB never blocks: at a subscriber's high-water mark the
            // message is dropped for that subscriber.
            if self.socket.send(topic, zmq::SNDMORE | zmq::DONTWAIT).is_ok() {
                let _ = self.socket.send(envelope, zmq::DONTWAIT);
            }
        }
        self.burst.clear();
        self.pending_since = None;
    }

    /// Whether a burst is due: events pending, and the window passed or the
    /// burst full (or `now_anyway`).
    fn ready(&mut self, core: &Router, now: Instant, now_anyway: bool) -> bool {
        let pending = core.pending_events();
        if pending == 0 {
            return false;
        }
        let since = *self.pending_since.get_or_insert(now);
        let full = pending >= EVENTS_BURST || core.pending_event_bytes() >= EVENTS_BURST_BYTES;
        now_anyway || full || now >= since + EVENTS_WINDOW
    }

    /// Take in subscriptions and their ends (an XPUB socket reports a
    /// topic when its first subscriber comes and when its last goes), and
    /// tell the core whether anyone listens: with nobody, events are
    /// counted but not encoded.
    fn read_subscriptions(&mut self, core: &mut Router) {
        let mut changed = false;
        // Bounded per turn: a peer that floods this socket gets no more of
        // the loop's time than one batch.
        for _ in 0..BATCH {
            let Ok(msg) = self.socket.recv_bytes(zmq::DONTWAIT) else {
                break;
            };
            match msg.split_first() {
                Some((1, topic)) => changed |= self.subscriptions.insert(topic.to_vec()),
                Some((0, topic)) => changed |= self.subscriptions.remove(topic),
                _ => {}
            }
        }
        if changed {
            info!("event subscriptions: {}", self.subscriptions.len());
            core.set_events_wanted(!self.subscriptions.is_empty());
        }
    }

    /// When the pending events must go out.
    fn deadline(&self) -> Option<Instant> {
        self.pending_since.map(|t| t + EVENTS_WINDOW)
    }
}

struct Sockets {
    frontend: zmq::Socket,
    backend: zmq::Socket,
    admin: zmq::Socket,
    /// The event stream's publisher.
    events: Option<Publisher>,
}

const ENDPOINTS: [Endpoint; 3] = [Endpoint::Frontend, Endpoint::Backend, Endpoint::Admin];

impl Sockets {
    fn get(&self, ep: Endpoint) -> &zmq::Socket {
        match ep {
            Endpoint::Frontend => &self.frontend,
            Endpoint::Backend => &self.backend,
            Endpoint::Admin => &self.admin,
        }
    }
}

/// Bind one endpoint's ROUTER socket; returns it, the endpoint as bound, and
/// its connection monitor (started before the bind, so that no connection
/// goes uncounted).
fn bind(
    ctx: &zmq::Context,
    ep: Endpoint,
    addr: &str,
    config: &Config,
) -> Result<(zmq::Socket, String, zmq::Socket), RunError> {
    let s = ctx.socket(zmq::ROUTER).map_err(zerr("create a ROUTER socket"))?;
    // A domain makes libzmq consult the ZAP handler even for NULL (plain)
    // connections, which is how the connection limit applies without CURVE.
    s.set_zap_domain(gate::domain(ep)).map_err(zerr("set ZAP_DOMAIN"))?;
    if let Some(security) = &config.security {
        emq_net::curve::apply_server(&security.key, &s)?;
    }
    s.set_router_mandatory(true).map_err(zerr("set ROUTER_MANDATORY"))?;
    s.set_linger(1000).map_err(zerr("set LINGER"))?;
    s.set_sndhwm(100_000).map_err(zerr("set SNDHWM"))?;
    s.set_rcvhwm(100_000).map_err(zerr("set RCVHWM"))?;
    // Frames a little over the limit get an ERROR from the core; absurd ones
    // make libzmq drop the connection before they are buffered.
    let cap = config.max_frame.saturating_add(1 << 20).min(i64::MAX as usize) as i64;
    s.set_maxmsgsize(cap).map_err(zerr("set MAXMSGSIZE"))?;
    let monitor = monitor(ctx, &s, ep)?;
    s.bind(addr).map_err(|source| {
        let hint = match source {
            zmq::Error::EADDRINUSE => " (is another emq-router running there? pick another port)",
            zmq::Error::EADDRNOTAVAIL => " (that address is not on this machine)",
            _ => "",
        };
        RunError::Zmq {
            what: format!("bind {addr}{hint}"),
            source,
        }
    })?;
    let bound = s
        .get_last_endpoint()
        .map_err(zerr("read the bound endpoint"))?
        .unwrap_or_else(|_| addr.to_string());
    Ok((s, bound, monitor))
}

/// Bind the event stream's PUB socket; returns it, the endpoint as bound,
/// and its connection monitor (subscribers count as admin connections).
fn bind_events(
    ctx: &zmq::Context,
    addr: &str,
    config: &Config,
) -> Result<(zmq::Socket, String, zmq::Socket), RunError> {
    // XPUB: a PUB socket that also reports subscriptions.
    let s = ctx.socket(zmq::XPUB).map_err(zerr("create the XPUB socket"))?;
    s.set_zap_domain("events").map_err(zerr("set ZAP_DOMAIN"))?;
    if let Some(security) = &config.security {
        emq_net::curve::apply_server(&security.key, &s)?;
    }
    s.set_sndhwm(config.events_hwm).map_err(zerr("set SNDHWM"))?;
    s.set_linger(0).map_err(zerr("set LINGER"))?;
    let addr_monitor = "inproc://emq-monitor-events";
    let events = zmq::SocketEvent::ACCEPTED as i32 | zmq::SocketEvent::DISCONNECTED as i32;
    s.monitor(addr_monitor, events).map_err(zerr("monitor a socket"))?;
    let monitor = ctx.socket(zmq::PAIR).map_err(zerr("create a monitor socket"))?;
    monitor
        .connect(addr_monitor)
        .map_err(zerr("connect a monitor socket"))?;
    s.bind(addr).map_err(zerr(format!("bind the event stream on {addr}")))?;
    let bound = s
        .get_last_endpoint()
        .map_err(zerr("read the bound endpoint"))?
        .unwrap_or_else(|_| addr.to_string());
    Ok((s, bound, monitor))
}

/// What [`run`] tells its caller as it goes.
#[derive(Debug)]
pub enum Role<'a> {
    /// Serving: everything is open, on these endpoints.
    Active(&'a Bound),
    /// Lost the lease on a shared journal: endpoints closed, standing by.
    SteppedDown {
        /// Why.
        reason: &'a str,
    },
}

/// Bind the endpoints, call `on_role` with what was bound, and route until
/// SIGTERM/SIGINT or an admin DISCONNECT. Returns Ok on a clean stop. With a
/// Postgres journal the router first stands by (endpoints unbound) until it
/// holds the lease, and stands by again whenever it loses it (`on_role`
/// hears of both).
pub fn run(config: Config, mut on_role: impl FnMut(Role<'_>)) -> Result<(), RunError> {
    config.validate()?;
    let (sig_read, sig_write) = UnixStream::pair()?;
    sig_read.set_nonblocking(true)?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::low_level::pipe::register(sig, sig_write.try_clone()?)?;
    }
    raise_fd_limit(&config);
    loop {
        // The journal first: a router that cannot keep its promises must
        // not open its doors, nor say it is ready.
        let store: Option<Box<dyn JobStore>> = match &config.journal {
            Some(Journal::File(path)) => Some(Box::new(RedbStore::open(path)?)),
            Some(Journal::Postgres(pg)) => match stand_by(&config, pg, &sig_read)? {
                Some(store) => Some(Box::new(store)),
                None => {
                    info!("signal received: stopping");
                    return Ok(());
                }
            },
            None => {
                warn!("no journal: guaranteed jobs are kept in memory only and lost if the router dies");
                None
            }
        };
        match serve(&config, store, &sig_read, &mut |b| on_role(Role::Active(b))) {
            Err(RunError::Store(StoreError::Deposed(why))) => {
                warn!("{why}: standing by");
                on_role(Role::SteppedDown { reason: &why });
            }
            other => return other,
        }
    }
}

/// Wait, endpoints unbound, until this router holds the lease on the
/// Postgres journal; `None` if a signal came first.
fn stand_by(config: &Config, pg: &PostgresJournal, sig_read: &UnixStream) -> Result<Option<PgStore>, RunError> {
    let endpoints = format!(
        "frontend={} backend={} admin={}",
        config.frontend, config.backend, config.admin
    );
    let poll = (pg.lease / 10).min(std::time::Duration::from_millis(250));
    let mut complaints = emq_net::Throttle::new(std::time::Duration::from_secs(10));
    let mut store = loop {
        match PgStore::open(&pg.url, &pg.name, &endpoints, pg.lease) {
            Ok(store) => break store,
            Err(e) => {
                if let Some(note) = complaints.report(Instant::now()) {
                    warn!("{e}: trying again{note}");
                }
            }
        }
        if signalled(sig_read, std::time::Duration::from_secs(1))? {
            return Ok(None);
        }
    };
    let mut holder = String::new();
    loop {
        match store.attempt() {
            Ok(Attempt::Active(epoch)) => {
                info!("{}: active on {} at epoch {epoch}", pg.name, store.shown());
                return Ok(Some(store));
            }
            Ok(Attempt::Held {
                holder: h,
                endpoints,
                expires_in_ms,
            }) => {
                if h != holder {
                    info!(
                        "{}: standing by on {}; {h} ({endpoints}) is active, its lease runs out in \
                         {expires_in_ms} ms unless renewed",
                        pg.name,
                        store.shown()
                    );
                    holder = h;
                }
            }
            Err(e) => {
                if let Some(note) = complaints.report(Instant::now()) {
                    warn!("{e}: trying again{note}");
                }
            }
        }
        if signalled(sig_read, poll)? {
            return Ok(None);
        }
    }
}

/// Empty the signal pipe (it is non-blocking).
fn drain_signals(sig_read: &UnixStream) {
    let mut buf = [0u8; 64];
    let mut sig = sig_read;
    while matches!(sig.read(&mut buf), Ok(n) if n > 0) {}
}

/// Wait up to `wait` for SIGTERM/SIGINT.
fn signalled(sig_read: &UnixStream, wait: std::time::Duration) -> Result<bool, RunError> {
    let mut items = [zmq::PollItem::from_fd(sig_read.as_raw_fd(), zmq::POLLIN)];
    match zmq::poll(&mut items, wait.as_millis() as i64) {
        Ok(_) | Err(zmq::Error::EINTR) => {}
        Err(e) => {
            return Err(RunError::Zmq {
                what: "poll".into(),
                source: e,
            })
        }
    }
    if items[0].is_readable() {
        drain_signals(sig_read);
        return Ok(true);
    }
    Ok(false)
}

/// Bind, restore what the journal holds, and route until a signal, an
/// admin DISCONNECT, or (shared journal) the lease is lost.
fn serve(
    config: &Config,
    mut store: Option<Box<dyn JobStore>>,
    sig_read: &UnixStream,
    on_bound: &mut dyn FnMut(&Bound),
) -> Result<(), RunError> {
    let config = config.clone();
    let ctx = zmq::Context::new();
    // The ZAP handler must exist before the first connection arrives.
    let zap = ctx.socket(zmq::REP).map_err(zerr("create the ZAP socket"))?;
    zap.bind("inproc://zeromq.zap.01")
        .map_err(zerr("bind the ZAP handler"))?;
    let gate = Gate::new(config.security.as_ref(), config.max_connections);
    let allowlists = config
        .security
        .as_ref()
        .map(|s| [&s.clients, &s.jobmanagers, &s.admins].map(|path| WatchedAllowlist::new(path.clone())));
    let rows = match &mut store {
        Some(s) => s.load()?,
        None => Vec::new(),
    };
    let mut clock = emq_net::Clock::new();
    let mut core = Router::new(config.clone(), clock.now(), emq_net::random_seed());
    core.restore(clock.now(), rows)?;
    // From here on the journal commits on its own thread.
    let mut committer = match store {
        Some(s) => Some(Committer::start(s).map_err(|e| StoreError::Failed(format!("start the journal thread: {e}")))?),
        None => None,
    };
    core.set_ha(committer.as_ref().and_then(Committer::peers));
    let (frontend, f, frontend_monitor) = bind(&ctx, Endpoint::Frontend, &config.frontend, &config)?;
    let (backend, b, backend_monitor) = bind(&ctx, Endpoint::Backend, &config.backend, &config)?;
    let (admin, a, admin_monitor) = bind(&ctx, Endpoint::Admin, &config.admin, &config)?;
    // The dashboard speaks the admin protocol over inproc (no handshake:
    // it is this process).
    let dashboard = match &config.dashboard {
        Some(d) => {
            let endpoint = crate::dashboard::link::ENDPOINT;
            admin.bind(endpoint).map_err(zerr(format!("bind {endpoint}")))?;
            let dealer = ctx.socket(zmq::DEALER).map_err(zerr("create a DEALER socket"))?;
            let link =
                crate::dashboard::link::AdminLink::connect(dealer).map_err(zerr(format!("connect {endpoint}")))?;
            Some(crate::dashboard::Dashboard::new(link, d.token.clone()))
        }
        None => None,
    };
    let mut monitors = vec![
        (frontend_monitor, Endpoint::Frontend),
        (backend_monitor, Endpoint::Backend),
        (admin_monitor, Endpoint::Admin),
    ];
    let events = match &config.events {
        Some(addr) => {
            let (socket, bound, monitor) = bind_events(&ctx, addr, &config)?;
            monitors.push((monitor, Endpoint::Admin));
            Some((socket, bound))
        }
        None => None,
    };
    let mut stats = LoopStats::default();
    let http = match &config.http {
        Some(addr) => {
            let first = core.metrics_snapshot(clock.now(), stats.clone());
            Some(crate::http::start(addr, first, dashboard).map_err(RunError::Http)?)
        }
        None => None,
    };
    let bound = Bound {
        frontend: f,
        backend: b,
        admin: a,
        events: events.as_ref().map(|(_, b)| b.clone()),
        http: http.as_ref().map(|(h, _)| h.bound.clone()),
        epoch: committer.as_ref().and_then(Committer::peers).map(|h| h.epoch),
    };
    info!(
        "listening: clients on {}, jobmanagers on {}, admin on {}",
        bound.frontend, bound.backend, bound.admin
    );
    if let Some(ep) = &bound.events {
        info!("publishing events on {ep}");
    }
    match &config.security {
        Some(s) => info!(
            "CURVE on, router key {}; allowlists: clients {}, jobmanagers {}, admins {}",
            s.key.public,
            s.clients.display(),
            s.jobmanagers.display(),
            s.admins.display()
        ),
        None => info!("security off (plain ZeroMQ): keep the endpoints on loopback or a trusted network"),
    }
    // Backend connections that closed, from the admission thread, one
    // descriptor per datagram (a plain socket: cheap in the routing loop's
    // poll set, unlike a ZeroMQ socket).
    let (closed_read, closed_write) = UnixDatagram::pair()?;
    closed_read.set_nonblocking(true)?;
    closed_write.set_nonblocking(true)?;
    let stop_admission = ctx.socket(zmq::PAIR).map_err(zerr("create a PAIR socket"))?;
    stop_admission
        .bind("inproc://emq-admission-stop")
        .map_err(zerr("bind inproc://emq-admission-stop"))?;
    let stopped = ctx.socket(zmq::PAIR).map_err(zerr("create a PAIR socket"))?;
    stopped
        .connect("inproc://emq-admission-stop")
        .map_err(zerr("connect inproc://emq-admission-stop"))?;
    let admission = std::thread::Builder::new()
        .name("emq-admission".into())
        .spawn(move || admit(zap, monitors, stopped, gate, allowlists, closed_write))?;
    let mut conns = Connections::default();
    let mut sockets = Sockets {
        frontend,
        backend,
        admin,
        events: events.map(|(socket, _)| Publisher {
            socket,
            burst: EventBurst::default(),
            pending_since: None,
            subscriptions: std::collections::HashSet::new(),
            bursts: 0,
        }),
    };
    // Nobody subscribes yet: events are numbered but not encoded until
    // someone does.
    if sockets.events.is_some() {
        core.set_events_wanted(false);
    }
    let (_http_server, mut snapshots) = match http {
        Some((server, sender)) => (Some(server), Some(sender)),
        None => (None, None),
    };
    on_bound(&bound);
    let mut busy_since_trim = false;

    // Whatever ends the routing, the admission thread is stopped below.
    let routed = (|| -> Result<(), RunError> {
        loop {
            let now = clock.now();
            if now.mono >= core.next_deadline() {
                core.tick(now);
            }
            if let Some(c) = committer.as_mut() {
                c.keep(now.mono)?;
            }
            flush(&mut sockets, &mut core, &mut committer, &mut clock, &mut stats)?;
            if let Some(s) = snapshots.as_mut().filter(|s| s.due(now.mono)) {
                s.send(now.mono, core.metrics_snapshot(now, stats.clone()));
            }
            if core.stop_requested() {
                return Ok(());
            }
            let mut deadline = core.next_deadline();
            if let Some(s) = &snapshots {
                deadline = deadline.min(s.next_due());
            }
            if let Some(at) = sockets.events.as_ref().and_then(Publisher::deadline) {
                deadline = deadline.min(at);
            }
            if let Some(at) = committer.as_ref().and_then(Committer::next_keep) {
                deadline = deadline.min(at);
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            // Round up so that we never wake a hair before the deadline and spin.
            let timeout_ms = wait.as_micros().div_ceil(1000).min(i64::MAX as u128) as i64;
            let mut items = [
                sockets.frontend.as_poll_item(zmq::POLLIN),
                sockets.backend.as_poll_item(zmq::POLLIN),
                sockets.admin.as_poll_item(zmq::POLLIN),
                zmq::PollItem::from_fd(sig_read.as_raw_fd(), zmq::POLLIN),
                zmq::PollItem::from_fd(closed_read.as_raw_fd(), zmq::POLLIN),
                // Without a journal the signal pipe stands in, asked for nothing.
                zmq::PollItem::from_fd(
                    committer
                        .as_ref()
                        .map_or(sig_read.as_raw_fd(), |c| c.wake_fd().as_raw_fd()),
                    if committer.is_some() {
                        zmq::POLLIN
                    } else {
                        zmq::PollEvents::empty()
                    },
                ),
            ];
            let woke = match zmq::poll(&mut items, timeout_ms) {
                Ok(n) => n,
                Err(zmq::Error::EINTR) => 1,
                Err(e) => {
                    return Err(RunError::Zmq {
                        what: "poll".into(),
                        source: e,
                    })
                }
            };
            // Only a real lull counts, not a short wait for the next event burst.
            if woke == 0 && busy_since_trim && timeout_ms >= 100 {
                // Quiet for a whole wait after activity: hand memory freed by a
                // burst back to the system. (ZeroMQ's I/O thread allocates in
                // its own malloc arena and we free there, so freed memory would
                // otherwise stay resident.)
                release_free_memory();
                busy_since_trim = false;
            } else if woke > 0 {
                busy_since_trim = true;
            }
            let readable = [
                items[0].is_readable(),
                items[1].is_readable(),
                items[2].is_readable(),
                items[3].is_readable(),
                items[4].is_readable(),
                items[5].is_readable(),
            ];
            if readable[3] {
                drain_signals(sig_read);
                info!("signal received: stopping");
                return Ok(());
            }
            // Subscriptions first: a subscriber that came before the message
            // that woke us sees that message's events.
            if let Some(p) = sockets.events.as_mut() {
                p.read_subscriptions(&mut core);
            }
            if readable[5] {
                if let Some(c) = committer.as_mut() {
                    let done = c.collect(false)?;
                    after_commits(&sockets, &mut core, &mut clock, c, done, &mut stats)?;
                }
            }
            let now = clock.now();
            if readable[4] {
                for fd in read_closed(&closed_read) {
                    for identity in conns.closed(fd) {
                        core.connection_closed(now, &PeerId(identity));
                    }
                }
            }
            for (i, ep) in ENDPOINTS.into_iter().enumerate() {
                if readable[i] {
                    let conns = (ep == Endpoint::Backend).then_some(&mut conns);
                    stats.received[i] += receive_batch(sockets.get(ep), ep, now, &mut core, conns);
                }
            }
            // One flush (and so one journal batch) for everything just read.
            flush(&mut sockets, &mut core, &mut committer, &mut clock, &mut stats)?;
        }
    })();
    let stopped = routed.and_then(|()| {
        core.shutdown();
        flush(&mut sockets, &mut core, &mut committer, &mut clock, &mut stats)?;
        if let Some(c) = committer.take() {
            let done = c.finish()?;
            release(&sockets, &mut core, &mut clock, done, &mut stats);
        }
        if let Some(p) = sockets.events.as_mut() {
            p.after_commit(&mut core, Instant::now(), true);
        }
        Ok(())
    });
    // The admission thread closes the monitors' readers as it ends: libzmq
    // must stop sending them events first, or an event sent to a closed
    // reader blocks its I/O thread and this process never exits.
    for socket in [&mut sockets.frontend, &mut sockets.backend, &mut sockets.admin] {
        emq_net::handshake::stop_monitor(socket);
    }
    if let Some(p) = sockets.events.as_mut() {
        emq_net::handshake::stop_monitor(&mut p.socket);
    }
    let _ = stop_admission.send("", 0);
    let _ = admission.join();
    if stopped.is_ok() {
        info!("stopped");
    }
    stopped
}

/// The admission thread: answer ZAP requests and keep the connection counts,
/// until told to stop (any message on `stop`). With security on it re-reads
/// each allowlist file that changed before deciding on a connection to its
/// endpoint, so keys are added and revoked without a restart.
fn admit(
    zap: zmq::Socket,
    monitors: Vec<(zmq::Socket, Endpoint)>,
    stop: zmq::Socket,
    mut gate: Gate,
    mut allowlists: Option<[WatchedAllowlist; 3]>,
    closed: UnixDatagram,
) {
    if let Some(lists) = allowlists.as_mut() {
        for (list, ep) in lists.iter_mut().zip(ENDPOINTS) {
            reload_allowlist(&mut gate, ep, list);
        }
    }
    loop {
        let mut items = vec![zap.as_poll_item(zmq::POLLIN), stop.as_poll_item(zmq::POLLIN)];
        items.extend(monitors.iter().map(|(m, _)| m.as_poll_item(zmq::POLLIN)));
        match zmq::poll(&mut items, -1) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => return error!("admission thread: poll: {e}"),
        }
        if items[1].is_readable() {
            return;
        }
        // Connection events first: the connection a ZAP request is about was
        // reported before libzmq sent the request.
        for (monitor, ep) in &monitors {
            drain_monitor(monitor, *ep, &mut gate, Instant::now(), &closed);
        }
        serve_zap(&zap, &mut gate, allowlists.as_mut(), Instant::now());
    }
}

/// Hand `gate` the allowlist of `ep` if its file changed. A file that fails
/// to parse keeps the previous list: a typo must not open or close the door.
fn reload_allowlist(gate: &mut Gate, ep: Endpoint, watched: &mut WatchedAllowlist) {
    match watched.refresh() {
        Ok(Some(list)) => {
            info!("allowlist {}: {} keys", watched.path().display(), list.len());
            gate.set_allowlist(ep, list);
        }
        Ok(None) => {}
        Err(e) => error!("allowlist not reloaded, keeping the previous one: {e}"),
    }
}

/// Each connection is a file descriptor: lift the soft limit to the hard one
/// so that `max_connections` can be reached, and say so if even one endpoint
/// could not fill up.
fn raise_fd_limit(config: &Config) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return;
            }
        }
    }
    let wanted = libc::rlim_t::try_from(config.max_connections.saturating_add(64)).unwrap_or(libc::rlim_t::MAX);
    if limit.rlim_cur < wanted {
        warn!(
            "open file limit {} is below --max-connections {}: connections past the limit fail to be accepted",
            limit.rlim_cur, config.max_connections
        );
    }
}

/// Watch `socket`'s connections (opened, closed) on an inproc PAIR socket.
fn monitor(ctx: &zmq::Context, socket: &zmq::Socket, ep: Endpoint) -> Result<zmq::Socket, RunError> {
    let addr = format!("inproc://emq-monitor-{}", gate::domain(ep));
    let events = zmq::SocketEvent::ACCEPTED as i32
        | zmq::SocketEvent::DISCONNECTED as i32
        | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32
        | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32;
    socket.monitor(&addr, events).map_err(zerr("monitor a socket"))?;
    let pair = ctx.socket(zmq::PAIR).map_err(zerr("create a monitor socket"))?;
    pair.connect(&addr).map_err(zerr("connect a monitor socket"))?;
    Ok(pair)
}

/// Feed `gate` the connection events; tell the routing loop (on `closed`)
/// about backend connections that closed.
fn drain_monitor(monitor: &zmq::Socket, ep: Endpoint, gate: &mut Gate, now: Instant, closed: &UnixDatagram) {
    use zmq::SocketEvent as E;
    while let Ok(frames) = monitor.recv_multipart(zmq::DONTWAIT) {
        // For ACCEPTED and DISCONNECTED the value is the connection's fd;
        // for a failed handshake, why it failed.
        let Some((event, value)) = monitor_event(&frames) else {
            continue;
        };
        if event == E::ACCEPTED.to_raw() {
            gate.connection_opened(ep, value as i32);
        } else if event == E::DISCONNECTED.to_raw() {
            gate.connection_closed(ep, value as i32);
            if ep == Endpoint::Backend {
                // A full queue (hundreds unread) loses the news; the
                // liveness window still catches those jobmanagers.
                let _ = closed.send(&(value as i32).to_le_bytes());
            }
        } else if event == E::HANDSHAKE_FAILED_PROTOCOL.to_raw() && value == MECHANISM_MISMATCH {
            gate.handshake_failed(now, ep, true);
        } else if event == E::HANDSHAKE_FAILED_NO_DETAIL.to_raw() || event == E::HANDSHAKE_FAILED_PROTOCOL.to_raw() {
            gate.handshake_failed(now, ep, false);
        }
    }
}

/// Answer every pending ZAP request (RFC 27: version, request id, domain,
/// address, identity, mechanism, credentials...).
fn serve_zap(zap: &zmq::Socket, gate: &mut Gate, mut allowlists: Option<&mut [WatchedAllowlist; 3]>, now: Instant) {
    while let Ok(request) = zap.recv_multipart(zmq::DONTWAIT) {
        let text = |i: usize| request.get(i).and_then(|f| std::str::from_utf8(f).ok()).unwrap_or("");
        let request_id = request.get(1).cloned().unwrap_or_default();
        let verdict = if request.len() < 6 || text(0) != "1.0" {
            Verdict::Deny {
                code: "500",
                reason: "malformed ZAP request".into(),
            }
        } else {
            let credentials = request.get(6).map(Vec::as_slice).unwrap_or(&[]);
            if let (Some(lists), Some(ep)) = (allowlists.as_deref_mut(), gate::endpoint_of(text(2))) {
                reload_allowlist(gate, ep, &mut lists[gate::index(ep)]);
            }
            gate.authorize(now, text(2), text(3), text(5), credentials)
        };
        let (status_text, user_id) = match &verdict {
            Verdict::Allow { user_id } => ("OK", user_id.as_str()),
            Verdict::Deny { reason, .. } => (reason.as_str(), ""),
        };
        let reply: [&[u8]; 6] = [
            b"1.0",
            &request_id,
            verdict.code().as_bytes(),
            status_text.as_bytes(),
            user_id.as_bytes(),
            b"",
        ];
        if let Err(e) = zap.send_multipart(reply, 0) {
            error!("ZAP reply: {e}");
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

/// The descriptors of backend connections the admission thread saw close.
fn read_closed(socket: &UnixDatagram) -> Vec<i32> {
    let mut fds = Vec::new();
    let mut buf = [0u8; 4];
    while let Ok(4) = socket.recv(&mut buf) {
        fds.push(i32::from_le_bytes(buf));
    }
    fds
}

/// Hand the core what `socket` has (at most [`BATCH`] messages); returns
/// how many. With `conns`, note which connection each sender is on.
fn receive_batch(
    socket: &zmq::Socket,
    ep: Endpoint,
    now: emq_proto::Now,
    core: &mut Router,
    mut conns: Option<&mut Connections>,
) -> u64 {
    for n in 0..BATCH {
        match emq_net::recv_frames(socket, zmq::DONTWAIT) {
            Ok(mut frames) => {
                if let (Some(conns), [identity, first, ..]) = (conns.as_deref_mut(), &mut frames[..]) {
                    if conns.wants(identity) {
                        if let Some(fd) = first.gets("__fd").and_then(|v| v.parse().ok()) {
                            conns.seen(fd, identity);
                        }
                    }
                }
                emq_net::with_slices(&frames, |frames| {
                    let peer = PeerId(frames[0].to_vec());
                    core.handle(now, ep, peer, &frames[1..]);
                })
            }
            Err(zmq::Error::EAGAIN) => return n as u64,
            Err(e) => {
                error!("receive on {ep:?}: {e}");
                return n as u64;
            }
        }
    }
    BATCH as u64
}

/// Send one message from borrowed frames (no copies on our side). An
/// unreachable peer or a full queue fails on the identity frame, before any
/// of the message has gone, so the whole message goes back to the core.
fn send(socket: &zmq::Socket, out: &Outgoing) -> Result<(), zmq::Error> {
    socket.send(&out.peer.0[..], zmq::SNDMORE | zmq::DONTWAIT)?;
    let last = out.frames.len().saturating_sub(1);
    for (i, frame) in out.frames.iter().enumerate() {
        let more = if i < last { zmq::SNDMORE } else { 0 };
        socket.send(&frame[..], more | zmq::DONTWAIT)?;
    }
    Ok(())
}

/// Send everything the core produced; what cannot be delivered goes back to it,
/// which may produce more to send.
fn flush(
    sockets: &mut Sockets,
    core: &mut Router,
    committer: &mut Option<Committer>,
    clock: &mut emq_net::Clock,
    stats: &mut LoopStats,
) -> Result<(), RunError> {
    send_and_commit(sockets, core, committer, clock, stats)?;
    // What the journal thread finished while this turn ran goes out now,
    // not after the next poll: a crash between a commit and its release
    // leaves results journaled but unsent (clients ask for them again).
    if let Some(c) = committer.as_mut() {
        let done = c.collect(false)?;
        after_commits(sockets, core, clock, c, done, stats)?;
    }
    // Events last: what they tell is committed. Publishing waits for the
    // commits handed over so far (only when a burst is due, and only with
    // subscribers: the core has events pending only then).
    let now = Instant::now();
    let due = sockets.events.as_mut().is_some_and(|p| p.ready(core, now, false));
    if let Some(c) = committer.as_mut().filter(|c| due && c.busy()) {
        while c.busy() {
            let done = c.collect(true)?;
            after_commits(sockets, core, clock, c, done, stats)?;
        }
    }
    if let Some(p) = sockets.events.as_mut() {
        p.after_commit(core, now, false);
    }
    Ok(())
}

/// After the journal thread finished commits (`done`): tell the core of any
/// change among the routers sharing the journal, send what the commits
/// released, and only then hand the next commit over.
fn after_commits(
    sockets: &Sockets,
    core: &mut Router,
    clock: &mut emq_net::Clock,
    committer: &mut Committer,
    done: Vec<Committed>,
    stats: &mut LoopStats,
) -> Result<(), RunError> {
    if let Some(peers) = committer.changed_peers() {
        core.set_ha(peers);
    }
    release(sockets, core, clock, done, stats);
    committer.start_next()?;
    Ok(())
}

/// Send what finished commits released, and count the commits.
fn release(
    sockets: &Sockets,
    core: &mut Router,
    clock: &mut emq_net::Clock,
    done: Vec<Committed>,
    stats: &mut LoopStats,
) {
    let mut failed = Vec::new();
    for c in done {
        stats.commit_seconds.observe_duration(c.took);
        stats.commit_ops.observe(c.ops as f64);
        send_all(sockets, c.released, &mut failed, stats);
    }
    stats.unsent += failed.len() as u64;
    if !failed.is_empty() {
        let now = clock.now();
        for out in failed {
            core.undeliverable(now, out);
        }
    }
}

fn send_and_commit(
    sockets: &Sockets,
    core: &mut Router,
    committer: &mut Option<Committer>,
    clock: &mut emq_net::Clock,
    stats: &mut LoopStats,
) -> Result<(), RunError> {
    loop {
        // A shared journal's lease must be ours before anything goes out.
        if let Some(c) = committer
            .as_mut()
            .filter(|c| c.tenure().is_some_and(|t| Instant::now() >= t))
        {
            let done = c.renew_now()?;
            after_commits(sockets, core, clock, c, done, stats)?;
        }
        let ops = core.take_store_ops();
        let outgoing: Vec<Outgoing> = core.take_outgoing().collect();
        if outgoing.is_empty() && ops.is_empty() {
            return Ok(());
        }
        let mut failed = Vec::new();
        match committer.as_mut() {
            None => send_all(sockets, outgoing, &mut failed, stats),
            Some(c) => {
                // Group commit: what does not rest on the journal
                // (dispatches to jobmanagers above all) goes now; the
                // promises that rest on it (ACKs, guaranteed results) when
                // the commits handed over so far are done.
                let (now_ready, journaled): (Vec<Outgoing>, Vec<Outgoing>) =
                    outgoing.into_iter().partition(|o| !o.after_commit);
                send_all(sockets, now_ready, &mut failed, stats);
                let go = c.submit(ops, journaled)?;
                send_all(sockets, go, &mut failed, stats);
            }
        }
        stats.unsent += failed.len() as u64;
        if failed.is_empty() {
            return Ok(());
        }
        let now = clock.now();
        for out in failed {
            core.undeliverable(now, out);
        }
    }
}

fn send_all(sockets: &Sockets, outgoing: Vec<Outgoing>, failed: &mut Vec<Outgoing>, stats: &mut LoopStats) {
    for out in outgoing {
        match send(sockets.get(out.endpoint), &out) {
            Ok(()) => stats.sent[crate::gate::index(out.endpoint)] += 1,
            Err(e @ (zmq::Error::EHOSTUNREACH | zmq::Error::EAGAIN)) => {
                log::debug!("cannot send to {:?} peer {}: {e}", out.endpoint, out.peer);
                failed.push(out);
            }
            Err(e) => {
                warn!("send to {:?} peer {} failed: {e}", out.endpoint, out.peer);
                failed.push(out);
            }
        }
    }
}
