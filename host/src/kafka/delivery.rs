//! Delivery reports of the producer: counted, so the pipeline can wait for its outputs without
//! polling, and kept when they fail, so a failed commit can be attributed to the record Kafka
//! refused (e.g. too large for the topic) instead of to the broker.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;

use super::client_log::ClientLog;

/// Delivery reports of the current attempt. Reports are served on the producer's own polling
/// thread (a `ThreadedProducer`), so blocking transactional calls such as `abort_transaction`,
/// which wait for the reports of purged messages, never wait for the pipeline thread.
#[derive(Default)]
struct Reports {
    /// Messages enqueued in the current attempt.
    sent: u64,
    /// Delivery reports received for them (success or failure).
    reported: u64,
    /// Failed deliveries, with the batch index of each message's source record.
    failed: Vec<(usize, KafkaError)>,
    /// The highest delivered offset per partition of the watched topics.
    offsets: BTreeMap<(String, i32), i64>,
}

/// Collects delivery reports; the opaque of each message is the index of its source record in the
/// batch.
#[derive(Default)]
pub struct DeliveryTracker {
    reports: Mutex<Reports>,
    /// Signalled on every report.
    changed: Condvar,
    /// librdkafka's errors and logs, rate-limited.
    log: ClientLog,
    /// Topics whose delivered offsets are kept (changelogs: the local store records how far it is).
    watched: Mutex<HashSet<String>>,
}

/// Where the deliveries of an attempt stand.
#[derive(Debug, PartialEq, Eq)]
pub enum Deliveries {
    /// Every enqueued message was delivered.
    Done,
    /// At least one delivery failed (librdkafka sends nothing more of the transaction after that).
    Failed,
    /// This many are still in flight.
    Pending(u64),
}

impl DeliveryTracker {
    /// Forgets the previous attempt; called when a new attempt begins (after the previous one's
    /// commit or abort, which wait for all its reports).
    pub fn clear(&self) {
        self.with(|r| *r = Reports::default());
    }

    /// Keeps the delivered offsets of `topics` from now on (see [`DeliveryTracker::offsets`]).
    pub fn watch(&self, topics: impl IntoIterator<Item = String>) {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        watched.extend(topics);
    }

    /// The highest offset delivered in the current attempt per partition of the watched topics.
    pub fn offsets(&self) -> BTreeMap<(String, i32), i64> {
        self.with(|r| r.offsets.clone())
    }

    /// Counts a message handed to librdkafka.
    pub fn sent(&self) {
        self.with(|r| r.sent += 1);
    }

    /// Waits up to `timeout` until every message sent in this attempt is reported, or one failed.
    pub fn wait(&self, timeout: Duration) -> Deliveries {
        let guard = self.lock();
        let (reports, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |r| {
                r.failed.is_empty() && r.reported < r.sent
            })
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Self::state(&reports)
    }

    /// Waits up to `timeout` until every message sent in this attempt is reported, failed or not;
    /// returns whether all were. Without a transaction nothing purges a failed attempt's messages,
    /// and their late reports must not be counted as the next attempt's (which could then see
    /// its own outputs as delivered before they are, and commit past a refused record).
    pub fn wait_all(&self, timeout: Duration) -> bool {
        let guard = self.lock();
        let (reports, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |r| r.reported < r.sent)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        reports.reported >= reports.sent
    }

    /// Waits up to `timeout` for the next report (when librdkafka's queue is full).
    pub fn wait_for_report(&self, timeout: Duration) {
        let guard = self.lock();
        let seen = guard.reported;
        drop(
            self.changed
                .wait_timeout_while(guard, timeout, |r| r.reported == seen)
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
    }

    /// The first failed delivery of the current attempt, if any.
    pub fn first_failure(&self) -> Option<(usize, KafkaError)> {
        self.with(|r| r.failed.first().cloned())
    }

    /// The first failure that is the record's own fault (not the broker's), with its source index.
    pub fn refused_record(&self) -> Option<(usize, KafkaError)> {
        self.with(|r| {
            r.failed
                .iter()
                .find(|(_, error)| is_record_refusal(error))
                .cloned()
        })
    }

    fn state(reports: &Reports) -> Deliveries {
        if !reports.failed.is_empty() {
            Deliveries::Failed
        } else if reports.reported >= reports.sent {
            Deliveries::Done
        } else {
            Deliveries::Pending(reports.sent - reports.reported)
        }
    }

    fn lock(&self) -> MutexGuard<'_, Reports> {
        self.reports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with<R>(&self, f: impl FnOnce(&mut Reports) -> R) -> R {
        f(&mut self.lock())
    }
}

impl ClientContext for DeliveryTracker {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, source: usize) {
        let watched = match result {
            Ok(message) => {
                let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
                (!watched.is_empty() && watched.contains(message.topic())).then(|| {
                    (
                        message.topic().to_string(),
                        message.partition(),
                        message.offset(),
                    )
                })
            }
            Err(_) => None,
        };
        self.with(|r| {
            r.reported += 1;
            if let Err((error, _)) = result {
                r.failed.push((source, error.clone()));
            }
            if let Some((topic, partition, offset)) = watched {
                let highest = r.offsets.entry((topic, partition)).or_insert(offset);
                *highest = (*highest).max(offset);
            }
        });
        self.changed.notify_all();
    }
}

/// Errors that a retry cannot fix because the record itself is unacceptable.
pub fn is_record_refusal(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTimestamp
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::InvalidArgument
        )
    )
}
