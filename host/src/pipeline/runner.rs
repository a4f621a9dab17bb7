//! The main loop of one txform instance and its error policy.
//!
//! Per batch: begin, run the transform chain, produce, send the consumed offsets with the consumer's
//! group metadata, commit. Any failure aborts the transaction and rewinds the consumer to the batch's
//! first offsets, so nothing of a failed batch is ever visible to read_committed readers and nothing is
//! skipped. Failures caused by records are retried with backoff up to `errors.max_retries`, then
//! `errors.on_failure` decides; failures of Kafka itself are retried without bound; fatal errors stop
//! the instance.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::producer::Producer as _;

use crate::config::{FailureAction, Guarantee, Pipeline};
use crate::kafka::{
    build_consumer, build_producer, classify, Consumer, ErrorClass, Producer, Trouble,
};
use crate::plugin::Chain;

use super::attempt::{Attempt, Work};
use super::batch::{Batch, Span};
use super::failure::Failure;
use super::isolate::isolate;
use super::retry::{backoff, sleep_unless_stopped, until_done};
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

/// Consecutive failures of the records that keep failing.
///
/// After an abort only the failed batch's partitions are rewound, and the next batches may cut the
/// same records differently (other partitions' records first, or only a prefix of the failed range),
/// so commits in between must not reset the count, or a poison record would be retried forever. The
/// streak therefore follows the failed offset ranges: commits trim them, a failure that overlaps
/// them narrows them and counts, and the streak ends when nothing of them is left.
#[derive(Default)]
struct Streak {
    /// Record failures of the records in `failing`: they count against `errors.max_retries`.
    records: u32,
    /// When the first of them happened, for `errors.max_retry_time_ms`.
    since: Option<Instant>,
    /// (topic, partition) -> offsets first..=last not yet committed that every failing attempt
    /// contained.
    failing: Vec<((String, i32), Span)>,
    /// Failures of Kafka itself: they only lengthen the backoff; reset by any commit.
    kafka: u32,
}

impl Streak {
    /// Counts a record failure of `batch`; a batch that overlaps nothing of the streak starts a new
    /// one.
    fn record_failure(&mut self, batch: &Batch<'_>) -> (u32, Instant) {
        let spans = batch.spans(batch.all());
        let overlap: Vec<((String, i32), Span)> = self
            .failing
            .iter()
            .filter_map(|((topic, partition), old)| {
                let new = spans.get(&(topic.as_str(), *partition))?;
                let first = old.first.max(new.first);
                let last = old.last.min(new.last);
                (first <= last).then(|| ((topic.clone(), *partition), Span { first, last }))
            })
            .collect();
        if overlap.is_empty() {
            self.records = 0;
            self.since = None;
            self.failing = spans
                .into_iter()
                .map(|((topic, partition), span)| ((topic.to_string(), partition), span))
                .collect();
        } else {
            self.failing = overlap;
        }
        self.records += 1;
        (self.records, *self.since.get_or_insert_with(Instant::now))
    }

    /// Trims what `batch` committed off the failing ranges; the streak ends when none is left.
    fn committed(&mut self, batch: &Batch<'_>) {
        self.kafka = 0;
        let spans = batch.spans(batch.all());
        self.failing.retain_mut(|((topic, partition), failing)| {
            match spans.get(&(topic.as_str(), *partition)) {
                Some(done) if done.first <= failing.first && done.last >= failing.first => {
                    failing.first = done.last + 1;
                    failing.first <= failing.last
                }
                _ => true,
            }
        });
        if self.failing.is_empty() {
            self.records = 0;
            self.since = None;
        }
    }
}

/// A fatal error this soon after Kafka trouble is taken for a consequence of it.
const TROUBLE_WINDOW: Duration = Duration::from_secs(120);
/// At most this many client rebuilds within [`REBUILD_WINDOW`]; a real duplicate instance would
/// otherwise fence and be fenced forever.
const MAX_REBUILDS: usize = 5;
const REBUILD_WINDOW: Duration = Duration::from_secs(600);

/// The two Kafka clients of an instance, ready to copy.
struct Clients {
    consumer: Consumer,
    producer: Producer,
}

impl Clients {
    /// Builds both clients, initialises transactions (which fences any predecessor with the same
    /// transactional id and aborts its open transaction) and subscribes. Positions start from the
    /// group's committed offsets.
    fn start(pipeline: &Pipeline) -> Result<Clients, RunError> {
        let consumer = build_consumer(pipeline).map_err(RunError::Startup)?;
        let producer = build_producer(pipeline).map_err(RunError::Startup)?;
        crate::kafka::check_topics_at_startup(pipeline, &consumer).map_err(RunError::Startup)?;
        if pipeline.transaction.guarantee == Guarantee::ExactlyOnce {
            let started = Instant::now();
            until_done("init_transactions", &producer, |t| {
                producer.init_transactions(t)
            })
            .map_err(|e| match classify(&e) {
                ErrorClass::Fatal => RunError::Fatal(format!("init_transactions: {e}")),
                _ => RunError::Startup(anyhow::anyhow!("init_transactions: {e}")),
            })?;
            log::info!("transactions initialised in {:.0?}", started.elapsed());
        }
        let topics: Vec<&str> = pipeline.source.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| RunError::Startup(anyhow::anyhow!("subscribe to {topics:?}: {e}")))?;
        Ok(Clients { consumer, producer })
    }

    fn troubled_recently(&self) -> bool {
        self.consumer.context().trouble.within(TROUBLE_WINDOW)
            || self.producer.context().trouble.within(TROUBLE_WINDOW)
    }
}

/// Runs the pipeline until `stop` is set (clean exit) or an error ends it.
///
/// A fatal Kafka error soon after Kafka trouble (see `kafka::Trouble`) rebuilds both clients instead
/// of stopping: the new consumer resumes from the committed offsets and the new producer's
/// `init_transactions` aborts whatever the old one left open, so nothing is lost or duplicated.
pub fn run(pipeline: &Pipeline, mut chain: Chain, stop: &AtomicBool) -> Result<(), RunError> {
    log::info!(
        "txform starting: {} -> {} | group {} | {} id {} | batch {} records / {:?} | on failure: {} after {} retries | chain: {}",
        pipeline.source.topics.join(","),
        pipeline.sink.topic,
        pipeline.source.group_id,
        pipeline.transaction.guarantee,
        pipeline.transactional_id(),
        pipeline.batch.max_records,
        pipeline.batch.max_wait,
        pipeline.errors.on_failure.as_str(),
        pipeline.errors.max_retries,
        chain.describe().join(" -> ")
    );
    let mut stats = Stats::new(pipeline.log.stats_interval);
    let mut rebuilds: Vec<Instant> = Vec::new();
    let result = loop {
        let clients = Clients::start(pipeline)?;
        log::info!("txform running as {}", pipeline.transactional_id());
        match copy(pipeline, &clients, &mut chain, &mut stats, stop) {
            Err(RunError::Fatal(message)) if clients.troubled_recently() => {
                rebuilds.retain(|at| at.elapsed() < REBUILD_WINDOW);
                if rebuilds.len() >= MAX_REBUILDS {
                    break Err(RunError::Fatal(format!(
                        "{message} ({MAX_REBUILDS} client rebuilds within {REBUILD_WINDOW:?} did not help)"
                    )));
                }
                rebuilds.push(Instant::now());
                log::warn!(
                    "fatal Kafka error right after Kafka trouble, taken for its consequence: {message}; \
                     rebuilding the Kafka clients, which resume from the committed offsets"
                );
            }
            other => break other,
        }
    };
    log::info!("stopping: {}", stats.summary());
    result
}

/// Copies batches with `clients` until `stop` is set or an error ends it.
fn copy(
    pipeline: &Pipeline,
    clients: &Clients,
    chain: &mut Chain,
    stats: &mut Stats,
    stop: &AtomicBool,
) -> Result<(), RunError> {
    let (consumer, producer) = (&clients.consumer, &clients.producer);
    let mut streak = Streak::default();
    let policy = &pipeline.errors;
    while !stop.load(Ordering::SeqCst) {
        stats.maybe_report();
        let batch = Batch::collect(
            consumer,
            pipeline.batch.max_records,
            pipeline.batch.max_wait,
            stop,
        )
        .map_err(|e| RunError::Fatal(format!("consumer: {e}")))?;
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let (in_before, out_before) = (stats.records_in, stats.records_out);
        let outcome = batch.with_records(|records| {
            let attempt = Attempt {
                pipeline,
                consumer,
                producer,
                batch: &batch,
                records,
            };
            match attempt.run(chain, batch.all(), &Work::Transform) {
                Ok(done) => {
                    stats.committed(done);
                    Ok(())
                }
                Err(Failure::Records { cause, source }) => {
                    stats.aborts += 1;
                    let (failures, since) = streak.record_failure(&batch);
                    let out_of_time = policy.max_retry_time.is_some_and(|t| since.elapsed() >= t);
                    if failures <= policy.max_retries && !out_of_time {
                        return Err(Retry::Records(cause.to_string()));
                    }
                    match policy.on_failure {
                        FailureAction::Stop => Err(Retry::GiveUp(match source {
                            Some(index) => format!("{cause} (record {})", batch.source_of(index)),
                            None => cause.to_string(),
                        })),
                        FailureAction::DeadLetter { .. } | FailureAction::Skip => isolate(
                            &attempt, chain, cause, source, failures, stats,
                        )
                        .map_err(|failure| match failure {
                            Failure::Fatal(message) => Retry::Fatal(message),
                            other => Retry::KafkaAfterPartialCommit(other.to_string()),
                        }),
                    }
                }
                Err(Failure::Kafka(message)) => {
                    stats.aborts += 1;
                    Err(Retry::Kafka(message))
                }
                Err(Failure::Fatal(message)) => Err(Retry::Fatal(message)),
            }
        });
        let delay = match outcome {
            Ok(()) => {
                streak.committed(&batch);
                log::debug!(
                    "committed {} in, {} out in {:.1?}: {}",
                    stats.records_in - in_before,
                    stats.records_out - out_before,
                    started.elapsed(),
                    batch.describe(batch.all())
                );
                continue;
            }
            Err(Retry::Fatal(message)) => return Err(RunError::Fatal(message)),
            Err(Retry::GiveUp(failure)) => {
                return Err(RunError::Exhausted {
                    attempts: streak.records,
                    offsets: batch.describe(batch.all()),
                    failure,
                });
            }
            Err(Retry::Records(message)) => {
                batch.rewind_from(0);
                stats.retries += 1;
                let delay = backoff(streak.records, policy.initial_backoff, policy.max_backoff);
                log::warn!(
                    "aborted batch at {} (attempt {} of {}): {message}; retrying in {delay:.0?}",
                    batch.describe(batch.all()),
                    streak.records,
                    policy.max_retries + 1
                );
                delay
            }
            Err(Retry::Kafka(message)) => {
                batch.rewind_from(0);
                kafka_delay(&mut streak, policy, &consumer.context().trouble, &message)
            }
            // Isolation already rewound what it had not committed.
            Err(Retry::KafkaAfterPartialCommit(message)) => {
                kafka_delay(&mut streak, policy, &consumer.context().trouble, &message)
            }
        };
        drop(batch);
        sleep_unless_stopped(delay, stop);
    }
    // Dropping the clients closes them: the consumer leaves the group (a static member keeps its
    // slot until its session times out); no transaction is open between batches.
    Ok(())
}

/// What the loop does after a batch did not commit.
enum Retry {
    Records(String),
    Kafka(String),
    KafkaAfterPartialCommit(String),
    GiveUp(String),
    Fatal(String),
}

/// Records a Kafka failure (as trouble, see `kafka::Trouble`) and returns the backoff before the retry.
fn kafka_delay(
    streak: &mut Streak,
    policy: &crate::config::ErrorPolicy,
    trouble: &Trouble,
    message: &str,
) -> Duration {
    trouble.mark();
    streak.kafka += 1;
    let delay = backoff(streak.kafka, policy.initial_backoff, policy.max_backoff);
    log::warn!("Kafka failure, batch aborted and rewound: {message}; retrying in {delay:.0?}");
    delay
}
