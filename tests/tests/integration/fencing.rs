//! Fencing follows Kafka's protocol: of two live processes with the same instance id, the newer one
//! keeps running and the older one stops (exit code 3) without committing again, whatever the
//! timing; a process that the broker expired on its own (frozen past its session and transaction
//! time-outs, with no successor) rejoins and says so. Every input is copied exactly once.

use std::collections::HashSet;
use std::time::Duration;

use txform_tests::{
    passthrough_config, pause_in_open_transaction, produce, read_topic, standard_inputs,
    wait_for_committed, wait_for_group_at_end, Isolation, PipelineConfig, Plugin, Record, TestEnv,
    Topic, Txform,
};

use crate::zombie::{assert_output_exact, assert_superseded};
use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

const PARTITIONS: i32 = 3;
const SESSION_TIMEOUT_MS: u64 = 6000;
const TRANSACTION_TIMEOUT_MS: u64 = 5000;

/// Lines of `txform`'s log that report a commit.
fn commits(txform: &Txform) -> usize {
    txform.log_lines("] committed ").len()
}

/// The records of `output` that read_committed readers do not see, which must be exactly those of
/// the transaction that was open (between `lso` and `end`) when its process was frozen or killed,
/// and not none. Returns how many there are.
pub fn assert_open_transaction_aborted(
    output: &Topic,
    committed: &[Record],
    lso: &[i64],
    end: &[i64],
) -> usize {
    let committed_positions: HashSet<(i32, i64)> =
        committed.iter().map(|r| (r.partition, r.offset)).collect();
    let uncommitted = read_topic(output, Isolation::ReadUncommitted);
    let aborted: Vec<&Record> = uncommitted
        .iter()
        .filter(|r| !committed_positions.contains(&(r.partition, r.offset)))
        .collect();
    let open_records: i64 = lso.iter().zip(end).map(|(l, e)| e - l).sum();
    for record in &aborted {
        let p = record.partition as usize;
        assert!(
            lso[p] <= record.offset && record.offset < end[p],
            "aborted record at {} outside the frozen open transaction {}..{}",
            record.position(),
            lso[p],
            end[p]
        );
    }
    assert!(
        open_records > 0,
        "no open transaction was caught: the test proves nothing"
    );
    assert_eq!(
        aborted.len() as i64,
        open_records,
        "the frozen process's open transaction must be aborted, whole, and nothing else"
    );
    assert_eq!(committed.len() + aborted.len(), uncommitted.len());
    aborted.len()
}

fn pipeline(env: &TestEnv, input: &Topic, output: &Topic) -> PipelineConfig {
    env.pipeline(&[input], output)
        .batch(100, 100)
        .consumer_property("session.timeout.ms", SESSION_TIMEOUT_MS as i64)
        .transform("copy", Plugin::passthrough(), passthrough_config())
}

/// A process frozen with an open transaction for longer than its session time-out is replaced by a
/// successor with the same instance id, then thawed: the successor keeps running, the zombie stops
/// with exit code 3 without a single commit after the thaw.
#[test]
fn thawed_zombie_yields_to_its_successor() {
    // Enough input that the copy (about 10 ms a transaction of 100) outlasts the freeze attempts.
    const N: u64 = 30_000;
    let env = TestEnv::new("thawed");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let produced = produce(&input, &standard_inputs(N, PARTITIONS));
    let pipeline = pipeline(&env, &input, &output);

    let mut zombie = env.spawn(&pipeline, "0");
    wait_for_committed(&output, 300, PROCESS_TIMEOUT);
    let (lso, end) = pause_in_open_transaction(&mut zombie, &output, PROCESS_TIMEOUT);
    let commits_before_freeze = commits(&zombie);
    // Frozen past the session time-out: the group has expired the zombie's membership.
    std::thread::sleep(Duration::from_millis(SESSION_TIMEOUT_MS + 3000));

    let mut successor = env.spawn(&pipeline, "0");
    successor.wait_for_log("] committed ", PROCESS_TIMEOUT);
    zombie.resume();
    assert_superseded(&mut zombie);
    assert_eq!(
        commits(&zombie),
        commits_before_freeze,
        "the zombie committed after it was replaced"
    );

    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    assert!(
        successor.try_exit().is_none(),
        "the successor must keep running; log tail:\n{}",
        successor.tail(40)
    );
    assert_eq!(
        successor.log_lines("rejoining").len(),
        0,
        "the successor was never fenced"
    );
    successor.terminate();
    successor.expect_exit_code(0, EXIT_TIMEOUT);
    let committed = assert_output_exact(&produced, &output);
    assert_open_transaction_aborted(&output, &committed, &lso, &end);
}

/// A second live instance with the same id, started while the first one is busy copying: the first
/// (older) one stops, every time, and the second one carries on; then a third one replaces the
/// second the same way. No ping-pong: each survivor is never fenced.
#[test]
fn of_two_live_instances_the_older_stops() {
    const N: u64 = 9000;
    let env = TestEnv::new("duplicate");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let produced = produce(&input, &standard_inputs(N, PARTITIONS));
    // Small batches and one transaction at a time keep each instance busy while the next starts.
    let pipeline = pipeline(&env, &input, &output).batch(20, 100);

    let mut older = env.spawn(&pipeline, "0");
    wait_for_committed(&output, 200, PROCESS_TIMEOUT);
    for round in 1..=2 {
        let mut newer = env.spawn(&pipeline, "0");
        assert_superseded(&mut older);
        newer.wait_for_log("] committed ", PROCESS_TIMEOUT);
        assert!(
            newer.try_exit().is_none(),
            "round {round}: the newer instance must keep running; log tail:\n{}",
            newer.tail(40)
        );
        older = newer;
    }
    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    assert_eq!(
        older.log_lines("rejoining").len(),
        0,
        "the survivor was never fenced"
    );
    older.terminate();
    older.expect_exit_code(0, EXIT_TIMEOUT);
    assert_output_exact(&produced, &output);
}

/// An instance cut off (frozen) for longer than `transaction.timeout.ms` and its session time-out,
/// with no successor: the broker aborts its transaction and fences its epoch, so its late data is
/// never committed; once back it rejoins, says why, and copies the rest exactly once.
#[test]
fn instance_cut_off_past_its_transaction_timeout_rejoins() {
    // Enough input that the copy (about 10 ms a transaction of 100) outlasts the freeze attempts.
    const N: u64 = 30_000;
    let env = TestEnv::new("cutoff");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let produced = produce(&input, &standard_inputs(N, PARTITIONS));
    let pipeline = pipeline(&env, &input, &output)
        .producer_property("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS as i64);

    let mut txform = env.spawn(&pipeline, "0");
    wait_for_committed(&output, 300, PROCESS_TIMEOUT);
    let (lso, end) = pause_in_open_transaction(&mut txform, &output, PROCESS_TIMEOUT);
    // The broker aborts timed-out transactions on a 10 s cycle
    // (transaction.abort.timed.out.transaction.cleanup.interval.ms): wait until it did.
    let deadline = std::time::Instant::now() + PROCESS_TIMEOUT;
    while txform_tests::last_stable_offsets(&output) == lso {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker never aborted the frozen transaction"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    txform.resume();
    let rejoined = txform.wait_for_log("rejoining with new Kafka clients", PROCESS_TIMEOUT);
    assert!(
        rejoined.contains("so the broker expired this instance's own transaction or session"),
        "{rejoined}"
    );
    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    assert!(
        txform.try_exit().is_none(),
        "the instance must keep running"
    );
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);
    let committed = assert_output_exact(&produced, &output);
    assert_open_transaction_aborted(&output, &committed, &lso, &end);
}

/// A zombie frozen between transactions (idle) past its session time-out: once thawed, its client
/// rejoins the group by itself and may take the successor's static slot, but it cannot take the
/// successor's producer epoch, and the successor's stamped offsets show that a newer process has
/// been committing. The zombie stops without a commit; the successor keeps running.
#[test]
fn idle_zombie_thawed_after_its_successor_committed_yields() {
    const N: u64 = 300;
    let env = TestEnv::new("thawed-idle");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let all = standard_inputs(3 * N, PARTITIONS);
    let mut produced = produce(&input, &all[..N as usize]);
    let pipeline = pipeline(&env, &input, &output);

    let mut zombie = env.spawn(&pipeline, "0");
    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    zombie.pause();
    let commits_before_freeze = commits(&zombie);
    std::thread::sleep(Duration::from_millis(SESSION_TIMEOUT_MS + 3000));

    let mut successor = env.spawn(&pipeline, "0");
    successor.wait_for_log("txform running as", PROCESS_TIMEOUT);
    produced.extend(produce(&input, &all[N as usize..2 * N as usize]));
    wait_for_committed(&output, 2 * N as usize, PROCESS_TIMEOUT);

    zombie.resume();
    produced.extend(produce(&input, &all[2 * N as usize..]));
    assert_superseded(&mut zombie);
    assert_eq!(
        commits(&zombie),
        commits_before_freeze,
        "the zombie committed after it was replaced"
    );
    wait_for_committed(&output, 3 * N as usize, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    assert!(
        successor.try_exit().is_none(),
        "the successor must keep running; log tail:\n{}",
        successor.tail(40)
    );
    successor.terminate();
    successor.expect_exit_code(0, EXIT_TIMEOUT);
    assert_output_exact(&produced, &output);
}
