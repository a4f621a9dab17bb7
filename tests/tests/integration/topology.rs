//! Pipeline shapes beyond one source and one sink of equal size: several source topics, and a source
//! with more partitions than the sink while the transform keeps partition numbers.

use std::collections::BTreeSet;

use txform_tests::dead_letter::{spawn_with_policy, ErrorPolicy};
use txform_tests::{
    assert_same_content, passthrough_config, produce, read_topic, wait_for_committed,
    wait_for_group_at_end, InputSpec, Isolation, Plugin, Record, TestEnv,
};

use crate::error_policies::{
    assert_dead_letter, assert_no_error_line, dead_letters, final_totals, SINK,
};
use crate::{stop_when_consumed, EXIT_TIMEOUT, PROCESS_TIMEOUT};

/// Standard inputs `ids`, round robin over `partitions` partitions.
fn inputs(ids: std::ops::Range<u64>, partitions: i32) -> Vec<InputSpec> {
    ids.map(|id| InputSpec::standard(id, (id % partitions as u64) as i32))
        .collect()
}

/// Asserts that output partition `p` holds the records of `produced` partition `p`, for each of
/// `partitions`, in their order (records from elsewhere may be interleaved; matched by test id).
fn assert_copied_in_order(
    produced: &[Record],
    partitions: std::ops::Range<i32>,
    output: &[Record],
    what: &str,
) {
    for p in partitions {
        let expected: Vec<Record> = produced
            .iter()
            .filter(|r| r.partition == p)
            .cloned()
            .collect();
        let ids: BTreeSet<u64> = expected.iter().filter_map(Record::test_id).collect();
        let actual: Vec<Record> = output
            .iter()
            .filter(|r| r.partition == p && r.test_id().is_some_and(|id| ids.contains(&id)))
            .cloned()
            .collect();
        assert_same_content(
            &expected,
            &actual,
            &format!("{what}/{p} in output partition {p}"),
        );
    }
}

/// Two source topics of different sizes into one sink: every input exactly once, in its source
/// partition's order, in the partition of the same number; both topics' offsets committed to the end.
#[test]
fn several_source_topics_are_copied_exactly_once_in_order() {
    let env = TestEnv::new("two-sources");
    let first = env.create_topic("in-a", 3);
    let second = env.create_topic("in-b", 2);
    let output = env.create_topic("out", 3);
    let produced_a = produce(&first, &inputs(0..300, 3));
    let produced_b = produce(&second, &inputs(300..500, 2));

    let pipeline = env.pipeline(&[&first, &second], &output).transform(
        "copy",
        Plugin::passthrough(),
        passthrough_config(),
    );
    let mut txform = env.spawn(&pipeline, "0");
    wait_for_committed(&output, 500, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &first, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &second, PROCESS_TIMEOUT);
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);

    let committed = read_topic(&output, Isolation::ReadCommitted);
    assert_eq!(committed.len(), 500, "500 outputs for 500 inputs");
    for (source, produced) in [(&first, &produced_a), (&second, &produced_b)] {
        assert_copied_in_order(produced, 0..source.partitions, &committed, &source.name);
    }
}

/// `keep_partition` with a source of 3 partitions and a sink of 2: partition 2 does not exist in the
/// sink. Every record of source partition 2 is that record's failure (dead-lettered, the reason naming
/// the partition and the sink's partition count); the others are copied exactly once, in order.
#[test]
fn keep_partition_into_a_smaller_sink_dead_letters_the_records_without_a_partition() {
    let env = TestEnv::new("smaller-sink");
    let input = env.create_topic("in", 3);
    let output = env.create_topic("out", 2);
    let dlq = env.create_topic("dlq", 1);
    let produced = produce(&input, &inputs(0..30, 3));

    let pipeline = env
        .pipeline(&[&input], &output)
        .transform("copy", Plugin::passthrough(), passthrough_config())
        .retries(1, 10, 10);
    let mut txform = spawn_with_policy(&env, &pipeline, &ErrorPolicy::dead_letter(&dlq), "0");
    stop_when_consumed(&mut txform, &pipeline, &input);

    let committed = read_topic(&output, Isolation::ReadCommitted);
    assert_copied_in_order(&produced, 0..2, &committed, &input.name);
    let letters = dead_letters(&dlq);
    let lost: Vec<&Record> = produced.iter().filter(|r| r.partition == 2).collect();
    assert_eq!(
        letters.len(),
        lost.len(),
        "one dead letter per record of source partition 2"
    );
    for (letter, source) in letters.iter().zip(&lost) {
        assert_dead_letter(letter, source, &input, "sink", SINK);
        assert_eq!(
            letter.error,
            format!(
                "output partition 2 of {} does not exist: the topic has 2 partitions",
                output.name
            ),
            "txform.error names the partition and the sink's partition count"
        );
    }
    let totals = final_totals(&txform);
    assert_eq!(
        (
            totals.records_in,
            totals.records_out,
            totals.dead_lettered,
            totals.skipped
        ),
        (30, 20, 10, 0),
        "final totals: in, out, dead-lettered, skipped"
    );
    assert_no_error_line(&txform);
}
