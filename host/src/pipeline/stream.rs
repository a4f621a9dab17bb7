//! Streaming a batch into its open transaction: the transaction begins with the first chunk of
//! records, the chain runs on each polled chunk and its outputs are produced at once (so delivery
//! overlaps collection), and when the batch closes its offsets are sent and it commits.
//!
//! Once a chunk's outputs are produced (librdkafka copied them) its messages are let go, so a batch's
//! memory is one chunk however long its transaction; only with `errors.max_retries = 0`, where a
//! failure goes straight to isolating the failing records from memory, does it keep them all.
//!
//! Any failure aborts the whole batch and hands it back, unrewound, to the copier's error policy.
//! The consumer is polled between chunks, so a rebalance can land in the open transaction: the
//! revocation hook ([`OpenTransaction`]) ends it before the partitions go, and the records fetched
//! but not transformed yet are dropped here.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::Producer as _;

use crate::config::{Guarantee, Pipeline};
use crate::kafka::{Consumer, KnownTopics, Producer};
use crate::metrics::Metrics;
use crate::plugin::Chain;

use super::attempt::{Attempt, Committed};
use super::batch::{Batch, Chunking, CollectError, Polled};
use super::failure::Failure;
use super::open::OpenTransaction;

/// How a streamed batch is cut: at most 500 records go to one transform call, and a chunk waits up
/// to 20 ms after its first record for more (a fifth of the default interval: outputs still
/// stream, and at a low rate the transform calls and produce requests are per chunk of records,
/// not per fetch).
const CHUNKING: Chunking = Chunking {
    max_records: 500,
    linger: Duration::from_millis(20),
};

/// How a streamed batch ended.
pub enum Streamed<'c> {
    /// Nothing was polled (idle, or a stop).
    Idle,
    /// The batch committed (after a revocation, only its records transformed before it; the rest
    /// were dropped and rewound).
    Committed { batch: Batch<'c>, done: Committed },
    /// The transaction was aborted after `failure`; nothing is rewound yet.
    Failed { batch: Batch<'c>, failure: Failure },
    /// A revocation ended the transaction with `failure` (aborted); the batch was dropped and its
    /// partitions still owned rewound.
    Revoked(Failure),
    /// The consumer failed, or a rewind after a rebalance did.
    Collect(CollectError),
}

/// The clients and settings a streamed batch needs.
pub struct Stream<'a, 'c> {
    pub pipeline: &'a Pipeline,
    pub consumer: &'c Consumer,
    pub producer: &'a Arc<Producer>,
    pub topics: &'a RefCell<KnownTopics>,
    pub metrics: &'a Arc<Metrics>,
    pub stop: &'a AtomicBool,
}

impl<'c> Stream<'_, 'c> {
    /// Streams one batch through `chain`.
    pub fn run(&self, chain: &mut Chain) -> Streamed<'c> {
        let limits = &self.pipeline.batch;
        let transactional = self.pipeline.transaction.guarantee == Guarantee::ExactlyOnce;
        // A failed batch is retried whole (fetched again) before any isolation needs its records.
        let releases = self.pipeline.errors.max_retries > 0;
        let open = OpenTransaction::new(
            Arc::clone(self.producer),
            Arc::clone(self.metrics),
            transactional,
        );
        let mut batch = Batch::empty(self.consumer);
        let stamp = self.attempt(&batch).offset_stamp();
        let mut done = Committed::default();
        let mut registration = None;
        let mut started = Instant::now();
        loop {
            let chunk = match batch.poll_chunk(limits, CHUNKING, self.stop) {
                Ok(Polled::Chunk(chunk)) => chunk,
                // Before the transaction began nothing was transformed: drop it all.
                Ok(Polled::Rebalanced { fresh, .. }) if registration.is_none() => {
                    if let Err(problem) = batch.drop_after_rebalance(0, fresh.as_ref()) {
                        return Streamed::Collect(CollectError::Rewind(problem));
                    }
                    continue;
                }
                Ok(Polled::Rebalanced { chunk, fresh }) => match open.ended() {
                    // An assignment that revoked nothing: the transaction stays open.
                    None => {
                        if let Some(message) = fresh {
                            batch.push(message, limits);
                        }
                        chunk.start..batch.len()
                    }
                    Some((processed, result)) => {
                        drop(registration);
                        return self.revoked(batch, processed, result, fresh, done);
                    }
                },
                Err(error) => {
                    if registration.is_some() {
                        let failure = Failure::Kafka(format!("consumer: {error:?}"));
                        self.attempt(&batch)
                            .ending(&|i| batch.source_of(i))
                            .abort(failure);
                    }
                    return Streamed::Collect(error);
                }
            };
            if !chunk.is_empty() {
                self.metrics.health.beat();
                let attempt = self.attempt(&batch);
                if registration.is_none() {
                    started = Instant::now();
                    if let Err(failure) = attempt.begin() {
                        return Streamed::Failed { batch, failure };
                    }
                    registration = Some(open.register(self.consumer));
                }
                let result = batch
                    .with_records_in(chunk.clone(), |records| {
                        attempt.transform(chain, records, chunk.start, &mut done)
                    })
                    .and_then(|()| {
                        open.processed(chunk.end, |offsets| {
                            batch.advance_offsets(offsets, chunk.clone(), &stamp)
                        })
                        .map_err(|e| Failure::kafka("offsets", e))
                    });
                if let Err(failure) = result {
                    drop(registration);
                    let failure = attempt.ending(&|i| batch.source_of(i)).abort(failure);
                    attempt.observe(started, false);
                    return Streamed::Failed { batch, failure };
                }
                if releases {
                    batch.release(chunk.end);
                }
            }
            if batch.is_empty() {
                return Streamed::Idle;
            }
            // A failed delivery fails the commit: no use streaming more into the transaction.
            let delivery_failed = self.producer.context().first_failure().is_some();
            if self.stop.load(Ordering::SeqCst) {
                // Says that a stop landed in an open transaction (tests and operators look for it).
                log::info!(
                    "stop requested: committing the {} record(s) of the open batch",
                    batch.len()
                );
                break;
            }
            if batch.is_closed(limits) || delivery_failed {
                break;
            }
        }
        // No poll from here on: the hook cannot run, and is removed before the commit.
        drop(registration);
        done.records_in = batch.len();
        let attempt = self.attempt(&batch);
        let source_of = |i| batch.source_of(i);
        let ending = attempt.ending(&source_of);
        let result = ending
            .commit(&open.offsets())
            .map_err(|failure| ending.abort(failure));
        attempt.observe(started, result.is_ok());
        match result {
            Ok(()) => Streamed::Committed { batch, done },
            Err(failure) => Streamed::Failed { batch, failure },
        }
    }

    /// After a revocation ended the transaction: the records fetched after the `processed` ones
    /// (never transformed) are dropped; after an abort, all of them.
    fn revoked(
        &self,
        mut batch: Batch<'c>,
        processed: usize,
        result: Result<(), Failure>,
        fresh: Option<rdkafka::message::BorrowedMessage<'c>>,
        mut done: Committed,
    ) -> Streamed<'c> {
        let keep = if result.is_ok() { processed } else { 0 };
        if let Err(problem) = batch.drop_after_rebalance(keep, fresh.as_ref()) {
            return Streamed::Collect(CollectError::Rewind(problem));
        }
        match result {
            Ok(()) => {
                done.records_in = processed;
                Streamed::Committed { batch, done }
            }
            Err(failure) => Streamed::Revoked(failure),
        }
    }

    /// An attempt over `batch` for one chunk (records come with each chunk) or its ending.
    fn attempt<'b>(&'b self, batch: &'b Batch<'c>) -> Attempt<'b, 'c> {
        Attempt {
            pipeline: self.pipeline,
            consumer: self.consumer,
            producer: self.producer,
            batch,
            records: &[],
            topics: self.topics,
            metrics: self.metrics,
            state: None,
        }
    }
}
