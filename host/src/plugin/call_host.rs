//! The host object of one stage call: outputs and rejections go to the stage's `Output`; state
//! accesses are mapped from the call's input index to the source record's partition and handed to
//! the pipeline's [`StateAccess`] (the state engine's per-transaction overlay).

use abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString, RVec};
use txform_plugin_api::abi::Host;
use txform_plugin_api::{OutRecord, Output, Record, Rejection};

/// Where a chain's state accesses go during one transaction (see `crate::state`). `stage` is the
/// index of the calling stage in the chain; `source` the batch index of the source record the
/// access is for (to blame it if the change cannot be written).
pub trait StateAccess {
    fn get(
        &mut self,
        stage: usize,
        store: &str,
        partition: i32,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, String>;

    /// Sets `key` to `value`, or deletes it when `value` is `None`.
    fn put(
        &mut self,
        stage: usize,
        store: &str,
        partition: i32,
        source: usize,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), String>;
}

/// What a host without state answers (offline runs; chains that declared no store).
pub struct NoState;

/// One stage call's host.
pub(super) struct CallHost<'a, 'b> {
    pub out: &'a mut Output,
    pub state: &'a mut dyn StateAccess,
    pub stage: usize,
    /// The stores the stage declared; any other name is refused.
    pub stores: &'a [String],
    /// The chain's source records.
    pub batch: &'a [Record<'b>],
    /// The previous stage's outputs, whose `input` is the source index of each input of this call;
    /// `None` for the first stage, whose inputs are the source records.
    pub inputs: Option<&'a [OutRecord]>,
}

impl CallHost<'_, '_> {
    /// The source index and partition of the call's input `input`, if the stage may use `store`.
    fn locate(&self, store: RStr<'_>, input: u32) -> Result<(usize, i32), String> {
        if !self.stores.iter().any(|s| s == store.as_str()) {
            return Err(if self.stores.is_empty() {
                "the transform declared no state stores (Transform::stores)".to_string()
            } else {
                format!(
                    "not one of the stores the transform declared ({})",
                    self.stores.join(", ")
                )
            });
        }
        let index = input as usize;
        let source = match self.inputs {
            None => Some(index).filter(|&i| i < self.batch.len()),
            Some(inputs) => inputs.get(index).map(|r| r.input as usize),
        };
        let calls = self.inputs.map_or(self.batch.len(), <[OutRecord]>::len);
        match source.and_then(|s| self.batch.get(s).map(|r| (s, r.partition()))) {
            Some(found) => Ok(found),
            None => Err(format!(
                "input {input} is not in the call's batch of {calls}"
            )),
        }
    }

    fn put(
        &mut self,
        store: RStr<'_>,
        input: u32,
        key: RSlice<'_, u8>,
        value: Option<&[u8]>,
    ) -> RResult<(), RString> {
        self.locate(store, input)
            .and_then(|(source, partition)| {
                self.state.put(
                    self.stage,
                    store.as_str(),
                    partition,
                    source,
                    key.as_slice(),
                    value,
                )
            })
            .map_err(RString::from)
            .into()
    }
}

impl Host for CallHost<'_, '_> {
    fn emit(&mut self, record: OutRecord) {
        Host::emit(self.out, record);
    }

    fn reject(&mut self, rejection: Rejection) {
        Host::reject(self.out, rejection);
    }

    fn state_get(
        &mut self,
        store: RStr<'_>,
        input: u32,
        key: RSlice<'_, u8>,
    ) -> RResult<ROption<RVec<u8>>, RString> {
        self.locate(store, input)
            .and_then(|(_, partition)| {
                self.state
                    .get(self.stage, store.as_str(), partition, key.as_slice())
            })
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
        self.put(store, input, key, Some(value.as_slice()))
    }

    fn state_delete(
        &mut self,
        store: RStr<'_>,
        input: u32,
        key: RSlice<'_, u8>,
    ) -> RResult<(), RString> {
        self.put(store, input, key, None)
    }
}

impl StateAccess for NoState {
    fn get(&mut self, _: usize, _: &str, _: i32, _: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Err(txform_plugin_api::abi::NO_STATE.to_string())
    }

    fn put(
        &mut self,
        _: usize,
        _: &str,
        _: i32,
        _: usize,
        _: &[u8],
        _: Option<&[u8]>,
    ) -> Result<(), String> {
        Err(txform_plugin_api::abi::NO_STATE.to_string())
    }
}
