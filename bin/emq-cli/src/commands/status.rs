//! `emq-cli status`: the router's queues and jobmanagers, or one job's state
//! and transition log.

use clap::Args;
use emq_client::views::RouterStatus;
use emq_client::{admin, JobId};

use crate::conn::{AdminConn, ClientConn, Common};
use crate::exit::{Exit, Failure};
use crate::output::{print_json, print_table, shown, table, JobStatusOut};
use crate::Cli;

/// `status`'s arguments.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// A job's id; without one, the router's status (admin endpoint).
    pub id: Option<String>,
    /// The router's client endpoint (for a job's status).
    #[command(flatten)]
    pub client: ClientConn,
    /// The router's admin endpoint (for the router's status).
    #[command(flatten)]
    pub admin: AdminConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// Print the router's status or a job's.
pub fn run(cli: &Cli, args: &StatusArgs) -> Result<u8, Failure> {
    let conn = cli.conn.resolve(Some(&args.client), Some(&args.admin), &args.common)?;
    match &args.id {
        Some(id) => {
            let status = conn.client()?.status(&JobId(id.clone()), conn.timeout())?;
            JobStatusOut::of(status)?.print(cli.json);
        }
        None => {
            let status = admin::status(conn.admin(), conn.options())?;
            if cli.json {
                print_json(&status);
            } else {
                print_router(&status);
            }
        }
    }
    Ok(Exit::Ok.code())
}

fn print_router(v: &RouterStatus) {
    let mut queues = table(
        &[
            "QUEUE",
            "WAITING",
            "RUNNING",
            "SUBMITTED",
            "OK",
            "NOT OK",
            "DEAD",
            "JOBMANAGERS",
            "FLOW",
        ],
        &[1, 2, 3, 4, 5, 6, 7],
    );
    for (name, q) in &v.queues {
        let c = &q.counts;
        let ok = c.ok();
        let ended: u64 = c.finished.values().sum();
        queues.add_row(vec![
            shown(name),
            q.waiting.to_string(),
            q.running.to_string(),
            c.submitted.to_string(),
            ok.to_string(),
            (ended - ok).to_string(),
            c.dead.to_string(),
            q.jobmanagers.len().to_string(),
            super::queue::limits(q),
        ]);
    }
    print_table(&queues);
    println!();
    super::admin::print_jobmanagers(&v.jobmanagers);
    println!();
    println!(
        "waiting in all: {}   delayed: {}   schedules: {}   results kept: {}   uptime: {}s",
        v.waiting_total, v.delayed, v.schedules, v.results_kept, v.uptime_s
    );
    if let Some(ha) = &v.ha {
        println!(
            "active router: {} (epoch {}, lease {} ms)",
            shown(&ha.active),
            ha.epoch,
            ha.lease_ms
        );
        if ha.standbys.is_empty() {
            println!("standby routers: none checked in");
        }
        for s in &ha.standbys {
            println!(
                "standby router: {} ({}), checked in {} ms ago",
                shown(&s.name),
                shown(&s.endpoints),
                s.seen_ms_ago
            );
        }
    }
}
