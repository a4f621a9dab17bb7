//! One attempt at a contiguous range of a batch: in exactly-once mode one Kafka transaction, aborted
//! on any failure; in at-least-once mode produce, flush, then commit the offsets.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ops::Range;

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer as _;
use txform_plugin_api::Record;

use crate::config::{FailureAction, Guarantee, Pipeline};
use crate::kafka::{is_record_refusal, Consumer, Deliveries, Incarnation, KnownTopics, Producer};
use crate::metrics::{Metrics, OutcomeLabel};
use crate::plugin::Chain;
use crate::state::State;

use super::batch::Batch;
use super::failure::{Cause, Failure};
use super::retry::{abort_until_done, until_done};
use super::sink::{produce_dead_letter, produce_outputs, ProduceFailure};
use super::stats::Outcome;

/// How often outputs that are still not delivered are reported.
const FLUSH_REPORT_EVERY: Duration = Duration::from_secs(30);

/// Everything an attempt needs; `records` are the zero-copy views of the whole batch.
pub struct Attempt<'a, 'c> {
    pub pipeline: &'a Pipeline,
    pub consumer: &'c Consumer,
    pub producer: &'a Producer,
    pub batch: &'a Batch<'c>,
    pub records: &'a [Record<'a>],
    /// Which plugin-chosen output topics exist.
    pub topics: &'a RefCell<KnownTopics>,
    /// Times the attempt and keeps the liveness heartbeat.
    pub metrics: &'a Metrics,
    /// The state stores' engine, when a transform declared stores.
    pub state: Option<&'a RefCell<State>>,
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
        let started = Instant::now();
        self.metrics.health.beat();
        let transactional = self.pipeline.transaction.guarantee == Guarantee::ExactlyOnce;
        self.producer.context().clear();
        if transactional {
            self.producer
                .begin_transaction()
                .map_err(|e| Failure::kafka("begin_transaction", e))?;
        }
        let result = self
            .body(chain, range.clone(), work)
            .and_then(|done| self.commit(range, transactional).map(|()| done));
        let result = match result {
            Err(failure) if transactional => Err(self.abort(failure)),
            Err(failure) => {
                self.settle();
                Err(failure)
            }
            other => other,
        };
        if let Some(state) = self.state {
            let mut state = state.borrow_mut();
            match result {
                Ok(_) => state.committed(self.producer),
                Err(_) => state.aborted(),
            }
        }
        let outcome = match result {
            Ok(_) => Outcome::committed,
            Err(_) => Outcome::aborted,
        };
        self.metrics
            .transaction_duration
            .get_or_create(&OutcomeLabel { outcome })
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Waits for the reports of a failed attempt's messages still in flight (each ends by
    /// `message.timeout.ms`, or at once when an abort purged it), so they are not taken for the next
    /// attempt's.
    fn settle(&self) {
        let tracker = self.producer.context();
        while !tracker.wait_all(FLUSH_REPORT_EVERY) {
            log::warn!("still waiting for the delivery reports of a failed attempt");
        }
    }

    /// Aborts the open transaction after `failure`, so read_committed readers are never held back
    /// by it until `transaction.timeout.ms`, whatever the failure (a fatal one raised by the host
    /// included). A fenced or fatal producer cannot abort: the broker (or the successor's
    /// `init_transactions`) does, and the original failure is what counts.
    fn abort(&self, failure: Failure) -> Failure {
        let _waiting = self.metrics.health.waiting();
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
        let records = &self.records[range.clone()];
        let mut output = match self.state {
            Some(state) => chain.run_with(records, &mut *state.borrow_mut())?,
            None => chain.run(records)?,
        };
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
        output.records.retain(|r| !rejected.contains(&r.input()));
        produce_outputs(
            self.producer,
            &self.pipeline.sink.topic,
            self.batch,
            range.start,
            &output.records,
            &mut |topic| self.missing(topic),
        )
        .map_err(|failure| self.produce_failure(failure))?;
        if let Some(state) = self.state {
            // In the transaction, before the offsets: the changes commit with the outputs or not at all.
            state
                .borrow()
                .produce_changes(self.producer, range.start)
                .map_err(|failure| self.produce_failure(failure))?;
        }
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
            .next_offsets(
                range,
                &Incarnation::current().client_id(&self.pipeline.transactional_id()),
            )
            .map_err(|e| Failure::kafka("offsets", e))?;
        let _waiting = self.metrics.health.waiting();
        self.flush()?;
        if !transactional {
            return self
                .consumer
                .commit(&offsets, CommitMode::Sync)
                .map_err(|e| Failure::kafka("commit offsets", e));
        }
        let metadata = self
            .consumer
            .group_metadata()
            .ok_or_else(|| Failure::Kafka("the consumer has no group metadata yet".into()))?;
        until_done("send_offsets_to_transaction", |t| {
            self.producer
                .send_offsets_to_transaction(&offsets, &metadata, t)
        })
        .map_err(|e| Failure::kafka("send_offsets_to_transaction", e))?;
        until_done("commit_transaction", |t| {
            self.producer.commit_transaction(t)
        })
        .map_err(|e| self.delivery_failure("commit_transaction", e))
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
            (None, Some((_, delivery))) => Failure::kafka(call, delivery),
            (None, None) => Failure::kafka(call, error),
        }
    }

    /// Why the cluster cannot take records for the plugin-chosen `topic`, if it cannot (asked once
    /// per topic, see `KnownTopics`): that record's failure, not Kafka's.
    fn missing(&self, topic: &str) -> Option<String> {
        let mut known = self.topics.try_borrow_mut().ok()?;
        let problem = known
            .check(self.consumer.client(), topic)
            .err()?
            .to_string();
        Some(match problem.strip_prefix(&format!("{topic:?} ")) {
            Some(rest) => rest.to_string(),
            None => problem,
        })
    }

    fn produce_failure(&self, failure: ProduceFailure) -> Failure {
        match failure {
            ProduceFailure::Kafka { error, .. } if !is_record_refusal(&error) => {
                Failure::kafka("produce", error)
            }
            refused => Failure::Records {
                source: Some(refused.record()),
                cause: Cause::sink(&refused),
            },
        }
    }
}
