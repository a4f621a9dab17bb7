//! Exactly-once state stores for transforms (see ARCHITECTURE.md, "State stores"): `changelog`
//! names, creates and checks the changelog topics; `local` is the redb store with its checkpoints;
//! `restore` reads a changelog partition into it; `engine` is the per-transaction overlay and what
//! happens to it at produce, commit and abort; `memory` is the state of an offline run.

mod changelog;
mod engine;
mod local;
mod memory;
mod restore;

pub use changelog::{changelog_topic, StoreSpec};
pub use engine::State;
pub use memory::MemoryState;
pub use restore::RestoreError;
