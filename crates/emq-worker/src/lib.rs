//! The emq jobmanager as a library.
//!
//! Build your own jobmanager binary by registering handlers and calling
//! [`main`]:
//!
//! ```no_run
//! use emq_worker::{Registry, JobError};
//!
//! fn main() -> std::process::ExitCode {
//!     let mut registry = Registry::with_builtins();
//!     registry.register("myapp.add", |call| {
//!         let a = call.args.first().and_then(|v| v.as_i64()).ok_or_else(|| JobError::new("need two numbers"))?;
//!         let b = call.args.get(1).and_then(|v| v.as_i64()).ok_or_else(|| JobError::new("need two numbers"))?;
//!         Ok((a + b).into())
//!     });
//!     emq_worker::main(registry)
//! }
//! ```
//!
//! That binary takes the same flags, config file, `--help` and logging as
//! the stock `emq-jobmanager`, and declares its handlers to the router, which
//! then sends it only jobs it can run. Workers are the same binary
//! re-executed in worker mode (see ARCHITECTURE.md), so [`main`] must run
//! before the program starts threads.

mod builtins;
mod cli;
pub mod config;
pub mod core;
mod ipc;
mod metrics;
mod pool;
mod queue;
mod registry;
pub mod transport;
mod worker;

pub use config::{Config, ConfigError};
pub use emq_proto::{JobCall, Value};
pub use registry::{Handler, JobError, Registry};
pub use transport::{run, RunError};

/// Entry point for jobmanager binaries: the stock command line (flags,
/// `--config` file, `--help`), logging, then [`run`]. In a worker process
/// (re-executed by the pool) it runs jobs from `registry` until its parent
/// closes the pipe, and never returns. Exit codes: 0 stopped, 1 failed (the
/// reason on stderr), 64 bad usage.
pub fn main(registry: Registry) -> std::process::ExitCode {
    if worker::is_worker_process() {
        worker::run(registry);
    }
    let config = cli::config_from_args();
    emq_cmd::init_logging("info");
    finish(run(config, registry))
}

/// Like [`main`], with a configuration the program makes itself instead of
/// the command line's.
pub fn main_with(registry: Registry, config: impl FnOnce() -> Config) -> std::process::ExitCode {
    if worker::is_worker_process() {
        worker::run(registry);
    }
    finish(run(config(), registry))
}

fn finish(result: Result<(), RunError>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", emq_cmd::program_name());
            std::process::ExitCode::FAILURE
        }
    }
}
