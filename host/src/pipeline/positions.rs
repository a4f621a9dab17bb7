//! Where each record of a batch came from: topic, partition, offset and size, kept for every record
//! while the batch lives, also after its message was let go (a streamed batch releases the messages
//! of each chunk once their outputs are produced). Offsets to commit, rewinds, spans in log lines
//! and the names of failing records all come from here, so they never need the messages.

use std::collections::BTreeMap;
use std::ops::Range;

use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaTopic;

/// Offsets spanned by one partition of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub first: i64,
    pub last: i64,
}

/// One record's origin. `topic` indexes [`Positions::topics`].
#[derive(Debug, Clone, Copy)]
struct Position {
    topic: u32,
    partition: i32,
    offset: i64,
    /// Key and value bytes: what `batch.max_bytes` counts.
    size: usize,
}

/// The origins of a batch's records, in fetch order.
#[derive(Default)]
pub struct Positions {
    /// The distinct topic names of the records (a handful).
    topics: Vec<String>,
    records: Vec<Position>,
    /// Key and value bytes of all the records: what `batch.max_bytes` counts.
    bytes: usize,
    /// The topic handle of the last message pushed and its index in `topics`: rust-rdkafka's
    /// `topic()` measures and UTF-8-checks the name on every call. Compared, never dereferenced;
    /// cleared with the messages, so a handle is only matched while a message of it is held.
    last_topic: Option<(*mut RDKafkaTopic, u32)>,
}

/// Key and value bytes of a message.
fn size_of(message: &BorrowedMessage<'_>) -> usize {
    message.key_len() + message.payload_len()
}

impl Positions {
    /// Records where `message` came from.
    pub fn push(&mut self, message: &BorrowedMessage<'_>) {
        let handle = message.topic_ptr();
        let topic = match self.last_topic {
            Some((last, index)) if last == handle => index,
            _ => {
                let index = self.topic_index(message.topic());
                self.last_topic = Some((handle, index));
                index
            }
        };
        let size = size_of(message);
        self.bytes += size;
        self.records.push(Position {
            topic,
            partition: message.partition(),
            offset: message.offset(),
            size,
        });
    }

    /// Records a position by topic name (tests: a `BorrowedMessage` needs a live consumer).
    #[cfg(test)]
    fn push_named(&mut self, topic: &str, partition: i32, offset: i64, size: usize) {
        let topic = self.topic_index(topic);
        self.bytes += size;
        self.records.push(Position {
            topic,
            partition,
            offset,
            size,
        });
    }

    fn topic_index(&mut self, name: &str) -> u32 {
        let found = self.topics.iter().position(|t| t == name);
        let index = found.unwrap_or_else(|| {
            self.topics.push(name.to_string());
            self.topics.len() - 1
        });
        u32::try_from(index).unwrap_or(u32::MAX)
    }

    /// Forgets the topic handle matched last: called when the messages it came from are let go.
    pub fn forget_handle(&mut self) {
        self.last_topic = None;
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Key and value bytes of all the records.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keeps the first `len` records (and counts only their bytes).
    pub fn truncate(&mut self, len: usize) {
        self.records.truncate(len);
        self.last_topic = None;
        self.bytes = self.records.iter().map(|p| p.size).sum();
    }

    /// The topic name of the record at `index` ("?" past the end).
    pub fn topic_of(&self, index: usize) -> &str {
        self.records.get(index).map_or("?", |p| self.topic(p))
    }

    fn topic(&self, position: &Position) -> &str {
        usize::try_from(position.topic)
            .ok()
            .and_then(|i| self.topics.get(i))
            .map_or("?", String::as_str)
    }

    /// First and last offset of each partition among the records in `range`.
    pub fn spans(&self, range: Range<usize>) -> BTreeMap<(&str, i32), Span> {
        let mut spans: BTreeMap<(&str, i32), Span> = BTreeMap::new();
        for p in self.records.get(range).unwrap_or_default() {
            spans
                .entry((self.topic(p), p.partition))
                .and_modify(|s| s.last = p.offset)
                .or_insert(Span {
                    first: p.offset,
                    last: p.offset,
                });
        }
        spans
    }

    /// "topic/partition@offset" of the record at `index`.
    pub fn source_of(&self, index: usize) -> String {
        match self.records.get(index) {
            Some(p) => format!("{}/{}@{}", self.topic(p), p.partition, p.offset),
            None => format!("batch record {index}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(first: i64, last: i64) -> Span {
        Span { first, last }
    }

    fn positions() -> Positions {
        let mut p = Positions::default();
        // Fetch order: partitions interleave, two topics.
        p.push_named("a", 0, 10, 100);
        p.push_named("a", 1, 3, 50);
        p.push_named("b", 0, 7, 10);
        p.push_named("a", 0, 11, 100);
        p.push_named("a", 1, 4, 50);
        p
    }

    #[test]
    fn spans_follow_each_partition_in_fetch_order() {
        let p = positions();
        let all = p.spans(0..p.len());
        assert_eq!(
            all.into_iter().collect::<Vec<_>>(),
            vec![
                (("a", 0), span(10, 11)),
                (("a", 1), span(3, 4)),
                (("b", 0), span(7, 7)),
            ]
        );
        assert_eq!(
            p.spans(3..5).into_iter().collect::<Vec<_>>(),
            vec![(("a", 0), span(11, 11)), (("a", 1), span(4, 4)),]
        );
        assert!(p.spans(5..9).is_empty(), "a range past the end is empty");
    }

    #[test]
    fn records_are_named_by_topic_partition_and_offset() {
        let p = positions();
        assert_eq!(p.source_of(2), "b/0@7");
        assert_eq!(p.source_of(4), "a/1@4");
        assert_eq!(p.source_of(5), "batch record 5");
    }

    #[test]
    fn truncating_keeps_the_first_records_and_their_bytes() {
        let mut p = positions();
        assert_eq!(p.bytes(), 310);
        p.truncate(3);
        assert_eq!((p.len(), p.bytes()), (3, 160));
        assert_eq!(p.source_of(3), "batch record 3");
        assert_eq!((p.topic_of(2), p.topic_of(3)), ("b", "?"));
        p.truncate(0);
        assert_eq!((p.len(), p.bytes()), (0, 0));
    }
}
