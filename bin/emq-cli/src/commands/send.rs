//! `emq-cli send`: one job, a handler with JSON arguments or a program.

use clap::Args;
use emq_client::{ClientError, Job, JobState, Value};

use super::{secs, JobOpts};
use crate::conn::{ClientConn, Common};
use crate::exit::{Exit, Failure};
use crate::output::{print_json, ResultOut, Submitted};
use crate::Cli;

/// What a job calls: a handler with JSON arguments, or a program (`send`
/// and `schedule add` share these).
#[derive(Args, Debug)]
pub struct CallArgs {
    /// Handler to call (e.g. emq.echo); leave out when giving `-- PROGRAM`.
    pub handler: Option<String>,
    /// Its arguments as JSON: a list is several arguments, anything else
    /// one (`'[1, 2]'`, `'"text"'`, `'{"a": 1}'`).
    pub args: Option<String>,
    /// Keyword arguments as a JSON object.
    #[arg(long)]
    pub kwargs: Option<String>,
    /// A program and its arguments, run by the `emq.exec` built-in.
    #[arg(last = true, value_name = "PROGRAM")]
    pub program: Vec<String>,
}

/// `send`'s arguments.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// What the job calls.
    #[command(flatten)]
    pub call: CallArgs,
    /// How the job is sent.
    #[command(flatten)]
    pub opts: JobOpts,
    /// Wait for the result and print it; the exit code tells how it ended.
    #[arg(short, long)]
    pub wait: bool,
    /// Seconds to wait for the result with --wait.
    #[arg(long, default_value_t = 60.0)]
    pub wait_timeout: f64,
    /// The router's client endpoint.
    #[command(flatten)]
    pub client: ClientConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// JSON from the command line, or a usage failure naming it.
pub(crate) fn parse_json(what: &str, s: &str) -> Result<Value, Failure> {
    serde_json::from_str(s).map_err(|e| Failure::usage(format!("{what} is not JSON ({e}): {s}")))
}

impl CallArgs {
    /// The job calling what the arguments name, with default options.
    pub fn job(&self) -> Result<Job, Failure> {
        call_job(self)
    }
}

fn call_job(args: &CallArgs) -> Result<Job, Failure> {
    let mut job = match (&args.handler, args.program.is_empty()) {
        (None, false) => Job::exec(args.program.iter().cloned()),
        (Some(h), true) => Job::new(h.clone()),
        (Some(_), false) => return Err(Failure::usage("give either a handler or `-- PROGRAM ARGS`, not both")),
        (None, true) => {
            return Err(Failure::usage(
                "nothing to send: give a handler (e.g. emq.echo) or `-- PROGRAM ARGS`",
            ))
        }
    };
    if let Some(a) = &args.args {
        job = match parse_json("the arguments", a)? {
            Value::Array(items) => job.args(items),
            one => job.arg(one),
        };
    }
    if let Some(k) = &args.kwargs {
        let Value::Object(map) = parse_json("--kwargs", k)? else {
            return Err(Failure::usage("--kwargs must be a JSON object"));
        };
        for (key, v) in map {
            job = job.kwarg(key, v);
        }
    }
    Ok(job)
}

/// The job the arguments describe.
fn job(args: &SendArgs) -> Result<Job, Failure> {
    Ok(args.opts.apply(args.call.job()?)?.reply(args.wait))
}

/// Send the job; with `--wait`, print its result.
pub fn run(cli: &Cli, args: &SendArgs) -> Result<u8, Failure> {
    let job = job(args)?;
    let wait_timeout = secs("--wait-timeout", args.wait_timeout)?;
    let conn = cli.conn.resolve(Some(&args.client), None, &args.common)?;
    let mut client = conn.client()?;
    let submitted = client.submit_detailed(&job)?;
    let id = submitted.id.clone();
    if !cli.json {
        if submitted.deduplicated {
            eprintln!("emq-cli: deduplicated: job {id} of this unique key is waiting or running");
        }
        if let Some(old) = &submitted.replaced {
            eprintln!("emq-cli: replaced waiting job {old} of this coalesce key (now SUPERSEDED)");
        }
    }
    if !args.wait {
        if cli.json {
            let state = if args.opts.is_delayed() {
                JobState::Scheduled
            } else if job.guarantee {
                JobState::Accepted
            } else {
                JobState::Queued
            };
            print_json(&Submitted {
                id: id.0,
                state,
                deduplicated: submitted.deduplicated,
                replaced: submitted.replaced.map(|r| r.0),
            });
        } else {
            println!("{id}");
        }
        return Ok(Exit::Ok.code());
    }
    match client.wait(&id, wait_timeout) {
        Err(ClientError::Timeout(_)) => Err(Failure {
            exit: Exit::Timeout,
            message: format!(
                "no result for {id} within {}s (fetch it later with `emq-cli result {id}`)",
                args.wait_timeout
            ),
            id: Some(id.0.clone()),
        }),
        r => Ok(ResultOut::of(&id.0, r)?.print(cli.json)),
    }
}
