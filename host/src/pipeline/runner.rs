//! The main loop of one txform instance.
//!
//! Per batch: begin, run the transform chain, produce, send the consumed offsets with the consumer's
//! group metadata, commit. Any failure aborts the transaction and rewinds the consumer to the batch's
//! first offsets, so nothing of a failed batch is ever visible to read_committed readers and nothing is
//! skipped. Retries back off exponentially and are bounded; fatal Kafka errors stop the instance.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;

use crate::config::{Guarantee, Pipeline};
use crate::kafka::{build_consumer, build_producer, classify, Consumer, ErrorClass, Producer};
use crate::plugin::Chain;

use super::batch::Batch;
use super::retry::{backoff, sleep_unless_stopped, until_done};
use super::sink::produce_all;
use super::stats::Stats;

/// Why an instance stopped before being asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start: {0:#}")]
    Startup(anyhow::Error),
    #[error("giving up after {attempts} failed attempts at {offsets}: {failure}")]
    Exhausted {
        attempts: u32,
        offsets: String,
        failure: String,
    },
    #[error("fatal Kafka error, stopping: {0}")]
    Fatal(String),
}

impl RunError {
    /// Process exit code: 1 when the error policy gave up, 3 for fatal Kafka errors, 2 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Exhausted { .. } => 1,
            RunError::Startup(_) => 2,
            RunError::Fatal(_) => 3,
        }
    }
}

/// How one batch attempt failed.
enum Failure {
    /// The batch was aborted and may be retried.
    Batch(String),
    /// The instance cannot go on.
    Fatal(String),
}

/// Runs the pipeline until `stop` is set (clean exit) or an error ends it.
pub fn run(pipeline: &Pipeline, mut chain: Chain, stop: &AtomicBool) -> Result<(), RunError> {
    let consumer = build_consumer(pipeline).map_err(RunError::Startup)?;
    let producer = build_producer(pipeline).map_err(RunError::Startup)?;
    let exactly_once = pipeline.transaction.guarantee == Guarantee::ExactlyOnce;
    if exactly_once {
        let started = Instant::now();
        until_done("init_transactions", |t| producer.init_transactions(t)).map_err(|e| {
            match classify(&e) {
                ErrorClass::Fatal => RunError::Fatal(format!("init_transactions: {e}")),
                _ => RunError::Startup(anyhow::anyhow!("init_transactions: {e}")),
            }
        })?;
        log::info!("transactions initialised in {:.0?}", started.elapsed());
    }
    let topics: Vec<&str> = pipeline.source.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| RunError::Startup(anyhow::anyhow!("subscribe to {topics:?}: {e}")))?;
    log::info!(
        "txform running: {} -> {} | group {} | {} id {} | batch {} records / {:?} | chain: {}",
        topics.join(","),
        pipeline.sink.topic,
        pipeline.source.group_id,
        pipeline.transaction.guarantee,
        pipeline.transactional_id(),
        pipeline.batch.max_records,
        pipeline.batch.max_wait,
        chain.describe().join(" -> ")
    );

    let mut stats = Stats::new(pipeline.log.stats_interval);
    let mut failures = 0u32;
    let policy = &pipeline.errors;
    while !stop.load(Ordering::SeqCst) {
        stats.maybe_report();
        let batch = Batch::collect(
            &consumer,
            pipeline.batch.max_records,
            pipeline.batch.max_wait,
            stop,
        )
        .map_err(|e| RunError::Fatal(format!("consumer: {e}")))?;
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let attempt = Attempt {
            pipeline,
            consumer: &consumer,
            producer: &producer,
            batch: &batch,
        };
        let result = if exactly_once {
            attempt.exactly_once(&mut chain)
        } else {
            attempt.at_least_once(&mut chain)
        };
        match result {
            Ok(produced) => {
                failures = 0;
                stats.records_in += batch.len() as u64;
                stats.records_out += produced as u64;
                stats.transactions += 1;
                log::debug!(
                    "committed {} in, {produced} out in {:.1?}: {}",
                    batch.len(),
                    started.elapsed(),
                    batch.describe()
                );
            }
            Err(Failure::Fatal(message)) => return Err(RunError::Fatal(message)),
            Err(Failure::Batch(message)) => {
                stats.aborts += 1;
                batch.rewind(&consumer);
                failures += 1;
                if failures > policy.max_retries {
                    log::info!("{}", stats.summary());
                    return Err(RunError::Exhausted {
                        attempts: failures,
                        offsets: batch.describe(),
                        failure: message,
                    });
                }
                stats.retries += 1;
                let delay = backoff(failures, policy.initial_backoff, policy.max_backoff);
                log::warn!(
                    "aborted batch at {} (attempt {failures} of {}): {message}; retrying in {delay:.0?}",
                    batch.describe(),
                    policy.max_retries + 1
                );
                drop(batch);
                sleep_unless_stopped(delay, stop);
            }
        }
    }
    log::info!("stopping: {}", stats.summary());
    // Dropping the consumer closes it, which leaves the group (static members keep their slot until
    // their session times out).
    drop(consumer);
    drop(producer);
    Ok(())
}

/// One attempt at one batch.
struct Attempt<'a, 'c> {
    pipeline: &'a Pipeline,
    consumer: &'c Consumer,
    producer: &'a Producer,
    batch: &'a Batch<'c>,
}

impl Attempt<'_, '_> {
    /// The transactional path. Returns the number of records produced.
    fn exactly_once(&self, chain: &mut Chain) -> Result<usize, Failure> {
        self.producer
            .begin_transaction()
            .map_err(|e| self.kafka_failure("begin_transaction", e))?;
        match self
            .transform_and_produce(chain)
            .and_then(|n| self.commit().map(|()| n))
        {
            Ok(produced) => Ok(produced),
            Err(Failure::Fatal(message)) => Err(Failure::Fatal(message)),
            Err(Failure::Batch(message)) => {
                until_done("abort_transaction", |t| self.producer.abort_transaction(t)).map_err(
                    |e| Failure::Fatal(format!("abort_transaction after `{message}`: {e}")),
                )?;
                Err(Failure::Batch(message))
            }
        }
    }

    /// The non-transactional path: produce, flush, then commit the offsets. A crash between flush and
    /// commit duplicates the batch; nothing is lost.
    fn at_least_once(&self, chain: &mut Chain) -> Result<usize, Failure> {
        let produced = self.transform_and_produce(chain)?;
        until_done("flush", |t| self.producer.flush(t))
            .map_err(|e| self.kafka_failure("flush", e))?;
        let offsets = self
            .batch
            .next_offsets()
            .map_err(|e| self.kafka_failure("offsets", e))?;
        self.consumer
            .commit(&offsets, CommitMode::Sync)
            .map_err(|e| self.kafka_failure("commit offsets", e))?;
        Ok(produced)
    }

    fn transform_and_produce(&self, chain: &mut Chain) -> Result<usize, Failure> {
        let output = self
            .batch
            .with_records(|records| chain.run(records))
            .map_err(|failure| Failure::Batch(failure.to_string()))?;
        if let Some(rejected) = output.rejected.first() {
            return Err(Failure::Batch(format!(
                "transform `{}` rejected {} record(s), first {}: {}",
                rejected.stage,
                output.rejected.len(),
                self.source_of(rejected.input),
                rejected.reason
            )));
        }
        produce_all(self.producer, &self.pipeline.sink.topic, &output.records).map_err(
            |failure| {
                Failure::Batch(format!(
                    "{failure} (source {})",
                    self.source_of(failure.input)
                ))
            },
        )?;
        Ok(output.records.len())
    }

    fn commit(&self) -> Result<(), Failure> {
        let offsets = self
            .batch
            .next_offsets()
            .map_err(|e| self.kafka_failure("offsets", e))?;
        let metadata = self
            .consumer
            .group_metadata()
            .ok_or_else(|| Failure::Batch("consumer has no group metadata yet".to_string()))?;
        until_done("send_offsets_to_transaction", |t| {
            self.producer
                .send_offsets_to_transaction(&offsets, &metadata, t)
        })
        .map_err(|e| self.kafka_failure("send_offsets_to_transaction", e))?;
        until_done("commit_transaction", |t| {
            self.producer.commit_transaction(t)
        })
        .map_err(|e| self.kafka_failure("commit_transaction", e))
    }

    fn kafka_failure(&self, call: &str, error: KafkaError) -> Failure {
        match classify(&error) {
            ErrorClass::Fatal => Failure::Fatal(format!(
                "{call}: {error} (transactional.id {}; if another instance with this id started, it fenced this one)",
                self.pipeline.transactional_id()
            )),
            ErrorClass::Abortable | ErrorClass::Retriable => Failure::Batch(format!("{call}: {error}")),
        }
    }

    /// "topic/partition@offset" of the batch record at `index`.
    fn source_of(&self, index: usize) -> String {
        use rdkafka::Message as _;
        match self.batch.message(index) {
            Some(m) => format!("{}/{}@{}", m.topic(), m.partition(), m.offset()),
            None => format!("batch record {index}"),
        }
    }
}
