//! Waiting policies: exponential backoff with jitter between attempts, and "as long as it takes" for
//! transactional calls whose time-out only means "not done yet".

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng as _;
use rdkafka::util::Timeout;

use crate::kafka::{CallError, ErrorClass};

/// One slice of an abort.
const ABORT_SLICE: Duration = Duration::from_millis(500);

/// One slice of a call that a stop may interrupt (`init_transactions`).
const CALL_SLICE: Duration = Duration::from_secs(1);

/// Pause before a call that returned a retriable error is made again.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// How often a call that is still not done is reported.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// Runs a transactional call until it succeeds or fails for a reason other than a time-out. Commit and
/// abort must never turn a slow broker into a failure: librdkafka allows calling them again. Each
/// call gets librdkafka's recommended time-out (`Timeout::Never`: the transaction's remaining
/// time), since shorter ones risk desynchronising its state; a stop that takes too long is forced
/// by `shutdown`.
pub fn until_done<E: CallError>(
    what: &str,
    call: impl FnMut(Timeout) -> Result<(), E>,
) -> Result<(), E> {
    repeat(what, None, Timeout::Never, call).map(|_| ())
}

/// `abort_transaction` in slices, each call resuming the abort. With an infinite time-out librdkafka
/// waits inside the call for messages held after a refused one, which are only released as the
/// abort goes on: measured, an abort after a refused record never returned.
pub fn abort_until_done<E: CallError>(call: impl FnMut(Timeout) -> Result<(), E>) -> Result<(), E> {
    repeat("abort_transaction", None, Timeout::After(ABORT_SLICE), call).map(|_| ())
}

/// Like [`until_done`], but gives up when `stop` is set: `Ok(false)`. For calls that change nothing
/// when abandoned (`init_transactions`).
pub fn until_done_or_stopped<E: CallError>(
    what: &str,
    stop: &AtomicBool,
    call: impl FnMut(Timeout) -> Result<(), E>,
) -> Result<bool, E> {
    repeat(what, Some(stop), Timeout::After(CALL_SLICE), call)
}

fn repeat<E: CallError>(
    what: &str,
    stop: Option<&AtomicBool>,
    timeout: Timeout,
    mut call: impl FnMut(Timeout) -> Result<(), E>,
) -> Result<bool, E> {
    let started = Instant::now();
    let mut reported = started;
    loop {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return Ok(false);
        }
        match call(timeout) {
            Err(error) if error.class() == ErrorClass::Retriable => {
                std::thread::sleep(RETRY_PAUSE);
                if reported.elapsed() >= REPORT_EVERY {
                    reported = Instant::now();
                    log::warn!(
                        "{what} not done after {:.0?}, still waiting: {error}",
                        started.elapsed()
                    );
                }
            }
            result => return result.map(|()| true),
        }
    }
}

/// The delay before attempt `attempt` (1-based): `initial * 2^(attempt-1)`, capped at `max`, with
/// "equal jitter" (half fixed, half random) so restarted instances do not retry in lockstep.
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let full = initial.saturating_mul(1u32 << exponent).min(max);
    let half = full / 2;
    let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter_ms)
}

/// Sleeps for `delay`, waking early when `stop` is set. Returns false if it was woken by `stop`.
pub fn sleep_unless_stopped(delay: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + delay;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    !stop.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for _ in 0..100 {
            let first = backoff(1, initial, max);
            assert!(
                first >= Duration::from_millis(50) && first <= initial,
                "{first:?}"
            );
            let third = backoff(3, initial, max);
            assert!(
                third >= Duration::from_millis(200) && third <= Duration::from_millis(400),
                "{third:?}"
            );
            let capped = backoff(30, initial, max);
            assert!(
                capped >= Duration::from_millis(500) && capped <= max,
                "{capped:?}"
            );
        }
    }
}
