//! Writing `pipeline.toml` files from a small builder.

use std::path::PathBuf;

use toml::{Table, Value};

pub use txform::config::Guarantee;

use crate::broker::bootstrap;
use crate::process::{assert_fresh, target_dir};

/// A plugin library for a `[[transform]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plugin {
    /// A library built by this workspace, by file name (e.g. `libtxform_passthrough.so`), resolved in
    /// the target directory (see [`target_dir`]).
    Built(String),
    /// Any path, written to the file as given (relative paths are relative to the pipeline file).
    Path(PathBuf),
}

impl Plugin {
    pub fn passthrough() -> Plugin {
        Plugin::Built("libtxform_passthrough.so".into())
    }

    pub fn json_transform() -> Plugin {
        Plugin::Built("libtxform_json_transform.so".into())
    }

    pub fn fault() -> Plugin {
        Plugin::Built("libtxform_fault.so".into())
    }

    pub fn count() -> Plugin {
        Plugin::Built("libtxform_count.so".into())
    }

    pub fn dedup() -> Plugin {
        Plugin::Built("libtxform_dedup.so".into())
    }

    /// The fixture built against an incompatible plugin-api layout (tests/fixtures/incompatible-plugin).
    pub fn incompatible_fixture() -> Plugin {
        Plugin::Built("libtxform_fixture_incompatible.so".into())
    }

    /// The fixture built against plugin-api 0.1.0 (tests/fixtures/old-version-plugin).
    pub fn old_version_fixture() -> Plugin {
        Plugin::Built("libtxform_fixture_old_version.so".into())
    }

    /// The fixture whose root module has only the 0.2 prefix (tests/fixtures/prefix-only-plugin).
    pub fn prefix_only_fixture() -> Plugin {
        Plugin::Built("libtxform_fixture_prefix_only.so".into())
    }

    /// The fixture built against a later 0.2.9 that needs a missing host feature
    /// (tests/fixtures/newer-plugin).
    pub fn newer_fixture() -> Plugin {
        Plugin::Built("libtxform_fixture_newer.so".into())
    }

    /// The path written to the pipeline file; a built library must exist and be newer than its
    /// sources (its crate's and the plugin API's).
    pub fn path(&self) -> PathBuf {
        match self {
            Plugin::Built(file) => {
                let path = target_dir().join(file);
                assert!(
                    path.is_file(),
                    "plugin {} not found; build the workspace first (`cargo build --workspace`, which \
                     scripts/test.sh runs)",
                    path.display()
                );
                assert_fresh(&path, &["plugin-api", &source_dir(file)]);
                path
            }
            Plugin::Path(path) => path.clone(),
        }
    }
}

/// The crate directory (relative to the workspace) of a library this workspace builds:
/// `libtxform_<name>.so` comes from `plugins/<name>` (underscores as dashes), the fixtures from
/// `tests/fixtures`.
fn source_dir(file: &str) -> String {
    let name = file
        .trim_start_matches("libtxform_")
        .trim_end_matches(".so")
        .replace('_', "-");
    match name.strip_prefix("fixture-") {
        Some(fixture) => format!("tests/fixtures/{fixture}-plugin"),
        None => format!("plugins/{name}"),
    }
}

/// `[transform.config]` of the passthrough plugin keeping partitions: `keep_partition = true`.
pub fn passthrough_config() -> Table {
    table(&[("keep_partition", Value::Boolean(true))])
}

/// A TOML table from key/value pairs.
pub fn table(entries: &[(&str, Value)]) -> Table {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// One `[[transform]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformConfig {
    pub name: String,
    pub plugin: Plugin,
    pub config: Table,
}

/// Everything a test may set in a pipeline file. Defaults keep tests fast: 100 ms batches, 6 s
/// sessions (the test broker allows down to 1 s), one-second stats.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    pub input_topics: Vec<String>,
    pub output_topic: String,
    pub group_id: String,
    pub id_prefix: String,
    pub instance_id: String,
    pub guarantee: Guarantee,
    pub static_membership: bool,
    pub max_records: i64,
    pub max_wait_ms: i64,
    pub max_retries: i64,
    pub initial_backoff_ms: i64,
    pub max_backoff_ms: i64,
    pub stats_interval_secs: i64,
    /// `[kafka.common]` beyond `bootstrap.servers`.
    pub common: Table,
    pub consumer: Table,
    pub producer: Table,
    pub transforms: Vec<TransformConfig>,
    /// `[metrics]`, when set.
    pub metrics: Option<Table>,
    /// `[state] dir`, when set (a test's scratch directory, see `TestEnv::pipeline`).
    pub state_dir: Option<PathBuf>,
}

impl PipelineConfig {
    /// A pipeline with no transform yet.
    pub fn new(
        input_topics: Vec<String>,
        output_topic: String,
        group_id: String,
        id_prefix: String,
    ) -> Self {
        PipelineConfig {
            input_topics,
            output_topic,
            group_id,
            id_prefix,
            instance_id: "0".into(),
            guarantee: Guarantee::ExactlyOnce,
            static_membership: true,
            max_records: 1000,
            max_wait_ms: 100,
            max_retries: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 2000,
            stats_interval_secs: 1,
            common: Table::new(),
            consumer: table(&[
                ("session.timeout.ms", Value::Integer(6000)),
                ("heartbeat.interval.ms", Value::Integer(1000)),
            ]),
            producer: Table::new(),
            transforms: Vec::new(),
            metrics: None,
            state_dir: None,
        }
    }

    /// Appends a `[[transform]]`.
    pub fn transform(mut self, name: &str, plugin: Plugin, config: Table) -> Self {
        self.transforms.push(TransformConfig {
            name: name.to_string(),
            plugin,
            config,
        });
        self
    }

    pub fn guarantee(mut self, guarantee: Guarantee) -> Self {
        self.guarantee = guarantee;
        self
    }

    pub fn batch(mut self, max_records: i64, max_wait_ms: i64) -> Self {
        self.max_records = max_records;
        self.max_wait_ms = max_wait_ms;
        self
    }

    pub fn retries(
        mut self,
        max_retries: i64,
        initial_backoff_ms: i64,
        max_backoff_ms: i64,
    ) -> Self {
        self.max_retries = max_retries;
        self.initial_backoff_ms = initial_backoff_ms;
        self.max_backoff_ms = max_backoff_ms;
        self
    }

    /// Serves metrics and probes on a port the system picks (`listen = "127.0.0.1:0"`; the bound
    /// address is in the log, see `Txform::metrics_address`).
    pub fn metrics(mut self, liveness_timeout_secs: i64) -> Self {
        self.metrics = Some(table(&[
            ("listen", Value::String("127.0.0.1:0".into())),
            (
                "liveness_timeout_secs",
                Value::Integer(liveness_timeout_secs),
            ),
        ]));
        self
    }

    pub fn consumer_property(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.consumer.insert(key.to_string(), value.into());
        self
    }

    pub fn producer_property(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.producer.insert(key.to_string(), value.into());
        self
    }

    /// The transactional id of instance `instance_id`: `<id_prefix>-<group_id>-<instance_id>`.
    pub fn transactional_id(&self, instance_id: &str) -> String {
        format!("{}-{}-{instance_id}", self.id_prefix, self.group_id)
    }

    /// The pipeline file's text.
    pub fn to_toml(&self) -> String {
        let mut common = table(&[("bootstrap.servers", Value::String(bootstrap()))]);
        common.extend(self.common.clone());
        let kafka = table(&[
            ("common", Value::Table(common)),
            ("consumer", Value::Table(self.consumer.clone())),
            ("producer", Value::Table(self.producer.clone())),
        ]);
        let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
        let transforms = self
            .transforms
            .iter()
            .map(|t| {
                Value::Table(table(&[
                    ("name", Value::String(t.name.clone())),
                    (
                        "plugin",
                        Value::String(t.plugin.path().display().to_string()),
                    ),
                    ("config", Value::Table(t.config.clone())),
                ]))
            })
            .collect();
        let mut document = table(&[
            ("kafka", Value::Table(kafka)),
            (
                "source",
                Value::Table(table(&[
                    ("topics", strings(&self.input_topics)),
                    ("group_id", Value::String(self.group_id.clone())),
                ])),
            ),
            (
                "sink",
                Value::Table(table(&[(
                    "topic",
                    Value::String(self.output_topic.clone()),
                )])),
            ),
            (
                "transaction",
                Value::Table(table(&[
                    ("guarantee", Value::String(self.guarantee.as_str().into())),
                    ("id_prefix", Value::String(self.id_prefix.clone())),
                    ("instance_id", Value::String(self.instance_id.clone())),
                    ("static_membership", Value::Boolean(self.static_membership)),
                ])),
            ),
            (
                "batch",
                Value::Table(table(&[
                    ("max_records", Value::Integer(self.max_records)),
                    ("max_wait_ms", Value::Integer(self.max_wait_ms)),
                ])),
            ),
            (
                "errors",
                Value::Table(table(&[
                    ("max_retries", Value::Integer(self.max_retries)),
                    (
                        "initial_backoff_ms",
                        Value::Integer(self.initial_backoff_ms),
                    ),
                    ("max_backoff_ms", Value::Integer(self.max_backoff_ms)),
                ])),
            ),
            (
                "log",
                Value::Table(table(&[(
                    "stats_interval_secs",
                    Value::Integer(self.stats_interval_secs),
                )])),
            ),
            ("transform", Value::Array(transforms)),
        ]);
        if let Some(metrics) = &self.metrics {
            document.insert("metrics".into(), Value::Table(metrics.clone()));
        }
        if let Some(dir) = &self.state_dir {
            let state = table(&[("dir", Value::String(dir.display().to_string()))]);
            document.insert("state".into(), Value::Table(state));
        }
        toml::to_string(&document).expect("serialize the pipeline")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_library_maps_to_an_existing_crate() {
        for plugin in [
            Plugin::passthrough(),
            Plugin::json_transform(),
            Plugin::fault(),
            Plugin::count(),
            Plugin::dedup(),
            Plugin::incompatible_fixture(),
            Plugin::old_version_fixture(),
            Plugin::prefix_only_fixture(),
            Plugin::newer_fixture(),
        ] {
            let Plugin::Built(file) = plugin else {
                panic!("a built library");
            };
            let dir = crate::process::workspace_dir().join(source_dir(&file));
            assert!(
                dir.join("Cargo.toml").is_file(),
                "{file}: {} is not a crate",
                dir.display()
            );
        }
    }

    #[test]
    fn pipeline_file_round_trips() {
        let pipeline = PipelineConfig::new(vec!["in".into()], "out".into(), "g".into(), "p".into())
            .transform(
                "copy",
                Plugin::Path("/x/libcopy.so".into()),
                passthrough_config(),
            );
        let text = pipeline.to_toml();
        let parsed: Table = text.parse().expect("valid TOML");
        assert_eq!(parsed["source"]["topics"][0].as_str(), Some("in"));
        assert_eq!(
            parsed["kafka"]["common"]["bootstrap.servers"].as_str(),
            Some(bootstrap().as_str())
        );
        assert_eq!(
            parsed["transform"][0]["plugin"].as_str(),
            Some("/x/libcopy.so")
        );
        assert_eq!(
            parsed["transform"][0]["config"]["keep_partition"].as_bool(),
            Some(true)
        );
        assert_eq!(parsed["transaction"]["id_prefix"].as_str(), Some("p"));
        assert_eq!(
            parsed["transaction"]["guarantee"].as_str(),
            Some("exactly-once")
        );
        let at_least_once = pipeline.guarantee(Guarantee::AtLeastOnce).to_toml();
        let parsed: Table = at_least_once.parse().expect("valid TOML");
        assert_eq!(
            parsed["transaction"]["guarantee"].as_str(),
            Some("at-least-once")
        );
    }
}
