//! State stores as a plugin sees them: [`Output::state_get`] and friends reach the host of the
//! current call, which keeps the store partitioned like the source and commits every change with the
//! transaction (see the crate docs, "State stores").

use std::ptr::NonNull;

use abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString, RVec};

use crate::abi::{Host, HostRef};
use crate::output::{index_u32, OutRecord, Output, Rejection};

/// Why a state operation failed. A transform usually returns it with `?`: the call fails and the host
/// aborts the transaction, so no change of the batch survives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// Used outside a transform call (the `Output` is not attached to a host).
    OutsideCall,
    /// The host refused: an undeclared store, an input index outside the batch, a host without
    /// state stores, or its local store failed.
    Host { store: String, message: String },
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::OutsideCall => {
                f.write_str("state stores can only be used during a transform call")
            }
            StateError::Host { store, message } => write!(f, "state store `{store}`: {message}"),
        }
    }
}

impl std::error::Error for StateError {}

/// The host of the call in progress, reachable from the plugin's [`Output`] while the call runs.
///
/// Only [`attached`] sets it, for the duration of one call, so the pointer never outlives the
/// `HostRef` it points to; the lifetime is erased only to store it in the reused `Output`.
#[derive(Debug, Default)]
pub(crate) struct CallHost(Option<NonNull<HostRef<'static>>>);

// SAFETY: the pointer is set and used only on the thread of the call that attached it, and cleared
// before that call returns; an `Output` moved to another thread carries `None`.
unsafe impl Send for CallHost {}

/// Runs `f` with `out` attached to `host`, detaching it afterwards. `f` must not unwind (the guard
/// runs the transform under `catch_unwind` inside it); if it did, the detach still runs.
pub(crate) fn attached<R>(
    out: &mut Output,
    host: &mut HostRef<'_>,
    f: impl FnOnce(&mut Output) -> R,
) -> R {
    struct Detach<'o>(&'o mut Output);
    impl Drop for Detach<'_> {
        fn drop(&mut self) {
            self.0.call_host = CallHost(None);
        }
    }
    out.call_host = CallHost(Some(NonNull::from(host).cast()));
    let detach = Detach(out);
    f(detach.0)
}

impl Output {
    /// The host of the current call, if any.
    fn host(&mut self) -> Result<&mut HostRef<'static>, StateError> {
        match self.call_host.0 {
            // SAFETY: set by `attached` from a live `&mut HostRef` that outlives the call, and
            // cleared before the call returns; `&mut self` makes this the only use at a time.
            Some(mut host) => Ok(unsafe { host.as_mut() }),
            None => Err(StateError::OutsideCall),
        }
    }

    /// The value of `key` in `store`, in the partition of the input at index `input` (its source
    /// partition), as of the last commit plus this batch's own writes.
    pub fn state_get(
        &mut self,
        store: &str,
        input: usize,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        let answer = self.host()?.state_get(
            RStr::from_str(store),
            index_u32(input),
            RSlice::from_slice(key),
        );
        refused(store, answer).map(|value| value.into_option().map(|v| v.into_vec()))
    }

    /// Sets `key` to `value` in `store`, in the partition of the input at `input`. The change
    /// commits with the batch's outputs and offsets, or vanishes with its abort.
    pub fn state_put(
        &mut self,
        store: &str,
        input: usize,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        let answer = self.host()?.state_put(
            RStr::from_str(store),
            index_u32(input),
            RSlice::from_slice(key),
            RSlice::from_slice(value),
        );
        refused(store, answer)
    }

    /// Deletes `key` from `store`, in the partition of the input at `input`.
    pub fn state_delete(
        &mut self,
        store: &str,
        input: usize,
        key: &[u8],
    ) -> Result<(), StateError> {
        let answer = self.host()?.state_delete(
            RStr::from_str(store),
            index_u32(input),
            RSlice::from_slice(key),
        );
        refused(store, answer)
    }
}

fn refused<T>(
    store: &str,
    answer: RResult<T, abi_stable::std_types::RString>,
) -> Result<T, StateError> {
    answer.into_result().map_err(|message| StateError::Host {
        store: store.to_string(),
        message: message.into_string(),
    })
}

/// The state side of a host object, for hosts (the txform host, [`crate::TestDriver`]): what a
/// transform's state calls reach through [`StatefulHost`]. `input` is the call's input index; an
/// `Err` is the message the plugin's [`StateError::Host`] carries.
#[doc(hidden)]
pub trait StateBackend {
    fn get(&mut self, store: &str, input: u32, key: &[u8]) -> Result<Option<Vec<u8>>, String>;

    /// Sets `key` to `value`, or deletes it when `value` is `None`.
    fn put(
        &mut self,
        store: &str,
        input: u32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), String>;
}

impl<S: StateBackend + ?Sized> StateBackend for &mut S {
    fn get(&mut self, store: &str, input: u32, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        (**self).get(store, input, key)
    }

    fn put(
        &mut self,
        store: &str,
        input: u32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), String> {
        (**self).put(store, input, key, value)
    }
}

/// A host object with state: outputs, forwards and rejections go to `out` (the test driver's
/// [`Output`], the host's collector), state calls to `state`.
#[doc(hidden)]
pub struct StatefulHost<'a, O, S> {
    pub out: &'a mut O,
    pub state: S,
}

impl<O, S: StateBackend> StatefulHost<'_, O, S> {
    /// A put (`Some`) or a delete (`None`).
    fn change(
        &mut self,
        store: RStr<'_>,
        input: u32,
        key: RSlice<'_, u8>,
        value: Option<&[u8]>,
    ) -> RResult<(), RString> {
        self.state
            .put(store.as_str(), input, key.as_slice(), value)
            .map_err(RString::from)
            .into()
    }
}

impl<O: Host, S: StateBackend> Host for StatefulHost<'_, O, S> {
    fn emit(&mut self, record: OutRecord) {
        Host::emit(self.out, record);
    }

    fn reject(&mut self, rejection: Rejection) {
        Host::reject(self.out, rejection);
    }

    fn forward(&mut self, input: u32, topic: ROption<RString>, partition: ROption<i32>) -> bool {
        Host::forward(self.out, input, topic, partition)
    }

    fn state_get(
        &mut self,
        store: RStr<'_>,
        input: u32,
        key: RSlice<'_, u8>,
    ) -> RResult<ROption<RVec<u8>>, RString> {
        self.state
            .get(store.as_str(), input, key.as_slice())
            .map(|value| value.map(RVec::from).into())
            .map_err(RString::from)
            .into()
    }

    fn state_put(
        &mut self,
        store: RStr<'_>,
        input: u32,
        key: RSlice<'_, u8>,
        value: RSlice<'_, u8>,
    ) -> RResult<(), RString> {
        self.change(store, input, key, Some(value.as_slice()))
    }

    fn state_delete(
        &mut self,
        store: RStr<'_>,
        input: u32,
        key: RSlice<'_, u8>,
    ) -> RResult<(), RString> {
        self.change(store, input, key, None)
    }
}
