//! The plugin-side adapter between [`Transform`] and the ABI: it turns errors and panics into
//! [`CallError`] values, because a panic crossing `extern "C"` ends the host process.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RResult, RSlice, RStr},
};

use crate::abi::{
    CallError, PluginInfo, PluginMod, PluginModRef, TransformBox, TransformObj, TransformObj_TO,
};
use crate::output::Output;
use crate::record::Record;
use crate::transform::{Transform, TransformError};

/// Builds the root module for `T`; called once by the library loader.
pub fn build_module<T: Transform>(info: PluginInfo) -> PluginModRef {
    PluginMod {
        info,
        new_transform: new_transform::<T>,
    }
    .leak_into_prefix()
}

extern "C" fn new_transform<T: Transform>(
    config_json: RStr<'_>,
) -> RResult<TransformBox, CallError> {
    let created = guarded(|| {
        let config: T::Config = serde_json::from_str(config_json.as_str())
            .map_err(|e| format!("invalid configuration: {e}"))?;
        T::new(config)
    });
    created
        .map(|instance| TransformObj_TO::from_value(Guarded(instance), TD_Opaque))
        .into()
}

/// A transform instance whose every call is guarded.
struct Guarded<T>(T);

impl<T: Transform> TransformObj for Guarded<T> {
    fn transform(
        &mut self,
        batch: RSlice<'_, Record<'_>>,
        out: &mut Output,
    ) -> RResult<(), CallError> {
        guarded(|| self.0.transform(batch.as_slice(), out)).into()
    }
}

/// Runs `f`, turning its error or panic into a [`CallError`].
fn guarded<R>(f: impl FnOnce() -> Result<R, TransformError>) -> Result<R, CallError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(CallError::failed(error_chain(error.as_ref()))),
        Err(payload) => Err(CallError::panicked(panic_message(payload.as_ref()))),
    }
}

/// The error's message followed by its sources, joined by ": ".
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_panics_become_call_errors() {
        let err = guarded::<()>(|| Err("bad record".into())).unwrap_err();
        assert_eq!(err, CallError::failed("bad record"));
        let err = guarded::<()>(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(err, CallError::panicked("boom 7"));
    }
}
