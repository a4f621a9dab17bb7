//! Copying batches with one set of clients, and the error policy.
//!
//! Per batch: begin, run the transform chain, produce, send the consumed offsets with the consumer's
//! group metadata, commit. Any failure aborts the transaction and rewinds the consumer to the batch's
//! first offsets, so nothing of a failed batch is ever visible to read_committed readers and nothing is
//! skipped. Failures caused by records are retried with backoff up to `errors.max_retries`, then
//! `errors.on_failure` decides; failures of Kafka itself are retried without bound; a fence ends the
//! copy so the runner can ask the group what it means.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;

use crate::config::{FailureAction, Pipeline};
use crate::kafka::{refine, ErrorClass, KnownTopics};
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

/// What the loop does after one batch.
enum Next {
    Committed,
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
    topics: RefCell<KnownTopics>,
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
            pipeline,
            clients,
            chain,
            stats,
            stop,
            state,
            streak: Streak::default(),
            topics: RefCell::new(
                KnownTopics::new().knowing(
                    std::iter::once(pipeline.sink.topic.clone()).chain(
                        pipeline
                            .errors
                            .on_failure
                            .dead_letter_topic()
                            .map(str::to_string),
                    ),
                ),
            ),
        }
    }

    /// Copies batches until `stop` is set or something ends it. No transaction is open between
    /// batches, so returning (and dropping the clients) leaves nothing behind.
    pub fn run(mut self) -> End {
        let clients = self.clients;
        let consumer = &clients.consumer;
        let metrics = std::sync::Arc::clone(self.stats.metrics());
        metrics.health.copying(true);
        if let Some(state) = self.state {
            state.borrow_mut().forget_restored();
        }
        let mut rebalances = None;
        while !self.stop.load(Ordering::SeqCst) {
            metrics.health.beat();
            self.stats.maybe_report();
            self.watch_assignment(&mut rebalances);
            let batch = match Batch::collect(
                consumer,
                self.pipeline.batch.max_records,
                self.pipeline.batch.max_wait,
                self.stop,
            ) {
                Ok(batch) => batch,
                Err(CollectError::Rewind(message)) => return End::Fenced(message),
                Err(CollectError::Consumer(class, error)) => {
                    return match refine(class, consumer.client()) {
                        (ErrorClass::Fenced, detail) => End::Fenced(format!(
                            "consumer: {error}{}",
                            detail.map(|d| format!(": {d}")).unwrap_or_default()
                        )),
                        (_, detail) => End::Failed(RunError::Fatal(format!(
                            "consumer: {error}{}",
                            detail.map(|d| format!(": {d}")).unwrap_or_default()
                        ))),
                    }
                }
            };
            if batch.is_empty() {
                continue;
            }
            if let Some(next) = self.restore(&batch) {
                match next {
                    Next::End(end) => return end,
                    Next::Retry(delay) => {
                        drop(batch);
                        let _waiting = metrics.health.waiting();
                        sleep_unless_stopped(delay, self.stop);
                        continue;
                    }
                    Next::Committed => {}
                }
            }
            self.stats.batch(batch.all().len());
            let delay = match self.copy(&batch) {
                Next::Committed => {
                    self.streak.committed(batch.spans(batch.all()));
                    continue;
                }
                Next::Retry(delay) => delay,
                Next::End(end) => return end,
            };
            drop(batch);
            let _waiting = metrics.health.waiting();
            sleep_unless_stopped(delay, self.stop);
        }
        End::Stopped
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

    /// Restores the state of the batch's partitions that are not restored yet, before any of their
    /// records is transformed; `None` when there is nothing to restore or it worked.
    fn restore(&mut self, batch: &Batch<'_>) -> Option<Next> {
        let state = self.state?;
        let partitions: Vec<i32> = batch.spans(batch.all()).keys().map(|(_, p)| *p).collect();
        let events = self.clients.consumer.context().events();
        let metrics = std::sync::Arc::clone(self.stats.metrics());
        let restored = state
            .borrow_mut()
            .prepare(partitions, events, self.stop, &metrics);
        match restored {
            Ok(()) => None,
            Err(RestoreError::Stopped) => Some(Next::End(End::Stopped)),
            Err(error) => Some(self.kafka_retry(batch, true, &error.to_string())),
        }
    }

    /// One batch, with the error policy applied to its failure.
    fn copy(&mut self, batch: &Batch<'_>) -> Next {
        let started = Instant::now();
        let (in_before, out_before) = (self.stats.records_in(), self.stats.records_out());
        let pipeline = self.pipeline;
        let policy = &pipeline.errors;
        let clients = self.clients;
        let metrics = std::sync::Arc::clone(self.stats.metrics());
        let next = batch.with_records(|records| {
            let attempt = Attempt {
                pipeline,
                consumer: &clients.consumer,
                producer: &clients.producer,
                batch,
                records,
                topics: &self.topics,
                metrics: &metrics,
                state: self.state,
            };
            let failure = match attempt.run(self.chain, batch.all(), &Work::Transform) {
                Ok(done) => {
                    self.stats.committed(done);
                    return Next::Committed;
                }
                Err(failure) => failure,
            };
            self.stats.aborted(AbortCause::of(&failure));
            let (cause, source) = match failure {
                Failure::Records { cause, source } => (cause, source),
                Failure::Kafka(message) => return self.kafka_retry(batch, true, &message),
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
                FailureAction::DeadLetter { .. } | FailureAction::Skip => {
                    log::warn!("batch failed {failures} time(s), last: {cause}");
                    match isolate(
                        &attempt,
                        self.chain,
                        source,
                        failures,
                        self.stats,
                        self.stop,
                    ) {
                        Ok(()) => Next::Committed,
                        // Isolation already rewound what it had not committed.
                        Err(_) if self.stop.load(Ordering::SeqCst) => Next::End(End::Stopped),
                        Err(Failure::Kafka(message)) => self.kafka_retry(batch, false, &message),
                        Err(Failure::Fenced(message)) => Next::End(End::Fenced(message)),
                        Err(failure) => {
                            Next::End(End::Failed(RunError::Fatal(failure.to_string())))
                        }
                    }
                }
            }
        });
        if let Next::Committed = next {
            log::debug!(
                "committed {} in, {} out in {:.1?}: {}",
                self.stats.records_in() - in_before,
                self.stats.records_out() - out_before,
                started.elapsed(),
                batch.describe(batch.all())
            );
        }
        next
    }

    /// After a Kafka failure: rewind (unless already done) and back off; Kafka failures are retried
    /// without bound and never count against the records.
    fn kafka_retry(&mut self, batch: &Batch<'_>, rewind: bool, message: &str) -> Next {
        if rewind {
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
