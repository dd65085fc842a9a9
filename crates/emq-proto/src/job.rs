//! Job bodies and job results: what travels inside REQUEST and REPLY.
//!
//! A body is EventMQ's `["run", {"callable", "path", "args", "kwargs", ...}]`,
//! encoded as JSON (EventMQ's only encoding) or MessagePack (emq's native one).
//! Which of the two is never guessed from the bytes: REQUEST says it in its
//! `content-type` header, REPLY in its content-type frame.

use serde::{Deserialize, Serialize};
use serde_json::Map;

use crate::DecodeError;

/// Dynamic values inside job bodies and results.
pub use serde_json::Value;

/// Encoding of a body or result.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    /// JSON: EventMQ's only encoding, and the default.
    #[default]
    #[strum(to_string = "json", serialize = "application/json")]
    Json,
    /// MessagePack.
    #[strum(to_string = "msgpack", serialize = "application/msgpack")]
    MsgPack,
}

impl ContentType {
    /// The name as it travels (`json`, `msgpack`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// `json`, `msgpack` or their MIME names.
    pub fn parse(s: &str) -> Option<ContentType> {
        s.parse().ok()
    }

    fn encode<T: Serialize>(self, value: &T) -> Vec<u8> {
        match self {
            // Serializing a Value-only structure to JSON cannot fail.
            ContentType::Json => serde_json::to_vec(value).unwrap_or_default(),
            ContentType::MsgPack => rmp_serde::to_vec_named(value).unwrap_or_default(),
        }
    }

    fn decode<'a, T: Deserialize<'a>>(self, what: &'static str, bytes: &'a [u8]) -> Result<T, DecodeError> {
        match self {
            ContentType::Json => serde_json::from_slice(bytes).map_err(|e| DecodeError::bad(what, e)),
            ContentType::MsgPack => rmp_serde::from_slice(bytes).map_err(|e| DecodeError::bad(what, e)),
        }
    }
}

/// A call to a named handler: the decoded body of a REQUEST.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobCall {
    /// Handler name. EventMQ's `path` + `callable` map to `path.callable`
    /// (`pkg.mod:Class` + `run` -> `pkg.mod:Class.run`).
    pub handler: String,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
    /// EventMQ's class arguments, passed through for handlers that want them.
    pub class_args: Vec<Value>,
    /// EventMQ's class keyword arguments, passed through likewise.
    pub class_kwargs: Map<String, Value>,
    /// The job's id (its REQUEST's msgid), filled in by the worker that runs
    /// it, for handlers that need an idempotency key. Not part of the body.
    pub id: String,
}

/// The "run" parameters as they are written: borrowed from the call.
#[derive(Serialize)]
struct RunParamsRef<'a> {
    callable: &'a str,
    path: &'a str,
    args: &'a [Value],
    kwargs: &'a Map<String, Value>,
    class_args: &'a [Value],
    class_kwargs: &'a Map<String, Value>,
}

/// Only the handler's name, read without keeping the arguments.
#[derive(Deserialize)]
struct RunTarget {
    callable: String,
    #[serde(default)]
    path: String,
}

/// The "run" parameters as they are read.
#[derive(Deserialize)]
struct RunParams {
    callable: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    args: Vec<Value>,
    #[serde(default)]
    kwargs: Map<String, Value>,
    #[serde(default)]
    class_args: Vec<Value>,
    #[serde(default)]
    class_kwargs: Map<String, Value>,
}

impl JobCall {
    /// A call to `handler` with no arguments.
    pub fn new(handler: impl Into<String>) -> JobCall {
        JobCall {
            handler: handler.into(),
            ..JobCall::default()
        }
    }

    /// The REQUEST body: EventMQ's `["run", {...}]` in `ct`.
    pub fn encode(&self, ct: ContentType) -> Vec<u8> {
        let (path, callable) = self.handler.rsplit_once('.').unwrap_or(("", &self.handler));
        let params = RunParamsRef {
            callable,
            path,
            args: &self.args,
            kwargs: &self.kwargs,
            class_args: &self.class_args,
            class_kwargs: &self.class_kwargs,
        };
        ct.encode(&("run", params))
    }

    /// A call from a REQUEST body in `ct` (never guessed).
    pub fn decode(body: &[u8], ct: ContentType) -> Result<JobCall, DecodeError> {
        let (subcommand, p): (String, RunParams) = ct.decode("job body", body)?;
        if subcommand != "run" {
            return Err(DecodeError::bad(
                "job body",
                format!("unknown subcommand {subcommand:?}, expected \"run\""),
            ));
        }
        if p.callable.is_empty() {
            return Err(DecodeError::bad("job body", "empty callable"));
        }
        let handler = handler_name(p.path, p.callable);
        Ok(JobCall {
            handler,
            args: p.args,
            kwargs: p.kwargs,
            class_args: p.class_args,
            class_kwargs: p.class_kwargs,
            id: String::new(),
        })
    }
}

impl JobCall {
    /// The same REQUEST body with `extra` added to its keyword arguments
    /// (replacing any of the same name): what a graph's job receives from
    /// its parents.
    pub fn add_kwargs(body: &[u8], ct: ContentType, extra: Map<String, Value>) -> Result<Vec<u8>, DecodeError> {
        let mut call = JobCall::decode(body, ct)?;
        call.kwargs.extend(extra);
        Ok(call.encode(ct))
    }
}

fn handler_name(path: String, callable: String) -> String {
    if path.is_empty() {
        callable
    } else {
        format!("{path}.{callable}")
    }
}

impl JobCall {
    /// The handler a REQUEST body calls, without decoding its arguments into
    /// values: what the router reads to route a job to a jobmanager that has
    /// its handler.
    pub fn handler_of(body: &[u8], ct: ContentType) -> Result<String, DecodeError> {
        let (subcommand, target): (String, RunTarget) = ct.decode("job body", body)?;
        if subcommand != "run" || target.callable.is_empty() {
            return Err(DecodeError::bad("job body", "not a \"run\" call with a callable"));
        }
        Ok(handler_name(target.path, target.callable))
    }
}

/// How a job attempt ended.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    serde::Serialize,
    serde::Deserialize,
)]
#[strum(serialize_all = "kebab-case")]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The handler returned a value.
    Ok,
    /// The handler returned an error (or the program exited non-zero).
    Failed,
    /// The worker process died while running the job.
    Crashed,
    /// The job ran past its timeout and was killed.
    #[strum(to_string = "timeout")]
    #[serde(rename = "timeout")]
    TimedOut,
    /// No handler of that name on the jobmanager.
    UnknownHandler,
    /// The body could not be decoded by the jobmanager.
    BadRequest,
    /// Cancelled before it ran.
    Cancelled,
    /// Replaced, before it ran, by a newer job of the same `coalesce` key
    /// (emq extension).
    Superseded,
    /// Not started by its expiry time, so never run (emq extension).
    Expired,
}

impl Outcome {
    /// The outcome as it travels (`ok`, `failed`, `timeout`, ...).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// An outcome from its text.
    pub fn parse(s: &str) -> Option<Outcome> {
        s.parse().ok()
    }

    /// The handler returned a value.
    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }

    /// The job did not do its work: it failed, crashed, timed out, found no
    /// handler, could not be decoded or expired. (Not a cancellation or a
    /// supersession: somebody chose those.)
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::Failed
                | Outcome::Crashed
                | Outcome::TimedOut
                | Outcome::UnknownHandler
                | Outcome::BadRequest
                | Outcome::Expired
        )
    }

    /// Whether another attempt could end differently (the worker, not the job,
    /// was the problem, or the job may be flaky).
    pub fn is_retryable(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::Crashed | Outcome::TimedOut)
    }
}

/// The decoded result of a job: `{"value": v}` on success (EventMQ's shape),
/// `{"error": "...", "value": v}` otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    /// How it ended.
    pub outcome: Outcome,
    /// What the handler returned (or a failure's value, e.g. a program's output).
    pub value: Value,
    /// Why it failed.
    pub error: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ResultBody {
    #[serde(default)]
    value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl JobResult {
    /// A success with its value.
    pub fn ok(value: Value) -> JobResult {
        JobResult {
            outcome: Outcome::Ok,
            value,
            error: None,
        }
    }

    /// A failure with its message.
    pub fn failed(outcome: Outcome, error: impl Into<String>) -> JobResult {
        JobResult {
            outcome,
            value: Value::Null,
            error: Some(error.into()),
        }
    }

    /// The REPLY body in `ct`.
    pub fn encode_body(&self, ct: ContentType) -> Vec<u8> {
        ct.encode(&ResultBody {
            value: self.value.clone(),
            error: self.error.clone(),
        })
    }

    /// A result from a REPLY body in `ct`.
    pub fn decode_body(outcome: Outcome, body: &[u8], ct: ContentType) -> Result<JobResult, DecodeError> {
        let b: ResultBody = ct.decode("result body", body)?;
        Ok(JobResult {
            outcome,
            value: b.value,
            error: b.error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_eventmq_json_body() {
        let body = br#"["run", {"callable": "add", "path": "myapp.tasks", "args": [1, 2], "kwargs": {"x": 3}, "class_args": [], "class_kwargs": {}}]"#;
        let call = JobCall::decode(body, ContentType::Json).unwrap();
        assert_eq!(call.handler, "myapp.tasks.add");
        assert_eq!(call.args, vec![json!(1), json!(2)]);
        assert_eq!(call.kwargs["x"], json!(3));
    }

    #[test]
    fn the_handler_is_read_without_the_arguments() {
        let mut call = JobCall::new("myapp.tasks.add");
        call.args.push(json!([1, {"deep": [2, 3]}]));
        call.kwargs.insert("k".into(), json!("v"));
        for ct in [ContentType::Json, ContentType::MsgPack] {
            assert_eq!(JobCall::handler_of(&call.encode(ct), ct).unwrap(), "myapp.tasks.add");
        }
        let eventmq = br#"["run", {"callable": "add", "path": "myapp.tasks", "args": [1]}]"#;
        assert_eq!(
            JobCall::handler_of(eventmq, ContentType::Json).unwrap(),
            "myapp.tasks.add"
        );
        assert!(JobCall::handler_of(b"[\"run\", {}]", ContentType::Json).is_err());
        assert!(JobCall::handler_of(b"garbage", ContentType::Json).is_err());
    }

    #[test]
    fn msgpack_round_trip_and_no_cross_guessing() {
        let mut call = JobCall::new("emq.echo");
        call.args.push(json!("hi"));
        let packed = call.encode(ContentType::MsgPack);
        assert_eq!(JobCall::decode(&packed, ContentType::MsgPack).unwrap(), call);
        // The same bytes are never silently accepted as the other encoding.
        assert!(JobCall::decode(&packed, ContentType::Json).is_err());
        let json = call.encode(ContentType::Json);
        assert!(JobCall::decode(&json, ContentType::MsgPack).is_err());
    }

    #[test]
    fn rejects_bad_bodies() {
        for body in [
            &b"not json"[..],
            b"[]",
            b"[\"walk\", {\"callable\": \"x\"}]",
            b"[\"run\", {\"callable\": \"\"}]",
            b"\xff\xfe",
        ] {
            assert!(JobCall::decode(body, ContentType::Json).is_err(), "{body:?}");
        }
    }

    #[test]
    fn result_bodies() {
        let ok = JobResult::ok(json!({"n": 1}));
        assert_eq!(ok.encode_body(ContentType::Json), br#"{"value":{"n":1}}"#);
        let bad = JobResult::failed(Outcome::Failed, "boom");
        for ct in [ContentType::Json, ContentType::MsgPack] {
            let body = bad.encode_body(ct);
            assert_eq!(JobResult::decode_body(Outcome::Failed, &body, ct).unwrap(), bad);
        }
    }
}
