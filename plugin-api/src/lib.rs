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
//! # Safety net
//! A panic that crosses an `extern "C"` boundary ends the whole process. [`export_transform!`] wraps the
//! constructor and every call in `catch_unwind`, so a panic becomes an error value with `panicked = true`;
//! the host then aborts the transaction and re-creates the instance before retrying.
//!
//! # Compatibility
//! The host checks, at load time, that the plugin was built against a compatible version of this crate
//! (for 0.x: same minor version, patch at least the host's) and that every type crossing the boundary has
//! the same layout. Evolution rules: never remove or reorder fields of the types in [`abi`]; new root-module
//! functions go after the last prefix field of [`abi::PluginMod`] and are optional for old plugins.

#[allow(non_local_definitions)] // emitted by `#[sabi_trait]`
pub mod abi;
mod guard;
mod output;
mod record;
mod transform;

pub use abi::{CallError, PluginInfo, PluginMod, PluginModRef, TransformBox};
pub use output::{OutHeader, OutRecord, Output, Rejection};
pub use record::{Header, Record};
pub use transform::{Transform, TransformError};

// Re-exported so that plugin crates need no direct dependency on them.
pub use serde;
pub use serde_json;

/// Name of the `#[no_mangle]` static that abi_stable looks up in a plugin library. It must be a literal
/// in [`export_transform!`]; a unit test pins it to abi_stable's own constant.
#[doc(hidden)]
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Implementation details used by [`export_transform!`]. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::guard::build_module;
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
                $crate::PluginInfo::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
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
