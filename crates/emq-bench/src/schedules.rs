//! The schedules row: many schedules firing every second in one router.
//!
//! The bench itself is the jobmanager here: it INFORMs on the backend,
//! announces plenty of slots, and answers each fired job at once. Lateness
//! is when the job's REQUEST arrives minus the slot written in its id
//! (`sched:NAME:SLOT_MS`), both on this machine's wall clock: the time the
//! router takes to notice the slot, journal the fire and dispatch the job.
//! No workers share the CPU with the router, so what is measured is the
//! router's scheduler, not the cost of running the jobs.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use emq_client::views::ScheduleSpec;
use emq_proto::{ContentType, Message, MsgIds, Reply, ResultFrames, Timing};

use crate::procs::{rss_bytes, Spawned};
use crate::stats::Series;

/// How the schedules are laid out.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Layout {
    /// `--every 1s`, created evenly over one second: phases spread over
    /// the second, as for schedules made over time.
    Interval,
    /// Cron `* * * * * *`: every schedule due at the same instant, each second.
    CronAligned,
}

pub(crate) struct Row {
    pub layout: Layout,
    pub count: usize,
    pub lateness_ms: Series,
    pub fires_per_s: f64,
    pub router_cpu: f64,
    pub bytes_per_schedule: f64,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// CPU time (user + system) of `pid` so far.
pub(crate) fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
}

/// A jobmanager made of one DEALER: takes every job, answers at once (the
/// schedules and graphs rows).
pub(crate) struct BenchJobManager {
    socket: zmq::Socket,
    ids: MsgIds,
    next_heartbeat: Instant,
}

impl BenchJobManager {
    pub(crate) fn connect(ctx: &zmq::Context, backend: &str) -> anyhow::Result<BenchJobManager> {
        let socket = ctx.socket(zmq::DEALER)?;
        socket.set_sndhwm(0)?;
        socket.set_rcvhwm(0)?;
        socket.connect(backend)?;
        let mut jm = BenchJobManager {
            socket,
            ids: MsgIds::from_seed(0x6a6d),
            next_heartbeat: Instant::now(),
        };
        let inform = Message::Inform(emq_proto::Inform {
            queues: vec![(10, "default".into())],
            peer_type: emq_proto::PeerType::Worker,
            timing: Some(Timing {
                heartbeat_ms: 1000,
                liveness_ms: 5000,
            }),
            capabilities: Default::default(),
        });
        jm.send(inform)?;
        jm.send(Message::Ready { count: 1_000_000 })?;
        Ok(jm)
    }

    fn send(&mut self, msg: Message) -> anyhow::Result<()> {
        self.socket.send_multipart(msg.into_frames(&self.ids.next()), 0)?;
        Ok(())
    }

    /// Answer what arrived within `wait`; `on_job(id, unix_ms)` for each
    /// job, with when it arrived.
    pub(crate) fn serve(&mut self, wait: Duration, mut on_job: impl FnMut(&str, i64)) -> anyhow::Result<()> {
        if Instant::now() >= self.next_heartbeat {
            let hb = Message::Heartbeat {
                unix_time: format!("{:.3}", unix_ms() as f64 / 1000.0),
                state: None,
                workers: None,
            };
            self.send(hb)?;
            self.next_heartbeat = Instant::now() + Duration::from_secs(1);
        }
        let mut items = [self.socket.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, wait.as_millis() as i64)?;
        while let Ok(frames) = self.socket.recv_multipart(zmq::DONTWAIT) {
            let now = unix_ms();
            let Ok(env) = emq_proto::decode(&frames) else { continue };
            if let Message::Request(_) = env.message {
                on_job(&env.msgid, now);
                let done = ResultFrames {
                    of: env.msgid,
                    outcome: emq_proto::Outcome::Ok,
                    content_type: ContentType::Json,
                    body: br#"{"value":null}"#.to_vec(),
                };
                self.send(Message::Reply(Reply::Result(done)))?;
                self.send(Message::Ready { count: 1 })?;
            }
        }
        Ok(())
    }
}

/// Create `count` schedules over one admin connection, pipelined, spread
/// evenly over `over` (an interval schedule's phase is its creation time).
fn create(admin: &str, count: usize, over: Duration, spec: impl Fn(usize) -> ScheduleSpec) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let s = ctx.socket(zmq::DEALER)?;
    s.set_sndhwm(0)?;
    s.set_rcvhwm(0)?;
    s.connect(admin)?;
    let body = emq_client::Job::new("emq.noop").call.encode(ContentType::Json);
    let mut ids = MsgIds::from_seed(0x7363);
    let started = Instant::now();
    for i in 0..count {
        let at = started + over.mul_f64(i as f64 / count as f64);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let msg = Message::ScheduleSet {
            spec: spec(i),
            body: body.clone(),
        };
        s.send_multipart(msg.into_frames(&ids.next()), 0)?;
    }
    for _ in 0..count {
        let mut items = [s.as_poll_item(zmq::POLLIN)];
        anyhow::ensure!(zmq::poll(&mut items, 30_000)? > 0, "no answer to SCHEDULE_SET");
        let env = emq_proto::decode(&s.recv_multipart(0)?)?;
        if let Message::Error { reason, .. } = env.message {
            anyhow::bail!("schedule refused: {reason}");
        }
    }
    Ok(())
}

/// `count` schedules firing every second for `seconds` (after a warm-up).
pub(crate) fn measure(layout: Layout, count: usize, seconds: u64) -> anyhow::Result<Row> {
    let router = Spawned::router(&[])?;
    let ctx = zmq::Context::new();
    let mut jm = BenchJobManager::connect(&ctx, &router.backend)?;
    jm.serve(Duration::from_millis(500), |_, _| {})?;
    let rss_before = rss_bytes(router.pid());
    // Interval schedules made over time have phases all over the second;
    // cron ones are all due at the same instant whenever they are made.
    create(&router.admin, count, Duration::from_secs(1), |i| ScheduleSpec {
        name: format!("bench-{i}"),
        queue: "default".into(),
        every_ms: matches!(layout, Layout::Interval).then_some(1000),
        cron: matches!(layout, Layout::CronAligned).then(|| "* * * * * *".into()),
        nohaste: true,
        ..ScheduleSpec::default()
    })
    .context("creating schedules")?;
    // Warm up: every schedule fires a few times.
    let warm = Instant::now() + Duration::from_secs(3);
    while Instant::now() < warm {
        jm.serve(Duration::from_millis(100), |_, _| {})?;
    }
    let rss_after = rss_bytes(router.pid());
    let mut lateness = Vec::with_capacity(count * seconds as usize);
    let cpu0 = cpu_time(router.pid());
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    while Instant::now() < end {
        jm.serve(Duration::from_millis(100), |id, at| {
            // A fired job's id ends with its slot: `sched:NAME:SLOT_MS`.
            if let Some(slot) = id.rsplit_once(':').and_then(|(_, s)| s.parse::<i64>().ok()) {
                lateness.push((at - slot) as f64);
            }
        })?;
    }
    let wall = started.elapsed();
    let cpu = cpu_time(router.pid()).saturating_sub(cpu0);
    let fires = lateness.len();
    Ok(Row {
        layout,
        count,
        lateness_ms: Series::from_values(lateness),
        fires_per_s: fires as f64 / wall.as_secs_f64(),
        router_cpu: cpu.as_secs_f64() / wall.as_secs_f64(),
        bytes_per_schedule: (rss_after as f64 - rss_before as f64) / count as f64,
    })
}

/// Router CPU with `count` schedules of which none is due for an hour (the
/// router must sleep, not poll them), and its memory per schedule.
pub(crate) fn idle(count: usize, seconds: u64) -> anyhow::Result<(f64, f64)> {
    let router = Spawned::router(&[])?;
    let ctx = zmq::Context::new();
    let mut jm = BenchJobManager::connect(&ctx, &router.backend)?;
    jm.serve(Duration::from_millis(500), |_, _| {})?;
    let rss_before = rss_bytes(router.pid());
    create(&router.admin, count, Duration::ZERO, |i| ScheduleSpec {
        name: format!("idle-{i}"),
        queue: "default".into(),
        every_ms: Some(3_600_000),
        nohaste: true,
        ..ScheduleSpec::default()
    })?;
    // Settle: the answers to SCHEDULE_SET are freed and handed back.
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle {
        jm.serve(Duration::from_millis(200), |_, _| {})?;
    }
    let per_schedule = (rss_bytes(router.pid()) as f64 - rss_before as f64) / count as f64;
    let cpu0 = cpu_time(router.pid());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        jm.serve(Duration::from_millis(200), |_, _| {})?;
    }
    let cpu = cpu_time(router.pid()).saturating_sub(cpu0);
    Ok((cpu.as_secs_f64() / started.elapsed().as_secs_f64(), per_schedule))
}
