//! `errors.max_retry_time_ms`: a failing batch is retried while less than that time has passed since
//! its first failure, and given up at the first failure at or after it, however many of
//! `max_retries` are left.

use std::time::{Duration, Instant};

use txform_tests::dead_letter::{spawn_with_policy, ErrorPolicy};
use txform_tests::{produce, standard_inputs, table, Plugin, TestEnv};

use crate::EXIT_TIMEOUT;

const RETRY_TIME_MS: u64 = 1500;
/// Initial and maximum backoff: each delay is drawn from 200..=400 ms.
const BACKOFF_MS: i64 = 400;
const MAX_RETRIES: i64 = 50;

/// The delay of a `...; retrying in 312ms` warning.
fn delay_of(line: &str) -> Duration {
    let ms = line
        .rsplit("retrying in ")
        .next()
        .and_then(|rest| rest.strip_suffix("ms"))
        .and_then(|ms| ms.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no delay in {line:?}"));
    Duration::from_secs_f64(ms / 1000.0)
}

#[test]
fn retries_stop_at_the_first_failure_after_max_retry_time() {
    let env = TestEnv::new("retry-time");
    let input = env.create_topic("in", 1);
    let output = env.create_topic("out", 1);
    produce(&input, &standard_inputs(5, 1));
    let fault = table(&[("action", "error".into()), ("key_equals", "k000003".into())]);
    let pipeline = env
        .pipeline(&[&input], &output)
        .retries(MAX_RETRIES, BACKOFF_MS, BACKOFF_MS)
        .transform("guard", Plugin::fault(), fault);
    let policy = ErrorPolicy::stop().max_retry_time_ms(RETRY_TIME_MS as i64);
    let started = Instant::now();
    let mut txform = spawn_with_policy(&env, &pipeline, &policy, "0");
    txform.expect_exit_code(1, EXIT_TIMEOUT);
    let ran = started.elapsed();

    let retries = txform.log_lines("aborted batch at ");
    let delays: Vec<Duration> = retries.iter().map(|l| delay_of(l)).collect();
    let attempts = delays.len() + 1;
    let errors = txform.error_messages();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!(
            "txform: giving up after {attempts} failed attempts at "
        )),
        "the error counts the attempts: {errors:?}"
    );
    for delay in &delays {
        assert!(
            (Duration::from_millis(200)..=Duration::from_millis(400)).contains(delay),
            "backoff {delay:?} outside 200..=400 ms"
        );
    }
    // Retried while under the time: the failure before the last came after all delays but the
    // last one, so their sum is below the limit; at 200 ms at least each, at most 9 attempts.
    let before_last: Duration = delays[..delays.len().saturating_sub(1)].iter().sum();
    assert!(
        before_last < Duration::from_millis(RETRY_TIME_MS),
        "a retry was scheduled after the limit: delays {delays:?}"
    );
    assert!(
        (2..=9).contains(&attempts),
        "{attempts} attempts in {RETRY_TIME_MS} ms of 200..=400 ms backoffs"
    );
    // Given up at or after the limit, not before: the run lasted at least that long.
    assert!(
        ran >= Duration::from_millis(RETRY_TIME_MS),
        "gave up after {ran:?}, before {RETRY_TIME_MS} ms"
    );
    assert!(
        attempts < MAX_RETRIES as usize + 1,
        "max_retries not reached"
    );
}
