//! The txform host as a library: the `txform` binary is a thin CLI over these modules, and the
//! benchmarks and tests use them directly. See ARCHITECTURE.md for the map and its invariants.

pub mod allocator;
pub mod config;
pub mod instance_id;
pub mod kafka;
pub mod log_format;
pub mod metrics;
pub mod offline;
pub mod pipeline;
pub mod plugin;
pub mod redact;
pub mod scaffold;
pub mod shutdown;
pub mod state;
