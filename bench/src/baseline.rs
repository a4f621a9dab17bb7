//! The physical baseline: the least work that copies a topic with rust-rdkafka. A group consumer
//! with auto-commit and a plain non-transactional producer (idempotent with `--idempotent`: what
//! exactly-once's producer pays, without transactions), each record sent to the partition it came
//! from, no batching of its own and no transform. It gets the same librdkafka properties as
//! txform, so the difference between them is what txform adds (transform chain, batches,
//! transactions or synchronous offset commits), not client tuning.
//!
//! Runs until SIGTERM or SIGINT, then flushes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use crate::cli::{key_value, CopyArgs};

// The closure handed to `send_copy` is rdkafka's `send`, whose error hands the record back.
#[allow(clippy::result_large_err)]
pub fn run(args: &CopyArgs) -> anyhow::Result<()> {
    let stop = stop_on_signals()?;
    let consumer = subscribed_consumer(args, &[("enable.auto.commit", "true")])?;
    let producer: BaseProducer = config(&args.bootstrap, &args.producer)?
        .set("enable.idempotence", args.idempotent.to_string())
        .create()
        .context("create the producer")?;

    while !stop.load(Ordering::Relaxed) {
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => {
                producer.poll(Duration::ZERO);
                continue;
            }
            Some(Ok(message)) => message,
            Some(Err(KafkaError::PartitionEOF(_))) => continue,
            Some(Err(error)) => {
                log::warn!("consumer: {error}");
                continue;
            }
        };
        send_copy(
            |record| producer.send(record),
            || producer.poll(Duration::from_millis(5)),
            &message,
            &args.output,
        )?;
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flush on shutdown")?;
    Ok(())
}

/// Sends a copy of `message` (key, value, timestamp) to the same partition of `output` with
/// `send` (a producer's `send`), calling `wait_for_room` while the producer's queue is full.
pub fn send_copy<'m>(
    send: impl Fn(CopyRecord<'m>) -> Result<(), (KafkaError, CopyRecord<'m>)>,
    wait_for_room: impl Fn(),
    message: &'m BorrowedMessage<'_>,
    output: &'m str,
) -> anyhow::Result<()> {
    let mut record: CopyRecord<'m> = BaseRecord::to(output).partition(message.partition());
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Some(value) = message.payload() {
        record = record.payload(value);
    }
    if let Some(timestamp) = message.timestamp().to_millis() {
        record = record.timestamp(timestamp);
    }
    loop {
        match send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                wait_for_room();
                record = returned;
            }
            Err((error, _)) => return Err(error).with_context(|| format!("produce to {output}")),
        }
    }
}

/// The record a copy sends: the consumed message's bytes, borrowed.
pub type CopyRecord<'m> = BaseRecord<'m, [u8], [u8]>;

/// The copy's group consumer, reading from the start, with `extra` over the user's properties,
/// subscribed to the input.
pub fn subscribed_consumer(
    args: &CopyArgs,
    extra: &[(&str, &str)],
) -> anyhow::Result<BaseConsumer> {
    let mut config = config(&args.bootstrap, &args.consumer)?;
    config
        .set("group.id", &args.group)
        .set("auto.offset.reset", "earliest");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create().context("create the consumer")?;
    consumer
        .subscribe(&[&args.input])
        .with_context(|| format!("subscribe to {}", args.input))?;
    Ok(consumer)
}

/// The stop flag, raised by SIGTERM or SIGINT.
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("install the signal handlers")?;
    }
    Ok(stop)
}

pub fn config(bootstrap: &str, properties: &[String]) -> anyhow::Result<ClientConfig> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for property in properties {
        let (key, value) = key_value(property)?;
        config.set(key, value);
    }
    Ok(config)
}
