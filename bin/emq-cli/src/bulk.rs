//! `emq-cli bulk`: one job per line, pipelined with a bounded window, with a
//! progress line on a terminal and a summary at the end.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use emq_client::{Client, Job, JobId, Value};
use serde_json::json;

use crate::{secs, BulkArgs, Exit, JobOpts};

/// Turn one input line into a job; what the line sets wins over `opts`.
fn parse_line(line: &str, opts: &JobOpts) -> anyhow::Result<Job> {
    if !line.trim_start().starts_with('{') {
        return opts.apply(Job::exec(["sh", "-c", line]));
    }
    let v: Value = serde_json::from_str(line)?;
    let handler = v["handler"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("missing \"handler\""))?;
    let mut job = opts.apply(Job::new(handler))?;
    match &v["args"] {
        Value::Null => {}
        Value::Array(a) => job = job.args(a.iter().cloned()),
        one => job = job.arg(one.clone()),
    }
    if let Some(k) = v["kwargs"].as_object() {
        for (key, val) in k {
            job = job.kwarg(key.clone(), val.clone());
        }
    }
    if let Some(q) = v["queue"].as_str() {
        job = job.queue(q);
    }
    if let Some(t) = v["timeout"].as_f64() {
        job = job.timeout(secs(t)?);
    }
    if let Some(r) = v["retries"].as_u64() {
        job = job.retries(r as u32);
    }
    Ok(job)
}

pub(crate) fn run(as_json: bool, mut client: Client, args: &BulkArgs) -> anyhow::Result<u8> {
    let lines: Vec<String> = match args.file.as_deref() {
        None | Some("-") => std::io::stdin().lock().lines().collect::<Result<_, _>>()?,
        Some(path) => std::fs::read_to_string(path)?.lines().map(str::to_string).collect(),
    };
    let mut jobs = Vec::new();
    let mut line_of: HashMap<JobId, usize> = HashMap::new();
    let mut bad = 0usize;
    for (n, line) in lines.iter().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match parse_line(line, &args.opts) {
            Ok(job) => {
                let id = JobId::new();
                line_of.insert(id.clone(), n + 1);
                jobs.push(job.with_id(id));
            }
            Err(e) => {
                bad += 1;
                eprintln!("emq-cli: line {}: {e}", n + 1);
            }
        }
    }
    let total = jobs.len();
    let started = Instant::now();
    let (mut ok, mut failed) = (0usize, 0usize);
    let tty = std::io::stderr().is_terminal() && !as_json;
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    let mut stdout = std::io::stdout().lock();
    client.submit_many(jobs, args.window, secs(args.idle_timeout)?, |id, r| {
        let line = line_of.get(&id).copied().unwrap_or(0);
        match &r {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
        if as_json {
            let rec = match r {
                Ok(o) => json!({"line": line, "id": id.0, "outcome": "ok", "value": o.value}),
                Err(e) => json!({"line": line, "id": id.0, "outcome": "error", "error": e.to_string()}),
            };
            let _ = writeln!(stdout, "{rec}");
        } else if let Err(e) = r {
            eprintln!("{}emq-cli: line {line} ({id}): {e}", if tty { "\r\x1b[K" } else { "" });
        }
        if tty && last_draw.elapsed() >= Duration::from_millis(100) {
            last_draw = Instant::now();
            draw(ok + failed, total, ok, failed, started.elapsed());
        }
    })?;
    let elapsed = started.elapsed();
    if tty {
        draw(ok + failed, total, ok, failed, elapsed);
        eprintln!();
    }
    let rate = (ok + failed) as f64 / elapsed.as_secs_f64().max(1e-9);
    let summary = format!(
        "{total} jobs: {ok} ok, {failed} failed{} in {:.2}s ({rate:.0} jobs/s)",
        if bad > 0 {
            format!(", {bad} unparseable lines")
        } else {
            String::new()
        },
        elapsed.as_secs_f64()
    );
    if as_json {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    Ok(if failed == 0 && bad == 0 {
        Exit::Ok
    } else {
        Exit::JobFailed
    } as u8)
}

fn draw(done: usize, total: usize, ok: usize, failed: usize, elapsed: Duration) {
    let width = 30;
    let filled = (done * width).checked_div(total).unwrap_or(width);
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    eprint!(
        "\r\x1b[K[{}{}] {done}/{total}  ok {ok}  failed {failed}  {rate:.0} jobs/s",
        "#".repeat(filled),
        ".".repeat(width - filled)
    );
}
