//! Error policies (`[errors] on_failure`): what happens to records that keep failing.
//!
//! - `dead-letter`: after `max_retries` retries of the whole batch, bisection isolates the failing
//!   records; each is written unchanged (key, value, headers) to the dead-letter topic with `txform.*`
//!   headers, in the transaction that commits its offset, and every other record comes out exactly
//!   once, in order per partition. Plugin errors, panics, rejections (set aside at once, without
//!   retries) and outputs Kafka refuses are all covered, as is a `kill -9` in the middle of an
//!   isolation followed by a restart.
//! - `skip`: the same isolation, the failing record dropped and logged with its offset.
//! - `stop`: exit code 1 with a message naming the transform, the plugin, its error and the batch's
//!   offsets; the group's offsets stay just before the failing batch.
//! - A record that fails a few times and then passes (`times`) is retried, never dead-lettered.
//!
//! The fault plugin fails on chosen records (`value_contains` of one input's unique `seq`, `key_equals`
//! or `offsets`); inputs are the standard ones, so a fresh topic puts id `i` at partition
//! `i % partitions`, offset `i / partitions`.

use toml::{Table, Value};
use txform_tests::dead_letter::{
    offset_spans, parse_totals, spawn_with_policy, DeadLetter, ErrorPolicy, Totals,
};
use txform_tests::{
    assert_output, assert_same_content, big_value, by_partition, committed_offsets,
    committed_totals, content_of, end_offsets, ids_of, last_stable_offsets,
    pause_in_open_transaction, produce, read_topic, standard_inputs, standard_inputs_with_big,
    table, wait_for_committed, wait_for_group_at_end, InputProducer, InputSpec, Isolation,
    PipelineConfig, Plugin, Record, TestEnv, Topic, Txform,
};

use crate::{stop_when_consumed, EXIT_TIMEOUT, PROCESS_TIMEOUT};

/// `txform.plugin` and `txform.plugin.version` of the fault plugin.
pub(crate) const FAULT_PLUGIN: (&str, &str) = ("txform-fault", "0.1.0");
/// `txform.plugin` and `txform.plugin.version` when Kafka refused an output: txform's own sink.
pub(crate) const SINK: (&str, &str) = ("txform", "0.1.0");
pub(crate) const MAX_RETRIES: i64 = 2;
/// Whole-batch attempts before the error policy applies.
pub(crate) const ATTEMPTS: u32 = MAX_RETRIES as u32 + 1;
pub(crate) const INITIAL_BACKOFF_MS: i64 = 10;
pub(crate) const MAX_BACKOFF_MS: i64 = 50;

/// The suite's error-policy pipeline from `input` to `output`: batches of up to 1000 records closed
/// after 100 ms, [`MAX_RETRIES`] retries with short backoffs; add its transform.
fn policy_pipeline(env: &TestEnv, input: &Topic, output: &Topic) -> PipelineConfig {
    env.pipeline(&[input], output).batch(1000, 100).retries(
        MAX_RETRIES,
        INITIAL_BACKOFF_MS,
        MAX_BACKOFF_MS,
    )
}

/// The `seq` field of standard input `id`: a substring of its value and of no other input's.
fn seq(id: u64) -> String {
    format!("id-{id:06}")
}

/// `[transform.config]` of the fault plugin: `action` on the input whose value contains `seq(id)`.
fn fault_on_value(action: &str, id: u64) -> Table {
    table(&[
        ("action", action.into()),
        ("value_contains", seq(id).into()),
    ])
}

/// `[transform.config]` of the fault plugin: `action` on the records at `positions`.
fn fault_at_offsets(action: &str, positions: &[(i32, i64)]) -> Table {
    let offsets = positions
        .iter()
        .map(|&(partition, offset)| {
            Value::Table(table(&[
                ("partition", partition.into()),
                ("offset", offset.into()),
            ]))
        })
        .collect();
    table(&[
        ("action", action.into()),
        ("offsets", Value::Array(offsets)),
    ])
}

/// The fault plugin's message for `record` of `input`, matched by `condition`.
pub(crate) fn fault_message(input: &Topic, record: &Record, condition: &str) -> String {
    format!(
        "fault injected at topic/partition/offset {}/{}/{} ({condition})",
        input.name, record.partition, record.offset
    )
}

fn value_condition(id: u64) -> String {
    format!("value contains \"{}\"", seq(id))
}

/// `produced` without the inputs whose test id is in `set_aside`.
pub(crate) fn all_but(produced: &[Record], set_aside: &[u64]) -> Vec<Record> {
    produced
        .iter()
        .filter(|r| !set_aside.contains(&r.test_id().expect("test id")))
        .cloned()
        .collect()
}

/// The dead-letter records of `dlq` (one partition), read_committed, parsed; read_uncommitted readers
/// see exactly the same records (set-aside attempts never fail here, so nothing was aborted).
pub(crate) fn dead_letters(dlq: &Topic) -> Vec<DeadLetter> {
    let committed = read_topic(dlq, Isolation::ReadCommitted);
    let uncommitted = read_topic(dlq, Isolation::ReadUncommitted);
    assert_same_content(
        &committed,
        &uncommitted,
        "dead-letter topic: read_uncommitted vs read_committed",
    );
    committed.iter().map(DeadLetter::parse).collect()
}

/// Asserts that `letter` is `source` unchanged (key, value, headers) with the `txform.*` headers of
/// a record of `input` set aside by `stage` of `plugin`, and that it kept the source's timestamp.
/// `txform.error` and `txform.attempts` are checked by the caller.
pub(crate) fn assert_dead_letter(
    letter: &DeadLetter,
    source: &Record,
    input: &Topic,
    stage: &str,
    (plugin, version): (&str, &str),
) {
    let what = format!(
        "dead-letter record at {} for input {}",
        letter.record.position(),
        source.position()
    );
    assert_eq!(
        letter.content,
        content_of(source),
        "{what}: key, value and headers of the source record"
    );
    assert_eq!(
        (
            letter.stage.as_str(),
            letter.plugin.as_str(),
            letter.plugin_version.as_str()
        ),
        (stage, plugin, version),
        "{what}: txform.stage, txform.plugin, txform.plugin.version"
    );
    assert_eq!(
        (
            letter.source_topic.as_str(),
            letter.source_partition,
            letter.source_offset
        ),
        (input.name.as_str(), source.partition, source.offset),
        "{what}: txform.source.topic, txform.source.partition, txform.source.offset"
    );
    let source_timestamp = source.timestamp;
    assert!(
        source_timestamp.is_some(),
        "{what}: the input has a timestamp"
    );
    assert_eq!(
        letter.source_timestamp, source_timestamp,
        "{what}: txform.source.timestamp"
    );
    assert_eq!(
        letter.record.timestamp, source_timestamp,
        "{what}: the dead-letter record keeps the source record's timestamp"
    );
}

/// The counters of the one `stopping: totals:` line.
pub(crate) fn final_totals(txform: &Txform) -> Totals {
    let lines = txform.log_lines("stopping: totals:");
    assert_eq!(lines.len(), 1, "one `stopping: totals:` line: {lines:#?}");
    parse_totals(&lines[0]).unwrap_or_else(|| panic!("unparsable totals line: {}", lines[0]))
}

/// The number `N` in the one log line containing `prefix ... after N attempt(s)`, and that line.
fn attempts_in_line(txform: &Txform, prefix: &str) -> (u32, String) {
    let lines = txform.log_lines(prefix);
    assert_eq!(lines.len(), 1, "one {prefix:?} line: {lines:#?}");
    let line = lines[0].clone();
    let after = &line[line.find(" after ").expect("` after ` in the line") + " after ".len()..];
    let n = after
        .split_once(" attempt(s)")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no `after N attempt(s)` in {line}"));
    (n, line)
}

/// Asserts the one log line containing `needle` ends with `expected` (the part after the log prefix).
pub(crate) fn assert_line_ends_with(txform: &Txform, needle: &str, expected: &str) {
    let lines = txform.log_lines(needle);
    assert_eq!(lines.len(), 1, "one {needle:?} line: {lines:#?}");
    assert!(
        lines[0].ends_with(expected),
        "log line\n  {}\nmust end with\n  {expected}",
        lines[0]
    );
}

/// Asserts the failing batch was retried exactly `MAX_RETRIES` times, one warning per retry naming
/// the fault and counting the attempts (`attempt i of MAX_RETRIES + 1`), and nothing else was retried.
fn assert_retried_then_gave_up(txform: &Txform, input: &Topic, fault: &str) {
    let retried = txform.log_lines("aborted batch at");
    let expected: Vec<String> = (1..=MAX_RETRIES)
        .map(|i| format!("(attempt {i} of {ATTEMPTS})"))
        .collect();
    let actual: Vec<&str> = retried
        .iter()
        .map(|l| {
            let start = l.find("(attempt ").unwrap_or(0);
            let end = l[start..].find(')').map_or(start, |i| start + i + 1);
            &l[start..end]
        })
        .collect();
    assert_eq!(
        actual, expected,
        "the failing batch of {} must be attempted {ATTEMPTS} times in a row as a whole before the \
         error policy applies; retry warnings:\n{}",
        input.name,
        retried.join("\n")
    );
    for line in &retried {
        assert!(
            line.contains(fault),
            "retry warning without the fault {fault:?}: {line}"
        );
    }
}

pub(crate) fn assert_no_error_line(txform: &Txform) {
    assert!(
        txform.error_messages().is_empty(),
        "no `txform:` error line: {:?}",
        txform.error_messages()
    );
}

/// ⌈log2 n⌉: the most halvings from a range of n records down to one.
fn ceil_log2(n: u32) -> u32 {
    n.next_power_of_two().trailing_zeros()
}

/// ⌊log2 n⌋: the fewest halvings from a range of n records down to one.
fn floor_log2(n: u32) -> u32 {
    n.ilog2()
}

/// The documented O(k log n) cost of bisection, as the most isolation attempts (the `isolation done
/// after N attempt(s)` count) for `k` failing records in a batch of `n` that no failure named: each
/// failing record lies in at most ⌈log2 n⌉ failing ranges of several records, each split into two
/// halves tried once each; alone, it is tried `max_retries` more times (its first lone attempt is one
/// of those halves) and set aside in one more attempt:
///
/// `attempts <= k * (2 * ceil(log2 n) + max_retries + 1)`.
fn max_isolation_attempts(k: u32, n: u32) -> u32 {
    k * (2 * ceil_log2(n) + MAX_RETRIES as u32 + 1)
}

/// The size of the batch in an `isolating the failing record(s) of a batch of N (...)` line.
fn isolated_batch_size(line: &str) -> u32 {
    let prefix = "isolating the failing record(s) of a batch of ";
    line[line.find(prefix).expect("an isolating line") + prefix.len()..]
        .split_once(' ')
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no batch size in {line}"))
}

/// Log lines of Kafka failures that aborted a whole-batch attempt or an isolation step: each is one
/// more abort, and (for a step) one more isolation attempt, than the records alone explain.
fn kafka_failures(txform: &Txform) -> (u64, u64) {
    (
        txform
            .log_lines("Kafka failure, batch aborted and rewound")
            .len() as u64,
        txform.log_lines("isolation step failed on Kafka").len() as u64,
    )
}

/// Checks the isolation of one batch with a single failing record, unnamed by the failure, against
/// the bisection's exact cost, and returns the depth `d` at which the record was alone. Bisection
/// tries two halves at each of `d` levels (the failing one and its passing sibling), then the record
/// alone `max_retries` more times, then sets it aside: `2d + max_retries + 1` attempts, with
/// `floor(log2 n) <= d <= ceil(log2 n)` for a batch of `n` (`n <= max_records`). The record was in
/// `MAX_RETRIES + 1` whole-batch attempts, `d` failing halves and `max_retries` lone retries, which
/// `set_aside_after` (its `txform.attempts`) must count exactly. An isolation step that failed on
/// Kafka is tried again: one more attempt each.
fn assert_single_record_bisection(txform: &Txform, max_records: u32, set_aside_after: u32) -> u32 {
    let isolating = txform.log_lines("isolating the failing record(s) of a batch of ");
    assert_eq!(isolating.len(), 1, "one isolation: {isolating:#?}");
    let n = isolated_batch_size(&isolating[0]);
    assert!(
        (2..=max_records).contains(&n),
        "an isolated batch holds 2..={max_records} records: {}",
        isolating[0]
    );
    let (logged, _) = attempts_in_line(txform, "isolation done after ");
    let (_, step_kafka) = kafka_failures(txform);
    let calls = logged - step_kafka as u32;
    assert!(
        calls <= max_isolation_attempts(1, n),
        "isolating one record of {n} took {calls} attempts, more than k(2*ceil(log2 n) + max_retries \
         + 1) = {}",
        max_isolation_attempts(1, n)
    );
    let retries = MAX_RETRIES as u32;
    let depth = calls
        .checked_sub(retries + 1)
        .filter(|halves| halves % 2 == 0)
        .map(|halves| halves / 2)
        .unwrap_or_else(|| panic!("{calls} isolation attempts are not 2d + {retries} + 1"));
    assert!(
        (floor_log2(n)..=ceil_log2(n)).contains(&depth),
        "alone after {depth} halvings of a batch of {n}; bisection takes floor..=ceil(log2 n)"
    );
    assert_eq!(
        set_aside_after,
        ATTEMPTS + depth + retries,
        "attempts of the set-aside record: {ATTEMPTS} whole-batch, {depth} failing halves, \
         {retries} lone retries"
    );
    depth
}

const BIG_N: u64 = 10_000;
const BIG_PARTITIONS: i32 = 3;
/// Partition 1, offset 2592.
const BIG_POISON: u64 = 7_777;

#[test]
fn one_poison_record_among_10000_is_dead_lettered_exactly_once() {
    let env = TestEnv::new("dlq-poison");
    let input = env.create_topic("in", BIG_PARTITIONS);
    let output = env.create_topic("out", BIG_PARTITIONS);
    let dlq = env.create_topic("dlq", 1);
    let produced = produce(&input, &standard_inputs(BIG_N, BIG_PARTITIONS));
    let poison = produced[BIG_POISON as usize].clone();
    assert_eq!((poison.partition, poison.offset), (1, 2592));

    let pipeline = policy_pipeline(&env, &input, &output).transform(
        "guard",
        Plugin::fault(),
        fault_on_value("error", BIG_POISON),
    );
    let mut txform = spawn_with_policy(&env, &pipeline, &ErrorPolicy::dead_letter(&dlq), "0");
    wait_for_committed(&output, BIG_N as usize - 1, PROCESS_TIMEOUT);
    wait_for_committed(&dlq, 1, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    // The periodic line counts the dead-lettered record too.
    let stats = txform.wait_for_log("dead_lettered=1 skipped=0", PROCESS_TIMEOUT);
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);

    assert_output(&all_but(&produced, &[BIG_POISON]), &output);
    let ends = end_offsets(&input);
    assert_eq!(
        committed_offsets(&pipeline.group_id, &input),
        ends.iter().map(|&e| Some(e)).collect::<Vec<_>>(),
        "the group's committed offsets must be the input's end offsets"
    );

    let letters = dead_letters(&dlq);
    assert_eq!(letters.len(), 1, "one dead-letter record: {letters:#?}");
    let letter = &letters[0];
    assert_dead_letter(letter, &poison, &input, "guard", FAULT_PLUGIN);
    let error = fault_message(&input, &poison, &value_condition(BIG_POISON));
    assert_eq!(letter.error, error, "txform.error");

    let (logged_attempts, _) = attempts_in_line(&txform, "dead-lettering ");
    assert_eq!(logged_attempts, letter.attempts, "attempts in the log line");
    assert_line_ends_with(
        &txform,
        "dead-lettering ",
        &format!(
            "dead-lettering {}/1@2592 to {} after {} attempt(s): transform `guard` (txform-fault 0.1.0): {error}",
            input.name, dlq.name, letter.attempts
        ),
    );

    let isolating = txform.log_lines("isolating the failing record(s) of a batch of ");
    assert_eq!(isolating.len(), 1, "one isolation: {isolating:#?}");
    let spans = offset_spans(&isolating[0], &input.name);
    assert!(
        spans.get(&1).is_some_and(|&(a, b)| a <= 2592 && 2592 <= b),
        "the isolated batch must hold the poison record: {}",
        isolating[0]
    );
    let depth = assert_single_record_bisection(&txform, 1000, letter.attempts);

    // The batch was attempted MAX_RETRIES + 1 times as a whole, then isolated.
    assert_retried_then_gave_up(&txform, &input, &error);
    // Attempts: the whole batch's, then one per bisection step whose half held the poison; with a
    // single failing record, every aborted transaction was one of them.
    let totals = final_totals(&txform);
    assert_eq!(
        totals.aborts, letter.attempts as u64,
        "every aborted transaction was an attempt that held the poison record"
    );
    assert!(stats.contains("stats: records in="), "{stats}");
    let periodic = parse_totals(&stats).expect("parsable stats line");
    assert_eq!(
        (periodic.retries, periodic.dead_lettered, periodic.skipped),
        (MAX_RETRIES as u64, 1, 0),
        "stats line after the dead-lettering: {stats}"
    );
    // Exact totals: every record in, all but the poison out; transactions are the batches committed
    // whole plus the isolation's committed steps (the `depth` passing halves and the set-aside).
    let batches = committed_totals(&txform.log());
    assert_eq!(
        (batches.records_in, batches.records_out),
        (BIG_N, BIG_N - 1),
        "committed log lines"
    );
    assert_eq!(kafka_failures(&txform), (0, 0), "no Kafka failure");
    assert_eq!(
        totals,
        Totals {
            records_in: BIG_N,
            records_out: BIG_N - 1,
            transactions: batches.transactions - 1 + u64::from(depth) + 1,
            aborts: letter.attempts as u64,
            retries: MAX_RETRIES as u64,
            dead_lettered: 1,
            skipped: 0,
        },
        "final totals"
    );
    assert_no_error_line(&txform);
}

const SMALL_PARTITIONS: i32 = 2;

#[test]
fn two_poison_records_in_one_batch_and_a_panicking_record_are_dead_lettered() {
    const N: u64 = 400;
    // Partition 1, offsets 50 and 52: one batch (everything is produced before txform starts).
    const POISONS: [u64; 2] = [101, 105];
    // Partition 0, offset 125.
    const PANIC: u64 = 250;
    let env = TestEnv::new("dlq-two-and-panic");
    let input = env.create_topic("in", SMALL_PARTITIONS);
    let output = env.create_topic("out", SMALL_PARTITIONS);
    let dlq = env.create_topic("dlq", 1);
    let produced = produce(&input, &standard_inputs(N, SMALL_PARTITIONS));
    let poisons: Vec<Record> = POISONS
        .iter()
        .map(|&id| produced[id as usize].clone())
        .collect();
    let panicking = produced[PANIC as usize].clone();
    assert_eq!(
        [
            (poisons[0].partition, poisons[0].offset),
            (poisons[1].partition, poisons[1].offset)
        ],
        [(1, 50), (1, 52)]
    );
    assert_eq!((panicking.partition, panicking.offset), (0, 125));

    let pipeline = policy_pipeline(&env, &input, &output)
        .transform(
            "fail",
            Plugin::fault(),
            fault_at_offsets("error", &[(1, 50), (1, 52)]),
        )
        .transform("crash", Plugin::fault(), fault_on_value("panic", PANIC));
    let mut txform = spawn_with_policy(&env, &pipeline, &ErrorPolicy::dead_letter(&dlq), "0");
    wait_for_committed(&output, N as usize - 3, PROCESS_TIMEOUT);
    wait_for_committed(&dlq, 3, PROCESS_TIMEOUT);
    stop_when_consumed(&mut txform, &pipeline, &input);

    assert_output(
        &all_but(&produced, &[POISONS[0], POISONS[1], PANIC]),
        &output,
    );

    let mut letters = dead_letters(&dlq);
    assert_eq!(letters.len(), 3, "three dead-letter records: {letters:#?}");
    letters.sort_by_key(DeadLetter::source);
    // Sorted by source position: the panicking record (partition 0) first, then the two poisons.
    assert_dead_letter(&letters[0], &panicking, &input, "crash", FAULT_PLUGIN);
    let panic_error = format!(
        "panicked: {} (at ",
        fault_message(&input, &panicking, &value_condition(PANIC))
    );
    assert!(
        letters[0].error.starts_with(&panic_error),
        "txform.error of the panicking record must start with {panic_error:?}: {:?}",
        letters[0].error
    );
    for (letter, poison) in letters[1..].iter().zip(&poisons) {
        assert_dead_letter(letter, poison, &input, "fail", FAULT_PLUGIN);
        assert_eq!(
            letter.error,
            fault_message(&input, poison, "listed in offsets"),
            "txform.error"
        );
    }
    let dead_lettering = txform.log_lines("dead-lettering ");
    assert_eq!(dead_lettering.len(), 3, "{dead_lettering:#?}");
    for letter in &letters {
        let source = format!(
            "dead-lettering {}/{}@{} to {} after {} attempt(s): ",
            input.name, letter.source_partition, letter.source_offset, dlq.name, letter.attempts
        );
        assert!(
            dead_lettering.iter().any(|l| l.contains(&source)),
            "a log line containing {source:?}: {dead_lettering:#?}"
        );
    }

    // Both poisons were in one isolated batch; the panicking record in that one or another.
    let isolating = txform.log_lines("isolating the failing record(s) of a batch of ");
    let failing = [(1, 50), (1, 52), (0, 125)];
    let held = |line: &String| -> Vec<(i32, i64)> {
        let spans = offset_spans(line, &input.name);
        failing
            .iter()
            .copied()
            .filter(|&(partition, offset)| {
                spans
                    .get(&partition)
                    .is_some_and(|&(a, b)| a <= offset && offset <= b)
            })
            .collect()
    };
    let held_by: Vec<Vec<(i32, i64)>> = isolating.iter().map(held).collect();
    assert!(
        held_by
            .iter()
            .any(|h| h.contains(&(1, 50)) && h.contains(&(1, 52))),
        "one isolated batch must hold both poison records: {isolating:#?}"
    );
    assert_eq!(
        held_by.iter().map(Vec::len).sum::<usize>(),
        failing.len(),
        "every failing record in exactly one isolated batch, and no other isolation: {isolating:#?}"
    );
    // The bisection cost of each isolation, bounded by the documented O(k log n) from above; every
    // failing record was tried alone MAX_RETRIES + 1 times and set aside once, from below.
    let done = txform.log_lines("isolation done after ");
    assert_eq!(done.len(), isolating.len(), "{done:#?}");
    let mut calls_total = 0;
    for ((line, held), done) in isolating.iter().zip(&held_by).zip(&done) {
        let (k, n) = (held.len() as u32, isolated_batch_size(line));
        let calls: u32 = done
            .split("isolation done after ")
            .nth(1)
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(calls, _)| calls.parse().ok())
            .unwrap_or_else(|| panic!("no attempt count in {done}"));
        assert!(
            (k * (MAX_RETRIES as u32 + 2)..=max_isolation_attempts(k, n)).contains(&calls),
            "isolating {k} record(s) of {n} took {calls} attempts: outside k(max_retries + 2)..=\
             k(2*ceil(log2 n) + max_retries + 1) = {}..={}",
            k * (MAX_RETRIES as u32 + 2),
            max_isolation_attempts(k, n)
        );
        for letter in &letters {
            if held.contains(&letter.source()) {
                let most = ATTEMPTS + ceil_log2(n) + MAX_RETRIES as u32;
                assert!(
                    (ATTEMPTS + 1 + MAX_RETRIES as u32..=most).contains(&letter.attempts),
                    "txform.attempts of {:?} = {}: {ATTEMPTS} whole-batch attempts, 1..=ceil(log2 \
                     {n}) failing ranges, {MAX_RETRIES} lone retries",
                    letter.source(),
                    letter.attempts
                );
            }
        }
        calls_total += u64::from(calls);
    }
    assert!(
        !txform
            .log_lines("transform `crash` panicked; re-created its instance")
            .is_empty(),
        "the panicking stage was re-created"
    );
    // Every attempt either committed or aborted: the whole-batch attempts (ATTEMPTS per isolated
    // batch, one commit per other batch) and every isolation attempt.
    let batches = committed_totals(&txform.log());
    let isolated = isolating.len() as u64;
    assert_eq!(kafka_failures(&txform), (0, 0), "no Kafka failure");
    let totals = final_totals(&txform);
    assert_eq!(
        totals.transactions + totals.aborts,
        batches.transactions - isolated + isolated * u64::from(ATTEMPTS) + calls_total,
        "transactions + aborts = attempts: {totals:?}"
    );
    assert_eq!(
        (
            totals.records_in,
            totals.records_out,
            totals.retries,
            totals.dead_lettered,
            totals.skipped
        ),
        (N, N - 3, MAX_RETRIES as u64 * isolated, 3, 0),
        "final totals (in, out, retries, dead_lettered, skipped): {totals:?}"
    );
    assert_no_error_line(&txform);
}

#[test]
fn skip_drops_the_poison_record_and_logs_its_offset() {
    const N: u64 = 300;
    // Partition 0, offset 50.
    const POISON: u64 = 150;
    let env = TestEnv::new("skip");
    let input = env.create_topic("in", BIG_PARTITIONS);
    let output = env.create_topic("out", BIG_PARTITIONS);
    let produced = produce(&input, &standard_inputs(N, BIG_PARTITIONS));
    let poison = produced[POISON as usize].clone();
    assert_eq!((poison.partition, poison.offset), (0, 50));

    let pipeline = policy_pipeline(&env, &input, &output).transform(
        "guard",
        Plugin::fault(),
        fault_on_value("error", POISON),
    );
    let mut txform = spawn_with_policy(&env, &pipeline, &ErrorPolicy::skip(), "0");
    wait_for_committed(&output, N as usize - 1, PROCESS_TIMEOUT);
    stop_when_consumed(&mut txform, &pipeline, &input);

    assert_output(&all_but(&produced, &[POISON]), &output);
    let (attempts, _) = attempts_in_line(&txform, "skipping ");
    let depth = assert_single_record_bisection(&txform, 1000, attempts);
    assert_line_ends_with(
        &txform,
        "skipping ",
        &format!(
            "skipping {}/0@50 after {attempts} attempt(s): transform `guard` (txform-fault 0.1.0): {}",
            input.name,
            fault_message(&input, &poison, &value_condition(POISON))
        ),
    );
    assert_retried_then_gave_up(
        &txform,
        &input,
        &fault_message(&input, &poison, &value_condition(POISON)),
    );
    assert!(
        txform.log_lines("dead-letter").is_empty(),
        "nothing is dead-lettered under skip: {:#?}",
        txform.log_lines("dead-letter")
    );
    assert_eq!(kafka_failures(&txform), (0, 0), "no Kafka failure");
    let batches = committed_totals(&txform.log());
    assert_eq!(
        final_totals(&txform),
        Totals {
            records_in: N,
            records_out: N - 1,
            // The batches committed whole, then the isolation's passing halves and the set-aside.
            transactions: batches.transactions - 1 + u64::from(depth) + 1,
            aborts: u64::from(attempts),
            retries: MAX_RETRIES as u64,
            dead_lettered: 0,
            skipped: 1,
        },
        "final totals"
    );
    assert_no_error_line(&txform);
}

/// One partition; the poison is at offset 5, among the first records of one large batch, so that
/// after it is dead-lettered the isolation still commits the rest in ever larger steps (up to half
/// the batch): a kill there lands in an open transaction with thousands of records.
const KILL_N: u64 = 40_000;
const KILL_POISON: u64 = 5;

#[test]
fn kill_9_during_isolation_then_restart_is_exactly_once() {
    let env = TestEnv::new("dlq-kill9");
    let input = env.create_topic("in", 1);
    let output = env.create_topic("out", 1);
    let dlq = env.create_topic("dlq", 1);
    let produced = produce(&input, &standard_inputs(KILL_N, 1));
    let poison = produced[KILL_POISON as usize].clone();

    let pipeline = env
        .pipeline(&[&input], &output)
        .batch(KILL_N as i64, 100)
        .retries(MAX_RETRIES, INITIAL_BACKOFF_MS, MAX_BACKOFF_MS)
        .transform(
            "guard",
            Plugin::fault(),
            fault_on_value("error", KILL_POISON),
        );
    let policy = ErrorPolicy::dead_letter(&dlq);
    let mut first = spawn_with_policy(&env, &pipeline, &policy, "0");
    first.wait_for_log("dead-lettering ", PROCESS_TIMEOUT);
    let (lso, end) = pause_in_open_transaction(&mut first, &output, PROCESS_TIMEOUT);
    assert!(
        first.log_lines("isolation done").is_empty(),
        "the instance must be frozen in the middle of the isolation; log tail:\n{}",
        first.tail(20)
    );
    let status = first.kill9();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    // What the isolation committed before the kill (the poison's dead-letter step included).
    let done_before = committed_offsets(&pipeline.group_id, &input)[0]
        .expect("the isolation committed a step") as u64;
    assert!(
        KILL_POISON < done_before && done_before < KILL_N,
        "committed before the kill: {done_before}"
    );
    eprintln!(
        "kill -9 during isolation with an open transaction (output last stable offset {lso:?}, end \
         {end:?}); {done_before} inputs committed before"
    );

    let mut second = spawn_with_policy(&env, &pipeline, &policy, "0");
    wait_for_committed(&output, KILL_N as usize - 1, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    second.terminate();
    second.expect_exit_code(0, EXIT_TIMEOUT);

    // Outputs exactly once in order; the killed instance's open transaction is aborted, whole.
    let committed = read_topic(&output, Isolation::ReadCommitted);
    assert_same_content(
        &all_but(&produced, &[KILL_POISON]),
        &committed,
        "read_committed output",
    );
    let uncommitted = read_topic(&output, Isolation::ReadUncommitted);
    let open_records = (end[0] - lso[0]) as usize;
    assert_eq!(
        uncommitted.len() - committed.len(),
        open_records,
        "exactly the killed instance's open transaction is in the log, aborted"
    );
    // The dead-letter record was written once, by the killed instance, in the transaction that
    // committed its offset; the restarted instance had nothing left to isolate.
    let letters: Vec<DeadLetter> = read_topic(&dlq, Isolation::ReadCommitted)
        .iter()
        .map(DeadLetter::parse)
        .collect();
    assert_eq!(letters.len(), 1, "one dead-letter record: {letters:#?}");
    assert_dead_letter(&letters[0], &poison, &input, "guard", FAULT_PLUGIN);
    assert_eq!(
        letters[0].error,
        fault_message(&input, &poison, &value_condition(KILL_POISON))
    );
    assert_eq!(
        ids_of(&read_topic(&dlq, Isolation::ReadUncommitted)),
        vec![KILL_POISON],
        "no other dead-letter record, committed or not"
    );
    assert_eq!(second.log_lines("isolating the failing record(s)").len(), 0);
    let totals = final_totals(&second);
    assert_eq!(
        (
            totals.records_in,
            totals.records_out,
            totals.dead_lettered,
            totals.skipped
        ),
        (KILL_N - done_before, KILL_N - done_before, 0, 0),
        "final totals of the restarted instance (in, out, dead_lettered, skipped): {totals:?}"
    );
    assert_no_error_line(&second);
}

#[test]
fn stop_exits_1_with_offsets_just_before_the_failing_batch() {
    const N: u64 = 1800;
    // Partition 0, offset 450.
    const POISON: u64 = 1350;
    const POISON_OFFSET: i64 = 450;
    const MAX_RECORDS: i64 = 100;
    // Far longer than producing a partition takes: every batch closes full, at MAX_RECORDS.
    const MAX_WAIT_MS: i64 = 5000;
    let env = TestEnv::new("stop-policy");
    let input = env.create_topic("in", BIG_PARTITIONS);
    let output = env.create_topic("out", BIG_PARTITIONS);
    let pipeline = env
        .pipeline(&[&input], &output)
        .batch(MAX_RECORDS, MAX_WAIT_MS)
        .retries(MAX_RETRIES, INITIAL_BACKOFF_MS, MAX_BACKOFF_MS)
        .transform("guard", Plugin::fault(), fault_on_value("error", POISON));

    // Partitions 1 and 2 first (12 full batches), all committed; then partition 0, with the poison,
    // in one go: its batches are offsets 0..=99, 100..=199, ..., so the failing batch is the one
    // holding offset 450, and the only thing left to consume; its attempts follow each other.
    let (later, first_inputs): (Vec<InputSpec>, Vec<InputSpec>) =
        standard_inputs(N, BIG_PARTITIONS)
            .into_iter()
            .partition(|spec| spec.partition == 0);
    assert_eq!(
        first_inputs.len() as i64 % MAX_RECORDS,
        0,
        "full batches only"
    );
    let producer = InputProducer::new(&input);
    let mut produced = producer.produce(&first_inputs);
    let mut txform = spawn_with_policy(&env, &pipeline, &ErrorPolicy::stop(), "0");
    wait_for_committed(&output, first_inputs.len(), PROCESS_TIMEOUT);
    produced.extend(producer.produce(&later));
    let poison = produced
        .iter()
        .find(|r| r.test_id() == Some(POISON))
        .expect("the poison was produced")
        .clone();
    assert_eq!((poison.partition, poison.offset), (0, POISON_OFFSET));
    txform.expect_exit_code(1, EXIT_TIMEOUT);

    let first = POISON_OFFSET / MAX_RECORDS * MAX_RECORDS;
    let last = first + MAX_RECORDS - 1;
    let errors = txform.error_messages();
    assert_eq!(
        errors,
        [format!(
            "txform: giving up after {ATTEMPTS} failed attempts at {}/0 offsets {first}..={last}: \
             transform `guard` (txform-fault 0.1.0): {}",
            input.name,
            fault_message(&input, &poison, &value_condition(POISON))
        )],
        "one error line naming the attempts, the batch, the transform, the plugin and its error"
    );

    // Offsets: just before the failing batch in partition 0, at the end of partitions 1 and 2;
    // the committed output is exactly the inputs before the group's offsets, in every partition.
    let per_partition = (N / BIG_PARTITIONS as u64) as i64;
    assert_eq!(
        committed_offsets(&pipeline.group_id, &input),
        [Some(first), Some(per_partition), Some(per_partition)],
        "group offsets: the failing batch's first offset in partition 0, the end elsewhere"
    );
    let before: Vec<Record> = produced
        .iter()
        .filter(|r| r.partition != 0 || r.offset < first)
        .cloned()
        .collect();
    assert_output(&before, &output);
    let committed_in = first_inputs.len() as u64 + first as u64;

    assert_retried_then_gave_up(
        &txform,
        &input,
        &fault_message(&input, &poison, &value_condition(POISON)),
    );
    assert!(
        txform.log_lines("isolating").is_empty(),
        "no isolation under stop"
    );
    let totals_lines = txform.log_lines("totals: records in=");
    assert_eq!(totals_lines.len(), 1, "{totals_lines:#?}");
    let totals = parse_totals(&totals_lines[0]).expect("parsable totals");
    assert_eq!(
        totals,
        Totals {
            records_in: committed_in,
            records_out: committed_in,
            // Full batches only.
            transactions: committed_in / MAX_RECORDS as u64,
            aborts: ATTEMPTS as u64,
            retries: MAX_RETRIES as u64,
            dead_lettered: 0,
            skipped: 0,
        },
        "totals logged when giving up"
    );
}

#[test]
fn transient_failure_is_retried_never_dead_lettered() {
    const N: u64 = 600;
    // Partition 1, offset 100.
    const FLAKY: u64 = 301;
    let env = TestEnv::new("dlq-transient");
    let input = env.create_topic("in", BIG_PARTITIONS);
    let output = env.create_topic("out", BIG_PARTITIONS);
    let dlq = env.create_topic("dlq", 1);
    let produced = produce(&input, &standard_inputs(N, BIG_PARTITIONS));

    let mut fault = fault_on_value("error", FLAKY);
    fault.insert("times".into(), 2.into());
    let pipeline = env
        .pipeline(&[&input], &output)
        .batch(100, 100)
        .retries(3, INITIAL_BACKOFF_MS, MAX_BACKOFF_MS)
        .transform("flaky", Plugin::fault(), fault);
    let mut txform = spawn_with_policy(&env, &pipeline, &ErrorPolicy::dead_letter(&dlq), "0");
    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    stop_when_consumed(&mut txform, &pipeline, &input);

    assert_output(&produced, &output);
    for isolation in [Isolation::ReadCommitted, Isolation::ReadUncommitted] {
        assert_eq!(
            read_topic(&dlq, isolation),
            vec![],
            "{isolation:?} readers of the dead-letter topic see nothing"
        );
    }
    let retried = txform.log_lines("aborted batch at");
    assert_eq!(retried.len(), 2, "{retried:#?}");
    for (i, line) in retried.iter().enumerate() {
        assert!(
            line.contains(&format!("(attempt {} of 4)", i + 1))
                && line.contains(&fault_message(
                    &input,
                    &produced[FLAKY as usize],
                    &value_condition(FLAKY)
                )),
            "retry warning {i}: {line}"
        );
    }
    assert!(txform.log_lines("isolating").is_empty(), "no isolation");
    let batches = committed_totals(&txform.log());
    assert_eq!(
        final_totals(&txform),
        Totals {
            records_in: N,
            records_out: N,
            transactions: batches.transactions,
            aborts: 2,
            retries: 2,
            dead_lettered: 0,
            skipped: 0,
        },
        "final totals"
    );
    assert_no_error_line(&txform);
}

#[test]
fn rejected_record_is_dead_lettered_without_retries() {
    const N: u64 = 300;
    // Partition 0, offset 41.
    const REJECTED: u64 = 123;
    let env = TestEnv::new("dlq-reject");
    let input = env.create_topic("in", BIG_PARTITIONS);
    let output = env.create_topic("out", BIG_PARTITIONS);
    let dlq = env.create_topic("dlq", 1);
    let produced = produce(&input, &standard_inputs(N, BIG_PARTITIONS));
    let rejected = produced[REJECTED as usize].clone();
    assert_eq!((rejected.partition, rejected.offset), (0, 41));

    let fault = table(&[
        ("action", "reject".into()),
        ("key_equals", "k000123".into()),
    ]);
    let pipeline = policy_pipeline(&env, &input, &output).transform("vet", Plugin::fault(), fault);
    let mut txform = spawn_with_policy(&env, &pipeline, &ErrorPolicy::dead_letter(&dlq), "0");
    wait_for_committed(&output, N as usize - 1, PROCESS_TIMEOUT);
    wait_for_committed(&dlq, 1, PROCESS_TIMEOUT);
    stop_when_consumed(&mut txform, &pipeline, &input);

    assert_output(&all_but(&produced, &[REJECTED]), &output);
    let letters = dead_letters(&dlq);
    assert_eq!(letters.len(), 1, "one dead-letter record: {letters:#?}");
    assert_dead_letter(&letters[0], &rejected, &input, "vet", FAULT_PLUGIN);
    let error = format!(
        "rejected: {}",
        fault_message(&input, &rejected, "key equals \"k000123\"")
    );
    assert_eq!(letters[0].error, error, "txform.error");
    assert_eq!(letters[0].attempts, 1, "set aside at its first attempt");
    assert_line_ends_with(
        &txform,
        "dead-lettering ",
        &format!(
            "dead-lettering {}/0@41 to {} after 1 attempt(s): transform `vet` (txform-fault 0.1.0): {error}",
            input.name, dlq.name
        ),
    );
    assert!(txform.log_lines("aborted batch").is_empty(), "no retry");
    assert!(txform.log_lines("isolating").is_empty(), "no bisection");
    let batches = committed_totals(&txform.log());
    assert_eq!(
        (batches.records_in, batches.records_out),
        (N, N - 1),
        "committed log lines"
    );
    assert_eq!(
        final_totals(&txform),
        Totals {
            records_in: N,
            records_out: N - 1,
            transactions: batches.transactions,
            aborts: 0,
            retries: 0,
            dead_lettered: 1,
            skipped: 0,
        },
        "final totals"
    );
    assert_no_error_line(&txform);
}

#[test]
fn output_kafka_refuses_is_dead_lettered_as_its_source_record() {
    const N: u64 = 300;
    // Partition 1, offset 33: 200 kB, twice the output topic's max.message.bytes.
    const BIG: u64 = 100;
    let env = TestEnv::new("dlq-refused");
    let input = env.create_topic("in", BIG_PARTITIONS);
    let output = env.create_topic_with("out", BIG_PARTITIONS, &[("max.message.bytes", "100000")]);
    let dlq = env.create_topic("dlq", 1);
    let inputs = standard_inputs_with_big(N, BIG_PARTITIONS, BIG, 200_000);
    let produced = produce(&input, &inputs);
    let big = produced[BIG as usize].clone();
    assert_eq!((big.partition, big.offset), (1, 33));

    let pipeline = policy_pipeline(&env, &input, &output).transform(
        "copy",
        Plugin::passthrough(),
        txform_tests::passthrough_config(),
    );
    let mut txform = spawn_with_policy(&env, &pipeline, &ErrorPolicy::dead_letter(&dlq), "0");
    wait_for_committed(&output, N as usize - 1, PROCESS_TIMEOUT);
    wait_for_committed(&dlq, 1, PROCESS_TIMEOUT);
    stop_when_consumed(&mut txform, &pipeline, &input);

    // Refused outputs fail at delivery, after other outputs of the attempt were written: aborted
    // records are expected in the log, so only read_committed readers are compared.
    let committed = read_topic(&output, Isolation::ReadCommitted);
    let expected = by_partition(&all_but(&produced, &[BIG]), BIG_PARTITIONS);
    let actual = by_partition(&committed, BIG_PARTITIONS);
    for p in 0..BIG_PARTITIONS as usize {
        assert_same_content(
            &expected[p],
            &actual[p],
            &format!("read_committed output partition {p}"),
        );
    }
    let letters = dead_letters(&dlq);
    assert_eq!(letters.len(), 1, "one dead-letter record: {letters:#?}");
    let letter = &letters[0];
    assert_dead_letter(letter, &big, &input, "sink", SINK);
    let suffix = format!("; first refused output from {}/1@33)", input.name);
    assert!(
        letter.error.starts_with("Kafka refused an output (")
            && letter.error.contains("Message size too large")
            && letter.error.ends_with(&suffix),
        "txform.error must name Kafka's refusal and the record: {:?}",
        letter.error
    );
    // A refusal only names a suspect (a refused request of many records names its first): the
    // batch is bisected like for a plugin error. Kafka failures of steps right after a refusal
    // (librdkafka reporting purged messages) are retried; each is one more abort.
    let depth = assert_single_record_bisection(&txform, 1000, letter.attempts);
    assert_retried_then_gave_up(&txform, &input, "Kafka refused an output (");
    let (batch_kafka, step_kafka) = kafka_failures(&txform);
    let batches = committed_totals(&txform.log());
    assert_eq!(
        final_totals(&txform),
        Totals {
            records_in: N,
            records_out: N - 1,
            transactions: batches.transactions - 1 + u64::from(depth) + 1,
            aborts: u64::from(letter.attempts) + batch_kafka + step_kafka,
            retries: MAX_RETRIES as u64,
            dead_lettered: 1,
            skipped: 0,
        },
        "final totals"
    );
    assert_no_error_line(&txform);
}

/// A flaky neighbour of a poison record is not dead-lettered: a record is set aside only after
/// failing on its own as often as the retry policy says. One partition of 16 records in one batch;
/// the poison is offset 4, its neighbour at offset 5 fails the first 16 calls that include it: 11
/// whole-batch attempts and 3 bisection steps ([0..8), [4..8), [4..6)) before it is tried alone, so
/// it fails alone twice and then goes through.
#[test]
fn a_flaky_neighbour_of_a_poison_record_is_retried_alone_not_dead_lettered() {
    const N: u64 = 16;
    const POISON: u64 = 4;
    const FLAKY: u64 = 5;
    const RETRIES: i64 = 10;
    let env = TestEnv::new("dlq-neighbour");
    let input = env.create_topic("in", 1);
    let output = env.create_topic("out", 1);
    let dlq = env.create_topic("dlq", 1);
    let produced = produce(&input, &standard_inputs(N, 1));
    let poison = produced[POISON as usize].clone();

    let mut flaky = fault_on_value("error", FLAKY);
    flaky.insert("times".into(), 16.into());
    let pipeline = env
        .pipeline(&[&input], &output)
        .batch(N as i64, 1000)
        .retries(RETRIES, INITIAL_BACKOFF_MS, MAX_BACKOFF_MS)
        .transform("flaky", Plugin::fault(), flaky)
        .transform("guard", Plugin::fault(), fault_on_value("error", POISON));
    let mut txform = spawn_with_policy(&env, &pipeline, &ErrorPolicy::dead_letter(&dlq), "0");
    wait_for_committed(&output, N as usize - 1, PROCESS_TIMEOUT);
    stop_when_consumed(&mut txform, &pipeline, &input);

    assert_output(&all_but(&produced, &[POISON]), &output);
    let letters = dead_letters(&dlq);
    assert_eq!(letters.len(), 1, "only the poison record: {letters:#?}");
    assert_dead_letter(&letters[0], &poison, &input, "guard", FAULT_PLUGIN);
    let alone = txform.log_lines(&format!("{}/0@{FLAKY} failed on its own", input.name));
    assert_eq!(
        alone.len(),
        2,
        "the neighbour failed alone twice: {alone:#?}"
    );
    assert_no_error_line(&txform);
}

/// A failure the host raises itself (a dead-letter record it cannot write) stops the instance only
/// after aborting the open transaction, so read_committed readers are not held back until
/// `transaction.timeout.ms`. Every record of one batch is rejected; their dead-letter records are
/// sent one per request as they are enqueued, so the first ones are in the log when the last one,
/// too large for the producer, cannot be written.
#[test]
fn a_dead_letter_record_the_host_cannot_write_aborts_the_transaction_before_exit() {
    const N: u64 = 2000;
    const BIG: u64 = N - 1;
    const MAX_MESSAGE_BYTES: i64 = 10_000;
    let env = TestEnv::new("dlq-unwritable");
    let input = env.create_topic("in", 1);
    let output = env.create_topic("out", 1);
    let dlq = env.create_topic("dlq", 1);
    let inputs: Vec<InputSpec> = (0..N)
        .map(|id| match id {
            BIG => {
                InputSpec::standard(id, 0).with_value(big_value(id, 2 * MAX_MESSAGE_BYTES as usize))
            }
            _ => InputSpec::standard(id, 0),
        })
        .collect();
    produce(&input, &inputs);
    let reject_all = table(&[
        ("action", "reject".into()),
        ("value_contains", "\"seq\"".into()),
    ]);
    let pipeline = env
        .pipeline(&[&input], &output)
        // One batch of all N records: closed by `max_records` (the interval also counts the time
        // spent transforming the streamed chunks, which is long under load).
        .batch(N as i64, 60_000)
        .producer_property("message.max.bytes", MAX_MESSAGE_BYTES)
        .producer_property("batch.num.messages", 1)
        .producer_property("linger.ms", 0)
        .transform("reject", Plugin::fault(), reject_all);
    let mut txform = spawn_with_policy(&env, &pipeline, &ErrorPolicy::dead_letter(&dlq), "0");
    txform.expect_exit_code(3, PROCESS_TIMEOUT);
    let errors = txform.error_messages();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(&format!("cannot dead-letter {}/0@{BIG}", input.name)),
        "{}",
        errors[0]
    );
    // Right after the exit: the transaction that held the dead-letter records is aborted.
    let end = end_offsets(&dlq);
    assert!(
        end[0] > 0,
        "no dead-letter record reached the log: the test proves nothing"
    );
    assert_eq!(
        last_stable_offsets(&dlq),
        end,
        "an open transaction holds the dead-letter topic"
    );
    assert_eq!(read_topic(&dlq, Isolation::ReadCommitted), vec![]);
    assert_eq!(read_topic(&output, Isolation::ReadUncommitted), vec![]);
}
