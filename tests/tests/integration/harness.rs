//! The harness itself against the broker: what is produced is read back, exactly, at both isolation
//! levels, and a fresh group has no committed offsets.

use txform_tests::{
    assert_same_content, committed_offsets, end_offsets, produce, read_topic, standard_inputs,
    Isolation, TestEnv,
};

#[test]
fn produced_records_read_back_exactly() {
    let env = TestEnv::new("harness");
    let topic = env.create_topic("t", 3);
    let inputs = standard_inputs(30, 3);
    let produced = produce(&topic, &inputs);
    for (i, record) in produced.iter().enumerate() {
        assert_eq!(record.partition, (i % 3) as i32);
        assert_eq!(
            record.offset,
            (i / 3) as i64,
            "fresh topic: offsets start at 0"
        );
        assert_eq!(record.test_id(), Some(i as u64));
    }
    let mut expected = produced.clone();
    expected.sort_by_key(|r| (r.partition, r.offset));
    for isolation in [Isolation::ReadUncommitted, Isolation::ReadCommitted] {
        let read = read_topic(&topic, isolation);
        assert_same_content(&expected, &read, &format!("{isolation:?} read-back"));
        let offsets: Vec<(i32, i64)> = read.iter().map(|r| (r.partition, r.offset)).collect();
        let expected_offsets: Vec<(i32, i64)> =
            expected.iter().map(|r| (r.partition, r.offset)).collect();
        assert_eq!(offsets, expected_offsets);
    }
    assert_eq!(end_offsets(&topic), vec![10, 10, 10]);
    assert_eq!(
        committed_offsets(&env.name("nobody"), &topic),
        vec![None, None, None]
    );
}
