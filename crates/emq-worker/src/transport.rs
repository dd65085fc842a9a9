//! The jobmanager's only I/O loop: the DEALER to the router, the workers'
//! pipes and the signal pipes, all in one zmq_poll that sleeps until something
//! happens or the core's next deadline. No polling intervals: a finished job
//! is reported the moment its worker writes it.

use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use emq_net::curve::{ClientKeys, CurveError};
use emq_net::handshake::{HandshakeFailure, Watched};
use emq_net::Throttle;

use crate::config::ConfigError;
use crate::core::{Action, JobManager};
use crate::pool::{Event, Pool, SpawnError};
use crate::{Config, Registry};

/// Why the jobmanager stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A worker process could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// ZeroMQ refused something.
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
    /// The CURVE settings are not usable.
    #[error(transparent)]
    Curve(#[from] CurveError),
    /// Workers die before they finish any job: something is wrong with them.
    #[error("workers keep dying before finishing a job; giving up")]
    WorkersFailing,
    /// The HTTP server (`--http`) could not start.
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
}

/// One pipe per kind of signal, so the loop knows which one arrived.
struct SignalPipe {
    read: UnixStream,
    _write: UnixStream,
}

impl SignalPipe {
    fn new(signals: &[i32]) -> std::io::Result<SignalPipe> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        for &sig in signals {
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
        }
        Ok(SignalPipe { read, _write: write })
    }

    /// How many signals arrived since the last call.
    fn drain(&self) -> usize {
        let mut buf = [0u8; 64];
        let mut n = 0;
        while let Ok(k) = (&self.read).read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k;
        }
        n
    }
}

struct Link {
    /// The DEALER socket, its failed handshakes (a refused key) logged, not
    /// mistaken for silence.
    watched: Watched,
    endpoint: String,
}

impl Link {
    fn socket(&self) -> &zmq::Socket {
        self.watched.socket()
    }

    fn handshakes(&self) -> &emq_net::handshake::HandshakeMonitor {
        self.watched.monitor()
    }
}

fn open_link(
    ctx: &zmq::Context,
    endpoint: &str,
    curve: Option<&ClientKeys>,
    several_routers: bool,
) -> Result<Link, RunError> {
    let zerr = |what: &str| {
        let what = what.to_string();
        move |source| RunError::Zmq { what, source }
    };
    let socket = ctx.socket(zmq::DEALER).map_err(zerr("create a DEALER socket"))?;
    let identity = uuid::Uuid::new_v4().to_string();
    socket.set_identity(identity.as_bytes()).map_err(zerr("set identity"))?;
    socket.set_linger(0).map_err(zerr("set LINGER"))?;
    socket.set_sndhwm(100_000).map_err(zerr("set SNDHWM"))?;
    socket.set_rcvhwm(100_000).map_err(zerr("set RCVHWM"))?;
    if let Some(keys) = curve {
        keys.apply(&socket)?;
    }
    // Refused connections matter only with another router to try.
    let watched = if several_routers {
        Watched::with_refusals(ctx, socket, curve.is_some())
    } else {
        Watched::new(ctx, socket, curve.is_some())
    }
    .map_err(zerr("monitor the router link"))?;
    watched
        .socket()
        .connect(endpoint)
        .map_err(zerr(&format!("connect to {endpoint}")))?;
    info!("connecting to router {endpoint} as {identity}");
    Ok(Link {
        watched,
        endpoint: endpoint.to_string(),
    })
}

/// Run the jobmanager until SIGTERM/SIGINT (drain) or a fatal error.
/// SIGHUP parses `config.reload_from` again (the config file as it is now).
/// The registry's handler names are declared to the router.
pub fn run(mut config: Config, registry: Registry) -> Result<(), RunError> {
    // Handlers run in worker processes; this process only needs their names.
    config.handlers = registry.names().into_iter().map(String::from).collect();
    info!("handlers: {}", config.handlers.join(", "));
    drop(registry);
    config.validate()?;
    let stop = SignalPipe::new(&[signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
    let hup = SignalPipe::new(&[signal_hook::consts::SIGHUP])?;
    let chld = SignalPipe::new(&[signal_hook::consts::SIGCHLD])?;
    let ctx = zmq::Context::new();
    let mut pool = Pool::new(config.max_jobs, config.max_rss_bytes)?;
    let mut clock = emq_net::Clock::new();
    let mut core = JobManager::new(config.clone(), clock.now(), emq_net::random_seed());
    let mut routers = config.routers.clone();
    let mut link: Option<Link> = None;
    let mut events: Vec<Event> = Vec::new();
    let mut batch = emq_proto::BatchWriter::new();
    let mut refusals = Throttle::new(Duration::from_secs(10));
    let snapshot = |core: &JobManager, pool: &Pool| crate::metrics::Snapshot {
        core: core.metrics(),
        pool: pool.counts,
    };
    let (_http, mut snapshots) = match &config.http {
        Some(addr) => {
            let (server, snapshots) = crate::metrics::start(addr, snapshot(&core, &pool)).map_err(RunError::Http)?;
            (Some(server), Some(snapshots))
        }
        None => (None, None),
    };

    loop {
        // Carry out the core's actions; completions they cause feed back in.
        loop {
            let actions: Vec<Action> = core.take_actions().collect();
            if actions.is_empty() && events.is_empty() {
                break;
            }
            // This turn's messages go as one BATCH to a router that reads
            // them (a new link is never one: it has not answered yet).
            let batching = core.router_reads_batches();
            for action in actions {
                match action {
                    Action::Connect { router } => {
                        send_batch(link.as_ref(), &mut batch, &mut core);
                        let endpoint = &routers[router % routers.len()];
                        link = Some(open_link(&ctx, endpoint, config.curve.as_ref(), routers.len() > 1)?);
                    }
                    Action::Send { msgid, message } => {
                        if let Some(l) = &link {
                            let command = message.command();
                            let frames = match batching {
                                false => message.into_frames(&msgid),
                                true => match batch.push_message(&msgid, message) {
                                    Ok(()) => {
                                        if batch.is_full() {
                                            send_batch(link.as_ref(), &mut batch, &mut core);
                                        }
                                        continue;
                                    }
                                    // Too large to copy: alone, after what came before it.
                                    Err(alone) => {
                                        send_batch(link.as_ref(), &mut batch, &mut core);
                                        alone
                                    }
                                },
                            };
                            if let Err(e) = l.socket().send_multipart(frames, zmq::DONTWAIT) {
                                warn!("cannot send {} to {}: {e}", command.as_str(), l.endpoint);
                            }
                        }
                    }
                    Action::Start {
                        msgid,
                        content_type,
                        body,
                    } => {
                        pool.start(&msgid, content_type, &body);
                    }
                    Action::Withdraw => pool.withdraw(&mut events),
                    Action::Kill { msgid } => pool.kill_job(&msgid),
                    Action::KillAll => pool.kill_all(),
                    Action::Resize { workers } => pool.resize(workers)?,
                    Action::Exit => {
                        send_batch(link.as_ref(), &mut batch, &mut core);
                        pool.shutdown(Duration::from_secs(2));
                        info!("stopped");
                        return Ok(());
                    }
                }
            }
            send_batch(link.as_ref(), &mut batch, &mut core);
            feed(&mut core, clock.now(), &mut events);
        }
        // Into the workers' queue, once a turn: the jobs just started, and
        // those that waited for room in it (POLLOUT woke us).
        pool.flush_writes()?;
        if pool.is_failing() {
            core.fail("workers keep dying before finishing a job");
            pool.kill_all();
            return Err(RunError::WorkersFailing);
        }

        let mut deadline = core.next_deadline();
        if let Some(d) = pool.next_deadline() {
            deadline = deadline.min(d);
        }
        if let Some(s) = snapshots.as_mut() {
            if s.due(Instant::now()) {
                s.send(Instant::now(), snapshot(&core, &pool));
            }
            deadline = deadline.min(s.next_due());
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        let timeout_ms = wait.as_micros().div_ceil(1000).min(i64::MAX as u128) as i64;
        let worker_fds = pool.fds();
        let mut items: Vec<zmq::PollItem<'_>> = Vec::with_capacity(6 + worker_fds.len());
        items.push(zmq::PollItem::from_fd(stop.read.as_raw_fd(), zmq::POLLIN));
        items.push(zmq::PollItem::from_fd(hup.read.as_raw_fd(), zmq::POLLIN));
        items.push(zmq::PollItem::from_fd(chld.read.as_raw_fd(), zmq::POLLIN));
        // Room in the workers' queue for jobs waiting for it (else an fd
        // that is never ready: -1 is ignored by poll).
        items.push(zmq::PollItem::from_fd(pool.wants_room().unwrap_or(-1), zmq::POLLOUT));
        for (_, fd) in &worker_fds {
            items.push(zmq::PollItem::from_fd(*fd, zmq::POLLIN));
        }
        if let Some(l) = &link {
            items.push(l.socket().as_poll_item(zmq::POLLIN));
            items.push(l.handshakes().socket().as_poll_item(zmq::POLLIN));
        }
        match zmq::poll(&mut items, timeout_ms) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => {
                return Err(RunError::Zmq {
                    what: "poll".into(),
                    source: e,
                })
            }
        }
        let readable: Vec<bool> = items
            .iter()
            .map(|i| i.is_readable() || i.is_writable() || i.is_error())
            .collect();
        drop(items);
        let now = clock.now();

        if readable[2] {
            chld.drain();
            pool.reap();
        }
        for (k, (pid, _)) in worker_fds.iter().enumerate() {
            if readable[4 + k] {
                pool.on_readable(*pid, &mut events)?;
            }
        }
        if pool.next_deadline().is_some_and(|d| now.mono >= d) {
            pool.tick(&mut events);
        }
        feed(&mut core, now, &mut events);
        if let Some(l) = link.as_ref().filter(|_| readable[4 + worker_fds.len()]) {
            receive(l, &mut core, now);
        }
        if let Some(l) = link.as_ref().filter(|_| readable[5 + worker_fds.len()]) {
            report_refusals(&mut refusals, now.mono, l.handshakes().failures());
            if l.handshakes().take_refused() {
                core.on_router_refused(now);
            }
            if l.handshakes().take_disconnected() {
                core.on_router_disconnected(now);
            }
        }
        if readable[0] && stop.drain() > 0 {
            core.shutdown(now);
        }
        if readable[1] && hup.drain() > 0 {
            let reloaded = match &config.reload_from {
                Some(argv) => crate::cli::reload(argv).map(|new| Config {
                    handlers: config.handlers.clone(),
                    ..new
                }),
                None => Err(crate::ConfigError::Invalid("no --config file to re-read".into())),
            };
            match reloaded {
                Ok(new) => {
                    pool.max_jobs = new.max_jobs;
                    pool.max_rss_bytes = new.max_rss_bytes;
                    routers = new.routers.clone();
                    core.reconfigure(now, new);
                }
                Err(e) => error!("SIGHUP: keeping the running configuration: {e}"),
            }
        }
        let now = clock.now();
        if now.mono >= core.next_deadline() {
            // What the router sent while this loop was held up counts
            // before its silence is judged.
            if let Some(l) = &link {
                receive(l, &mut core, now);
            }
            core.tick(now);
        }
    }
}

/// Logs refused handshakes: the first at once, then at most one line per
/// interval (libzmq retries every 100 ms).
fn report_refusals(log: &mut Throttle, now: Instant, failures: Vec<HandshakeFailure>) {
    for failure in failures {
        if let Some(more) = log.report(now) {
            error!("cannot connect to router {failure}{more}");
        }
    }
}

/// Hand what the pool reported to the core.
fn feed(core: &mut JobManager, now: emq_proto::Now, events: &mut Vec<Event>) {
    for event in events.drain(..) {
        match event {
            Event::Done(c) => core.on_job_done(now, &c.msgid, c.outcome, c.content_type, c.body),
            Event::Started { msgid } => core.on_job_started(now, &msgid),
            Event::Returned { msgid } => core.on_job_returned(&msgid),
        }
    }
}

/// Send the messages gathered in `batch`, as one BATCH.
fn send_batch(link: Option<&Link>, batch: &mut emq_proto::BatchWriter, core: &mut JobManager) {
    if batch.is_empty() {
        return;
    }
    let entries = batch.len();
    let frames = batch.take_frames(&core.next_msgid());
    if let Some(l) = link {
        if let Err(e) = l.socket().send_multipart(frames, zmq::DONTWAIT) {
            warn!("cannot send a BATCH of {entries} to {}: {e}", l.endpoint);
        }
    }
}

fn receive(link: &Link, core: &mut JobManager, now: emq_proto::Now) {
    for _ in 0..512 {
        match emq_net::recv_frames(link.socket(), zmq::DONTWAIT) {
            Ok(frames) => emq_net::with_slices(&frames, |f| match emq_proto::batch_entries(f) {
                None => match emq_proto::decode(f) {
                    Ok(env) => core.on_router(now, &env.msgid, env.message),
                    Err(e) => warn!("bad message from router {}: {e}", link.endpoint),
                },
                Some(Err(e)) => warn!("bad BATCH from router {}: {e}", link.endpoint),
                Some(Ok(mut entries)) => {
                    let mut entry: Vec<&[u8]> = Vec::with_capacity(emq_proto::MAX_FRAMES);
                    while let Some(read) = entries.next_message(&mut entry, emq_proto::DEFAULT_MAX_FRAME) {
                        match read {
                            Ok(env) => core.on_router(now, &env.msgid, env.message),
                            Err(e) => warn!("bad message in a BATCH from router {}: {e}", link.endpoint),
                        }
                    }
                }
            }),
            Err(zmq::Error::EAGAIN) => return,
            Err(e) => {
                debug!("receive from {}: {e}", link.endpoint);
                return;
            }
        }
    }
}
