//! Output that was written and then aborted is invisible to read_committed readers and visible to
//! read_uncommitted ones.
//!
//! A batch fails at produce time, after part of its output is already in the log: one output record is
//! too large for the output topic (`max.message.bytes`), which Kafka refuses. With one record per
//! produce request (`batch.num.messages = 1`) the records before it are written first, in order, then
//! the whole transaction is aborted. The host retries and gives up (exit 1) like for any record failure.
//! (The kill and zombie tests show the same for transactions aborted by fencing.)

use std::time::Duration;

use txform_tests::{
    big_value, committed_offsets, committed_totals, ids_of, passthrough_config, read_topic,
    standard_inputs, wait_for_committed, InputProducer, InputSpec, Isolation, Plugin, TestEnv,
};

use crate::PROCESS_TIMEOUT;

const FIRST: u64 = 20;
const N: u64 = 60;
const BIG_ID: u64 = 40;
const MAX_RETRIES: i64 = 2;
const GIVE_UP_TIMEOUT: Duration = Duration::from_secs(45);

#[test]
fn aborted_output_is_visible_to_read_uncommitted_only() {
    let env = TestEnv::new("aborted");
    let input = env.create_topic("in", 1);
    let output = env.create_topic_with("out", 1, &[("max.message.bytes", "100000")]);
    let producer = InputProducer::new(&input);
    let mut produced = producer.produce(&standard_inputs(FIRST, 1));

    let pipeline = env
        .pipeline(&[&input], &output)
        .batch(1000, 1000)
        .retries(MAX_RETRIES, 50, 200)
        .producer_property("batch.num.messages", 1)
        .transform("copy", Plugin::passthrough(), passthrough_config());
    let mut txform = env.spawn(&pipeline, "0");
    wait_for_committed(&output, FIRST as usize, PROCESS_TIMEOUT);

    let rest: Vec<InputSpec> = (FIRST..N)
        .map(|id| {
            let spec = InputSpec::standard(id, 0);
            if id == BIG_ID {
                spec.with_value(big_value(id, 200_000))
            } else {
                spec
            }
        })
        .collect();
    produced.extend(producer.produce(&rest));
    assert_eq!(
        produced[BIG_ID as usize].value.as_ref().map(Vec::len),
        Some(200_000)
    );

    // Three attempts of a few hundred milliseconds each; the bound only guards against a hang.
    txform.expect_exit_code(1, GIVE_UP_TIMEOUT);
    let group =
        committed_offsets(&pipeline.group_id, &input)[0].expect("the first batch was committed");
    let errors = txform.error_messages();
    assert_eq!(
        errors.len(),
        1,
        "exactly one `txform:` error line, got {errors:?}"
    );
    let error = &errors[0];
    let attempts = MAX_RETRIES + 1;
    for expected in [
        format!("giving up after {attempts} failed attempts"),
        format!("{}/0 offsets {group}..={}", input.name, N - 1),
        "Message size too large".to_string(),
    ] {
        assert!(
            error.contains(&expected),
            "the error must contain {expected:?}: {error}"
        );
    }

    // Committed: exactly the first inputs, once. The rest came in one go while nothing was
    // pending, so they made one batch (it closes 1 s after its first record), which failed.
    assert_eq!(group, FIRST as i64, "group offset");
    let committed = read_topic(&output, Isolation::ReadCommitted);
    let committed_ids = ids_of(&committed);
    assert_eq!(
        committed_ids,
        (0..group as u64).collect::<Vec<_>>(),
        "read_committed output"
    );

    // Aborted: each attempt wrote the outputs before the too-large record, then aborted.
    let uncommitted = read_topic(&output, Isolation::ReadUncommitted);
    let uncommitted_ids = ids_of(&uncommitted);
    assert_eq!(
        &uncommitted_ids[..committed_ids.len()],
        &committed_ids[..],
        "read_uncommitted readers see the committed records first"
    );
    let aborted = &uncommitted_ids[committed_ids.len()..];
    let one_attempt: Vec<u64> = (FIRST..BIG_ID).collect();
    let expected: Vec<u64> = one_attempt
        .iter()
        .copied()
        .cycle()
        .take(one_attempt.len() * attempts as usize)
        .collect();
    assert_eq!(
        aborted, expected,
        "read_uncommitted readers see every attempt's outputs before the too-large record, aborted"
    );
    assert_eq!(
        committed_totals(&txform.log()).records_in,
        group as u64,
        "records in the `committed` log lines"
    );
}
