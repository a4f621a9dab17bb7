//! The validated pipeline description the rest of the host works from.
//!
//! Every value here has passed validation: ranges are checked, defaults are filled in, durations
//! are `Duration`s and plugin paths are resolved, so no other module re-checks or re-parses.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A pipeline file after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// The file the pipeline came from, as given; the prefix of every `file:line` location.
    pub origin: PathBuf,
    pub kafka: KafkaProperties,
    pub source: Source,
    pub sink: Sink,
    pub transaction: Transaction,
    pub batch: Batch,
    pub errors: ErrorPolicy,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    pub state: StateSettings,
    /// The transform chain, in file order; never empty.
    pub transforms: Vec<TransformSpec>,
    /// Where the topics were written, for problems the cluster reports later.
    pub topic_lines: TopicLines,
    /// Values that must never be shown (see [`Secrets`]).
    pub secrets: Secrets,
}

/// Every secret value of a pipeline: the values of secret-looking librdkafka properties
/// ([`KafkaProperties::is_secret`]) and whatever a `${env:...}` or `${file:...}` reference produced.
/// The host removes them from every line it writes (`crate::redact`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// Longest first, so that a secret containing another is hidden whole; empty values, which
    /// would match everywhere, are dropped.
    pub fn new(mut values: Vec<String>) -> Self {
        values.retain(|value| !value.is_empty());
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Secrets(values)
    }

    pub fn values(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} hidden)", self.0.len())
    }
}

impl Pipeline {
    /// The producer's `transactional.id` (and, with static membership, the `group.instance.id`):
    /// `{id_prefix}-{group_id}-{instance_id}`. It must be stable across restarts of one instance (so
    /// the restart fences its predecessor) and distinct between instances (so they do not fence
    /// each other). The group is part of it so that two pipelines that happen to share an
    /// `id_prefix` (a copied file) do not fence each other: they consume different groups.
    pub fn transactional_id(&self) -> String {
        format!(
            "{}-{}-{}",
            self.transaction.id_prefix, self.source.group_id, self.transaction.instance_id
        )
    }

    /// Every topic the file names, with its key and line: the source topics, the sink topic and
    /// the dead-letter topic (if any), in that order.
    pub fn configured_topics(&self) -> Vec<ConfiguredTopic<'_>> {
        let lines = &self.topic_lines;
        let mut topics: Vec<ConfiguredTopic<'_>> = self
            .source
            .topics
            .iter()
            .zip(&lines.source)
            .map(|(name, &line)| ConfiguredTopic {
                key: "source.topics",
                name,
                line,
            })
            .collect();
        topics.push(ConfiguredTopic {
            key: "sink.topic",
            name: &self.sink.topic,
            line: lines.sink,
        });
        if let (FailureAction::DeadLetter { topic }, Some(line)) =
            (&self.errors.on_failure, lines.dead_letter)
        {
            topics.push(ConfiguredTopic {
                key: "errors.dead_letter_topic",
                name: topic,
                line,
            });
        }
        topics
    }

    /// Replaces `transaction.instance_id`, for the `--instance-id` command-line override that lets
    /// several instances share one pipeline file. The id is taken as given, like the CLI gave it.
    pub fn with_instance_id(mut self, id: String) -> Self {
        self.transaction.instance_id = id;
        self
    }

    /// `origin:line`, the prefix for messages about something found at `line` of the file, such as
    /// a transform whose plugin fails to load ([`TransformSpec::line`]).
    pub fn location(&self, line: usize) -> String {
        format!("{}:{line}", self.origin.display())
    }
}

/// 1-based lines of the keys that name topics (see [`Pipeline::configured_topics`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicLines {
    /// One per entry of [`Source::topics`], in the same order.
    pub source: Vec<usize>,
    pub sink: usize,
    /// Set with [`FailureAction::DeadLetter`].
    pub dead_letter: Option<usize>,
}

/// A topic named in the pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfiguredTopic<'a> {
    /// The key that names it: `source.topics`, `sink.topic` or `errors.dead_letter_topic`.
    pub key: &'static str,
    pub name: &'a str,
    /// 1-based line of the name in the file; see [`Pipeline::location`].
    pub line: usize,
}

/// librdkafka properties, passed to the clients as strings, each list in file order.
///
/// `Debug` hides the values of secret-looking keys, because pipelines are logged with `{:?}`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties {
    /// `[kafka.common]`: set on both the consumer and the producer, before the role's own table.
    pub common: Vec<(String, String)>,
    /// `[kafka.consumer]`: consumer only; applied after `common`, so it wins on a repeated key.
    pub consumer: Vec<(String, String)>,
    /// `[kafka.producer]`: producer only; applied after `common`, so it wins on a repeated key.
    pub producer: Vec<(String, String)>,
}

impl KafkaProperties {
    /// Whether the value of property `key` must not be shown: passwords, passphrases, secrets,
    /// private keys and the configs that embed them (JAAS, `sasl.oauthbearer.config`), which covers
    /// every value librdkafka itself marks sensitive except paths, user names and CA certificates.
    pub fn is_secret(key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        [
            "password",
            "passphrase",
            "secret",
            "private.key",
            "ssl.key.pem",
            "sasl.jaas",
            "sasl.oauthbearer.config",
        ]
        .iter()
        .any(|word| key.contains(word))
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// One property list with secret values replaced.
        struct Redacted<'a>(&'a [(String, String)]);
        impl fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(key, value)| {
                        let shown = if KafkaProperties::is_secret(key) {
                            "<redacted>"
                        } else {
                            value.as_str()
                        };
                        (key, shown)
                    }))
                    .finish()
            }
        }
        f.debug_struct("KafkaProperties")
            .field("common", &Redacted(&self.common))
            .field("consumer", &Redacted(&self.consumer))
            .field("producer", &Redacted(&self.producer))
            .finish()
    }
}

/// `[source]`: where records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Subscribed topics: at least one, no duplicates, none empty.
    pub topics: Vec<String>,
    /// The consumer group; txform sets `group.id` from it.
    pub group_id: String,
}

/// `[sink]`: where transformed records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sink {
    /// The topic of every output record that does not name its own.
    pub topic: String,
}

/// `[transaction]`: how output and consumed offsets are committed together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub guarantee: Guarantee,
    /// First part of the `transactional.id`; see [`Pipeline::transactional_id`].
    pub id_prefix: String,
    /// Second part of the `transactional.id`: one distinct value per running instance.
    pub instance_id: String,
    /// Whether the consumer joins its group with `group.instance.id` (the transactional id), so a
    /// restarted instance gets its partitions back without a rebalance.
    pub static_membership: bool,
}

/// What a crash may do to the output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Output and consumed offsets commit in one Kafka transaction: each input record's output is
    /// visible to `read_committed` readers exactly once.
    #[default]
    ExactlyOnce,
    /// Offsets are committed after the output is acknowledged: a crash in between duplicates output.
    AtLeastOnce,
}

impl Guarantee {
    /// The spelling used in pipeline files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::ExactlyOnce => "exactly-once",
            Guarantee::AtLeastOnce => "at-least-once",
        }
    }
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the [`Guarantee`] spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown guarantee `{0}`, expected `exactly-once` or `at-least-once`")]
pub struct ParseGuaranteeError(String);

impl FromStr for Guarantee {
    type Err = ParseGuaranteeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "exactly-once" => Ok(Guarantee::ExactlyOnce),
            "at-least-once" => Ok(Guarantee::AtLeastOnce),
            other => Err(ParseGuaranteeError(other.to_owned())),
        }
    }
}

/// `[batch]`: how many records one transaction covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// A batch closes at this many records (`max_records`, 1..=100000). The default, 100,000, leaves
    /// the interval and `max_bytes` to end a transaction at any rate this host reaches: each
    /// transaction's ending costs a few ms of round trips, so at 100 B 10,000-record transactions
    /// copied about half as many records per second, and a streamed batch does not hold its records
    /// (docs/benchmarks.md, issue 13 parts 5 and 6).
    pub max_records: usize,
    /// ... or when this much time has passed since its first record (`max_wait_ms`, 1..=60000).
    pub max_wait: Duration,
    /// ... or when its source records' keys and values reach this many bytes (`max_bytes`,
    /// 1024..=1 GiB), so the memory a batch holds does not follow record size times batch length.
    pub max_bytes: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            max_records: 100_000,
            max_wait: Duration::from_millis(100),
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// `[errors]`: what happens to a batch whose records make a transform (or Kafka) fail.
///
/// Such a batch is retried, each attempt in its own aborted transaction, with exponential backoff;
/// once the retries are exhausted, [`FailureAction`] decides. Failures of Kafka itself (broker
/// unreachable, rebalance) are retried without bound: they say nothing about the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPolicy {
    /// Attempts after the first one before giving up on a batch.
    pub max_retries: u32,
    /// Also give up once this much time has passed since the batch first failed (`max_retry_time_ms`).
    pub max_retry_time: Option<Duration>,
    /// What to do once retries are exhausted (`on_failure`, default `stop`).
    pub on_failure: FailureAction,
    /// Wait before the first retry (`initial_backoff_ms`); never more than `max_backoff`.
    pub initial_backoff: Duration,
    /// Upper bound of the growing wait between retries (`max_backoff_ms`).
    pub max_backoff: Duration,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        ErrorPolicy {
            max_retries: 5,
            max_retry_time: None,
            on_failure: FailureAction::Stop,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(10_000),
        }
    }
}

/// What happens to a batch that keeps failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureAction {
    /// Exit non-zero, naming the transform, its error and the offsets; nothing is committed past
    /// the batch (`stop`).
    Stop,
    /// Find the failing records by bisection and write them, unchanged and with headers saying why,
    /// to this topic in the transaction that commits their offsets (`dead-letter`).
    DeadLetter { topic: String },
    /// Find the failing records by bisection and drop them, logged with their offsets (`skip`).
    Skip,
}

impl FailureAction {
    /// The `on_failure` spelling, for log lines.
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureAction::Stop => "stop",
            FailureAction::DeadLetter { .. } => "dead-letter",
            FailureAction::Skip => "skip",
        }
    }

    /// The dead-letter topic, under `dead-letter`.
    pub fn dead_letter_topic(&self) -> Option<&str> {
        match self {
            FailureAction::DeadLetter { topic } => Some(topic),
            FailureAction::Stop | FailureAction::Skip => None,
        }
    }
}

/// `[log]`: periodic reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// How often throughput counters are logged (`stats_interval_secs`, 1..=3600).
    pub stats_interval: Duration,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            stats_interval: Duration::from_secs(10),
        }
    }
}

/// `[metrics]`: the HTTP endpoint for Prometheus and the orchestrator's probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Where `/metrics`, `/livez` and `/readyz` are served (`listen`); `None`: no endpoint.
    pub listen: Option<std::net::SocketAddr>,
    /// `/livez` fails when the copy loop has not come round for this long while not waiting on
    /// Kafka (`liveness_timeout_secs`, 1..=3600): a transform that hangs, not a broker outage.
    pub liveness_timeout: Duration,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            listen: None,
            liveness_timeout: Duration::from_secs(60),
        }
    }
}

/// `[state]`: where the local stores of stateful transforms live and how their changelog topics
/// are created. Unused by a chain without state stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    /// Directory of the local stores (`dir`, default `./txform-state`, relative to the working
    /// directory); each instance uses its own sub-directory named by its transactional id.
    pub dir: PathBuf,
    /// Replication factor of changelog topics txform creates (`replication_factor`, 1..=32767);
    /// `None`: the broker's `default.replication.factor`.
    pub replication_factor: Option<i32>,
    /// Line of the `[state]` table's first key (0 when absent), for problems found at start-up.
    pub line: usize,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            dir: PathBuf::from("./txform-state"),
            replication_factor: None,
            line: 0,
        }
    }
}

/// One `[[transform]]` of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformSpec {
    /// Unique in the chain; defaults to the plugin's file stem without a `lib` prefix.
    pub name: String,
    /// The plugin library; a relative `plugin` is resolved against the pipeline file's directory,
    /// so a pipeline works from any working directory.
    pub plugin: PathBuf,
    /// The `config` table as compact JSON (`{}` when absent), the form plugins receive it in.
    pub config_json: String,
    /// 1-based line of the transform's `plugin` key, for messages about loading or creating it.
    pub line: usize,
}
