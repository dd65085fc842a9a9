//! `emq-cli pause`, `resume` and `queue set`: a queue's flow control
//! (admin endpoint).

use clap::{Args, Subcommand};
use emq_client::admin;
use emq_client::views::{QueueChange, QueueView, Rate};

use crate::conn::{AdminConn, Common};
use crate::exit::{Exit, Failure};
use crate::output::{print_json, shown};
use crate::Cli;

/// `pause` and `resume`'s arguments.
#[derive(Args, Debug)]
pub struct QueueArgs {
    /// The queue.
    pub queue: String,
    /// The router's admin endpoint.
    #[command(flatten)]
    pub admin: AdminConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// The `queue` commands.
#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Set a queue's limits (they last across router restarts).
    Set(SetArgs),
}

/// `queue set`'s arguments.
#[derive(Args, Debug)]
pub struct SetArgs {
    /// The queue.
    pub queue: String,
    /// Most of its jobs running at once across all jobmanagers (0: no limit).
    #[arg(long)]
    pub concurrency: Option<u64>,
    /// Most of its jobs started per period, evenly: 10/s, 100/m, 5/30s,
    /// 1000/h ("none" or 0: no limit).
    #[arg(long, value_parser = rate)]
    pub rate: Option<Rate>,
    /// The router's admin endpoint.
    #[command(flatten)]
    pub admin: AdminConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// `N/PERIOD` (10/s, 100/m, 5/30s, 1000/h), or `none`/`0`.
fn rate(s: &str) -> Result<Rate, String> {
    emq_cmd::rate(s).map(|(jobs, per_ms)| Rate { jobs, per_ms })
}

/// `pause QUEUE` (`paused`: true) or `resume QUEUE`.
pub fn pause(cli: &Cli, args: &QueueArgs, paused: bool) -> Result<u8, Failure> {
    let change = QueueChange {
        paused: Some(paused),
        ..QueueChange::default()
    };
    set_and_print(cli, &args.admin, &args.common, &args.queue, change)
}

/// Run a `queue` command.
pub fn run(cli: &Cli, command: &QueueCommand) -> Result<u8, Failure> {
    match command {
        QueueCommand::Set(a) => {
            if a.concurrency.is_none() && a.rate.is_none() {
                return Err(Failure::usage("give --concurrency, --rate or both"));
            }
            let change = QueueChange {
                paused: None,
                concurrency: a.concurrency,
                rate: a.rate,
            };
            set_and_print(cli, &a.admin, &a.common, &a.queue, change)
        }
    }
}

fn set_and_print(
    cli: &Cli,
    conn: &AdminConn,
    common: &Common,
    queue: &str,
    change: QueueChange,
) -> Result<u8, Failure> {
    let conn = cli.conn.resolve(None, Some(conn), common)?;
    let view = admin::queue_set(conn.admin(), queue, change, conn.options())?;
    if cli.json {
        print_json(&view);
    } else {
        println!("{}", describe(&view));
    }
    Ok(Exit::Ok.code())
}

/// `queue images: PAUSED, concurrency 4, rate 10 per 1s; 3 waiting, 4 running`.
pub(crate) fn describe(v: &QueueView) -> String {
    format!(
        "queue {}: {}; {} waiting, {} running",
        shown(&v.queue),
        limits(&v.status),
        v.status.waiting,
        v.status.running
    )
}

/// A queue's flow control in words (`-` when it has none).
pub(crate) fn limits(q: &emq_client::views::QueueStatus) -> String {
    let mut parts = Vec::new();
    if q.paused {
        parts.push("PAUSED".to_string());
    }
    if let Some(c) = q.concurrency {
        parts.push(format!("concurrency {c}"));
    }
    if let Some(r) = q.rate {
        let per = jiff::SignedDuration::from_millis(i64::try_from(r.per_ms).unwrap_or(i64::MAX));
        parts.push(format!("rate {} per {per:#}", r.jobs));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}
