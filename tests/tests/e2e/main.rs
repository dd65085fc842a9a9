//! The one cross-process test binary: each module drives real emq processes.

mod cli;
mod eventmq;
mod jobmanager;
mod router;
