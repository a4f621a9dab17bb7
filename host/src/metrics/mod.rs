//! What an operator watches: Prometheus metrics, liveness and readiness, served over HTTP.
//!
//! [`Metrics`] is the one place the pipeline counts things: the `stats:` log line reads the same
//! counters the scrape shows, so the two never disagree. Every metric is an atomic or sits behind
//! a lock held only for an in-memory update or encode; the server thread ([`server`]) encodes into
//! a string and writes to the socket after releasing them, so a slow or stuck scraper never holds
//! the copy loop.

mod health;
mod lag;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

pub use health::{Health, Waiting};
pub use lag::{observe_statistics, publish_statistics_to};

use crate::pipeline::{AbortCause, Outcome};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: AbortCause,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    stage: String,
    plugin: String,
    version: String,
}

/// How a fence was answered (`kafka::membership`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum FenceAnswer {
    /// No newer process holds the id: new clients were built.
    rejoined,
    /// A newer process holds the id: this one stops.
    superseded,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FenceLabel {
    pub answer: FenceAnswer,
}

/// The `version` label of `txform_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the process, registered under the `txform_` prefix.
pub struct Metrics {
    registry: Registry,
    pub records_consumed: Counter,
    pub records_produced: Counter,
    pub records_dead_lettered: Counter,
    pub records_skipped: Counter,
    pub transactions_committed: Counter,
    pub transactions_aborted: Family<CauseLabel, Counter>,
    pub retries: Counter,
    pub producer_queue_full_waits: Counter,
    pub transaction_duration: HistogramFamily<OutcomeLabel>,
    pub plugin_call_duration: HistogramFamily<StageLabel>,
    pub batch_records: Histogram,
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    pub assigned_partitions: Gauge,
    pub fence_answers: Family<FenceLabel, Counter>,
    /// Changelog records read by state restores, and the time restores took.
    pub state_restore_records: Counter,
    pub state_restore_duration: Histogram,
    pub health: Health,
}

/// 1 ms to about 65 s: a transaction or a plugin call.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    /// `stages`: `(stage, plugin, version)` of each transform, for `txform_plugin_info`.
    pub fn new<'a>(
        stages: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
        liveness_timeout: Duration,
    ) -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("txform"),
            records_consumed: Counter::default(),
            records_produced: Counter::default(),
            records_dead_lettered: Counter::default(),
            records_skipped: Counter::default(),
            transactions_committed: Counter::default(),
            transactions_aborted: Family::default(),
            retries: Counter::default(),
            producer_queue_full_waits: Counter::default(),
            transaction_duration: Family::new_with_constructor(seconds_histogram),
            plugin_call_duration: Family::new_with_constructor(seconds_histogram),
            batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 18)),
            consumer_lag: Family::default(),
            assigned_partitions: Gauge::default(),
            fence_answers: Family::default(),
            state_restore_records: Counter::default(),
            state_restore_duration: seconds_histogram(),
            health: Health::new(liveness_timeout),
        };
        let registry = &mut metrics.registry;
        let counters = [
            ("records_consumed", "Source records committed (their offsets were committed)", &metrics.records_consumed),
            ("records_produced", "Output records committed to the sink topic", &metrics.records_produced),
            ("records_dead_lettered", "Source records committed to the dead-letter topic instead of being transformed", &metrics.records_dead_lettered),
            ("records_skipped", "Source records committed without output after failing (errors.on_failure = \"skip\")", &metrics.records_skipped),
            ("transactions_committed", "Committed transactions (offset commits in at-least-once mode)", &metrics.transactions_committed),
            ("retries", "Batches retried after a failure caused by their records", &metrics.retries),
            ("producer_queue_full_waits", "Waits for room in the producer's full queue (queue.buffering.max.kbytes or .messages): outputs were produced faster than Kafka took them", &metrics.producer_queue_full_waits),
            ("state_restore_records", "Changelog records read while restoring state stores", &metrics.state_restore_records),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        for cause in AbortCause::ALL {
            // Present from the start, so a rate over a cause that never happened is 0, not absent.
            let _ = metrics
                .transactions_aborted
                .get_or_create(&CauseLabel { cause });
        }
        registry.register(
            "transactions_aborted",
            "Aborted transactions (or failed attempts in at-least-once mode), by cause",
            metrics.transactions_aborted.clone(),
        );
        registry.register_with_unit(
            "transaction_duration",
            "Time from the start of an attempt to its commit or abort",
            Unit::Seconds,
            metrics.transaction_duration.clone(),
        );
        registry.register_with_unit(
            "plugin_call_duration",
            "Time of one transform call on a batch, by stage",
            Unit::Seconds,
            metrics.plugin_call_duration.clone(),
        );
        registry.register_with_unit(
            "state_restore_duration",
            "Time of restoring one partition of a state store from its changelog",
            Unit::Seconds,
            metrics.state_restore_duration.clone(),
        );
        registry.register(
            "batch_records",
            "Records per collected batch",
            metrics.batch_records.clone(),
        );
        registry.register(
            "consumer_lag",
            "Records between the committed position and the end of each assigned partition (librdkafka statistics)",
            metrics.consumer_lag.clone(),
        );
        registry.register(
            "assigned_partitions",
            "Partitions assigned to this instance by the consumer group",
            metrics.assigned_partitions.clone(),
        );
        for answer in [FenceAnswer::rejoined, FenceAnswer::superseded] {
            let _ = metrics.fence_answers.get_or_create(&FenceLabel { answer });
        }
        registry.register(
            "fences",
            "Fences answered by asking the group: rejoined with new clients, or superseded by a newer process",
            metrics.fence_answers.clone(),
        );
        let build = Family::<VersionLabel, Gauge>::default();
        build
            .get_or_create(&VersionLabel {
                version: VERSION.to_string(),
            })
            .set(1);
        registry.register("build_info", "The txform build (always 1)", build);
        let plugins = Family::<PluginLabel, Gauge>::default();
        for (stage, plugin, version) in stages {
            plugins
                .get_or_create(&PluginLabel {
                    stage: stage.to_string(),
                    plugin: plugin.to_string(),
                    version: version.to_string(),
                })
                .set(1);
        }
        registry.register(
            "plugin_info",
            "Each transform stage's plugin (always 1)",
            plugins,
        );
        metrics
    }

    /// The metrics of a process running `chain`: times its calls and receives the consumers'
    /// statistics.
    pub fn for_chain(chain: &mut crate::plugin::Chain, liveness_timeout: Duration) -> Arc<Metrics> {
        let metrics = Arc::new(Metrics::new(chain.stages(), liveness_timeout));
        chain.time_calls(|stage| {
            metrics
                .plugin_call_duration
                .get_or_create_owned(&StageLabel {
                    stage: stage.to_string(),
                })
        });
        publish_statistics_to(&metrics);
        metrics
    }

    /// The OpenMetrics text of every metric (also read by Prometheus text-format parsers: gauges
    /// stand in for info metrics, see ARCHITECTURE.md).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// The sum of aborted transactions over every cause.
    pub fn aborts(&self) -> u64 {
        AbortCause::ALL
            .into_iter()
            .map(|cause| {
                self.transactions_aborted
                    .get_or_create(&CauseLabel { cause })
                    .get()
            })
            .sum()
    }
}
