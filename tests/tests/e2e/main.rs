//! The one cross-process test binary: each module drives real emq processes.

// A test fails by panicking, helpers included.
#![allow(clippy::unwrap_used)]

mod cli;
mod dashboard;
mod eventmq;
mod flow;
mod graphs;
mod guaranteed;
mod ha;
mod jobmanager;
mod network;
mod observe;
mod router;
mod schedules;
mod security;
