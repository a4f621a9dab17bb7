//! Remembers when a client last saw Kafka in trouble (a broker unreachable, a session timed out).
//!
//! A fatal error shortly after such trouble is most likely its consequence rather than a real
//! duplicate instance: a static consumer fenced by its own expired session (librdkafka issue #3437), or
//! a producer fenced after the broker aborted its timed-out transaction. The pipeline then rebuilds
//! its clients instead of exiting.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

/// The instant of the latest trouble.
#[derive(Default)]
pub struct Trouble {
    last: Mutex<Option<Instant>>,
}

impl Trouble {
    pub fn mark(&self) {
        match self.last.lock() {
            Ok(mut last) => *last = Some(Instant::now()),
            Err(poisoned) => *poisoned.into_inner() = Some(Instant::now()),
        }
    }

    /// True if trouble was seen within `window`.
    pub fn within(&self, window: Duration) -> bool {
        let last = match self.last.lock() {
            Ok(last) => *last,
            Err(poisoned) => *poisoned.into_inner(),
        };
        last.is_some_and(|at| at.elapsed() <= window)
    }

    /// For a client context's `error` callback: marks non-fatal errors (fatal ones are the very
    /// thing trouble may explain), then logs as rdkafka does by default.
    pub fn on_error(&self, error: KafkaError, reason: &str) {
        let fatal = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::Fatal
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::FencedInstanceId
            )
        );
        if !fatal {
            self.mark();
        }
        DefaultClientContext.error(error, reason);
    }

    /// For a client context's `log` callback: a consumer session time-out is trouble.
    pub fn on_log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if facility == "SESSTMOUT" {
            self.mark();
        }
        DefaultClientContext.log(level, facility, message);
    }
}
