//! Zombie fencing: a second instance started with the same instance id (so the same transactional id
//! and static group member id) takes over; the first one must stop with exit code 3 and a message about
//! being fenced, and nothing is duplicated or lost.

use txform_tests::{
    assert_exactly_once_by_id, assert_same_content, by_partition, passthrough_config,
    pause_in_open_transaction, produce, read_topic, standard_inputs, wait_for_committed,
    wait_for_group_at_end, Isolation, Plugin, TestEnv, Topic, Txform,
};

use crate::fencing::assert_open_transaction_aborted;
use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

const PARTITIONS: i32 = 3;

/// Exit code 3 and one `txform:` line saying that a newer instance with the same id took over (not
/// just any fatal error: an authorisation failure also exits 3, with another message).
pub fn assert_superseded(zombie: &mut Txform) {
    zombie.expect_exit_code(3, EXIT_TIMEOUT);
    let errors = zombie.error_messages();
    assert_eq!(
        errors.len(),
        1,
        "exactly one `txform:` error line, got {errors:?}"
    );
    assert!(
        errors[0].starts_with("txform: a newer instance with the same id took over: "),
        "the error must say a newer instance took over: {}",
        errors[0]
    );
    assert!(
        errors[0].contains("stops without committing again"),
        "{}",
        errors[0]
    );
}

/// Exactly the inputs, in order per partition, for read_committed readers.
pub fn assert_output_exact(
    produced: &[txform_tests::Record],
    output: &Topic,
) -> Vec<txform_tests::Record> {
    let committed = read_topic(output, Isolation::ReadCommitted);
    assert_exactly_once_by_id(
        produced.iter().filter_map(|r| r.test_id()),
        &committed,
        "read_committed output",
    );
    let expected = by_partition(produced, PARTITIONS);
    let actual = by_partition(&committed, PARTITIONS);
    for p in 0..PARTITIONS as usize {
        assert_same_content(
            &expected[p],
            &actual[p],
            &format!("read_committed output partition {p}"),
        );
    }
    committed
}

/// The zombie is caught in the middle of a transaction (frozen with records written), the new instance
/// starts, then the zombie goes on: its commit must be refused, its records aborted.
#[test]
fn zombie_in_open_transaction_is_fenced() {
    // Enough input that the copy (about 10 ms a transaction of 100) outlasts the freeze attempts.
    const N: u64 = 30_000;
    let env = TestEnv::new("zombie-busy");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let produced = produce(&input, &standard_inputs(N, PARTITIONS));
    let pipeline = env.pipeline(&[&input], &output).batch(100, 100).transform(
        "copy",
        Plugin::passthrough(),
        passthrough_config(),
    );

    let mut zombie = env.spawn(&pipeline, "0");
    wait_for_committed(&output, 300, PROCESS_TIMEOUT);
    let (lso, end) = pause_in_open_transaction(&mut zombie, &output, PROCESS_TIMEOUT);

    let mut successor = env.spawn(&pipeline, "0");
    successor.wait_for_log("] committed ", PROCESS_TIMEOUT);
    zombie.resume();
    assert_superseded(&mut zombie);

    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    successor.terminate();
    successor.expect_exit_code(0, EXIT_TIMEOUT);

    let committed = assert_output_exact(&produced, &output);
    // The zombie's open transaction was aborted by the successor's init_transactions: its records are
    // visible to read_uncommitted readers only.
    assert_open_transaction_aborted(&output, &committed, &lso, &end);
}

/// The zombie is idle (all input done) when the new instance starts: it must notice that it was
/// replaced (its static group membership is fenced) and stop, instead of lingering as a second member.
#[test]
fn idle_zombie_is_fenced() {
    const N: u64 = 300;
    let env = TestEnv::new("zombie-idle");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let first = produce(&input, &standard_inputs(N, PARTITIONS));
    let pipeline = env.pipeline(&[&input], &output).transform(
        "copy",
        Plugin::passthrough(),
        passthrough_config(),
    );

    let mut zombie = env.spawn(&pipeline, "0");
    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);

    let mut successor = env.spawn(&pipeline, "0");
    successor.wait_for_log("partitions assigned", PROCESS_TIMEOUT);
    assert_superseded(&mut zombie);

    // The successor carries on from where the zombie stopped.
    let more: Vec<_> = standard_inputs(2 * N, PARTITIONS).split_off(N as usize);
    let second = produce(&input, &more);
    wait_for_committed(&output, 2 * N as usize, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    successor.terminate();
    successor.expect_exit_code(0, EXIT_TIMEOUT);

    let all: Vec<_> = first.into_iter().chain(second).collect();
    let committed = assert_output_exact(&all, &output);
    let uncommitted = read_topic(&output, Isolation::ReadUncommitted);
    assert_same_content(
        &committed,
        &uncommitted,
        "nothing was aborted: read_uncommitted vs read_committed",
    );
}
