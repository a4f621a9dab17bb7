//! The state engine of one instance: the per-transaction overlay the chain reads and writes, the
//! changelog records it becomes, the local store it is applied to after the commit, and restoring
//! partitions before their records are transformed.
//!
//! Life of a change: a plugin's `state_put` lands in the overlay (reads see it); before the offsets
//! are sent, every overlay entry (the last value per key) is produced to its changelog partition in
//! the open transaction (a delete as a tombstone); after `commit_transaction` succeeded the overlay
//! is applied to the local store with the changelog offsets the deliveries reached, in one local
//! write; after an abort it is dropped. Nothing touches the local store before the commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rdkafka::producer::{BaseRecord, Producer as _};

use crate::config::Pipeline;
use crate::kafka::{build_restorer, Observer, Producer};
use crate::metrics::Metrics;
use crate::pipeline::sink::{send, ProduceFailure};
use crate::plugin::{Chain, StateAccess};

use super::changelog::{ensure_changelogs, stores_of, StoreSpec};
use super::local::{Change, LocalError, LocalStore};
use super::restore::{restore, RestoreError};

/// A change of the open transaction: the value (`None`: deleted) and the batch index of the source
/// record that made it last, which a refused changelog record is blamed on.
struct Pending {
    value: Option<Vec<u8>>,
    source: usize,
}

pub struct State {
    specs: Vec<StoreSpec>,
    local: LocalStore,
    restorer: Observer,
    /// (store index in `specs`, partition, key) → the change of the open transaction.
    overlay: BTreeMap<(usize, i32, Vec<u8>), Pending>,
    /// Partitions restored since the consumer's last rebalance event (`events`).
    restored: BTreeSet<i32>,
    events: Option<u64>,
}

impl State {
    /// The engine of `chain`'s stores, or `None` when no transform declared one. Checks or creates
    /// every changelog topic and opens the local store (`[state] dir`/transactional id).
    pub fn open(
        pipeline: &Pipeline,
        chain: &Chain,
        observer: &Observer,
    ) -> anyhow::Result<Option<State>> {
        let specs = stores_of(pipeline, chain).map_err(anyhow::Error::msg)?;
        if specs.is_empty() {
            return Ok(None);
        }
        ensure_changelogs(pipeline, &specs, observer).map_err(anyhow::Error::msg)?;
        let dir = pipeline.state.dir.join(pipeline.transactional_id());
        let (local, rebuilt) = LocalStore::open(&dir)?;
        log::info!(
            "state stores {} in {}{}",
            specs
                .iter()
                .map(|s| format!("`{}` of `{}` (changelog {})", s.store, s.transform, s.topic))
                .collect::<Vec<_>>()
                .join(", "),
            dir.display(),
            if rebuilt { " (rebuilt)" } else { "" }
        );
        Ok(Some(State {
            specs,
            local,
            restorer: build_restorer(pipeline)?,
            overlay: BTreeMap::new(),
            restored: BTreeSet::new(),
            events: None,
        }))
    }

    /// New consumer clients: every partition is restored again (caught up) before its next record.
    pub fn forget_restored(&mut self) {
        self.restored.clear();
        self.events = None;
    }

    /// Restores every partition in `partitions` not restored since the consumer's last rebalance
    /// event (`events`, its count), so no record of a partition is transformed before its state is
    /// restored: a partition that another instance owned meanwhile is caught up from the local
    /// checkpoint. Not ready while it runs; a stop request ends it within one poll.
    pub fn prepare(
        &mut self,
        partitions: impl IntoIterator<Item = i32>,
        events: u64,
        stop: &AtomicBool,
        metrics: &Metrics,
    ) -> Result<(), RestoreError> {
        if self.events != Some(events) {
            self.restored.clear();
            self.events = Some(events);
        }
        let todo: BTreeSet<i32> = partitions
            .into_iter()
            .filter(|p| !self.restored.contains(p))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        metrics.health.restoring(true);
        let result = self.restore_all(&todo, stop, metrics);
        metrics.health.restoring(false);
        result
    }

    fn restore_all(
        &mut self,
        partitions: &BTreeSet<i32>,
        stop: &AtomicBool,
        metrics: &Metrics,
    ) -> Result<(), RestoreError> {
        for &partition in partitions {
            for spec in &self.specs {
                let started = Instant::now();
                let done = restore(&self.restorer, &self.local, spec, partition, stop)?;
                metrics.state_restore_records.inc_by(done.records);
                metrics
                    .state_restore_duration
                    .observe(started.elapsed().as_secs_f64());
                log::info!(
                    "restored state store `{}` of transform `{}` partition {partition}: {} changelog record(s) from offset {} to {} in {:.0?}{}",
                    spec.store,
                    spec.transform,
                    done.records,
                    done.from,
                    done.to,
                    started.elapsed(),
                    if done.wiped { " (stale local state wiped)" } else { "" }
                );
            }
            self.restored.insert(partition);
        }
        Ok(())
    }

    /// Produces every change of the open transaction to its changelog; `first` is the batch index of
    /// the chain's input 0.
    pub fn produce_changes(&self, producer: &Producer, first: usize) -> Result<(), ProduceFailure> {
        if self.overlay.is_empty() {
            return Ok(());
        }
        producer
            .context()
            .watch(self.specs.iter().map(|s| s.topic.clone()));
        for ((store, partition, key), pending) in &self.overlay {
            let topic = self.specs[*store].topic.as_str();
            let mut message: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(topic, first + pending.source)
                    .partition(*partition)
                    .key(key.as_slice());
            if let Some(value) = &pending.value {
                message = message.payload(value.as_slice());
            }
            send(producer, message)?;
        }
        Ok(())
    }

    /// The transaction committed: applies its changes to the local store with the changelog offsets
    /// the deliveries reached. If the local write fails, the committed changes are in the changelog
    /// only: every partition is restored (caught up) again before its next record.
    pub fn committed(&mut self, producer: &Producer) {
        if self.overlay.is_empty() {
            return;
        }
        let overlay = std::mem::take(&mut self.overlay);
        let delivered = producer.context().offsets();
        let checkpoints: Vec<(&str, i32, i64)> = delivered
            .iter()
            .map(|((topic, partition), offset)| (topic.as_str(), *partition, offset + 1))
            .collect();
        let changes = overlay
            .iter()
            .map(|((store, partition, key), pending)| Change {
                topic: &self.specs[*store].topic,
                partition: *partition,
                key,
                value: pending.value.as_deref(),
            });
        if let Err(error) = self.local.apply(changes, &checkpoints) {
            log::error!("{error}; the committed changes are in the changelog, restoring from it before the next batch");
            self.forget_restored();
        }
    }

    /// The transaction aborted: its changes vanish, so a retry sees the state as of the last commit.
    pub fn aborted(&mut self) {
        self.overlay.clear();
    }

    fn store_index(&self, stage: usize, store: &str) -> Result<usize, String> {
        self.specs
            .iter()
            .position(|s| s.stage == stage && s.store == store)
            .ok_or_else(|| format!("no state store `{store}` for this transform"))
    }
}

impl StateAccess for State {
    fn get(
        &mut self,
        stage: usize,
        store: &str,
        partition: i32,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        let index = self.store_index(stage, store)?;
        if let Some(pending) = self.overlay.get(&(index, partition, key.to_vec())) {
            return Ok(pending.value.clone());
        }
        self.local
            .get(&self.specs[index].topic, partition, key)
            .map_err(|e: LocalError| e.to_string())
    }

    fn put(
        &mut self,
        stage: usize,
        store: &str,
        partition: i32,
        source: usize,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), String> {
        let index = self.store_index(stage, store)?;
        self.overlay.insert(
            (index, partition, key.to_vec()),
            Pending {
                value: value.map(<[u8]>::to_vec),
                source,
            },
        );
        Ok(())
    }
}
