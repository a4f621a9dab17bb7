//! Forwarded records (plugin-api 0.2.1's `Output::forward`) arrive exactly as they were fetched. A
//! chain of json-transform (a filter: the compact inputs it keeps keep their bytes, so it forwards
//! them; a spaced one it re-serializes and emits) and passthrough (forwards every input to another
//! topic, keeping the partition): so the sink produces forwards of source records, and a forward of a
//! record the first stage built. Key, value, headers (non-UTF-8 names byte for byte, order kept) and
//! the source's timestamp must be the source's; filtered records are absent; per-partition order holds.

use std::time::{SystemTime, UNIX_EPOCH};

use toml::Value;
use txform_tests::{
    by_partition, content_of, produce, read_topic, table, wait_for_committed, InputSpec, Isolation,
    Plugin, Record, TestEnv,
};

use crate::{stop_when_consumed, PROCESS_TIMEOUT};

const N: u64 = 60;
const PARTITIONS: i32 = 2;

/// Input `id`: the standard one with a timestamp an hour in the past; every 3rd carries a `drop`
/// field (filtered out), every 5th other one a spaced value (re-serialized), odd ones headers with
/// non-UTF-8 names, every 7th a binary key.
fn input(id: u64, base_timestamp: i64) -> InputSpec {
    let mut spec = InputSpec::standard(id, (id % PARTITIONS as u64) as i32)
        .with_timestamp(base_timestamp + id as i64 * 1000);
    if id % 3 == 0 {
        spec = spec.with_value(format!("{{\"id\":{id},\"drop\":true}}"));
    } else if id % 5 == 0 {
        spec = spec.with_value(format!("{{ \"id\": {id} }}"));
    }
    if id % 2 == 1 {
        spec = spec
            .with_header(&b"bad\xff\xfe-key"[..], Some(b"v0"))
            .with_header(&b"x\xffy"[..], Some(b"v1"))
            .with_header(&b"x\xfey"[..], None)
            .with_header("after", Some(b"ok"));
    }
    if id % 7 == 0 {
        spec = spec.with_key(Some(&[0, 0xff, id as u8]));
    }
    spec
}

/// What the chain makes of a produced input: nothing for a dropped one, the compact form of a
/// spaced value, else the record itself.
fn expected(record: &Record) -> Option<Record> {
    let id = record.test_id().expect("test id");
    if id % 3 == 0 {
        return None;
    }
    let mut out = record.clone();
    if id % 5 == 0 {
        out.value = Some(format!("{{\"id\":{id}}}").into_bytes());
    }
    Some(out)
}

#[test]
fn forwarded_records_keep_key_value_headers_and_timestamp() {
    let env = TestEnv::new("forward");
    let input_topic = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let routed = env.create_topic("routed", PARTITIONS);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as i64;
    let inputs: Vec<InputSpec> = (0..N).map(|id| input(id, now - 3_600_000)).collect();
    let produced = produce(&input_topic, &inputs);
    let expected: Vec<Record> = produced.iter().filter_map(expected).collect();
    assert_eq!(expected.len(), 40, "ids not divisible by 3");

    let filter = table(&[("field", "drop".into()), ("exists", false.into())]);
    let pipeline = env
        .pipeline(&[&input_topic], &output)
        .transform(
            "filter",
            Plugin::json_transform(),
            table(&[("filter", Value::Array(vec![filter.into()]))]),
        )
        .transform(
            "route",
            Plugin::passthrough(),
            table(&[
                ("keep_partition", true.into()),
                ("topic", routed.name.clone().into()),
            ]),
        );
    let mut txform = env.spawn(&pipeline, "0");
    wait_for_committed(&routed, expected.len(), PROCESS_TIMEOUT);
    stop_when_consumed(&mut txform, &pipeline, &input_topic);

    assert_eq!(
        read_topic(&output, Isolation::ReadUncommitted),
        vec![],
        "nothing in sink.topic"
    );
    let actual = by_partition(&read_topic(&routed, Isolation::ReadCommitted), PARTITIONS);
    let expected = by_partition(&expected, PARTITIONS);
    for p in 0..PARTITIONS as usize {
        let what = |records: &[Record]| -> Vec<_> {
            records
                .iter()
                .map(|r| (r.test_id(), content_of(r), r.timestamp))
                .collect()
        };
        assert_eq!(
            what(&actual[p]),
            what(&expected[p]),
            "partition {p}: (id, (key, value, headers), timestamp) in order"
        );
    }
}
