//! Transient failures: the fault plugin fails twice (`times = 2`) and then lets the retried batch
//! through. Every input comes out exactly once, in order, and the instance stops cleanly.

use txform_tests::{
    assert_output, committed_offsets, committed_totals, end_offsets, produce, standard_inputs,
    table, wait_for_committed, Plugin, TestEnv,
};

use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

const N: u64 = 600;
const PARTITIONS: i32 = 3;

fn transient_failures(label: &str, action: &str) {
    let env = TestEnv::new(label);
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let produced = produce(&input, &standard_inputs(N, PARTITIONS));

    let fault = table(&[
        ("action", action.into()),
        (
            "offsets",
            toml::Value::Array(vec![table(&[
                ("partition", 1.into()),
                ("offset", 100.into()),
            ])
            .into()]),
        ),
        ("times", 2.into()),
    ]);
    let pipeline = env
        .pipeline(&[&input], &output)
        .batch(100, 100)
        .retries(5, 50, 200)
        .transform("flaky", Plugin::fault(), fault);
    let mut txform = env.spawn(&pipeline, "0");
    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);

    // No failed attempt produced anything: read_uncommitted readers see the same.
    assert_output(&produced, &output);
    let ends = end_offsets(&input);
    assert_eq!(
        committed_offsets(&pipeline.group_id, &input),
        ends.iter().map(|&e| Some(e)).collect::<Vec<_>>(),
        "the group's committed offsets must be the input's end offsets"
    );

    let retried = txform.log_lines("aborted batch at");
    assert_eq!(
        retried.len(),
        2,
        "two failed attempts, each retried: {retried:#?}"
    );
    for line in &retried {
        assert!(
            line.contains(&format!(
                "fault injected at topic/partition/offset {}/1/100",
                input.name
            )),
            "the retry warning must carry the fault: {line}"
        );
    }
    let totals = committed_totals(&txform.log());
    assert_eq!(
        (totals.records_in, totals.records_out),
        (N, N),
        "committed log lines"
    );
    assert!(
        txform.error_messages().is_empty(),
        "{:?}",
        txform.error_messages()
    );
}

#[test]
fn errors_twice_then_recovers_exactly_once() {
    transient_failures("transient-error", "error");
}

#[test]
fn panics_twice_then_recovers_exactly_once() {
    transient_failures("transient-panic", "panic");
}
