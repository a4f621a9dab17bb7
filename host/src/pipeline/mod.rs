//! The consume-transform-produce loop: stream a batch into its transaction chunk by chunk (run the
//! chain, produce), commit; abort and rewind on any failure.

mod attempt;
mod batch;
mod copier;
mod failure;
mod finish;
mod isolate;
mod open;
mod positions;
mod retry;
mod runner;
pub(crate) mod sink;
mod stats;
mod streak;
mod stream;

pub use runner::{run, RunError};
pub use stats::{AbortCause, Outcome};
