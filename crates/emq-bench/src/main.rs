//! `emq-bench`: starts a real emq-router and emq-jobmanager (release builds
//! next to this binary) and measures, for no-op jobs with results returned:
//! pipelined throughput, one-at-a-time latency, the same for guaranteed jobs
//! (and their throughput with random msgids, as EventMQ clients send),
//! and resident memory idle, under load and with many jobs waiting. In the same
//! run it measures the floor (raw ZeroMQ through the same hops, and a pipe
//! hand-off) and reports each emq figure as a ratio to it. Several runs;
//! medians and ranges. See `scripts/bench.sh`.

mod floor;
mod graphs;
mod observe;
mod procs;
mod schedules;
mod stats;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use emq_client::{admin, Client, Job, JobId};

use crate::procs::{free_endpoint, rss_bytes, Spawned};
use crate::stats::{fmt_rate, fmt_us, Series};

#[derive(Parser)]
#[command(about = "Benchmark emq against a raw ZeroMQ floor")]
pub(crate) struct Args {
    /// Runs to take medians over.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Jobs per throughput measurement.
    #[arg(long, default_value_t = 50_000)]
    jobs: usize,
    /// Jobs in flight at once in throughput runs.
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// One-at-a-time round trips per latency measurement.
    #[arg(long, default_value_t = 2000)]
    latency_samples: usize,
    /// Worker processes in the jobmanager.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Slots the jobmanager announces beyond its workers (its --prefetch)
    /// [default: the jobmanager's default, sized to the round trip].
    #[arg(long)]
    prefetch: Option<usize>,
    /// The configuration the README recommends for short jobs
    /// (`--prefetch 200` unless --prefetch is given).
    #[arg(long)]
    tuned: bool,
    /// Message (job body) size in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Jobs left waiting for the memory measurement (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    waiting: usize,
    /// Schedules for the schedules row, each firing every second (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    schedules: usize,
    /// Seconds the schedules row measures for (after a 3 s warm-up).
    #[arg(long, default_value_t = 20)]
    schedule_seconds: u64,
    /// Only the schedules row.
    #[arg(long)]
    only_schedules: bool,
    /// Submissions for the coalescing memory row (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    coalesce: usize,
    /// Also measure guaranteed jobs on a Postgres journal at this URL (its
    /// emq tables are used as they are; a router of an earlier run's lease
    /// is waited out).
    #[arg(long)]
    postgres: Option<String>,
    /// Nodes of the largest graphs in the graphs row (1,000 is measured
    /// too; 0 skips the row).
    #[arg(long, default_value_t = 10_000)]
    graph_nodes: usize,
    /// Only the graphs row.
    #[arg(long)]
    only_graphs: bool,
    /// Only the floor's one-at-a-time round trips (`--latency-samples` of
    /// them): what `scripts/hops.sh` traces.
    #[arg(long)]
    only_floor: bool,
    /// Only the observability rows (events with a subscriber, /metrics
    /// scraped, against a plain router).
    #[arg(long)]
    only_observe: bool,
    /// Small numbers for a CI smoke run.
    #[arg(long)]
    quick: bool,
    #[command(subcommand)]
    role: Option<Role>,
}

#[derive(clap::Subcommand)]
enum Role {
    #[command(hide = true)]
    FloorBroker { front: String, back: String },
    #[command(hide = true)]
    FloorWorker { back: String },
    #[command(hide = true)]
    PipeEcho,
    /// Read every event of a router for `seconds` and print how many (to
    /// profile a subscriber on its own).
    #[command(hide = true)]
    Subscribe { events: String, seconds: u64 },
}

/// The prefetch `--tuned` stands for: what the README recommends for short
/// jobs.
const TUNED_PREFETCH: usize = 200;

impl Args {
    /// The jobmanager's --prefetch, if the bench sets one.
    fn prefetch(&self) -> Option<usize> {
        self.prefetch.or(self.tuned.then_some(TUNED_PREFETCH))
    }

    /// The benchmarked jobmanager's flags.
    fn jobmanager_flags(&self) -> Vec<String> {
        let mut flags = vec!["-J".to_string(), self.workers.to_string()];
        if let Some(p) = self.prefetch() {
            flags.extend(["--prefetch".to_string(), p.to_string()]);
        }
        flags
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    match &args.role {
        Some(Role::FloorBroker { front, back }) => return floor::broker(front, back),
        Some(Role::FloorWorker { back }) => return floor::worker(back),
        Some(Role::PipeEcho) => return floor::pipe_echo(),
        Some(Role::Subscribe { events, seconds }) => return observe::subscribe(events, *seconds),
        None => {}
    }
    if args.quick {
        args.runs = 1;
        args.jobs = 2000;
        args.latency_samples = 200;
        args.waiting = 10_000;
        args.schedules = args.schedules.min(1000);
        args.coalesce = args.coalesce.min(10_000);
        args.schedule_seconds = 3;
        args.graph_nodes = args.graph_nodes.min(2000);
    }
    if args.only_schedules {
        return report_schedules(&args);
    }
    if args.only_graphs {
        return report_graphs(&args);
    }
    if args.only_floor {
        return report_floor_latency(&args);
    }
    if args.only_observe {
        return observe::report(&args);
    }
    run(&args)?;
    observe::report(&args)?;
    report_coalescing(&args)?;
    report_graphs(&args)?;
    report_schedules(&args)
}

/// The graphs rows: a chain and a fan-out of 1,000 and `args.graph_nodes`
/// jobs, `args.runs` times each; the router's CPU time per node must not
/// grow with the graph.
fn report_graphs(args: &Args) -> anyhow::Result<()> {
    if args.graph_nodes == 0 {
        return Ok(());
    }
    println!(
        "\n| graph (the bench takes every job), median of {} | jobs/s | router CPU per node | router CPU in all |",
        args.runs
    );
    println!("|---|---|---|---|");
    for shape in [graphs::Shape::Chain, graphs::Shape::FanOut] {
        for n in [1000.min(args.graph_nodes), args.graph_nodes] {
            let (mut rate, mut per_node, mut cpu) = (Series::default(), Series::default(), Series::default());
            for _ in 0..args.runs {
                let row = graphs::measure(shape, n)?;
                rate.push(row.nodes as f64 / row.wall.as_secs_f64());
                per_node.push(row.router_cpu.as_secs_f64() * 1e6 / row.nodes as f64);
                cpu.push(row.router_cpu.as_secs_f64());
            }
            let what = match shape {
                graphs::Shape::Chain => format!("chain of {n}"),
                graphs::Shape::FanOut => format!("fan-out of {} + 1 sink", n - 1),
            };
            println!(
                "| {what} | {:.0} | {:.0} us | {:.2} s |",
                rate.median(),
                per_node.median(),
                cpu.median()
            );
        }
    }
    Ok(())
}

/// A job body of about `size` bytes for the no-op handler.
pub(crate) fn noop_job(size: usize) -> Job {
    let base = Job::new("emq.noop")
        .arg("")
        .call
        .encode(emq_client::ContentType::Json)
        .len();
    Job::new("emq.noop").arg("x".repeat(size.saturating_sub(base)))
}

#[derive(Default)]
struct Results {
    floor_tput: Series,
    floor_p50: Series,
    floor_p99: Series,
    handoff: Series,
    tput: Series,
    p50: Series,
    p99: Series,
    p999: Series,
    g_tput: Series,
    g_random_tput: Series,
    g_p50: Series,
    pg_tput: Series,
    pg_p50: Series,
    /// Throughput with a concurrency limit that never binds.
    limited_tput: Series,
}

fn run(args: &Args) -> anyhow::Result<()> {
    let mut r = Results::default();
    let mut memory = None;
    for run in 0..args.runs {
        eprintln!("run {}/{}", run + 1, args.runs);
        measure_floor(args, &mut r)?;
        r.handoff
            .push(floor::pipe_handoff(args.latency_samples, args.size)?.as_secs_f64());
        let mem = measure_emq(args, &mut r, run == 0 && args.waiting > 0)?;
        if memory.is_none() {
            memory = mem;
        }
    }
    report(args, &r, memory);
    Ok(())
}

/// Router memory after `args.coalesce` submissions coalesced on few or many
/// keys: it must follow the keys, not the submissions.
fn report_coalescing(args: &Args) -> anyhow::Result<()> {
    if args.coalesce == 0 {
        return Ok(());
    }
    let n = args.coalesce;
    println!("\n| coalescing, {n} submissions, no jobmanager | waiting jobs | router RSS growth | per key |");
    println!("|---|---|---|---|");
    for keys in [n / 100, n / 10] {
        let router = Spawned::router(&[])?;
        std::thread::sleep(Duration::from_millis(300));
        let before = rss_bytes(router.pid());
        let waiting = submit_coalesced(&router, n, keys.max(1), args.size)?;
        std::thread::sleep(Duration::from_millis(2500));
        let grown = rss_bytes(router.pid()).saturating_sub(before);
        println!(
            "| on {keys} keys | {waiting} | {:.1} MiB | {:.0} B |",
            grown as f64 / (1024.0 * 1024.0),
            grown as f64 / keys.max(1) as f64
        );
    }
    Ok(())
}

/// `n` jobs with `coalesce:` one of `keys` keys, pipelined; returns how
/// many wait once the router has taken them all.
fn submit_coalesced(router: &Spawned, n: usize, keys: usize, size: usize) -> anyhow::Result<u64> {
    let ctx = zmq::Context::new();
    let s = ctx.socket(zmq::DEALER)?;
    s.set_sndhwm(0)?;
    s.set_rcvhwm(0)?;
    s.connect(&router.frontend)?;
    let body = noop_job(size).call.encode(emq_client::ContentType::Json);
    let mut ids = emq_proto::MsgIds::from_seed(0x636f_616c);
    for i in 0..n {
        let headers = emq_proto::Headers {
            key: Some(emq_proto::JobKeyHeader::Coalesce(format!("k{}", i % keys))),
            ..Default::default()
        };
        let req = emq_proto::Request {
            queue: "coalesced".into(),
            headers,
            body: body.clone(),
        };
        s.send_multipart(emq_proto::Message::Request(req).into_frames(&ids.next()), 0)?;
    }
    // Every submission is acknowledged: read the ACKs (so that they do not
    // sit in this socket) until all have come.
    let mut acked = 0;
    while acked < n {
        let mut items = [s.as_poll_item(zmq::POLLIN)];
        anyhow::ensure!(zmq::poll(&mut items, 60_000)? > 0, "no ACK after {acked} of {n}");
        while s.recv_multipart(zmq::DONTWAIT).is_ok() {
            acked += 1;
        }
    }
    let status = admin::status(&router.admin, &emq_client::ClientOptions::default())?;
    Ok(status.waiting_total)
}

/// The schedules rows: lateness of fires, router CPU, memory per schedule.
fn report_schedules(args: &Args) -> anyhow::Result<()> {
    if args.schedules == 0 {
        return Ok(());
    }
    let n = args.schedules;
    eprintln!("schedules: {n} every second, {} s each layout", args.schedule_seconds);
    let rows = [
        schedules::measure(schedules::Layout::Interval, n, args.schedule_seconds)?,
        schedules::measure(schedules::Layout::CronAligned, n, args.schedule_seconds)?,
    ];
    let (idle_cpu, idle_bytes) = schedules::idle(n, 5)?;
    println!(
        "\n| schedules (the bench takes the fired jobs) | lateness p50 | p99 | max | fires/s | router CPU | router RSS per schedule |"
    );
    println!("|---|---|---|---|---|---|---|");
    for mut row in rows {
        let what = match row.layout {
            schedules::Layout::Interval => format!("{} x every 1s, phases spread over the second", row.count),
            schedules::Layout::CronAligned => format!("{} x cron every second, all due at once", row.count),
        };
        println!(
            "| {what} | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} ({} fires) | {:.0}% | {:.0} B (fired jobs in flight included) |",
            row.lateness_ms.quantile(0.5),
            row.lateness_ms.quantile(0.99),
            row.lateness_ms.quantile(1.0),
            row.fires_per_s,
            row.lateness_ms.len(),
            row.router_cpu * 100.0,
            row.bytes_per_schedule,
        );
    }
    println!(
        "| {n} scheduled, none due for an hour | | | | | {:.2}% | {idle_bytes:.0} B |",
        idle_cpu * 100.0
    );
    Ok(())
}

/// A floor broker and echo worker started, and a client warmed up through
/// them (the processes end when the first two are dropped).
fn start_floor(args: &Args) -> anyhow::Result<(Spawned, Spawned, floor::Floor)> {
    let (front, back) = (free_endpoint()?, free_endpoint()?);
    let broker = Spawned::bench_role(&["floor-broker", &front, &back])?;
    let worker = Spawned::bench_role(&["floor-worker", &back])?;
    let f = floor::Floor::connect(&front)?;
    f.latencies(100, args.size)?; // warm up, and wait for the worker's hello
    Ok((broker, worker, f))
}

fn measure_floor(args: &Args, r: &mut Results) -> anyhow::Result<()> {
    let (_broker, _worker, f) = start_floor(args)?;
    r.floor_tput.push(f.throughput(args.jobs, args.window, args.size)?);
    let mut lat = Series::from_durations(f.latencies(args.latency_samples, args.size)?);
    r.floor_p50.push(lat.quantile(0.5));
    r.floor_p99.push(lat.quantile(0.99));
    Ok(())
}

/// The floor's round trips one at a time, nothing else.
fn report_floor_latency(args: &Args) -> anyhow::Result<()> {
    let (_broker, _worker, f) = start_floor(args)?;
    let mut lat = Series::from_durations(f.latencies(args.latency_samples, args.size)?);
    println!(
        "floor, one at a time: p50 {:.0} µs over {} round trips",
        lat.quantile(0.5) * 1e6,
        args.latency_samples
    );
    Ok(())
}

struct Memory {
    router_idle: u64,
    router_load: u64,
    router_waiting: u64,
    jm_idle: u64,
    jm_load: u64,
    waiting: usize,
    per_job: f64,
}

fn measure_emq(args: &Args, r: &mut Results, with_memory: bool) -> anyhow::Result<Option<Memory>> {
    let waiting_cap = (args.waiting * 2).max(1_000_000).to_string();
    let router = Spawned::router(&[
        "--max-waiting-per-queue",
        &waiting_cap,
        "--max-waiting",
        &waiting_cap,
        "--result-capacity",
        "10000",
    ])?;
    let jm = Spawned::jobmanager(&router.backend, &args.jobmanager_flags())?;
    let mut client = Client::connect(&[&router.frontend])?;
    let job = noop_job(args.size);
    // Warm up: every worker started and connected.
    for _ in 0..200 {
        client.call(&job, Duration::from_secs(30)).context("warm-up job")?;
    }
    let router_idle = rss_bytes(router.pid());
    let jm_idle = jm.tree_rss();

    let (tput, load) = throughput(&mut client, &job, args, &router, &jm)?;
    r.tput.push(tput);
    let mut lat = latencies(&mut client, &job, args.latency_samples)?;
    r.p50.push(lat.quantile(0.5));
    r.p99.push(lat.quantile(0.99));
    r.p999.push(lat.quantile(0.999));

    // The same with the queue under a concurrency limit it never reaches:
    // what flow control costs at dispatch.
    admin::queue_set(
        &router.admin,
        "default",
        emq_client::views::QueueChange {
            concurrency: Some(1_000_000),
            ..Default::default()
        },
        &emq_client::ClientOptions::default(),
    )?;
    let (limited, _) = throughput(&mut client, &job, args, &router, &jm)?;
    r.limited_tput.push(limited);
    admin::queue_set(
        &router.admin,
        "default",
        emq_client::views::QueueChange {
            concurrency: Some(0),
            ..Default::default()
        },
        &emq_client::ClientOptions::default(),
    )?;

    let gjob = job.clone().guarantee(true);
    let (gtput, _) = throughput(&mut client, &gjob, args, &router, &jm)?;
    r.g_tput.push(gtput);
    // Random msgids (uuid4, as EventMQ clients and `emq-cli bulk` make
    // them) on the journal the run above filled: emq's client counts its
    // ids up, which the journal's B-tree takes best.
    let random_ids = std::iter::repeat_with(|| gjob.clone().with_id(JobId::new()));
    let (grandom, _) = throughput_of(&mut client, random_ids, args, &router, &jm)?;
    r.g_random_tput.push(grandom);
    let mut glat = latencies(&mut client, &gjob, args.latency_samples.min(500))?;
    r.g_p50.push(glat.quantile(0.5));
    drop(client);
    drop(jm);
    if let Some(url) = &args.postgres {
        // The same jobs on a router whose journal is Postgres.
        let pg_router = Spawned::router_on(Some(url), &["--result-capacity", "10000"])?;
        let pg_jm = Spawned::jobmanager(&pg_router.backend, &args.jobmanager_flags())?;
        let mut pg_client = Client::connect(&[&pg_router.frontend])?;
        for _ in 0..200 {
            pg_client.call(&gjob, Duration::from_secs(30)).context("warm-up job")?;
        }
        let (t, _) = throughput(&mut pg_client, &gjob, args, &pg_router, &pg_jm)?;
        r.pg_tput.push(t);
        let mut lat = latencies(&mut pg_client, &gjob, args.latency_samples.min(500))?;
        r.pg_p50.push(lat.quantile(0.5));
    }

    let memory = if with_memory {
        // In a router of its own, so that what the runs above left behind
        // (tracked guaranteed jobs, the journal's page cache) is not counted.
        let parked = Spawned::router(&["--max-waiting-per-queue", &waiting_cap, "--max-waiting", &waiting_cap])?;
        std::thread::sleep(Duration::from_millis(500));
        let parked_idle = rss_bytes(parked.pid());
        let waiting = park_jobs(&parked, args.waiting, args.size)?;
        // Measured once the router has been quiet for a moment, as it would
        // be with jobs waiting and nobody to run them.
        std::thread::sleep(Duration::from_millis(2500));
        let router_waiting = rss_bytes(parked.pid());
        let per_job = (router_waiting as f64 - parked_idle as f64) / waiting as f64 - args.size as f64;
        Some(Memory {
            router_idle,
            router_load: load.0,
            router_waiting,
            jm_idle,
            jm_load: load.1,
            waiting,
            per_job,
        })
    } else {
        None
    };
    Ok(memory)
}

/// Pipelined no-op jobs; returns jobs/s and peak RSS of (router, jobmanager tree).
pub(crate) fn throughput(
    client: &mut Client,
    job: &Job,
    args: &Args,
    router: &Spawned,
    jm: &Spawned,
) -> anyhow::Result<(f64, (u64, u64))> {
    throughput_of(client, (0..args.jobs).map(|_| job.clone()), args, router, jm)
}

/// As [`throughput`], for `args.jobs` jobs taken from `jobs`.
fn throughput_of(
    client: &mut Client,
    jobs: impl Iterator<Item = Job>,
    args: &Args,
    router: &Spawned,
    jm: &Spawned,
) -> anyhow::Result<(f64, (u64, u64))> {
    let mut failed = 0usize;
    let mut done = 0usize;
    let (mut peak_router, mut peak_jm) = (0u64, 0u64);
    let mut last_sample = Instant::now();
    let started = Instant::now();
    client.submit_many(jobs.take(args.jobs), args.window, Duration::from_secs(60), |_, res| {
        done += 1;
        if res.is_err() {
            failed += 1;
        }
        if last_sample.elapsed() > Duration::from_millis(200) {
            last_sample = Instant::now();
            peak_router = peak_router.max(rss_bytes(router.pid()));
            peak_jm = peak_jm.max(jm.tree_rss());
        }
    })?;
    let rate = done as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        failed == 0 && done == args.jobs,
        "{failed} of {done} jobs failed ({} submitted)",
        args.jobs
    );
    peak_router = peak_router.max(rss_bytes(router.pid()));
    peak_jm = peak_jm.max(jm.tree_rss());
    Ok((rate, (peak_router, peak_jm)))
}

pub(crate) fn latencies(client: &mut Client, job: &Job, n: usize) -> anyhow::Result<Series> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client.call(job, Duration::from_secs(30))?;
        times.push(t.elapsed());
    }
    Ok(Series::from_durations(times))
}

/// Leave `n` jobs waiting in a queue nobody serves; returns how many the router holds.
fn park_jobs(router: &Spawned, n: usize, size: usize) -> anyhow::Result<usize> {
    let ctx = zmq::Context::new();
    let s = ctx.socket(zmq::DEALER)?;
    s.set_sndhwm(0)?;
    s.connect(&router.frontend)?;
    let body = noop_job(size).call.encode(emq_client::ContentType::Json);
    let mut ids = emq_proto::MsgIds::from_seed(0x6e6f_6f70);
    for _ in 0..n {
        // Headers as the client sends them by default.
        let headers = emq_proto::Headers {
            reply_requested: true,
            ..Default::default()
        };
        let req = emq_proto::Request {
            queue: "parked".into(),
            headers,
            body: body.clone(),
        };
        s.send_multipart(emq_proto::Message::Request(req).into_frames(&ids.next()), 0)?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status = emq_client::admin::status(
            &router.admin,
            &emq_client::ClientOptions {
                connect_timeout: Duration::from_secs(10),
                ..Default::default()
            },
        )?;
        let waiting = status.waiting_total as usize;
        if waiting >= n || Instant::now() > deadline {
            return Ok(waiting);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn report(args: &Args, r: &Results, memory: Option<Memory>) {
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
    println!(
        "\nemq-bench: {} run(s), {} workers, prefetch {}, {}-byte bodies, {} jobs per throughput run, window {}, {} latency samples",
        args.runs,
        args.workers,
        args.prefetch().map_or("sized to the round trip (default)".to_string(), |p| p.to_string()),
        args.size,
        args.jobs,
        args.window,
        args.latency_samples
    );
    println!("median [min..max] over runs; ratio = emq / floor measured in the same runs\n");
    println!("| measure | emq | floor (raw ZeroMQ, same hops) | ratio |");
    println!("|---|---|---|---|");
    let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}", a / b) } else { "-".into() };
    // A rate against the floor's, and against another emq row if given.
    let rate = |measure: &str, emq: &Series, versus: Option<(&str, &Series)>| {
        let vs = versus.map_or(String::new(), |(name, other)| {
            format!(" (vs {name}: {})", ratio(emq.median(), other.median()))
        });
        println!(
            "| {measure} | {} | {} | {}{vs} |",
            fmt_rate(emq),
            fmt_rate(&r.floor_tput),
            ratio(emq.median(), r.floor_tput.median())
        );
    };
    let latency = |measure: &str, emq: &Series, floor: &Series| {
        println!(
            "| {measure} | {} | {} | {} |",
            fmt_us(emq),
            fmt_us(floor),
            ratio(emq.median(), floor.median())
        );
    };
    rate("throughput, no-op jobs, results returned", &r.tput, None);
    latency("latency p50, one at a time", &r.p50, &r.floor_p50);
    latency("latency p99", &r.p99, &r.floor_p99);
    println!("| latency p999 | {} | | |", fmt_us(&r.p999));
    rate(
        "throughput, queue under a concurrency limit it never reaches",
        &r.limited_tput,
        Some(("no limit", &r.tput)),
    );
    rate("guaranteed throughput", &r.g_tput, Some(("plain emq", &r.tput)));
    rate(
        "guaranteed throughput, random msgids",
        &r.g_random_tput,
        Some(("counting msgids", &r.g_tput)),
    );
    latency("guaranteed latency p50", &r.g_p50, &r.floor_p50);
    if !r.pg_tput.is_empty() {
        rate(
            "guaranteed throughput, Postgres journal",
            &r.pg_tput,
            Some(("redb", &r.g_tput)),
        );
        latency("guaranteed latency p50, Postgres journal", &r.pg_p50, &r.floor_p50);
    }
    println!(
        "| worker hand-off (pipe round trip, p50) | | {} | |",
        fmt_us(&r.handoff)
    );
    if let Some(m) = memory {
        println!("\n| memory | resident |");
        println!("|---|---|");
        println!("| router idle | {} |", mib(m.router_idle));
        println!("| router under load (peak) | {} |", mib(m.router_load));
        println!("| router with {} jobs waiting | {} |", m.waiting, mib(m.router_waiting));
        println!(
            "| router bytes per waiting job, beyond its {}-byte body | {:.0} |",
            args.size, m.per_job
        );
        println!("| jobmanager + workers idle | {} |", mib(m.jm_idle));
        println!("| jobmanager + workers under load (peak) | {} |", mib(m.jm_load));
    }
}
