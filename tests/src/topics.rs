//! Topics: creation (waiting until every partition has a leader), end offsets and a group's committed
//! offsets.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::{client_config, ensure_broker};
use txform::kafka::admin::block_on;

/// A topic created by a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    pub partitions: i32,
}

const METADATA_TIMEOUT: Duration = Duration::from_secs(15);

/// Creates `name` with `partitions` partitions (replication 1) and the given topic configs, then waits
/// until the broker reports every partition with a leader. Panics if the topic exists already.
pub fn create_topic(name: &str, partitions: i32, configs: &[(&str, &str)]) -> Topic {
    ensure_broker();
    txform::kafka::admin::create_topic(&client_config(), name, partitions, configs)
        .unwrap_or_else(|e| panic!("{e}"));
    Topic {
        name: name.to_string(),
        partitions,
    }
}

fn metadata_client() -> BaseConsumer {
    client_config().create().expect("create a metadata client")
}

/// The number of partitions of an existing topic.
pub fn partition_count(name: &str) -> i32 {
    let consumer = metadata_client();
    let metadata = consumer
        .fetch_metadata(Some(name), METADATA_TIMEOUT)
        .unwrap_or_else(|e| panic!("metadata of {name}: {e}"));
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == name)
        .unwrap_or_else(|| panic!("topic {name} not in the metadata"));
    assert!(
        topic.error().is_none(),
        "metadata of {name}: {:?}",
        topic.error()
    );
    topic.partitions().len() as i32
}

/// The high watermark (end offset, control records included) of each partition, by partition number:
/// where read_uncommitted readers stop.
pub fn end_offsets(topic: &Topic) -> Vec<i64> {
    watermarks(topic, "read_uncommitted")
}

/// The last stable offset of each partition, by partition number: where read_committed readers stop.
/// Lower than [`end_offsets`] exactly when a transaction with records in the partition is open.
pub fn last_stable_offsets(topic: &Topic) -> Vec<i64> {
    watermarks(topic, "read_committed")
}

/// The latest offsets (ListOffsets with the client's isolation level) of every partition.
fn watermarks(topic: &Topic, isolation: &str) -> Vec<i64> {
    let consumer: BaseConsumer = client_config()
        .set("isolation.level", isolation)
        .create()
        .expect("create a watermark client");
    (0..topic.partitions)
        .map(|p| {
            let (_low, high) = consumer
                .fetch_watermarks(&topic.name, p, METADATA_TIMEOUT)
                .unwrap_or_else(|e| panic!("{isolation} watermarks of {}/{p}: {e}", topic.name));
            high
        })
        .collect()
}

/// The offsets `group` has committed for each partition of `topic` (`None`: nothing committed).
///
/// Offsets sent in a transaction count once the transaction is committed; offsets of a transaction
/// still open are not waited for (a read_committed client would block on them until the transaction
/// ends, which after a `kill -9` means until the transaction times out).
pub fn committed_offsets(group: &str, topic: &Topic) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = client_config()
        .set("group.id", group)
        .set("isolation.level", "read_uncommitted")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create a consumer to read committed offsets");
    let mut tpl = TopicPartitionList::new();
    for p in 0..topic.partitions {
        tpl.add_partition(&topic.name, p);
    }
    let committed = consumer
        .committed_offsets(tpl, METADATA_TIMEOUT)
        .unwrap_or_else(|e| panic!("committed offsets of group {group} on {}: {e}", topic.name));
    (0..topic.partitions)
        .map(|p| {
            let element = committed
                .find_partition(&topic.name, p)
                .unwrap_or_else(|| panic!("no committed-offset entry for {}/{p}", topic.name));
            match element.offset() {
                Offset::Offset(offset) => Some(offset),
                Offset::Invalid => None,
                other => panic!(
                    "unexpected committed offset {other:?} for {}/{p}",
                    topic.name
                ),
            }
        })
        .collect()
}

/// Deletes a topic; used to clean up after a successful test. Errors are ignored.
pub fn delete_topic_quietly(name: &str) {
    let Ok(admin) = client_config().create::<AdminClient<DefaultClientContext>>() else {
        return;
    };
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
    let _ = block_on(admin.delete_topics(&[name], &options));
}

/// Polls until `group`'s committed offsets on `topic` are the topic's end offsets (everything
/// consumed and committed); returns them. Panics after `timeout` with the last offsets seen.
pub fn wait_for_group_at_end(group: &str, topic: &Topic, timeout: Duration) -> Vec<i64> {
    let ends = end_offsets(topic);
    let expected: Vec<Option<i64>> = ends.iter().copied().map(Some).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let committed = committed_offsets(group, topic);
        if committed == expected {
            return ends;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} committed {committed:?} on {} after {timeout:?}, expected the end offsets {ends:?}",
            topic.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
