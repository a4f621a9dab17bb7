//! The consume-transform-produce loop: collect a batch, run the chain, produce, commit; abort and
//! rewind on any failure.

mod attempt;
mod batch;
mod copier;
mod failure;
mod isolate;
mod retry;
mod runner;
pub(crate) mod sink;
mod stats;
mod streak;

pub use runner::{run, RunError};
pub use stats::{AbortCause, Outcome};
