//! Classifies Kafka errors into what the pipeline must do about them.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::TopicPartitionList;

/// What an error means for the transaction in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The same call may simply be repeated (e.g. a time-out).
    Retriable,
    /// The transaction must be aborted; the instance can go on.
    Abortable,
    /// The producer is unusable (e.g. fenced by a newer instance): the instance must stop.
    Fatal,
}

/// Classifies an error returned by a transactional call, a send or a consumer poll.
pub fn classify(error: &KafkaError) -> ErrorClass {
    match error {
        KafkaError::Transaction(e) if e.is_fatal() => ErrorClass::Fatal,
        KafkaError::Transaction(e) if e.txn_requires_abort() => ErrorClass::Abortable,
        KafkaError::Transaction(e) if e.is_retriable() => ErrorClass::Retriable,
        KafkaError::Transaction(_) => ErrorClass::Abortable,
        KafkaError::MessageConsumptionFatal(_) => ErrorClass::Fatal,
        other => match other.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Fatal)
            | Some(RDKafkaErrorCode::ProducerFenced)
            | Some(RDKafkaErrorCode::InvalidProducerEpoch)
            | Some(RDKafkaErrorCode::FencedInstanceId)
            | Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed) => ErrorClass::Fatal,
            Some(RDKafkaErrorCode::OperationTimedOut)
            | Some(RDKafkaErrorCode::RequestTimedOut)
            | Some(RDKafkaErrorCode::QueueFull) => ErrorClass::Retriable,
            _ => ErrorClass::Abortable,
        },
    }
}

/// "topic/partition, ..." for log lines.
pub fn describe_partitions(tpl: &TopicPartitionList) -> String {
    let parts: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}
