//! `transaction.guarantee = "at-least-once"`: no transactions; each batch is produced, flushed,
//! then its offsets are committed. What that guarantees, against the real broker:
//!
//! - every input comes out at least once, in order per partition;
//! - a `kill -9` after a batch's outputs are written and before its offsets are committed
//!   duplicates exactly the outputs written since the last commit, and loses nothing;
//! - a failed attempt's outputs stay in the log (nothing aborts them), so a retried batch, and
//!   under `dead-letter` every bisection step that fails after producing, writes them again.

use txform_tests::dead_letter::{spawn_with_policy, DeadLetter, ErrorPolicy};
use txform_tests::{
    assert_same_content, by_partition, committed_offsets, end_offsets, ids_of, passthrough_config,
    pause_when, produce, read_topic, standard_inputs, standard_inputs_with_big, wait_for_committed,
    wait_for_group_at_end, Guarantee, Isolation, Plugin, Record, TestEnv,
};

use crate::{stop_when_consumed, EXIT_TIMEOUT, PROCESS_TIMEOUT};

const PARTITIONS: i32 = 3;

/// The committed offset of each partition, 0 where the group has none yet.
fn committed_or_zero(group: &str, input: &txform_tests::Topic) -> Vec<i64> {
    committed_offsets(group, input)
        .into_iter()
        .map(|o| o.unwrap_or(0))
        .collect()
}

#[test]
fn kill_9_between_produce_and_offset_commit_duplicates_exactly_that_batch() {
    // Enough input that the copy outlasts the freeze attempts.
    const N: u64 = 30_000;
    let env = TestEnv::new("alo-kill9");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let produced = produce(&input, &standard_inputs(N, PARTITIONS));
    let pipeline = env
        .pipeline(&[&input], &output)
        .guarantee(Guarantee::AtLeastOnce)
        .batch(100, 100)
        .transform("copy", Plugin::passthrough(), passthrough_config());

    let mut first = env.spawn(&pipeline, "0");
    wait_for_committed(&output, 300, PROCESS_TIMEOUT);
    // Frozen with outputs in the log beyond what the group's offsets cover: written, not committed.
    let group = pipeline.group_id.clone();
    let (written, committed) = pause_when(
        &mut first,
        PROCESS_TIMEOUT,
        "outputs written beyond the committed offsets",
        || {
            let (end, done) = (end_offsets(&output), committed_or_zero(&group, &input));
            end.iter()
                .zip(&done)
                .any(|(e, c)| e > c)
                .then_some((end, done))
        },
    );
    first.kill9();
    assert_eq!(
        (end_offsets(&output), committed_or_zero(&group, &input)),
        (written.clone(), committed.clone()),
        "nothing changed after the kill"
    );
    let duplicated: i64 = written.iter().zip(&committed).map(|(e, c)| e - c).sum();
    assert!(
        committed.iter().sum::<i64>() < N as i64,
        "the first instance had finished before the kill: the test proves nothing"
    );

    let mut second = env.spawn(&pipeline, "0");
    wait_for_committed(&output, N as usize + duplicated as usize, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    second.terminate();
    second.expect_exit_code(0, EXIT_TIMEOUT);

    // Per partition: what the killed instance wrote (inputs 0..written), then everything from the
    // committed offset again, to the end. Nothing else, nothing lost.
    let inputs = by_partition(&produced, PARTITIONS);
    let actual = by_partition(&read_topic(&output, Isolation::ReadUncommitted), PARTITIONS);
    for p in 0..PARTITIONS as usize {
        let mut expected: Vec<Record> = inputs[p][..written[p] as usize].to_vec();
        expected.extend_from_slice(&inputs[p][committed[p] as usize..]);
        assert_same_content(&expected, &actual[p], &format!("output partition {p}"));
    }
    eprintln!("kill -9 after producing, before committing: {duplicated} outputs duplicated");
}

/// A record Kafka refuses fails its batch after the outputs before it were written; without a
/// transaction they stay, so each retry and each failing bisection step writes them again. Every
/// other input still comes out at least once, in order of first appearance per partition, and the
/// refused one is dead-lettered.
#[test]
fn retried_and_bisected_batches_are_written_again() {
    const N: u64 = 300;
    // Partition 1, offset 33.
    const BIG: u64 = 100;
    let env = TestEnv::new("alo-refused");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic_with("out", PARTITIONS, &[("max.message.bytes", "100000")]);
    let dlq = env.create_topic("dlq", 1);
    let inputs = standard_inputs_with_big(N, PARTITIONS, BIG, 200_000);
    let produced = produce(&input, &inputs);
    let pipeline = env
        .pipeline(&[&input], &output)
        .guarantee(Guarantee::AtLeastOnce)
        .batch(1000, 100)
        .retries(2, 10, 50)
        // One record per request: the outputs before the big one are written before it is refused.
        .producer_property("batch.num.messages", 1)
        .transform("copy", Plugin::passthrough(), passthrough_config());
    let mut txform = spawn_with_policy(&env, &pipeline, &ErrorPolicy::dead_letter(&dlq), "0");
    wait_for_committed(&dlq, 1, PROCESS_TIMEOUT);
    stop_when_consumed(&mut txform, &pipeline, &input);

    let letters: Vec<DeadLetter> = read_topic(&dlq, Isolation::ReadUncommitted)
        .iter()
        .map(DeadLetter::parse)
        .collect();
    assert_eq!(
        letters.iter().map(DeadLetter::source).collect::<Vec<_>>(),
        [(1, 33)],
        "the refused record, dead-lettered once"
    );
    let output_records = read_topic(&output, Isolation::ReadUncommitted);
    let expected = by_partition(&produced, PARTITIONS);
    let actual = by_partition(&output_records, PARTITIONS);
    let mut duplicates = 0;
    for p in 0..PARTITIONS as usize {
        // First appearances, in order, are exactly the partition's inputs (the big one excepted).
        let mut seen = std::collections::HashSet::new();
        let first: Vec<Record> = actual[p]
            .iter()
            .filter(|r| seen.insert(r.test_id()))
            .cloned()
            .collect();
        duplicates += actual[p].len() - first.len();
        let wanted: Vec<Record> = expected[p]
            .iter()
            .filter(|r| r.test_id() != Some(BIG))
            .cloned()
            .collect();
        assert_same_content(
            &wanted,
            &first,
            &format!("first appearances in partition {p}"),
        );
    }
    assert!(
        ids_of(&output_records).iter().all(|&id| id != BIG),
        "the refused record never reached the output"
    );
    assert!(
        duplicates > 0,
        "the failed attempts' outputs before the refused record must be in the output again"
    );
    eprintln!("at-least-once with a refused record: {duplicates} duplicated outputs");
}
