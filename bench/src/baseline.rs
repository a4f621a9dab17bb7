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
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use crate::cli::{key_value, CopyArgs};

pub fn run(args: &CopyArgs) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("install the signal handlers")?;
    }
    let consumer: BaseConsumer = config(&args.bootstrap, &args.consumer)?
        .set("group.id", &args.group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .create()
        .context("create the consumer")?;
    let producer: BaseProducer = config(&args.bootstrap, &args.producer)?
        .set("enable.idempotence", args.idempotent.to_string())
        .create()
        .context("create the producer")?;
    consumer
        .subscribe(&[&args.input])
        .with_context(|| format!("subscribe to {}", args.input))?;

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
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&args.output).partition(message.partition());
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
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    producer.poll(Duration::from_millis(5));
                    record = returned;
                }
                Err((error, _)) => {
                    return Err(error).with_context(|| format!("produce to {}", args.output))
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flush on shutdown")?;
    Ok(())
}

fn config(bootstrap: &str, properties: &[String]) -> anyhow::Result<ClientConfig> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for property in properties {
        let (key, value) = key_value(property)?;
        config.set(key, value);
    }
    Ok(config)
}
