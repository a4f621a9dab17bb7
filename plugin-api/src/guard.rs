//! The plugin-side adapter between [`Transform`] and the ABI: it turns errors and panics into
//! [`CallError`] values, because a panic crossing `extern "C"` ends the host process.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::panic::{self, catch_unwind, AssertUnwindSafe};
use std::sync::Once;

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
        .map(|instance| {
            TransformObj_TO::from_value(Guarded(ManuallyDrop::new(instance)), TD_Opaque)
        })
        .into()
}

/// A transform instance whose every call, and its drop, is guarded.
struct Guarded<T>(ManuallyDrop<T>);

/// The host drops instances through abi_stable's `extern "C"` destructor, where a panic aborts the
/// process: a clean stop would end in an abort. The panic is caught here and reported on stderr
/// (there is no call to return it from).
impl<T> Drop for Guarded<T> {
    fn drop(&mut self) {
        // SAFETY: `self.0` is taken once, here, and never used again.
        let instance = unsafe { ManuallyDrop::take(&mut self.0) };
        if let Err(error) = guarded(move || {
            drop(instance);
            Ok(())
        }) {
            eprintln!(
                "txform-plugin-api: a transform instance panicked while being dropped: {}",
                error.message
            );
        }
    }
}

impl<T: Transform> TransformObj for Guarded<T> {
    fn transform(
        &mut self,
        batch: RSlice<'_, Record<'_>>,
        out: &mut Output,
    ) -> RResult<(), CallError> {
        guarded(|| self.0.transform(batch.as_slice(), out)).into()
    }
}

thread_local! {
    /// True while a guarded call runs on this thread.
    static IN_GUARD: Cell<bool> = const { Cell::new(false) };
    /// Where the last guarded panic happened, recorded by the panic hook.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A plugin has its own copy of std, hence its own panic hook. Inside guarded calls the hook only
/// records the location (the host logs the panic with it, in its own log format); elsewhere (threads
/// the plugin started itself) the default hook still reports.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default_hook = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_GUARD.with(Cell::get) {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_LOCATION.with(|slot| *slot.borrow_mut() = location);
            } else {
                default_hook(info);
            }
        }));
    });
}

/// Runs `f`, turning its error or panic into a [`CallError`].
fn guarded<R>(f: impl FnOnce() -> Result<R, TransformError>) -> Result<R, CallError> {
    install_panic_hook();
    let was_guarded = IN_GUARD.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_GUARD.with(|g| g.set(was_guarded));
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(CallError::failed(error_chain(error.as_ref()))),
        Err(payload) => {
            let mut message = panic_message(payload.as_ref());
            if let Some(location) = PANIC_LOCATION.with(|slot| slot.borrow_mut().take()) {
                message.push_str(&format!(" (at {location})"));
            }
            Err(CallError::panicked(message))
        }
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

    struct PanicsInDrop;

    impl Drop for PanicsInDrop {
        fn drop(&mut self) {
            panic!("drop");
        }
    }

    #[test]
    fn a_panic_in_drop_is_caught() {
        drop(Guarded(ManuallyDrop::new(PanicsInDrop)));
    }

    #[test]
    fn errors_and_panics_become_call_errors() {
        let err = guarded::<()>(|| Err("bad record".into())).unwrap_err();
        assert_eq!(err, CallError::failed("bad record"));
        let line = line!() + 1;
        let err = guarded::<()>(|| panic!("boom {}", 7)).unwrap_err();
        let expected = format!("boom 7 (at {}:{line})", file!());
        assert_eq!(err, CallError::panicked(expected));
    }
}
