//! The observability rows: the same pipelined throughput and one-at-a-time
//! latency against three routers started the same way, interleaved in
//! each run: plain; with `--events` and nobody subscribed; with `--events`
//! and a subscriber (in this process) reading every event; with `--http`
//! and `/metrics` scraped every second; with `--dashboard` and its overview
//! open in headless Chromium (which polls it every second), when Debian's
//! chromium is installed. Each is reported as a ratio to the
//! plain router of the same runs, and with the CPU time all processes
//! spent per job in the throughput run (router, jobmanager and its workers,
//! this process with its client and subscriber): on a shared machine whose
//! speed varies from minute to minute, the steadier measure of cost.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use emq_client::events::{Filter, Subscriber};
use emq_client::{Client, ClientOptions};

use crate::procs::Spawned;
use crate::schedules::cpu_time;
use crate::stats::{fmt_rate, fmt_us, Series};
use crate::{latencies, noop_job, throughput, Args};

/// How the router under test is watched.
#[derive(Clone, Copy, PartialEq)]
enum Watched {
    Plain,
    /// `--events` with nobody subscribed: the router's own cost.
    Unheard,
    Events,
    Scraped,
    /// `--dashboard` with the overview open in a browser.
    Dashboard,
}

/// Debian's Chromium, for the dashboard row.
const CHROMIUM: &str = "/usr/bin/chromium";

#[derive(Default)]
struct Row {
    tput: Series,
    p50: Series,
    /// CPU microseconds per job, all processes.
    cpu_us: Series,
    /// Events the subscriber received and lost, or scrapes made.
    seen: u64,
    lost: u64,
}

/// Run the rows and print their table.
pub(crate) fn report(args: &Args) -> anyhow::Result<()> {
    let mut kinds = vec![Watched::Plain, Watched::Unheard, Watched::Events, Watched::Scraped];
    if std::path::Path::new(CHROMIUM).exists() {
        kinds.push(Watched::Dashboard);
    } else {
        eprintln!("{CHROMIUM} is missing: no dashboard row (scripts/test-deps.sh installs it)");
    }
    let mut rows: Vec<Row> = kinds.iter().map(|_| Row::default()).collect();
    for run in 0..args.runs {
        eprintln!("observability run {}/{}", run + 1, args.runs);
        for (kind, row) in kinds.iter().zip(rows.iter_mut()) {
            measure(args, *kind, row)?;
        }
    }
    let (plain_tput, plain_p50) = (rows[0].tput.median(), rows[0].p50.median());
    println!(
        "\n| observability, median of {} (interleaved) | throughput | vs plain | CPU per job, all processes | vs plain | latency p50 | vs plain | watcher |",
        args.runs
    );
    println!("|---|---|---|---|---|---|---|---|");
    let plain_cpu = rows[0].cpu_us.median();
    for (kind, row) in kinds.iter().zip(&rows) {
        let (what, watcher) = match kind {
            Watched::Plain => ("plain router".to_string(), String::new()),
            Watched::Unheard => ("--events, nobody subscribed".to_string(), String::new()),
            Watched::Events => (
                "--events, a subscriber reading every event".to_string(),
                format!("{} events received, {} lost", row.seen, row.lost),
            ),
            Watched::Scraped => (
                "--http, /metrics scraped every second".to_string(),
                format!("{} scrapes", row.seen),
            ),
            Watched::Dashboard => (
                "--dashboard, its overview open in headless Chromium".to_string(),
                format!("browser CPU {} ms in all", row.seen),
            ),
        };
        println!(
            "| {what} | {} | {:.3} | {:.1} µs | {:.3} | {} | {:.3} | {watcher} |",
            fmt_rate(&row.tput),
            row.tput.median() / plain_tput,
            row.cpu_us.median(),
            row.cpu_us.median() / plain_cpu,
            fmt_us(&row.p50),
            row.p50.median() / plain_p50,
        );
    }
    Ok(())
}

fn measure(args: &Args, kind: Watched, row: &mut Row) -> anyhow::Result<()> {
    let extra: &[&str] = match kind {
        Watched::Plain => &[],
        Watched::Unheard | Watched::Events => &["--events", "tcp://127.0.0.1:*"],
        Watched::Scraped => &["--http", "127.0.0.1:0"],
        Watched::Dashboard => &["--http", "127.0.0.1:0", "--dashboard"],
    };
    let router = Spawned::router(extra)?;
    let jm = Spawned::jobmanager(&router.backend, &args.jobmanager_flags())?;
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, lost) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let browser = match kind {
        Watched::Dashboard => {
            let addr = router.http.clone().ok_or_else(|| anyhow::anyhow!("no HTTP address"))?;
            Some(Browser::open(&format!("http://{addr}/"))?)
        }
        _ => None,
    };
    let watcher = match kind {
        Watched::Plain | Watched::Unheard | Watched::Dashboard => None,
        Watched::Events => {
            let endpoint = router
                .events
                .clone()
                .ok_or_else(|| anyhow::anyhow!("no events endpoint"))?;
            let mut sub = Subscriber::connect(&endpoint, &Filter::all(), ClientOptions::default())?;
            let (stop, seen, lost) = (stop.clone(), seen.clone(), lost.clone());
            Some(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(Some(got)) = sub.next(Duration::from_millis(100)) {
                        seen.fetch_add(1, Ordering::Relaxed);
                        lost.fetch_add(got.missed, Ordering::Relaxed);
                    }
                }
            }))
        }
        Watched::Scraped => {
            let addr = router.http.clone().ok_or_else(|| anyhow::anyhow!("no HTTP address"))?;
            let (stop, seen) = (stop.clone(), seen.clone());
            Some(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if scrape(&addr).is_ok() {
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    for _ in 0..10 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }))
        }
    };
    let mut client = Client::connect(&[&router.frontend])?;
    let job = noop_job(args.size);
    for _ in 0..200 {
        client.call(&job, Duration::from_secs(30))?;
    }
    let cpu_before = all_cpu(&router, &jm);
    let (tput, _) = throughput(&mut client, &job, args, &router, &jm)?;
    let cpu = all_cpu(&router, &jm).saturating_sub(cpu_before);
    row.tput.push(tput);
    row.cpu_us.push(cpu.as_secs_f64() * 1e6 / args.jobs as f64);
    let mut lat = latencies(&mut client, &job, args.latency_samples)?;
    row.p50.push(lat.quantile(0.5));
    // Let the subscriber drain what is still on its way.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    row.seen += seen.load(Ordering::Relaxed);
    row.lost += lost.load(Ordering::Relaxed);
    if let Some(b) = browser {
        row.seen += b.close().as_millis() as u64;
    }
    Ok(())
}

/// Headless Chromium showing one page, in a process group of its own.
struct Browser {
    child: std::process::Child,
    profile: std::path::PathBuf,
}

impl Browser {
    /// Open `url`, and wait until the browser has settled on it.
    fn open(url: &str) -> anyhow::Result<Browser> {
        use std::os::unix::process::CommandExt;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let profile = std::env::temp_dir().join(format!(
            "emq-bench-chromium-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let child = std::process::Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()?;
        // Its start costs a core for a second or two: not part of the run.
        std::thread::sleep(Duration::from_secs(3));
        Ok(Browser { child, profile })
    }

    /// Close it: the CPU time its processes spent.
    fn close(mut self) -> Duration {
        let group = self.child.id();
        let cpu = group_members(group).into_iter().map(cpu_time).sum();
        // SAFETY: kill(2) on the process group this browser leads.
        unsafe { libc::kill(-(group as i32), libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
        cpu
    }
}

/// Processes whose process group is `group`.
fn group_members(group: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // After the command: state, ppid, pgrp.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok())
                == Some(group)
        })
        .collect()
}

/// The `subscribe` role: read every event for `seconds`.
pub(crate) fn subscribe(endpoint: &str, seconds: u64) -> anyhow::Result<()> {
    let mut sub = Subscriber::connect(endpoint, &Filter::all(), ClientOptions::default())?;
    let end = std::time::Instant::now() + Duration::from_secs(seconds);
    let (mut seen, mut lost) = (0u64, 0u64);
    while std::time::Instant::now() < end {
        if let Some(got) = sub.next(Duration::from_millis(100))? {
            seen += 1;
            lost += got.missed;
        }
    }
    println!("{seen} events, {lost} lost");
    Ok(())
}

/// CPU time so far of the router, the jobmanager with its workers, and
/// this process (client and watcher threads).
fn all_cpu(router: &Spawned, jm: &Spawned) -> Duration {
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", jm.pid())).unwrap_or_default();
    let workers: Duration = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .map(cpu_time)
        .sum();
    cpu_time(router.pid()) + cpu_time(jm.pid()) + workers + cpu_time(std::process::id())
}

/// One GET /metrics, body read to the end.
fn scrape(addr: &str) -> std::io::Result<usize> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    Ok(body.len())
}
