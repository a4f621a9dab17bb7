//! The documented exit codes of `txform run` that the other tests do not already check: a second
//! SIGINT or SIGTERM during a stop that has not finished exits at once with 128 + the signal number
//! (130, 143), with a line saying so. (0 after SIGINT or SIGTERM: chain.rs, happy_path.rs and most
//! others; 1: error_policies.rs and plugin_failure.rs; 2: bad_config.rs and missing_topics.rs;
//! 3: fencing.rs.)

use std::time::{Duration, Instant};

use txform_tests::{
    produce, read_topic, standard_inputs, table, Isolation, Plugin, TestEnv, Txform,
};

use crate::PROCESS_TIMEOUT;

/// The slow transform's call: far longer than the test, so the stop cannot finish by itself.
const DELAY_MS: i64 = 60_000;
/// A forced exit is immediate; this only guards against a hang (and is far below the 20 s after
/// which a stop is forced anyway).
const FORCED_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts an instance and returns once it is inside a transform call that takes [`DELAY_MS`], with
/// its transaction's records not yet produced.
fn inside_a_slow_call(env: &TestEnv) -> (Txform, txform_tests::Topic) {
    let input = env.create_topic("in", 1);
    let output = env.create_topic("out", 1);
    produce(&input, &standard_inputs(10, 1));
    let pipeline = env.pipeline(&[&input], &output).transform(
        "slow",
        Plugin::fault(),
        table(&[("delay_ms", DELAY_MS.into())]),
    );
    let mut txform = env.spawn(&pipeline, "0");
    txform.wait_for_log("fault: sleeping", PROCESS_TIMEOUT);
    (txform, output)
}

/// Sends `signal` twice (the first asks for a stop, which waits for the slow call) and checks the
/// exit: at once, code 128 + signal, the reason on stderr, nothing committed.
fn second_signal_exits_at_once(label: &str, signal: fn(&mut Txform), name: &str, code: i32) {
    let env = TestEnv::new(label);
    let (mut txform, output) = inside_a_slow_call(&env);
    signal(&mut txform);
    txform.wait_for_log(
        &format!("{name}: finishing the transaction in flight"),
        FORCED_EXIT_TIMEOUT,
    );
    assert!(
        txform.try_exit().is_none(),
        "the first {name} must not end the slow call"
    );
    let sent = Instant::now();
    signal(&mut txform);
    txform.expect_exit_code(code, FORCED_EXIT_TIMEOUT);
    eprintln!("second {name}: exited {:?} after it", sent.elapsed());
    let errors = txform.error_messages();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!("txform: second {name}: stopping at once; ")),
        "{}",
        errors[0]
    );
    assert_eq!(read_topic(&output, Isolation::ReadCommitted), vec![]);
}

#[test]
fn a_second_sigint_exits_at_once_with_130() {
    second_signal_exits_at_once("second-sigint", Txform::interrupt, "SIGINT", 130);
}

#[test]
fn a_second_sigterm_exits_at_once_with_143() {
    second_signal_exits_at_once("second-sigterm", Txform::terminate, "SIGTERM", 143);
}
