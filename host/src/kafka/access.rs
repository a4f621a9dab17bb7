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

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// The flag that stops the instance (see `crate::shutdown`).
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// The first refusal seen, as the instance's final error.
static REFUSED: OnceLock<String> = OnceLock::new();

/// Makes a refusal stop the instance through `stop`.
pub fn stop_on_refusal(stop: &Arc<AtomicBool>) {
    let _ = STOP.set(Arc::clone(stop));
}

/// For a client's error callback: records `error` if it is a refusal and asks the instance to stop.
pub fn observe(error: &KafkaError, reason: &str) {
    let Some(why) = refusal(error.rdkafka_error_code(), reason) else {
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
fn refusal(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<String> {
    match code? {
        RDKafkaErrorCode::Authentication => Some(format!(
            "Kafka refused this client's credentials: {reason} (check sasl.mechanism, \
             sasl.username and sasl.password, or the client certificate)"
        )),
        // Only verification failures: a connection cut during a handshake is reported as an SSL
        // error too, and that one is transient.
        RDKafkaErrorCode::SSL if reason.contains("certificate verify failed") => Some(format!(
            "TLS with the broker failed: {reason} (check ssl.ca.location: it must hold the CA \
             that signed the broker's certificate, and the certificate must name the host in \
             bootstrap.servers)"
        )),
        _ => None,
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
            Some(RDKafkaErrorCode::SSL),
            "SSL handshake failed: certificate verify failed: broker certificate could not be verified",
        )
        .unwrap();
        assert!(tls.starts_with("TLS with the broker failed: SSL handshake failed: certificate verify failed"), "{tls}");
        assert_eq!(
            refusal(Some(RDKafkaErrorCode::SSL), "SSL handshake failed: Disconnected"),
            None
        );
        assert_eq!(
            refusal(Some(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down"),
            None
        );
        assert_eq!(refusal(None, "whatever"), None);
    }
}
