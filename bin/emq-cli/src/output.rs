//! How answers are shown: plain text and tables for people, one documented
//! JSON shape per kind of answer for programs (`--json`; README "JSON
//! output"). Everything a peer or a job controls is escaped before it is
//! shown as text ([`emq_client::printable`]).

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use emq_client::views::JobDetail;
use emq_client::{ClientError, JobOutput, JobState, JobStatus, Outcome, Value};
use serde::Serialize;

use crate::exit::{Exit, Failure};

/// Text a peer or a job controls, safe on a terminal.
pub fn shown(text: &str) -> String {
    emq_client::printable(text).into_owned()
}

/// A job's result: `send --wait`, `result`, each line of `bulk` (with
/// `line`), and `status ID`'s `result`.
#[derive(Debug, Serialize)]
pub struct ResultOut {
    /// The job.
    pub id: String,
    /// How it ended: ok, failed, crashed, timeout, unknown-handler,
    /// bad-request, cancelled.
    pub outcome: Outcome,
    /// What it returned (or left, when it failed).
    pub value: Value,
    /// Why it failed; null when it succeeded.
    pub error: Option<String>,
    /// The input line (`bulk` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl ResultOut {
    /// The result of job `id`, or the failure that is not a job's outcome
    /// (no answer in time, router unreachable, ...).
    pub fn of(id: &str, r: Result<JobOutput, ClientError>) -> Result<ResultOut, Failure> {
        let (outcome, value, error) = match r {
            Ok(out) => (Outcome::Ok, out.value, None),
            Err(ClientError::JobFailed {
                outcome,
                message,
                value,
            }) => (outcome, value, Some(message)),
            Err(ClientError::UnknownHandler { handler, message }) => (
                Outcome::UnknownHandler,
                serde_json::json!({ "handler": handler }),
                Some(message),
            ),
            Err(other) => return Err(Failure::from(other).about(id)),
        };
        Ok(ResultOut {
            id: id.to_string(),
            outcome,
            value,
            error,
            line: None,
        })
    }

    /// Print it; returns the exit code: 0, the program's own code for a
    /// program's result, else 1 for a failure.
    pub fn print(&self, as_json: bool) -> u8 {
        if as_json {
            print_json(self);
        } else {
            let exec = is_exec_output(&self.value);
            if exec {
                print!("{}", self.value["stdout"].as_str().unwrap_or(""));
                eprint!("{}", self.value["stderr"].as_str().unwrap_or(""));
            }
            match (&self.error, exec) {
                (None, false) => print_value(&self.value),
                (None, true) => {}
                (Some(e), true) => eprintln!("emq-cli: {}", shown(e)),
                (Some(_), false) if self.outcome == Outcome::UnknownHandler => eprintln!(
                    "emq-cli: no handler {:?} on the jobmanager",
                    shown(self.value["handler"].as_str().unwrap_or("?"))
                ),
                (Some(e), false) => eprintln!("emq-cli: job {}: {}", self.outcome, shown(e)),
            }
        }
        self.exit_code()
    }

    fn exit_code(&self) -> u8 {
        if self.outcome == Outcome::Ok {
            return Exit::Ok.code();
        }
        match (self.value["exit_code"].as_i64(), self.value["signal"].as_i64()) {
            (Some(c), _) if is_exec_output(&self.value) && (1..=255).contains(&c) => c as u8,
            (_, Some(s)) if is_exec_output(&self.value) => (128 + s).clamp(129, 255) as u8,
            _ => Exit::JobFailed.code(),
        }
    }
}

/// The output of the `emq.exec` built-in.
fn is_exec_output(v: &Value) -> bool {
    v.get("stdout").is_some() && v.get("stderr").is_some() && v.get("exit_code").is_some()
}

/// A value for people: strings as they are, the rest as pretty JSON.
fn print_value(v: &Value) {
    match v {
        Value::String(s) => println!("{s}"),
        Value::Null => {}
        other => println!("{}", serde_json::to_string_pretty(other).unwrap_or_default()),
    }
}

/// One JSON document on its own line.
pub fn print_json(v: &impl Serialize) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

/// `send` without `--wait`: the job's id and where it is.
#[derive(Debug, Serialize)]
pub struct Submitted {
    /// The job (for a deduplicated submission, the live job of its key).
    pub id: String,
    /// QUEUED, ACCEPTED for a guaranteed job (journaled), SCHEDULED for a
    /// delayed one; a deduplicated submission says its job's state as
    /// submitted (QUEUED).
    pub state: JobState,
    /// The submission made no job: a job of its `unique` key lives (`id`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deduplicated: bool,
    /// The waiting job of its `coalesce` key it replaced (now SUPERSEDED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
}

/// `status ID` and `cancel ID`: a job's state, details and result.
#[derive(Debug, Serialize)]
pub struct JobStatusOut {
    /// The job.
    pub id: String,
    /// Where it is.
    pub state: JobState,
    /// Its queue, attempts and transition log.
    pub detail: JobDetail,
    /// Its result, once it has one.
    pub result: Option<ResultOut>,
}

impl JobStatusOut {
    /// From the router's answer.
    pub fn of(status: JobStatus) -> Result<JobStatusOut, Failure> {
        let id = status.id.0.clone();
        let result = match status.result {
            Some(r) => Some(ResultOut::of(&id, r)?),
            None => None,
        };
        Ok(JobStatusOut {
            id,
            state: status.state,
            detail: status.detail,
            result,
        })
    }

    /// Print it for people or as JSON.
    pub fn print(&self, as_json: bool) {
        if as_json {
            return print_json(self);
        }
        println!("{}  {}", shown(&self.id), self.state);
        let d = &self.detail;
        println!("  queue: {}", shown(&d.queue));
        if let Some(jm) = &d.jobmanager {
            println!("  jobmanager: {}", shown(jm));
        }
        if let (Some(a), Some(m)) = (d.attempts, d.max_attempts) {
            println!("  attempts: {a} of {m}");
        }
        if let Some(k) = &d.key {
            println!("  key: {}", shown(k));
        }
        if let Some(t) = &d.not_before {
            println!("  not before: {t}");
        }
        if let Some(t) = &d.expires {
            println!("  expires: {t}");
        }
        if d.guaranteed {
            println!("  guaranteed: journaled, retried, dead-lettered past its attempts");
        }
        if !d.log.is_empty() {
            println!("  log:");
            for e in &d.log {
                println!("    {}  {:<10} {}", e.time, e.status.as_str(), shown(&e.message));
            }
        }
        match &self.result {
            Some(r) if r.outcome == Outcome::Ok => println!("  result: {}", r.value),
            Some(r) => println!(
                "  {}: {}",
                r.outcome,
                shown(r.error.as_deref().unwrap_or("(no message)"))
            ),
            None => {}
        }
    }
}

/// A table for people: no borders, numbers right-aligned.
pub fn table(header: &[&str], right_aligned: &[usize]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, 2));
        if right_aligned.contains(&i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// Print a table, trimming the padding of the last column.
pub fn print_table(t: &Table) {
    for line in t.to_string().lines() {
        println!("{}", line.trim_end());
    }
}
