//! High availability: two routers on one Postgres journal (a private cluster
//! the test makes), one active by a lease with a fencing epoch, the other
//! standing by with its endpoints unbound; jobmanagers and clients are given
//! both and follow the active one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use emq_client::{Client, Job, JobId};
use emq_tests::netbed::{Host, NetBed};
use emq_tests::postgres::{HaRouter, PgCluster, RoleLine, SUPERUSER};
use emq_tests::{wait_until, JobManagerProc, Scratch};

/// Router flags: fast heartbeats; a 2 s lease.
const ROUTER: &[&str] = &["--heartbeat-ms", "100", "--liveness-ms", "600", "--lease-ms", "2000"];

fn unix_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// Each job appends `ID START_NS` to `runs` when it starts.
fn recorded_job(runs: &Path) -> Job {
    Job::exec([
        "sh".to_string(),
        "-c".to_string(),
        format!("echo $EMQ_JOB_ID $(date +%s%N) >> '{}'", runs.display()),
    ])
    .guarantee(true)
}

/// How many runs have started so far.
fn started(runs: &Path) -> usize {
    std::fs::read_to_string(runs).map_or(0, |t| t.lines().count())
}

/// Each job's run start times (unix ns).
fn runs(path: &Path) -> HashMap<String, Vec<u128>> {
    let mut out: HashMap<String, Vec<u128>> = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        if let Some((id, at)) = line.split_once(' ') {
            out.entry(id.to_string()).or_default().push(at.parse().unwrap_or(0));
        }
    }
    out
}

/// What a streaming client saw: each job's result (ok or not) and when it
/// arrived (unix ns).
type Results = Arc<Mutex<HashMap<String, (bool, u128)>>>;

/// Stream `n` guaranteed jobs through `frontends` (a window of 100) on a
/// thread (inside `host` of a test bed, if given); its results land in the
/// map returned.
fn stream_from(
    host: Option<Host>,
    frontends: Vec<String>,
    runs: &Path,
    n: usize,
) -> (std::thread::JoinHandle<Result<(), String>>, Results) {
    let results: Results = Arc::default();
    let seen = results.clone();
    let job = recorded_job(runs);
    let thread = std::thread::spawn(move || {
        let run = move || {
            let mut client = Client::connect(&frontends).map_err(|e| e.to_string())?;
            let jobs = (0..n).map(|_| job.clone().with_id(JobId::new()));
            client
                .submit_many(jobs, 100, Duration::from_secs(60), |id, r| {
                    seen.lock().unwrap().insert(id.0, (r.is_ok(), unix_ns()));
                })
                .map_err(|e| e.to_string())
        };
        match host {
            Some(h) => h.within(run),
            None => run(),
        }
    });
    (thread, results)
}

/// [`stream_from`] this machine's loopback.
fn stream(frontends: Vec<String>, runs: &Path, n: usize) -> (std::thread::JoinHandle<Result<(), String>>, Results) {
    stream_from(None, frontends, runs, n)
}

/// Every job ended ok, ran, and no run started after its result had
/// reached the client. Returns how many ran twice.
fn check_runs(results: &Results, runs_file: &Path, n: usize) -> usize {
    let results = results.lock().unwrap();
    assert_eq!(results.len(), n, "every job has its result");
    let failed = results.values().filter(|(ok, _)| !ok).count();
    assert_eq!(failed, 0, "every job ended ok");
    let runs = runs(runs_file);
    let mut twice = 0;
    for (id, (_, delivered)) in results.iter() {
        let starts = runs.get(id).unwrap_or_else(|| panic!("job {id} ran"));
        if starts.len() > 1 {
            twice += 1;
        }
        let late: Vec<_> = starts.iter().filter(|s| *s > delivered).collect();
        assert!(
            late.is_empty(),
            "job {id} ran again after its result reached the client: runs started at {starts:?}, result at {delivered}"
        );
    }
    twice
}

/// The first of `routers` to go active: its epoch and when, and which.
fn first_active(routers: [&HaRouter; 2], within: Duration) -> Option<((u64, Instant), usize)> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for (i, r) in routers.iter().enumerate() {
            if let Some(RoleLine::Active { epoch, at }) = r.next_role(Duration::from_millis(5)) {
                return Some(((epoch, at), i));
            }
        }
    }
    None
}

fn both(routers: [&HaRouter; 2], pick: impl Fn(&HaRouter) -> &str) -> String {
    format!("{},{}", pick(routers[0]), pick(routers[1]))
}

/// kill -9 the active router ten times in a row, restarting it as the new
/// standby each time, while a client streams guaranteed jobs through two
/// jobmanagers: each time the standby is active within 5 s at the next
/// epoch, every acknowledged job finishes ok, and none whose result reached
/// its client runs again.
#[test]
fn ten_kills_of_the_active_router_lose_nothing() {
    ten_kills(None);
}

/// The same across hosts: each router, the database, and the jobmanagers
/// with the client, in hosts of a test bed (network namespaces), the routers
/// reaching Postgres over TCP.
#[test]
fn ten_kills_across_hosts_lose_nothing() {
    let bed = match NetBed::new(&["router-a", "router-b", "db", "workers"]) {
        Ok(bed) => bed,
        Err(why) => {
            println!("skipped: no multi-host test bed here: {why}");
            return;
        }
    };
    ten_kills(Some(&bed));
}

fn ten_kills(bed: Option<&NetBed>) {
    let pg = match bed {
        Some(b) => PgCluster::start_in(b.host("db")),
        None => PgCluster::start(),
    };
    let url = match bed {
        Some(_) => pg.tcp_url(SUPERUSER),
        None => pg.url(SUPERUSER),
    };
    let start = |name: &str| match bed {
        Some(b) => HaRouter::start_in(b.host(&format!("router-{name}")), name, &url, ROUTER),
        None => HaRouter::start(name, &url, ROUTER),
    };
    let mut active = start("a");
    let (mut epoch, _) = active
        .wait_active(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("a is active; its log:\n{}\npostgres:\n{}", active.log_text(), pg.log()));
    let mut standby = start("b");
    let backends = both([&active, &standby], |r| &r.backend);
    let jm_flags = ["-J", "2", "--liveness-ms", "600", "--heartbeat-ms", "100"];
    let workers = bed.map(|b| b.host("workers").clone());
    let jm = || match &workers {
        Some(h) => JobManagerProc::start_in(h, &backends, &jm_flags, &[]),
        None => JobManagerProc::start_at(&backends, &jm_flags),
    };
    let _jms = [jm(), jm()];
    let dir = Scratch::new();
    let runs_file = dir.path("runs");
    let n = 1500;
    let frontends = vec![active.frontend.clone(), standby.frontend.clone()];
    let (client, results) = stream_from(workers.clone(), frontends, &runs_file, n);
    let lines = || started(&runs_file);
    let mut failovers = Vec::new();
    for kill in 1..=10 {
        let before = lines();
        assert!(
            wait_until(Duration::from_secs(30), || lines() >= before + 60),
            "jobs run under {} (kill {kill}): {} ran",
            active.name,
            lines()
        );
        active.proc.kill9();
        let killed_at = Instant::now();
        let restarted = HaRouter::restart(&active, &url, ROUTER);
        // Either may take over: the standby, or the killed one back.
        let ((new_epoch, at), which) =
            first_active([&standby, &restarted], Duration::from_secs(10)).unwrap_or_else(|| {
                panic!(
                    "nobody took over (kill {kill}); {}'s log:\n{}\nsessions:\n{}",
                    standby.name,
                    standby.log_text(),
                    pg.activity()
                )
            });
        let took = at - killed_at;
        assert!(
            took < Duration::from_secs(5),
            "failover {kill} took {took:?} (router {which} of standby, restarted); the standby's log:\n{}\nthe \
             restarted one's:\n{}\nsessions:\n{}",
            standby.log_text(),
            restarted.log_text(),
            pg.activity()
        );
        assert_eq!(new_epoch, epoch + 1, "one takeover, one epoch");
        failovers.push(took);
        epoch = new_epoch;
        if which == 0 {
            active = std::mem::replace(&mut standby, restarted);
        } else {
            active = restarted;
        }
        assert_eq!(pg.lease(), (new_epoch as i64, Some(active.name.clone())));
    }
    client
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the client's stream: {e}"));
    let twice = check_runs(&results, &runs_file, n);
    failovers.sort();
    let ms: Vec<u128> = failovers.iter().map(|d| d.as_millis()).collect();
    println!(
        "10 failovers{}, kill -9 to the standby active (ms): {ms:?}; median {} ms; {twice} of {n} jobs ran twice \
         (running at a kill)",
        if bed.is_some() { " across hosts" } else { "" },
        ms[ms.len() / 2]
    );
    // At-least-once at a kill: only jobs running then may run again.
    assert!(twice <= 10 * 8, "{twice} jobs ran twice");
}

/// Postgres restarts (fast shutdown) under a stream of guaranteed jobs:
/// acknowledgements pause while it is down and nothing acknowledged is lost.
#[test]
fn a_postgres_restart_under_load_loses_nothing() {
    let mut pg = PgCluster::start();
    let url = pg.url(SUPERUSER);
    let a = HaRouter::start("a", &url, ROUTER);
    a.wait_active(Duration::from_secs(20)).expect("a is active");
    let b = HaRouter::start("b", &url, ROUTER);
    let _jm = JobManagerProc::start_at(&both([&a, &b], |r| &r.backend), &["-J", "4"]);
    let dir = Scratch::new();
    let runs_file = dir.path("runs");
    let n = 1000;
    let (client, results) = stream(vec![a.frontend.clone(), b.frontend.clone()], &runs_file, n);
    let lines = || started(&runs_file);
    assert!(wait_until(Duration::from_secs(30), || lines() >= 200), "jobs run");
    pg.stop();
    let down = Instant::now();
    pg.start_again();
    let outage = down.elapsed();
    client
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the client's stream: {e}"));
    let twice = check_runs(&results, &runs_file, n);
    let log = format!("{}{}", a.log_text(), b.log_text());
    assert!(
        log.contains("unreachable"),
        "the active router noticed the outage:\n{log}"
    );
    println!("postgres down for {outage:?}: all {n} jobs ok, {twice} ran twice");
}

/// The active router is cut off from Postgres (its role may no longer log
/// in and its sessions are ended): it stops acting within its lease, and
/// the standby goes active only after that: never two active routers.
#[test]
fn a_router_cut_off_from_postgres_steps_down_before_the_standby_takes_over() {
    let pg = PgCluster::start();
    pg.sql("CREATE ROLE router_a LOGIN SUPERUSER; CREATE ROLE router_b LOGIN SUPERUSER;");
    let a = HaRouter::start("a", &pg.url("router_a"), ROUTER);
    let (epoch, _) = a.wait_active(Duration::from_secs(20)).expect("a is active");
    let b = HaRouter::start("b", &pg.url("router_b"), ROUTER);
    let _jm = JobManagerProc::start_at(&both([&a, &b], |r| &r.backend), &["-J", "2"]);
    let dir = Scratch::new();
    let runs_file = dir.path("runs");
    let n = 600;
    let (client, results) = stream(vec![a.frontend.clone(), b.frontend.clone()], &runs_file, n);
    let lines = || started(&runs_file);
    assert!(wait_until(Duration::from_secs(30), || lines() >= 100), "jobs run");
    let cut_at = Instant::now();
    pg.sql(
        "ALTER ROLE router_a NOLOGIN; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'router_a';",
    );
    let stepped_down = match a.next_role(Duration::from_secs(10)) {
        Some(RoleLine::SteppedDown { at }) => at,
        Some(RoleLine::Active { .. }) => panic!("a went active again while cut off"),
        None => panic!("a did not step down; its log:\n{}", a.log_text()),
    };
    let (b_epoch, b_active) = b.wait_active(Duration::from_secs(10)).expect("b takes over");
    assert!(
        stepped_down < b_active,
        "a stepped down ({:?} after the cut) before b went active ({:?})",
        stepped_down - cut_at,
        b_active - cut_at
    );
    assert!(
        stepped_down - cut_at <= Duration::from_secs(2),
        "a stepped down within its lease: {:?}",
        stepped_down - cut_at
    );
    assert_eq!(b_epoch, epoch + 1);
    client
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the client's stream: {e}"));
    let twice = check_runs(&results, &runs_file, n);
    println!(
        "cut off: a stepped down {:?} after the cut, b active {:?} after it; all {n} jobs ok, {twice} ran twice",
        stepped_down - cut_at,
        b_active - cut_at
    );
}

/// An ordinary job (not guaranteed) lives only in the active router: when
/// that router dies, a client waiting for it hears "job lost" once it is
/// connected to the router that took over, not at its wait timeout.
#[test]
fn an_ordinary_job_is_lost_with_the_active_router_and_its_client_is_told() {
    let pg = PgCluster::start();
    let url = pg.url(SUPERUSER);
    let mut a = HaRouter::start("a", &url, ROUTER);
    a.wait_active(Duration::from_secs(20)).expect("a is active");
    let b = HaRouter::start("b", &url, ROUTER);
    let _jm = JobManagerProc::start_at(&both([&a, &b], |r| &r.backend), &["-J", "1"]);
    let dir = Scratch::new();
    let mark = dir.path("started");
    let mut cmd = std::process::Command::new(emq_tests::bin("emq-cli"));
    cmd.args(["--router", &both([&a, &b], |r| &r.frontend)])
        .args(["send", "--wait", "--wait-timeout", "60", "--", "sh", "-c"])
        .arg(format!("touch '{}'; sleep 8", mark.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut client = emq_tests::Proc::spawn(cmd, "emq-cli send --wait");
    assert!(wait_until(Duration::from_secs(20), || mark.exists()), "the job started");
    a.proc.kill9();
    let killed_at = Instant::now();
    b.wait_active(Duration::from_secs(10)).expect("b takes over");
    let status = client
        .wait_exit(Duration::from_secs(20))
        .expect("the client ends well before its 60 s wait");
    let waited = killed_at.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut client.child_mut().stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lost"), "{stderr}");
    println!("ordinary job lost with the active router: the client was told {waited:?} after the kill");
}

/// A journal a router of schema version 1 wrote (a job's record and body in
/// rows of their own) is migrated by today's router when it starts: the
/// jobs waiting in it run, each once.
#[test]
fn a_journal_of_schema_version_1_is_migrated_and_its_jobs_run() {
    let pg = PgCluster::start();
    let url = pg.url(SUPERUSER);
    let mut a = HaRouter::start("a", &url, ROUTER);
    a.wait_active(Duration::from_secs(20)).expect("a is active");
    let dir = Scratch::new();
    let runs_file = dir.path("runs");
    let job = recorded_job(&runs_file);
    let mut client = Client::connect(&[&a.frontend]).unwrap();
    // Guaranteed: each returns once journaled. No jobmanager yet.
    let ids: Vec<JobId> = (0..50).map(|_| client.submit(&job).unwrap()).collect();
    drop(client);
    a.proc.kill9();
    // Back to the layout of version 1.
    pg.sql(
        "INSERT INTO emq_journal SELECT 'records', key, record FROM emq_jobs WHERE record IS NOT NULL; \
         INSERT INTO emq_journal SELECT 'bodies', key, body FROM emq_jobs WHERE body IS NOT NULL; \
         DROP TABLE emq_jobs; UPDATE emq_schema SET version = 1;",
    );
    let count = |sql: &str| -> i64 { pg.client(SUPERUSER).unwrap().query_one(sql, &[]).unwrap().get(0) };
    assert_eq!(count("SELECT count(*) FROM emq_journal WHERE tbl = 'bodies'"), 50);

    let a = HaRouter::restart(&a, &url, ROUTER);
    a.wait_active(Duration::from_secs(20)).expect("a is active again");
    assert!(a.log_text().contains("schema version 1 -> 2"), "{}", a.log_text());
    assert_eq!(count("SELECT count(*) FROM emq_journal"), 0);
    let _jm = JobManagerProc::start_at(&a.backend, &["-J", "2"]);
    let mut client = Client::connect(&[&a.frontend]).unwrap();
    let finished = |client: &mut Client| {
        ids.iter().all(|id| {
            client
                .status(id, Duration::from_secs(5))
                .is_ok_and(|s| s.state == emq_client::JobState::Finished)
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), || finished(&mut client)),
        "the migrated jobs finish"
    );
    let ran = runs(&runs_file);
    assert_eq!(ran.len(), ids.len());
    assert!(ids.iter().all(|id| ran.get(&id.0).map(Vec::len) == Some(1)), "{ran:?}");
}
