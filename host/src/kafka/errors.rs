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

/// What the pipeline needs of a failed Kafka call: what to do about it, its code (for the
/// operator's hint) and its message.
pub trait CallError: std::fmt::Display {
    fn class(&self) -> ErrorClass;
    fn code(&self) -> RDKafkaErrorCode;
}

impl CallError for KafkaError {
    fn class(&self) -> ErrorClass {
        classify(self)
    }

    fn code(&self) -> RDKafkaErrorCode {
        match self {
            KafkaError::Transaction(e) => e.code(),
            other => other
                .rdkafka_error_code()
                .unwrap_or(RDKafkaErrorCode::Fatal),
        }
    }
}

/// The error of a transactional call made on librdkafka directly (see `commit`), read from
/// librdkafka's error object and classified like a [`KafkaError::Transaction`].
#[derive(Debug, Clone)]
pub struct TxnCallError {
    class: ErrorClass,
    code: RDKafkaErrorCode,
    text: String,
}

impl TxnCallError {
    pub(super) fn new(
        code: RDKafkaErrorCode,
        fatal: bool,
        retriable: bool,
        requires_abort: bool,
        text: String,
    ) -> TxnCallError {
        let class = classify_transaction(TxnError {
            fatal,
            requires_abort,
            retriable,
            code,
        });
        TxnCallError { class, code, text }
    }
}

impl CallError for TxnCallError {
    fn class(&self) -> ErrorClass {
        self.class
    }

    fn code(&self) -> RDKafkaErrorCode {
        self.code
    }
}

impl std::fmt::Display for TxnCallError {
    /// As rust-rdkafka shows a transactional call's error.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transaction error: {}", self.text)
    }
}

/// Classifies an error returned by a transactional call, a send or a consumer poll.
pub fn classify(error: &KafkaError) -> ErrorClass {
    match error {
        KafkaError::Transaction(e) => classify_transaction(TxnError {
            fatal: e.is_fatal(),
            requires_abort: e.txn_requires_abort(),
            retriable: e.is_retriable(),
            code: e.code(),
        }),
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

/// What a transactional call's error says about itself (`RDKafkaError` has no public constructor,
/// so the decision is made on these to be testable).
#[derive(Debug, Clone, Copy)]
struct TxnError {
    fatal: bool,
    requires_abort: bool,
    retriable: bool,
    code: RDKafkaErrorCode,
}

/// A fatal error is final or cured by new clients; otherwise abort unless a plain retry will do.
fn classify_transaction(e: TxnError) -> ErrorClass {
    match e {
        TxnError { fatal: true, .. } if is_final(e.code) => ErrorClass::Fatal,
        TxnError { fatal: true, .. } => ErrorClass::Fenced,
        TxnError {
            requires_abort: true,
            ..
        } => ErrorClass::Abortable,
        TxnError {
            retriable: true, ..
        } => ErrorClass::Retriable,
        _ => ErrorClass::Abortable,
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

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::RDKafkaErrorCode as Code;

    const FENCING: [Code; 4] = [
        Code::ProducerFenced,
        Code::Fenced,
        Code::InvalidProducerEpoch,
        Code::FencedInstanceId,
    ];
    const FINAL: [Code; 7] = [
        Code::TransactionalIdAuthorizationFailed,
        Code::ClusterAuthorizationFailed,
        Code::GroupAuthorizationFailed,
        Code::TopicAuthorizationFailed,
        Code::UnsupportedVersion,
        Code::InvalidTransactionTimeout,
        Code::UnsupportedForMessageFormat,
    ];
    /// Codes that are neither fencing nor final.
    const OTHERS: [Code; 5] = [
        Code::InvalidTransactionalState,
        Code::OperationTimedOut,
        Code::NotCoordinator,
        Code::MessageSizeTooLarge,
        Code::Fatal,
    ];

    fn txn(fatal: bool, requires_abort: bool, retriable: bool, code: Code) -> ErrorClass {
        classify_transaction(TxnError {
            fatal,
            requires_abort,
            retriable,
            code,
        })
    }

    #[test]
    fn fencing_and_final_codes_are_exactly_these() {
        for code in FENCING {
            assert!(is_fencing(code) && !is_final(code), "{code:?}");
        }
        for code in FINAL {
            assert!(is_final(code) && !is_fencing(code), "{code:?}");
        }
        for code in OTHERS {
            assert!(!is_final(code) && !is_fencing(code), "{code:?}");
        }
    }

    #[test]
    fn transactional_errors_by_their_flags() {
        // Fatal: final codes stop the instance, every other one is cured by new clients.
        for code in FINAL {
            assert_eq!(txn(true, true, true, code), ErrorClass::Fatal, "{code:?}");
        }
        for code in FENCING.into_iter().chain(OTHERS) {
            assert_eq!(
                txn(true, false, false, code),
                ErrorClass::Fenced,
                "{code:?}"
            );
        }
        // Not fatal: "requires abort" wins over "retriable"; neither means abort too.
        let code = Code::OperationTimedOut;
        assert_eq!(txn(false, true, true, code), ErrorClass::Abortable);
        assert_eq!(txn(false, false, true, code), ErrorClass::Retriable);
        assert_eq!(txn(false, false, false, code), ErrorClass::Abortable);
        // A final code that is not fatal is just abortable.
        assert_eq!(
            txn(false, true, false, Code::TopicAuthorizationFailed),
            ErrorClass::Abortable
        );
    }

    #[test]
    fn consumer_fatal_errors_are_fences_only_for_fencing_codes() {
        for code in FENCING {
            let error = KafkaError::MessageConsumptionFatal(code);
            assert_eq!(classify(&error), ErrorClass::Fenced, "{code:?}");
        }
        for code in FINAL.into_iter().chain(OTHERS) {
            let error = KafkaError::MessageConsumptionFatal(code);
            assert_eq!(classify(&error), ErrorClass::Fatal, "{code:?}");
        }
    }

    #[test]
    fn other_errors_by_their_code() {
        let cases = [
            (Code::ProducerFenced, ErrorClass::Fenced),
            (Code::FencedInstanceId, ErrorClass::Fenced),
            (Code::Fatal, ErrorClass::Fatal),
            (Code::TransactionalIdAuthorizationFailed, ErrorClass::Fatal),
            (Code::OperationTimedOut, ErrorClass::Retriable),
            (Code::RequestTimedOut, ErrorClass::Retriable),
            (Code::QueueFull, ErrorClass::Retriable),
            (Code::MessageSizeTooLarge, ErrorClass::Abortable),
            (Code::TopicAuthorizationFailed, ErrorClass::Abortable),
            (Code::UnknownTopicOrPartition, ErrorClass::Abortable),
        ];
        for (code, class) in cases {
            for error in [
                KafkaError::MessageProduction(code),
                KafkaError::ConsumerCommit(code),
                KafkaError::Flush(code),
            ] {
                assert_eq!(classify(&error), class, "{error:?}");
            }
        }
        // No code at all: abort and retry.
        assert_eq!(
            classify(&KafkaError::NoMessageReceived),
            ErrorClass::Abortable
        );
    }

    #[test]
    fn authorisation_failures_name_the_missing_permission() {
        assert_eq!(
            fatal_hint(Code::GroupAuthorizationFailed),
            " (not authorised: the principal needs Read on the consumer group)"
        );
        for code in [
            Code::TransactionalIdAuthorizationFailed,
            Code::ClusterAuthorizationFailed,
            Code::TopicAuthorizationFailed,
        ] {
            assert!(
                fatal_hint(code).starts_with(" (not authorised: "),
                "{code:?}"
            );
        }
        for code in FENCING.into_iter().chain(OTHERS) {
            assert_eq!(fatal_hint(code), "", "{code:?}");
        }
    }
}
