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
    /// Kafka fenced this instance's producer epoch or static group membership (either a newer
    /// process with the same id took over, or the broker expired this process's own transaction or
    /// session), or another fatal error that new clients cure. The consumer group tells whether a
    /// newer process took over (see `membership`); if not, the clients are rebuilt.
    Fenced,
    /// The client is unusable for another reason (e.g. not authorised): the instance must stop.
    Fatal,
}

/// Error codes by which Kafka says that another holder of this instance's identity may exist.
pub fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::FencedInstanceId
    )
}

/// Fatal errors that new clients would meet again: the instance must stop and say why. Every
/// other fatal error leaves a client unusable but is cured by new clients (e.g. the broker refusing
/// an abort as an invalid state after its own restart), so it is handled like a fence.
pub fn is_final(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::UnsupportedVersion
            | RDKafkaErrorCode::InvalidTransactionTimeout
            | RDKafkaErrorCode::UnsupportedForMessageFormat
    )
}

/// A hint for the operator when a fatal error has a usual cause.
pub fn fatal_hint(code: RDKafkaErrorCode) -> &'static str {
    match code {
        RDKafkaErrorCode::TransactionalIdAuthorizationFailed => {
            " (not authorised: the principal needs Write and Describe on the TransactionalId)"
        }
        RDKafkaErrorCode::ClusterAuthorizationFailed => {
            " (not authorised: idempotent producing needs IdempotentWrite on the cluster with old brokers)"
        }
        RDKafkaErrorCode::GroupAuthorizationFailed => {
            " (not authorised: the principal needs Read on the consumer group)"
        }
        RDKafkaErrorCode::TopicAuthorizationFailed => {
            " (not authorised: the principal needs Read on the source topics and Write on the sink)"
        }
        _ => "",
    }
}

/// Classifies an error returned by a transactional call, a send or a consumer poll.
pub fn classify(error: &KafkaError) -> ErrorClass {
    match error {
        KafkaError::Transaction(e) if e.is_fatal() && is_final(e.code()) => ErrorClass::Fatal,
        KafkaError::Transaction(e) if e.is_fatal() => ErrorClass::Fenced,
        KafkaError::Transaction(e) if e.txn_requires_abort() => ErrorClass::Abortable,
        KafkaError::Transaction(e) if e.is_retriable() => ErrorClass::Retriable,
        KafkaError::Transaction(_) => ErrorClass::Abortable,
        KafkaError::MessageConsumptionFatal(code) if is_fencing(*code) => ErrorClass::Fenced,
        KafkaError::MessageConsumptionFatal(_) => ErrorClass::Fatal,
        other => match other.rdkafka_error_code() {
            Some(code) if is_fencing(code) => ErrorClass::Fenced,
            Some(RDKafkaErrorCode::Fatal)
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

/// Refines `class` for a generic fatal error (`ERR__FATAL`) with the client's underlying fatal error,
/// which says whether new clients would cure it.
pub fn refine<C: rdkafka::ClientContext>(
    class: ErrorClass,
    client: &rdkafka::client::Client<C>,
) -> (ErrorClass, Option<String>) {
    match (class, client.fatal_error()) {
        (ErrorClass::Fatal, Some((code, reason))) if !is_final(code) => {
            (ErrorClass::Fenced, Some(reason))
        }
        (ErrorClass::Fatal, Some((code, reason))) => (
            ErrorClass::Fatal,
            Some(format!("{reason}{}", fatal_hint(code))),
        ),
        (class, _) => (class, None),
    }
}
