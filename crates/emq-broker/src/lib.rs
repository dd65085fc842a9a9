//! emq-router as a library: configuration, the routing core and its transport.
//!
//! The binary in `bin/emq-router` only parses flags into a [`Config`] and calls
//! [`run`]. The routing decisions all live in [`core::Router`], which performs
//! no I/O and reads no clock; [`transport`] owns the sockets and the poll loop.

pub mod config;
pub mod core;
pub mod gate;
mod results;
mod status;
pub mod store;
pub mod tracking;
pub mod transport;

pub use config::{Config, Security, UnknownQueuePolicy};

/// Maps keyed by ids that peers choose: a fast hasher, still seeded per
/// process so that crafted ids cannot force collisions.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
pub use transport::{run, RunError};
