//! `emq-cli watch`: a live tail of the router's event stream, one line per
//! event, saying when events were lost or the router restarted.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args;
use emq_client::events::{Event, Filter, Received, Subscriber};
use emq_client::printable;

use crate::conn::Common;
use crate::exit::{Exit, Failure};
use crate::Cli;

/// `watch`'s arguments.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// The router's event endpoint (its `--events`)
    /// [default: tcp://127.0.0.1:47294].
    #[arg(long, env = "EMQ_EVENTS", value_parser = emq_cmd::endpoint, help_heading = "Connection")]
    pub events: Option<String>,
    /// Only events of this queue.
    #[arg(short, long)]
    pub queue: Option<String>,
    /// Only events of this kind (`job.finished`), or of kinds starting
    /// with it (`job.`, `jobmanager.`); repeat for several.
    #[arg(short, long)]
    pub kind: Vec<String>,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long = "for", value_name = "SECONDS")]
    pub seconds: Option<f64>,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// Print events until stopped (Ctrl-C, `--count`, `--for`).
pub fn run(cli: &Cli, args: &WatchArgs) -> Result<u8, Failure> {
    let conn = cli.conn.resolve(None, None, &args.common)?;
    let endpoint = args
        .events
        .clone()
        .unwrap_or_else(|| format!("tcp://127.0.0.1:{}", emq_client::DEFAULT_EVENTS_PORT));
    let filter = Filter {
        kinds: Filter::kinds_from(&args.kind).map_err(Failure::usage)?,
        queue: args.queue.clone(),
    };
    let until = match args.seconds {
        Some(s) => Some(Instant::now() + super::secs("--for", s)?),
        None => None,
    };
    let mut sub = Subscriber::connect(&endpoint, &filter, conn.options().clone())?;
    let mut shown = 0u64;
    let mut out = std::io::stdout().lock();
    while args.count.is_none_or(|n| shown < n) {
        let wait = match until {
            Some(t) if Instant::now() >= t => break,
            Some(t) => t.saturating_duration_since(Instant::now()).min(Duration::from_secs(1)),
            None => Duration::from_secs(1),
        };
        let Some(got) = sub.next(wait)? else { continue };
        let written = match cli.json {
            true => write_json(&mut out, &got),
            false => write_line(&mut out, &got),
        };
        // A closed pipe (`| head`) ends the tail.
        if written.and_then(|()| out.flush()).is_err() {
            break;
        }
        shown += 1;
    }
    Ok(Exit::Ok.code())
}

fn write_json(out: &mut impl Write, got: &Received) -> std::io::Result<()> {
    if got.restarted {
        writeln!(
            out,
            "{}",
            serde_json::json!({"restarted": {"router": got.event.router}})
        )?;
    }
    if got.missed > 0 {
        writeln!(
            out,
            "{}",
            serde_json::json!({"gap": {"missed": got.missed, "before": got.event.seq}})
        )?;
    }
    writeln!(out, "{}", serde_json::to_string(&got.event).unwrap_or_default())
}

fn write_line(out: &mut impl Write, got: &Received) -> std::io::Result<()> {
    if got.restarted {
        eprintln!("emq-cli: the router restarted (instance {})", got.event.router);
    }
    if got.missed > 0 {
        eprintln!("emq-cli: {} event(s) lost before #{}", got.missed, got.event.seq);
    }
    writeln!(out, "{}", line(&got.event))
}

/// One event as a line: time, sequence, kind, then what it carries.
fn line(e: &Event<'_>) -> String {
    let time = emq_client::views::timestamp_ms(e.unix_ms);
    let mut s = format!("{time:.3} #{:<6} {:<17}", e.seq, e.kind.as_str());
    let mut field = |name: &str, value: &str| {
        s.push_str(&format!(" {name}={}", printable(value)));
    };
    if let Some(v) = &e.queue {
        field("queue", v);
    }
    if let Some(v) = &e.job {
        field("job", v);
    }
    if let Some(v) = &e.jobmanager {
        field("jobmanager", v);
    }
    if let Some(v) = e.attempt {
        field("attempt", &v.to_string());
    }
    if let Some(v) = e.outcome {
        field("outcome", v.as_str());
    }
    if let Some(v) = e.state {
        field("state", v.as_str());
    }
    if let Some(v) = &e.origin {
        field("from", v);
    }
    if let Some(v) = &e.detail {
        field("detail", v);
    }
    if let Some(v) = &e.body {
        field("body", v);
    }
    s
}
