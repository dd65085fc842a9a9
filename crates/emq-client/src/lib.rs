//! A blocking client for emq (and EventMQ) routers.
//!
//! ```no_run
//! use std::time::Duration;
//! use emq_client::{Client, Job};
//!
//! let mut client = Client::connect(&["tcp://127.0.0.1:47291"])?;
//! let id = client.submit(&Job::new("emq.echo").arg("hi"))?;
//! let out = client.wait(&id, Duration::from_secs(10))?;
//! assert_eq!(out.value, "hi");
//! # Ok::<(), emq_client::ClientError>(())
//! ```

mod client;
mod error;
pub mod events;
pub mod graph;
mod job;
mod links;

pub use client::{admin, Client, ClientOptions, JobStatus, Submitted, RESEND_AFTER};
/// CURVE keys and allowlists (see [`ClientOptions::curve`]).
pub use emq_net::curve;
/// The typed answers of the router (status, job details, dead letters).
pub use emq_proto::views;
pub use emq_proto::{
    printable, ContentType, ErrorCode, JobManagerState, JobState, Outcome, Value, DEFAULT_ADMIN_PORT,
    DEFAULT_BACKEND_PORT, DEFAULT_EVENTS_PORT, DEFAULT_FRONTEND_PORT,
};
pub use error::ClientError;
pub use graph::{Graph, Node};
pub use job::{Job, JobId, JobIds, JobOutput};
