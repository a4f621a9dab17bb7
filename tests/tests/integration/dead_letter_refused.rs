//! A dead-letter record the broker refuses (larger than the dead-letter topic's `max.message.bytes`,
//! though the producer would send it): txform cannot set the record aside, so it stops with exit 3
//! naming the record and Kafka's reason (after retrying and isolating it like a record Kafka
//! refused: the refusal names the record, not which of its writes was refused); nothing is lost: the batch's transaction is aborted and
//! the group's offsets stay before it, so a restart (after fixing the topic) processes it again.

use txform_tests::dead_letter::{spawn_with_policy, ErrorPolicy};
use txform_tests::{
    assert_same_content, big_value, committed_offsets, end_offsets, last_stable_offsets, produce,
    read_topic, table, InputSpec, Isolation, Plugin, TestEnv,
};

use crate::PROCESS_TIMEOUT;

const N: u64 = 10;
const BIG: u64 = 6;

#[test]
fn dead_letter_record_the_broker_refuses_stops_txform_and_loses_nothing() {
    let env = TestEnv::new("dlq-refused-by-broker");
    let input = env.create_topic("in", 1);
    let output = env.create_topic("out", 1);
    let dlq = env.create_topic_with("dlq", 1, &[("max.message.bytes", "2000")]);
    let inputs: Vec<InputSpec> = (0..N)
        .map(|id| match id {
            BIG => InputSpec::standard(id, 0).with_value(big_value(id, 5000)),
            _ => InputSpec::standard(id, 0),
        })
        .collect();
    let produced = produce(&input, &inputs);
    let fault = table(&[
        ("action", "reject".into()),
        ("key_equals", format!("k{BIG:06}").into()),
    ]);
    let pipeline = env
        .pipeline(&[&input], &output)
        .batch(1000, 500)
        .retries(1, 10, 10)
        .transform("vet", Plugin::fault(), fault);
    let mut txform = spawn_with_policy(&env, &pipeline, &ErrorPolicy::dead_letter(&dlq), "0");
    txform.expect_exit_code(3, PROCESS_TIMEOUT);

    let source = format!("{}/0@{BIG}", input.name);
    assert_eq!(
        txform.error_messages(),
        [format!(
            "txform: fatal Kafka error, stopping: cannot set aside {source}: transform `sink` \
             (txform 0.1.0): Kafka refused an output (Message production error: MessageSizeTooLarge \
             (Broker: Message size too large); first refused output from {source})"
        )],
        "one error line naming the record and Kafka's reason"
    );
    // Nothing lost: the records before it are committed (with their offsets), it and those after
    // it are not, and no transaction is left open.
    assert_eq!(
        committed_offsets(&pipeline.group_id, &input),
        [Some(BIG as i64)],
        "the group's offset stops at the record"
    );
    assert_same_content(
        &produced[..BIG as usize],
        &read_topic(&output, Isolation::ReadCommitted),
        "read_committed output",
    );
    assert_eq!(read_topic(&dlq, Isolation::ReadCommitted), vec![]);
    for topic in [&output, &dlq] {
        assert_eq!(
            last_stable_offsets(topic),
            end_offsets(topic),
            "no open transaction on {}",
            topic.name
        );
    }
}
