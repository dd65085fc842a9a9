//! Handlers by name. A handler runs inside a worker process, takes the decoded
//! call and returns a value or a [`JobError`].

use std::collections::HashMap;

use emq_proto::{JobCall, Value};

/// A failed job: a message, and optionally a value (a program's output, say).
#[derive(Debug, Clone, PartialEq)]
pub struct JobError {
    /// Why it failed.
    pub message: String,
    /// What it leaves (null unless given).
    pub value: Value,
}

impl JobError {
    /// A failure with a message.
    pub fn new(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            value: Value::Null,
        }
    }

    /// A failure with a message and a value.
    pub fn with_value(message: impl Into<String>, value: Value) -> JobError {
        JobError {
            message: message.into(),
            value,
        }
    }
}

/// A job handler: called in a worker process with the decoded call.
pub type Handler = Box<dyn Fn(&JobCall) -> Result<Value, JobError> + Send + Sync>;

/// Handlers by name.
#[derive(Default)]
pub struct Registry {
    handlers: HashMap<String, Handler>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// A registry holding the built-in `emq.*` handlers.
    pub fn with_builtins() -> Registry {
        let mut r = Registry::new();
        crate::builtins::register(&mut r);
        r
    }

    /// Register `f` under `name`. EventMQ clients reach it with
    /// `path.callable` split at the last dot (`myapp.tasks.add` is path
    /// `myapp.tasks`, callable `add`).
    pub fn register(
        &mut self,
        name: impl Into<String>,
        f: impl Fn(&JobCall) -> Result<Value, JobError> + Send + Sync + 'static,
    ) -> &mut Self {
        self.handlers.insert(name.into(), Box::new(f));
        self
    }

    /// The handler registered as `name`.
    pub fn get(&self, name: &str) -> Option<&Handler> {
        self.handlers.get(name)
    }

    /// Every handler name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}
