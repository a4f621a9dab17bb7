//! Producing a chain's outputs and dead-letter records.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use txform_plugin_api::OutRecord;

use crate::kafka::Producer;

use super::batch::Batch;
use super::failure::Cause;

/// A record Kafka refused to enqueue; `source` is the index of its source record in the batch.
#[derive(Debug, thiserror::Error)]
#[error("producing to {topic}: {error}")]
pub struct ProduceFailure {
    pub source: usize,
    pub topic: String,
    #[source]
    pub error: KafkaError,
}

/// Enqueues every output; `first` is the batch index of the chain's input 0. Delivery failures
/// surface later, at flush or commit, through the producer's `DeliveryTracker`.
pub fn produce_outputs(
    producer: &Producer,
    default_topic: &str,
    first: usize,
    records: &[OutRecord],
) -> Result<(), ProduceFailure> {
    for record in records {
        let topic = record
            .topic
            .as_ref()
            .map(|t| t.as_str())
            .into_option()
            .unwrap_or(default_topic);
        let source = first + record.input as usize;
        let mut message = BaseRecord::with_opaque_to(topic, source);
        // Most records carry no headers; skip allocating librdkafka's header list for them.
        if !record.headers.is_empty() {
            let headers = record.headers.iter().fold(
                OwnedHeaders::new_with_capacity(record.headers.len()),
                |hs, h| {
                    hs.insert(KafkaHeader {
                        key: h.key.as_str(),
                        value: h.value.as_ref().map(|v| v.as_slice()).into_option(),
                    })
                },
            );
            message = message.headers(headers);
        }
        if let Some(key) = record.key.as_ref().into_option() {
            message = message.key(key.as_slice());
        }
        if let Some(value) = record.value.as_ref().into_option() {
            message = message.payload(value.as_slice());
        }
        if let Some(partition) = record.partition.into_option() {
            message = message.partition(partition);
        }
        if let Some(timestamp) = record.timestamp.into_option() {
            message = message.timestamp(timestamp);
        }
        send(producer, message)?;
    }
    Ok(())
}

/// Writes the source record at `index` unchanged (key, value, headers) to `topic`, plus `txform.*`
/// headers saying why it was set aside and where it came from.
pub fn produce_dead_letter(
    producer: &Producer,
    topic: &str,
    batch: &Batch<'_>,
    index: usize,
    cause: &Cause,
    attempts: u32,
) -> Result<(), ProduceFailure> {
    let Some(source) = batch.message(index) else {
        return Ok(());
    };
    let mut headers = OwnedHeaders::new();
    if let Some(original) = source.headers() {
        for h in original.iter() {
            headers = headers.insert(h);
        }
    }
    let partition = source.partition().to_string();
    let offset = source.offset().to_string();
    let timestamp = source.timestamp().to_millis().map(|t| t.to_string());
    let attempts = attempts.to_string();
    let mut add = |key: &str, value: Option<&str>| {
        headers = std::mem::take(&mut headers).insert(KafkaHeader {
            key,
            value: value.map(str::as_bytes),
        });
    };
    add("txform.error", Some(&cause.error));
    add("txform.stage", Some(&cause.stage));
    add("txform.plugin", Some(&cause.plugin));
    add("txform.plugin.version", Some(&cause.version));
    add("txform.source.topic", Some(source.topic()));
    add("txform.source.partition", Some(&partition));
    add("txform.source.offset", Some(&offset));
    add("txform.source.timestamp", timestamp.as_deref());
    add("txform.attempts", Some(&attempts));
    let mut message: BaseRecord<'_, [u8], [u8], usize> =
        BaseRecord::with_opaque_to(topic, index).headers(headers);
    if let Some(key) = source.key() {
        message = message.key(key);
    }
    if let Some(value) = source.payload() {
        message = message.payload(value);
    }
    if let Some(timestamp) = source.timestamp().to_millis() {
        message = message.timestamp(timestamp);
    }
    send(producer, message)
}

/// How long a full queue waits for a delivery report before trying again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(100);

/// Enqueues one message, waiting for room when librdkafka's queue is full.
fn send<'a>(
    producer: &Producer,
    mut message: BaseRecord<'a, [u8], [u8], usize>,
) -> Result<(), ProduceFailure> {
    loop {
        match producer.send(message) {
            Ok(()) => {
                producer.context().sent();
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                producer.context().wait_for_report(QUEUE_FULL_WAIT);
                message = returned;
            }
            Err((error, returned)) => {
                return Err(ProduceFailure {
                    source: returned.delivery_opaque,
                    topic: returned.topic.to_string(),
                    error,
                })
            }
        }
    }
}
