//! How results and status are shown: plain text for people, `--json` for
//! programs.

use emq_client::{ClientError, JobOutput, JobStatus, Value};
use serde_json::json;

use crate::Exit;

fn is_exec_output(v: &Value) -> bool {
    v.get("stdout").is_some() && v.get("stderr").is_some() && v.get("exit_code").is_some()
}

/// Print a job's result; returns the exit code. A program's result prints its
/// output as-is and passes its exit code through.
pub(crate) fn result(r: Result<JobOutput, ClientError>, as_json: bool) -> u8 {
    match r {
        Ok(out) => {
            if as_json {
                println!("{}", json!({"id": out.id.0, "outcome": "ok", "value": out.value}));
            } else if is_exec_output(&out.value) {
                print!("{}", out.value["stdout"].as_str().unwrap_or(""));
                eprint!("{}", out.value["stderr"].as_str().unwrap_or(""));
            } else {
                print_value(&out.value);
            }
            Exit::Ok as u8
        }
        Err(ClientError::JobFailed {
            outcome,
            message,
            value,
        }) => {
            if as_json {
                println!(
                    "{}",
                    json!({"outcome": outcome.as_str(), "error": message, "value": value})
                );
            } else if is_exec_output(&value) {
                print!("{}", value["stdout"].as_str().unwrap_or(""));
                eprint!("{}", value["stderr"].as_str().unwrap_or(""));
                eprintln!("emq-cli: {message}");
            } else {
                eprintln!("emq-cli: job {}: {message}", outcome.as_str());
            }
            match (value["exit_code"].as_i64(), value["signal"].as_i64()) {
                (Some(c), _) if (1..=255).contains(&c) => c as u8,
                (_, Some(s)) => (128 + s).min(255) as u8,
                _ => Exit::JobFailed as u8,
            }
        }
        Err(e) => {
            if as_json {
                println!("{}", json!({"outcome": "error", "error": e.to_string()}));
            } else {
                eprintln!("emq-cli: {e}");
            }
            match e {
                ClientError::Unreachable { .. } => Exit::Unreachable as u8,
                ClientError::Timeout(_) => Exit::Timeout as u8,
                _ => Exit::JobFailed as u8,
            }
        }
    }
}

/// A JSON value as table text (Value's Display ignores width and alignment).
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn print_value(v: &Value) {
    match v {
        Value::String(s) => println!("{s}"),
        Value::Null => {}
        other => println!("{}", serde_json::to_string_pretty(other).unwrap_or_default()),
    }
}

pub(crate) fn job_status(s: &JobStatus, as_json: bool) {
    let detail = serde_json::to_value(&s.detail).unwrap_or_default();
    if as_json {
        let result = match &s.result {
            Some(Ok(o)) => json!({"outcome": "ok", "value": o.value}),
            Some(Err(e)) => json!({"error": e.to_string()}),
            None => Value::Null,
        };
        println!(
            "{}",
            json!({"id": s.id.0, "state": s.state, "detail": detail, "result": result})
        );
        return;
    }
    println!("{}  {}", s.id, s.state);
    if let Some(obj) = detail.as_object() {
        for (k, v) in obj {
            if k != "log" && !v.is_null() {
                println!("  {k}: {}", v.as_str().map_or_else(|| v.to_string(), str::to_string));
            }
        }
        if let Some(log) = obj.get("log").and_then(Value::as_array) {
            println!("  log:");
            for entry in log {
                println!(
                    "    {}  {:<10} {}",
                    entry["time"].as_str().unwrap_or(""),
                    entry["status"].as_str().unwrap_or(""),
                    entry["message"].as_str().unwrap_or("")
                );
            }
        }
    }
    match &s.result {
        Some(Ok(o)) => println!("  result: {}", o.value),
        Some(Err(e)) => println!("  error: {e}"),
        None => {}
    }
}

pub(crate) fn router_status(v: &Value, as_json: bool) {
    if as_json {
        println!("{v}");
        return;
    }
    println!(
        "{:<24} {:>9} {:>9} {:>10}  JOBMANAGERS",
        "QUEUE", "WAITING", "RUNNING", "PROCESSED"
    );
    if let Some(queues) = v["queues"].as_object() {
        for (name, q) in queues {
            let n = q["jobmanagers"].as_array().map_or(0, Vec::len);
            println!(
                "{name:<24} {:>9} {:>9} {:>10}  {n}",
                text(&q["waiting"]),
                text(&q["running"]),
                text(&q["processed"])
            );
        }
    }
    println!();
    workers(v, false);
    println!();
    println!(
        "waiting in all: {}   results kept: {}   uptime: {}s",
        v["waiting_total"], v["results_kept"], v["uptime_s"]
    );
}

pub(crate) fn workers(v: &Value, as_json: bool) {
    if as_json {
        println!("{v}");
        return;
    }
    println!(
        "{:<38} {:<13} {:>5} {:>7} {:>9}  QUEUES",
        "JOBMANAGER", "STATE", "SLOTS", "RUNNING", "PROCESSED"
    );
    if let Some(jms) = v["jobmanagers"].as_object() {
        for (id, jm) in jms {
            let queues: Vec<String> = jm["queues"]
                .as_array()
                .map(|qs| {
                    qs.iter()
                        .map(|q| format!("{}:{}", q[0], q[1].as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            let state = jm["state"]
                .as_str()
                .unwrap_or(if jm["kind"] == "eventmq" { "(eventmq)" } else { "?" });
            println!(
                "{id:<38} {state:<13} {:>5} {:>7} {:>9}  {}",
                text(&jm["slots"]),
                text(&jm["running"]),
                text(&jm["processed"]),
                queues.join(",")
            );
        }
    }
}

pub(crate) fn dead(v: &Value, as_json: bool) {
    if as_json {
        println!("{v}");
        return;
    }
    let list = v["dead"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no dead-lettered jobs");
        return;
    }
    println!("{:<38} {:<16} {:>8}  LAST", "JOB", "QUEUE", "ATTEMPTS");
    for d in list {
        println!(
            "{:<38} {:<16} {:>8}  {}",
            text(&d["id"]),
            text(&d["queue"]),
            text(&d["attempts"]),
            d["last"].as_str().unwrap_or("")
        );
    }
}
