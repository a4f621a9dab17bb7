//! The stable ABI between the `txform` host and its transform plugins.
//!
//! This is the one crate a plugin author depends on. A plugin is a `cdylib` crate that implements
//! [`Transform`] (a plain Rust trait) and exports it with [`export_transform!`]:
//!
//! ```
//! use txform_plugin_api::{export_transform, Output, OutRecord, Record, Transform, TransformError};
//!
//! pub struct Upper;
//!
//! impl Transform for Upper {
//!     type Config = serde_json::Value;
//!     fn new(_config: Self::Config) -> Result<Self, TransformError> { Ok(Upper) }
//!     fn transform(&mut self, batch: &[Record<'_>], out: &mut Output) -> Result<(), TransformError> {
//!         for (i, rec) in batch.iter().enumerate() {
//!             let value = rec.value().unwrap_or_default().to_ascii_uppercase();
//!             out.emit(i, OutRecord::from_input(rec).with_value(value));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_transform!(Upper);
//! ```
//!
//! The host hands each batch over as borrowed, zero-copy [`Record`] views of the fetched Kafka messages;
//! the plugin answers with owned [`OutRecord`]s, each tagged with the index of the input it came from, so
//! the host can attribute every output (and every failure) to a source offset.
//!
//! # Forwarding an input unchanged
//! A transform that passes inputs on as they are (a passthrough, a filter, a router) should call
//! [`Output::forward`] (or [`Output::forward_to`] with a [`Forward`] naming a topic or partition)
//! instead of emitting [`OutRecord::from_input`]: the host then produces the fetched message's own
//! key, value, headers and timestamp without the plugin copying them. The outcome is the same
//! either way; forwarded and emitted outputs keep the order they were made in. A host older than
//! 0.2.1 cannot forward, and gets the copy instead (rule 3 below); so does [`TestDriver`], whose
//! outputs are therefore the records a host would produce.
//!
//! # Safety net
//! A panic that crosses an `extern "C"` boundary ends the whole process. [`export_transform!`] wraps the
//! constructor and every call in `catch_unwind`, so a panic becomes an error value with `panicked = true`;
//! the host then aborts the transaction and re-creates the instance before retrying.
//!
//! # State stores
//! A transform that needs memory (counts per key, de-duplication) declares named key-value stores in
//! [`Transform::stores`], lists [`STATE_STORES`] in [`Transform::REQUIRES`], and during
//! [`Transform::transform`] calls [`Output::state_get`], [`Output::state_put`] and
//! [`Output::state_delete`] with the index of the input the access is for. The host keeps each store
//! partitioned like the source (the store an input sees belongs to its source partition, so state
//! moves with the partition on a rebalance), lets a call read its own writes, and commits every
//! change in the same Kafka transaction as the outputs and offsets: after a failed batch the retry
//! sees the state as of the last commit. Values are bytes; the host never interprets them.
//!
//! ```
//! use txform_plugin_api::{Output, OutRecord, Record, Transform, TransformError, STATE_STORES};
//!
//! struct Count;
//! impl Transform for Count {
//!     type Config = serde_json::Value;
//!     const REQUIRES: &'static [&'static str] = &[STATE_STORES];
//!     fn new(_: Self::Config) -> Result<Self, TransformError> { Ok(Count) }
//!     fn stores(&self) -> Vec<String> { vec!["counts".into()] }
//!     fn transform(&mut self, batch: &[Record<'_>], out: &mut Output) -> Result<(), TransformError> {
//!         for (i, rec) in batch.iter().enumerate() {
//!             let key = rec.key().unwrap_or_default();
//!             let n = match out.state_get("counts", i, key)? {
//!                 Some(bytes) => u64::from_be_bytes(bytes.as_slice().try_into()?) + 1,
//!                 None => 1,
//!             };
//!             out.state_put("counts", i, key, &n.to_be_bytes())?;
//!             out.emit(i, OutRecord::from_input(rec).with_value(n.to_string()));
//!         }
//!         Ok(())
//!     }
//! }
//! ```
//!
//! # Testing a transform
//! [`TestDriver`] runs batches of [`TestRecord`]s through the export macro's guard in `cargo test`, so
//! errors, panics and rejections behave as in the host, and keeps state stores as the host does
//! ([`TestDriver::state`] inspects them, [`TestDriver::restart`] re-creates the instance on them); `txform test` runs a built plugin (or a whole
//! pipeline's chain) offline on records from a JSONL file.
//!
//! # Compatibility and evolution rules
//! A plugin and a host are compatible when they were built against the same *ABI line* of this crate
//! ([`ABI_LINE`], `0.2`): any two 0.2.x versions load each other, in either direction, as long as
//! every change between them followed these rules. abi_stable checks the layouts at load time.
//!
//! 1. **Frozen value types.** [`Record`], [`Header`], [`OutRecord`], [`OutHeader`], [`Rejection`],
//!    [`CallError`] and [`PluginInfo`] never change within the line: no field added, removed,
//!    reordered or retyped. New per-record input data comes through new [`abi::Host`] methods, new
//!    per-output data through new `Host` methods that take it alongside an `OutRecord`.
//! 2. **Prefix types grow at the end.** [`abi::PluginMod`] (the root module), the vtable of
//!    [`abi::TransformObj`] (what the host calls) and the vtable of [`abi::Host`] (what the plugin
//!    calls) only gain fields or methods after their last field; nothing before moves. The root
//!    module uses `missing_field(option)`: a field an older plugin lacks reads as `None`, never a panic.
//! 3. **Every added method has a default body** (`#[sabi_trait]` runs it when the other side's vtable
//!    lacks the method): on `TransformObj` the default is what an older plugin would do (a lifecycle
//!    callback such as partitions assigned or revoked, or transaction aborted, does nothing); on `Host`
//!    it answers "not supported", and this crate degrades where that is safe (a zero-copy
//!    [`Output::forward`] becomes an emitted copy of the input) or fails the call with a message.
//! 4. **What cannot degrade is declared.** A capability a plugin cannot run without (e.g. per-partition
//!    state whose changes commit in the transaction) gets a name in [`HOST_FEATURES`] in the version
//!    that adds it; the export macro lists the ones a plugin uses in [`abi::PluginMod::requires`], and
//!    an older host, which does not know the name, refuses the plugin at load time in one line.
//! 5. **[`Output`] and [`Transform`] are not the ABI.** They live inside the plugin and may grow
//!    freely (new trait methods with default bodies); the guard maps them onto what the host offers.
//! 6. Anything else (changing a frozen type, a prefix, a signature) starts a new ABI line (0.3):
//!    abi_stable then refuses old plugins by version, with both versions in the message.
//!
//! A plugin built with `panic = "abort"` cannot have its panics caught, so the export macro records
//! `cfg!(panic = "unwind")` in [`PluginInfo::panic_unwind`] and the host refuses such a plugin.

#[allow(non_local_definitions)] // emitted by `#[sabi_trait]`
pub mod abi;
pub mod compat;
mod guard;
mod output;
mod record;
mod state;
mod test_driver;
mod transform;

pub use abi::{CallError, HostRef, PluginInfo, PluginMod, PluginModRef, TransformBox};
pub use output::{Forward, Forwarded, OutHeader, OutRecord, Output, Rejection};
pub use record::{Header, Record};
pub use state::{StateBackend, StateError, StatefulHost};
pub use test_driver::{with_views, TestDriver, TestRecord, TestState};
pub use transform::{Transform, TransformError};

/// The full version of this crate, recorded in every plugin's [`PluginInfo::api_version`].
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The ABI line: the version abi_stable compares (same 0.minor loads). Changes only when the
/// evolution rules are broken on purpose (see "Compatibility and evolution rules").
pub const ABI_LINE: &str = "0.2.0";

/// Host features a plugin may require (rule 4): `state-stores` (0.2.1) is [`Output::state_get`] and
/// friends, with changes that commit in the transaction.
pub const HOST_FEATURES: &[&str] = &[STATE_STORES];

/// The host feature of state stores; a stateful transform lists it in [`Transform::REQUIRES`].
pub const STATE_STORES: &str = "state-stores";

// Re-exported so that plugin crates need no direct dependency on them.
pub use serde;
pub use serde_json;

/// Name of the `#[no_mangle]` static that abi_stable looks up in a plugin library. It must be a literal
/// in [`export_transform!`]; a unit test pins it to abi_stable's own constant.
#[doc(hidden)]
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Implementation details used by [`export_transform!`] (and by the test fixtures that build root
/// modules by hand). Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::guard::{build_module, new_transform};
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
}

/// Exports a [`Transform`] implementation as a txform plugin.
///
/// Use it once, at the root of a `cdylib` crate. The plugin's name and version reported to the host (and
/// written into dead-letter headers) are the crate's Cargo name and version.
#[macro_export]
macro_rules! export_transform {
    ($transform:ty) => {
        /// The root module of this txform plugin, looked up by the host at load time.
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            fn plugin_info() -> $crate::PluginInfo {
                $crate::PluginInfo::new(
                    env!("CARGO_PKG_NAME"),
                    env!("CARGO_PKG_VERSION"),
                    cfg!(panic = "unwind"),
                )
            }
            fn root_module() -> $crate::PluginModRef {
                $crate::__private::build_module::<$transform>(plugin_info())
            }
            extern "C" fn load_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(root_module)
            }
            // SAFETY: `load_root_module` returns the root module built for `PluginModRef`, as
            // `from_constructor` requires.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::PluginModRef>(
                    load_root_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(
            super::ROOT_MODULE_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
