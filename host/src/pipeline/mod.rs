//! The consume-transform-produce loop: collect a batch, run the chain, produce, commit; abort and
//! rewind on any failure.

mod batch;
mod retry;
mod runner;
mod sink;
mod stats;

pub use runner::{run, RunError};
