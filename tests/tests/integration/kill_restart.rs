//! Crash and restart: `kill -9` an instance while it has an open transaction with records already
//! written to the output, then restart it with the same instance id.
//!
//! - Every input comes out exactly once, in order per partition, for read_committed readers.
//! - The killed instance's records are in the output log but aborted: read_uncommitted readers see
//!   them, read_committed readers never do.
//! - The restarted instance fences its predecessor at `init_transactions`, which aborts the open
//!   transaction at once: its first commit comes well before `transaction.timeout.ms`, after which the
//!   broker would have aborted it anyway. That bound is the protocol property under test, not a speed.

use std::time::Duration;

use txform_tests::{
    assert_exactly_once_by_id, assert_same_content, by_partition, end_offsets, last_stable_offsets,
    passthrough_config, pause_in_open_transaction, produce, read_topic, standard_inputs,
    wait_for_committed, wait_for_group_at_end, Isolation, Plugin, TestEnv,
};

use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

// Enough input that the copy (about 10 ms a transaction of 100) outlasts the freeze attempts.
const N: u64 = 30_000;
const PARTITIONS: i32 = 3;
const TRANSACTION_TIMEOUT_MS: i64 = 60_000;
/// Without fencing, the open transaction would hold the output's last stable offset and the group's
/// offsets until it timed out (`transaction.timeout.ms`, 60 s); half of that is a safe bound.
const RESTART_BOUND: Duration = Duration::from_secs(30);

#[test]
fn kill_9_in_open_transaction_then_restart_is_exactly_once() {
    let env = TestEnv::new("kill9");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let produced = produce(&input, &standard_inputs(N, PARTITIONS));

    // Small batches: many transactions, so the kill lands in the middle of the stream.
    let pipeline = env
        .pipeline(&[&input], &output)
        .batch(100, 100)
        .producer_property("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS)
        .transform("copy", Plugin::passthrough(), passthrough_config());

    let mut first = env.spawn(&pipeline, "0");
    wait_for_committed(&output, 300, PROCESS_TIMEOUT);
    let (lso, end) = pause_in_open_transaction(&mut first, &output, PROCESS_TIMEOUT);
    let status = first.kill9();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    // Last stable offsets count the committed outputs plus one commit marker per transaction: an
    // upper bound of the inputs committed before the kill.
    let done_before: u64 = lso.iter().sum::<i64>() as u64;
    assert!(
        done_before < N,
        "the first instance had finished before the kill: the test proves nothing"
    );
    // The dead instance's transaction stays open: read_committed readers are held at its start.
    assert_eq!(
        last_stable_offsets(&output),
        lso,
        "the killed instance's transaction must still be open"
    );
    assert_eq!(end_offsets(&output), end);

    let mut second = env.spawn(&pipeline, "0");
    let spawned = second.started();
    second.wait_for_log("transactions initialised", PROCESS_TIMEOUT);
    let initialised = spawned.elapsed();
    second.wait_for_log("] committed ", PROCESS_TIMEOUT);
    let first_commit = spawned.elapsed();
    eprintln!(
        "kill -9 with an open transaction (output last stable offsets {lso:?}, ends {end:?}); restart: transactions initialised after {initialised:.1?}, first commit after \
         {first_commit:.1?}"
    );
    assert!(
        first_commit < RESTART_BOUND,
        "the restarted instance took {first_commit:?} to commit (transactions initialised after \
         {initialised:?}): fencing should make it far shorter than transaction.timeout.ms = \
         {TRANSACTION_TIMEOUT_MS} ms"
    );

    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    second.terminate();
    second.expect_exit_code(0, EXIT_TIMEOUT);

    let committed = read_topic(&output, Isolation::ReadCommitted);
    assert_exactly_once_by_id(0..N, &committed, "read_committed output");
    let expected = by_partition(&produced, PARTITIONS);
    let actual = by_partition(&committed, PARTITIONS);
    for p in 0..PARTITIONS as usize {
        assert_same_content(
            &expected[p],
            &actual[p],
            &format!("read_committed output partition {p}"),
        );
    }

    // The killed instance's open transaction was aborted: its records are in the log, visible to
    // read_uncommitted readers only, exactly where the transaction was open.
    let aborted = crate::fencing::assert_open_transaction_aborted(&output, &committed, &lso, &end);
    eprintln!("kill -9: {aborted} aborted records visible to read_uncommitted only");
}
