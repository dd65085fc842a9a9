//! `emq-cli cancel`: cancel a job that has not started.

use clap::Args;
use emq_client::{JobId, JobState};

use crate::conn::{ClientConn, Common};
use crate::exit::{Exit, Failure};
use crate::output::JobStatusOut;
use crate::Cli;

/// `cancel`'s arguments.
#[derive(Args, Debug)]
pub struct CancelArgs {
    /// The job's id.
    pub id: String,
    /// The router's client endpoint.
    #[command(flatten)]
    pub client: ClientConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// Cancel the job and print its state; a job that has started (or ended)
/// is not cancelled: exit 2, saying so.
pub fn run(cli: &Cli, args: &CancelArgs) -> Result<u8, Failure> {
    let conn = cli.conn.resolve(Some(&args.client), None, &args.common)?;
    let status = conn.client()?.cancel(&JobId(args.id.clone()), conn.timeout())?;
    let state = status.state;
    if state != JobState::Cancelled {
        let why = if state.is_final() { "has ended" } else { "has started" };
        return Err(Failure::refused(format!(
            "job {} is {state}: it {why}, and only a job that has not started can be cancelled",
            args.id
        ))
        .about(&args.id));
    }
    JobStatusOut::of(status)?.print(cli.json);
    Ok(Exit::Ok.code())
}
