//! The admin commands (admin endpoint): `workers`, `dead`, `retry`,
//! `discard`, `waiting`, `purge`, `shutdown`.

use std::collections::BTreeMap;

use clap::Args;
use emq_client::admin;
use emq_client::views::JobManagerStatus;

use crate::conn::{AdminConn, Common};
use crate::exit::{Exit, Failure};
use crate::output::{print_json, print_table, shown, table};
use crate::Cli;

/// The arguments of an admin command that takes nothing else.
#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The router's admin endpoint.
    #[command(flatten)]
    pub admin: AdminConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// `retry`'s arguments.
#[derive(Args, Debug)]
pub struct RetryArgs {
    /// The dead-lettered job's id (see `emq-cli dead`).
    pub id: String,
    /// The router's admin endpoint.
    #[command(flatten)]
    pub admin: AdminConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// `waiting`'s arguments.
#[derive(Args, Debug)]
pub struct WaitingArgs {
    /// The queue.
    pub queue: String,
    /// Jobs to skip from the oldest.
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Most jobs listed (the router lists at most 1,000 at once).
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// The router's admin endpoint.
    #[command(flatten)]
    pub admin: AdminConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// `purge`'s arguments.
#[derive(Args, Debug)]
pub struct PurgeArgs {
    /// The queue whose waiting jobs are cancelled.
    pub queue: String,
    /// The router's admin endpoint.
    #[command(flatten)]
    pub admin: AdminConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// The jobmanagers as a table.
pub(crate) fn print_jobmanagers(jobmanagers: &BTreeMap<String, JobManagerStatus>) {
    let mut t = table(
        &[
            "JOBMANAGER",
            "STATE",
            "WORKERS BUSY",
            "SLOTS",
            "RUNNING",
            "PROCESSED",
            "QUEUES",
        ],
        &[2, 3, 4, 5],
    );
    for (id, jm) in jobmanagers {
        let queues: Vec<String> = jm.queues.iter().map(|(w, q)| format!("{w}:{}", shown(q))).collect();
        let state = jm
            .state
            .map_or_else(|| format!("({})", jm.kind), |s| s.as_str().to_string());
        // Reported by emq jobmanagers in their heartbeats.
        let workers = jm
            .workers
            .map_or_else(|| "-".to_string(), |w| format!("{}/{}", w.busy, w.workers));
        t.add_row(vec![
            shown(id),
            state,
            workers,
            jm.slots.to_string(),
            jm.running.to_string(),
            jm.processed.to_string(),
            queues.join(","),
        ]);
    }
    print_table(&t);
}

/// `workers`: the connected jobmanagers.
pub fn workers(cli: &Cli, args: &AdminArgs) -> Result<u8, Failure> {
    let conn = cli.conn.resolve(None, Some(&args.admin), &args.common)?;
    let view = admin::workers(conn.admin(), conn.options())?;
    if cli.json {
        print_json(&view);
    } else {
        print_jobmanagers(&view.jobmanagers);
    }
    Ok(Exit::Ok.code())
}

/// `dead`: the dead-letter set.
pub fn dead(cli: &Cli, args: &AdminArgs) -> Result<u8, Failure> {
    let conn = cli.conn.resolve(None, Some(&args.admin), &args.common)?;
    let view = admin::dead(conn.admin(), conn.options())?;
    if cli.json {
        print_json(&view);
    } else if view.dead.is_empty() {
        println!("no dead-lettered jobs");
    } else {
        let mut t = table(&["JOB", "QUEUE", "ATTEMPTS", "LAST"], &[2]);
        for d in &view.dead {
            t.add_row(vec![
                shown(&d.id),
                shown(&d.queue),
                d.attempts.to_string(),
                shown(d.last.as_deref().unwrap_or("")),
            ]);
        }
        print_table(&t);
    }
    Ok(Exit::Ok.code())
}

/// `retry`: a dead-lettered job back in its queue.
pub fn retry(cli: &Cli, args: &RetryArgs) -> Result<u8, Failure> {
    let conn = cli.conn.resolve(None, Some(&args.admin), &args.common)?;
    let state = admin::retry(conn.admin(), &args.id, conn.options()).map_err(|e| Failure::from(e).about(&args.id))?;
    if cli.json {
        print_json(&serde_json::json!({"id": args.id, "state": state}));
    } else {
        println!("{}  {state} (re-queued)", args.id);
    }
    Ok(Exit::Ok.code())
}

/// `discard`: drop a dead-lettered job for good.
pub fn discard(cli: &Cli, args: &RetryArgs) -> Result<u8, Failure> {
    let conn = cli.conn.resolve(None, Some(&args.admin), &args.common)?;
    let view = admin::discard(conn.admin(), &args.id, conn.options()).map_err(|e| Failure::from(e).about(&args.id))?;
    if cli.json {
        print_json(&view);
    } else {
        println!(
            "{}  discarded from the dead-letter set of {}",
            shown(&view.id),
            shown(&view.queue)
        );
    }
    Ok(Exit::Ok.code())
}

/// `waiting`: a page of a queue's waiting jobs.
pub fn waiting(cli: &Cli, args: &WaitingArgs) -> Result<u8, Failure> {
    let conn = cli.conn.resolve(None, Some(&args.admin), &args.common)?;
    let page = admin::waiting(conn.admin(), &args.queue, args.offset, args.limit, conn.options())?;
    if cli.json {
        print_json(&page);
        return Ok(Exit::Ok.code());
    }
    let mut t = table(&["JOB", "HANDLER", "GUARANTEED", "ATTEMPTS", "WAITED"], &[3, 4]);
    for j in &page.jobs {
        t.add_row(vec![
            shown(&j.id),
            shown(j.handler.as_deref().unwrap_or("?")),
            (if j.guaranteed { "yes" } else { "no" }).to_string(),
            j.attempts.to_string(),
            j.waited_ms
                .map_or_else(|| "-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
        ]);
    }
    print_table(&t);
    let shown_to = page.offset + page.jobs.len() as u64;
    println!(
        "{} waiting in {}; shown {}..{}",
        page.total,
        shown(&page.queue),
        page.offset.min(shown_to),
        shown_to
    );
    Ok(Exit::Ok.code())
}

/// `purge`: cancel a queue's waiting jobs.
pub fn purge(cli: &Cli, args: &PurgeArgs) -> Result<u8, Failure> {
    let conn = cli.conn.resolve(None, Some(&args.admin), &args.common)?;
    let view = admin::purge(conn.admin(), &args.queue, conn.options())?;
    if cli.json {
        print_json(&view);
    } else {
        println!("{} waiting jobs cancelled in {}", view.purged, shown(&view.queue));
    }
    Ok(Exit::Ok.code())
}

/// `shutdown`: stop the router.
pub fn shutdown(cli: &Cli, args: &AdminArgs) -> Result<u8, Failure> {
    let conn = cli.conn.resolve(None, Some(&args.admin), &args.common)?;
    admin::shutdown(conn.admin(), conn.options())?;
    if cli.json {
        print_json(&serde_json::json!({"router": conn.admin(), "stopping": true}));
    } else {
        println!("router at {} is stopping", conn.admin());
    }
    Ok(Exit::Ok.code())
}
