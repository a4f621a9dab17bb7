//! Rebalances with a transaction open, several instances in one group (dynamic membership, so a
//! stopped instance leaves at once). Batches never close on their own here (a 30 s interval, far
//! beyond the test): every commit happens inside a revocation or at a stop, and every moment chosen
//! is inside an open transaction (the fault plugin sleeps in each call and says so on stderr first;
//! a streamed batch's transaction is open from its first call until its commit):
//! - instance A streams, B joins: A's revocation commits what A transformed, inside the callback;
//! - A is stopped (SIGTERM) in a call of its next transaction: it commits on the stop and leaves;
//!   B, inside its first transaction, revokes and commits inside the callback (eager assignment) or
//!   is assigned A's partitions with its transaction still open (cooperative: nothing revoked);
//! - B is stopped in a transaction, and C (short batches) copies the rest.
//!
//! Inputs keep flowing throughout. Every input comes out exactly once, in its partition's order, for
//! read_committed readers; no transaction is aborted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use toml::Value;
use txform_tests::{
    assert_same_content, by_partition, read_topic, table, wait_for_committed,
    wait_for_group_at_end, InputProducer, InputSpec, Isolation, Plugin, Record, TestEnv, Topic,
    Txform,
};

use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

const PARTITIONS: i32 = 4;
/// Longer than the test: only revocations and stops commit.
const LONG_WAIT_MS: i64 = 30_000;
/// Every transform call sleeps this long: its transaction is open meanwhile.
const CALL_MS: i64 = 700;
const SLEEPING: &str = "fault: sleeping";
const REVOKED: &str = "revocation with an open transaction: committed ";
const STOPPED: &str = "stop requested: committing the ";
const ASSIGNED: &str = "partitions assigned";

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

fn sleeping_calls(txform: &Txform) -> usize {
    txform.log_lines(SLEEPING).len()
}

/// Waits until `txform` is inside a transform call that began after this call.
fn wait_for_a_new_call(txform: &mut Txform) {
    let calls = sleeping_calls(txform);
    txform.wait_for_log_count(SLEEPING, calls + 1, PROCESS_TIMEOUT);
}

/// The record count in a `... committed N record(s) ...` or `... committing the N record(s) ...` line.
fn count_after(line: &str, prefix: &str) -> u64 {
    line.split(prefix)
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {line:?}"))
}

fn revocation_with_an_open_transaction(name: &str, strategy: Option<&str>) {
    let env = TestEnv::new(name);
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let mut pipeline = env
        .pipeline(&[&input], &output)
        .batch(100_000, LONG_WAIT_MS)
        .consumer_property("heartbeat.interval.ms", 500)
        .transform(
            "slow",
            Plugin::fault(),
            table(&[("delay_ms", Value::Integer(CALL_MS))]),
        );
    if let Some(strategy) = strategy {
        pipeline = pipeline.consumer_property("partition.assignment.strategy", strategy);
    }
    pipeline.static_membership = false;
    let config = env.write_pipeline(&pipeline, "pipeline.toml");
    let cooperative = strategy.is_some();

    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce_until(input.clone(), Arc::clone(&stop));
    let mut a = env.spawn_file(&config, "0");
    a.wait_for_log(ASSIGNED, PROCESS_TIMEOUT);

    // B joins while A's transaction is open (A is in a call): A commits inside its revocation.
    a.wait_for_log_count(SLEEPING, 1, PROCESS_TIMEOUT);
    let mut b = env.spawn_file(&config, "1");
    let revoked = a.wait_for_log(REVOKED, PROCESS_TIMEOUT);
    assert!(count_after(&revoked, REVOKED) > 0, "{revoked}");
    b.wait_for_log(ASSIGNED, PROCESS_TIMEOUT);

    // A leaves in a call of its next transaction, while B is in its first one.
    wait_for_a_new_call(&mut a);
    b.wait_for_log_count(SLEEPING, 1, PROCESS_TIMEOUT);
    a.terminate();
    a.expect_exit_code(0, EXIT_TIMEOUT);
    let stopped = a.log_lines(STOPPED);
    assert_eq!(stopped.len(), 1, "A committed its open batch at the stop");
    assert!(count_after(&stopped[0], STOPPED) > 0, "{}", stopped[0]);
    b.wait_for_log_count(ASSIGNED, 2, PROCESS_TIMEOUT);
    // Eager: B gave up all its partitions, committing first; cooperative: it revoked nothing, and
    // its transaction stayed open.
    let b_revoked = b.log_lines(REVOKED);
    assert_eq!(
        b_revoked.len(),
        if cooperative { 0 } else { 1 },
        "{b_revoked:#?}"
    );

    // B works alone for a while and is stopped in a transaction; C copies the rest.
    wait_for_a_new_call(&mut b);
    wait_for_a_new_call(&mut b);
    stop.store(true, Ordering::SeqCst);
    let produced = producer.join().expect("the input producer");
    b.terminate();
    b.expect_exit_code(0, EXIT_TIMEOUT);
    assert_eq!(
        b.log_lines(STOPPED).len(),
        1,
        "B committed its open batch at the stop"
    );
    let mut rest = pipeline.clone();
    rest.max_wait_ms = 200;
    let rest = env.write_pipeline(&rest, "rest.toml");
    let mut c = env.spawn_file(&rest, "2");
    wait_for_committed(&output, produced.len(), PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    c.terminate();
    c.expect_exit_code(0, EXIT_TIMEOUT);

    let expected = by_partition(&produced, PARTITIONS);
    let actual = by_partition(&read_topic(&output, Isolation::ReadCommitted), PARTITIONS);
    for p in 0..PARTITIONS as usize {
        assert_same_content(&expected[p], &actual[p], &format!("output partition {p}"));
    }
    for txform in [&a, &b, &c] {
        for aborted in ["aborted batch", "aborted it"] {
            assert_eq!(txform.log_lines(aborted), Vec::<String>::new(), "{aborted}");
        }
        assert!(
            txform.error_messages().is_empty(),
            "{:?}",
            txform.error_messages()
        );
    }
}

#[test]
fn a_revocation_commits_the_open_transaction_eager() {
    revocation_with_an_open_transaction("revoke-eager", None);
}

#[test]
fn a_revocation_commits_the_open_transaction_cooperative() {
    revocation_with_an_open_transaction("revoke-coop", Some("cooperative-sticky"));
}
