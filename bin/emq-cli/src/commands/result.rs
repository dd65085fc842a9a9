//! `emq-cli result`: a finished job's result, as `send --wait` prints it.

use clap::Args;
use emq_client::JobId;

use crate::conn::{ClientConn, Common};
use crate::exit::{Exit, Failure};
use crate::output::ResultOut;
use crate::Cli;

/// `result`'s arguments.
#[derive(Args, Debug)]
pub struct ResultArgs {
    /// The job's id (as `send` printed it).
    pub id: String,
    /// The router's client endpoint.
    #[command(flatten)]
    pub client: ClientConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// Print the job's result; exit 4 if it has none yet.
pub fn run(cli: &Cli, args: &ResultArgs) -> Result<u8, Failure> {
    let conn = cli.conn.resolve(Some(&args.client), None, &args.common)?;
    let status = conn.client()?.status(&JobId(args.id.clone()), conn.timeout())?;
    match status.result {
        Some(r) => Ok(ResultOut::of(&args.id, r)?.print(cli.json)),
        None => Err(Failure {
            exit: Exit::Timeout,
            message: format!("job {} is {} (no result yet)", args.id, status.state),
            id: Some(args.id.clone()),
        }),
    }
}
