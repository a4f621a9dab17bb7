//! Ending what a batch produced: commit it with its offsets, or abort it.
//!
//! This is the one place where "the transaction committed" and "the transaction aborted" are
//! decided, for a whole-batch attempt, a streamed batch and a revocation alike: whatever must
//! follow a commit or an abort hooks in at [`Ending::commit`] and [`Ending::abort`].

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer as _;
use rdkafka::TopicPartitionList;

use crate::kafka::{commit_delivered, CallError, Consumer, Deliveries, Producer};
use crate::metrics::Metrics;

use super::failure::{Cause, Failure};
use super::retry::{abort_until_done, until_done};

/// How often outputs that are still not delivered are reported.
const FLUSH_REPORT_EVERY: Duration = Duration::from_secs(30);

/// How long an abort first waits for the outputs still in flight.
const SETTLE_BEFORE_ABORT: Duration = Duration::from_secs(5);

/// The clients and context needed to end a batch.
pub struct Ending<'a> {
    pub producer: &'a Producer,
    pub consumer: &'a Consumer,
    /// Exactly-once (a transaction is open) or at-least-once (outputs produced, offsets not yet
    /// committed).
    pub transactional: bool,
    /// Keeps liveness while waiting on Kafka.
    pub metrics: &'a Metrics,
    /// Names the source record at a batch index, for a refused output.
    pub source_of: &'a dyn Fn(usize) -> String,
}

impl Ending<'_> {
    /// Commits the outputs with `offsets`. Exactly-once: the offsets are sent before waiting for the
    /// last deliveries, so the offset round trips (AddOffsetsToTxn, TxnOffsetCommit) overlap them;
    /// should a delivery then fail, the abort covers the offsets too. At-least-once: the offsets
    /// are committed only once every output is delivered.
    pub fn commit(&self, offsets: &TopicPartitionList) -> Result<(), Failure> {
        let _waiting = self.metrics.health.waiting();
        if !self.transactional {
            self.flush()?;
            return self
                .consumer
                .commit(offsets, CommitMode::Sync)
                .map_err(|e| Failure::kafka("commit offsets", e));
        }
        let metadata = self
            .consumer
            .group_metadata()
            .ok_or_else(|| Failure::Kafka("the consumer has no group metadata yet".into()))?;
        until_done("send_offsets_to_transaction", |t| {
            self.producer
                .send_offsets_to_transaction(offsets, &metadata, t)
        })
        .map_err(|e| self.delivery_failure("send_offsets_to_transaction", e))?;
        // commit_transaction flushes too, but waits for ever after a refused output.
        self.flush()?;
        until_done("commit_transaction", |t| commit_delivered(self.producer, t))
            .map_err(|e| self.delivery_failure("commit_transaction", e))
    }

    /// Ends a failed batch: aborts the open transaction after `failure`, so read_committed readers
    /// are never held back by it until `transaction.timeout.ms`, whatever the failure (a fatal one
    /// raised by the host included); at-least-once, waits for the outputs still in flight. A
    /// fenced or fatal producer cannot abort: the broker (or the successor's `init_transactions`)
    /// does, and the original failure is what counts.
    pub fn abort(&self, failure: Failure) -> Failure {
        if !self.transactional {
            self.settle();
            return failure;
        }
        let _waiting = self.metrics.health.waiting();
        // A streamed batch can fail right after producing, while its outputs' partitions are still
        // being registered with the coordinator: librdkafka then sends EndTxn(abort) for a
        // transaction the coordinator has not seen begin, which is refused with INVALID_TXN_STATE
        // (a known librdkafka bug, confluentinc/librdkafka#4849; only new clients recover). The
        // outputs' deliveries imply their registration, so wait for those first: it returns as soon
        // as they are all reported, and is bounded in case the broker is gone.
        self.producer.context().wait(SETTLE_BEFORE_ABORT);
        let aborted = abort_until_done(|t| self.producer.abort_transaction(t));
        match (aborted, failure) {
            // The abort accounted for every message; their reports may still be on their way from
            // the producer's thread, and must not be taken for the next attempt's.
            (Ok(()), failure) => {
                self.settle();
                failure
            }
            (Err(e), failure @ (Failure::Fenced(_) | Failure::Fatal(_))) => {
                log::debug!("abort_transaction after `{failure}`: {e}");
                failure
            }
            (Err(e), failure) => match Failure::kafka("abort_transaction", e) {
                // The transaction's state is unknown: new clients (whose init_transactions aborts
                // it) are needed, once the group says no newer process holds the id.
                Failure::Kafka(message) | Failure::Fenced(message) => {
                    Failure::Fenced(format!("{message} (after `{failure}`)"))
                }
                fatal => fatal,
            },
        }
    }

    /// Waits for the reports of a failed batch's messages still in flight (each ends by
    /// `message.timeout.ms`, or at once when an abort purged it), so they are not taken for the next
    /// batch's.
    fn settle(&self) {
        let tracker = self.producer.context();
        while !tracker.wait_all(FLUSH_REPORT_EVERY) {
            log::warn!("still waiting for the delivery reports of a failed attempt");
        }
    }

    /// Waits until every output is delivered, for as long as it takes, but gives up as soon as one
    /// delivery fails: after a failed delivery librdkafka stops sending the transaction's remaining
    /// messages, so a plain flush would wait forever. Reports arrive on the producer's thread; this
    /// waits on them without polling.
    fn flush(&self) -> Result<(), Failure> {
        let started = Instant::now();
        loop {
            match self.producer.context().wait(FLUSH_REPORT_EVERY) {
                Deliveries::Done => return Ok(()),
                Deliveries::Failed => {
                    return Err(
                        self.delivery_failure("flush", KafkaError::Flush(RDKafkaErrorCode::Fail))
                    )
                }
                Deliveries::Pending(n) => log::warn!(
                    "{n} output(s) not delivered after {:.0?}, still waiting",
                    started.elapsed()
                ),
            }
        }
    }

    /// A failed flush or commit is the records' fault when Kafka refused one of the outputs. The
    /// broker refuses whole produce batches, so the reported record is only a suspect: the source
    /// stays unknown and bisection finds the real culprit. Any other failed delivery is Kafka's.
    fn delivery_failure(&self, call: &str, error: impl CallError) -> Failure {
        let tracker = self.producer.context();
        match (tracker.refused_record(), tracker.first_failure()) {
            (Some((suspect, refusal)), _) => Failure::Records {
                cause: Cause::sink(format!(
                    "Kafka refused an output ({refusal}; first refused output from {})",
                    (self.source_of)(suspect)
                )),
                source: None,
            },
            (None, Some((_, delivery))) => Failure::kafka(call, delivery),
            (None, None) => Failure::kafka(call, error),
        }
    }
}
