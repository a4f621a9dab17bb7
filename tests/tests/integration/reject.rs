//! `out.reject` under each error policy: `dead-letter` (see `error_policies.rs`) and `skip` set the
//! rejected record aside at its first attempt and commit the others; `stop` fails the batch: nothing
//! of it is committed and txform exits 1 naming the record and the reason.

use txform_tests::dead_letter::{spawn_with_policy, ErrorPolicy, Totals};
use txform_tests::{
    assert_output, committed_offsets, produce, standard_inputs, table, wait_for_group_at_end,
    Plugin, Record, TestEnv, Txform,
};

use crate::error_policies::{
    all_but, assert_line_ends_with, assert_no_error_line, fault_message, final_totals,
};
use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

const N: u64 = 40;
/// Partition 0, offset 23: one partition, so the whole input is one batch.
const REJECTED: u64 = 23;

/// The topics and group of one [`run`].
struct TestTopics {
    input: txform_tests::Topic,
    output: txform_tests::Topic,
    group: String,
}

/// Runs the 40 standard inputs on one partition through the fault plugin rejecting input 23, under
/// `policy`; returns the instance (still running unless the policy stops it), the inputs as produced
/// and the rejection's reason.
fn run(env: &TestEnv, policy: &ErrorPolicy) -> (Txform, Vec<Record>, String, TestTopics) {
    let input = env.create_topic("in", 1);
    let output = env.create_topic("out", 1);
    let produced = produce(&input, &standard_inputs(N, 1));
    let fault = table(&[
        ("action", "reject".into()),
        ("key_equals", format!("k{REJECTED:06}").into()),
    ]);
    let pipeline = env
        .pipeline(&[&input], &output)
        .batch(1000, 500)
        .retries(2, 10, 50)
        .transform("vet", Plugin::fault(), fault);
    let txform = spawn_with_policy(env, &pipeline, policy, "0");
    let reason = format!(
        "rejected: {}",
        fault_message(
            &input,
            &produced[REJECTED as usize],
            "key equals \"k000023\""
        )
    );
    let group = pipeline.group_id.clone();
    (
        txform,
        produced,
        reason,
        TestTopics {
            input,
            output,
            group,
        },
    )
}

#[test]
fn skip_drops_a_rejected_record_at_its_first_attempt() {
    let env = TestEnv::new("reject-skip");
    let (mut txform, produced, reason, topics) = run(&env, &ErrorPolicy::skip());
    wait_for_group_at_end(&topics.group, &topics.input, PROCESS_TIMEOUT);
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);

    assert_output(&all_but(&produced, &[REJECTED]), &topics.output);
    assert_line_ends_with(
        &txform,
        "skipping ",
        &format!(
            "skipping {}/0@23 after 1 attempt(s): transform `vet` (txform-fault 0.1.0): {reason}",
            topics.input.name
        ),
    );
    assert!(txform.log_lines("aborted batch").is_empty(), "no retry");
    assert_eq!(
        final_totals(&txform),
        Totals {
            records_in: N,
            records_out: N - 1,
            transactions: 1,
            aborts: 0,
            retries: 0,
            dead_lettered: 0,
            skipped: 1,
        },
        "final totals"
    );
    assert_no_error_line(&txform);
}

/// Under `stop` a rejection fails its batch like a transform error: retried `max_retries` times (each
/// attempt aborted), then txform exits 1; nothing of the batch is committed, its offsets neither.
#[test]
fn stop_fails_the_batch_of_a_rejected_record_and_exits_1() {
    let env = TestEnv::new("reject-stop");
    let (mut txform, _produced, reason, topics) = run(&env, &ErrorPolicy::stop());
    txform.expect_exit_code(1, EXIT_TIMEOUT);

    assert_output(&[], &topics.output);
    assert_eq!(
        committed_offsets(&topics.group, &topics.input),
        [None],
        "no offset committed"
    );
    let input = &topics.input.name;
    assert_eq!(
        txform.error_messages(),
        [format!(
            "txform: giving up after 3 failed attempts at {input}/0 offsets 0..=39: transform `vet` \
             (txform-fault 0.1.0): {reason} (record {input}/0@23)"
        )],
        "one error line naming the batch, the record and the reason"
    );
    assert_eq!(txform.log_lines("aborted batch").len(), 2, "two retries");
    assert_eq!(
        final_totals(&txform),
        Totals {
            records_in: 0,
            records_out: 0,
            transactions: 0,
            aborts: 3,
            retries: 2,
            dead_lettered: 0,
            skipped: 0,
        },
        "final totals"
    );
}
