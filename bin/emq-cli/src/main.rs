//! `emq-cli`: the client crate from the shell. Each subcommand lives in its own
//! function below; exit codes tell scripts what happened (see [`Exit`]).

mod bulk;
mod output;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use emq_client::curve::{self, ClientKeys};
use emq_client::{admin, Client, ClientError, ClientOptions, Job, JobId, Value};

/// Exit codes.
#[derive(Debug, Clone, Copy)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The job failed (a program's own non-zero code is passed through instead).
    JobFailed = 1,
    /// Bad usage, or the router refused the request.
    Usage = 2,
    /// The router could not be reached.
    Unreachable = 3,
    /// No answer in time.
    Timeout = 4,
    /// The router refused the connection (key not allowed, CURVE on one side
    /// only, or too many connections).
    Rejected = 5,
}

/// Send jobs to emq (or EventMQ) routers and look after them.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Router frontend endpoint(s), comma-separated.
    #[arg(
        long = "router",
        env = "EMQ_ROUTER",
        global = true,
        value_delimiter = ',',
        default_value = "tcp://127.0.0.1:47291"
    )]
    routers: Vec<String>,
    /// Router admin endpoint.
    #[arg(long, env = "EMQ_ADMIN", global = true, default_value = "tcp://127.0.0.1:47293")]
    admin: String,
    /// Seconds to wait for a connection to the router.
    #[arg(long, global = true, default_value_t = 5.0)]
    connect_timeout: f64,
    /// The router's CURVE public key (Z85 text or a key file): turns CURVE on.
    #[arg(long, env = "EMQ_SERVER_KEY", global = true, requires = "key")]
    server_key: Option<String>,
    /// Our CURVE key pair file (from `emq-cli keygen`); must be on the
    /// router's allowlist for the endpoint used (an admin key for admin).
    #[arg(long, env = "EMQ_KEY", global = true, requires = "server_key")]
    key: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send one job: a handler with JSON args, or `-- PROGRAM ARGS...`.
    Send(SendArgs),
    /// Send one job per line from a file (or `-`/nothing for stdin) and wait
    /// for all results. A line is a JSON object {"handler", "args", "kwargs",
    /// "queue", "timeout", "retries"} or else a shell command.
    Bulk(BulkArgs),
    /// Router status, or a job's status and transition log with an ID.
    Status { id: Option<String> },
    /// A finished job's result.
    Result { id: String },
    /// Cancel a job that is still waiting.
    Cancel { id: String },
    /// Connected jobmanagers with their state and slots.
    Workers,
    /// Dead-lettered jobs (admin).
    Dead,
    /// Put a dead-lettered job back in its queue (admin).
    Retry { id: String },
    /// Cancel every job waiting in a queue (admin); running jobs go on.
    Purge { queue: String },
    /// Stop the router (admin endpoint).
    Shutdown,
    /// Make a CURVE key pair: FILE (secret, mode 0600) and FILE.pub.
    Keygen { file: PathBuf },
    /// Manage an allowlist file (the router re-reads it when it changes).
    #[command(subcommand)]
    Allow(AllowCommand),
}

#[derive(Subcommand)]
enum AllowCommand {
    /// Allow a public key (Z85 text, or a .pub or key file).
    Add {
        list: PathBuf,
        #[arg(value_name = "KEY")]
        public_key: String,
        /// A name for the key, shown in router logs.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Revoke a key, by its Z85 text or its name.
    Remove { list: PathBuf, key_or_name: String },
    /// Show the allowed keys.
    List { list: PathBuf },
}

#[derive(Args)]
struct JobOpts {
    /// Queue to send to.
    #[arg(short, long, default_value = "default")]
    queue: String,
    /// Kill the job after this many seconds on the worker.
    #[arg(long)]
    timeout: Option<f64>,
    /// Retries after a failed attempt.
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Journal the job and have its submission acknowledged.
    #[arg(long)]
    guarantee: bool,
    /// Encode the body as MessagePack instead of JSON.
    #[arg(long)]
    msgpack: bool,
}

#[derive(Args)]
struct SendArgs {
    /// Handler name (e.g. emq.echo); omit when giving `-- PROGRAM ARGS`.
    handler: Option<String>,
    /// Positional arguments as JSON (a list, or one value).
    args: Option<String>,
    /// Keyword arguments as a JSON object.
    #[arg(long)]
    kwargs: Option<String>,
    #[command(flatten)]
    opts: JobOpts,
    /// Wait for the result and print it; the exit code reflects the outcome.
    #[arg(short, long)]
    wait: bool,
    /// Seconds to wait for the result with --wait.
    #[arg(long, default_value_t = 60.0)]
    wait_timeout: f64,
    /// A program and its arguments, run by the `emq.exec` built-in.
    #[arg(last = true)]
    program: Vec<String>,
}

#[derive(Args)]
struct BulkArgs {
    /// File with one job per line; `-` or nothing reads stdin.
    file: Option<String>,
    #[command(flatten)]
    opts: JobOpts,
    /// Most jobs in flight at once.
    #[arg(long, default_value_t = 500)]
    window: usize,
    /// Give up on a job after this many seconds without any result arriving.
    #[arg(long, default_value_t = 60.0)]
    idle_timeout: f64,
}

fn secs(s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|e| anyhow::anyhow!("bad duration {s}: {e}"))
}

impl JobOpts {
    pub(crate) fn apply(&self, mut job: Job) -> anyhow::Result<Job> {
        job = job.queue(&self.queue).retries(self.retries).guarantee(self.guarantee);
        if let Some(t) = self.timeout {
            job = job.timeout(secs(t)?);
        }
        if self.msgpack {
            job = job.msgpack();
        }
        Ok(job)
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("emq-cli: {e:#}");
            let code = match e.downcast_ref::<ClientError>() {
                Some(ClientError::Unreachable { .. }) => Exit::Unreachable,
                Some(ClientError::Rejected(_)) => Exit::Rejected,
                Some(ClientError::Timeout(_)) => Exit::Timeout,
                Some(ClientError::UnknownJob(_)) | Some(ClientError::Refused { .. }) => Exit::Usage,
                _ => Exit::JobFailed,
            };
            ExitCode::from(code as u8)
        }
    }
}

fn options(cli: &Cli) -> anyhow::Result<ClientOptions> {
    let curve = ClientKeys::from_args(cli.server_key.as_deref(), cli.key.as_deref())?;
    Ok(ClientOptions {
        connect_timeout: secs(cli.connect_timeout)?,
        curve,
    })
}

fn connect(cli: &Cli) -> anyhow::Result<Client> {
    Ok(Client::connect_with(&cli.routers, options(cli)?)?)
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    let timeout = secs(cli.connect_timeout)?;
    // Keys are read only by the commands that connect (not by keygen or allow).
    let admin_options = || options(cli);
    match &cli.command {
        Command::Keygen { file } => keygen(file, cli.json),
        Command::Allow(cmd) => allow(cmd, cli.json),
        Command::Send(args) => send(cli, args),
        Command::Bulk(args) => bulk::run(cli.json, connect(cli)?, args),
        Command::Status { id: None } => {
            let status = admin::status(&cli.admin, &admin_options()?)?;
            output::router_status(&serde_json::to_value(&status)?, cli.json);
            Ok(Exit::Ok as u8)
        }
        Command::Status { id: Some(id) } => {
            let status = connect(cli)?.status(&JobId(id.clone()), timeout)?;
            output::job_status(&status, cli.json);
            Ok(Exit::Ok as u8)
        }
        Command::Result { id } => {
            let status = connect(cli)?.status(&JobId(id.clone()), timeout)?;
            match status.result {
                Some(r) => Ok(output::result(r, cli.json)),
                None => {
                    eprintln!("emq-cli: job {id} is {} (no result yet)", status.state);
                    Ok(Exit::Timeout as u8)
                }
            }
        }
        Command::Cancel { id } => {
            let status = connect(cli)?.cancel(&JobId(id.clone()), timeout)?;
            output::job_status(&status, cli.json);
            Ok(if status.state == emq_client::JobState::Cancelled {
                Exit::Ok
            } else {
                Exit::JobFailed
            } as u8)
        }
        Command::Workers => {
            let w = admin::workers(&cli.admin, &admin_options()?)?;
            output::workers(&serde_json::to_value(&w)?, cli.json);
            Ok(Exit::Ok as u8)
        }
        Command::Dead => {
            let v = admin::dead(&cli.admin, &admin_options()?)?;
            output::dead(&serde_json::to_value(&v)?, cli.json);
            Ok(Exit::Ok as u8)
        }
        Command::Retry { id } => {
            let state = admin::retry(&cli.admin, id, &admin_options()?)?;
            if cli.json {
                println!("{}", serde_json::json!({"id": id, "state": state}));
            } else {
                println!("{id}  {state}");
            }
            Ok(Exit::Ok as u8)
        }
        Command::Purge { queue } => {
            let n = admin::purge(&cli.admin, queue, &admin_options()?)?.purged;
            if cli.json {
                println!("{}", serde_json::json!({"queue": queue, "purged": n}));
            } else {
                println!("{n} waiting jobs cancelled in {queue}");
            }
            Ok(Exit::Ok as u8)
        }
        Command::Shutdown => {
            admin::shutdown(&cli.admin, &admin_options()?)?;
            if !cli.json && std::io::stderr().is_terminal() {
                eprintln!("router stopping");
            }
            Ok(Exit::Ok as u8)
        }
    }
}

fn keygen(file: &Path, json: bool) -> anyhow::Result<u8> {
    let pair = curve::generate()?;
    let public_file = curve::save_key_pair(&pair, file)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"public_key": pair.public.z85(), "key_file": file, "public_file": public_file})
        );
    } else {
        println!("{}", pair.public);
        eprintln!(
            "emq-cli: key pair in {} (keep it private), public key in {}",
            file.display(),
            public_file.display()
        );
    }
    Ok(Exit::Ok as u8)
}

fn allow(cmd: &AllowCommand, json: bool) -> anyhow::Result<u8> {
    let list_file = match cmd {
        AllowCommand::Add { list, .. } | AllowCommand::Remove { list, .. } | AllowCommand::List { list } => list,
    };
    let mut list = curve::load_allowlist(list_file)?;
    match cmd {
        AllowCommand::Add { public_key, name, .. } => {
            list.add(curve::public_key_from_arg(public_key)?, name);
            curve::save_allowlist(&list, list_file)?;
        }
        AllowCommand::Remove { key_or_name, .. } => {
            if list.remove(key_or_name) == 0 {
                eprintln!("emq-cli: {key_or_name} is not on {}", list_file.display());
                return Ok(Exit::Usage as u8);
            }
            curve::save_allowlist(&list, list_file)?;
        }
        AllowCommand::List { .. } => {
            for (key, name) in list.entries() {
                if json {
                    println!("{}", serde_json::json!({"key": key.z85(), "name": name}));
                } else {
                    println!("{key} {name}");
                }
            }
        }
    }
    Ok(Exit::Ok as u8)
}

fn parse_json(what: &str, s: &str) -> anyhow::Result<Value> {
    serde_json::from_str(s).map_err(|e| anyhow::anyhow!("{what} is not JSON ({e}): {s}"))
}

fn send(cli: &Cli, args: &SendArgs) -> anyhow::Result<u8> {
    let mut job = match (&args.handler, args.program.is_empty()) {
        (None, false) => Job::exec(args.program.iter().cloned()),
        (Some(h), true) => Job::new(h.clone()),
        (Some(_), false) => anyhow::bail!("give either a handler or `-- PROGRAM ARGS`, not both"),
        (None, true) => anyhow::bail!("nothing to send: give a handler (e.g. emq.echo) or `-- PROGRAM ARGS`"),
    };
    if let Some(a) = &args.args {
        job = match parse_json("args", a)? {
            Value::Array(items) => job.args(items),
            one => job.arg(one),
        };
    }
    if let Some(k) = &args.kwargs {
        let Value::Object(map) = parse_json("kwargs", k)? else {
            anyhow::bail!("--kwargs must be a JSON object")
        };
        for (key, v) in map {
            job = job.kwarg(key, v);
        }
    }
    job = args.opts.apply(job)?.reply(args.wait);
    let mut client = connect(cli)?;
    let id = client.submit(&job)?;
    if !args.wait {
        if cli.json {
            println!("{}", serde_json::json!({"id": id.0}));
        } else {
            println!("{id}");
        }
        return Ok(Exit::Ok as u8);
    }
    let r = client.wait(&id, secs(args.wait_timeout)?);
    if let Err(ClientError::Timeout(_)) = &r {
        eprintln!(
            "emq-cli: no result for {id} within {}s (fetch it later with `emq-cli result {id}`)",
            args.wait_timeout
        );
        return Ok(Exit::Timeout as u8);
    }
    Ok(output::result(r, cli.json))
}
