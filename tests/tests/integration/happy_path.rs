//! The happy path: every input is copied exactly once, to the same partition, in the same order, with
//! the same key, value and header; the group's committed offsets reach the end of the input; SIGTERM
//! stops the instance cleanly.

use txform_tests::{
    assert_output_without_aborts, big_value, by_partition, committed_offsets, committed_totals,
    end_offsets, passthrough_config, produce, standard_inputs, wait_for_committed, Plugin, TestEnv,
};

use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

const N: u64 = 5000;
const PARTITIONS: i32 = 3;

#[test]
fn copies_every_record_exactly_once_in_order() {
    let env = TestEnv::new("happy");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let produced = produce(&input, &standard_inputs(N, PARTITIONS));

    let pipeline = env.pipeline(&[&input], &output).transform(
        "copy",
        Plugin::passthrough(),
        passthrough_config(),
    );
    let mut txform = env.spawn(&pipeline, "0");
    txform.wait_for_log("transactions initialised", PROCESS_TIMEOUT);
    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);

    // All outputs are committed, so are the offsets (same transactions): SIGTERM finds nothing in flight.
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);

    // No failed attempt produced anything: read_uncommitted readers see the same.
    assert_output_without_aborts(&produced, &output);

    let ends = end_offsets(&input);
    let per_partition: Vec<i64> = by_partition(&produced, PARTITIONS)
        .iter()
        .map(|p| p.len() as i64)
        .collect();
    assert_eq!(ends, per_partition, "input end offsets");
    let group_offsets = committed_offsets(&pipeline.group_id, &input);
    assert_eq!(
        group_offsets,
        ends.iter().map(|&e| Some(e)).collect::<Vec<_>>(),
        "the group's committed offsets must be the input's end offsets"
    );

    let log = txform.log();
    let totals = committed_totals(&log);
    assert_eq!(totals.records_in, N, "sum of `committed N in` log lines");
    assert_eq!(
        totals.records_out, N,
        "sum of `M out` in the committed log lines"
    );
    assert!(
        !log.contains("aborted batch"),
        "no batch may be aborted on the happy path"
    );
    let stopping = txform.log_lines("stopping:");
    assert_eq!(
        stopping.len(),
        1,
        "one `stopping:` summary line: {stopping:?}"
    );
    let expected_stats = [
        format!("records in={N} out={N} "),
        format!("transactions={} aborts=0 retries=0", totals.transactions),
    ];
    for expected in &expected_stats {
        assert!(
            stopping[0].contains(expected),
            "final stats must contain {expected:?}: {}",
            stopping[0]
        );
    }
    assert!(
        txform.error_messages().is_empty(),
        "no error on a clean stop: {:?}",
        txform.error_messages()
    );
}

/// Values of 600 KiB, more than a fetch asks for per partition (set to 256 KiB here, as a pipeline
/// short of memory may) and far above the size librdkafka copies into a produce request (256 B),
/// among small ones: each large record is still fetched whole and every record is copied exactly
/// once, in order.
#[test]
fn records_larger_than_a_fetch_per_partition_are_copied_exactly() {
    const N: u64 = 40;
    const LARGE: usize = 600 * 1024;
    let env = TestEnv::new("large");
    let input = env.create_topic("in", 2);
    let output = env.create_topic("out", 2);
    let mut inputs = standard_inputs(N, 2);
    for (id, spec) in inputs.iter_mut().enumerate().step_by(4) {
        spec.value = Some(big_value(id as u64, LARGE));
    }
    let produced = produce(&input, &inputs);
    let pipeline = env
        .pipeline(&[&input], &output)
        .transform("copy", Plugin::passthrough(), passthrough_config())
        .consumer_property("max.partition.fetch.bytes", 256 * 1024);
    let mut txform = env.spawn(&pipeline, "0");
    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);
    assert_output_without_aborts(&produced, &output);
    let large = produced
        .iter()
        .filter(|r| r.value.as_ref().is_some_and(|v| v.len() == LARGE));
    assert_eq!(large.count(), 10);
    let totals = committed_totals(&txform.log());
    assert_eq!((totals.records_in, totals.records_out), (N, N));
}
