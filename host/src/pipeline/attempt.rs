//! One attempt at a contiguous range of a batch: in exactly-once mode one Kafka transaction, aborted
//! on any failure; in at-least-once mode produce, flush, then commit the offsets.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ops::Range;

use std::time::Instant;

use rdkafka::consumer::Consumer as _;
use rdkafka::producer::Producer as _;
use rdkafka::TopicPartitionList;
use txform_plugin_api::Record;

use crate::config::{FailureAction, Guarantee, Pipeline};
use crate::kafka::{is_record_refusal, Consumer, Incarnation, KnownTopics, Producer};
use crate::metrics::{Metrics, OutcomeLabel};
use crate::plugin::Chain;
use crate::state::State;

use super::batch::Batch;
use super::failure::{Cause, Failure};
use super::finish::Ending;
use super::sink::{produce_dead_letter, produce_outputs, ProduceFailure};
use super::stats::Outcome;

/// Everything an attempt needs; `records` are the zero-copy views of the whole batch (empty while
/// a batch is streamed: each chunk brings its own, see [`Attempt::transform`]).
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
    /// The state stores' engine, when a transform declared stores (whole batches only).
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
        self.begin()?;
        let source_of = |index| self.batch.source_of(index);
        let ending = self.ending(&source_of);
        let result = self
            .body(chain, range.clone(), work)
            .and_then(|done| ending.commit(&self.offsets(range)?).map(|()| done))
            .map_err(|failure| ending.abort(failure));
        if let Some(state) = self.state {
            let mut state = state.borrow_mut();
            match result {
                Ok(_) => state.committed(self.producer),
                Err(_) => state.aborted(),
            }
        }
        self.observe(started, result.is_ok());
        result
    }

    /// Times a batch's transaction (or at-least-once produce and commit) from `started`.
    pub fn observe(&self, started: Instant, committed: bool) {
        let outcome = if committed {
            Outcome::committed
        } else {
            Outcome::aborted
        };
        self.metrics
            .transaction_duration
            .get_or_create(&OutcomeLabel { outcome })
            .observe(started.elapsed().as_secs_f64());
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
        self.transform(chain, &self.records[range.clone()], range.start, &mut done)?;
        Ok(done)
    }

    /// Runs the chain on `records`, the views of the batch records from index `first` on, and
    /// produces its outputs (a rejected record is set aside instead); adds what it did to `done`.
    /// A streamed batch calls this once per chunk, inside its open transaction.
    pub fn transform(
        &self,
        chain: &mut Chain,
        records: &[Record<'_>],
        first: usize,
        done: &mut Committed,
    ) -> Result<(), Failure> {
        let mut output = match self.state {
            Some(state) => chain.run_with(records, &mut *state.borrow_mut())?,
            None => chain.run(records)?,
        };
        let mut rejected = HashSet::new();
        for rejection in &output.rejected {
            let index = first + rejection.input;
            let cause = Cause {
                stage: rejection.stage.clone(),
                plugin: rejection.plugin.clone(),
                version: rejection.version.clone(),
                error: format!("rejected: {}", rejection.reason),
            };
            self.set_aside(index, &cause, 1, done)?;
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
            first,
            &output.records,
            &mut |topic| self.missing(topic),
        )
        .map_err(|failure| self.produce_failure(failure))?;
        if let Some(state) = self.state {
            // In the transaction, before the offsets: the changes commit with the outputs or not at all.
            state
                .borrow()
                .produce_changes(self.producer, first)
                .map_err(|failure| self.produce_failure(failure))?;
        }
        done.produced += output.records.len();
        chain.recycle(output.records);
        Ok(())
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

    /// Starts a batch: forgets the previous one's delivery reports and, exactly-once, begins the
    /// transaction.
    pub fn begin(&self) -> Result<(), Failure> {
        self.producer.context().clear();
        if self.pipeline.transaction.guarantee == Guarantee::ExactlyOnce {
            self.producer
                .begin_transaction()
                .map_err(|e| Failure::kafka("begin_transaction", e))?;
        }
        Ok(())
    }

    /// Ends this attempt's batch (see `finish`); `source_of` names the batch's records.
    pub fn ending<'e>(&'e self, source_of: &'e dyn Fn(usize) -> String) -> Ending<'e> {
        Ending {
            producer: self.producer,
            consumer: self.consumer,
            transactional: self.pipeline.transaction.guarantee == Guarantee::ExactlyOnce,
            metrics: self.metrics,
            source_of,
        }
    }

    /// The offsets to commit after the batch records in `range`.
    pub fn offsets(&self, range: Range<usize>) -> Result<TopicPartitionList, Failure> {
        self.batch
            .next_offsets(range, &self.offset_stamp())
            .map_err(|e| Failure::kafka("offsets", e))
    }

    /// The metadata committed with every offset: this process's incarnation, by which the group
    /// tells after a fence whether a newer process committed (see `kafka::membership`).
    pub fn offset_stamp(&self) -> String {
        Incarnation::current().client_id(&self.pipeline.transactional_id())
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
