//! Delivery reports of the producer, kept so a failed commit can be attributed to the record Kafka
//! refused (e.g. too large for the topic) instead of to the broker.

use std::sync::Mutex;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;

use super::trouble::Trouble;

/// Collects failed deliveries; the opaque of each message is the index of its source record in the
/// batch.
#[derive(Default)]
pub struct DeliveryTracker {
    failed: Mutex<Vec<(usize, KafkaError)>>,
    /// Kafka trouble this producer saw (see [`Trouble`]).
    pub trouble: Trouble,
}

impl DeliveryTracker {
    /// Forgets earlier failures; called when a new attempt begins.
    pub fn clear(&self) {
        self.with_failed(Vec::clear);
    }

    /// The first failed delivery of the current attempt, if any.
    pub fn first_failure(&self) -> Option<(usize, KafkaError)> {
        self.with_failed(|failed| failed.first().cloned())
    }

    /// The first failure that is the record's own fault (not the broker's), with its source index.
    pub fn refused_record(&self) -> Option<(usize, KafkaError)> {
        self.with_failed(|failed| {
            failed
                .iter()
                .find(|(_, error)| is_record_refusal(error))
                .cloned()
        })
    }

    fn with_failed<R>(&self, f: impl FnOnce(&mut Vec<(usize, KafkaError)>) -> R) -> R {
        match self.failed.lock() {
            Ok(mut failed) => f(&mut failed),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

impl ClientContext for DeliveryTracker {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.trouble.on_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.trouble.on_error(error, reason);
    }
}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, source: usize) {
        if let Err((error, _)) = result {
            self.with_failed(|failed| failed.push((source, error.clone())));
        }
    }
}

/// Errors that a retry cannot fix because the record itself is unacceptable.
pub fn is_record_refusal(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTimestamp
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::InvalidArgument
        )
    )
}
