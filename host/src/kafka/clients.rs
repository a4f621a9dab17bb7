//! Builds the consumer and the producer from the pipeline's configuration.
//!
//! User properties are passed through to librdkafka unchanged; the properties that exactly-once depends
//! on are set here, last, and the config module refuses user values for them.

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::ThreadedProducer;

use crate::config::{Guarantee, Pipeline};

use super::delivery::DeliveryTracker;
use super::incarnation::Incarnation;
use super::rebalance::RebalanceTracker;

pub type Consumer = BaseConsumer<RebalanceTracker>;
/// A client that never joins the group (see [`build_observer`]).
pub type Observer = BaseConsumer<RebalanceTracker>;
/// Threaded: its own thread serves delivery reports, so the pipeline never polls the producer and
/// blocking transactional calls (which wait for reports) can use librdkafka's recommended
/// infinite time-out.
pub type Producer = ThreadedProducer<DeliveryTracker>;

/// How often librdkafka reports consumer lag when metrics are served.
const STATISTICS_INTERVAL_MS: &str = "5000";

/// A group member that reads only committed data and never commits on its own. Its `client.id`
/// names this process's incarnation, which the group reports to whoever it fences.
pub fn build_consumer(pipeline: &Pipeline, me: Incarnation) -> anyhow::Result<Consumer> {
    let mut config = consumer_config(pipeline);
    if pipeline.metrics.listen.is_some() {
        // The source of `txform_consumer_lag`.
        config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    }
    config
        .set("client.id", me.client_id(&pipeline.transactional_id()))
        .create_with_context(RebalanceTracker::default())
        .context("cannot create the Kafka consumer")
}

/// A transactional producer whose id is stable per instance, so a restarted instance fences its dead
/// predecessor (and aborts its open transaction) at `init_transactions`.
pub fn build_producer(pipeline: &Pipeline, me: Incarnation) -> anyhow::Result<Producer> {
    producer_config(pipeline)
        .set("client.id", me.client_id(&pipeline.transactional_id()))
        .create_with_context(DeliveryTracker::default())
        .context("cannot create the Kafka producer")
}

/// A client that only asks the cluster questions (who is in the group): it never subscribes, so it
/// never joins the group, and it works when the pipeline's own clients are fenced.
pub fn build_observer(pipeline: &Pipeline) -> anyhow::Result<Observer> {
    let mut config = consumer_config(pipeline);
    config.remove("group.instance.id");
    config
        .set(
            "client.id",
            format!("{}:observer", pipeline.transactional_id()),
        )
        .create_with_context(RebalanceTracker::default())
        .context("cannot create the Kafka client that describes the group")
}

fn consumer_config(pipeline: &Pipeline) -> ClientConfig {
    let mut config = ClientConfig::new();
    // Defaults a user may override: start from the beginning when the group has no offsets, and
    // resume fetching a partition soon after its prefetch queue drained (librdkafka waits 1 s by
    // default, which stalls a copier whose batches empty the queue every ~100 ms).
    config.set("auto.offset.reset", "earliest");
    config.set("fetch.queue.backoff.ms", "10");
    apply(&mut config, &pipeline.kafka.common);
    apply(&mut config, &pipeline.kafka.consumer);
    config
        .set("group.id", &pipeline.source.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed");
    if pipeline.transaction.static_membership {
        // A restarted instance takes over its predecessor's partitions at once instead of waiting for
        // the dead member's session to time out.
        config.set("group.instance.id", pipeline.transactional_id());
    }
    config
}

fn producer_config(pipeline: &Pipeline) -> ClientConfig {
    let mut config = ClientConfig::new();
    // Default a user may override: right after a commit the broker answers the next transaction's
    // first partition registration with CONCURRENT_TRANSACTIONS; librdkafka's 100 ms default retry
    // backoff then caps a transaction rate near 10/s (the Java client retries after 20 ms).
    config.set("retry.backoff.ms", "10");
    apply(&mut config, &pipeline.kafka.common);
    apply(&mut config, &pipeline.kafka.producer);
    config.set("enable.idempotence", "true");
    if pipeline.transaction.guarantee == Guarantee::ExactlyOnce {
        config.set("transactional.id", pipeline.transactional_id());
    }
    config
}

fn apply(config: &mut ClientConfig, properties: &[(String, String)]) {
    for (key, value) in properties {
        config.set(key, value);
    }
}
