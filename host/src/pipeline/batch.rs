//! Collecting a batch of fetched messages and rewinding the consumer to its start.
//!
//! A batch holds the librdkafka messages themselves (zero copy); plugins get [`Record`] views of them.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use txform_plugin_api::{Header, Record};

use crate::kafka::headers::headers as raw_headers;
use crate::kafka::{classify, Consumer, ErrorClass};

/// How long one idle poll waits, so a shutdown request is seen promptly.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Seeking is local to the client; this only bounds waiting for its internal lock.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// Seeks each partition to its offset. A seek that fails for a partition this consumer still owns
/// is an error: the next commit could otherwise pass over records that were never copied. A
/// partition lost in the meantime restarts from its committed offset anyway.
fn seek(consumer: &Consumer, targets: BTreeMap<(&str, i32), i64>) -> Result<(), String> {
    for ((topic, partition), offset) in targets {
        if let Err(error) = consumer.seek(topic, partition, Offset::Offset(offset), SEEK_TIMEOUT) {
            let owned = consumer.assignment().map(|tpl| {
                tpl.elements()
                    .iter()
                    .any(|e| e.topic() == topic && e.partition() == partition)
            });
            match owned {
                Ok(false) => {
                    log::debug!("seek {topic}/{partition} to {offset} (not owned): {error}")
                }
                _ => {
                    return Err(format!(
                        "cannot rewind {topic}/{partition} to offset {offset}: {error}"
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Where to seek after a rebalance dropped a batch spanning `spans`. Partitions still owned go back
/// to their first dropped record. Revoked ones are left alone: they restart from their committed
/// offset if they come back (not from what we held: another member may have committed past it),
/// except that `fresh` (partition, offset), fetched after the callback, already moved its partition
/// past itself, so its partition goes back to it (or to the dropped records before it).
fn rebalance_targets<'a>(
    spans: BTreeMap<(&'a str, i32), Span>,
    revoked: &HashSet<(String, i32)>,
    fresh: Option<((&'a str, i32), i64)>,
) -> BTreeMap<(&'a str, i32), i64> {
    let mut targets: BTreeMap<(&str, i32), i64> = spans
        .into_iter()
        .filter(|((topic, partition), _)| !revoked.contains(&(topic.to_string(), *partition)))
        .map(|(partition, span)| (partition, span.first))
        .collect();
    if let Some((partition, offset)) = fresh {
        targets
            .entry(partition)
            .and_modify(|first| *first = (*first).min(offset))
            .or_insert(offset);
    }
    targets
}

/// Why a batch could not be collected.
#[derive(Debug)]
pub enum CollectError {
    /// The consumer reported a fenced or fatal state.
    Consumer(ErrorClass, KafkaError),
    /// A partition still owned could not be rewound after a rebalance.
    Rewind(String),
}

/// The messages of one transaction, in fetch order.
pub struct Batch<'c> {
    consumer: &'c Consumer,
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
    ) -> Result<Batch<'c>, CollectError> {
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
                    consumer,
                    messages: std::mem::take(&mut messages),
                };
                if !dropped.messages.is_empty() {
                    // Says that a rebalance landed mid-batch (tests and operators look for it).
                    log::info!(
                        "rebalance while collecting a batch: dropped {} record(s) of {}",
                        dropped.messages.len(),
                        dropped.describe(dropped.all())
                    );
                }
                let fresh = match &polled {
                    Some(Ok(message)) => Some(message),
                    _ => None,
                };
                dropped
                    .rewind_after_rebalance(fresh)
                    .map_err(CollectError::Rewind)?;
                deadline = None;
                continue;
            }
            match polled {
                // Idle: return (empty) so the caller can report and check for shutdown.
                None if messages.is_empty() => break,
                None => {}
                Some(Ok(message)) => {
                    deadline.get_or_insert_with(|| Instant::now() + max_wait);
                    messages.push(message);
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(error)) => match classify(&error) {
                    class @ (ErrorClass::Fenced | ErrorClass::Fatal) => {
                        return Err(CollectError::Consumer(class, error))
                    }
                    // librdkafka retries on its own; its error callback already logged it.
                    ErrorClass::Abortable | ErrorClass::Retriable => {
                        log::debug!("consumer: {error}")
                    }
                },
            }
        }
        Ok(Batch { consumer, messages })
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// First and last offset of each partition among the batch records in `range`.
    pub fn spans(&self, range: Range<usize>) -> BTreeMap<(&str, i32), Span> {
        let mut spans: BTreeMap<(&str, i32), Span> = BTreeMap::new();
        for m in self.messages.get(range).unwrap_or_default() {
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

    /// The offsets to commit after the records in `range`: one past the last of each partition.
    /// Records are in fetch order, so a range that follows everything committed before it covers a
    /// contiguous next chunk of every partition it touches.
    /// Each offset carries `stamp` as its metadata: the committing process's incarnation, which
    /// tells a fenced process whether a newer one has been committing (see `kafka::membership`).
    pub fn next_offsets(
        &self,
        range: Range<usize>,
        stamp: &str,
    ) -> Result<TopicPartitionList, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), span) in self.spans(range) {
            let mut element = tpl.add_partition(topic, partition);
            element.set_offset(Offset::Offset(span.last + 1))?;
            element.set_metadata(stamp);
        }
        Ok(tpl)
    }

    /// All indices of the batch.
    pub fn all(&self) -> Range<usize> {
        0..self.messages.len()
    }

    /// "topic/partition offsets first..=last" of every partition in `range`, for messages.
    pub fn describe(&self, range: Range<usize>) -> String {
        let spans: Vec<String> = self
            .spans(range)
            .iter()
            .map(|((topic, partition), s)| {
                format!("{topic}/{partition} offsets {}..={}", s.first, s.last)
            })
            .collect();
        spans.join(", ")
    }

    /// "topic/partition@offset" of the record at `index`.
    pub fn source_of(&self, index: usize) -> String {
        match self.messages.get(index) {
            Some(m) => format!("{}/{}@{}", m.topic(), m.partition(), m.offset()),
            None => format!("batch record {index}"),
        }
    }

    /// Seeks every partition of the records from `start` on back to its first offset there, so the
    /// next poll fetches them again. Used after an aborted transaction.
    pub fn rewind_from(&self, start: usize) -> Result<(), String> {
        let targets = self
            .spans(start..self.messages.len())
            .into_iter()
            .map(|(partition, span)| (partition, span.first))
            .collect();
        seek(self.consumer, targets)
    }

    /// Drops the batch after a rebalance seen by the poll that returned `fresh`; see
    /// [`rebalance_targets`].
    fn rewind_after_rebalance(&self, fresh: Option<&BorrowedMessage<'_>>) -> Result<(), String> {
        let revoked = self.consumer.context().take_revoked();
        let fresh = fresh.map(|m| ((m.topic(), m.partition()), m.offset()));
        seek(
            self.consumer,
            rebalance_targets(self.spans(self.all()), &revoked, fresh),
        )
    }

    /// Calls `f` with zero-copy record views of the batch.
    ///
    /// Header names are bytes in Kafka but `str` at the plugin boundary: a name that is not UTF-8
    /// reaches plugins as its lossy UTF-8 form (invalid bytes become U+FFFD), which the sink turns
    /// back into the original bytes when a plugin passes the header on unchanged.
    pub fn with_records<R>(&self, f: impl FnOnce(&[Record<'_>]) -> R) -> R {
        // (index in `headers`, lossy name) of every name that is not UTF-8; rare.
        let mut lossy: Vec<(usize, String)> = Vec::new();
        let mut headers: Vec<Header<'_>> = Vec::new();
        let mut ranges = Vec::with_capacity(self.messages.len());
        for m in &self.messages {
            let start = headers.len();
            for h in raw_headers(m) {
                let key = std::str::from_utf8(h.key).unwrap_or_else(|_| {
                    lossy.push((headers.len(), String::from_utf8_lossy(h.key).into_owned()));
                    ""
                });
                headers.push(Header::new(key, h.value));
            }
            ranges.push(start..headers.len());
        }
        for (at, name) in &lossy {
            headers[*at] = Header::new(name, headers[*at].value());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn span(first: i64, last: i64) -> Span {
        Span { first, last }
    }

    #[test]
    fn owned_partitions_go_back_to_their_first_dropped_record_revoked_ones_stay() {
        let spans = BTreeMap::from([
            (("a", 0), span(10, 14)),
            (("a", 1), span(3, 3)),
            (("b", 0), span(7, 9)),
        ]);
        let revoked = HashSet::from([("a".to_string(), 1), ("b".to_string(), 5)]);
        assert_eq!(
            rebalance_targets(spans, &revoked, None),
            BTreeMap::from([(("a", 0), 10), (("b", 0), 7)])
        );
    }

    #[test]
    fn the_message_fetched_after_the_rebalance_is_fetched_again() {
        let spans = BTreeMap::from([(("a", 0), span(10, 14)), (("a", 1), span(3, 5))]);
        let none = HashSet::new();
        // Of a partition with no dropped records (newly assigned, or revoked and back): itself.
        assert_eq!(
            rebalance_targets(spans.clone(), &none, Some((("a", 2), 40))),
            BTreeMap::from([(("a", 0), 10), (("a", 1), 3), (("a", 2), 40)])
        );
        // After dropped records of its partition: the first of those.
        assert_eq!(
            rebalance_targets(spans.clone(), &none, Some((("a", 0), 15))),
            BTreeMap::from([(("a", 0), 10), (("a", 1), 3)])
        );
        // Of a revoked partition that came back: only itself, never what was dropped of it.
        let revoked = HashSet::from([("a".to_string(), 0)]);
        assert_eq!(
            rebalance_targets(spans, &revoked, Some((("a", 0), 12))),
            BTreeMap::from([(("a", 0), 12), (("a", 1), 3)])
        );
    }
}
