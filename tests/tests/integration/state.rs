//! Exactly-once state stores (the `count` and `dedup` plugins) against the real broker.
//!
//! - A running count per key with kill -9 mid-run and a restart: every emitted count is exact (a
//!   replayed batch never counts twice) and each key's last count is its number of records.
//! - De-duplication with repeated keys and a crash in between: each key exactly once, the first.
//! - A failing stage after the count's puts: the aborted batch's state is rolled back.
//! - Restore with the local store intact (reads nothing) and deleted (reads the whole changelog).
//! - A changelog topic that exists but is not compacted, or has fewer partitions: refused (exit 2).

use std::collections::BTreeMap;

use toml::Value;
use txform_tests::{
    pause_in_open_transaction, produce, read_topic, table, wait_for_committed,
    wait_for_group_at_end, InputSpec, Isolation, PipelineConfig, Plugin, Record, TestEnv, Topic,
    Txform,
};

use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

const PARTITIONS: i32 = 3;
/// The debug line of each committed transaction.
const COMMITTED: &str = "] committed ";
/// Keys `c0..c29`; key `c<i>` only in partition `i % 3`, so a key's count is global.
const KEYS: u64 = 30;

/// Input `id`: key `c<id % 30>` on partition `id % 3`, value its id.
fn count_inputs(ids: std::ops::Range<u64>) -> Vec<InputSpec> {
    ids.map(|id| {
        let key = format!("c{}", id % KEYS);
        InputSpec::standard(id, (id % PARTITIONS as u64) as i32).with_key(Some(key.as_bytes()))
    })
    .collect()
}

fn count_pipeline(env: &TestEnv, input: &Topic, output: &Topic) -> PipelineConfig {
    env.delete_later(&format!("{}-count-counts-changelog", env.name("group")));
    env.pipeline(&[input], output).batch(100, 100).transform(
        "count",
        Plugin::count(),
        table(&[("keep_partition", Value::Boolean(true))]),
    )
}

/// Checks that, per key, the committed counts are exactly 1, 2, ..., n in output order, and returns
/// n per key.
fn assert_exact_counts(committed: &[Record]) -> BTreeMap<String, u64> {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for record in committed {
        let key = record.key_str();
        let count: u64 = record
            .value_str()
            .parse()
            .unwrap_or_else(|_| panic!("count {:?} at {}", record.value_str(), record.position()));
        let expected = last.get(&key).copied().unwrap_or(0) + 1;
        assert_eq!(
            count,
            expected,
            "key {key}: count {count} at {}, expected {expected} (a batch counted twice or lost)",
            record.position()
        );
        last.insert(key, count);
    }
    last
}

/// Per key, how many of `ids` have it.
fn records_per_key(ids: std::ops::Range<u64>) -> BTreeMap<String, u64> {
    let mut n = BTreeMap::new();
    for id in ids {
        *n.entry(format!("c{}", id % KEYS)).or_insert(0) += 1;
    }
    n
}

fn stop(txform: &mut Txform, pipeline: &PipelineConfig, input: &Topic) {
    wait_for_group_at_end(&pipeline.group_id, input, PROCESS_TIMEOUT);
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);
}

#[test]
fn running_count_survives_kill_9_exactly() {
    const N: u64 = 20_000;
    let env = TestEnv::new("state-count-kill");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    produce(&input, &count_inputs(0..N));
    let pipeline = count_pipeline(&env, &input, &output);

    let mut first = env.spawn(&pipeline, "0");
    first.wait_for_log("created changelog topic", PROCESS_TIMEOUT);
    wait_for_committed(&output, 2_000, PROCESS_TIMEOUT);
    // Killed inside an open transaction: its outputs and changelog records end up aborted.
    pause_in_open_transaction(&mut first, &output, PROCESS_TIMEOUT);
    first.kill9();
    let before = read_topic(&output, Isolation::ReadCommitted).len() as u64;
    assert!(
        before < N,
        "finished before the kill: the test proves nothing"
    );

    let mut second = env.spawn(&pipeline, "0");
    stop(&mut second, &pipeline, &input);
    let committed = read_topic(&output, Isolation::ReadCommitted);
    assert_eq!(committed.len() as u64, N, "one count per input");
    assert_eq!(assert_exact_counts(&committed), records_per_key(0..N));
    let changelog = Topic {
        name: format!("{}-count-counts-changelog", pipeline.group_id),
        partitions: PARTITIONS,
    };
    let aborted = read_topic(&changelog, Isolation::ReadUncommitted).len()
        - read_topic(&changelog, Isolation::ReadCommitted).len();
    eprintln!(
        "count with kill -9 after {before} committed outputs ({aborted} aborted changelog records): \
         restart restored {}",
        second.log_lines("restored state store").join(" | ")
    );
}

#[test]
fn dedup_emits_each_key_once_across_a_crash() {
    const N: u64 = 6_000;
    const DISTINCT: u64 = 600;
    let env = TestEnv::new("state-dedup");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    // Key d<id % 600> on partition (id % 600) % 3: every key 10 times, always in one partition.
    let inputs: Vec<InputSpec> = (0..N)
        .map(|id| {
            let key = format!("d{}", id % DISTINCT);
            InputSpec::standard(id, ((id % DISTINCT) % PARTITIONS as u64) as i32)
                .with_key(Some(key.as_bytes()))
        })
        .collect();
    produce(&input, &inputs[..N as usize / 2]);
    env.delete_later(&format!("{}-dedup-seen-changelog", env.name("group")));
    let pipeline = env.pipeline(&[&input], &output).batch(100, 100).transform(
        "dedup",
        Plugin::dedup(),
        table(&[("retention_ms", Value::Integer(3_600_000))]),
    );
    let mut first = env.spawn(&pipeline, "0");
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    // The crash comes between the two halves: the second half repeats every key again.
    first.kill9();
    produce(&input, &inputs[N as usize / 2..]);
    let mut second = env.spawn(&pipeline, "0");
    stop(&mut second, &pipeline, &input);

    let committed = read_topic(&output, Isolation::ReadCommitted);
    let mut ids: Vec<u64> = committed
        .iter()
        .map(|r| r.test_id().expect("a test id"))
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..DISTINCT).collect::<Vec<_>>(),
        "each key once: its first record"
    );
}

#[test]
fn a_failed_batch_rolls_its_state_back() {
    const N: u64 = 900;
    let env = TestEnv::new("state-rollback");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    produce(&input, &count_inputs(0..N));
    // The count puts, then the fault stage fails the batch holding key c7 twice; the retry (and a
    // count that had kept the aborted puts would be off by the batch's records of each key) must
    // count every key exactly.
    let pipeline = count_pipeline(&env, &input, &output)
        .retries(5, 50, 200)
        .transform(
            "fail",
            Plugin::fault(),
            table(&[
                ("action", Value::String("error".into())),
                ("key_equals", Value::String("c7".into())),
                ("times", Value::Integer(2)),
            ]),
        );
    let mut txform = env.spawn(&pipeline, "0");
    stop(&mut txform, &pipeline, &input);
    assert_eq!(
        txform.log_lines("aborted batch at").len(),
        2,
        "two aborted attempts"
    );
    let committed = read_topic(&output, Isolation::ReadCommitted);
    assert_eq!(committed.len() as u64, N);
    assert_eq!(assert_exact_counts(&committed), records_per_key(0..N));
}

/// The sum of the changelog records the `restored state store` lines of `txform` report.
fn restored_records(txform: &Txform) -> (u64, Vec<String>) {
    let lines = txform.log_lines("restored state store `counts`");
    let total = lines
        .iter()
        .map(|line| {
            let (_, rest) = line.split_once(": ").expect("restore line");
            rest.split(' ')
                .next()
                .expect("a count")
                .parse::<u64>()
                .expect("a number")
        })
        .sum();
    (total, lines)
}

#[test]
fn restore_reads_only_what_the_local_store_missed() {
    const N: u64 = 3_000;
    let env = TestEnv::new("state-restore");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let pipeline = count_pipeline(&env, &input, &output);
    let changelog = Topic {
        name: format!("{}-count-counts-changelog", pipeline.group_id),
        partitions: PARTITIONS,
    };

    produce(&input, &count_inputs(0..N));
    let mut first = env.spawn(&pipeline, "0");
    stop(&mut first, &pipeline, &input);
    let (fresh, _) = restored_records(&first);
    assert_eq!(fresh, 0, "a new changelog has nothing to restore");

    // Local store intact: the restart reads nothing from the changelog.
    produce(&input, &count_inputs(N..N + KEYS));
    let mut intact = env.spawn(&pipeline, "0");
    stop(&mut intact, &pipeline, &input);
    let (read_intact, intact_lines) = restored_records(&intact);
    assert_eq!(intact_lines.len(), PARTITIONS as usize, "{intact_lines:?}");
    assert_eq!(read_intact, 0, "{intact_lines:?}");

    // Local store deleted: the restart reads the whole changelog.
    let changelog_records = read_topic(&changelog, Isolation::ReadCommitted).len() as u64;
    std::fs::remove_dir_all(env.path("state").join(pipeline.transactional_id("0")))
        .expect("delete the local store");
    produce(&input, &count_inputs(N + KEYS..N + 2 * KEYS));
    let mut deleted = env.spawn(&pipeline, "0");
    stop(&mut deleted, &pipeline, &input);
    let (read_deleted, deleted_lines) = restored_records(&deleted);
    assert_eq!(read_deleted, changelog_records, "{deleted_lines:?}");
    eprintln!("restore, local store intact: {intact_lines:?}");
    eprintln!("restore, local store deleted: {deleted_lines:?}");

    let committed = read_topic(&output, Isolation::ReadCommitted);
    assert_eq!(
        assert_exact_counts(&committed),
        records_per_key(0..N + 2 * KEYS)
    );
}

#[test]
fn a_misconfigured_changelog_is_refused() {
    let env = TestEnv::new("state-changelog");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let pipeline = count_pipeline(&env, &input, &output);
    let name = format!("{}-count-counts-changelog", pipeline.group_id);
    let file = env.write_pipeline(&pipeline, "pipeline.toml");
    let line = std::fs::read_to_string(&file)
        .expect("the pipeline file")
        .lines()
        .position(|l| l == "[[transform]]")
        .expect("the count's [[transform]] line")
        + 1;
    let location = format!("{}:{line}", file.display());

    env.create_topic_with(
        "group-count-counts-changelog",
        PARTITIONS,
        &[("cleanup.policy", "delete")],
    );
    let mut txform = env.spawn_file(&file, "0");
    txform.expect_exit_code(2, EXIT_TIMEOUT);
    assert_eq!(
        txform.error_messages(),
        [format!(
            "txform: cannot start: {location}: transform `count`: changelog topic {name:?} of state store \
             `counts` has cleanup.policy=delete; a changelog must be compacted (cleanup.policy=compact)"
        )]
    );
}

#[test]
fn a_changelog_with_fewer_partitions_is_refused() {
    let env = TestEnv::new("state-fewer");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let pipeline = count_pipeline(&env, &input, &output);
    let name = format!("{}-count-counts-changelog", pipeline.group_id);
    env.create_topic_with(
        "group-count-counts-changelog",
        1,
        &[("cleanup.policy", "compact")],
    );
    let mut txform = env.spawn(&pipeline, "0");
    txform.expect_exit_code(2, EXIT_TIMEOUT);
    let errors = txform.error_messages();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].ends_with(&format!(
            ": transform `count`: changelog topic {name:?} of state store `counts` has 1 \
             partitions, fewer than the {PARTITIONS} of source topic {:?}; delete it (txform \
             re-creates it) or add partitions",
            input.name
        )),
        "{errors:?}"
    );
}

/// Produces inputs `id` (key `c<id % 60>` on partition `id % 6`) in chunks of 12 every 50 ms from
/// `first` until `stop`; returns how many.
fn produce_counted_until(
    input: Topic,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let producer = txform_tests::InputProducer::new(&input);
        let mut id = 0u64;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let chunk: Vec<InputSpec> = (id..id + 12)
                .map(|i| {
                    let key = format!("c{}", i % 60);
                    InputSpec::standard(i, (i % 6) as i32).with_key(Some(key.as_bytes()))
                })
                .collect();
            producer.produce(&chunk);
            id += 12;
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        id
    })
}

#[test]
fn state_follows_partitions_across_rebalances_of_three_instances() {
    let env = TestEnv::new("state-rebalance");
    let input = env.create_topic("in", 6);
    let output = env.create_topic("out", 6);
    let mut pipeline = count_pipeline(&env, &input, &output)
        // A killed instance's open transaction ends (aborted) soon, so its partitions move on.
        .producer_property("transaction.timeout.ms", 10_000);
    pipeline.static_membership = false;
    let config = env.write_pipeline(&pipeline, "pipeline.toml");
    let stop_input = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = produce_counted_until(input.clone(), std::sync::Arc::clone(&stop_input));

    // Progress while inputs keep coming: `txform` committed 20 more transactions.
    let progress = |txform: &mut Txform| {
        let done = txform.log_lines(COMMITTED).len();
        txform.wait_for_log_count(COMMITTED, done + 20, PROCESS_TIMEOUT);
    };
    let mut a = env.spawn_file(&config, "0");
    progress(&mut a);
    // Two join.
    let mut b = env.spawn_file(&config, "1");
    let mut c = env.spawn_file(&config, "2");
    b.wait_for_log("partitions assigned", PROCESS_TIMEOUT);
    c.wait_for_log("partitions assigned", PROCESS_TIMEOUT);
    b.wait_for_log("restored state store", PROCESS_TIMEOUT);
    progress(&mut b);
    // One is killed (its partitions move after its session times out), then comes back.
    b.kill9();
    let c_assigned = c.log_lines("partitions assigned").len();
    c.wait_for_log_count("partitions assigned", c_assigned + 1, PROCESS_TIMEOUT);
    progress(&mut c);
    let mut b = env.spawn_file(&config, "1");
    b.wait_for_log("restored state store", PROCESS_TIMEOUT);
    progress(&mut b);
    // One leaves cleanly.
    c.terminate();
    c.expect_exit_code(0, EXIT_TIMEOUT);
    progress(&mut a);

    stop_input.store(true, std::sync::atomic::Ordering::SeqCst);
    let n = producer.join().expect("the input producer");
    wait_for_committed(&output, n as usize, PROCESS_TIMEOUT);
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    for txform in [&mut a, &mut b] {
        txform.terminate();
        txform.expect_exit_code(0, EXIT_TIMEOUT);
    }
    let committed = read_topic(&output, Isolation::ReadCommitted);
    assert_eq!(committed.len() as u64, n, "one count per input");
    let mut expected = BTreeMap::new();
    for id in 0..n {
        *expected.entry(format!("c{}", id % 60)).or_insert(0u64) += 1;
    }
    assert_eq!(assert_exact_counts(&committed), expected);
    let restores: Vec<String> = [&a, &b, &c]
        .iter()
        .flat_map(|t| t.log_lines("restored state store"))
        .filter(|l| !l.contains(": 0 changelog record(s)"))
        .collect();
    eprintln!("{n} inputs over 3 instances; restores that read records: {restores:?}");
}
