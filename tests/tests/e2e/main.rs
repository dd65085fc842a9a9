//! The one cross-process test binary: each module drives real emq processes.

mod cli;
mod jobmanager;
mod router;
