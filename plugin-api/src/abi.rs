//! The types and the root module that cross the host/plugin boundary.
//!
//! Everything here is `#[repr(C)]` and derives `StableAbi`, so the host can check at load time that a
//! plugin agrees with it on every layout.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RSlice, RStr, RString},
    StableAbi,
};

use crate::output::Output;
use crate::record::Record;

/// The root module every plugin library exports (see [`crate::export_transform!`]).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin's name and version (its crate's Cargo name and version).
    pub info: PluginInfo,
    /// Creates a transform instance from its configuration, given as JSON text.
    ///
    /// New functions must be added after this one, so plugins built earlier keep loading.
    #[sabi(last_prefix_field)]
    pub new_transform: extern "C" fn(config_json: RStr<'_>) -> RResult<TransformBox, CallError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "txform_plugin";
    const NAME: &'static str = "txform_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// Name and version of a plugin crate.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct PluginInfo {
    pub name: RStr<'static>,
    pub version: RStr<'static>,
}

impl PluginInfo {
    pub const fn new(name: &'static str, version: &'static str) -> Self {
        PluginInfo {
            name: RStr::from_str(name),
            version: RStr::from_str(version),
        }
    }
}

/// A transform instance as the host sees it: one call per batch.
#[sabi_trait]
pub trait TransformObj: Send {
    /// Transforms `batch`, appending outputs and rejections to `out`.
    #[sabi(last_prefix_field)]
    fn transform(
        &mut self,
        batch: RSlice<'_, Record<'_>>,
        out: &mut Output,
    ) -> RResult<(), CallError>;
}

/// An owned, type-erased transform instance.
pub type TransformBox = TransformObj_TO<'static, RBox<()>>;

/// Why a plugin call failed.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The error message, with its chain of causes joined by ": ".
    pub message: RString,
    /// True when the call panicked: the instance is then poisoned and must be re-created.
    pub panicked: bool,
}

impl CallError {
    pub fn failed(message: impl Into<RString>) -> Self {
        CallError {
            message: message.into(),
            panicked: false,
        }
    }

    pub fn panicked(message: impl Into<RString>) -> Self {
        CallError {
            message: message.into(),
            panicked: true,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.panicked {
            write!(f, "panicked: {}", self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for CallError {}
