//! `emq-cli`: everything is in the library (`emq_cli`), so that its commands
//! and exit codes are tested without a shell.

fn main() -> std::process::ExitCode {
    emq_cli::main()
}
