//! Error policies and what they leave behind: the `[errors]` keys [`PipelineConfig`] does not write
//! (`on_failure`, `dead_letter_topic`, `max_retry_time_ms`), dead-letter records with their `txform.*`
//! headers, the `stats:` / `totals:` lines and the offset spans named in log lines.
//!
//! ```text
//! let policy = ErrorPolicy::dead_letter(&dlq);
//! let mut txform = spawn_with_policy(&env, &pipeline, &policy, "0");
//! ...
//! let letters: Vec<DeadLetter> = read_topic(&dlq, Isolation::ReadCommitted).iter().map(DeadLetter::parse).collect();
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::{Table, Value};

use crate::assertions::Content;
use crate::pipeline::PipelineConfig;
use crate::process::Txform;
use crate::records::Record;
use crate::topics::Topic;
use crate::TestEnv;

/// `errors.on_failure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnFailure {
    Stop,
    /// `"dead-letter"` with this `dead_letter_topic`.
    DeadLetter(String),
    Skip,
}

/// The `[errors]` keys beyond those of [`PipelineConfig::retries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPolicy {
    pub on_failure: OnFailure,
    pub max_retry_time_ms: Option<i64>,
}

impl ErrorPolicy {
    pub fn stop() -> ErrorPolicy {
        ErrorPolicy {
            on_failure: OnFailure::Stop,
            max_retry_time_ms: None,
        }
    }

    pub fn dead_letter(topic: &Topic) -> ErrorPolicy {
        ErrorPolicy {
            on_failure: OnFailure::DeadLetter(topic.name.clone()),
            max_retry_time_ms: None,
        }
    }

    pub fn skip() -> ErrorPolicy {
        ErrorPolicy {
            on_failure: OnFailure::Skip,
            max_retry_time_ms: None,
        }
    }

    pub fn max_retry_time_ms(mut self, ms: i64) -> ErrorPolicy {
        self.max_retry_time_ms = Some(ms);
        self
    }

    /// The text of `pipeline`'s file with this policy added to its `[errors]` table.
    pub fn apply(&self, pipeline: &PipelineConfig) -> String {
        let mut document: Table = pipeline
            .to_toml()
            .parse()
            .expect("the pipeline builder writes valid TOML");
        let errors = document
            .entry("errors")
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .expect("[errors] is a table");
        let (action, topic) = match &self.on_failure {
            OnFailure::Stop => ("stop", None),
            OnFailure::DeadLetter(topic) => ("dead-letter", Some(topic)),
            OnFailure::Skip => ("skip", None),
        };
        errors.insert("on_failure".into(), Value::String(action.into()));
        if let Some(topic) = topic {
            errors.insert("dead_letter_topic".into(), Value::String(topic.clone()));
        }
        if let Some(ms) = self.max_retry_time_ms {
            errors.insert("max_retry_time_ms".into(), Value::Integer(ms));
        }
        toml::to_string(&document).expect("serialize the pipeline")
    }
}

/// Writes `pipeline` with `policy` as `pipeline.toml` in the test's scratch directory (overwriting it:
/// a restart with the same file writes the same text) and returns its path.
pub fn write_pipeline_with_policy(
    env: &TestEnv,
    pipeline: &PipelineConfig,
    policy: &ErrorPolicy,
) -> PathBuf {
    let path = env.path("pipeline.toml");
    std::fs::write(&path, policy.apply(pipeline)).expect("write the pipeline file");
    path
}

/// Like [`TestEnv::spawn`], with `policy` in the pipeline file.
pub fn spawn_with_policy(
    env: &TestEnv,
    pipeline: &PipelineConfig,
    policy: &ErrorPolicy,
    instance_id: &str,
) -> Txform {
    let config = write_pipeline_with_policy(env, pipeline, policy);
    env.spawn_file(&config, instance_id)
}

/// The headers txform adds to a dead-letter record, after the source record's own, in this order.
pub const DEAD_LETTER_HEADERS: [&str; 9] = [
    "txform.error",
    "txform.stage",
    "txform.plugin",
    "txform.plugin.version",
    "txform.source.topic",
    "txform.source.partition",
    "txform.source.offset",
    "txform.source.timestamp",
    "txform.attempts",
];

/// A record read from a dead-letter topic, split into the source record it carries and the
/// `txform.*` headers saying why and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The record as read from the dead-letter topic.
    pub record: Record,
    /// Key, value and the headers before the `txform.*` ones: the source record's content.
    pub content: Content,
    pub error: String,
    pub stage: String,
    pub plugin: String,
    pub plugin_version: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    /// `None` when the header has no value (a source record without a timestamp).
    pub source_timestamp: Option<i64>,
    pub attempts: u32,
}

impl DeadLetter {
    /// Parses a dead-letter record. Panics, showing the record, unless its last headers are exactly
    /// [`DEAD_LETTER_HEADERS`], in order, with well-formed values, and no earlier header is `txform.*`.
    pub fn parse(record: &Record) -> DeadLetter {
        let n = record.headers.len();
        let at = record.position();
        assert!(
            n >= DEAD_LETTER_HEADERS.len(),
            "dead-letter record at {at} has {n} headers, fewer than the {} txform.* ones: {:?}",
            DEAD_LETTER_HEADERS.len(),
            record.headers
        );
        let (own, added) = record.headers.split_at(n - DEAD_LETTER_HEADERS.len());
        let names: Vec<&[u8]> = added.iter().map(|(k, _)| k.as_slice()).collect();
        let expected: Vec<&[u8]> = DEAD_LETTER_HEADERS.iter().map(|k| k.as_bytes()).collect();
        assert_eq!(
            names, expected,
            "dead-letter record at {at}: the last headers must be the txform.* ones, in order"
        );
        assert!(
            own.iter().all(|(k, _)| !k.starts_with(b"txform.")),
            "dead-letter record at {at}: txform.* header among the source record's own: {own:?}"
        );
        let text = |i: usize| -> Option<String> {
            added[i].1.as_deref().map(|v| {
                String::from_utf8(v.to_vec()).unwrap_or_else(|e| {
                    panic!(
                        "dead-letter record at {at}: header {} is not UTF-8: {e}",
                        DEAD_LETTER_HEADERS[i]
                    )
                })
            })
        };
        let required = |i: usize| -> String {
            text(i).unwrap_or_else(|| {
                panic!(
                    "dead-letter record at {at}: header {} has no value",
                    DEAD_LETTER_HEADERS[i]
                )
            })
        };
        fn number<T: std::str::FromStr>(at: &str, name: &str, value: &str) -> T {
            value.parse().unwrap_or_else(|_| {
                panic!("dead-letter record at {at}: header {name} = {value:?} is not a number")
            })
        }
        DeadLetter {
            record: record.clone(),
            content: (record.key.clone(), record.value.clone(), own.to_vec()),
            error: required(0),
            stage: required(1),
            plugin: required(2),
            plugin_version: required(3),
            source_topic: required(4),
            source_partition: number(&at, DEAD_LETTER_HEADERS[5], &required(5)),
            source_offset: number(&at, DEAD_LETTER_HEADERS[6], &required(6)),
            source_timestamp: text(7).map(|t| number(&at, DEAD_LETTER_HEADERS[7], &t)),
            attempts: number(&at, DEAD_LETTER_HEADERS[8], &required(8)),
        }
    }

    /// `(partition, offset)` of the source record.
    pub fn source(&self) -> (i32, i64) {
        (self.source_partition, self.source_offset)
    }
}

/// The counters of a `stats:` line or of the `totals:` line (rates left out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub records_in: u64,
    pub records_out: u64,
    pub transactions: u64,
    pub aborts: u64,
    pub retries: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
}

/// The counters of a line containing `records in=.. out=.. transactions=.. aborts=.. retries=..
/// dead_lettered=.. skipped=..` (the `stats:` line, whose rates are skipped, or the `totals:` line).
pub fn parse_totals(line: &str) -> Option<Totals> {
    let rest = &line[line.find("records in=")? + "records ".len()..];
    let mut values = BTreeMap::new();
    for word in rest.split_whitespace() {
        if let Some((key, value)) = word.split_once('=') {
            values.insert(key, value.parse::<u64>().ok()?);
        }
    }
    let get = |key: &str| values.get(key).copied();
    Some(Totals {
        records_in: get("in")?,
        records_out: get("out")?,
        transactions: get("transactions")?,
        aborts: get("aborts")?,
        retries: get("retries")?,
        dead_lettered: get("dead_lettered")?,
        skipped: get("skipped")?,
    })
}

/// The offsets spans `topic/partition offsets a..=b` of every partition of `topic` named in `text`
/// (a batch as the host describes it), by partition.
pub fn offset_spans(text: &str, topic: &str) -> BTreeMap<i32, (i64, i64)> {
    let mut spans = BTreeMap::new();
    let prefix = format!("{topic}/");
    let mut rest = text;
    while let Some(found) = rest.find(&prefix) {
        rest = &rest[found + prefix.len()..];
        let Some((partition, after)) = rest.split_once(" offsets ") else {
            continue;
        };
        let Ok(partition) = partition.parse::<i32>() else {
            continue;
        };
        let end = after
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '='))
            .unwrap_or(after.len());
        let Some((a, b)) = after[..end].split_once("..=") else {
            continue;
        };
        if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
            let previous = spans.insert(partition, (a, b));
            assert!(
                previous.is_none(),
                "partition {partition} of {topic} named twice in {text}"
            );
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_parsed_from_stats_and_totals_lines() {
        let stats = "[2026-01-01T00:00:00Z INFO  txform::pipeline::stats] stats: records in=10 (5/s) out=9 (4/s) transactions=3 aborts=2 retries=1 dead_lettered=1 skipped=0";
        let totals = "[x INFO  txform::pipeline::runner] stopping: totals: records in=10 out=9 transactions=3 aborts=2 retries=1 dead_lettered=1 skipped=0";
        let expected = Totals {
            records_in: 10,
            records_out: 9,
            transactions: 3,
            aborts: 2,
            retries: 1,
            dead_lettered: 1,
            skipped: 0,
        };
        assert_eq!(parse_totals(stats), Some(expected));
        assert_eq!(parse_totals(totals), Some(expected));
        assert_eq!(parse_totals("records in=1 out=2"), None);
    }

    #[test]
    fn offset_spans_are_parsed() {
        let text = "giving up after 3 failed attempts at t-1/0 offsets 5..=9, t-1/2 offsets 10..=12, t-10/1 offsets 0..=1: transform `x` (p 0.1.0): fault injected at topic/partition/offset t-1/0/7";
        assert_eq!(
            offset_spans(text, "t-1"),
            BTreeMap::from([(0, (5, 9)), (2, (10, 12))])
        );
    }

    #[test]
    fn policies_are_written_to_the_errors_table() {
        let pipeline = PipelineConfig::new(vec!["in".into()], "out".into(), "g".into(), "p".into());
        let dlq = Topic {
            name: "dlq".into(),
            partitions: 1,
        };
        let text = ErrorPolicy::dead_letter(&dlq)
            .max_retry_time_ms(500)
            .apply(&pipeline);
        let parsed: Table = text.parse().expect("valid TOML");
        assert_eq!(parsed["errors"]["on_failure"].as_str(), Some("dead-letter"));
        assert_eq!(parsed["errors"]["dead_letter_topic"].as_str(), Some("dlq"));
        assert_eq!(
            parsed["errors"]["max_retry_time_ms"].as_integer(),
            Some(500)
        );
        assert_eq!(parsed["errors"]["max_retries"].as_integer(), Some(5));
        let parsed: Table = ErrorPolicy::skip().apply(&pipeline).parse().unwrap();
        assert_eq!(parsed["errors"]["on_failure"].as_str(), Some("skip"));
        assert!(parsed["errors"].get("dead_letter_topic").is_none());
    }
}
