//! The one cross-process test binary: each module drives real emq processes.

mod cli;
mod eventmq;
mod guaranteed;
mod jobmanager;
mod router;
mod security;
