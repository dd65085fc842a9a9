//! `emq-cli bulk`: one job per line, pipelined with a bounded window, with a
//! progress bar on a terminal and a summary at the end.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::Args;
use emq_client::{Job, JobId, JobIds, Value};
use indicatif::{ProgressBar, ProgressStyle};

use super::{secs, JobOpts};
use crate::conn::{ClientConn, Common};
use crate::exit::{Exit, Failure};
use crate::output::{shown, ResultOut};
use crate::Cli;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// `bulk`'s arguments.
#[derive(Args, Debug)]
pub struct BulkArgs {
    /// File with one job per line: a JSON object {"handler", "args",
    /// "kwargs", "queue", "timeout", "retries"} or else a shell command;
    /// blank lines and lines starting with `#` are skipped. `-` or nothing
    /// reads stdin.
    pub file: Option<String>,
    /// How each job is sent (what a line sets wins).
    #[command(flatten)]
    pub opts: JobOpts,
    /// Most jobs in flight at once.
    #[arg(long, default_value_t = 500)]
    pub window: usize,
    /// Give up on a job after this many seconds without any result arriving.
    #[arg(long, default_value_t = 60.0)]
    pub idle_timeout: f64,
    /// The router's client endpoint.
    #[command(flatten)]
    pub client: ClientConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// Turn one input line into a job; what the line sets wins over `opts`.
fn parse_line(line: &str, opts: &JobOpts) -> Result<Job, String> {
    if !line.trim_start().starts_with('{') {
        return opts.apply(Job::exec(["sh", "-c", line])).map_err(|f| f.message);
    }
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let handler = v["handler"].as_str().ok_or("missing \"handler\"")?;
    let mut job = opts.apply(Job::new(handler)).map_err(|f| f.message)?;
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
        job = job.timeout(secs("timeout", t).map_err(|f| f.message)?);
    }
    if let Some(r) = v["retries"].as_u64() {
        job = job.retries(u32::try_from(r).map_err(|_| "retries out of range")?);
    }
    Ok(job)
}

/// The input lines: the file's, or stdin's.
fn read_lines(file: Option<&str>) -> Result<Vec<String>, Failure> {
    match file {
        None | Some("-") => std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|e| Failure::usage(format!("cannot read stdin: {e}"))),
        Some(path) => std::fs::read_to_string(path)
            .map(|text| text.lines().map(str::to_string).collect())
            .map_err(|e| Failure::usage(format!("cannot read {path}: {e}"))),
    }
}

/// Send every job, print each failure (or, with `--json`, every result as
/// a line) and a summary.
pub fn run(cli: &Cli, args: &BulkArgs) -> Result<u8, Failure> {
    let as_json = cli.json;
    let idle_timeout = secs("--idle-timeout", args.idle_timeout)?;
    let lines = read_lines(args.file.as_deref())?;
    let mut jobs = Vec::new();
    let mut ids = JobIds::new();
    let mut line_of: HashMap<JobId, usize> = HashMap::default();
    let mut bad = 0usize;
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match parse_line(line, &args.opts) {
            Ok(job) => {
                let id = ids.next().expect("JobIds never ends");
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
    let conn = cli.conn.resolve(Some(&args.client), None, &args.common)?;
    let mut client = conn.client()?;
    let started = Instant::now();
    let (mut ok, mut failed) = (0usize, 0usize);
    let bar = (std::io::stderr().is_terminal() && !as_json).then(|| {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template("[{bar:30}] {pos}/{len}  {msg}  {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("#>."),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut stdout = std::io::stdout().lock();
    client.submit_many(jobs, args.window, idle_timeout, |id, r| {
        let line = line_of.get(&id).copied().unwrap_or(0);
        let record = ResultOut::of(&id.0, r).map(|mut out| {
            out.line = Some(line);
            out
        });
        match &record {
            Ok(out) if out.outcome.is_ok() => ok += 1,
            _ => failed += 1,
        }
        if as_json {
            let rec = match record {
                Ok(out) => serde_json::to_string(&out),
                Err(f) => serde_json::to_string(&serde_json::json!({
                    "line": line,
                    "id": id.0,
                    "error": {"kind": f.exit.kind(), "message": f.message},
                })),
            };
            let _ = writeln!(stdout, "{}", rec.unwrap_or_default());
        } else {
            let message = match &record {
                Ok(out) if out.outcome.is_ok() => None,
                Ok(out) => Some(format!("{}: {}", out.outcome, out.error.as_deref().unwrap_or(""))),
                Err(f) => Some(f.message.clone()),
            };
            if let Some(message) = message {
                let text = format!("emq-cli: line {line} ({id}): {}", shown(&message));
                match &bar {
                    Some(bar) => bar.println(text),
                    None => eprintln!("{text}"),
                }
            }
        }
        if let Some(bar) = &bar {
            bar.inc(1);
            bar.set_message(format!("ok {ok}  failed {failed}"));
        }
    })?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let elapsed = started.elapsed();
    let rate = (ok + failed) as f64 / elapsed.as_secs_f64().max(1e-9);
    let unparseable = if bad > 0 {
        format!(", {bad} unparseable lines")
    } else {
        String::new()
    };
    let summary = format!(
        "{total} jobs: {ok} ok, {failed} failed{unparseable} in {:.2}s ({rate:.0} jobs/s)",
        elapsed.as_secs_f64()
    );
    if as_json {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    // Failed jobs say more than lines that could not be read.
    let exit = match (failed, bad) {
        (0, 0) => Exit::Ok,
        (0, _) => Exit::Usage,
        _ => Exit::JobFailed,
    };
    Ok(exit.code())
}
