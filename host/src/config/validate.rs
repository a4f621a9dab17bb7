//! Semantic checks that turn the raw tables into a [`Pipeline`].
//!
//! Each check records its problem and carries on with a placeholder value, so that one run reports
//! everything wrong with the file; the placeholders never escape because any problem makes the
//! whole parse fail.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::Problems;
use super::plugin_config::config_json;
use super::properties::kafka;
use super::schema::{
    FailureActionName, RawBatch, RawErrors, RawLog, RawMetrics, RawPipeline, RawSink, RawSource,
    RawState, RawTransaction, RawTransform,
};
use super::topic_name::topic_name_problem;
use super::types::{
    Batch, ErrorPolicy, FailureAction, LogSettings, MetricsSettings, Pipeline, Secrets, Sink,
    Source, StateSettings, TopicLines, Transaction, TransformSpec,
};

/// Checks `raw` and builds the pipeline; the result is meaningful only if no problem was recorded.
/// `None` when a required table is missing (after checking the tables that are present, so their
/// problems are reported too).
pub(super) fn pipeline(
    raw: RawPipeline,
    origin: &Path,
    base_dir: &Path,
    problems: &mut Problems<'_>,
) -> Option<Pipeline> {
    let mut secrets = Vec::new();
    let kafka = raw.kafka.map(|raw| kafka(raw.0, problems, &mut secrets));
    let (source, source_lines) = raw.source.map(|raw| source(raw.0, problems)).unzip();
    let (sink, sink_line) = raw
        .sink
        .map(|raw| sink(raw.0, source.as_ref(), problems))
        .unzip();
    let transaction = raw.transaction.map(|raw| transaction(raw.0, problems));
    let batch = batch(raw.batch.map(|raw| raw.0), problems);
    let (errors, dead_letter_line) = errors(
        raw.errors.map(|raw| raw.0),
        source.as_ref(),
        sink.as_ref(),
        problems,
    );
    let log = log(raw.log.map(|raw| raw.0), problems);
    let metrics = metrics(raw.metrics.map(|raw| raw.0), problems);
    let state = state(raw.state.map(|raw| raw.0), problems);
    let transforms = raw
        .transform
        .map(|raw| transforms(raw.0, base_dir, problems, &mut secrets));

    // A missing table has no line of its own; toml itself blames line 1 for such keys.
    let required = [
        ("missing table [kafka.common]", kafka.is_none()),
        ("missing table [source]", source.is_none()),
        ("missing table [sink]", sink.is_none()),
        ("missing table [transaction]", transaction.is_none()),
        (
            "missing table [[transform]]: the chain needs at least one transform",
            transforms.is_none(),
        ),
    ];
    for (message, missing) in required {
        if missing {
            problems.at_line(1, message);
        }
    }
    Some(Pipeline {
        origin: origin.to_owned(),
        kafka: kafka?,
        source: source?,
        sink: sink?,
        transaction: transaction?,
        batch,
        errors,
        log,
        metrics,
        state,
        transforms: transforms?,
        topic_lines: TopicLines {
            source: source_lines?,
            sink: sink_line?,
            dead_letter: dead_letter_line,
        },
        secrets: Secrets::new(secrets),
    })
}

/// A required string, recording a problem when it is empty (or only blanks).
fn non_empty(value: Spanned<String>, key: &str, problems: &mut Problems<'_>) -> String {
    if value.get_ref().trim().is_empty() {
        problems.at(value.span(), format!("`{key}` must not be empty"));
    }
    value.into_inner()
}

/// A topic name, recording a problem when it is blank or one Kafka refuses.
fn topic(value: &Spanned<String>, key: &str, problems: &mut Problems<'_>) {
    let name = value.get_ref();
    if name.trim().is_empty() {
        // Reported by the caller, in the words that fit the key.
        return;
    }
    if let Some(problem) = topic_name_problem(name) {
        problems.at(value.span(), format!("`{key}` {} {problem}", shown(name)));
    }
}

/// `name` quoted for a message, cut short when it is too long to read (the message says how long).
fn shown(name: &str) -> String {
    const SHOWN_CHARS: usize = 40;
    if name.chars().count() > SHOWN_CHARS {
        let start: String = name.chars().take(SHOWN_CHARS).collect();
        format!("{:?}", start + "…")
    } else {
        format!("{name:?}")
    }
}

fn source(raw: RawSource, problems: &mut Problems<'_>) -> (Source, Vec<usize>) {
    if raw.topics.get_ref().is_empty() {
        problems.at(
            raw.topics.span(),
            "`source.topics` must list at least one topic",
        );
    }
    let mut topics: Vec<String> = Vec::with_capacity(raw.topics.get_ref().len());
    let mut lines = Vec::with_capacity(topics.capacity());
    for topic_value in raw.topics.into_inner() {
        let name = topic_value.get_ref();
        if name.trim().is_empty() {
            problems.at(
                topic_value.span(),
                "`source.topics` contains an empty topic name",
            );
        } else if topics.contains(name) {
            problems.at(
                topic_value.span(),
                format!("topic `{name}` is listed twice in `source.topics`"),
            );
        }
        topic(&topic_value, "source.topics", problems);
        lines.push(problems.line_of(topic_value.span().start));
        topics.push(topic_value.into_inner());
    }
    let source = Source {
        topics,
        group_id: non_empty(raw.group_id, "source.group_id", problems),
    };
    (source, lines)
}

/// Also refuses a sink that is one of the source topics: the pipeline would consume its own output
/// forever.
fn sink(raw: RawSink, source: Option<&Source>, problems: &mut Problems<'_>) -> (Sink, usize) {
    if source.is_some_and(|source| source.topics.contains(raw.topic.get_ref())) {
        problems.at(
            raw.topic.span(),
            format!(
                "`sink.topic` `{}` is also a source topic; the pipeline would consume its own output",
                raw.topic.get_ref()
            ),
        );
    }
    topic(&raw.topic, "sink.topic", problems);
    let line = problems.line_of(raw.topic.span().start);
    let sink = Sink {
        topic: non_empty(raw.topic, "sink.topic", problems),
    };
    (sink, line)
}

fn transaction(raw: RawTransaction, problems: &mut Problems<'_>) -> Transaction {
    Transaction {
        guarantee: raw.guarantee.unwrap_or_default(),
        id_prefix: non_empty(raw.id_prefix, "transaction.id_prefix", problems),
        instance_id: match raw.instance_id {
            Some(id) => non_empty(id, "transaction.instance_id", problems),
            None => "0".to_owned(),
        },
        static_membership: raw.static_membership.unwrap_or(true),
    }
}

/// An optional integer that must lie in `range`. `None` when absent or invalid (a problem is
/// recorded for the latter), so the caller falls back to the default.
fn ranged<T: TryFrom<i64>>(
    value: Option<&Spanned<i64>>,
    key: &str,
    range: RangeInclusive<i64>,
    problems: &mut Problems<'_>,
) -> Option<T> {
    let value = value?;
    let number = *value.get_ref();
    let converted = T::try_from(number).ok().filter(|_| range.contains(&number));
    if converted.is_none() {
        let expected = if *range.end() == i64::MAX {
            format!("at least {}", range.start())
        } else {
            format!("between {} and {}", range.start(), range.end())
        };
        problems.at(
            value.span(),
            format!("`{key}` must be {expected}, got {number}"),
        );
    }
    converted
}

fn batch(raw: Option<RawBatch>, problems: &mut Problems<'_>) -> Batch {
    let default = Batch::default();
    let Some(raw) = raw else { return default };
    Batch {
        max_records: ranged(
            raw.max_records.as_ref(),
            "batch.max_records",
            1..=100_000,
            problems,
        )
        .unwrap_or(default.max_records),
        max_wait: ranged(
            raw.max_wait_ms.as_ref(),
            "batch.max_wait_ms",
            1..=60_000,
            problems,
        )
        .map(Duration::from_millis)
        .unwrap_or(default.max_wait),
        max_bytes: ranged(
            raw.max_bytes.as_ref(),
            "batch.max_bytes",
            1024..=1 << 30,
            problems,
        )
        .unwrap_or(default.max_bytes),
    }
}

/// The policy, and the line of the dead-letter topic when there is one.
fn errors(
    raw: Option<RawErrors>,
    source: Option<&Source>,
    sink: Option<&Sink>,
    problems: &mut Problems<'_>,
) -> (ErrorPolicy, Option<usize>) {
    let default = ErrorPolicy::default();
    let Some(raw) = raw else {
        return (default, None);
    };
    let max_retries = ranged(
        raw.max_retries.as_ref(),
        "errors.max_retries",
        0..=i64::from(u32::MAX),
        problems,
    );
    let initial = ranged(
        raw.initial_backoff_ms.as_ref(),
        "errors.initial_backoff_ms",
        0..=i64::MAX,
        problems,
    )
    .map(Duration::from_millis);
    let max = ranged(
        raw.max_backoff_ms.as_ref(),
        "errors.max_backoff_ms",
        0..=i64::MAX,
        problems,
    )
    .map(Duration::from_millis);
    let initial_backoff = initial.unwrap_or(default.initial_backoff);
    let max_backoff = max.unwrap_or(default.max_backoff);
    // Only a value the user wrote can be wrong; blame the initial backoff when both were written.
    let blamed = match (&raw.initial_backoff_ms, &raw.max_backoff_ms) {
        (Some(written), _) if initial.is_some() => Some(written.span()),
        (_, Some(written)) if max.is_some() => Some(written.span()),
        _ => None,
    };
    if let Some(span) = blamed.filter(|_| initial_backoff > max_backoff) {
        problems.at(
            span,
            format!(
                "`errors.initial_backoff_ms` ({}) must not be greater than `errors.max_backoff_ms` ({})",
                initial_backoff.as_millis(),
                max_backoff.as_millis()
            ),
        );
    }
    let max_retry_time = ranged(
        raw.max_retry_time_ms.as_ref(),
        "errors.max_retry_time_ms",
        1..=i64::MAX,
        problems,
    )
    .map(Duration::from_millis);
    let on_failure = failure_action(&raw, problems);
    let dead_letter_line = match (&on_failure, &raw.dead_letter_topic) {
        (FailureAction::DeadLetter { .. }, Some(topic_value)) => {
            dead_letter_topic(topic_value, source, sink, problems);
            Some(problems.line_of(topic_value.span().start))
        }
        _ => None,
    };
    let policy = ErrorPolicy {
        max_retries: max_retries.unwrap_or(default.max_retries),
        max_retry_time,
        on_failure,
        initial_backoff,
        max_backoff,
    };
    (policy, dead_letter_line)
}

/// Refuses a dead-letter topic that is also a source topic (set-aside records would be consumed
/// again, and fail again) or the sink topic (they would mix with the good output).
fn dead_letter_topic(
    value: &Spanned<String>,
    source: Option<&Source>,
    sink: Option<&Sink>,
    problems: &mut Problems<'_>,
) {
    const KEY: &str = "errors.dead_letter_topic";
    topic(value, KEY, problems);
    let name = value.get_ref();
    if name.trim().is_empty() {
        return;
    }
    if source.is_some_and(|source| source.topics.contains(name)) {
        problems.at(
            value.span(),
            format!(
                "`{KEY}` {} is also a source topic: dead-lettered records would be consumed again; \
                 use a topic of its own",
                shown(name)
            ),
        );
    }
    if sink.is_some_and(|sink| &sink.topic == name) {
        problems.at(
            value.span(),
            format!(
                "`{KEY}` {} is also `sink.topic`: dead-lettered records would mix with the output; \
                 use a topic of its own",
                shown(name)
            ),
        );
    }
}

/// `dead-letter` needs `dead_letter_topic`, and the topic is meaningless with any other action.
fn failure_action(raw: &RawErrors, problems: &mut Problems<'_>) -> FailureAction {
    let action = raw.on_failure.as_ref().map(|a| *a.get_ref());
    match (action, &raw.dead_letter_topic) {
        (Some(FailureActionName::DeadLetter), Some(topic)) => FailureAction::DeadLetter {
            topic: non_empty(topic.clone(), "errors.dead_letter_topic", problems),
        },
        (Some(FailureActionName::DeadLetter), None) => {
            if let Some(action) = &raw.on_failure {
                problems.at(
                    action.span(),
                    "`errors.on_failure = \"dead-letter\"` needs `errors.dead_letter_topic`"
                        .to_owned(),
                );
            }
            FailureAction::Stop
        }
        (other, Some(topic)) => {
            problems.at(
                topic.span(),
                "`errors.dead_letter_topic` is only used with `errors.on_failure = \"dead-letter\"`"
                    .to_owned(),
            );
            match other {
                Some(FailureActionName::Skip) => FailureAction::Skip,
                _ => FailureAction::Stop,
            }
        }
        (Some(FailureActionName::Skip), None) => FailureAction::Skip,
        (Some(FailureActionName::Stop) | None, None) => FailureAction::Stop,
    }
}

fn log(raw: Option<RawLog>, problems: &mut Problems<'_>) -> LogSettings {
    let default = LogSettings::default();
    let Some(raw) = raw else { return default };
    LogSettings {
        stats_interval: ranged(
            raw.stats_interval_secs.as_ref(),
            "log.stats_interval_secs",
            1..=3600,
            problems,
        )
        .map(Duration::from_secs)
        .unwrap_or(default.stats_interval),
    }
}

fn metrics(raw: Option<RawMetrics>, problems: &mut Problems<'_>) -> MetricsSettings {
    let default = MetricsSettings::default();
    let Some(raw) = raw else { return default };
    let listen = raw.listen.and_then(|listen| {
        let parsed = listen.get_ref().parse::<std::net::SocketAddr>();
        if parsed.is_err() {
            problems.at(
                listen.span(),
                format!(
                    "`metrics.listen` must be an address and port such as \"127.0.0.1:9464\" or \"[::]:9464\", got {:?}",
                    listen.get_ref()
                ),
            );
        }
        parsed.ok()
    });
    MetricsSettings {
        listen,
        liveness_timeout: ranged(
            raw.liveness_timeout_secs.as_ref(),
            "metrics.liveness_timeout_secs",
            1..=3600,
            problems,
        )
        .map(Duration::from_secs)
        .unwrap_or(default.liveness_timeout),
    }
}

fn state(raw: Option<RawState>, problems: &mut Problems<'_>) -> StateSettings {
    let default = StateSettings::default();
    let Some(raw) = raw else { return default };
    let line = raw
        .dir
        .as_ref()
        .map(|d| problems.line_of(d.span().start))
        .or_else(|| {
            raw.replication_factor
                .as_ref()
                .map(|r| problems.line_of(r.span().start))
        })
        .unwrap_or(0);
    let dir = match raw.dir {
        Some(dir) if dir.get_ref().trim().is_empty() => {
            problems.at(dir.span(), "`state.dir` must not be empty");
            default.dir
        }
        Some(dir) => PathBuf::from(dir.into_inner()),
        None => default.dir,
    };
    StateSettings {
        dir,
        replication_factor: ranged(
            raw.replication_factor.as_ref(),
            "state.replication_factor",
            1..=32767,
            problems,
        ),
        line,
    }
}

fn transforms(
    raw: Vec<Spanned<RawTransform>>,
    base_dir: &Path,
    problems: &mut Problems<'_>,
    secrets: &mut Vec<String>,
) -> Vec<TransformSpec> {
    let mut specs = Vec::with_capacity(raw.len());
    // Name -> line of the transform that took it first.
    let mut taken: HashMap<String, usize> = HashMap::new();
    for raw in raw {
        let line = problems.line_of(raw.span().start);
        let raw = raw.into_inner();
        let plugin = match raw.plugin {
            Some(plugin) => PathBuf::from(non_empty(plugin, "transform.plugin", problems)),
            None => {
                problems.at_line(line, "missing field `plugin` in [[transform]]");
                PathBuf::new()
            }
        };
        let (name, name_line) = match raw.name {
            Some(name) => {
                let name_line = problems.line_of(name.span().start);
                (non_empty(name, "transform.name", problems), name_line)
            }
            None => {
                let name = default_name(&plugin);
                if name.is_empty() && !plugin.as_os_str().is_empty() {
                    problems.at_line(
                        line,
                        "cannot derive a transform name from `plugin`; set `name`",
                    );
                }
                (name, line)
            }
        };
        // An empty name has been reported already; do not report it again as a duplicate.
        if let Some(first) = taken.get(&name).filter(|_| !name.is_empty()) {
            problems.at_line(
                name_line,
                format!("transform name `{name}` is already used by the transform at line {first}"),
            );
        } else {
            taken.insert(name.clone(), line);
        }
        let config_json = match raw.config {
            Some(table) => config_json(table, &name, line, problems, secrets),
            None => "{}".to_owned(),
        };
        specs.push(TransformSpec {
            name,
            plugin: base_dir.join(plugin),
            config_json,
            line,
        });
    }
    specs
}

/// The plugin's file stem without the `lib` prefix Unix linkers add, so
/// `target/release/libtxform_passthrough.so` is named `txform_passthrough`. Empty when the path
/// has no file name.
fn default_name(plugin: &Path) -> String {
    let stem = plugin
        .file_stem()
        .map(|stem| stem.to_string_lossy())
        .unwrap_or_default();
    stem.strip_prefix("lib").unwrap_or(&stem).to_owned()
}
