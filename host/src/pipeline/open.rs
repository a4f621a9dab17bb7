//! A streamed batch's open transaction as the consumer's revocation hook sees it: the offsets after
//! every record transformed and produced so far, so a revocation commits exactly those before the
//! partitions go (the loop polls between chunks, so rebalance callbacks run inside a transaction).

use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::Consumer as _;
use rdkafka::TopicPartitionList;

use crate::kafka::{Consumer, Producer, RevokeHook};
use crate::metrics::Metrics;

use super::failure::Failure;
use super::finish::Ending;

/// The hook registered while a streamed batch's transaction is open.
pub struct OpenTransaction {
    producer: Arc<Producer>,
    metrics: Arc<Metrics>,
    transactional: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The offsets after the records transformed and produced so far.
    offsets: TopicPartitionList,
    /// How many batch records that is (they are the batch's first ones).
    processed: usize,
    /// How a revocation ended the transaction, once one has.
    ended: Option<Result<(), Failure>>,
}

/// Removes the hook from the consumer when dropped, on every way out of a streamed batch.
pub struct Registration<'c>(&'c Consumer);

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.0.context().set_revoke_hook(None);
    }
}

impl OpenTransaction {
    pub fn new(producer: Arc<Producer>, metrics: Arc<Metrics>, transactional: bool) -> Arc<Self> {
        Arc::new(OpenTransaction {
            producer,
            metrics,
            transactional,
            state: Mutex::new(State::default()),
        })
    }

    /// Makes this the hook the consumer runs before partitions are revoked, until the returned
    /// registration is dropped.
    pub fn register<'c>(self: &Arc<Self>, consumer: &'c Consumer) -> Registration<'c> {
        let hook: Arc<dyn RevokeHook> = Arc::clone(self) as Arc<dyn RevokeHook>;
        consumer.context().set_revoke_hook(Some(hook));
        Registration(consumer)
    }

    /// Records that the batch's first `processed` records were transformed and produced, and lets
    /// `advance` move the offsets past them.
    pub fn processed<E>(
        &self,
        processed: usize,
        advance: impl FnOnce(&mut TopicPartitionList) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut state = self.lock();
        advance(&mut state.offsets)?;
        state.processed = processed;
        Ok(())
    }

    /// The offsets to commit after everything processed so far.
    pub fn offsets(&self) -> TopicPartitionList {
        self.lock().offsets.clone()
    }

    /// How a revocation ended the transaction, with the number of records it covered; `None` while
    /// it is still open.
    pub fn ended(&self) -> Option<(usize, Result<(), Failure>)> {
        let mut state = self.lock();
        let processed = state.processed;
        state.ended.take().map(|result| (processed, result))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RevokeHook for OpenTransaction {
    /// Every record counted in `processed` was transformed and its outputs produced, so committing
    /// their offsets now is what the batch's own commit would have done for them; the records
    /// fetched after them are dropped by the loop. Partitions already lost (the session expired)
    /// can no longer be committed: the transaction is aborted.
    fn revoking(&self, consumer: &Consumer) {
        let mut state = self.lock();
        let source_of = |index: usize| format!("batch record {index}");
        let ending = Ending {
            producer: &self.producer,
            consumer,
            transactional: self.transactional,
            metrics: &self.metrics,
            source_of: &source_of,
        };
        let result = if consumer.assignment_lost() {
            Err(ending.abort(Failure::Kafka("partitions lost".into())))
        } else if state.processed == 0 {
            Err(ending.abort(Failure::Kafka("nothing transformed yet".into())))
        } else {
            ending
                .commit(&state.offsets)
                .map_err(|failure| ending.abort(failure))
        };
        // Says that a rebalance landed inside a transaction (tests and operators look for it).
        match &result {
            Ok(()) => log::info!(
                "revocation with an open transaction: committed {} record(s) first",
                state.processed
            ),
            Err(failure) => {
                log::warn!("revocation with an open transaction: aborted it: {failure}")
            }
        }
        state.ended = Some(result);
    }
}
