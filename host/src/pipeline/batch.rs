//! Collecting a batch of fetched messages, whole or chunk by chunk (a streamed batch), and rewinding
//! the consumer to its start.
//!
//! A batch holds the librdkafka messages themselves (zero copy); plugins get [`Record`] views of them
//! (of the whole batch, or of one chunk). A streamed batch lets the messages of each chunk go once
//! their outputs are produced (see [`Batch::release`]): what it keeps of every record is its
//! position (`positions`), so its memory does not grow with the transaction. It closes at
//! `batch.max_records`, at `batch.max_bytes` of keys and values, or `batch.max_wait_ms` after its
//! first record.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use txform_plugin_api::{Header, Record};

// When a batch closes: whichever of `[batch]`'s limits comes first.
use crate::config::Batch as Limits;
use crate::kafka::headers::headers as raw_headers;
use crate::kafka::{classify, Consumer, ErrorClass};

use super::positions::Positions;
pub use super::positions::Span;

/// How long one idle poll waits, so a shutdown request is seen promptly.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// How many records in a row a chunk may take from librdkafka's queue without reading the clock
/// (the batch's deadline is late by at most this many polls that did not wait).
const UNCLOCKED_POLLS: u32 = 64;

/// `left` rounded up to whole milliseconds, the unit librdkafka waits in. rust-rdkafka's poll
/// truncates what is left of its timeout to milliseconds and polls again until the timeout has
/// passed, so the last fraction of a millisecond of a wait that is not whole milliseconds is a
/// busy loop (one per chunk that ends on its linger).
fn whole_millis(left: Duration) -> Duration {
    Duration::from_millis(u64::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u64::MAX))
}

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

/// How [`Batch::poll_chunk`] cuts a streamed batch into chunks, each one transform call.
#[derive(Debug, Clone, Copy)]
pub struct Chunking {
    /// At most this many records in one chunk.
    pub max_records: usize,
    /// How long a chunk waits, after its first record, for more before it is handed on. At a low
    /// rate every fetch brings a few records; without this each would be its own transform call
    /// and its own small produce request, and the cost would follow the fetch rate instead of the
    /// record count.
    pub linger: Duration,
}

impl Chunking {
    /// A whole batch in one chunk (collected, then transformed in one attempt).
    pub const WHOLE: Chunking = Chunking {
        max_records: usize::MAX,
        linger: Duration::ZERO,
    };
}

/// What one [`Batch::poll_chunk`] brought.
pub enum Polled<'c> {
    /// The batch indices of the records it added (empty when idle, closed or stopped).
    Chunk(Range<usize>),
    /// A rebalance callback ran: `chunk` was added before it, `fresh` fetched by the poll that ran it.
    Rebalanced {
        chunk: Range<usize>,
        fresh: Option<BorrowedMessage<'c>>,
    },
}

/// The records of one transaction, in fetch order.
pub struct Batch<'c> {
    consumer: &'c Consumer,
    /// Where every record came from, held or released.
    positions: Positions,
    /// The messages of records `released..` (the first `released` were let go).
    messages: Vec<BorrowedMessage<'c>>,
    released: usize,
    /// When the batch closes: `max_wait` after its first record.
    deadline: Option<Instant>,
}

impl<'c> Batch<'c> {
    /// A batch with nothing in it yet.
    pub fn empty(consumer: &'c Consumer) -> Batch<'c> {
        Batch {
            consumer,
            positions: Positions::default(),
            messages: Vec::new(),
            released: 0,
            deadline: None,
        }
    }

    /// Polls until the batch is closed (see [`Batch::is_closed`]), or until `stop` is set.
    /// Messages fetched before a rebalance are dropped (their partitions rewound when still ours),
    /// so a batch collected whole never straddles one.
    pub fn collect(
        consumer: &'c Consumer,
        limits: &Limits,
        stop: &AtomicBool,
    ) -> Result<Batch<'c>, CollectError> {
        let mut batch = Batch::empty(consumer);
        loop {
            match batch.poll_chunk(limits, Chunking::WHOLE, stop)? {
                Polled::Rebalanced { fresh, .. } => batch
                    .drop_after_rebalance(0, fresh.as_ref())
                    .map_err(CollectError::Rewind)?,
                // Idle: return (empty) so the caller can report and check for shutdown.
                Polled::Chunk(_)
                    if batch.is_empty()
                        || batch.is_closed(limits)
                        || stop.load(Ordering::SeqCst) =>
                {
                    return Ok(batch)
                }
                Polled::Chunk(_) => {}
            }
        }
    }

    /// Whether the batch reached one of its limits (records, bytes, or time since its first record).
    pub fn is_closed(&self, limits: &Limits) -> bool {
        self.is_closed_at(limits, Instant::now())
    }

    /// [`Batch::is_closed`] at `now` (one clock read serves a whole poll step).
    fn is_closed_at(&self, limits: &Limits, now: Instant) -> bool {
        self.is_full(limits) || self.deadline.is_some_and(|d| now >= d)
    }

    /// Whether the batch reached its record or byte limit.
    fn is_full(&self, limits: &Limits) -> bool {
        self.len() >= limits.max_records || self.positions.bytes() >= limits.max_bytes
    }

    /// Adds at most `chunking.max_records` records. An empty batch waits up to one idle poll for its
    /// first record; later, the poll blocks (in idle-poll slices, to see `stop`) only until the
    /// first record of the chunk or the batch's deadline, then until `chunking.linger` after that
    /// record, then takes only what is already fetched (`poll(Duration::ZERO)`), so a chunk ends as
    /// soon as librdkafka's queue is drained and no wait ever spins. While records are queued they
    /// are taken with `poll(Duration::ZERO)` without reading the clock (one clock read per
    /// `UNCLOCKED_POLLS` records). Returns at once when a rebalance callback ran inside a poll.
    pub fn poll_chunk(
        &mut self,
        limits: &Limits,
        chunking: Chunking,
        stop: &AtomicBool,
    ) -> Result<Polled<'c>, CollectError> {
        let start = self.len();
        let rebalances = self.consumer.context().events();
        let mut lingers_until: Option<Instant> = None;
        // Whether the last poll brought a record (more may be queued), and how many polls ran since
        // the clock was last read.
        let mut queued = false;
        let mut unclocked = 0;
        loop {
            if self.is_full(limits)
                || self.len() - start >= chunking.max_records
                || stop.load(Ordering::SeqCst)
            {
                break;
            }
            let draining = self.len() > start;
            // Taking what is queued needs no wait, so no clock read; the clock is still read every
            // `UNCLOCKED_POLLS` records, so a steady stream cannot outlast the batch's deadline.
            let fast = draining && queued && unclocked < UNCLOCKED_POLLS;
            let timeout = if fast {
                unclocked += 1;
                Duration::ZERO
            } else {
                unclocked = 0;
                let now = Instant::now();
                if self.is_closed_at(limits, now) {
                    break;
                }
                // A chunk's linger never outlasts its batch.
                let until = match (draining, lingers_until, self.deadline) {
                    (true, Some(linger), Some(deadline)) => Some(linger.min(deadline)),
                    (true, linger, _) => linger,
                    (false, _, deadline) => deadline,
                };
                match until {
                    None if draining => Duration::ZERO,
                    None => IDLE_POLL,
                    Some(until) => match until.checked_duration_since(now) {
                        Some(left) if !left.is_zero() => whole_millis(left).min(IDLE_POLL),
                        _ if draining => Duration::ZERO,
                        _ => break,
                    },
                }
            };
            let polled = self.consumer.poll(timeout);
            queued = matches!(polled, Some(Ok(_)));
            if self.consumer.context().events() != rebalances {
                let fresh = match polled {
                    Some(Ok(message)) => Some(message),
                    _ => None,
                };
                return Ok(Polled::Rebalanced {
                    chunk: start..self.len(),
                    fresh,
                });
            }
            match polled {
                // The queue is empty: wait (or stop) as the clock says.
                None if fast => {}
                // Drained after the linger, or idle with nothing collected yet.
                None if (draining && timeout.is_zero()) || self.deadline.is_none() => break,
                None => {}
                Some(Ok(message)) => {
                    if !draining && !chunking.linger.is_zero() {
                        // The deadline still bounds it: `is_closed` ends the chunk with the batch.
                        // After the poll: it may have waited for this first record.
                        lingers_until = Some(Instant::now() + chunking.linger);
                    }
                    self.push(message, limits)
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
        Ok(Polled::Chunk(start..self.len()))
    }

    /// Drops the records from `from` on after a rebalance seen by the poll that returned `fresh`,
    /// rewinding their partitions still owned (see [`rebalance_targets`]).
    pub fn drop_after_rebalance(
        &mut self,
        from: usize,
        fresh: Option<&BorrowedMessage<'_>>,
    ) -> Result<(), String> {
        let dropped = from..self.len();
        if !dropped.is_empty() {
            // Says that a rebalance landed mid-batch (tests and operators look for it).
            log::info!(
                "rebalance while collecting a batch: dropped {} record(s) of {}",
                dropped.len(),
                self.describe(dropped.clone())
            );
        }
        let revoked = self.consumer.context().take_revoked();
        let fresh = fresh.map(|m| ((m.topic(), m.partition()), m.offset()));
        seek(
            self.consumer,
            rebalance_targets(self.spans(dropped), &revoked, fresh),
        )?;
        self.messages.truncate(from.saturating_sub(self.released));
        self.released = self.released.min(from);
        self.positions.truncate(from);
        if self.is_empty() {
            self.deadline = None;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.positions.len() == 0
    }

    /// First and last offset of each partition among the batch records in `range`.
    pub fn spans(&self, range: Range<usize>) -> BTreeMap<(&str, i32), Span> {
        self.positions.spans(range)
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
        self.advance_offsets(&mut tpl, range, stamp)?;
        Ok(tpl)
    }

    /// Moves `offsets` past the records in `range`, which follow those `offsets` already covers
    /// (the chunks of a streamed batch, in order); a partition new to it gets `stamp`.
    pub fn advance_offsets(
        &self,
        offsets: &mut TopicPartitionList,
        range: Range<usize>,
        stamp: &str,
    ) -> Result<(), KafkaError> {
        for ((topic, partition), span) in self.spans(range) {
            let next = Offset::Offset(span.last + 1);
            match offsets.find_partition(topic, partition) {
                Some(mut element) => element.set_offset(next)?,
                None => {
                    let mut element = offsets.add_partition(topic, partition);
                    element.set_offset(next)?;
                    element.set_metadata(stamp);
                }
            }
        }
        Ok(())
    }

    /// How many records the batch has (held or released).
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Lets go of the messages of the records before `end`, whose outputs are produced
    /// (librdkafka copied them): a streamed batch keeps only their positions. A batch that
    /// released any can no longer give views of those records (see [`Batch::holds_all`]).
    pub fn release(&mut self, end: usize) {
        let count = end.saturating_sub(self.released).min(self.messages.len());
        if count > 0 {
            self.messages.drain(..count);
            self.released += count;
            self.positions.forget_handle();
        }
    }

    /// Whether the batch still holds the message of every record (nothing was released): what
    /// an attempt over the whole batch (a retry from memory, an isolation) needs.
    pub fn holds_all(&self) -> bool {
        self.released == 0
    }

    /// The held messages of the records in `range` (all of it when nothing before it was
    /// released, which the streaming loop and the whole-batch attempts keep to).
    fn held(&self, range: Range<usize>) -> &[BorrowedMessage<'c>] {
        debug_assert!(
            range.start >= self.released,
            "records {range:?} were released"
        );
        let start = range.start.saturating_sub(self.released);
        let end = range.end.saturating_sub(self.released);
        self.messages.get(start..end).unwrap_or_default()
    }

    /// Adds a message fetched by a poll whose rebalance revoked nothing.
    pub fn push(&mut self, message: BorrowedMessage<'c>, limits: &Limits) {
        self.deadline
            .get_or_insert_with(|| Instant::now() + limits.max_wait);
        self.positions.push(&message);
        self.messages.push(message);
    }

    /// All indices of the batch.
    pub fn all(&self) -> Range<usize> {
        0..self.len()
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
        self.positions.source_of(index)
    }

    /// Seeks every partition of the records from `start` on back to its first offset there, so the
    /// next poll fetches them again. Used after an aborted transaction.
    pub fn rewind_from(&self, start: usize) -> Result<(), String> {
        let targets = self
            .spans(start..self.len())
            .into_iter()
            .map(|(partition, span)| (partition, span.first))
            .collect();
        seek(self.consumer, targets)
    }

    /// Calls `f` with zero-copy record views of the whole batch.
    pub fn with_records<R>(&self, f: impl FnOnce(&[Record<'_>]) -> R) -> R {
        self.with_records_in(self.all(), f)
    }

    /// Calls `f` with zero-copy record views of the batch records in `range` (a streamed chunk).
    ///
    /// Header names are bytes in Kafka but `str` at the plugin boundary: a name that is not UTF-8
    /// reaches plugins as its lossy UTF-8 form (invalid bytes become U+FFFD), which the sink turns
    /// back into the original bytes when a plugin passes the header on unchanged.
    pub fn with_records_in<R>(&self, range: Range<usize>, f: impl FnOnce(&[Record<'_>]) -> R) -> R {
        let messages = self.held(range.clone());
        // (index in `headers`, lossy name) of every name that is not UTF-8; rare.
        let mut lossy: Vec<(usize, String)> = Vec::new();
        let mut headers: Vec<Header<'_>> = Vec::new();
        let mut ranges = Vec::with_capacity(messages.len());
        for m in messages {
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
        let records: Vec<Record<'_>> = messages
            .iter()
            .zip(ranges)
            .zip(range)
            .map(|((m, headers_of), index)| {
                Record::new(
                    self.positions.topic_of(index),
                    m.partition(),
                    m.offset(),
                    m.timestamp().to_millis(),
                    m.key(),
                    m.payload(),
                    &headers[headers_of],
                )
            })
            .collect();
        f(&records)
    }

    /// The source message at `index`, for attributing outputs and failures.
    pub fn message(&self, index: usize) -> Option<&BorrowedMessage<'c>> {
        self.messages.get(index.checked_sub(self.released)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(first: i64, last: i64) -> Span {
        Span { first, last }
    }

    #[test]
    fn waits_are_rounded_up_to_whole_milliseconds() {
        let cases = [
            (1, 1),
            (999, 1),
            (1_000, 1),
            (1_001, 2),
            (19_400, 20),
            (20_000, 20),
        ];
        for (micros, millis) in cases {
            assert_eq!(
                whole_millis(Duration::from_micros(micros)),
                Duration::from_millis(millis),
                "{micros} µs"
            );
        }
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
