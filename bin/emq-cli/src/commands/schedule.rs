//! `emq-cli schedule`: add, list, pause, resume and remove the router's
//! schedules (admin endpoint).

use std::time::Duration;

use clap::{Args, Subcommand};
use emq_client::admin;
use emq_client::views::{MissedPolicy, ScheduleAction, ScheduleInfo, ScheduleSpec};

use super::secs;
use super::send::CallArgs;
use crate::conn::{AdminConn, Common};
use crate::exit::{Exit, Failure};
use crate::output::{print_json, print_table, shown, table};
use crate::Cli;

/// The schedule commands.
#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Create a schedule, or replace the one of that name.
    Add(Box<AddArgs>),
    /// Every schedule: when it fires next, when it last fired and how that
    /// ended, fires so far.
    List(super::admin::AdminArgs),
    /// Stop firing until resumed.
    Pause(NameArgs),
    /// Fire again from the next slot (slots passed while paused are not fired).
    Resume(NameArgs),
    /// Forget a schedule (jobs it already fired go on).
    Remove(NameArgs),
}

/// `schedule add`'s arguments.
#[derive(Args, Debug)]
pub struct AddArgs {
    /// Its name: letters, digits, '.', '_', '-'.
    pub name: String,
    /// What each fired job calls.
    #[command(flatten)]
    pub call: CallArgs,
    /// Fire every this long (30s, 5m, 1h30m, 1d...), from now.
    #[arg(long, value_parser = emq_cmd::duration, required_unless_present = "cron", conflicts_with = "cron")]
    pub every: Option<Duration>,
    /// Fire at the times of this cron expression: 5 fields (minute hour
    /// day-of-month month day-of-week), or 6 with seconds first.
    #[arg(long)]
    pub cron: Option<String>,
    /// The IANA time zone the cron expression is read in [default: UTC].
    #[arg(long, requires = "cron")]
    pub tz: Option<String>,
    /// Queue the jobs go to.
    #[arg(short, long, default_value = "default")]
    pub queue: String,
    /// Do not fire now, only at the first slot.
    #[arg(long)]
    pub nohaste: bool,
    /// Fire this many times, then end.
    #[arg(long)]
    pub count: Option<u64>,
    /// Slots passed while the router was down: fire once for all of them
    /// (coalesce), or none (skip).
    #[arg(long, default_value = "coalesce", value_parser = missed_policy)]
    pub missed: MissedPolicy,
    /// Create it paused.
    #[arg(long)]
    pub paused: bool,
    /// Kill each job after this many seconds on its worker.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Retries after a failed attempt [default: the router's --default-retries].
    #[arg(long)]
    pub retries: Option<u32>,
    /// Encode the body as MessagePack (emq jobmanagers only).
    #[arg(long)]
    pub msgpack: bool,
    /// The router's admin endpoint.
    #[command(flatten)]
    pub admin: AdminConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

fn missed_policy(s: &str) -> Result<MissedPolicy, String> {
    s.parse().map_err(|_| format!("{s:?}: expected coalesce or skip"))
}

/// The arguments of a command on one schedule.
#[derive(Args, Debug)]
pub struct NameArgs {
    /// The schedule's name (see `schedule list`).
    pub name: String,
    /// The router's admin endpoint.
    #[command(flatten)]
    pub admin: AdminConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// Run a schedule command.
pub fn run(cli: &Cli, command: &ScheduleCommand) -> Result<u8, Failure> {
    match command {
        ScheduleCommand::Add(a) => add(cli, a),
        ScheduleCommand::List(a) => list(cli, a),
        ScheduleCommand::Pause(a) => control(cli, a, ScheduleAction::Pause),
        ScheduleCommand::Resume(a) => control(cli, a, ScheduleAction::Resume),
        ScheduleCommand::Remove(a) => control(cli, a, ScheduleAction::Remove),
    }
}

fn add(cli: &Cli, args: &AddArgs) -> Result<u8, Failure> {
    let mut job = args.call.job()?.queue(&args.queue);
    if let Some(n) = args.retries {
        job = job.retries(n);
    }
    if let Some(t) = args.timeout {
        job = job.timeout(secs("--timeout", t)?);
    }
    if args.msgpack {
        job = job.msgpack();
    }
    let every_ms = match args.every {
        Some(d) if d.as_millis() == 0 => return Err(Failure::usage("--every must be at least 1ms")),
        Some(d) => Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => None,
    };
    let spec = ScheduleSpec {
        name: args.name.clone(),
        every_ms,
        cron: args.cron.clone(),
        tz: args.tz.clone(),
        nohaste: args.nohaste,
        run_count: args.count,
        missed: args.missed,
        paused: args.paused,
        ..ScheduleSpec::default()
    };
    let conn = cli.conn.resolve(None, Some(&args.admin), &args.common)?;
    let info = admin::schedule(conn.admin(), spec, &job, conn.options())?;
    if cli.json {
        print_json(&info);
    } else {
        let next = info
            .next
            .map_or_else(|| "paused".to_string(), |t| format!("next {}", time(t)));
        println!(
            "schedule {} ({}): {next}, fired {}",
            shown(&info.name),
            when(&info),
            info.fires
        );
    }
    Ok(Exit::Ok.code())
}

fn list(cli: &Cli, args: &super::admin::AdminArgs) -> Result<u8, Failure> {
    let conn = cli.conn.resolve(None, Some(&args.admin), &args.common)?;
    let view = admin::schedules(conn.admin(), conn.options())?;
    if cli.json {
        print_json(&view);
        return Ok(Exit::Ok.code());
    }
    if view.schedules.is_empty() {
        println!("no schedules");
        return Ok(Exit::Ok.code());
    }
    let mut t = table(
        &[
            "NAME",
            "QUEUE",
            "HANDLER",
            "WHEN",
            "NEXT",
            "LAST FIRE",
            "LAST OUTCOME",
            "FIRES",
            "MISSED",
        ],
        &[7, 8],
    );
    for s in &view.schedules {
        let outcome = match (&s.last_outcome, &s.last_error) {
            (Some(o), Some(e)) => format!("{o}: {}", shown(e)),
            (Some(o), None) => o.to_string(),
            (None, Some(e)) => shown(e),
            (None, None) => "-".into(),
        };
        t.add_row(vec![
            shown(&s.name),
            shown(&s.queue),
            shown(&s.handler),
            when(s),
            s.next.map_or_else(|| "paused".into(), time),
            s.last_fire.map_or_else(|| "-".into(), time),
            outcome,
            s.fires.to_string(),
            s.missed_slots.to_string(),
        ]);
    }
    print_table(&t);
    Ok(Exit::Ok.code())
}

fn control(cli: &Cli, args: &NameArgs, action: ScheduleAction) -> Result<u8, Failure> {
    let conn = cli.conn.resolve(None, Some(&args.admin), &args.common)?;
    let info = admin::schedule_ctl(conn.admin(), &args.name, action, conn.options())?;
    if cli.json {
        print_json(&info);
    } else {
        let done = match action {
            ScheduleAction::Pause => "paused".to_string(),
            ScheduleAction::Resume => format!("resumed, next {}", info.next.map_or_else(|| "-".into(), time)),
            ScheduleAction::Remove => format!("removed after {} fire(s)", info.fires),
        };
        println!("schedule {}: {done}", shown(&info.name));
    }
    Ok(Exit::Ok.code())
}

/// `every 30s`, `cron '*/5 * * * *' Europe/Berlin`, with the run count left.
fn when(s: &ScheduleInfo) -> String {
    let mut w = match (&s.every_ms, &s.cron) {
        (Some(ms), _) => {
            let d = jiff::SignedDuration::from_millis(i64::try_from(*ms).unwrap_or(i64::MAX));
            format!("every {d:#}")
        }
        (None, Some(c)) => format!("cron '{}' {}", shown(c), shown(s.tz.as_deref().unwrap_or("UTC"))),
        (None, None) => "?".into(),
    };
    if let Some(left) = s.remaining {
        w.push_str(&format!(", {left} left"));
    }
    w
}

/// A time to the second, in UTC.
fn time(t: emq_client::views::Timestamp) -> String {
    format!("{t:.0}")
}
