//! The state side of one stage call's host object: state accesses are mapped from the call's input index to the source record's partition and handed to
//! the pipeline's [`StateAccess`] (the state engine's per-transaction overlay).

use txform_plugin_api::{Record, StateBackend};

use super::produced::Produced;

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

/// The state side of one stage call's host (outputs go to the stage's `Output` through
/// [`txform_plugin_api::StatefulHost`]).
pub(super) struct CallState<'a, 'b> {
    pub state: &'a mut dyn StateAccess,
    pub stage: usize,
    /// The stores the stage declared; any other name is refused.
    pub stores: &'a [String],
    /// The chain's source records.
    pub batch: &'a [Record<'b>],
    /// The previous stage's outputs, whose `input` is the source index of each input of this call;
    /// `None` for the first stage, whose inputs are the source records.
    pub inputs: Option<&'a [Produced]>,
}

impl CallState<'_, '_> {
    /// The source index and partition of the call's input `input`, if the stage may use `store`.
    fn locate(&self, store: &str, input: u32) -> Result<(usize, i32), String> {
        if !self.stores.iter().any(|s| s == store) {
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
            Some(inputs) => inputs.get(index).map(|r| r.input() as usize),
        };
        let calls = self.inputs.map_or(self.batch.len(), <[Produced]>::len);
        match source.and_then(|s| self.batch.get(s).map(|r| (s, r.partition()))) {
            Some(found) => Ok(found),
            None => Err(format!(
                "input {input} is not in the call's batch of {calls}"
            )),
        }
    }
}

impl StateBackend for CallState<'_, '_> {
    fn get(&mut self, store: &str, input: u32, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let (_, partition) = self.locate(store, input)?;
        self.state.get(self.stage, store, partition, key)
    }

    fn put(
        &mut self,
        store: &str,
        input: u32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), String> {
        let (source, partition) = self.locate(store, input)?;
        self.state
            .put(self.stage, store, partition, source, key, value)
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
