//! The host survives hostile records and misbehaving plugins, and applies its error policy to them
//! like to any other record:
//!
//! - a source record whose header names are not UTF-8 is copied with its header bytes intact, or
//!   dead-lettered with them;
//! - an output topic name Kafka would refuse (a NUL byte, an illegal character, too long) chosen by a
//!   plugin is that record's failure: retried, then dead-lettered with the reason;
//! - a plugin instance whose `Drop` panics neither kills the host when it is replaced after a panic
//!   nor turns a clean stop into an abort;
//! - a source record rejected more than once in one attempt gets one dead-letter record.
//!
//! Inputs are the standard ones: on a fresh topic with `P` partitions, id `i` is at partition
//! `i % P`, offset `i / P`.

use toml::{Table, Value};
use txform_tests::dead_letter::{spawn_with_policy, ErrorPolicy};
use txform_tests::{
    assert_output, produce, standard_inputs, table, wait_for_committed, wait_for_group_at_end,
    InputSpec, PipelineConfig, Plugin, Record, TestEnv, Topic, Txform,
};

use crate::error_policies::{
    all_but, assert_dead_letter, assert_no_error_line, dead_letters, fault_message, final_totals,
    ATTEMPTS, FAULT_PLUGIN, INITIAL_BACKOFF_MS, MAX_BACKOFF_MS, MAX_RETRIES, SINK,
};
use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

const N: u64 = 60;
const PARTITIONS: i32 = 2;

/// Header names that are not UTF-8; the last two have the same lossy UTF-8 form (`x\u{FFFD}y`).
const BAD_KEYS: [&[u8]; 3] = [b"bad\xff\xfe-key", b"x\xffy", b"x\xfey"];

/// The standard inputs, those with ids in `odd` also carrying headers with non-UTF-8 names
/// (between the test id and a plain header, to check the order).
fn inputs_with_bad_header_names(odd: &[u64]) -> Vec<InputSpec> {
    standard_inputs(N, PARTITIONS)
        .into_iter()
        .enumerate()
        .map(|(id, spec)| {
            if !odd.contains(&(id as u64)) {
                return spec;
            }
            spec.with_header(BAD_KEYS[0], Some(b"v0"))
                .with_header(BAD_KEYS[1], Some(b"v1"))
                .with_header(BAD_KEYS[2], None)
                .with_header("after", Some(b"ok"))
        })
        .collect()
}

/// Runs `pipeline` (with `policy`, else the default `stop`) until each topic of `expected` has its
/// count of committed records and the group committed all of `input`, then stops it: exit code 0.
fn run_until_done(
    env: &TestEnv,
    pipeline: &PipelineConfig,
    policy: Option<&ErrorPolicy>,
    input: &Topic,
    expected: &[(&Topic, usize)],
) -> Txform {
    let mut txform = match policy {
        Some(policy) => spawn_with_policy(env, pipeline, policy, "0"),
        None => env.spawn(pipeline, "0"),
    };
    for (topic, n) in expected {
        wait_for_committed(topic, *n, PROCESS_TIMEOUT);
    }
    wait_for_group_at_end(&pipeline.group_id, input, PROCESS_TIMEOUT);
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);
    txform
}

fn retrying(env: &TestEnv, input: &Topic, output: &Topic) -> PipelineConfig {
    env.pipeline(&[input], output).batch(1000, 100).retries(
        MAX_RETRIES,
        INITIAL_BACKOFF_MS,
        MAX_BACKOFF_MS,
    )
}

#[test]
fn non_utf8_header_names_are_copied_byte_for_byte() {
    // Partition 1, offset 10 and partition 0, offset 20.
    const ODD: [u64; 2] = [21, 40];
    let env = TestEnv::new("bad-header-copy");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let produced = produce(&input, &inputs_with_bad_header_names(&ODD));
    assert_eq!(produced[21].headers.len(), 5);

    let pipeline = retrying(&env, &input, &output).transform(
        "copy",
        Plugin::passthrough(),
        txform_tests::passthrough_config(),
    );
    let txform = run_until_done(&env, &pipeline, None, &input, &[(&output, N as usize)]);

    // Every record, the odd ones with their header names' original bytes, in order.
    assert_output(&produced, &output);
    let totals = final_totals(&txform);
    assert_eq!(
        (totals.records_in, totals.records_out, totals.aborts),
        (N, N, 0),
        "final totals (in, out, aborts): {totals:?}"
    );
    assert_no_error_line(&txform);
}

#[test]
fn record_with_non_utf8_header_names_is_dead_lettered_byte_for_byte() {
    // Partition 1, offset 10 fails; partition 0, offset 20 passes through the fault plugin.
    const POISON: u64 = 21;
    const PASSING: u64 = 40;
    let env = TestEnv::new("bad-header-dlq");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let dlq = env.create_topic("dlq", 1);
    let produced = produce(&input, &inputs_with_bad_header_names(&[POISON, PASSING]));
    let poison = produced[POISON as usize].clone();
    assert_eq!((poison.partition, poison.offset), (1, 10));

    let fault = table(&[("action", "error".into()), ("key_equals", "k000021".into())]);
    let pipeline = retrying(&env, &input, &output).transform("guard", Plugin::fault(), fault);
    let txform = run_until_done(
        &env,
        &pipeline,
        Some(&ErrorPolicy::dead_letter(&dlq)),
        &input,
        &[(&output, N as usize - 1), (&dlq, 1)],
    );

    assert_output(&all_but(&produced, &[POISON]), &output);
    let letters = dead_letters(&dlq);
    assert_eq!(letters.len(), 1, "one dead-letter record: {letters:#?}");
    // Key, value and every header of the source, names as their original bytes.
    assert_dead_letter(&letters[0], &poison, &input, "guard", FAULT_PLUGIN);
    assert_eq!(
        letters[0].error,
        fault_message(&input, &poison, "key equals \"k000021\""),
        "txform.error"
    );
    assert!(letters[0].attempts > ATTEMPTS, "{letters:#?}");
    assert_eq!(final_totals(&txform).dead_lettered, 1);
    assert_no_error_line(&txform);
}

/// `routes` of the fault plugin: each `(partition, offset)` record goes to the topic named.
fn routes(routes: &[((i32, i64), &str)]) -> Value {
    Value::Array(
        routes
            .iter()
            .map(|&((partition, offset), topic)| {
                Value::Table(table(&[
                    ("partition", partition.into()),
                    ("offset", offset.into()),
                    ("topic", topic.into()),
                ]))
            })
            .collect(),
    )
}

/// The txform.error of a record whose output topic `topic` is not a valid name because of `problem`.
/// (The rule's texts themselves are pinned by the host's unit tests of `topic_name_problem`.)
fn bad_topic_error(topic: &str) -> String {
    let problem = txform::config::topic_name_problem(topic).unwrap_or_default();
    assert!(!problem.is_empty(), "{topic:?} is a valid name");
    format!("output topic {topic:?} {problem}")
}

#[test]
fn output_topics_kafka_would_refuse_are_dead_lettered_with_the_reason() {
    // Ids 10, 21, 31 and 40: partition 0 offset 5, partition 1 offsets 10 and 15, partition 0
    // offset 20.
    const BAD: [u64; 4] = [10, 21, 31, 40];
    let long = "t".repeat(300);
    let env = TestEnv::new("bad-topics");
    // A valid name the cluster does not have (topics are never auto-created).
    let nowhere = env.name("nowhere");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let dlq = env.create_topic("dlq", 1);
    let produced = produce(&input, &standard_inputs(N, PARTITIONS));

    let fault: Table = table(&[
        (
            "routes",
            routes(&[
                ((0, 5), "bad\0topic"),
                ((1, 10), "bad out!"),
                ((0, 20), long.as_str()),
                ((1, 15), nowhere.as_str()),
            ]),
        ),
        ("keep_partition", true.into()),
    ]);
    let pipeline = retrying(&env, &input, &output).transform("route", Plugin::fault(), fault);
    let txform = run_until_done(
        &env,
        &pipeline,
        Some(&ErrorPolicy::dead_letter(&dlq)),
        &input,
        &[(&output, N as usize - BAD.len()), (&dlq, BAD.len())],
    );

    assert_output(&all_but(&produced, &BAD), &output);
    let mut letters = dead_letters(&dlq);
    assert_eq!(
        letters.len(),
        4,
        "one dead-letter record each: {letters:#?}"
    );
    letters.sort_by_key(|l| l.source());
    let expected: [(&Record, String); 4] = [
        (&produced[10], bad_topic_error("bad\0topic")),
        (&produced[40], bad_topic_error(&long)),
        (&produced[21], bad_topic_error("bad out!")),
        (
            &produced[31],
            format!(
                "output topic {nowhere:?} does not exist on the cluster (auto-creation is not used: \
                 create it first)"
            ),
        ),
    ];
    for (letter, (source, error)) in letters.iter().zip(&expected) {
        assert_dead_letter(letter, source, &input, "sink", SINK);
        assert_eq!(
            &letter.error,
            error,
            "txform.error of {}",
            source.position()
        );
        assert!(letter.attempts >= ATTEMPTS, "{letter:#?}");
    }
    let totals = final_totals(&txform);
    assert_eq!(
        (totals.records_in, totals.records_out, totals.dead_lettered),
        (N, N - 4, 4),
        "final totals (in, out, dead_lettered): {totals:?}"
    );
    assert_no_error_line(&txform);
}

/// The line the plugin-api prints when a transform instance panics while being dropped.
const DROP_PANIC: &str = "a transform instance panicked while being dropped";

#[test]
fn instance_whose_drop_panics_is_replaced_after_a_panic_and_the_host_survives() {
    let env = TestEnv::new("panic-in-drop");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let produced = produce(&input, &standard_inputs(N, PARTITIONS));

    // Panics once on partition 1, offset 7; every instance panics when dropped.
    let fault = table(&[
        ("action", "panic".into()),
        (
            "offsets",
            Value::Array(vec![Value::Table(table(&[
                ("partition", 1.into()),
                ("offset", 7.into()),
            ]))]),
        ),
        ("times", 1.into()),
        ("panic_in_drop", true.into()),
    ]);
    let pipeline = retrying(&env, &input, &output).transform("crash", Plugin::fault(), fault);
    let txform = run_until_done(&env, &pipeline, None, &input, &[(&output, N as usize)]);

    assert_output(&produced, &output);
    assert_eq!(
        txform
            .log_lines("transform `crash` panicked; re-created its instance")
            .len(),
        1,
        "the panicked stage was re-created once"
    );
    // The panicked instance is never dropped; the re-created one is, at the clean stop.
    let drops = txform.log_lines(DROP_PANIC);
    assert_eq!(drops.len(), 1, "one instance dropped: {drops:#?}");
    assert!(
        drops[0].contains("fault injected: panic_in_drop"),
        "{drops:#?}"
    );
    let totals = final_totals(&txform);
    assert_eq!(
        (
            totals.records_in,
            totals.records_out,
            totals.aborts,
            totals.retries
        ),
        (N, N, 1, 1),
        "final totals (in, out, aborts, retries): {totals:?}"
    );
    assert_no_error_line(&txform);
}

#[test]
fn drop_that_panics_at_a_clean_stop_still_exits_0() {
    let env = TestEnv::new("panic-in-drop-stop");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let produced = produce(&input, &standard_inputs(N, PARTITIONS));

    let fault = table(&[
        ("panic_in_drop", true.into()),
        ("keep_partition", true.into()),
    ]);
    let pipeline = retrying(&env, &input, &output).transform("fragile", Plugin::fault(), fault);
    let txform = run_until_done(&env, &pipeline, None, &input, &[(&output, N as usize)]);

    assert_output(&produced, &output);
    assert_eq!(txform.log_lines(DROP_PANIC).len(), 1, "{}", txform.tail(20));
    assert_eq!(final_totals(&txform).records_out, N);
    assert_no_error_line(&txform);
}

#[test]
fn record_rejected_twice_in_one_attempt_is_dead_lettered_once() {
    // Partition 1, offset 5.
    const REJECTED: u64 = 11;
    let env = TestEnv::new("reject-twice");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let dlq = env.create_topic("dlq", 1);
    let produced = produce(&input, &standard_inputs(N, PARTITIONS));
    let rejected = produced[REJECTED as usize].clone();
    assert_eq!((rejected.partition, rejected.offset), (1, 5));

    // "double" emits every record twice; "vet" rejects both copies of the rejected record.
    let double = table(&[("copies", 2.into()), ("keep_partition", true.into())]);
    let vet = table(&[
        ("action", "reject".into()),
        ("key_equals", "k000011".into()),
    ]);
    let pipeline = retrying(&env, &input, &output)
        .transform("double", Plugin::fault(), double)
        .transform("vet", Plugin::fault(), vet);
    let expected: Vec<Record> = all_but(&produced, &[REJECTED])
        .into_iter()
        .flat_map(|r| [r.clone(), r])
        .collect();
    let txform = run_until_done(
        &env,
        &pipeline,
        Some(&ErrorPolicy::dead_letter(&dlq)),
        &input,
        &[(&output, expected.len()), (&dlq, 1)],
    );

    assert_output(&expected, &output);
    let letters = dead_letters(&dlq);
    assert_eq!(letters.len(), 1, "one dead-letter record: {letters:#?}");
    assert_dead_letter(&letters[0], &rejected, &input, "vet", FAULT_PLUGIN);
    let reason = fault_message(&input, &rejected, "key equals \"k000011\"");
    assert_eq!(
        letters[0].error,
        format!("rejected: {reason}"),
        "txform.error"
    );
    assert_eq!(letters[0].attempts, 1, "set aside at its first attempt");
    let also = txform.log_lines("was also rejected");
    assert_eq!(also.len(), 1, "{also:#?}");
    assert!(
        also[0].ends_with(&format!(
            "{}/1@5 was also rejected 1 more time: transform `vet` (txform-fault 0.1.0): {reason}",
            input.name
        )),
        "{also:#?}"
    );
    let totals = final_totals(&txform);
    assert_eq!(
        (
            totals.records_in,
            totals.records_out,
            totals.dead_lettered,
            totals.aborts
        ),
        (N, 2 * (N - 1), 1, 0),
        "final totals (in, out, dead_lettered, aborts): {totals:?}"
    );
    assert_no_error_line(&txform);
}
