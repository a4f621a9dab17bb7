//! Transform plugins: loading cdylib files through the stable ABI and running them as a chain.
//!
//! This is the only part of the host that knows abi_stable; the rest sees [`Chain`] with plain
//! `Record` views in and [`Produced`] outputs (built `OutRecord`s, forwarded inputs) out.

mod call_host;
mod chain;
mod inspect;
mod loader;
mod produced;

pub use call_host::{NoState, StateAccess};
pub use chain::{Chain, ChainError, ChainOutput, Rejected, StageFailure};
pub use inspect::inspect;
pub use loader::{load_plugin, LoadError};
pub use produced::Produced;
