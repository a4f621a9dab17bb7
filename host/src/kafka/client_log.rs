//! librdkafka's error and log callbacks, rate-limited: an unreachable cluster makes librdkafka report
//! the same error many times a second, and an operator needs one line that says what and since when,
//! not a flood.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// One line per kind of repeated message at most this often.
const REPEAT_EVERY: Duration = Duration::from_secs(30);

/// What has been logged of one kind of message.
struct Seen {
    first: Instant,
    logged: Instant,
    /// Occurrences since the last line that were not logged.
    suppressed: u64,
}

/// Forwards librdkafka's errors and log lines to `log`, each kind (error code, or log facility and
/// level) at most once per [`REPEAT_EVERY`], with a count of what was left out.
#[derive(Default)]
pub struct ClientLog {
    seen: Mutex<HashMap<String, Seen>>,
}

impl ClientLog {
    /// For a client context's `error` callback.
    pub fn error(&self, error: KafkaError, reason: &str) {
        super::access::observe(error.rdkafka_error_code(), reason);
        let kind = match error.rdkafka_error_code() {
            Some(code) => format!("error {code:?}"),
            None => "error".to_string(),
        };
        if let Some(repeats) = self.admit(&kind) {
            log::error!(target: "librdkafka", "librdkafka: {error}: {reason}{repeats}");
        }
    }

    /// For a client context's `log` callback. Debug lines (asked for with the `debug` property) are
    /// never held back.
    pub fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let level = match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                super::access::observe(None, message);
                log::Level::Error
            }
            RDKafkaLogLevel::Warning => log::Level::Warn,
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => log::Level::Info,
            RDKafkaLogLevel::Debug => {
                log::debug!(target: "librdkafka", "librdkafka: {facility} {message}");
                return;
            }
        };
        if let Some(repeats) = self.admit(&format!("{level} {facility}")) {
            log::log!(target: "librdkafka", level, "librdkafka: {facility} {message}{repeats}");
        }
    }

    /// `Some(suffix)` if a message of `kind` may be logged now; the suffix says how many were left out.
    fn admit(&self, kind: &str) -> Option<String> {
        let mut seen = match self.seen.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        match seen.get_mut(kind) {
            None => {
                seen.insert(
                    kind.to_string(),
                    Seen {
                        first: now,
                        logged: now,
                        suppressed: 0,
                    },
                );
                Some(String::new())
            }
            Some(entry) if now.duration_since(entry.logged) >= REPEAT_EVERY => {
                let suffix = if entry.suppressed == 0 {
                    String::new()
                } else {
                    format!(
                        " (repeated; {} more like it not logged, first {:.0?} ago)",
                        entry.suppressed,
                        now.duration_since(entry.first)
                    )
                };
                entry.logged = now;
                entry.suppressed = 0;
                Some(suffix)
            }
            Some(entry) => {
                entry.suppressed += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_held_back_and_counted() {
        let log = ClientLog::default();
        assert_eq!(log.admit("error AllBrokersDown"), Some(String::new()));
        for _ in 0..1000 {
            assert_eq!(log.admit("error AllBrokersDown"), None);
        }
        // Another kind is not held back by the first.
        assert_eq!(log.admit("warn FAIL"), Some(String::new()));
        // Pretend the window passed.
        {
            let mut seen = log.seen.lock().unwrap();
            let entry = seen.get_mut("error AllBrokersDown").unwrap();
            entry.logged -= REPEAT_EVERY;
        }
        let suffix = log.admit("error AllBrokersDown").unwrap();
        assert!(suffix.contains("1000 more like it"), "{suffix}");
        assert_eq!(log.admit("error AllBrokersDown"), None);
    }
}
