//! Reading topics back, as read_committed or read_uncommitted consumers would see them.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::client_config;
use crate::names::unique_name;
use crate::records::Record;
use crate::topics::Topic;

/// The consumer `isolation.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Only records of committed transactions (and non-transactional records), up to the last stable
    /// offset: what downstream consumers of an exactly-once pipeline see.
    ReadCommitted,
    /// Every record, aborted transactions and open ones included, up to the high watermark.
    ReadUncommitted,
}

impl Isolation {
    fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// How long a read_committed read goes on after reaching the last stable offset of every partition
/// without any new record, so that a transaction committing just then is still seen.
const COMMITTED_QUIET: Duration = Duration::from_secs(2);
/// A read that takes longer than this is a broken test environment (or a transaction left open).
const READ_TIMEOUT: Duration = Duration::from_secs(90);

/// A consumer of every partition of `topic` from the beginning, outside any group.
fn assigned_reader(topic: &Topic, isolation: Isolation) -> BaseConsumer {
    let consumer: BaseConsumer = client_config()
        .set("group.id", unique_name("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation.as_str())
        .create()
        .expect("create a reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..topic.partitions {
        tpl.add_partition_offset(&topic.name, p, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&tpl).expect("assign the partitions");
    consumer
}

/// Reads all of `topic` as an `isolation` consumer sees it now, in partition order then offset order.
///
/// read_uncommitted: until every partition's end (high watermark). read_committed: until every
/// partition reached its last stable offset and no new record came for 2 s. Panics after 90 s (an open
/// transaction holds read_committed readers back until it ends or times out).
pub fn read_topic(topic: &Topic, isolation: Isolation) -> Vec<Record> {
    let consumer = assigned_reader(topic, isolation);
    let started = Instant::now();
    let mut records = Vec::new();
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut last_record = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                records.push(Record::from_message(&message));
                at_end.remove(&records[records.len() - 1].partition);
                last_record = Instant::now();
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(error)) => panic!("reading {} ({}): {error}", topic.name, isolation.as_str()),
            None => {}
        }
        if at_end.len() == topic.partitions as usize {
            match isolation {
                Isolation::ReadUncommitted => break,
                Isolation::ReadCommitted if last_record.elapsed() >= COMMITTED_QUIET => break,
                Isolation::ReadCommitted => {}
            }
        }
        assert!(
            started.elapsed() < READ_TIMEOUT,
            "reading {} ({}): only {} of {} partitions reached their end after {READ_TIMEOUT:?} \
             ({} records so far); is a transaction left open?",
            topic.name,
            isolation.as_str(),
            at_end.len(),
            topic.partitions,
            records.len()
        );
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

/// Polls `topic` as a read_committed consumer until it has seen at least `n` records; returns them
/// (partition order, then offset order). Panics after `timeout` with the count seen.
pub fn wait_for_committed(topic: &Topic, n: usize, timeout: Duration) -> Vec<Record> {
    let consumer = assigned_reader(topic, Isolation::ReadCommitted);
    let started = Instant::now();
    let mut records = Vec::new();
    while records.len() < n {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => records.push(Record::from_message(&message)),
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(error)) => panic!("reading {} (read_committed): {error}", topic.name),
        }
        assert!(
            started.elapsed() < timeout,
            "a read_committed reader saw {} of {n} records in {} after {timeout:?}",
            records.len(),
            topic.name
        );
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}
