//! State kept in memory for one offline run (`txform test`): the run is one batch, so its state
//! starts empty and reads see the batch's own writes, as in a first transaction of `txform run`.

use std::collections::BTreeMap;

use crate::plugin::StateAccess;

/// (stage, store, partition, key) → value.
#[derive(Debug, Default)]
pub struct MemoryState(BTreeMap<(usize, String, i32, Vec<u8>), Vec<u8>>);

impl StateAccess for MemoryState {
    fn get(
        &mut self,
        stage: usize,
        store: &str,
        partition: i32,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        Ok(self
            .0
            .get(&(stage, store.to_string(), partition, key.to_vec()))
            .cloned())
    }

    fn put(
        &mut self,
        stage: usize,
        store: &str,
        partition: i32,
        _source: usize,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), String> {
        let slot = (stage, store.to_string(), partition, key.to_vec());
        match value {
            Some(value) => self.0.insert(slot, value.to_vec()),
            None => self.0.remove(&slot),
        };
        Ok(())
    }
}
