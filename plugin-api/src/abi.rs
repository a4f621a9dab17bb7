//! The types and the root module that cross the host/plugin boundary.
//!
//! Everything here derives `StableAbi`, so the host checks at load time that a plugin agrees with it
//! on every layout. What may grow, and how, is in the crate docs ("Evolution rules"): the root module
//! and both trait objects are prefix types (fields and methods appended after the last prefix field
//! are optional: an older library simply lacks them); the value types are frozen.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    sabi_trait,
    sabi_types::{RMut, VersionStrings},
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

use crate::output::{OutRecord, Rejection};
use crate::record::Record;

/// The root module every plugin library exports (see [`crate::export_transform!`]).
///
/// Fields up to `new_transform` are the frozen prefix every 0.2 plugin has. Fields after it are
/// optional: the host reads them as `Option`, and one an older plugin lacks is `None`, never a crash.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(option))]
pub struct PluginMod {
    /// The plugin's name and version, and how it was built.
    pub info: PluginInfo,
    /// Host features this plugin cannot run without (see [`crate::HOST_FEATURES`]). A host that
    /// lacks one refuses the plugin at load time, naming it.
    pub requires: RSlice<'static, RStr<'static>>,
    /// Creates a transform instance from its configuration, given as JSON text.
    #[sabi(last_prefix_field)]
    pub new_transform: extern "C" fn(config_json: RStr<'_>) -> RResult<TransformBox, CallError>,
    /// The plugin's configuration documentation (see [`crate::Transform::config_doc`]), shown by
    /// `txform inspect`. Added in 0.2.0 after the prefix; optional.
    pub config_doc: extern "C" fn() -> RString,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "txform_plugin";
    const NAME: &'static str = "txform_plugin";
    /// The ABI line, not the crate's full version: abi_stable accepts a library of the same 0.minor
    /// (any patch), which is what the evolution rules promise.
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(crate::ABI_LINE);
}

/// Name and version of a plugin crate, and the facts about its build that the host checks. Frozen.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct PluginInfo {
    pub name: RStr<'static>,
    pub version: RStr<'static>,
    /// The full version of txform-plugin-api the plugin was built against.
    pub api_version: RStr<'static>,
    /// `cfg!(panic = "unwind")` in the plugin's build: with `panic = "abort"` a panic cannot be
    /// caught, and would end the host.
    pub panic_unwind: bool,
}

impl PluginInfo {
    /// Info of a plugin built against this plugin-api, with the build's panic strategy.
    pub const fn new(name: &'static str, version: &'static str, panic_unwind: bool) -> Self {
        PluginInfo {
            name: RStr::from_str(name),
            version: RStr::from_str(version),
            api_version: RStr::from_str(crate::API_VERSION),
            panic_unwind,
        }
    }
}

/// A transform instance as the host sees it: one call per batch.
///
/// Methods after `transform` must have a default body: the host runs it when an older plugin's
/// vtable lacks the method (e.g. a lifecycle callback's default does nothing).
#[sabi_trait]
pub trait TransformObj: Send {
    /// Transforms `batch`, handing every output and rejection to `host`.
    #[sabi(last_prefix_field)]
    fn transform(
        &mut self,
        batch: RSlice<'_, Record<'_>>,
        host: HostRef<'_>,
    ) -> RResult<(), CallError>;

    /// Names of the state stores this instance reads and writes through [`Host::state_get`] and
    /// friends (added in 0.2.1). The host creates or checks one changelog topic per name and restores
    /// each store before the instance sees a record of its partition. An older plugin has none.
    fn stores(&self) -> RVec<RString> {
        RVec::new()
    }
}

/// An owned, type-erased transform instance.
pub type TransformBox = TransformObj_TO<'static, RBox<()>>;

/// The host's side of one transform call: where outputs and rejections go.
///
/// Implemented by the host (and by [`crate::Output`], which the test driver uses). New host services
/// (zero-copy forwarding, per-partition state, more per-record data) are methods added after
/// `reject`, each with a default body that says "not supported": a newer plugin in an older host
/// gets that answer and degrades or fails its call, instead of crashing.
#[sabi_trait]
pub trait Host {
    /// Takes one output record (its `input` is already set).
    fn emit(&mut self, record: OutRecord);
    /// Takes one rejection of an input record.
    #[sabi(last_prefix_field)]
    fn reject(&mut self, rejection: Rejection);

    /// Produces the input at `input` unchanged (key, value, headers, timestamp), without the plugin
    /// copying its bytes; `topic` and `partition` override the host's defaults as in [`OutRecord`].
    /// Added in 0.2.1. Returns false when the host cannot forward (an older host): the plugin then
    /// emits a copy instead.
    fn forward(&mut self, input: u32, topic: ROption<RString>, partition: ROption<i32>) -> bool {
        let _ = (input, topic, partition);
        false
    }

    /// The value of `key` in the state store `store`, in the partition of the input at `input` (the
    /// source partition that record came from), as of the last commit plus this transaction's own
    /// writes. Added in 0.2.1, with the `state-stores` host feature.
    fn state_get(
        &mut self,
        store: RStr<'_>,
        input: u32,
        key: RSlice<'_, u8>,
    ) -> RResult<ROption<RVec<u8>>, RString> {
        let _ = (store, input, key);
        RResult::RErr(RString::from(NO_STATE))
    }

    /// Sets `key` to `value` in `store`, in the partition of the input at `input`. The change
    /// commits with the transaction's outputs and offsets, or vanishes with its abort.
    fn state_put(
        &mut self,
        store: RStr<'_>,
        input: u32,
        key: RSlice<'_, u8>,
        value: RSlice<'_, u8>,
    ) -> RResult<(), RString> {
        let _ = (store, input, key, value);
        RResult::RErr(RString::from(NO_STATE))
    }

    /// Deletes `key` from `store`, in the partition of the input at `input` (a tombstone in the
    /// changelog).
    fn state_delete(
        &mut self,
        store: RStr<'_>,
        input: u32,
        key: RSlice<'_, u8>,
    ) -> RResult<(), RString> {
        let _ = (store, input, key);
        RResult::RErr(RString::from(NO_STATE))
    }
}

/// What a host without state stores answers (see rule 4 of the evolution rules: a plugin that uses
/// state requires the `state-stores` feature, so only a misbuilt plugin ever sees this).
pub const NO_STATE: &str = "this host has no state stores";

/// The host object as passed to one call.
pub type HostRef<'a> = Host_TO<'a, RMut<'a, ()>>;

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
