//! How a batch attempt can fail, and what each kind of failure means for the records.

use crate::kafka::{fatal_hint, CallError, ErrorClass};
use crate::plugin::StageFailure;

/// Why an attempt failed. The distinction drives the error policy: only `Records` failures count
/// against `errors.max_retries` and can lead to records being set aside.
#[derive(Debug)]
pub enum Failure {
    /// Something about the records: a transform error, panic or rejection, or a record Kafka
    /// refused. `source` is the batch index of the record when it is known.
    Records { cause: Cause, source: Option<usize> },
    /// Kafka itself (broker unreachable, rebalance, time-out): retried without bound.
    Kafka(String),
    /// Kafka fenced this instance (producer epoch or static membership): the consumer group decides
    /// whether it rejoins or steps down for a newer process with the same id (see `kafka::membership`).
    Fenced(String),
    /// The instance cannot go on (e.g. not authorised, or the dead-letter topic refuses records).
    Fatal(String),
}

/// Who failed and how: written into logs and dead-letter headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub stage: String,
    pub plugin: String,
    pub version: String,
    pub error: String,
}

impl Cause {
    /// A failure of txform's own sink (a record Kafka refused).
    pub fn sink(error: impl std::fmt::Display) -> Self {
        Cause {
            stage: "sink".to_string(),
            plugin: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            error: error.to_string(),
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "transform `{}` ({} {}): {}",
            self.stage, self.plugin, self.version, self.error
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Records { cause, .. } => cause.fmt(f),
            Failure::Kafka(message) | Failure::Fenced(message) | Failure::Fatal(message) => {
                f.write_str(message)
            }
        }
    }
}

impl From<StageFailure> for Failure {
    fn from(failure: StageFailure) -> Self {
        Failure::Records {
            cause: Cause {
                stage: failure.stage,
                plugin: failure.plugin,
                version: failure.version,
                error: failure.error.to_string(),
            },
            source: None,
        }
    }
}

impl Failure {
    /// Classifies a Kafka error from `call`.
    pub fn kafka(call: &str, error: impl CallError) -> Self {
        match error.class() {
            ErrorClass::Fenced => Failure::Fenced(format!("{call}: {error}")),
            ErrorClass::Fatal => {
                Failure::Fatal(format!("{call}: {error}{}", fatal_hint(error.code())))
            }
            ErrorClass::Abortable | ErrorClass::Retriable => {
                Failure::Kafka(format!("{call}: {error}"))
            }
        }
    }
}
