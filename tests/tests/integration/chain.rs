//! A chain of two plugins, json-transform then passthrough: exact output values, keys and headers kept,
//! filtered records absent, partitions and order kept. Also stops the instance with SIGINT.

use toml::Value;
use txform_tests::{
    assert_same_content, by_partition, passthrough_config, produce, read_topic, table,
    wait_for_committed, wait_for_group_at_end, InputSpec, Isolation, Plugin, Record, TestEnv,
};

use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

const N: u64 = 200;
const PARTITIONS: i32 = 2;

fn kind(id: u64) -> &'static str {
    if id % 2 == 0 {
        "even"
    } else {
        "odd"
    }
}

#[test]
fn json_transform_then_passthrough() {
    let env = TestEnv::new("chain");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    // Round robin over 2 partitions puts even ids on partition 0 and odd ids on partition 1; spread
    // them with (id / 2) % 2 so both partitions get both kinds.
    let inputs: Vec<InputSpec> = (0..N)
        .map(|id| {
            InputSpec::standard(id, ((id / 2) % 2) as i32).with_value(format!(
                "{{\"id\":{id},\"seq\":\"id-{id:06}\",\"kind\":\"{}\",\"extra\":{{\"n\":{id}}}}}",
                kind(id)
            ))
        })
        .collect();
    let produced = produce(&input, &inputs);

    let json = table(&[
        (
            "filter",
            Value::Array(vec![table(&[
                ("field", "kind".into()),
                ("equals", "even".into()),
            ])
            .into()]),
        ),
        (
            "select",
            Value::Array(vec!["id".into(), "seq".into(), "kind".into()]),
        ),
        ("rename", table(&[("seq", "label".into())]).into()),
        (
            "set",
            table(&[
                ("kind", "EVEN".into()),
                ("stage", "json".into()),
                ("version", 2.into()),
            ])
            .into(),
        ),
        ("keep_partition", true.into()),
    ]);
    let pipeline = env
        .pipeline(&[&input], &output)
        .transform("reshape", Plugin::json_transform(), json)
        .transform("copy", Plugin::passthrough(), passthrough_config());

    // Expected: only even ids, with the reshaped value; key, headers and partition unchanged.
    let expected: Vec<Record> = produced
        .iter()
        .filter(|r| r.test_id().is_some_and(|id| id % 2 == 0))
        .map(|r| {
            let id = r.test_id().unwrap_or_default();
            Record {
                value: Some(
                    format!("{{\"id\":{id},\"label\":\"id-{id:06}\",\"kind\":\"EVEN\",\"stage\":\"json\",\"version\":2}}")
                        .into_bytes(),
                ),
                ..r.clone()
            }
        })
        .collect();
    assert_eq!(expected.len() as u64, N / 2);

    let mut txform = env.spawn(&pipeline, "0");
    wait_for_committed(&output, expected.len(), PROCESS_TIMEOUT);
    // The outputs are committed; the offsets of trailing filtered-out inputs may come in a later one.
    wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    txform.interrupt();
    txform.expect_exit_code(0, EXIT_TIMEOUT);

    let committed = read_topic(&output, Isolation::ReadCommitted);
    let expected = by_partition(&expected, PARTITIONS);
    let actual = by_partition(&committed, PARTITIONS);
    for p in 0..PARTITIONS as usize {
        assert_same_content(
            &expected[p],
            &actual[p],
            &format!("chain output partition {p}"),
        );
    }
    assert!(
        txform.error_messages().is_empty(),
        "{:?}",
        txform.error_messages()
    );
}
