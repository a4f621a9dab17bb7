//! Rebalances mid-batch with several instances in one group (dynamic membership, so a stopped
//! instance leaves at once): an instance joins while another is collecting a batch, then the first
//! one leaves while the second has a transaction open. Inputs keep flowing throughout. Every input
//! comes out exactly once, in its partition's order, for read_committed readers; no transaction is
//! aborted (none spans a rebalance: each commits before its instance gives partitions up).
//!
//! Each moment is chosen from what the instances show, not by timing alone: "collecting" is just after
//! a commit (the output's last stable offset moved) with over 2 s of collecting left, far more than the
//! 0.5 s heartbeat that brings the rebalance; "transaction open" is while the fault plugin sleeps in
//! a call (it says so on stderr first).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use toml::Value;
use txform_tests::{
    assert_same_content, by_partition, last_stable_offsets, read_topic, table, wait_for_committed,
    wait_for_group_at_end, InputProducer, InputSpec, Isolation, Plugin, Record, TestEnv, Topic,
    Txform,
};

use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

const PARTITIONS: i32 = 4;
/// Collecting lasts this long after a batch's first record (inputs arrive every 100 ms).
const MAX_WAIT_MS: i64 = 2500;
/// Every transform call sleeps this long: its transaction is open meanwhile.
const CALL_MS: i64 = 700;
const SLEEPING: &str = "fault: sleeping";
const DROPPED: &str = "rebalance while collecting a batch: dropped ";

/// Produces 8 standard inputs (2 per partition) every 100 ms until `stop`; returns them as written.
fn produce_until(input: Topic, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Record>> {
    std::thread::spawn(move || {
        let producer = InputProducer::new(&input);
        let mut written = Vec::new();
        let mut id = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let chunk: Vec<InputSpec> = (id..id + 8)
                .map(|i| InputSpec::standard(i, (i % PARTITIONS as u64) as i32))
                .collect();
            id += 8;
            written.extend(producer.produce(&chunk));
            std::thread::sleep(Duration::from_millis(100));
        }
        written
    })
}

/// Waits until `output`'s last stable offsets move (a transaction committed).
fn wait_for_a_commit(output: &Topic) {
    let before = last_stable_offsets(output);
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    while last_stable_offsets(output) == before {
        assert!(Instant::now() < deadline, "no commit on {}", output.name);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sleeping_calls(txform: &Txform) -> usize {
    txform.log_lines(SLEEPING).len()
}

#[test]
fn instances_joining_and_leaving_mid_batch_copy_every_input_exactly_once_in_order() {
    let env = TestEnv::new("rebalance");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let mut pipeline = env
        .pipeline(&[&input], &output)
        .batch(100_000, MAX_WAIT_MS)
        .consumer_property("heartbeat.interval.ms", 500)
        .transform(
            "slow",
            Plugin::fault(),
            table(&[("delay_ms", Value::Integer(CALL_MS))]),
        );
    pipeline.static_membership = false;
    let config = env.write_pipeline(&pipeline, "pipeline.toml");

    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce_until(input.clone(), Arc::clone(&stop));
    let mut first = env.spawn_file(&config, "0");
    first.wait_for_log("partitions assigned", PROCESS_TIMEOUT);

    // Join while the first instance is collecting: just after one of its commits.
    first.wait_for_log_count(SLEEPING, 1, PROCESS_TIMEOUT);
    wait_for_a_commit(&output);
    std::thread::sleep(Duration::from_millis(300));
    let mut second = env.spawn_file(&config, "1");
    let dropped = first.wait_for_log(DROPPED, PROCESS_TIMEOUT);
    second.wait_for_log("partitions assigned", PROCESS_TIMEOUT);

    // Leave while the second instance has a transaction open: during one of its calls.
    let calls = sleeping_calls(&second);
    second.wait_for_log_count(SLEEPING, calls + 1, PROCESS_TIMEOUT);
    first.terminate();
    first.expect_exit_code(0, EXIT_TIMEOUT);
    second.wait_for_log_count("partitions assigned", 2, PROCESS_TIMEOUT);

    // Let the second instance work alone for a while, then stop the inputs.
    second.wait_for_log_count(SLEEPING, sleeping_calls(&second) + 1, PROCESS_TIMEOUT);
    stop.store(true, Ordering::SeqCst);
    let produced = producer.join().expect("the input producer");
    wait_for_committed(&output, produced.len(), PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    second.terminate();
    second.expect_exit_code(0, EXIT_TIMEOUT);

    let expected = by_partition(&produced, PARTITIONS);
    let actual = by_partition(&read_topic(&output, Isolation::ReadCommitted), PARTITIONS);
    for p in 0..PARTITIONS as usize {
        assert_same_content(&expected[p], &actual[p], &format!("output partition {p}"));
    }
    let records: u64 = dropped
        .split(DROPPED)
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {dropped:?}"));
    assert!(records > 0, "the join landed mid-batch: {dropped}");
    for txform in [&first, &second] {
        assert_eq!(
            txform.log_lines("aborted batch"),
            Vec::<String>::new(),
            "no transaction aborted: none spans a rebalance"
        );
        assert!(
            txform.error_messages().is_empty(),
            "{:?}",
            txform.error_messages()
        );
    }
}
