//! A plugin attributing an output to an input index the batch does not have: the host fails that
//! call (it never indexes the batch with it), so the error policy finds the record whose output was
//! misattributed, by bisection, and the host goes on.

use txform_tests::dead_letter::{spawn_with_policy, ErrorPolicy, Totals};
use txform_tests::{assert_output, produce, standard_inputs, table, Plugin, TestEnv};

use crate::error_policies::{
    all_but, assert_dead_letter, assert_no_error_line, dead_letters, final_totals, FAULT_PLUGIN,
};
use crate::stop_when_consumed;

const N: u64 = 20;
const BAD: u64 = 7;

#[test]
fn output_for_an_input_past_the_batch_fails_that_record_not_the_host() {
    let env = TestEnv::new("out-of-range");
    let input = env.create_topic("in", 1);
    let output = env.create_topic("out", 1);
    let dlq = env.create_topic("dlq", 1);
    let produced = produce(&input, &standard_inputs(N, 1));
    let fault = table(&[
        ("action", "out_of_range".into()),
        ("key_equals", format!("k{BAD:06}").into()),
    ]);
    let pipeline = env
        .pipeline(&[&input], &output)
        .batch(1000, 500)
        .retries(1, 10, 10)
        .transform("buggy", Plugin::fault(), fault);
    let mut txform = spawn_with_policy(&env, &pipeline, &ErrorPolicy::dead_letter(&dlq), "0");
    stop_when_consumed(&mut txform, &pipeline, &input);

    assert_output(&all_but(&produced, &[BAD]), &output);
    let letters = dead_letters(&dlq);
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_dead_letter(
        &letters[0],
        &produced[BAD as usize],
        &input,
        "buggy",
        FAULT_PLUGIN,
    );
    // The isolated call fails alone: the index past its batch of one is 1.
    assert_eq!(
        letters[0].error, "attributed an output or rejection to input 1 of a batch of 1",
        "txform.error"
    );
    // Fixed for one batch of 20 (all produced before the start): 2 attempts of the batch, then
    // bisection down to record 7 (each failing part one abort, each passing one a commit), record 7
    // alone until its retries are spent, its dead letter committed with its offset.
    assert_eq!(
        final_totals(&txform),
        Totals {
            records_in: N,
            records_out: N - 1,
            transactions: 5,
            aborts: 7,
            retries: 1,
            dead_lettered: 1,
            skipped: 0,
        },
        "final totals"
    );
    assert_no_error_line(&txform);
}
