//! Changelog topics: one per store, named `<group_id>-<transform>-<store>-changelog`, compacted,
//! with at least as many partitions as the source (changelog partition = source partition number).
//! Created at start-up when missing; one that exists but is not compacted, or has fewer partitions,
//! is refused, naming the transform's line.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer as _;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{topic_name_problem, Pipeline};
use crate::kafka::admin::{block_on, create_replicated_topic, AdminError};
use crate::kafka::{admin_config, Observer};
use crate::plugin::Chain;

const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// One state store of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// Index of the transform in the chain.
    pub stage: usize,
    pub transform: String,
    pub store: String,
    /// Its changelog topic, which also names the store in the local store.
    pub topic: String,
    /// `file:line` of the transform, for problems with the store.
    pub location: String,
}

/// The changelog topic of `store` of transform `transform` in a pipeline consuming as `group_id`.
pub fn changelog_topic(group_id: &str, transform: &str, store: &str) -> String {
    format!("{group_id}-{transform}-{store}-changelog")
}

/// Every store the chain declared, with its changelog topic; an invalid topic name, a store
/// declared twice by one transform, a pipeline that is not exactly-once or reads several source
/// topics are refused with the transform's line.
pub fn stores_of(pipeline: &Pipeline, chain: &Chain) -> Result<Vec<StoreSpec>, String> {
    let mut specs: Vec<StoreSpec> = Vec::new();
    for (stage, transform, store) in chain.stores() {
        let line = pipeline.transforms.get(stage).map_or(0, |t| t.line);
        let location = pipeline.location(line);
        let refuse = |why: String| format!("{location}: transform `{transform}`: {why}");
        if pipeline.transaction.guarantee != crate::config::Guarantee::ExactlyOnce {
            return Err(refuse(format!(
                "state store `{store}` needs transaction.guarantee = \"exactly_once\" (its changes \
                 commit in the transaction)"
            )));
        }
        if pipeline.source.topics.len() != 1 {
            return Err(refuse(format!(
                "state store `{store}` needs exactly one source topic (its changelog is \
                 partitioned like the source), not {}",
                pipeline.source.topics.len()
            )));
        }
        let topic = changelog_topic(&pipeline.source.group_id, transform, store);
        if let Some(problem) = topic_name_problem(&topic) {
            return Err(refuse(format!(
                "the changelog topic {topic:?} of state store `{store}` {problem}"
            )));
        }
        if specs.iter().any(|s| s.topic == topic) {
            return Err(refuse(format!("state store `{store}` is declared twice")));
        }
        specs.push(StoreSpec {
            stage,
            transform: transform.to_string(),
            store: store.to_string(),
            topic,
            location,
        });
    }
    Ok(specs)
}

/// Creates the missing changelog topics and checks the existing ones; returns the source's
/// partition count.
pub fn ensure_changelogs(
    pipeline: &Pipeline,
    specs: &[StoreSpec],
    client: &Observer,
) -> Result<i32, String> {
    let source = &pipeline.source.topics[0];
    let partitions = partition_count(client, source)?
        .ok_or_else(|| format!("source topic {source:?} does not exist"))?;
    let config = admin_config(pipeline);
    for spec in specs {
        let refuse = |why: String| {
            format!(
                "{}: transform `{}`: changelog topic {:?} of state store `{}` {why}",
                spec.location, spec.transform, spec.topic, spec.store
            )
        };
        let count = match partition_count(client, &spec.topic)? {
            Some(count) => count,
            None => {
                let replication = pipeline.state.replication_factor.unwrap_or(-1);
                match create_replicated_topic(
                    &config,
                    &spec.topic,
                    partitions,
                    replication,
                    &[("cleanup.policy", "compact")],
                ) {
                    Ok(()) => {
                        log::info!(
                            "created changelog topic {} ({partitions} partitions, cleanup.policy=compact)",
                            spec.topic
                        );
                        continue;
                    }
                    // Instances starting together race to create it: the loser checks the
                    // winner's topic like any existing one.
                    Err(AdminError::Refused {
                        code: RDKafkaErrorCode::TopicAlreadyExists,
                        ..
                    }) => created_by_another(client, &spec.topic)?.ok_or_else(|| {
                        refuse(
                            "was created by another instance, but its metadata never showed it"
                                .into(),
                        )
                    })?,
                    Err(e) => return Err(refuse(format!("cannot be created: {e}"))),
                }
            }
        };
        if count < partitions {
            return Err(refuse(format!(
                "has {count} partitions, fewer than the {partitions} of source topic \
                 {source:?}; delete it (txform re-creates it) or add partitions"
            )));
        }
        let policy = cleanup_policy(&config, &spec.topic).map_err(&refuse)?;
        if !policy.split(',').any(|p| p.trim() == "compact") {
            return Err(refuse(format!(
                "has cleanup.policy={policy}; a changelog must be compacted \
                 (cleanup.policy=compact)"
            )));
        }
    }
    Ok(partitions)
}

/// The partition count of a topic another instance has just created: its metadata may take a moment
/// to reach the broker this client asks.
fn created_by_another(client: &Observer, topic: &str) -> Result<Option<i32>, String> {
    for _ in 0..CREATED_METADATA_TRIES {
        if let Some(count) = partition_count(client, topic)? {
            return Ok(Some(count));
        }
        std::thread::sleep(CREATED_METADATA_PAUSE);
    }
    Ok(None)
}

/// How often, and how far apart, the metadata of a topic another instance created is asked for.
const CREATED_METADATA_TRIES: u32 = 25;
const CREATED_METADATA_PAUSE: Duration = Duration::from_millis(200);

/// The partition count of `topic`, `None` when the cluster does not have it.
fn partition_count(client: &Observer, topic: &str) -> Result<Option<i32>, String> {
    let metadata = client
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| format!("cannot read the metadata of topic {topic:?}: {e}"))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

/// The topic's `cleanup.policy` as the broker reports it.
fn cleanup_policy(config: &rdkafka::ClientConfig, topic: &str) -> Result<String, String> {
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| format!("cannot be described: {e}"))?;
    let options = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
    let results = block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options))
        .map_err(|e| format!("cannot be described: {e}"))?;
    let resource = results
        .into_iter()
        .next()
        .ok_or("cannot be described: no answer")?
        .map_err(|code| format!("cannot be described: {code}"))?;
    Ok(resource
        .get("cleanup.policy")
        .and_then(|entry| entry.value.clone())
        .unwrap_or_else(|| "delete".to_string()))
}

#[cfg(test)]
mod tests {
    use super::changelog_topic;

    #[test]
    fn changelog_names_group_transform_and_store() {
        assert_eq!(
            changelog_topic("orders", "count", "counts"),
            "orders-count-counts-changelog"
        );
    }
}
