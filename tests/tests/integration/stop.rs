//! Stopping: a stop request ends the instance within a bounded time even when the cluster cannot be
//! reached, and an unreachable cluster is reported in periodic lines, not a flood of client errors.

use std::collections::HashMap;
use std::time::Duration;

use txform_tests::{passthrough_config, Plugin, TestEnv};

use crate::EXIT_TIMEOUT;

/// Nothing listens there.
const UNREACHABLE: &str = "127.0.0.1:1";
/// Long enough for librdkafka to report each of its errors many times (it retries every second or
/// less) and for the rate limit's 30 s window to pass once.
const WATCH: Duration = Duration::from_secs(32);

#[test]
fn sigterm_stops_promptly_while_the_cluster_is_unreachable_and_the_log_does_not_flood() {
    let env = TestEnv::new("unreachable");
    let input = txform_tests::Topic {
        name: env.name("in"),
        partitions: 1,
    };
    let output = txform_tests::Topic {
        name: env.name("out"),
        partitions: 1,
    };
    let pipeline = env
        .pipeline(&[&input], &output)
        .consumer_property("bootstrap.servers", UNREACHABLE)
        .producer_property("bootstrap.servers", UNREACHABLE)
        .transform("copy", Plugin::passthrough(), passthrough_config());
    let mut txform = env.spawn(&pipeline, "0");
    std::thread::sleep(WATCH);
    assert!(txform.try_exit().is_none(), "{}", txform.tail(20));

    let reported = txform.log_lines("cannot reach the Kafka cluster for ");
    assert!(
        (2..=3).contains(&reported.len()),
        "one periodic line every 10 s says the cluster is unreachable: {reported:?}"
    );
    // Each kind of client message is logged once, then at most once per 30 s, per client (the
    // consumer, the producer and the one that describes the group).
    let mut repeats: HashMap<String, usize> = HashMap::new();
    for line in txform.log_lines("librdkafka: ") {
        let text = line.split("librdkafka: ").nth(1).unwrap_or_default();
        let text = text.split(" (repeated;").next().unwrap_or_default();
        *repeats.entry(text.to_string()).or_default() += 1;
    }
    assert!(!repeats.is_empty(), "librdkafka reported nothing");
    for (text, count) in &repeats {
        assert!(*count <= 3 * 2, "{count} lines of {text:?}");
    }

    // Exit code 0, not 143: the stop finished on its own, before the 20 s after which it is forced.
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);
}
