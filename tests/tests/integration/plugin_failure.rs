//! A transform that fails on one record, every time (the fault plugin with `action = "error"` or
//! `"panic"` at a chosen offset): the host aborts and retries the batch `max_retries` times, then gives
//! up with exit code 1 and a message naming the transform, the plugin's error and the batch's offsets.
//! Everything before the failing batch is committed exactly once; nothing of the failing batch is
//! visible, at either isolation level (the failure comes before anything of the batch is produced).

use txform_tests::{
    assert_same_content, committed_offsets, committed_totals, produce, read_topic, standard_inputs,
    table, Isolation, Plugin, TestEnv,
};

use crate::EXIT_TIMEOUT;

const N: u64 = 400;
const FAILING_OFFSET: i64 = 250;
const MAX_RETRIES: i64 = 2;
const MAX_RECORDS: i64 = 100;

/// What a run of a pipeline whose transform always fails at [`FAILING_OFFSET`] left behind.
struct Outcome {
    /// Kept until the test ends, so that its files are kept if a later assertion fails.
    _env: TestEnv,
    /// The `txform: ...` error line.
    error: String,
    log: String,
    /// Inputs committed before the failing batch.
    committed_before: u64,
}

impl Outcome {
    /// The per-transaction debug lines account for exactly the inputs committed before the failure.
    fn check_commit_log(&self) {
        let totals = committed_totals(&self.log);
        assert_eq!(
            (totals.records_in, totals.records_out),
            (self.committed_before, self.committed_before),
            "records in and out in the `committed` log lines"
        );
    }
}

fn run_until_give_up(label: &str, action: &str) -> Outcome {
    let env = TestEnv::new(label);
    let input = env.create_topic("in", 1);
    let output = env.create_topic("out", 1);
    let produced = produce(&input, &standard_inputs(N, 1));

    let fault = table(&[
        ("action", action.into()),
        (
            "offsets",
            toml::Value::Array(vec![table(&[
                ("partition", 0.into()),
                ("offset", FAILING_OFFSET.into()),
            ])
            .into()]),
        ),
    ]);
    let pipeline = env
        .pipeline(&[&input], &output)
        .batch(MAX_RECORDS, 100)
        .retries(MAX_RETRIES, 50, 200)
        .transform("inject", Plugin::fault(), fault);
    let mut txform = env.spawn(&pipeline, "0");
    txform.expect_exit_code(1, EXIT_TIMEOUT);

    let errors = txform.error_messages();
    assert_eq!(
        errors.len(),
        1,
        "exactly one `txform:` error line, got {errors:?}"
    );
    let error = errors[0].clone();
    let attempts = MAX_RETRIES + 1;
    for expected in [
        format!("giving up after {attempts} failed attempts"),
        "transform `inject`".to_string(),
        format!(
            "fault injected at topic/partition/offset {}/0/{FAILING_OFFSET}",
            input.name
        ),
    ] {
        assert!(
            error.contains(&expected),
            "the error must contain {expected:?}: {error}"
        );
    }
    let batch = batch_offsets(&error, &format!("{}/0 offsets ", input.name));
    assert!(
        batch.0 <= FAILING_OFFSET && FAILING_OFFSET <= batch.1 && batch.1 - batch.0 < MAX_RECORDS,
        "the failing batch {batch:?} must hold offset {FAILING_OFFSET} and at most {MAX_RECORDS} records: {error}"
    );

    // What was committed before the failing batch: exactly the inputs before it, once, in order.
    let group = committed_offsets(&pipeline.group_id, &input);
    assert_eq!(
        group,
        vec![Some(batch.0)],
        "the group's offset must be the failing batch's first offset"
    );
    let committed = read_topic(&output, Isolation::ReadCommitted);
    assert_same_content(
        &produced[..batch.0 as usize],
        &committed,
        "read_committed output",
    );
    // The transform failed before anything of the failing batch was produced: no aborted records either.
    let uncommitted = read_topic(&output, Isolation::ReadUncommitted);
    assert_same_content(
        &committed,
        &uncommitted,
        "read_uncommitted output vs read_committed output",
    );

    let log = txform.log();
    // One warning per failed attempt that is retried, each naming the batch.
    let retried = txform.log_lines("aborted batch at");
    assert_eq!(
        retried.len() as i64,
        MAX_RETRIES,
        "retry warnings: {retried:#?}"
    );
    for (i, line) in retried.iter().enumerate() {
        assert!(
            line.contains(&format!("(attempt {} of {attempts})", i + 1)),
            "retry warning {i} must count attempts: {line}"
        );
    }
    drop(txform);
    Outcome {
        _env: env,
        error,
        log,
        committed_before: batch.0 as u64,
    }
}

/// `(a, b)` from "<prefix>a..=b" in `text`.
fn batch_offsets(text: &str, prefix: &str) -> (i64, i64) {
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
        + prefix.len();
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '='))
        .unwrap_or(rest.len());
    let (a, b) = rest[..end]
        .split_once("..=")
        .unwrap_or_else(|| panic!("no a..=b after {prefix:?} in {text}"));
    (
        a.parse()
            .unwrap_or_else(|_| panic!("bad offset {a:?} in {text}")),
        b.parse()
            .unwrap_or_else(|_| panic!("bad offset {b:?} in {text}")),
    )
}

#[test]
fn error_exhausts_retries_and_exits_1() {
    let outcome = run_until_give_up("plugin-error", "error");
    assert!(
        !outcome.error.contains("panicked"),
        "an error is not a panic: {}",
        outcome.error
    );
    assert!(
        !outcome.log.contains("re-created"),
        "an instance that returned an error is not re-created"
    );
    outcome.check_commit_log();
}

#[test]
fn panic_is_contained_and_exits_1_after_retries() {
    let outcome = run_until_give_up("plugin-panic", "panic");
    assert!(
        outcome.error.contains("panicked"),
        "the error must say the transform panicked: {}",
        outcome.error
    );
    // The host survived every panic: each attempt panicked, and each time the instance was re-created.
    let recreated = outcome
        .log
        .lines()
        .filter(|l| l.contains("transform `inject` panicked; re-created its instance"))
        .count();
    assert_eq!(
        recreated as i64,
        MAX_RETRIES + 1,
        "one re-creation per attempt"
    );
    assert!(
        !outcome
            .log
            .contains("Attempted to panic across the ffi boundary"),
        "the panic must be caught inside the plugin"
    );
    outcome.check_commit_log();
}
