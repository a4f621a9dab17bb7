//! Collecting a batch of fetched messages and rewinding the consumer to its start.
//!
//! A batch holds the librdkafka messages themselves (zero copy); plugins get [`Record`] views of them.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use txform_plugin_api::{Header, Record};

use crate::kafka::{classify, Consumer, ErrorClass};

/// How long one idle poll waits, so a shutdown request is seen promptly.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// The messages of one transaction, in fetch order.
pub struct Batch<'c> {
    messages: Vec<BorrowedMessage<'c>>,
}

/// Offsets spanned by one partition of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub first: i64,
    pub last: i64,
}

impl<'c> Batch<'c> {
    /// Polls until `max_records` messages arrived or `max_wait` passed since the first one, or until
    /// `stop` is set. Messages fetched before a rebalance are dropped (their partitions rewound when
    /// still ours), so a batch never straddles one.
    pub fn collect(
        consumer: &'c Consumer,
        max_records: usize,
        max_wait: Duration,
        stop: &AtomicBool,
    ) -> Result<Batch<'c>, KafkaError> {
        let mut messages: Vec<BorrowedMessage<'c>> = Vec::with_capacity(max_records.min(10_000));
        let mut deadline: Option<Instant> = None;
        let mut rebalances = consumer.context().events();
        while messages.len() < max_records && !stop.load(Ordering::SeqCst) {
            let timeout = match deadline {
                None => IDLE_POLL,
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(IDLE_POLL),
                    _ => break,
                },
            };
            let polled = consumer.poll(timeout);
            if consumer.context().events() != rebalances {
                rebalances = consumer.context().events();
                let dropped = Batch {
                    messages: std::mem::take(&mut messages),
                };
                dropped.rewind_after_rebalance(consumer);
                deadline = None;
                continue; // the message from this poll (if any) was rewound too
            }
            match polled {
                // Idle: return (empty) so the caller can report and check for shutdown.
                None if messages.is_empty() => break,
                None => {}
                Some(Ok(message)) => {
                    deadline.get_or_insert_with(|| Instant::now() + max_wait);
                    messages.push(message);
                }
                Some(Err(error)) if classify(&error) == ErrorClass::Fatal => return Err(error),
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(error)) => log::warn!("consumer: {error}"),
            }
        }
        Ok(Batch { messages })
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// First and last offset of each partition in the batch.
    pub fn spans(&self) -> BTreeMap<(&str, i32), Span> {
        let mut spans: BTreeMap<(&str, i32), Span> = BTreeMap::new();
        for m in &self.messages {
            spans
                .entry((m.topic(), m.partition()))
                .and_modify(|s| s.last = m.offset())
                .or_insert(Span {
                    first: m.offset(),
                    last: m.offset(),
                });
        }
        spans
    }

    /// The offsets to commit: one past the last message of each partition.
    pub fn next_offsets(&self) -> Result<TopicPartitionList, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), span) in self.spans() {
            tpl.add_partition_offset(topic, partition, Offset::Offset(span.last + 1))?;
        }
        Ok(tpl)
    }

    /// "topic/partition offsets first..=last" of every partition, for error messages.
    pub fn describe(&self) -> String {
        let spans: Vec<String> = self
            .spans()
            .iter()
            .map(|((topic, partition), s)| {
                format!("{topic}/{partition} offsets {}..={}", s.first, s.last)
            })
            .collect();
        spans.join(", ")
    }

    /// Seeks every partition of the batch back to the batch's first offset, so the next poll fetches
    /// the same records again. Used after an aborted transaction.
    pub fn rewind(&self, consumer: &Consumer) {
        self.seek_first(consumer, &HashSet::new());
    }

    /// After a rebalance: partitions we still own are sought back; revoked ones restart from their
    /// committed offsets if they come back, which is where this batch began too.
    fn rewind_after_rebalance(&self, consumer: &Consumer) {
        let revoked = consumer.context().take_revoked();
        self.seek_first(consumer, &revoked);
    }

    fn seek_first(&self, consumer: &Consumer, skip: &HashSet<(String, i32)>) {
        for ((topic, partition), span) in self.spans() {
            if skip.contains(&(topic.to_string(), partition)) {
                continue;
            }
            if let Err(error) = consumer.seek(
                topic,
                partition,
                Offset::Offset(span.first),
                Duration::from_secs(10),
            ) {
                // A partition lost in the meantime restarts from its committed offset anyway.
                log::debug!("seek {topic}/{partition} to {}: {error}", span.first);
            }
        }
    }

    /// Calls `f` with zero-copy record views of the batch.
    pub fn with_records<R>(&self, f: impl FnOnce(&[Record<'_>]) -> R) -> R {
        let mut headers: Vec<Header<'_>> = Vec::new();
        let mut ranges = Vec::with_capacity(self.messages.len());
        for m in &self.messages {
            let start = headers.len();
            if let Some(hs) = m.headers() {
                headers.extend(hs.iter().map(|h| Header::new(h.key, h.value)));
            }
            ranges.push(start..headers.len());
        }
        let records: Vec<Record<'_>> = self
            .messages
            .iter()
            .zip(ranges)
            .map(|(m, range)| {
                Record::new(
                    m.topic(),
                    m.partition(),
                    m.offset(),
                    m.timestamp().to_millis(),
                    m.key(),
                    m.payload(),
                    &headers[range],
                )
            })
            .collect();
        f(&records)
    }

    /// The source message at `index`, for attributing outputs and failures.
    pub fn message(&self, index: usize) -> Option<&BorrowedMessage<'c>> {
        self.messages.get(index)
    }
}
