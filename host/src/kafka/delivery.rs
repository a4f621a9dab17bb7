//! Delivery reports of the producer: counted, so the pipeline can wait for its outputs without
//! polling, and kept when they fail, so a failed commit can be attributed to the record Kafka
//! refused (e.g. too large for the topic) instead of to the broker.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;

use super::client_log::ClientLog;

/// What the delivery reports of the current attempt left besides their count. Reports are served
/// on the producer's own polling thread (a `ThreadedProducer`), so blocking transactional calls
/// such as `abort_transaction`, which wait for the reports of purged messages, never wait for the
/// pipeline thread.
#[derive(Default)]
struct Reports {
    /// Failed deliveries, with the batch index of each message's source record.
    failed: Vec<(usize, KafkaError)>,
    /// The highest delivered offset per partition of the watched topics.
    offsets: BTreeMap<(String, i32), i64>,
}

/// Collects delivery reports; the opaque of each message is the index of its source record in the
/// batch.
///
/// The counts are atomics and a report wakes the condition variable only while someone waits on
/// it: a delivered message costs no lock and no system call (a `notify_all` per report was a
/// futex wake per message, an eighth of the host's CPU at 100 B records).
#[derive(Default)]
pub struct DeliveryTracker {
    /// Messages enqueued in the current attempt.
    sent: AtomicU64,
    /// Delivery reports received for them (success or failure).
    reported: AtomicU64,
    /// Threads inside a wait on `changed` (each counts itself in while holding `reports`).
    waiters: AtomicUsize,
    reports: Mutex<Reports>,
    /// Signalled on a report while `waiters` is not zero.
    changed: Condvar,
    /// librdkafka's errors and logs, rate-limited.
    log: ClientLog,
    /// Whether `watched` holds any topic (so most reports never lock it).
    watching: AtomicBool,
    /// Topics whose delivered offsets are kept (changelogs: the local store records how far it is).
    watched: Mutex<HashSet<String>>,
    /// Waits for room in a full queue (`txform_producer_queue_full_waits_total` when served).
    queue_full_waits: Counter,
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
    /// A tracker that counts its waits for room in `queue_full_waits`.
    pub fn counting_queue_full_waits(queue_full_waits: Counter) -> DeliveryTracker {
        DeliveryTracker {
            queue_full_waits,
            ..DeliveryTracker::default()
        }
    }

    /// Forgets the previous attempt; called when a new attempt begins (after the previous one's
    /// commit or abort, which wait for all its reports).
    pub fn clear(&self) {
        let mut reports = self.lock();
        *reports = Reports::default();
        self.sent.store(0, SeqCst);
        self.reported.store(0, SeqCst);
    }

    /// Keeps the delivered offsets of `topics` from now on (see [`DeliveryTracker::offsets`]).
    pub fn watch(&self, topics: impl IntoIterator<Item = String>) {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        watched.extend(topics);
        self.watching.store(!watched.is_empty(), SeqCst);
    }

    /// The highest offset delivered in the current attempt per partition of the watched topics.
    pub fn offsets(&self) -> BTreeMap<(String, i32), i64> {
        self.lock().offsets.clone()
    }

    /// Counts a message handed to librdkafka.
    pub fn sent(&self) {
        self.sent.fetch_add(1, SeqCst);
    }

    /// Waits up to `timeout` until every message sent in this attempt is reported, or one failed.
    pub fn wait(&self, timeout: Duration) -> Deliveries {
        let reports = self.wait_while(timeout, |r, pending| r.failed.is_empty() && pending > 0);
        self.state(&reports)
    }

    /// Waits up to `timeout` until every message sent in this attempt is reported, failed or not;
    /// returns whether all were. Without a transaction nothing purges a failed attempt's messages,
    /// and their late reports must not be counted as the next attempt's (which could then see
    /// its own outputs as delivered before they are, and commit past a refused record).
    pub fn wait_all(&self, timeout: Duration) -> bool {
        drop(self.wait_while(timeout, |_, pending| pending > 0));
        self.pending() == 0
    }

    /// Waits up to `timeout` for room in librdkafka's full queue: until a quarter of the messages
    /// in flight now (at least one) are reported. Waiting for the next report only would wake the
    /// pipeline thread once per delivered message while the queue stays full: a report frees room
    /// for one message, the next send fills it again.
    pub fn wait_for_room(&self, timeout: Duration) {
        self.queue_full_waits.inc();
        let seen = self.reported.load(SeqCst);
        let room = (self.pending() / 4).max(1);
        drop(self.wait_while(timeout, |_, _| {
            self.reported.load(SeqCst) < seen.saturating_add(room)
        }));
    }

    /// The first failed delivery of the current attempt, if any.
    pub fn first_failure(&self) -> Option<(usize, KafkaError)> {
        self.lock().failed.first().cloned()
    }

    /// The first failure that is the record's own fault (not the broker's), with its source index.
    pub fn refused_record(&self) -> Option<(usize, KafkaError)> {
        self.lock()
            .failed
            .iter()
            .find(|(_, error)| is_record_refusal(error))
            .cloned()
    }

    /// Messages sent in this attempt and not reported yet.
    fn pending(&self) -> u64 {
        // `reported` first: a report never counts before its message was sent, so this never wraps.
        let reported = self.reported.load(SeqCst);
        self.sent.load(SeqCst).saturating_sub(reported)
    }

    fn state(&self, reports: &Reports) -> Deliveries {
        match self.pending() {
            _ if !reports.failed.is_empty() => Deliveries::Failed,
            0 => Deliveries::Done,
            pending => Deliveries::Pending(pending),
        }
    }

    /// Blocks up to `timeout` while `condition(reports, pending)` holds, woken by each report.
    ///
    /// No report is missed: a waiter counts itself in `waiters` before it tests the condition, and
    /// a report counts itself in `reported` before it reads `waiters` (both sequentially
    /// consistent), so either the test sees the report or the report sees the waiter and takes
    /// the lock, which the waiter only gives up inside the wait.
    fn wait_while(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&Reports, u64) -> bool,
    ) -> MutexGuard<'_, Reports> {
        let guard = self.lock();
        self.waiters.fetch_add(1, SeqCst);
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |r| condition(r, self.pending()))
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.waiters.fetch_sub(1, SeqCst);
        guard
    }

    /// Counts one report: `failure` is a failed delivery with its source index, `delivered` the
    /// partition and offset of a delivered message of a watched topic.
    fn report(
        &self,
        failure: Option<(usize, KafkaError)>,
        delivered: Option<((String, i32), i64)>,
    ) {
        if failure.is_some() || delivered.is_some() {
            let mut reports = self.lock();
            reports.failed.extend(failure);
            if let Some((partition, offset)) = delivered {
                let highest = reports.offsets.entry(partition).or_insert(offset);
                *highest = (*highest).max(offset);
            }
        }
        self.reported.fetch_add(1, SeqCst);
        if self.waiters.load(SeqCst) > 0 {
            // Taking the lock orders this after a waiter's test of its condition.
            drop(self.lock());
            self.changed.notify_all();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Reports> {
        self.reports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        match result {
            Ok(message) => {
                let delivered = self.watching.load(SeqCst).then(|| {
                    let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
                    watched.contains(message.topic()).then(|| {
                        let partition = (message.topic().to_string(), message.partition());
                        (partition, message.offset())
                    })
                });
                self.report(None, delivered.flatten());
            }
            Err((error, _)) => self.report(Some((source, error.clone())), None),
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread;

    use super::*;

    /// Long enough never to end a wait that a report should end.
    const NEVER: Duration = Duration::from_secs(60);

    fn tracker_with_sent(n: u64) -> Arc<DeliveryTracker> {
        let tracker = Arc::new(DeliveryTracker::default());
        (0..n).for_each(|_| tracker.sent());
        tracker
    }

    #[test]
    fn a_waiter_wakes_on_the_last_report_of_many() {
        let tracker = tracker_with_sent(10_000);
        let reporter = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || (0..10_000).for_each(|_| tracker.report(None, None)))
        };
        assert_eq!(tracker.wait(NEVER), Deliveries::Done);
        assert!(tracker.wait_all(Duration::ZERO));
        reporter.join().ok();
    }

    #[test]
    fn a_failure_ends_the_wait_with_its_source_kept() {
        let tracker = tracker_with_sent(3);
        tracker.report(None, None);
        let reporter = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || {
                let refused = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
                tracker.report(Some((7, refused)), None)
            })
        };
        assert_eq!(tracker.wait(NEVER), Deliveries::Failed);
        reporter.join().ok();
        assert_eq!(tracker.refused_record().map(|(source, _)| source), Some(7));
        assert!(!tracker.wait_all(Duration::ZERO));
        assert_eq!(tracker.pending(), 1);
    }

    /// Waits until some thread waits on `tracker`.
    fn until_waited_on(tracker: &DeliveryTracker) {
        while tracker.waiters.load(SeqCst) == 0 {
            thread::yield_now();
        }
    }

    #[test]
    fn a_full_queue_waits_for_a_quarter_of_the_messages_in_flight() {
        let tracker = tracker_with_sent(100);
        let waiter = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.wait_for_room(NEVER))
        };
        until_waited_on(&tracker);
        (0..24).for_each(|_| tracker.report(None, None));
        // 24 reports are not room enough (a waiter woken by each would have returned by now).
        thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        tracker.report(None, None);
        waiter.join().ok();
        assert_eq!(tracker.wait(Duration::ZERO), Deliveries::Pending(75));
        // With fewer than four in flight, one report is room enough.
        let tracker = tracker_with_sent(3);
        let waiter = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.wait_for_room(NEVER))
        };
        until_waited_on(&tracker);
        tracker.report(None, None);
        waiter.join().ok();
        assert_eq!(tracker.wait(Duration::ZERO), Deliveries::Pending(2));
        // Nothing in flight (the queue is full of another client's messages): the wait times out.
        // Every wait counts, whether room came or the time ran out.
        let waits = Counter::default();
        let idle = DeliveryTracker::counting_queue_full_waits(waits.clone());
        idle.wait_for_room(Duration::from_millis(10));
        idle.wait_for_room(Duration::from_millis(1));
        assert_eq!(waits.get(), 2);
    }

    #[test]
    fn watched_offsets_keep_the_highest_and_clear_forgets_everything() {
        let tracker = tracker_with_sent(3);
        let partition = ("changelog".to_string(), 2);
        for offset in [5, 9, 7] {
            tracker.report(None, Some((partition.clone(), offset)));
        }
        assert_eq!(tracker.offsets().get(&partition), Some(&9));
        assert_eq!(tracker.wait(Duration::ZERO), Deliveries::Done);
        tracker.clear();
        tracker.sent();
        assert!(tracker.offsets().is_empty());
        assert_eq!(tracker.wait(Duration::ZERO), Deliveries::Pending(1));
    }
}
