//! `emq-jobmanager`: the stock jobmanager with the built-in handlers. The
//! command line, logging and the re-executed worker processes are all
//! `emq_worker::main`'s, which any jobmanager binary with its own handlers
//! shares.

use std::process::ExitCode;

fn main() -> ExitCode {
    emq_worker::main(emq_worker::Registry::with_builtins())
}
