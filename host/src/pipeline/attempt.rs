//! One attempt at a contiguous range of a batch: in exactly-once mode one Kafka transaction, aborted
//! on any failure; in at-least-once mode produce, flush, then commit the offsets.

use std::collections::HashSet;
use std::ops::Range;

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer as _;
use txform_plugin_api::Record;

use crate::config::{FailureAction, Guarantee, Pipeline};
use crate::kafka::{classify, is_record_refusal, Consumer, ErrorClass, Producer};
use crate::plugin::Chain;

use super::batch::Batch;
use super::failure::{Cause, Failure};
use super::retry::until_done;
use super::sink::{produce_dead_letter, produce_outputs, ProduceFailure};

/// How long one flush call waits before the delivery reports are checked again.
const FLUSH_SLICE: Duration = Duration::from_millis(500);

/// Everything an attempt needs; `records` are the zero-copy views of the whole batch.
pub struct Attempt<'a, 'c> {
    pub pipeline: &'a Pipeline,
    pub consumer: &'c Consumer,
    pub producer: &'a Producer,
    pub batch: &'a Batch<'c>,
    pub records: &'a [Record<'a>],
}

/// What an attempt does with its range.
pub enum Work {
    /// Run the chain and produce its outputs.
    Transform,
    /// Set the range's single record aside (dead-letter or skip) without transforming it.
    SetAside { cause: Cause, attempts: u32 },
}

/// What a committed attempt did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Committed {
    pub records_in: usize,
    pub produced: usize,
    pub dead_lettered: usize,
    pub skipped: usize,
}

impl Attempt<'_, '_> {
    /// Runs `work` on `range` and commits it with the range's offsets. On failure nothing of it is
    /// visible (exactly-once) and the caller decides about retrying.
    pub fn run(
        &self,
        chain: &mut Chain,
        range: Range<usize>,
        work: &Work,
    ) -> Result<Committed, Failure> {
        let transactional = self.pipeline.transaction.guarantee == Guarantee::ExactlyOnce;
        self.producer.context().clear();
        if transactional {
            self.producer
                .begin_transaction()
                .map_err(|e| Failure::kafka(self.pipeline, "begin_transaction", e))?;
        }
        let result = self
            .body(chain, range.clone(), work)
            .and_then(|done| self.commit(range, transactional).map(|()| done));
        match result {
            Err(failure @ (Failure::Records { .. } | Failure::Kafka(_))) if transactional => {
                until_done("abort_transaction", self.producer, |t| {
                    self.producer.abort_transaction(t)
                })
                .map_err(|e| Failure::Fatal(format!("abort_transaction: {e}")))?;
                Err(failure)
            }
            other => other,
        }
    }

    fn body(
        &self,
        chain: &mut Chain,
        range: Range<usize>,
        work: &Work,
    ) -> Result<Committed, Failure> {
        let mut done = Committed {
            records_in: range.len(),
            ..Committed::default()
        };
        if let Work::SetAside { cause, attempts } = work {
            self.set_aside(range.start, cause, *attempts, &mut done)?;
            return Ok(done);
        }
        let mut output = chain.run(&self.records[range.clone()])?;
        let mut rejected = HashSet::new();
        for rejection in &output.rejected {
            let index = range.start + rejection.input;
            let cause = Cause {
                stage: rejection.stage.clone(),
                plugin: rejection.plugin.clone(),
                version: rejection.version.clone(),
                error: format!("rejected: {}", rejection.reason),
            };
            self.set_aside(index, &cause, 1, &mut done)?;
            if !rejection.also.is_empty() {
                let n = rejection.also.len();
                log::warn!(
                    "{} was also rejected {n} more time{}: {}",
                    self.batch.source_of(index),
                    if n == 1 { "" } else { "s" },
                    rejection.also.join("; ")
                );
            }
            rejected.insert(rejection.input as u32);
        }
        // Outputs of a rejected input go with it.
        output.records.retain(|r| !rejected.contains(&r.input));
        produce_outputs(
            self.producer,
            &self.pipeline.sink.topic,
            self.batch,
            range.start,
            &output.records,
        )
        .map_err(|failure| self.produce_failure(failure))?;
        done.produced = output.records.len();
        chain.recycle(output.records);
        Ok(done)
    }

    /// Applies `errors.on_failure` to the record at `index`, inside the current attempt.
    fn set_aside(
        &self,
        index: usize,
        cause: &Cause,
        attempts: u32,
        done: &mut Committed,
    ) -> Result<(), Failure> {
        match &self.pipeline.errors.on_failure {
            FailureAction::Stop => Err(Failure::Records {
                cause: cause.clone(),
                source: Some(index),
            }),
            FailureAction::Skip => {
                log::warn!(
                    "skipping {} after {attempts} attempt(s): {cause}",
                    self.batch.source_of(index)
                );
                done.skipped += 1;
                Ok(())
            }
            FailureAction::DeadLetter { topic } => {
                produce_dead_letter(self.producer, topic, self.batch, index, cause, attempts)
                    .map_err(|f| {
                        Failure::Fatal(format!(
                            "cannot dead-letter {} to {topic}: {f}",
                            self.batch.source_of(index)
                        ))
                    })?;
                log::warn!(
                    "dead-lettering {} to {topic} after {attempts} attempt(s): {cause}",
                    self.batch.source_of(index)
                );
                done.dead_lettered += 1;
                Ok(())
            }
        }
    }

    fn commit(&self, range: Range<usize>, transactional: bool) -> Result<(), Failure> {
        let offsets = self
            .batch
            .next_offsets(range)
            .map_err(|e| Failure::kafka(self.pipeline, "offsets", e))?;
        self.flush()?;
        if !transactional {
            return self
                .consumer
                .commit(&offsets, CommitMode::Sync)
                .map_err(|e| Failure::kafka(self.pipeline, "commit offsets", e));
        }
        let metadata = self
            .consumer
            .group_metadata()
            .ok_or_else(|| Failure::Kafka("the consumer has no group metadata yet".into()))?;
        until_done("send_offsets_to_transaction", self.producer, |t| {
            self.producer
                .send_offsets_to_transaction(&offsets, &metadata, t)
        })
        .map_err(|e| Failure::kafka(self.pipeline, "send_offsets_to_transaction", e))?;
        until_done("commit_transaction", self.producer, |t| {
            self.producer.commit_transaction(t)
        })
        .map_err(|e| self.delivery_failure("commit_transaction", e))
    }

    /// Waits until every output is delivered, for as long as it takes, but gives up as soon as one
    /// delivery fails: after a failed delivery librdkafka stops sending the transaction's remaining
    /// messages, so a plain flush would wait forever.
    fn flush(&self) -> Result<(), Failure> {
        let started = Instant::now();
        let mut warned = started;
        loop {
            // rust-rdkafka's flush polls in 100 ms slices that always run to their end, so any
            // flush with a record in flight costs >= 100 ms: serve delivery reports first.
            let slice_end = Instant::now() + FLUSH_SLICE;
            while self.producer.in_flight_count() > 0
                && self.producer.context().first_failure().is_none()
                && Instant::now() < slice_end
            {
                self.producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_micros(200));
            }
            let flushed = self.producer.flush(FLUSH_SLICE);
            if self.producer.context().first_failure().is_some() {
                let error = flushed
                    .err()
                    .unwrap_or(KafkaError::Flush(RDKafkaErrorCode::Fail));
                return Err(self.delivery_failure("flush", error));
            }
            match flushed {
                Ok(()) => return Ok(()),
                Err(error) if classify(&error) == ErrorClass::Retriable => {
                    if warned.elapsed() >= Duration::from_secs(30) {
                        warned = Instant::now();
                        log::warn!(
                            "outputs not delivered after {:.0?}, still waiting: {error}",
                            started.elapsed()
                        );
                    }
                }
                Err(error) => return Err(self.delivery_failure("flush", error)),
            }
        }
    }

    /// A failed flush or commit is the records' fault when Kafka refused one of the outputs. The
    /// broker refuses whole produce batches, so the reported record is only a suspect: the source
    /// stays unknown and bisection finds the real culprit. Any other failed delivery is Kafka's.
    fn delivery_failure(&self, call: &str, error: KafkaError) -> Failure {
        let tracker = self.producer.context();
        match (tracker.refused_record(), tracker.first_failure()) {
            (Some((suspect, refusal)), _) => Failure::Records {
                cause: Cause::sink(format!(
                    "Kafka refused an output ({refusal}; first refused output from {})",
                    self.batch.source_of(suspect)
                )),
                source: None,
            },
            (None, Some((_, delivery))) => Failure::kafka(self.pipeline, call, delivery),
            (None, None) => Failure::kafka(self.pipeline, call, error),
        }
    }

    fn produce_failure(&self, failure: ProduceFailure) -> Failure {
        match failure {
            ProduceFailure::Kafka { error, .. } if !is_record_refusal(&error) => {
                Failure::kafka(self.pipeline, "produce", error)
            }
            refused => Failure::Records {
                source: Some(refused.record()),
                cause: Cause::sink(&refused),
            },
        }
    }
}
