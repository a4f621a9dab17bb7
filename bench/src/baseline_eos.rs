//! The exactly-once floor: the least work that copies a topic exactly once with rust-rdkafka and
//! librdkafka's transactions. The plain copier's loop inside transactions: a read_committed group
//! consumer, a transactional producer, a transaction begun at the first record of each interval
//! and, when the interval (or `--max-records`) is over, the consumed offsets sent into it with the
//! group's metadata and a commit (the host's own commit call, which skips rust-rdkafka's
//! pre-flush). Its producer is a `ThreadedProducer`, like the host's: librdkafka's commit waits for
//! the delivery reports that thread serves. No transform, no batch kept, no error policy, no rebalance handling: correct for
//! the benchmark's one instance on a fixed assignment, not a copier to run. What txform costs
//! beyond it is the host; what it costs beyond the plain copier is the transaction protocol.
//!
//! Runs until SIGTERM or SIGINT, then commits the open transaction.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use crate::baseline::{config, send_copy, stop_on_signals, subscribed_consumer};
use crate::cli::CopyArgs;

/// How long one transactional call may take before the copier gives up.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a send waits for room in a full queue (the producer's own thread serves the reports
/// that make room).
const ROOM_WAIT: Duration = Duration::from_millis(5);

/// How long a poll waits while no transaction is open.
const IDLE_POLL: Duration = Duration::from_millis(100);

// The closure handed to `send_copy` is rdkafka's `send`, whose error hands the record back.
#[allow(clippy::result_large_err)]
pub fn run(args: &CopyArgs) -> anyhow::Result<()> {
    let stop = stop_on_signals()?;
    let producer: ThreadedProducer<DefaultProducerContext> =
        config(&args.bootstrap, &args.producer)?
            .set("transactional.id", &args.group)
            .create()
            .context("create the producer")?;
    producer
        .init_transactions(CALL_TIMEOUT)
        .context("init_transactions")?;
    // Subscribed once the producer is ready, as the host does: the group's clock starts then.
    let consumer = subscribed_consumer(
        args,
        &[
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
        ],
    )?;

    let interval = Duration::from_millis(args.interval_ms);
    let mut open: Option<Transaction> = None;
    while !stop.load(Ordering::Relaxed) {
        let wait = open.as_ref().map_or(IDLE_POLL, |t| t.left(interval));
        if let Some(message) = poll(&consumer, wait)? {
            let txn = match &mut open {
                Some(txn) => txn,
                None => {
                    producer.begin_transaction().context("begin_transaction")?;
                    open.insert(Transaction::new())
                }
            };
            send_copy(
                |record| producer.send(record),
                || std::thread::sleep(ROOM_WAIT),
                &message,
                &args.output,
            )?;
            txn.consumed(message.partition(), message.offset());
        }
        if let Some(txn) = open.take_if(|t| t.is_over(interval, args.max_records)) {
            txn.commit(&producer, &consumer, &args.input)?;
        }
    }
    if let Some(txn) = open {
        txn.commit(&producer, &consumer, &args.input)?;
    }
    Ok(())
}

/// One poll of the consumer, waiting whole milliseconds (rust-rdkafka polls out a fraction of a
/// millisecond in a busy loop).
fn poll<'c>(
    consumer: &'c BaseConsumer,
    wait: Duration,
) -> anyhow::Result<Option<rdkafka::message::BorrowedMessage<'c>>> {
    let millis = wait.as_micros().div_ceil(1000);
    let wait = Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX));
    match consumer.poll(wait) {
        None | Some(Err(KafkaError::PartitionEOF(_))) => Ok(None),
        Some(Ok(message)) => Ok(Some(message)),
        Some(Err(error)) => Err(error).context("consumer"),
    }
}

/// The open transaction: when it began and the next offset of each partition copied into it.
struct Transaction {
    began: Instant,
    records: u64,
    next_offsets: BTreeMap<i32, i64>,
}

impl Transaction {
    fn new() -> Transaction {
        Transaction {
            began: Instant::now(),
            records: 0,
            next_offsets: BTreeMap::new(),
        }
    }

    fn consumed(&mut self, partition: i32, offset: i64) {
        self.records += 1;
        self.next_offsets.insert(partition, offset + 1);
    }

    fn left(&self, interval: Duration) -> Duration {
        interval.saturating_sub(self.began.elapsed())
    }

    fn is_over(&self, interval: Duration, max_records: u64) -> bool {
        self.records >= max_records || self.began.elapsed() >= interval
    }

    /// Sends the offsets into the transaction, then commits it.
    fn commit(
        self,
        producer: &ThreadedProducer<DefaultProducerContext>,
        consumer: &BaseConsumer,
        input: &str,
    ) -> anyhow::Result<()> {
        let mut offsets = TopicPartitionList::new();
        for (&partition, &next) in &self.next_offsets {
            offsets
                .add_partition_offset(input, partition, Offset::Offset(next))
                .context("offsets to send")?;
        }
        let metadata = consumer
            .group_metadata()
            .context("the consumer has no group metadata")?;
        producer
            .send_offsets_to_transaction(&offsets, &metadata, CALL_TIMEOUT)
            .context("send_offsets_to_transaction")?;
        txform::kafka::commit_delivered(producer, Timeout::After(CALL_TIMEOUT))
            .map_err(|e| anyhow::anyhow!("commit_transaction: {e}"))
    }
}
