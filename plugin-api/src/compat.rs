//! Whether a loaded plugin can run in this host, beyond what abi_stable's layout check decides.
//!
//! abi_stable accepts any plugin of the same ABI line whose layouts are a prefix-compatible match, in
//! either direction. What it cannot know: whether a newer plugin needs a host feature this host lacks,
//! and whether the plugin was built so that its panics can be caught.

use crate::abi::PluginModRef;
use crate::{API_VERSION, HOST_FEATURES};

/// Why a plugin that passed the layout check is refused; `Display` is one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Built with `panic = "abort"`: a panic in it would end the host instead of failing a call.
    PanicAbort,
    /// Needs host features this host's plugin-api does not have.
    MissingFeatures {
        missing: Vec<String>,
        plugin_api: String,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::PanicAbort => f.write_str(
                "it was built with panic = \"abort\", so a panic in it would end the host; \
                 build it with panic = \"unwind\" (Cargo's default)",
            ),
            Refusal::MissingFeatures {
                missing,
                plugin_api,
            } => write!(
                f,
                "it was built against txform-plugin-api {plugin_api} and needs host features this \
                 txform lacks ({}); this host's plugin-api is {API_VERSION}: upgrade txform",
                missing.join(", ")
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// Checks a root module that abi_stable has already accepted.
pub fn check(module: PluginModRef) -> Result<(), Refusal> {
    let info = module.info();
    if !info.panic_unwind {
        return Err(Refusal::PanicAbort);
    }
    let missing: Vec<String> = module
        .requires()
        .iter()
        .filter(|feature| !HOST_FEATURES.contains(&feature.as_str()))
        .map(|feature| feature.to_string())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Refusal::MissingFeatures {
            missing,
            plugin_api: info.api_version.to_string(),
        })
    }
}

/// The plugin's configuration documentation, when it provides one (an older plugin's root module
/// may lack the function; an empty text counts as none).
pub fn config_doc(module: PluginModRef) -> Option<String> {
    let doc = (module.config_doc()?)().into_string();
    (!doc.trim().is_empty()).then_some(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{PluginInfo, PluginMod};
    use abi_stable::{prefix_type::PrefixTypeTrait, std_types::RSlice, std_types::RStr};

    fn module(panic_unwind: bool, requires: &'static [RStr<'static>]) -> PluginModRef {
        let mut info = PluginInfo::new("p", "1.0.0", panic_unwind);
        info.api_version = RStr::from_str("0.2.9");
        PluginMod {
            info,
            requires: RSlice::from_slice(requires),
            new_transform: crate::guard::new_transform::<crate::test_driver::tests::Upper>,
            config_doc: empty_doc,
        }
        .leak_into_prefix()
    }

    extern "C" fn empty_doc() -> abi_stable::std_types::RString {
        " \n".into()
    }

    #[test]
    fn panic_abort_is_refused() {
        assert_eq!(check(module(false, &[])), Err(Refusal::PanicAbort));
        assert_eq!(
            Refusal::PanicAbort.to_string(),
            "it was built with panic = \"abort\", so a panic in it would end the host; \
             build it with panic = \"unwind\" (Cargo's default)"
        );
    }

    #[test]
    fn unknown_required_features_are_named() {
        static NEEDS: [RStr<'static>; 2] = [RStr::from_str("state-v1"), RStr::from_str("x")];
        let refusal = check(module(true, &NEEDS)).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            format!(
                "it was built against txform-plugin-api 0.2.9 and needs host features this txform \
                 lacks (state-v1, x); this host's plugin-api is {API_VERSION}: upgrade txform"
            )
        );
        assert_eq!(check(module(true, &[])), Ok(()));
    }

    #[test]
    fn blank_config_doc_is_none() {
        assert_eq!(config_doc(module(true, &[])), None);
    }
}
