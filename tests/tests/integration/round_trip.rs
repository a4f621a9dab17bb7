//! What the passthrough plugin copies comes out exactly as it went in: keys (null ones included),
//! tombstones (null values), several, duplicate, binary, empty and null-valued headers in order,
//! and the source's timestamps; with `keep_partition = false` the producer's partitioner places
//! records by key, and passthrough's `topic` option sends every output to another topic.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use txform_tests::{
    assert_same_content, by_partition, content_of, produce, read_topic, table, wait_for_committed,
    InputSpec, Isolation, Plugin, Record, TestEnv,
};

use crate::{stop_when_consumed, PROCESS_TIMEOUT};

const N: u64 = 120;
const PARTITIONS: i32 = 3;

/// Input `id`, varied so that every kind of key, value, header and timestamp occurs: no key (every
/// 5th), a binary key (every 7th), one of 4 keys shared by the other odd ids, a tombstone (every
/// 4th), a duplicated header, a binary header
/// value, an empty and a null header value, and a timestamp set by the producer of the input, an
/// hour in the past plus one second per id (never the time the record was written).
fn varied_input(id: u64, base_timestamp: i64) -> InputSpec {
    let mut spec = InputSpec::standard(id, (id % PARTITIONS as u64) as i32)
        .with_timestamp(base_timestamp + id as i64 * 1000);
    if id % 5 == 0 {
        spec = spec.with_key(None);
    } else if id % 7 == 0 {
        spec = spec.with_key(Some(&[0, 0xff, id as u8, 0x80]));
    } else if id % 2 == 1 {
        spec = spec.with_key(Some(format!("shared-{}", id % 8 / 2).as_bytes()));
    }
    if id % 4 == 0 {
        spec = spec.without_value();
    }
    if id % 2 == 0 {
        spec = spec
            .with_header("dup", Some(b"first"))
            .with_header("dup", Some(b"second"));
    }
    if id % 3 == 0 {
        spec = spec.with_header("binary", Some(&[0, 0x9f, 0xff, 0xc3]));
    }
    match id % 6 {
        1 => spec.with_header("empty", Some(b"")),
        2 => spec.with_header("null", None),
        _ => spec,
    }
}

fn varied_inputs() -> Vec<InputSpec> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as i64;
    let base = now - 3_600_000;
    (0..N).map(|id| varied_input(id, base)).collect()
}

#[test]
fn keys_tombstones_headers_and_timestamps_round_trip_exactly() {
    let env = TestEnv::new("round-trip");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let produced = produce(&input, &varied_inputs());
    assert!(
        produced.iter().all(|r| r.timestamp.is_some()),
        "inputs have their timestamps"
    );
    let pipeline = env.pipeline(&[&input], &output).transform(
        "copy",
        Plugin::passthrough(),
        table(&[("keep_partition", true.into())]),
    );
    let mut txform = env.spawn(&pipeline, "0");
    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    stop_when_consumed(&mut txform, &pipeline, &input);

    let expected = by_partition(&produced, PARTITIONS);
    let actual = by_partition(&read_topic(&output, Isolation::ReadCommitted), PARTITIONS);
    for p in 0..PARTITIONS as usize {
        assert_same_content(&expected[p], &actual[p], &format!("output partition {p}"));
    }
}

/// `keep_partition = false` and `topic = <other>`: every output goes to the other topic (none to
/// `sink.topic`), once, unchanged; the producer's partitioner, not the source partition, places them:
/// all records of one key in one partition.
#[test]
fn without_keep_partition_outputs_go_to_the_plugin_topic_by_key() {
    let env = TestEnv::new("routed");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let routed = env.create_topic("routed", PARTITIONS);
    let produced = produce(&input, &varied_inputs());
    let pipeline = env.pipeline(&[&input], &output).transform(
        "route",
        Plugin::passthrough(),
        table(&[
            ("keep_partition", false.into()),
            ("topic", routed.name.clone().into()),
        ]),
    );
    let mut txform = env.spawn(&pipeline, "0");
    wait_for_committed(&routed, N as usize, PROCESS_TIMEOUT);
    stop_when_consumed(&mut txform, &pipeline, &input);

    assert_eq!(
        read_topic(&output, Isolation::ReadUncommitted),
        vec![],
        "nothing in sink.topic"
    );
    let outputs = read_topic(&routed, Isolation::ReadCommitted);
    // Exactly once each, with the input's key, value, headers and timestamp.
    let by_id = |records: &[Record]| -> BTreeMap<u64, Vec<Record>> {
        let mut map: BTreeMap<u64, Vec<Record>> = BTreeMap::new();
        for r in records {
            map.entry(r.test_id().expect("test id"))
                .or_default()
                .push(r.clone());
        }
        map
    };
    let (inputs, outs) = (by_id(&produced), by_id(&outputs));
    assert_eq!(
        outs.keys().collect::<Vec<_>>(),
        inputs.keys().collect::<Vec<_>>(),
        "every input id once"
    );
    for (id, input_records) in &inputs {
        let out = &outs[id];
        assert_eq!(out.len(), 1, "input {id}: {out:?}");
        assert_eq!(
            (content_of(&out[0]), out[0].timestamp),
            (content_of(&input_records[0]), input_records[0].timestamp),
            "input {id}: key, value, headers, timestamp"
        );
    }
    // Records of one (non-null) key: one partition.
    let mut by_key: BTreeMap<Vec<u8>, Vec<&Record>> = BTreeMap::new();
    for r in &outputs {
        if let Some(key) = &r.key {
            by_key.entry(key.clone()).or_default().push(r);
        }
    }
    let shared: Vec<_> = by_key
        .values()
        .filter(|records| records.len() > 1)
        .collect();
    assert_eq!(shared.len(), 4, "the 4 shared keys");
    for records in shared {
        let partitions: Vec<i32> = records.iter().map(|r| r.partition).collect();
        assert!(
            partitions.windows(2).all(|w| w[0] == w[1]),
            "one key, one partition: {partitions:?}"
        );
        // Their sources were spread over every input partition.
        let sources: std::collections::BTreeSet<u64> = records
            .iter()
            .filter_map(|r| r.test_id())
            .map(|id| id % 3)
            .collect();
        assert!(
            sources.len() > 1,
            "a shared key from several source partitions"
        );
    }
}
