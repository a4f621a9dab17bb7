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
    std_types::{RResult, RSlice, RStr, RString, RVec},
};

use crate::abi::{
    CallError, HostRef, PluginInfo, PluginMod, PluginModRef, TransformBox, TransformObj,
    TransformObj_TO,
};
use crate::output::Output;
use crate::record::Record;
use crate::state::attached;
use crate::transform::{Transform, TransformError};

/// Builds the root module for `T`; called once by the library loader.
pub fn build_module<T: Transform>(info: PluginInfo) -> PluginModRef {
    PluginMod {
        info,
        requires: requires_of::<T>(),
        new_transform: new_transform::<T>,
        config_doc: config_doc::<T>,
    }
    .leak_into_prefix()
}

/// `T::REQUIRES` as the root module's slice, leaked once per load like the module itself.
fn requires_of<T: Transform>() -> RSlice<'static, RStr<'static>> {
    if T::REQUIRES.is_empty() {
        return RSlice::EMPTY;
    }
    let names: Vec<RStr<'static>> = T::REQUIRES.iter().map(|f| RStr::from_str(f)).collect();
    RSlice::from_slice(Vec::leak(names))
}

/// Creates a guarded instance of `T` from its JSON configuration: the root module's constructor.
pub extern "C" fn new_transform<T: Transform>(
    config_json: RStr<'_>,
) -> RResult<TransformBox, CallError> {
    create::<T>(config_json.as_str())
        .map(|instance| TransformObj_TO::from_value(instance, TD_Opaque))
        .into()
}

/// Parses the configuration and creates the instance, both under the guard.
pub(crate) fn create<T: Transform>(config_json: &str) -> Result<Guarded<T>, CallError> {
    guarded(|| {
        let config: T::Config =
            serde_json::from_str(config_json).map_err(|e| format!("invalid configuration: {e}"))?;
        T::new(config)
    })
    .map(|instance| Guarded {
        instance: ManuallyDrop::new(instance),
        out: Output::new(),
    })
}

extern "C" fn config_doc<T: Transform>() -> RString {
    // Documentation is a constant in practice; a panic here must still not cross the boundary.
    guarded(|| Ok(T::config_doc())).unwrap_or_default().into()
}

/// A transform instance whose every call, and its drop, is guarded.
pub(crate) struct Guarded<T> {
    instance: ManuallyDrop<T>,
    /// What the instance emits during a call, handed to the host once the call succeeded (so a failed
    /// call gives the host nothing); kept to reuse its allocation.
    out: Output,
}

/// The host drops instances through abi_stable's `extern "C"` destructor, where a panic aborts the
/// process: a clean stop would end in an abort. The panic is caught here and reported on stderr
/// (there is no call to return it from).
impl<T> Drop for Guarded<T> {
    fn drop(&mut self) {
        // SAFETY: `self.instance` is taken once, here, and never used again.
        let instance = unsafe { ManuallyDrop::take(&mut self.instance) };
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

impl<T: Transform> Guarded<T> {
    /// One guarded call: the transform fills `self.out`, which goes to `host` only on success.
    pub(crate) fn call(
        &mut self,
        batch: &[Record<'_>],
        mut host: HostRef<'_>,
    ) -> Result<(), CallError> {
        self.out.clear();
        let Guarded { instance, out } = self;
        // The output reaches the host's state stores during the call only.
        let result = attached(out, &mut host, |out| {
            guarded(|| instance.transform(batch, out))
        });
        match result {
            Ok(()) => out.hand_to(batch, &mut host),
            Err(_) => out.clear(),
        }
        result
    }
}

impl<T: Transform> TransformObj for Guarded<T> {
    fn transform(
        &mut self,
        batch: RSlice<'_, Record<'_>>,
        host: HostRef<'_>,
    ) -> RResult<(), CallError> {
        self.call(batch.as_slice(), host).into()
    }

    fn stores(&self) -> RVec<RString> {
        // A panic here must not cross the boundary either; the host then sees no store, and the
        // instance's first state access fails its call with the store's name.
        guarded(|| Ok(self.instance.stores()))
            .unwrap_or_default()
            .into_iter()
            .map(RString::from)
            .collect()
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
pub(crate) fn guarded<R>(f: impl FnOnce() -> Result<R, TransformError>) -> Result<R, CallError> {
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
        drop(Guarded {
            instance: ManuallyDrop::new(PanicsInDrop),
            out: Output::new(),
        });
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

#[cfg(test)]
mod forward_tests {
    use abi_stable::std_types::{ROption, RString};

    use super::*;
    use crate::abi::{Host, Host_TO};
    use crate::output::{Forward, OutRecord, Rejection};
    use crate::test_driver::{with_views, TestDriver, TestRecord};
    use crate::TransformError;

    /// Emits "e0", forwards input 1, emits "e2", forwards input 0 to topic t partition 7, forwards
    /// input 9 (past the batch), rejects input 2.
    struct Mixed;

    impl Transform for Mixed {
        type Config = serde_json::Value;
        fn new(_: Self::Config) -> Result<Self, TransformError> {
            Ok(Mixed)
        }
        fn transform(
            &mut self,
            _batch: &[Record<'_>],
            out: &mut Output,
        ) -> Result<(), TransformError> {
            out.emit(0, OutRecord::new("e0"));
            out.forward(1);
            out.emit(2, OutRecord::new("e2"));
            out.forward_to(0, Forward::to_topic("t").with_partition(7));
            out.forward(9);
            out.reject(2, "no");
            Ok(())
        }
    }

    /// What a host was handed, in order.
    #[derive(Debug, PartialEq, Eq)]
    enum Handed {
        Emit(OutRecord),
        Forward(u32, Option<String>, Option<i32>),
        Reject(u32),
    }

    /// A host that takes forwards (or, with `forwards = false`, answers as an older host does).
    struct Recording {
        forwards: bool,
        handed: Vec<Handed>,
    }

    impl Host for Recording {
        fn emit(&mut self, record: OutRecord) {
            self.handed.push(Handed::Emit(record));
        }
        fn reject(&mut self, rejection: Rejection) {
            self.handed.push(Handed::Reject(rejection.input));
        }
        fn forward(
            &mut self,
            input: u32,
            topic: ROption<RString>,
            partition: ROption<i32>,
        ) -> bool {
            if self.forwards {
                let topic = topic.map(|t| t.into_string()).into_option();
                let partition = partition.into_option();
                self.handed.push(Handed::Forward(input, topic, partition));
            }
            self.forwards
        }
    }

    fn inputs() -> Vec<TestRecord> {
        vec![
            TestRecord::value("v0").with_key("k0").with_timestamp(100),
            TestRecord::value("v1")
                .with_header("h\u{FFFD}", Some(b"x".to_vec()))
                .with_header("n", None)
                .at("src", 3, 41)
                .with_timestamp(101),
            TestRecord::tombstone(),
        ]
    }

    fn call(forwards: bool) -> Vec<Handed> {
        let mut guarded = create::<Mixed>("{}").unwrap();
        let mut host = Recording {
            forwards,
            handed: Vec::new(),
        };
        with_views(&inputs(), |views| {
            guarded
                .call(views, Host_TO::from_ptr(&mut host, TD_Opaque))
                .unwrap()
        });
        host.handed
    }

    fn emitted(input: u32, record: OutRecord) -> Handed {
        Handed::Emit(OutRecord { input, ..record })
    }

    #[test]
    fn forwards_reach_a_forwarding_host_in_order() {
        assert_eq!(
            call(true),
            [
                emitted(0, OutRecord::new("e0")),
                Handed::Forward(1, None, None),
                emitted(2, OutRecord::new("e2")),
                Handed::Forward(0, Some("t".into()), Some(7)),
                Handed::Forward(9, None, None),
                Handed::Reject(2),
            ]
        );
    }

    /// The copy an older host gets is what the host would have produced: the input's key, value,
    /// headers and timestamp, with the forward's route, in the forward's place.
    #[test]
    fn an_older_host_gets_copies_in_the_forwards_place() {
        let v1 = OutRecord::new("v1")
            .with_header("h\u{FFFD}", Some(b"x".to_vec()))
            .with_header("n", None)
            .with_timestamp(101);
        let v0 = OutRecord::new("v0")
            .with_key("k0")
            .with_timestamp(100)
            .with_topic("t")
            .with_partition(7);
        assert_eq!(
            call(false),
            [
                emitted(0, OutRecord::new("e0")),
                emitted(1, v1),
                emitted(2, OutRecord::new("e2")),
                emitted(0, v0),
                // Past the batch: an empty record the host refuses by its index.
                emitted(9, OutRecord::default()),
                Handed::Reject(2),
            ]
        );
    }

    #[test]
    fn the_test_driver_shows_forwards_as_the_records_produced() {
        let out = TestDriver::<Mixed>::new("{}")
            .unwrap()
            .run(&inputs())
            .unwrap();
        let records: Vec<Handed> = out.records().iter().cloned().map(Handed::Emit).collect();
        let expected: Vec<Handed> = call(false)
            .into_iter()
            .filter(|h| !matches!(h, Handed::Reject(_)))
            .collect();
        assert_eq!(records, expected);
        assert!(out.forwards().is_empty());
    }
}
