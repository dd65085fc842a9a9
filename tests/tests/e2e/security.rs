//! Who may connect, and what hostile input gets: CURVE allowlists per
//! endpoint (keys made and managed with emq-cli), the connection limit, and
//! oversize and flooding peers refused while a legitimate client's jobs flow.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use emq_proto::{ErrorCode, Headers, JobCall, Message};
use emq_tests::{
    bin, emq_cli, run_with_deadline, wait_until, Dealer, JobManagerProc, Output, Proc, RouterProc, Scratch, StderrLog,
};

const T: Duration = Duration::from_secs(30);

fn cli(args: &[&str]) -> Output {
    run_with_deadline(Command::new(bin("emq-cli")), args, None, T)
}

/// `emq-cli keygen DIR/NAME.key`; returns the key file.
fn keygen(dir: &Scratch, name: &str) -> String {
    let key = dir.arg(&format!("{name}.key"));
    let out = cli(&["keygen", &key]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim().len(), 40, "prints the Z85 public key: {out:?}");
    key
}

fn allow(list: &str, public: &str, name: &str) {
    let out = cli(&["allow", "add", list, public, "--name", name]);
    assert_eq!(out.code, Some(0), "{out:?}");
}

/// emq-cli against `r` with CURVE keys (`None`: no key at all).
fn secure_cli(r: &RouterProc, server: &str, key: Option<&str>, args: &[&str]) -> Output {
    let mut full = vec!["--connect-timeout", "3"];
    if let Some(key) = key {
        full.extend(["--server-key", server, "--key", key]);
    }
    full.extend_from_slice(args);
    emq_cli(r, &full, None, T)
}

const REJECTED: Option<i32> = Some(5);

#[test]
fn curve_allowlists_decide_who_submits_runs_jobs_and_administers() {
    let dir = Scratch::new();
    let router_key = keygen(&dir, "router");
    let server = format!("{router_key}.pub");
    let (client, jm, admin, stranger) = (
        keygen(&dir, "client"),
        keygen(&dir, "jm"),
        keygen(&dir, "admin"),
        keygen(&dir, "stranger"),
    );
    let (clients, jobmanagers, admins) = (
        dir.arg("clients.allow"),
        dir.arg("jobmanagers.allow"),
        dir.arg("admins.allow"),
    );
    allow(&clients, &format!("{client}.pub"), "web");
    allow(&jobmanagers, &format!("{jm}.pub"), "jm-1");
    allow(&admins, &format!("{admin}.pub"), "ops");
    let listed = cli(&["allow", "list", &clients]);
    assert!(listed.stdout.trim().ends_with(" web"), "{listed:?}");

    let r = RouterProc::start(&[
        "--heartbeat-ms",
        "100",
        "--liveness-ms",
        "1000",
        "--curve-key",
        &router_key,
    ]);
    let _jm = JobManagerProc::start(&r, &["-J", "1", "--server-key", &server, "--key", &jm]);

    // An allowed client submits and gets its result.
    let out = secure_cli(&r, &server, Some(&client), &["send", "--wait", "emq.echo", r#""hi""#]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "hi\n"), "{out:?}");

    // No key at all: refused, and told why.
    let out = secure_cli(&r, &server, None, &["send", "--wait", "emq.echo", r#""x""#]);
    assert_eq!(out.code, REJECTED, "{out:?}");
    assert!(out.stderr.contains("CURVE"), "{out:?}");
    // A key the router does not know: refused.
    let out = secure_cli(&r, &server, Some(&stranger), &["send", "--wait", "emq.echo", r#""x""#]);
    assert_eq!(out.code, REJECTED, "{out:?}");
    assert!(out.stderr.contains("refused our key"), "{out:?}");
    // The right own key, the wrong router key: refused.
    let out = secure_cli(
        &r,
        &format!("{stranger}.pub"),
        Some(&client),
        &["send", "emq.echo", "1"],
    );
    assert_eq!(out.code, REJECTED, "{out:?}");
    // A client key is no admin key, and admin keys are only for admin.
    let out = secure_cli(&r, &server, Some(&client), &["workers", "--json"]);
    assert_eq!(out.code, REJECTED, "{out:?}");
    let out = secure_cli(&r, &server, Some(&admin), &["send", "--wait", "emq.echo", r#""x""#]);
    assert_eq!(out.code, REJECTED, "{out:?}");
    let out = secure_cli(&r, &server, Some(&admin), &["workers", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");

    // A jobmanager with a key not on the jobmanager list gets no jobs...
    let mut cmd = Command::new(bin("emq-jobmanager"));
    cmd.args(["--router", &r.backend, "--heartbeat-ms", "100", "--liveness-ms", "1000"])
        .args(["-J", "1", "-Q", "late", "--server-key", &server, "--key", &stranger])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped());
    let mut late_jm = Proc::spawn(cmd, "emq-jobmanager");
    let log = StderrLog::capture(late_jm.child_mut());
    let out = secure_cli(
        &r,
        &server,
        Some(&client),
        &["send", "-q", "late", "emq.echo", r#""late""#],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let id = out.stdout.trim().to_string();
    assert!(
        wait_until(T, || log.text().contains("refused our key")),
        "the jobmanager reports its refusal: {}",
        log.text()
    );
    let out = secure_cli(&r, &server, Some(&client), &["status", &id]);
    assert!(out.stdout.contains("QUEUED"), "the job waits: {out:?}");
    let workers = secure_cli(&r, &server, Some(&admin), &["workers", "--json"]);
    let v: serde_json::Value = serde_json::from_str(workers.stdout.trim()).expect("JSON");
    let serving = v["connected_queues"]["late"].as_array().map_or(0, Vec::len);
    assert_eq!(serving, 0, "no jobmanager serves the queue: {workers:?}");

    // ...until its key is allowed: the router re-reads the list, the
    // jobmanager's next attempt gets in and runs the job.
    allow(&jobmanagers, &format!("{stranger}.pub"), "jm-late");
    let mut last = None;
    let done = wait_until(T, || {
        let out = secure_cli(&r, &server, Some(&client), &["result", &id]);
        let ok = out.code == Some(0) && out.stdout == "late\n";
        last = Some(out);
        ok
    });
    assert!(done, "{last:?}");

    // Revoking the client's key closes the door to new connections.
    let out = cli(&["allow", "remove", &clients, "web"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = secure_cli(&r, &server, Some(&client), &["send", "emq.echo", r#""x""#]);
    assert_eq!(out.code, REJECTED, "{out:?}");
}

#[test]
fn plain_client_cannot_reach_a_curve_router_through_the_library() {
    // The client crate reports the refusal as a rejection, not a timeout.
    let dir = Scratch::new();
    let router_key = keygen(&dir, "router");
    let r = RouterProc::start(&["--curve-key", &router_key]);
    let options = emq_client::ClientOptions {
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let mut c = emq_client::Client::connect_with(&[&r.frontend], options).unwrap();
    let err = c.submit(&emq_client::Job::new("emq.echo")).unwrap_err();
    assert!(matches!(err, emq_client::ClientError::Rejected(_)), "{err}");
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[test]
fn oversize_floods_and_excess_connections_are_refused_while_jobs_flow() {
    const LEGIT_JOBS: usize = 2_000;
    const MAX_CONNECTIONS: usize = 6;
    let r = RouterProc::start(&[
        "--heartbeat-ms",
        "100",
        "--liveness-ms",
        "1000",
        "--max-frame",
        "65536",
        "--max-message",
        "131072",
        "--max-waiting-per-queue",
        "100",
        "--max-connections",
        &MAX_CONNECTIONS.to_string(),
    ]);
    let _jm = JobManagerProc::start(&r, &["-J", "2", "--prefetch", "20"]);
    let frontend = r.frontend.clone();

    // The legitimate client: pipelined jobs, every result checked; a first
    // batch during the floods, a second once the connection limit is hit.
    let (batch_done, results) = std::sync::mpsc::channel();
    let (go_on, go) = std::sync::mpsc::channel::<()>();
    let legit = std::thread::spawn(move || {
        let mut client = emq_client::Client::connect(&[&frontend]).unwrap();
        for _batch in 0..2 {
            let jobs = (0..LEGIT_JOBS).map(|i| emq_client::Job::new("emq.echo").arg(i as u64));
            let mut ok = 0;
            client
                // A window under the queue's bound of 100 waiting jobs.
                .submit_many(jobs, 50, T, |_, r| {
                    if r.is_ok_and(|out| out.value.as_u64().is_some_and(|v| (v as usize) < LEGIT_JOBS)) {
                        ok += 1;
                    }
                })
                .unwrap();
            batch_done.send(ok).unwrap();
            if go.recv().is_err() {
                return;
            }
        }
    });

    let ctx = zmq::Context::new();
    let call = JobCall::new("emq.echo");
    // Oversize: each frame is 4x the limit.
    let big = Dealer::connect(&ctx, &r.frontend, Some("oversize"));
    let huge_body = vec![b'x'; 256 * 1024];
    // Flood: far more jobs than the queue may hold.
    let flood = Dealer::connect(&ctx, &r.frontend, Some("flood"));
    const OVERSIZE: usize = 100;
    const FLOOD: usize = 3_000;
    for i in 0..OVERSIZE {
        big.send_raw(vec![
            Vec::new(),
            b"eMQP/1.0".to_vec(),
            b"REQUEST".to_vec(),
            format!("big-{i}").into_bytes(),
            b"default".to_vec(),
            b"reply-requested".to_vec(),
            huge_body.clone(),
        ]);
    }
    for i in 0..FLOOD {
        flood.request(&format!("flood-{i}"), "nobody-serves-this", &call, Headers::default());
    }
    let count_errors = |d: &Dealer, code: ErrorCode, n: usize| {
        let mut seen = 0;
        while seen < n {
            match d.recv(T) {
                Some(env) if matches!(env.message, Message::Error { code: c, .. } if c == code) => seen += 1,
                Some(_) => {}
                None => break,
            }
        }
        seen
    };
    assert_eq!(count_errors(&big, ErrorCode::TooLarge, OVERSIZE), OVERSIZE);
    assert_eq!(count_errors(&flood, ErrorCode::QueueFull, FLOOD - 100), FLOOD - 100);
    assert_eq!(
        results.recv_timeout(T).unwrap(),
        LEGIT_JOBS,
        "every legitimate job ran, correctly"
    );

    // Fill the connection limit (the legitimate client, `big` and `flood`
    // hold three), each hog proven connected by an answer.
    let hogs: Vec<Dealer> = (0..MAX_CONNECTIONS - 3)
        .map(|i| {
            let hog = Dealer::connect(&ctx, &r.frontend, Some(&format!("hog-{i}")));
            hog.send(&Message::Status, "status");
            assert!(hog.recv(T).is_some(), "hog {i} is within the limit");
            hog
        })
        .collect();
    // One more is refused at its handshake, with a reason the client shows...
    let out = emq_cli(&r, &["--connect-timeout", "2", "send", "emq.noop"], None, T);
    assert_eq!(out.code, REJECTED, "{out:?}");
    assert!(out.stderr.contains("too many connections"), "{out:?}");
    // ...while connected clients keep working.
    go_on.send(()).unwrap();
    assert_eq!(results.recv_timeout(T).unwrap(), LEGIT_JOBS);
    drop(go_on);
    legit.join().unwrap();

    // Freed slots are usable again.
    drop(hogs);
    let mut last = None;
    assert!(
        wait_until(T, || {
            let out = emq_cli(
                &r,
                &["--connect-timeout", "2", "send", "--wait", "emq.echo", "1"],
                None,
                T,
            );
            let ok = out.code == Some(0);
            last = Some(out);
            ok
        }),
        "{last:?}"
    );
    let mut r = r;
    assert!(r.proc.is_running());
    let rss = rss_kib(r.proc.pid());
    assert!(rss < 256 * 1024, "router RSS {rss} KiB after the floods");
}

#[test]
fn keys_and_allowlists_reject_bad_input() {
    let dir = Scratch::new();
    let key = keygen(&dir, "k");
    // Never overwrites a key.
    let out = cli(&["keygen", &key]);
    assert_ne!(out.code, Some(0), "{out:?}");
    let list = dir.arg("list.allow");
    let out = cli(&["allow", "add", &list, "not-a-key"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    let out = cli(&["allow", "remove", &list, "nobody"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    // A router whose key file is only a public key refuses to start.
    let mut cmd = Command::new(bin("emq-router"));
    cmd.args(["--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*"])
        .args(["--admin", "tcp://127.0.0.1:*", "--no-journal", "--curve-key"])
        .arg(Path::new(&format!("{key}.pub")));
    let out = run_with_deadline(cmd, &[], None, T);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("secret-key"), "{out:?}");
}

/// A jobmanager of the user's own (examples/own-jobmanager, a crate outside
/// this workspace, built by scripts/test.sh) has CURVE with no ceremony,
/// takes the stock flags, and shares a queue with the stock jobmanager
/// without ever being sent a job it has no handler for.
#[test]
fn own_jobmanager_outside_the_workspace_speaks_curve_and_shares_a_queue() {
    let own = bin("own-jobmanager");
    let help = run_with_deadline(Command::new(&own), &["--help"], None, T);
    assert_eq!(help.code, Some(0), "{help:?}");
    for flag in ["--jobs", "--queue", "--config", "--server-key"] {
        assert!(help.stdout.contains(flag), "{flag} in {help:?}");
    }

    let dir = Scratch::new();
    let router_key = keygen(&dir, "router");
    let server = format!("{router_key}.pub");
    let (client, own_key, stock_key) = (keygen(&dir, "client"), keygen(&dir, "own"), keygen(&dir, "stock"));
    let (clients, jobmanagers) = (dir.arg("clients.allow"), dir.arg("jobmanagers.allow"));
    allow(&clients, &format!("{client}.pub"), "web");
    allow(&jobmanagers, &format!("{own_key}.pub"), "own");
    allow(&jobmanagers, &format!("{stock_key}.pub"), "stock");
    let r = RouterProc::start(&["--heartbeat-ms", "100", "--curve-key", &router_key]);

    let mut cmd = Command::new(&own);
    cmd.args([
        "-R",
        &r.backend,
        "-J",
        "2",
        "--heartbeat-ms",
        "100",
        "--server-key",
        &server,
        "--key",
        &own_key,
    ])
    .env("RUST_LOG", "info")
    .stderr(std::process::Stdio::piped());
    let mut own_jm = Proc::spawn(cmd, "own-jobmanager");
    let own_log = StderrLog::capture(own_jm.child_mut());
    let _stock = JobManagerProc::start(&r, &["-J", "2", "--server-key", &server, "--key", &stock_key]);
    assert!(wait_until(T, || {
        let out = secure_cli(
            &r,
            &server,
            Some(&client),
            &["send", "--wait", "myapp.tasks.add", "[1, 2]"],
        );
        out.code == Some(0)
    }));
    assert!(
        own_log.text().contains("handlers: emq.crash"),
        "it logs: {}",
        own_log.text()
    );
    assert!(own_log.text().contains("myapp.tasks.add"), "{}", own_log.text());

    // Both jobmanagers serve `default`; every add goes to the one that has it.
    for i in 0..20i64 {
        let out = secure_cli(
            &r,
            &server,
            Some(&client),
            &["send", "--wait", "myapp.tasks.add", &format!("[{i}, 100]")],
        );
        assert_eq!(
            (out.code, out.stdout.trim()),
            (Some(0), (i + 100).to_string().as_str()),
            "{out:?}"
        );
    }
    let out = secure_cli(
        &r,
        &server,
        Some(&client),
        &["send", "--wait", "myapp.tasks.greet", "--kwargs", r#"{"name": "emq"}"#],
    );
    assert_eq!(out.stdout.trim(), "hello, emq", "{out:?}");
}

#[test]
fn the_event_stream_admits_admin_keys_only() {
    let dir = Scratch::new();
    let router_key = keygen(&dir, "router");
    let server = format!("{router_key}.pub");
    let (client, admin) = (keygen(&dir, "client"), keygen(&dir, "admin"));
    allow(&dir.arg("clients.allow"), &format!("{client}.pub"), "web");
    allow(&dir.arg("admins.allow"), &format!("{admin}.pub"), "ops");
    let r = RouterProc::start(&["--curve-key", &router_key, "--events", "tcp://127.0.0.1:*"]);
    let watch = |key: Option<&str>| secure_cli(&r, &server, key, &["--json", "watch", "--count", "1", "--for", "20"]);
    // A client's key is refused at the handshake, and so is no key at all.
    for key in [Some(client.as_str()), None] {
        let out = watch(key);
        assert_eq!(out.code, REJECTED, "{key:?} must not read events: {out:?}");
    }
    // An admin key reads them: the jobmanager that joins is the first.
    std::thread::scope(|s| {
        let watcher = s.spawn(|| watch(Some(&admin)));
        let jm_key = keygen(&dir, "jm");
        allow(&dir.arg("jobmanagers.allow"), &format!("{jm_key}.pub"), "jm-1");
        let deadline = std::time::Instant::now() + T;
        let mut jms = Vec::new();
        // Until the watcher's subscription has taken hold, a joining
        // jobmanager may go unseen: start another until one is seen.
        while !watcher.is_finished() && std::time::Instant::now() < deadline {
            jms.push(JobManagerProc::start(
                &r,
                &["-J", "1", "--server-key", &server, "--key", &jm_key],
            ));
            std::thread::sleep(Duration::from_millis(500));
        }
        let out = watcher.join().unwrap();
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(out.stdout.contains("\"kind\":\"jobmanager.joined\""), "{out:?}");
    });
}
