//! Producing a chain's outputs.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::types::RDKafkaErrorCode;
use txform_plugin_api::OutRecord;

use crate::kafka::Producer;

/// A record Kafka refused to enqueue; `input` is the index of its source record in the batch.
#[derive(Debug, thiserror::Error)]
#[error("producing the output of batch record {input} to {topic}: {error}")]
pub struct ProduceFailure {
    pub input: usize,
    pub topic: String,
    #[source]
    pub error: KafkaError,
}

/// Enqueues every record, waiting for room when librdkafka's queue is full. Delivery failures surface
/// later, at flush or commit.
pub fn produce_all(
    producer: &Producer,
    default_topic: &str,
    records: &[OutRecord],
) -> Result<(), ProduceFailure> {
    for record in records {
        let topic = record
            .topic
            .as_ref()
            .map(|t| t.as_str())
            .into_option()
            .unwrap_or(default_topic);
        let headers = record.headers.iter().fold(
            OwnedHeaders::new_with_capacity(record.headers.len()),
            |hs, h| {
                hs.insert(KafkaHeader {
                    key: h.key.as_str(),
                    value: h.value.as_ref().map(|v| v.as_slice()).into_option(),
                })
            },
        );
        let mut message: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).headers(headers);
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
        loop {
            match producer.send(message) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    producer.poll(Duration::from_millis(10));
                    message = returned;
                }
                Err((error, _)) => {
                    return Err(ProduceFailure {
                        input: record.input as usize,
                        topic: topic.to_string(),
                        error,
                    })
                }
            }
        }
    }
    // Serve delivery reports so their queue does not grow.
    producer.poll(Duration::ZERO);
    Ok(())
}
