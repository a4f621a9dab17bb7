//! A partition's new records are not queued behind another partition's prefetched backlog.
//!
//! librdkafka keeps one queue for every partition a consumer owns. With its default prefetch
//! (100,000 messages) a partition's records, fetched again after a rewind or arriving on a quiet
//! partition, wait behind everything the other partitions prefetched while the transform was
//! slower than the fetcher; txform bounds the prefetch to two batches (`queued.min.messages` =
//! 2 × `batch.max_records`, at most 10,000), so they wait for a few batches at most. Counted in
//! committed records, never in time.

use toml::Value;
use txform_tests::dead_letter::offset_spans;
use txform_tests::{
    assert_output_without_aborts, table, wait_for_committed, InputProducer, InputSpec, Plugin,
    TestEnv,
};

use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

/// Records waiting on partition 0 when txform starts.
const BACKLOG: u64 = 5_000;
/// Records produced to partition 1 once partition 0's backlog is being copied.
const LATE: u64 = 10;
const MAX_RECORDS: i64 = 50;

#[test]
fn a_quiet_partitions_records_do_not_wait_behind_another_partitions_backlog() {
    let env = TestEnv::new("prefetch");
    let input = env.create_topic("in", 2);
    let output = env.create_topic("out", 2);
    // Small acknowledged chunks: a fetch returns whole record batches, so one record batch holding
    // the whole backlog would be one fetch response, whatever the prefetch bound.
    let producer = InputProducer::new(&input);
    let backlog: Vec<InputSpec> = (0..BACKLOG).map(|id| InputSpec::standard(id, 0)).collect();
    let mut produced: Vec<_> = backlog
        .chunks(MAX_RECORDS as usize)
        .flat_map(|chunk| producer.produce(chunk))
        .collect();

    // A transform slower than the fetcher (10 ms a call) and small fetches answered at once: the
    // fetcher runs ahead, and what a late record waits behind is then the prefetch, the thing
    // under test.
    let pipeline = env
        .pipeline(&[&input], &output)
        .transform(
            "slow-copy",
            Plugin::fault(),
            table(&[
                ("delay_ms", Value::Integer(10)),
                ("keep_partition", Value::Boolean(true)),
            ]),
        )
        .batch(MAX_RECORDS, 100)
        .consumer_property("max.partition.fetch.bytes", "4096")
        .consumer_property("fetch.min.bytes", "1");
    let mut txform = env.spawn(&pipeline, "0");
    txform.wait_for_log_count("] committed ", 3, PROCESS_TIMEOUT);
    let committed_before = txform.log_lines("] committed ").len();

    let late: Vec<InputSpec> = (BACKLOG..BACKLOG + LATE)
        .map(|id| InputSpec::standard(id, 1))
        .collect();
    produced.extend(producer.produce(&late));
    wait_for_committed(&output, (BACKLOG + LATE) as usize, PROCESS_TIMEOUT);
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);
    assert_output_without_aborts(&produced, &output);

    // Partition 0's records committed after the late records were produced, up to the first
    // commit that holds one of them.
    let lines = txform.log_lines("] committed ");
    let first_late = lines
        .iter()
        .position(|line| offset_spans(line, &input.name).contains_key(&1))
        .expect("a commit holding partition 1's records");
    assert!(
        first_late >= committed_before,
        "partition 1 was produced after commit {committed_before}, committed in {first_late}"
    );
    let overtaken: i64 = lines[committed_before..=first_late]
        .iter()
        .filter_map(|line| offset_spans(line, &input.name).get(&0).copied())
        .map(|(first, last)| last - first + 1)
        .sum();
    // Two batches of prefetch, a fetch response or two, and what was committed while the late
    // records were produced and fetched: a few hundred at most. With librdkafka's default
    // prefetch, the remaining backlog (thousands) went first.
    assert!(
        overtaken < (BACKLOG / 5) as i64,
        "{overtaken} records of partition 0 were committed between producing partition 1's records \
         and committing the first of them (commits {committed_before}..={first_late})"
    );
}
