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
//!     emq_worker::main(registry, || emq_worker::Config::default())
//! }
//! ```
//!
//! Workers are the same binary re-executed in worker mode (see
//! ARCHITECTURE.md), so [`main`] must run before the program starts threads.

mod builtins;
pub mod config;
pub mod core;
mod ipc;
mod pool;
mod registry;
pub mod transport;
mod worker;

pub use config::{Config, ConfigError};
pub use emq_proto::{JobCall, Value};
pub use registry::{Handler, JobError, Registry};
pub use transport::{run, RunError};

/// Entry point for jobmanager binaries. In a worker process (re-executed by
/// the pool) it runs jobs from `registry` until its parent closes the pipe;
/// otherwise it calls `config()` and runs the jobmanager. Never returns in a
/// worker.
pub fn main(registry: Registry, config: impl FnOnce() -> Config) -> std::process::ExitCode {
    if worker::is_worker_process() {
        worker::run(registry);
    }
    match run(config(), registry) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
