//! txform's `pipeline.toml` for one benchmark job: the same Kafka settings for every job, and a
//! chain that depends on what is measured (one passthrough stage for the copy, N passthrough or
//! json-transform stages for the chain sweep, the count plugin with `[state]` for the stateful run).
//! Pure text generation, so that what every measured txform ran with is unit-tested.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The plugins a benchmark chain is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageKind {
    /// `libtxform_passthrough.so`, forwarding each record unchanged.
    Passthrough,
    /// `libtxform_json_transform.so`, with a config that adds a field to each record.
    Json,
    /// `libtxform_count.so`: the running count per key (needs `[state]`).
    Count,
}

impl StageKind {
    /// The shared library of the plugin, as cargo names it.
    pub fn library(self) -> &'static str {
        match self {
            StageKind::Passthrough => "libtxform_passthrough.so",
            StageKind::Json => "libtxform_json_transform.so",
            StageKind::Count => "libtxform_count.so",
        }
    }

    /// The cargo package that builds [`StageKind::library`].
    pub fn package(self) -> &'static str {
        match self {
            StageKind::Passthrough => "txform-passthrough",
            StageKind::Json => "txform-json-transform",
            StageKind::Count => "txform-count",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            StageKind::Passthrough => "passthrough",
            StageKind::Json => "json-transform",
            StageKind::Count => "count",
        }
    }

    /// `[transform.config]` of stage `index` (0-based) of a chain of this kind.
    fn config(self, index: usize) -> toml::Table {
        let mut config = toml::Table::new();
        match self {
            StageKind::Passthrough => {
                config.insert("keep_partition".into(), true.into());
            }
            StageKind::Json => {
                // Every stage changes the record (one more field), so no stage can skip the
                // parse and the serialization.
                let mut set = toml::Table::new();
                set.insert(format!("stage{}", index + 1), (index as i64 + 1).into());
                config.insert("keep_partition".into(), true.into());
                config.insert("set".into(), set.into());
            }
            // Output key = input key: the producer's partitioner places the counts by key, as
            // Kafka Streams' `to()` does.
            StageKind::Count => {}
        }
        config
    }
}

/// Everything one job's pipeline file says.
#[derive(Debug, Clone)]
pub struct Pipeline<'a> {
    pub bootstrap: &'a str,
    pub consumer: &'a [(String, String)],
    pub producer: &'a [(String, String)],
    pub input: &'a str,
    pub output: &'a str,
    /// Group id and transactional id prefix.
    pub id: &'a str,
    /// `exactly-once` or `at-least-once`.
    pub guarantee: &'a str,
    pub max_records: u64,
    pub max_wait_ms: u64,
    /// Directory holding the plugin libraries.
    pub plugins: &'a Path,
    pub kind: StageKind,
    /// Number of stages, all of `kind`.
    pub stages: usize,
    /// `[state] dir`, for a chain with state stores.
    pub state_dir: Option<PathBuf>,
}

impl Pipeline<'_> {
    /// The pipeline.toml text.
    pub fn render(&self) -> String {
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let table = |properties: &[(String, String)]| -> String {
            properties
                .iter()
                .map(|(k, v)| format!("{} = {}\n", quote(k), quote(v)))
                .collect()
        };
        let mut text = format!(
            r#"# Written by txform-bench for one benchmark job.
[kafka.common]
"bootstrap.servers" = {bootstrap}

[kafka.consumer]
{consumer}
[kafka.producer]
{producer}
[source]
topics = [{input}]
group_id = {id}

[sink]
topic = {output}

[transaction]
guarantee = {guarantee}
id_prefix = {id}

[batch]
max_records = {max_records}
max_wait_ms = {max_wait_ms}

[log]
stats_interval_secs = 5
"#,
            bootstrap = quote(self.bootstrap),
            consumer = table(self.consumer),
            producer = table(self.producer),
            input = quote(self.input),
            output = quote(self.output),
            id = quote(self.id),
            guarantee = quote(self.guarantee),
            max_records = self.max_records,
            max_wait_ms = self.max_wait_ms,
        );
        if let Some(dir) = &self.state_dir {
            let _ = write!(text, "\n[state]\ndir = {}\n", quote(&dir.to_string_lossy()));
        }
        let plugin = self.plugins.join(self.kind.library());
        for index in 0..self.stages {
            let _ = write!(
                text,
                "\n[[transform]]\nname = {}\nplugin = {}\nconfig = {}\n",
                quote(&format!("{}-{}", self.kind.label(), index + 1)),
                quote(&plugin.to_string_lossy()),
                // Inline, so that a nested table (`set`) stays inside this stage's config.
                toml::Value::Table(self.kind.config(index))
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(kind: StageKind, stages: usize) -> Pipeline<'static> {
        Pipeline {
            bootstrap: "127.0.0.1:9092",
            consumer: &[],
            producer: &[],
            input: "in",
            output: "out",
            id: "job",
            guarantee: "exactly-once",
            max_records: 10_000,
            max_wait_ms: 100,
            plugins: Path::new("/opt/txform"),
            kind,
            stages,
            state_dir: None,
        }
    }

    /// The `[[transform]]` entries of a rendered pipeline, parsed back.
    fn stages(text: &str) -> Vec<toml::Table> {
        let value: toml::Table = text.parse().expect("valid TOML");
        value
            .get("transform")
            .and_then(|t| t.as_array())
            .map(|a| a.iter().filter_map(|t| t.as_table().cloned()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_json_chain_changes_the_record_at_every_stage() {
        let text = pipeline(StageKind::Json, 3).render();
        let stages = stages(&text);
        assert_eq!(stages.len(), 3);
        for (i, stage) in stages.iter().enumerate() {
            assert_eq!(
                stage["name"].as_str(),
                Some(format!("json-transform-{}", i + 1).as_str())
            );
            assert_eq!(
                stage["plugin"].as_str(),
                Some("/opt/txform/libtxform_json_transform.so")
            );
            let config = stage["config"].as_table().expect("config table");
            assert_eq!(config["keep_partition"].as_bool(), Some(true));
            let set = config["set"].as_table().expect("set table");
            assert_eq!(set.len(), 1);
            assert_eq!(
                set[&format!("stage{}", i + 1)].as_integer(),
                Some(i as i64 + 1)
            );
        }
    }

    #[test]
    fn settings_land_in_their_sections() {
        let consumer = [("fetch.queue.backoff.ms".to_string(), "5".to_string())];
        let mut p = pipeline(StageKind::Passthrough, 1);
        p.consumer = &consumer;
        p.max_wait_ms = 1000;
        let value: toml::Table = p.render().parse().expect("valid TOML");
        assert_eq!(value["batch"]["max_wait_ms"].as_integer(), Some(1000));
        assert_eq!(value["batch"]["max_records"].as_integer(), Some(10_000));
        assert_eq!(
            value["kafka"]["consumer"]["fetch.queue.backoff.ms"].as_str(),
            Some("5")
        );
        assert_eq!(
            value["transaction"]["guarantee"].as_str(),
            Some("exactly-once")
        );
        assert_eq!(value["source"]["group_id"].as_str(), Some("job"));
        assert!(value.get("state").is_none());
        let stages = stages(&p.render());
        assert_eq!(stages.len(), 1);
        assert_eq!(stages[0]["config"]["keep_partition"].as_bool(), Some(true));
    }

    #[test]
    fn a_count_chain_has_state_and_no_partition_override() {
        let mut p = pipeline(StageKind::Count, 1);
        p.state_dir = Some(PathBuf::from("/tmp/job/txform-state"));
        let text = p.render();
        let value: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(
            value["state"]["dir"].as_str(),
            Some("/tmp/job/txform-state")
        );
        let stages = stages(&text);
        assert_eq!(stages.len(), 1);
        assert_eq!(
            stages[0]["plugin"].as_str(),
            Some("/opt/txform/libtxform_count.so")
        );
        assert!(stages[0]["config"]
            .as_table()
            .is_some_and(toml::Table::is_empty));
    }
}
