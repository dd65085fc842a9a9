//! A jobmanager with its own Rust handlers: `myapp.tasks.add` and
//! `myapp.tasks.greet`, beside emq's built-ins. It takes the same flags,
//! config file, `--help` and logging as `emq-jobmanager`, and declares its
//! handlers to the router.

use std::process::ExitCode;

use emq_worker::{JobError, Registry};

fn main() -> ExitCode {
    let mut registry = Registry::with_builtins();
    registry.register("myapp.tasks.add", |call| {
        let mut sum = 0i64;
        for arg in &call.args {
            sum += arg.as_i64().ok_or_else(|| JobError::new(format!("not a number: {arg}")))?;
        }
        Ok(sum.into())
    });
    registry.register("myapp.tasks.greet", |call| {
        let name = call.kwargs.get("name").and_then(|v| v.as_str()).unwrap_or("world");
        Ok(serde_json::json!(format!("hello, {name}")))
    });
    emq_worker::main(registry)
}
