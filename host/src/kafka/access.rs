//! Refused credentials and failed TLS verification: configuration problems librdkafka never gives
//! up on.
//!
//! With a wrong password, an unknown user, a broker certificate no configured CA signed or one
//! issued for another host name, librdkafka reports the error through the client's error callback
//! and tries again, for ever: `init_transactions` and metadata requests just time out. These
//! failures are not transient, so the first one asks the instance to stop (the same flag a
//! SIGTERM sets, so every wait ends in bounded time) and [`refused`] turns the stop into a fatal
//! error naming the cause.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use rdkafka::types::RDKafkaErrorCode;

/// The flag that stops the instance (see `crate::shutdown`).
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// The first refusal seen, as the instance's final error.
static REFUSED: OnceLock<String> = OnceLock::new();

/// Makes a refusal stop the instance through `stop`.
pub fn stop_on_refusal(stop: &Arc<AtomicBool>) {
    let _ = STOP.set(Arc::clone(stop));
}

/// For a client's error and log callbacks: records a refusal described by `code` (error
/// callback only) and librdkafka's `message`, and asks the instance to stop. Both callbacks are
/// watched because librdkafka reports a failed TLS verification as a transport error, or only in
/// its `FAIL` log line, depending on the connection's state, and a consumer's error callback runs
/// only when it is polled.
pub fn observe(code: Option<RDKafkaErrorCode>, message: &str) {
    let Some(why) = refusal(code, message) else {
        return;
    };
    if REFUSED.set(why).is_ok() {
        if let Some(stop) = STOP.get() {
            stop.store(true, Ordering::SeqCst);
        }
    }
}

/// The refusal that stopped the instance, if one did.
pub fn refused() -> Option<&'static str> {
    REFUSED.get().map(String::as_str)
}

/// The final error for a refusal: what failed, librdkafka's words, and what to check.
fn refusal(code: Option<RDKafkaErrorCode>, message: &str) -> Option<String> {
    // Log lines start with the thread: `[thrd:sasl_ssl://host:9093/bootstrap]: `.
    let message = match message.strip_prefix("[thrd:") {
        Some(rest) => rest.split_once("]: ").map_or(message, |(_, text)| text),
        None => message,
    };
    if code == Some(RDKafkaErrorCode::Authentication)
        || message.contains("SASL authentication error")
    {
        Some(format!(
            "Kafka refused this client's credentials: {message} (check sasl.mechanism, \
             sasl.username and sasl.password, or the client certificate)"
        ))
    } else if message.contains("certificate verify failed") {
        // Only verification: a connection cut during a handshake is an SSL error too, and
        // that one is transient.
        Some(format!(
            "TLS with the broker failed: {message} (check ssl.ca.location: it must hold the CA \
             that signed the broker's certificate, and the certificate must name the host in \
             bootstrap.servers)"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_certificate_verification_are_refusals() {
        let auth = refusal(
            Some(RDKafkaErrorCode::Authentication),
            "SASL authentication error: invalid credentials",
        )
        .unwrap();
        assert_eq!(
            auth,
            "Kafka refused this client's credentials: SASL authentication error: invalid \
             credentials (check sasl.mechanism, sasl.username and sasl.password, or the client \
             certificate)"
        );
        let tls = refusal(
            None,
            "[thrd:sasl_ssl://127.0.0.1:9392/bootstrap]: sasl_ssl://127.0.0.1:9392/bootstrap: \
             error:0A000086:SSL routines::certificate verify failed (after 6ms in state SSL_HANDSHAKE)",
        )
        .unwrap();
        assert!(
            tls.starts_with(
                "TLS with the broker failed: sasl_ssl://127.0.0.1:9392/bootstrap: error:0A000086"
            ),
            "{tls}"
        );
        assert_eq!(
            refusal(
                Some(RDKafkaErrorCode::SSL),
                "SSL handshake failed: Disconnected"
            ),
            None
        );
        assert_eq!(
            refusal(
                Some(RDKafkaErrorCode::AllBrokersDown),
                "1/1 brokers are down"
            ),
            None
        );
        assert_eq!(refusal(None, "whatever"), None);
    }
}
