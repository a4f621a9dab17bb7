//! Seeding the input: the standard test records (key `k000042`, value `{"id":42,...}`, header
//! `test-id: 42`), id `i` on partition `i % partitions`, with an idempotent producer. For a count
//! ([`Mode::Count`]) the key is one of a few that repeat: id `i` has key `c<i % keys>`, and key `c<k>`
//! lives on partition `k % partitions` only, so its count in its partition is its global count.
//!
//! The harness has its own producer rather than the integration tests' one for a single setting:
//! small producer batches. A consumer fetch returns whole producer batches, and librdkafka queues them
//! partition by partition, so with the usual large batches an instance owning two partitions works
//! through thousands of records of one before it sees the other. Recovery times would then measure
//! that queueing, not the fault.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};
use txform_tests::broker::client_config;
use txform_tests::records::owned_headers;
use txform_tests::InputSpec;

use crate::profile::Mode;

/// Bytes per producer batch: about 150 records.
const BATCH_BYTES: &str = "16384";
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// The seeded input.
#[derive(Debug, Clone)]
pub struct Input {
    /// The ids of each partition, in offset order.
    pub ids: Vec<Vec<u64>>,
    /// One past the last offset of each partition (offsets start at 0 on a new topic).
    pub ends: Vec<i64>,
}

impl Input {
    pub fn len(&self) -> usize {
        self.ids.iter().map(Vec::len).sum()
    }
}

/// Where a record landed (`(partition, offset)`), or why it did not.
type Delivery = Result<(i32, i64), String>;

/// Delivery reports by id; `None` until the report came.
struct Reports {
    delivered: Mutex<Vec<Option<Delivery>>>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        let outcome = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, _)) => Err(error.to_string()),
        };
        let mut delivered = self
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = delivered.get_mut(id) {
            *slot = Some(outcome);
        }
    }
}

/// The counted key of input `id` among `keys` keys.
pub fn key_of(id: u64, keys: u64) -> String {
    format!("c{}", id % keys)
}

/// The input record `id`: the standard one, with a repeating key when counting.
fn input_spec(id: u64, partitions: i32, mode: Mode) -> InputSpec {
    let partitions = partitions as u64;
    match mode {
        Mode::Copy => InputSpec::standard(id, (id % partitions) as i32),
        Mode::Count { keys } => InputSpec::standard(id, (id % keys % partitions) as i32)
            .with_key(Some(key_of(id, keys).as_bytes())),
    }
}

/// Produces `records` records (see [`input_spec`]) to `topic` and waits until every one is
/// acknowledged.
pub fn seed(topic: &str, partitions: i32, records: u64, mode: Mode) -> Result<Input> {
    let count = usize::try_from(records).context("record count")?;
    let producer: BaseProducer<Reports> = client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", BATCH_BYTES)
        .create_with_context(Reports {
            delivered: Mutex::new(vec![None; count]),
        })
        .context("create the seeding producer")?;
    for id in 0..records {
        let spec = input_spec(id, partitions, mode);
        let headers = owned_headers(&spec.headers);
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(topic, id as usize)
                .partition(spec.partition)
                .headers(headers);
        if let Some(key) = &spec.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &spec.value {
            record = record.payload(value.as_slice());
        }
        let started = Instant::now();
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    if started.elapsed() > FLUSH_TIMEOUT {
                        bail!("the seeding producer's queue stayed full for {FLUSH_TIMEOUT:?}");
                    }
                    producer.poll(Duration::from_millis(10));
                    record = returned;
                }
                Err((error, _)) => bail!("produce input {id} to {topic}: {error}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(FLUSH_TIMEOUT)
        .with_context(|| format!("flush the inputs to {topic}"))?;
    let delivered = std::mem::take(
        &mut *producer
            .context()
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let mut by_partition: Vec<Vec<(i64, u64)>> = vec![Vec::new(); partitions as usize];
    for (id, outcome) in delivered.into_iter().enumerate() {
        let (partition, offset) = match outcome {
            Some(Ok(position)) => position,
            Some(Err(error)) => bail!("input {id} to {topic} failed: {error}"),
            None => bail!("input {id} to {topic}: no delivery report after flush"),
        };
        by_partition
            .get_mut(partition as usize)
            .with_context(|| format!("input {id} went to unknown partition {partition}"))?
            .push((offset, id as u64));
    }
    let mut input = Input {
        ids: Vec::new(),
        ends: Vec::new(),
    };
    for (partition, mut records) in by_partition.into_iter().enumerate() {
        records.sort_unstable();
        // Offsets must be exactly 0..n: progress counts committed offsets as copied records.
        if records
            .iter()
            .enumerate()
            .any(|(i, (offset, _))| *offset != i as i64)
        {
            bail!("input partition {partition} of {topic} does not hold offsets 0..n");
        }
        input.ends.push(records.len() as i64);
        input
            .ids
            .push(records.into_iter().map(|(_, id)| id).collect());
    }
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_key_lives_in_one_partition() {
        let mode = Mode::Count { keys: 8 };
        let mut partition_of = std::collections::BTreeMap::new();
        for id in 0..100 {
            let spec = input_spec(id, 3, mode);
            let key = key_of(id, 8);
            assert_eq!(spec.key.as_deref(), Some(key.as_bytes()));
            assert_eq!(
                *partition_of.entry(key).or_insert(spec.partition),
                spec.partition
            );
        }
        assert_eq!(partition_of.len(), 8);
        assert_eq!(partition_of["c4"], 1);
        assert_eq!(input_spec(7, 3, Mode::Copy), InputSpec::standard(7, 1));
    }
}
