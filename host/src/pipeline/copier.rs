//! Copying batches with one set of clients, and the error policy.
//!
//! Per batch (streamed, see `stream`): begin at its first chunk, run the transform chain on each
//! chunk and produce its outputs, then send the consumed offsets with the consumer's group metadata
//! and commit. Any failure aborts the transaction and rewinds the consumer to the batch's first
//! offsets, so nothing of a failed batch is ever visible to read_committed readers and nothing is
//! skipped; its retries run whole (one attempt over the collected batch) until its span commits.
//! Failures caused by records are retried with backoff up to `errors.max_retries`, then
//! `errors.on_failure` decides; failures of Kafka itself are retried without bound; a fence ends the
//! copy so the runner can ask the group what it means.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use txform_plugin_api::Record;

use crate::config::{FailureAction, Pipeline};
use crate::kafka::{refine, ErrorClass, KnownTopics};
use crate::metrics::Metrics;
use crate::plugin::Chain;
use crate::state::{RestoreError, State};

use super::attempt::{Attempt, Work};
use super::batch::{Batch, CollectError};
use super::failure::Failure;
use super::isolate::isolate;
use super::retry::{backoff, sleep_unless_stopped};
use super::runner::{Clients, End, RunError};
use super::stats::{AbortCause, Stats};
use super::streak::Streak;
use super::stream::{Stream, Streamed};

/// What the loop does after one batch.
enum Next {
    Committed,
    /// Nothing was polled.
    Idle,
    /// Try the batch again (it was rewound) after this delay.
    Retry(Duration),
    End(End),
}

/// The copy loop over one set of clients.
pub struct Copier<'a> {
    pipeline: &'a Pipeline,
    clients: &'a Clients,
    chain: &'a mut Chain,
    stats: &'a mut Stats,
    stop: &'a AtomicBool,
    streak: Streak,
    topics: Rc<RefCell<KnownTopics>>,
    /// Batches are collected whole and copied in one attempt (after a failure, until its span is
    /// committed) instead of streamed.
    whole: bool,
    /// The state stores' engine. A stateful chain always copies whole batches: its changes, its
    /// restores and its commit stay one step each, as proved by the stateful tests.
    state: Option<&'a RefCell<State>>,
}

impl<'a> Copier<'a> {
    pub fn new(
        pipeline: &'a Pipeline,
        clients: &'a Clients,
        chain: &'a mut Chain,
        stats: &'a mut Stats,
        stop: &'a AtomicBool,
        state: Option<&'a RefCell<State>>,
    ) -> Self {
        Copier {
            state,
            pipeline,
            clients,
            chain,
            stats,
            stop,
            streak: Streak::default(),
            whole: false,
            topics: Rc::new(RefCell::new(
                KnownTopics::new().knowing(
                    std::iter::once(pipeline.sink.topic.clone()).chain(
                        pipeline
                            .errors
                            .on_failure
                            .dead_letter_topic()
                            .map(str::to_string),
                    ),
                ),
            )),
        }
    }

    /// Copies batches until `stop` is set or something ends it. Batches are streamed; after a
    /// failure the batch's retries run whole (collected first, then one attempt) until that span
    /// is committed. No transaction is open between batches, so returning (and dropping the
    /// clients) leaves nothing behind.
    pub fn run(mut self) -> End {
        let metrics = Arc::clone(self.stats.metrics());
        metrics.health.copying(true);
        if let Some(state) = self.state {
            state.borrow_mut().forget_restored();
        }
        let mut rebalances = None;
        while !self.stop.load(Ordering::SeqCst) {
            metrics.health.beat();
            self.stats.maybe_report();
            self.watch_assignment(&mut rebalances);
            let next = if self.whole || self.state.is_some() {
                self.collect_and_copy()
            } else {
                self.stream()
            };
            match next {
                Next::Committed | Next::Idle => {}
                Next::Retry(delay) => {
                    let _waiting = metrics.health.waiting();
                    sleep_unless_stopped(delay, self.stop);
                }
                Next::End(end) => return end,
            }
        }
        End::Stopped
    }

    /// Streams one batch (see `stream`) and applies the error policy to its failure.
    fn stream(&mut self) -> Next {
        let started = Instant::now();
        let clients = self.clients;
        let metrics = Arc::clone(self.stats.metrics());
        let streamed = Stream {
            pipeline: self.pipeline,
            consumer: &clients.consumer,
            producer: &clients.producer,
            topics: &self.topics,
            metrics: &metrics,
            stop: self.stop,
        }
        .run(self.chain);
        match streamed {
            Streamed::Idle => Next::Idle,
            Streamed::Committed { batch, done } => {
                committed_line(
                    done.records_in as u64,
                    done.produced as u64,
                    started,
                    &batch,
                );
                self.stats.batch(done.records_in);
                self.stats.committed(done);
                self.streak.committed(batch.spans(batch.all()));
                Next::Committed
            }
            Streamed::Failed { batch, failure } => {
                self.stats.batch(batch.len());
                self.stats.aborted(AbortCause::of(&failure));
                self.whole = true;
                self.after_failure(&batch, failure)
            }
            Streamed::Revoked(failure) => {
                self.stats.aborted(AbortCause::of(&failure));
                match failure {
                    Failure::Fenced(message) => Next::End(End::Fenced(message)),
                    Failure::Fatal(message) => Next::End(End::Failed(RunError::Fatal(message))),
                    // Dropped and rewound already; its records are tried again like after any
                    // rebalance (a refused one fails again, outside a revocation).
                    other => self.kafka_retry(None, &other.to_string()),
                }
            }
            Streamed::Collect(error) => Next::End(self.collect_failed(error)),
        }
    }

    /// Collects a whole batch and copies it in one attempt: how a failed batch is retried.
    fn collect_and_copy(&mut self) -> Next {
        let batch = match Batch::collect(&self.clients.consumer, &self.pipeline.batch, self.stop) {
            Ok(batch) => batch,
            Err(error) => return Next::End(self.collect_failed(error)),
        };
        if batch.is_empty() {
            return Next::Idle;
        }
        if let Some(next) = self.restore(&batch) {
            return next;
        }
        self.stats.batch(batch.all().len());
        let next = self.copy(&batch);
        if let Next::Committed = next {
            self.streak.committed(batch.spans(batch.all()));
            self.whole = false;
        }
        next
    }

    /// Restores the state of the batch's partitions that are not restored yet, before any of their
    /// records is transformed; `None` when there is nothing to restore or it worked.
    fn restore(&mut self, batch: &Batch<'_>) -> Option<Next> {
        let state = self.state?;
        let partitions: Vec<i32> = batch.spans(batch.all()).keys().map(|(_, p)| *p).collect();
        let events = self.clients.consumer.context().events();
        let metrics = Arc::clone(self.stats.metrics());
        let restored = state
            .borrow_mut()
            .prepare(partitions, events, self.stop, &metrics);
        match restored {
            Ok(()) => None,
            Err(RestoreError::Stopped) => Some(Next::End(End::Stopped)),
            Err(error) => Some(self.kafka_retry(Some(batch), &error.to_string())),
        }
    }

    /// What a consumer failure while collecting means.
    fn collect_failed(&self, error: CollectError) -> End {
        let consumer = &self.clients.consumer;
        match error {
            CollectError::Rewind(message) => End::Fenced(message),
            CollectError::Consumer(class, error) => {
                let (class, detail) = refine(class, consumer.client());
                let message = format!(
                    "consumer: {error}{}",
                    detail.map(|d| format!(": {d}")).unwrap_or_default()
                );
                match class {
                    ErrorClass::Fenced => End::Fenced(message),
                    _ => End::Failed(RunError::Fatal(message)),
                }
            }
        }
    }

    /// Updates the assigned-partition gauge and readiness after each rebalance (and at the start).
    fn watch_assignment(&self, seen: &mut Option<u64>) {
        let consumer = &self.clients.consumer;
        let events = consumer.context().events();
        if *seen == Some(events) {
            return;
        }
        if let Ok(assignment) = consumer.assignment() {
            *seen = Some(events);
            let count = assignment.count();
            let metrics = self.stats.metrics();
            metrics.assigned_partitions.set(count as i64);
            metrics.health.assigned(count > 0);
        }
    }

    /// One batch in one attempt, with the error policy applied to its failure.
    fn copy(&mut self, batch: &Batch<'_>) -> Next {
        let started = Instant::now();
        let (in_before, out_before) = (self.stats.records_in(), self.stats.records_out());
        let metrics = Arc::clone(self.stats.metrics());
        let topics = Rc::clone(&self.topics);
        let result = batch.with_records(|records| {
            self.attempt(batch, records, &topics, &metrics).run(
                self.chain,
                batch.all(),
                &Work::Transform,
            )
        });
        let next = match result {
            Ok(done) => {
                self.stats.committed(done);
                Next::Committed
            }
            Err(failure) => {
                self.stats.aborted(AbortCause::of(&failure));
                self.after_failure(batch, failure)
            }
        };
        if let Next::Committed = next {
            committed_line(
                self.stats.records_in() - in_before,
                self.stats.records_out() - out_before,
                started,
                batch,
            );
        }
        next
    }

    fn attempt<'b, 'c>(
        &self,
        batch: &'b Batch<'c>,
        records: &'b [Record<'b>],
        topics: &'b RefCell<KnownTopics>,
        metrics: &'b Metrics,
    ) -> Attempt<'b, 'c>
    where
        'a: 'b,
        'a: 'c,
    {
        Attempt {
            pipeline: self.pipeline,
            consumer: &self.clients.consumer,
            producer: &self.clients.producer,
            batch,
            records,
            topics,
            metrics,
            state: self.state,
        }
    }

    /// The error policy, after the whole of `batch` failed (aborted, not yet rewound).
    fn after_failure(&mut self, batch: &Batch<'_>, failure: Failure) -> Next {
        let policy = &self.pipeline.errors;
        let (cause, source) = match failure {
            Failure::Records { cause, source } => (cause, source),
            Failure::Kafka(message) => return self.kafka_retry(Some(batch), &message),
            Failure::Fenced(message) => return Next::End(End::Fenced(message)),
            Failure::Fatal(message) => return Next::End(End::Failed(RunError::Fatal(message))),
        };
        let (failures, since) = self.streak.record_failure(batch.spans(batch.all()));
        let out_of_time = policy.max_retry_time.is_some_and(|t| since.elapsed() >= t);
        if failures <= policy.max_retries && !out_of_time {
            if let Err(message) = batch.rewind_from(0) {
                return Next::End(End::Fenced(message));
            }
            self.stats.retried();
            let delay = backoff(failures, policy.initial_backoff, policy.max_backoff);
            log::warn!(
                "aborted batch at {} (attempt {failures} of {}): {cause}; retrying in {delay:.0?}",
                batch.describe(batch.all()),
                policy.max_retries + 1
            );
            return Next::Retry(delay);
        }
        match policy.on_failure {
            FailureAction::Stop => Next::End(End::Failed(RunError::Exhausted {
                attempts: failures,
                offsets: batch.describe(batch.all()),
                failure: match source {
                    Some(index) => format!("{cause} (record {})", batch.source_of(index)),
                    None => cause.to_string(),
                },
            })),
            // A streamed batch let its records go: fetch them again, whole, and isolate there (its
            // next failure is counted too).
            FailureAction::DeadLetter { .. } | FailureAction::Skip if !batch.holds_all() => {
                if let Err(message) = batch.rewind_from(0) {
                    return Next::End(End::Fenced(message));
                }
                log::warn!(
                    "aborted streamed batch at {} (failure {failures}): {cause}; collecting it whole to isolate the failing records",
                    batch.describe(batch.all())
                );
                Next::Retry(Duration::ZERO)
            }
            FailureAction::DeadLetter { .. } | FailureAction::Skip => {
                log::warn!("batch failed {failures} time(s), last: {cause}");
                let metrics = Arc::clone(self.stats.metrics());
                let topics = Rc::clone(&self.topics);
                let isolated = batch.with_records(|records| {
                    let attempt = self.attempt(batch, records, &topics, &metrics);
                    isolate(
                        &attempt, self.chain, source, failures, self.stats, self.stop,
                    )
                });
                match isolated {
                    Ok(()) => {
                        self.streak.committed(batch.spans(batch.all()));
                        self.whole = false;
                        Next::Committed
                    }
                    // Isolation already rewound what it had not committed.
                    Err(_) if self.stop.load(Ordering::SeqCst) => Next::End(End::Stopped),
                    Err(Failure::Kafka(message)) => self.kafka_retry(None, &message),
                    Err(Failure::Fenced(message)) => Next::End(End::Fenced(message)),
                    Err(failure) => Next::End(End::Failed(RunError::Fatal(failure.to_string()))),
                }
            }
        }
    }

    /// After a Kafka failure: rewind `batch` (unless already done: `None`) and back off; Kafka
    /// failures are retried without bound and never count against the records.
    fn kafka_retry(&mut self, batch: Option<&Batch<'_>>, message: &str) -> Next {
        if let Some(batch) = batch {
            if let Err(problem) = batch.rewind_from(0) {
                return Next::End(End::Fenced(problem));
            }
        }
        let policy = &self.pipeline.errors;
        self.streak.kafka += 1;
        let delay = backoff(
            self.streak.kafka,
            policy.initial_backoff,
            policy.max_backoff,
        );
        log::warn!("Kafka failure, batch aborted and rewound: {message}; retrying in {delay:.0?}");
        Next::Retry(delay)
    }
}

/// The debug line of each committed batch (tests sum them up: `committed N in, M out`).
fn committed_line(records_in: u64, records_out: u64, started: Instant, batch: &Batch<'_>) {
    log::debug!(
        "committed {records_in} in, {records_out} out in {:.1?}: {}",
        started.elapsed(),
        batch.describe(batch.all())
    );
}
