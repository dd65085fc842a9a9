//! emq-router as a library: configuration, the routing core and its transport.
//!
//! The binary in `bin/emq-router` only parses flags into a [`Config`] and calls
//! [`run`]. The routing decisions all live in [`core::Router`], which performs
//! no I/O and reads no clock; [`transport`] owns the sockets and the poll loop.

mod committer;
pub mod config;
mod conns;
pub mod core;
mod dashboard;
mod gate;
mod http;
pub mod journal;
pub mod metrics;
mod results;
pub mod store;
pub mod tracking;
pub mod transport;

pub use config::{Config, DashboardConfig, Journal, PostgresJournal, Security, UnknownQueuePolicy};

/// The hasher of every map in the router: fast, and seeded from the seed the
/// core is given (random in a running router, so that crafted ids cannot
/// force collisions; fixed in tests, so that runs repeat exactly).
pub(crate) type Hasher = foldhash::fast::FixedState;
/// Maps keyed by ids that peers choose.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, Hasher>;
pub(crate) type HashSet<K> = std::collections::HashSet<K, Hasher>;
pub use transport::{run, Role, RunError};
