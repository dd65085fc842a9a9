//! `emq-cli`: the client crate from the shell. One file per command under
//! `commands/`; `conn.rs` resolves where the router is; `output.rs` has the
//! JSON shapes and tables; `exit.rs` the exit codes, one table for every
//! command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod commands;
pub mod conn;
pub mod exit;
pub mod output;

pub use exit::{Exit, Failure};

/// Send jobs to emq (or EventMQ) routers and look after them.
///
/// Exit codes: 0 ok; with `send --wait -- PROGRAM`, the program's own code;
/// 1 the job failed; 2 refused (queue full, unknown job, wrong state); 3
/// router unreachable; 4 no result in time; 5 connection rejected (key not
/// allowed, connection limit); 64 bad usage or input. `--json` prints one
/// JSON document per answer on stdout, errors included.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Where the router is (the commands that connect take these too).
    #[command(flatten)]
    pub conn: conn::Conn,
    /// Machine-readable JSON output (errors too, on stdout).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Send one job: a handler with JSON arguments, or `-- PROGRAM ARGS...`.
    Send(commands::send::SendArgs),
    /// Send one job per line from a file (or stdin) and wait for all results.
    Bulk(commands::bulk::BulkArgs),
    /// Router status (queues, jobmanagers), or with an ID a job's state and log.
    Status(commands::status::StatusArgs),
    /// A finished job's result.
    Result(commands::result::ResultArgs),
    /// Cancel a job that has not started yet.
    Cancel(commands::cancel::CancelArgs),
    /// Connected jobmanagers with their state and slots (admin).
    Workers(commands::admin::AdminArgs),
    /// Dead-lettered jobs (admin).
    Dead(commands::admin::AdminArgs),
    /// Put a dead-lettered job back in its queue (admin).
    Retry(commands::admin::RetryArgs),
    /// Drop a dead-lettered job for good (admin).
    Discard(commands::admin::RetryArgs),
    /// The jobs waiting in a queue, oldest first, a page at a time (admin).
    Waiting(commands::admin::WaitingArgs),
    /// Cancel every job waiting in a queue; running jobs go on (admin).
    Purge(commands::admin::PurgeArgs),
    /// Stop the router (admin).
    Shutdown(commands::admin::AdminArgs),
    /// Stop dispatching a queue's jobs (it keeps taking them); running jobs
    /// finish (admin).
    Pause(commands::queue::QueueArgs),
    /// Dispatch a paused queue's jobs again (admin).
    Resume(commands::queue::QueueArgs),
    /// A queue's limits: concurrency across jobmanagers, rate (admin).
    #[command(subcommand)]
    Queue(commands::queue::QueueCommand),
    /// Jobs fired on an interval or a cron expression, kept by the router (admin).
    #[command(subcommand)]
    Schedule(commands::schedule::ScheduleCommand),
    /// Workflows: graphs of jobs with dependencies, batches with a callback.
    #[command(subcommand)]
    Graph(commands::graph::GraphCommand),
    /// Live tail of the router's events (its `--events` stream), saying
    /// when events were lost.
    Watch(commands::watch::WatchArgs),
    /// Make a CURVE key pair: FILE (secret, mode 0600) and FILE.pub.
    Keygen(commands::keys::KeygenArgs),
    /// Manage an allowlist file (the router re-reads it when it changes).
    #[command(subcommand)]
    Allow(commands::keys::AllowCommand),
}

/// Parse the command line, run the command, exit with its code.
pub fn main() -> ExitCode {
    let cli: Cli = emq_cmd::parse();
    emq_cmd::init_logging("warn");
    let as_json = cli.json;
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            report(&f, as_json);
            ExitCode::from(f.exit.code())
        }
    }
}

/// Say why a command failed: `emq-cli: ...` on stderr, or with `--json`
/// `{"error": {"kind", "message"}, "id"}` on stdout.
pub fn report(f: &Failure, as_json: bool) {
    if as_json {
        output::print_json(&serde_json::json!({
            "error": {"kind": f.exit.kind(), "message": f.message},
            "id": f.id,
        }));
    } else {
        eprintln!("emq-cli: {}", f.message);
    }
}

/// Run the command; the exit code when it did what it could.
pub fn run(cli: &Cli) -> Result<u8, Failure> {
    use commands::*;
    let json = cli.json;
    match &cli.command {
        Command::Send(a) => send::run(cli, a),
        Command::Bulk(a) => bulk::run(cli, a),
        Command::Status(a) => status::run(cli, a),
        Command::Result(a) => result::run(cli, a),
        Command::Cancel(a) => cancel::run(cli, a),
        Command::Workers(a) => admin::workers(cli, a),
        Command::Dead(a) => admin::dead(cli, a),
        Command::Retry(a) => admin::retry(cli, a),
        Command::Discard(a) => admin::discard(cli, a),
        Command::Waiting(a) => admin::waiting(cli, a),
        Command::Purge(a) => admin::purge(cli, a),
        Command::Shutdown(a) => admin::shutdown(cli, a),
        Command::Schedule(a) => schedule::run(cli, a),
        Command::Pause(a) => queue::pause(cli, a, true),
        Command::Resume(a) => queue::pause(cli, a, false),
        Command::Queue(a) => queue::run(cli, a),
        Command::Graph(a) => graph::run(cli, a),
        Command::Watch(a) => watch::run(cli, a),
        Command::Keygen(a) => keys::keygen(a, json),
        Command::Allow(a) => keys::allow(a, json),
    }
}
