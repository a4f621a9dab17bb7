//! Every test states the exact pipeline or the exact messages, line numbers included: the
//! messages are the interface users see.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// The smallest valid file; tests that add a line put it at line 12 or later.
pub(crate) const MINIMAL: &str = r#"[kafka.common]
"bootstrap.servers" = "broker:9092"
[source]
topics = ["in"]
group_id = "group"
[sink]
topic = "out"
[transaction]
id_prefix = "prefix"
[[transform]]
plugin = "libcopy.so"
"#;

pub(crate) fn parse_ok(text: &str) -> Pipeline {
    match parse(text, Path::new("pipeline.toml"), Path::new("/base")) {
        Ok(pipeline) => pipeline,
        Err(error) => panic!("expected a valid pipeline, got:\n{error}"),
    }
}

fn problems(text: &str) -> Vec<String> {
    match parse(text, Path::new("pipeline.toml"), Path::new("/base")) {
        Ok(pipeline) => panic!("expected problems, got {pipeline:#?}"),
        Err(error) => error.problems().to_vec(),
    }
}

fn strings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

#[test]
fn full_config_round_trips() {
    let text = r#"
[kafka.common]
"bootstrap.servers" = "k1:9092,k2:9092"
"client.rack" = "rack-1"
[kafka.consumer]
"session.timeout.ms" = 10000
"enable.partition.eof" = false
[kafka.producer]
"linger.ms" = 2.5
"batch.num.messages" = 500 # names and values are checked by librdkafka

[source]
topics = ["a", "b"]
group_id = "demo"

[sink]
topic = "out"

[transaction]
guarantee = "at-least-once"
id_prefix = "demo"
instance_id = "7"
static_membership = false

[batch]
max_records = 500
max_wait_ms = 250
max_bytes = 4096

[errors]
max_retries = 3
max_retry_time_ms = 60000
initial_backoff_ms = 50
max_backoff_ms = 2000
on_failure = "dead-letter"
dead_letter_topic = "dlq"

[log]
stats_interval_secs = 30

[metrics]
listen = "127.0.0.1:9464"
liveness_timeout_secs = 45

[[transform]]
name = "parse"
plugin = "plugins/libjson.so"
[transform.config]
fields = ["id", "ts"]
nested = { depth = 2, ratio = 0.25 }
when = 1979-05-27T07:32:00Z

[[transform]]
plugin = "/opt/txform/libtxform_passthrough.so"
"#;
    let expected = Pipeline {
        origin: PathBuf::from("pipeline.toml"),
        kafka: KafkaProperties {
            common: strings(&[
                ("bootstrap.servers", "k1:9092,k2:9092"),
                ("client.rack", "rack-1"),
            ]),
            consumer: strings(&[
                ("session.timeout.ms", "10000"),
                ("enable.partition.eof", "false"),
            ]),
            producer: strings(&[("linger.ms", "2.5"), ("batch.num.messages", "500")]),
        },
        source: Source {
            topics: vec!["a".to_string(), "b".to_string()],
            group_id: "demo".to_string(),
        },
        sink: Sink {
            topic: "out".to_string(),
        },
        transaction: Transaction {
            guarantee: Guarantee::AtLeastOnce,
            id_prefix: "demo".to_string(),
            instance_id: "7".to_string(),
            static_membership: false,
        },
        batch: Batch {
            max_records: 500,
            max_wait: Duration::from_millis(250),
            max_bytes: 4096,
        },
        errors: ErrorPolicy {
            max_retries: 3,
            max_retry_time: Some(Duration::from_secs(60)),
            on_failure: FailureAction::DeadLetter {
                topic: "dlq".to_string(),
            },
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(2000),
        },
        log: LogSettings {
            stats_interval: Duration::from_secs(30),
        },
        metrics: MetricsSettings {
            listen: Some("127.0.0.1:9464".parse().expect("an address")),
            liveness_timeout: Duration::from_secs(45),
        },
        state: crate::config::StateSettings::default(),
        transforms: vec![
            TransformSpec {
                name: "parse".to_string(),
                plugin: PathBuf::from("/base/plugins/libjson.so"),
                config_json: r#"{"fields":["id","ts"],"nested":{"depth":2,"ratio":0.25},"when":"1979-05-27T07:32:00Z"}"#
                    .to_string(),
                line: 45,
            },
            TransformSpec {
                name: "txform_passthrough".to_string(),
                plugin: PathBuf::from("/opt/txform/libtxform_passthrough.so"),
                config_json: "{}".to_string(),
                line: 53,
            },
        ],
        topic_lines: TopicLines {
            source: vec![13, 13],
            sink: 17,
            dead_letter: Some(36),
        },
        secrets: Secrets::default(),
    };
    let pipeline = parse_ok(text);
    assert_eq!(pipeline, expected);
    assert_eq!(pipeline.transactional_id(), "demo-demo-7");
    assert_eq!(pipeline.location(37), "pipeline.toml:37");
}

#[test]
fn omitted_keys_take_their_defaults() {
    let pipeline = parse_ok(MINIMAL);
    assert_eq!(pipeline.kafka.consumer, Vec::new());
    assert_eq!(pipeline.kafka.producer, Vec::new());
    assert_eq!(
        pipeline.transaction,
        Transaction {
            guarantee: Guarantee::ExactlyOnce,
            id_prefix: "prefix".to_string(),
            instance_id: "0".to_string(),
            static_membership: true,
        }
    );
    assert_eq!(
        pipeline.batch,
        Batch {
            max_records: 100_000,
            max_wait: Duration::from_millis(100),
            max_bytes: 16 * 1024 * 1024,
        }
    );
    assert_eq!(
        pipeline.errors,
        ErrorPolicy {
            max_retries: 5,
            max_retry_time: None,
            on_failure: FailureAction::Stop,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(10_000),
        }
    );
    assert_eq!(
        pipeline.log,
        LogSettings {
            stats_interval: Duration::from_secs(10),
        }
    );
    assert_eq!(
        pipeline.transforms,
        vec![TransformSpec {
            name: "copy".to_string(),
            plugin: PathBuf::from("/base/libcopy.so"),
            config_json: "{}".to_string(),
            line: 10,
        }]
    );
    assert_eq!(pipeline.transactional_id(), "prefix-group-0");
}

#[test]
fn transactional_id_includes_the_group() {
    let other_group = MINIMAL.replace("group_id = \"group\"", "group_id = \"other\"");
    assert_eq!(parse_ok(&other_group).transactional_id(), "prefix-other-0");
}

#[test]
fn instance_id_override_changes_the_transactional_id() {
    let pipeline = parse_ok(MINIMAL).with_instance_id("3".to_string());
    assert_eq!(pipeline.transaction.instance_id, "3");
    assert_eq!(pipeline.transactional_id(), "prefix-group-3");
}

#[test]
fn unknown_key_names_the_key_and_its_line() {
    let text = format!("{MINIMAL}[batch]\nmax_record = 10\n");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:13: unknown field `max_record`, expected one of `max_records`, `max_wait_ms`, `max_bytes`"]
    );
}

#[test]
fn unknown_table_and_unknown_transform_key_name_their_line() {
    let text = format!("{MINIMAL}[sinks]\ntopic = \"x\"\n");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:12: unknown field `sinks`, expected one of `kafka`, `source`, `sink`, `transaction`, `batch`, `errors`, `log`, `metrics`, `state`, `transform`"]
    );
    let text = format!("{MINIMAL}[[transform]]\nplugin = \"libb.so\"\nconfg.x = 1\n");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:14: unknown field `confg`, expected one of `name`, `plugin`, `config`"]
    );
}

#[test]
fn wrong_type_points_at_the_value() {
    let text = format!("{MINIMAL}[errors]\n\nmax_retries = \"three\"\n");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:14: invalid type: string \"three\", expected i64"]
    );
}

#[test]
fn wrong_variant_lists_the_accepted_ones() {
    let text = MINIMAL.replace(
        "id_prefix = \"prefix\"",
        "id_prefix = \"prefix\"\nguarantee = \"exactly_once\"",
    );
    assert_eq!(
        problems(&text),
        ["pipeline.toml:10: unknown variant `exactly_once`, expected `exactly-once` or `at-least-once`"]
    );
}

#[test]
fn out_of_range_values_name_the_key_and_the_range() {
    let text = format!(
        "{MINIMAL}[batch]\nmax_records = 0\nmax_wait_ms = 60001\nmax_bytes = 1023\n[log]\nstats_interval_secs = -1\n"
    );
    assert_eq!(
        problems(&text),
        [
            "pipeline.toml:13: `batch.max_records` must be between 1 and 100000, got 0",
            "pipeline.toml:14: `batch.max_wait_ms` must be between 1 and 60000, got 60001",
            "pipeline.toml:15: `batch.max_bytes` must be between 1024 and 1073741824, got 1023",
            "pipeline.toml:17: `log.stats_interval_secs` must be between 1 and 3600, got -1",
        ]
    );
}

#[test]
fn a_bad_metrics_address_or_timeout_names_the_key_and_line() {
    let text = format!("{MINIMAL}[metrics]\nlisten = \"localhost\"\nliveness_timeout_secs = 0\n");
    assert_eq!(
        problems(&text),
        [
            "pipeline.toml:13: `metrics.listen` must be an address and port such as \"127.0.0.1:9464\" or \"[::]:9464\", got \"localhost\"",
            "pipeline.toml:14: `metrics.liveness_timeout_secs` must be between 1 and 3600, got 0",
        ]
    );
}

#[test]
fn state_settings_parse_and_bad_ones_name_their_line() {
    let default = parse_ok(MINIMAL).state;
    assert_eq!(default, crate::config::StateSettings::default());
    assert_eq!(default.dir, PathBuf::from("./txform-state"));
    let text = format!("{MINIMAL}[state]\ndir = \"/var/lib/txform\"\nreplication_factor = 3\n");
    let state = parse_ok(&text).state;
    assert_eq!(state.dir, PathBuf::from("/var/lib/txform"));
    assert_eq!(state.replication_factor, Some(3));
    assert_eq!(state.line, 13);
    let text = format!("{MINIMAL}[state]\ndir = \" \"\nreplication_factor = 0\n");
    assert_eq!(
        problems(&text),
        [
            "pipeline.toml:13: `state.dir` must not be empty",
            "pipeline.toml:14: `state.replication_factor` must be between 1 and 32767, got 0"
        ]
    );
}

#[test]
fn backoff_must_not_start_above_its_maximum() {
    let text = format!("{MINIMAL}[errors]\ninitial_backoff_ms = 20000\n");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:13: `errors.initial_backoff_ms` (20000) must not be greater than `errors.max_backoff_ms` (10000)"]
    );
    let text = format!("{MINIMAL}[errors]\nmax_backoff_ms = 50\n");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:13: `errors.initial_backoff_ms` (100) must not be greater than `errors.max_backoff_ms` (50)"]
    );
}

#[test]
fn missing_tables_are_all_reported_at_line_1() {
    let text = "[sink]\ntopic = \"out\"\n";
    assert_eq!(
        problems(text),
        [
            "pipeline.toml:1: missing table [kafka.common]",
            "pipeline.toml:1: missing table [source]",
            "pipeline.toml:1: missing table [transaction]",
            "pipeline.toml:1: missing table [[transform]]: the chain needs at least one transform",
        ]
    );
}

#[test]
fn missing_source_is_reported_with_the_other_problems() {
    let text = MINIMAL
        .replace("[source]\ntopics = [\"in\"]\ngroup_id = \"group\"\n", "")
        .replace("id_prefix = \"prefix\"", "id_prefix = \"\"");
    assert_eq!(
        problems(&text),
        [
            "pipeline.toml:1: missing table [source]",
            "pipeline.toml:6: `transaction.id_prefix` must not be empty",
        ]
    );
}

#[test]
fn missing_key_names_its_table() {
    let text = MINIMAL.replace("group_id = \"group\"\n", "");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:3: missing field `group_id` in [source]"]
    );
    let text = MINIMAL.replace("\"bootstrap.servers\" = \"broker:9092\"\n", "");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:1: missing property \"bootstrap.servers\" in [kafka.common]"]
    );
    let text = format!("{MINIMAL}\n[[transform]]\nname = \"second\"\n");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:13: missing field `plugin` in [[transform]]"]
    );
}

#[test]
fn dotted_and_inline_tables_are_accepted() {
    let text = r#"kafka.common."bootstrap.servers" = "broker:9092"
source.topics = ["in"]
source.group_id = "group"
sink = { topic = "out" }
transaction.id_prefix = "prefix"
transform = [{ plugin = "libcopy.so", config.mode = "fast" }]
"#;
    let pipeline = parse_ok(text);
    assert_eq!(pipeline.source.topics, ["in"]);
    assert_eq!(pipeline.sink.topic, "out");
    assert_eq!(pipeline.transforms[0].config_json, r#"{"mode":"fast"}"#);
    assert_eq!(pipeline.transforms[0].line, 6);
}

#[test]
fn owned_producer_property_names_the_setting_that_controls_it() {
    let text =
        format!("{MINIMAL}[kafka.producer]\n\"linger.ms\" = 5\n\"transactional.id\" = \"mine\"\n");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:14: `kafka.producer.\"transactional.id\"` is managed by txform: set `transaction.id_prefix` and `transaction.instance_id` instead"]
    );
}

#[test]
fn owned_properties_are_refused_where_their_client_reads_them() {
    let text = MINIMAL.replace(
        "\"bootstrap.servers\" = \"broker:9092\"\n",
        "\"bootstrap.servers\" = \"broker:9092\"\n\"group.id\" = \"g\"\n\"enable.idempotence\" = false\n",
    ) + "[kafka.consumer]\n\"enable.auto.commit\" = true\n\"enable.auto.offset.store\" = true\n\"isolation.level\" = \"read_uncommitted\"\n\"group.instance.id\" = \"x\"\n\"enable.idempotence\" = false\n\"client.id\" = \"mine\"\n";
    assert_eq!(
        problems(&text),
        [
            "pipeline.toml:3: `kafka.common.\"group.id\"` is managed by txform: set `source.group_id` instead",
            "pipeline.toml:4: `kafka.common.\"enable.idempotence\"` is managed by txform: txform always enables it (see `transaction.guarantee`)",
            "pipeline.toml:15: `kafka.consumer.\"enable.auto.commit\"` is managed by txform: txform commits offsets as `transaction.guarantee` requires",
            "pipeline.toml:16: `kafka.consumer.\"enable.auto.offset.store\"` is managed by txform: txform stores offsets as `transaction.guarantee` requires",
            "pipeline.toml:17: `kafka.consumer.\"isolation.level\"` is managed by txform: txform reads committed records only (see `transaction.guarantee`)",
            "pipeline.toml:18: `kafka.consumer.\"group.instance.id\"` is managed by txform: set `transaction.static_membership` instead",
            "pipeline.toml:20: `kafka.consumer.\"client.id\"` is managed by txform: txform names each client after its instance and process, which the consumer group reports when it decides who holds an instance id",
        ]
    );
}

#[test]
fn property_values_must_be_scalars() {
    let text = MINIMAL.replace(
        "\"bootstrap.servers\" = \"broker:9092\"\n",
        "\"bootstrap.servers\" = [\"broker:9092\"]\n",
    );
    assert_eq!(
        problems(&text),
        ["pipeline.toml:2: invalid type: sequence, expected a string, integer, float or boolean"]
    );
    let text = format!("{MINIMAL}[kafka.consumer]\n\"debug\".level = 1\n");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:13: invalid type: map, expected a string, integer, float or boolean"]
    );
}

#[test]
fn secret_property_values_are_redacted_in_debug_output() {
    let text = MINIMAL.replace(
        "\"bootstrap.servers\" = \"broker:9092\"\n",
        "\"bootstrap.servers\" = \"broker:9092\"\n\"sasl.password\" = \"hunter2\"\n",
    );
    let mut pipeline = parse_ok(&text);
    // Keys this librdkafka build refuses (no OpenSSL, JAAS is Java's), still redacted when set.
    pipeline.kafka.common.extend(strings(&[
        ("ssl.key.PASSWORD", "hunter3"),
        ("sasl.jaas.config", "hunter4"),
        ("sasl.oauthbearer.client.secret", "hunter5"),
    ]));
    assert_eq!(
        format!("{:?}", pipeline.kafka),
        r#"KafkaProperties { common: {"bootstrap.servers": "broker:9092", "sasl.password": "<redacted>", "ssl.key.PASSWORD": "<redacted>", "sasl.jaas.config": "<redacted>", "sasl.oauthbearer.client.secret": "<redacted>"}, consumer: {}, producer: {} }"#
    );
    assert!(!format!("{pipeline:?}").contains("hunter"));
    // The clients still get the real values.
    assert_eq!(
        pipeline.kafka.common[1],
        ("sasl.password".to_string(), "hunter2".to_string())
    );
}

#[test]
fn topics_and_ids_must_not_be_empty_or_repeated() {
    let text = r#"[kafka.common]
"bootstrap.servers" = "broker:9092"
[source]
topics = ["in", "", "in"]
group_id = ""
[sink]
topic = "in"
[transaction]
id_prefix = "prefix"
instance_id = " "
[[transform]]
plugin = "libcopy.so"
"#;
    assert_eq!(
        problems(text),
        [
            "pipeline.toml:4: `source.topics` contains an empty topic name",
            "pipeline.toml:4: topic `in` is listed twice in `source.topics`",
            "pipeline.toml:5: `source.group_id` must not be empty",
            "pipeline.toml:7: `sink.topic` `in` is also a source topic; the pipeline would consume its own output",
            "pipeline.toml:10: `transaction.instance_id` must not be empty",
        ]
    );
    let text = MINIMAL.replace("topics = [\"in\"]", "topics = []");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:4: `source.topics` must list at least one topic"]
    );
}

#[test]
fn duplicate_transform_names_point_at_both_transforms() {
    let text = format!(
        "{MINIMAL}\n[[transform]]\nplugin = \"other/libcopy.so\"\n\n[[transform]]\nname = \"copy\"\nplugin = \"libthird.so\"\n"
    );
    assert_eq!(
        problems(&text),
        [
            "pipeline.toml:13: transform name `copy` is already used by the transform at line 10",
            "pipeline.toml:17: transform name `copy` is already used by the transform at line 10",
        ]
    );
}

#[test]
fn empty_transform_chain_is_refused() {
    let text = format!(
        "transform = []\n{}",
        &MINIMAL[..MINIMAL.find("[[transform]]").unwrap_or(0)]
    );
    assert_eq!(
        problems(&text),
        ["pipeline.toml:1: the chain needs at least one [[transform]]"]
    );
}

#[test]
fn relative_plugin_paths_are_resolved_against_the_base_dir() {
    let text = format!(
        "{MINIMAL}[[transform]]\nplugin = \"../plugins/libup.so\"\n[[transform]]\nplugin = \"/abs/libabs.so\"\n"
    );
    let pipeline = parse(&text, Path::new("conf/pipeline.toml"), Path::new("conf"))
        .unwrap_or_else(|e| panic!("{e}"));
    let plugins: Vec<&Path> = pipeline
        .transforms
        .iter()
        .map(|t| t.plugin.as_path())
        .collect();
    assert_eq!(
        plugins,
        [
            Path::new("conf/libcopy.so"),
            Path::new("conf/../plugins/libup.so"),
            Path::new("/abs/libabs.so"),
        ]
    );
    let names: Vec<&str> = pipeline
        .transforms
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["copy", "up", "abs"]);
}

#[test]
fn plugin_config_that_json_cannot_hold_is_refused() {
    let text = format!("{MINIMAL}[transform.config]\nok = 1.5\nbad = nan\nlist = [1.0, inf]\n\"odd key\".x = -inf\n");
    assert_eq!(
        problems(&text),
        [
            "pipeline.toml:10: `config.bad` of transform `copy` is not a finite number, which JSON cannot represent",
            "pipeline.toml:10: `config.list[1]` of transform `copy` is not a finite number, which JSON cannot represent",
            "pipeline.toml:10: `config.\"odd key\".x` of transform `copy` is not a finite number, which JSON cannot represent",
        ]
    );
}

#[test]
fn problems_from_every_table_are_reported_together_in_file_order() {
    let text = r#"[kafka.common]
"bootstrap.servers" = "broker:9092"
"isolation.level" = "read_uncommitted"
[source]
topics = ["in"]
group_id = "group"
[sink]
topic = ""
[transaction]
id_prefix = "prefix"
[batch]
max_records = 100001
[errors]
max_retries = -1
[[transform]]
plugin = "libcopy.so"
[[transform]]
plugin = "libcopy.so"
"#;
    let error = parse(text, Path::new("pipeline.toml"), Path::new("/base"))
        .expect_err("the file has five problems");
    let expected = [
        "pipeline.toml:3: `kafka.common.\"isolation.level\"` is managed by txform: txform reads committed records only (see `transaction.guarantee`)",
        "pipeline.toml:8: `sink.topic` must not be empty",
        "pipeline.toml:12: `batch.max_records` must be between 1 and 100000, got 100001",
        "pipeline.toml:14: `errors.max_retries` must be between 0 and 4294967295, got -1",
        "pipeline.toml:17: transform name `copy` is already used by the transform at line 15",
    ];
    assert_eq!(error.problems(), expected);
    assert_eq!(error.to_string(), expected.join("\n"));
}

#[test]
fn syntax_errors_are_one_line_with_a_location() {
    let text = MINIMAL.replace("topics = [\"in\"]", "topics = [\"in\"");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:5: invalid array: expected `]`"]
    );
}

#[test]
fn guarantee_text_round_trips() {
    for guarantee in [Guarantee::ExactlyOnce, Guarantee::AtLeastOnce] {
        assert_eq!(guarantee.to_string().parse(), Ok(guarantee));
    }
    assert_eq!(Guarantee::ExactlyOnce.to_string(), "exactly-once");
    assert_eq!(Guarantee::AtLeastOnce.to_string(), "at-least-once");
    assert_eq!(
        "once".parse::<Guarantee>().map_err(|e| e.to_string()),
        Err("unknown guarantee `once`, expected `exactly-once` or `at-least-once`".to_string())
    );
}

#[test]
fn load_resolves_plugins_next_to_the_file() {
    let dir = std::env::temp_dir().join(format!("txform-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, MINIMAL).expect("write the pipeline file");
    let loaded = load(&path);
    std::fs::remove_dir_all(&dir).expect("remove the temporary directory");
    let pipeline = loaded.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pipeline.origin, path);
    assert_eq!(pipeline.transforms[0].plugin, dir.join("libcopy.so"));
}

#[test]
fn unreadable_file_is_one_problem_without_a_line() {
    let error = load(Path::new("/nonexistent/pipeline.toml")).expect_err("no such file");
    assert_eq!(
        error.problems(),
        ["/nonexistent/pipeline.toml: cannot read the file: No such file or directory (os error 2)"]
    );
}

#[test]
fn shipped_example_is_valid() {
    let example = include_str!("../../../pipeline.toml");
    if let Err(error) = parse(example, Path::new("pipeline.toml"), Path::new("")) {
        panic!("{error}");
    }
}

#[test]
fn dead_letter_needs_its_topic_and_the_topic_needs_dead_letter() {
    let text = format!("{MINIMAL}[errors]\non_failure = \"dead-letter\"\n");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:13: `errors.on_failure = \"dead-letter\"` needs `errors.dead_letter_topic`"]
    );
    let text = format!("{MINIMAL}[errors]\non_failure = \"skip\"\ndead_letter_topic = \"dlq\"\n");
    assert_eq!(
        problems(&text),
        ["pipeline.toml:14: `errors.dead_letter_topic` is only used with `errors.on_failure = \"dead-letter\"`"]
    );
    let text = format!("{MINIMAL}[errors]\non_failure = \"skip\"\n");
    assert_eq!(parse_ok(&text).errors.on_failure, FailureAction::Skip);
}

/// What [`topic_name_problem`] says of an illegal character `c` alone.
fn illegal(c: &str) -> Option<String> {
    Some(format!(
        "contains {c}, but a Kafka topic name may only contain ASCII letters, digits, '.', '_' and '-'"
    ))
}

#[test]
fn topic_names_kafka_accepts() {
    let legal: String = ('a'..='z')
        .chain('A'..='Z')
        .chain('0'..='9')
        .chain(['.', '_', '-'])
        .collect();
    for name in [
        "a",
        "Z",
        "0",
        "_",
        "-",
        "...",
        ".a",
        "..a",
        "a.",
        "orders-out",
        "__consumer_offsets",
        legal.as_str(),
        &"x".repeat(MAX_TOPIC_NAME_LENGTH),
    ] {
        assert_eq!(topic_name_problem(name), None, "{name:?}");
    }
    assert_eq!(MAX_TOPIC_NAME_LENGTH, 249);
}

#[test]
fn topic_names_that_are_empty_dots_or_too_long() {
    assert_eq!(
        topic_name_problem("").as_deref(),
        Some("is empty, but a Kafka topic name has at least one character")
    );
    assert_eq!(
        topic_name_problem(".").as_deref(),
        Some("is \".\", which Kafka does not allow as a topic name")
    );
    assert_eq!(
        topic_name_problem("..").as_deref(),
        Some("is \"..\", which Kafka does not allow as a topic name")
    );
    assert_eq!(
        topic_name_problem(&"x".repeat(250)).as_deref(),
        Some("is 250 characters long, but a Kafka topic name has at most 249 characters")
    );
    assert_eq!(
        topic_name_problem(&"a".repeat(300)).as_deref(),
        Some("is 300 characters long, but a Kafka topic name has at most 249 characters")
    );
    assert_eq!(
        topic_name_problem(&format!("{} x", "a".repeat(249))).as_deref(),
        Some("is 251 characters long and contains ' ', but a Kafka topic name has at most 249 characters and may only contain ASCII letters, digits, '.', '_' and '-'")
    );
    // Length counts characters, not bytes: 249 two-byte characters are too long only in bytes,
    // and are refused for being non-ASCII.
    assert_eq!(topic_name_problem(&"é".repeat(249)), illegal("'é'"));
}

#[test]
fn every_illegal_ascii_character_is_named() {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let mut refused = 0;
    for c in (0u8..=127).map(char::from) {
        let name = format!("a{c}b");
        if legal(c) {
            assert_eq!(topic_name_problem(&name), None, "{name:?}");
        } else {
            let shown = format!("'{}'", c.escape_debug());
            assert_eq!(topic_name_problem(&name), illegal(&shown), "{name:?}");
            refused += 1;
        }
    }
    // 128 ASCII characters less 62 letters and digits and 3 punctuation marks.
    assert_eq!(refused, 63);
    assert_eq!(topic_name_problem("tab\there"), illegal("'\\t'"));
    assert_eq!(topic_name_problem("nul\0"), illegal("'\\0'"));
}

#[test]
fn non_ascii_characters_are_illegal() {
    for (name, shown) in [
        ("caf\u{e9}", "'é'"),
        ("\u{662}\u{663}", "'٢' and '٣'"), // Arabic-Indic digits
        ("topic\u{1f600}", "'😀'"),
        ("non\u{a0}breaking", "'\\u{a0}'"),
        ("zero\u{200b}width", "'\\u{200b}'"),
    ] {
        assert_eq!(topic_name_problem(name), illegal(shown), "{name:?}");
    }
}

#[test]
fn illegal_characters_are_listed_once_each_and_at_most_five() {
    assert_eq!(topic_name_problem("bad out!"), illegal("' ' and '!'"));
    assert_eq!(topic_name_problem("a b c d"), illegal("' '"));
    assert_eq!(topic_name_problem("a/b:c"), illegal("'/' and ':'"));
    assert_eq!(topic_name_problem("a/b:c*d"), illegal("'/', ':' and '*'"));
    assert_eq!(
        topic_name_problem("1!2@3#4$5%6^"),
        illegal("'!', '@', '#', '$', '%' and more")
    );
    assert_eq!(
        topic_name_problem("1!2@3#4$5%"),
        illegal("'!', '@', '#', '$' and '%'")
    );
}

#[test]
fn configured_topics_kafka_refuses_are_named_with_their_key_and_line() {
    let long = "t".repeat(300);
    let text = format!(
        r#"[kafka.common]
"bootstrap.servers" = "broker:9092"
[source]
topics = ["in", "bad in", ".."]
group_id = "group"
[sink]
topic = "bad out!"
[transaction]
id_prefix = "prefix"
[errors]
on_failure = "dead-letter"
dead_letter_topic = "{long}"
[[transform]]
plugin = "libcopy.so"
"#
    );
    assert_eq!(
        problems(&text),
        [
            "pipeline.toml:4: `source.topics` \"bad in\" contains ' ', but a Kafka topic name may only contain ASCII letters, digits, '.', '_' and '-'",
            "pipeline.toml:4: `source.topics` \"..\" is \"..\", which Kafka does not allow as a topic name",
            "pipeline.toml:7: `sink.topic` \"bad out!\" contains ' ' and '!', but a Kafka topic name may only contain ASCII letters, digits, '.', '_' and '-'",
            "pipeline.toml:12: `errors.dead_letter_topic` \"tttttttttttttttttttttttttttttttttttttttt…\" is 300 characters long, but a Kafka topic name has at most 249 characters",
        ]
    );
}

#[test]
fn dead_letter_topic_must_be_a_topic_of_its_own() {
    let dead_letter = |topic: &str| {
        format!(
            "{MINIMAL}[errors]\non_failure = \"dead-letter\"\ndead_letter_topic = \"{topic}\"\n"
        )
    };
    assert_eq!(
        problems(&dead_letter("in")),
        ["pipeline.toml:14: `errors.dead_letter_topic` \"in\" is also a source topic: dead-lettered records would be consumed again; use a topic of its own"]
    );
    assert_eq!(
        problems(&dead_letter("out")),
        ["pipeline.toml:14: `errors.dead_letter_topic` \"out\" is also `sink.topic`: dead-lettered records would mix with the output; use a topic of its own"]
    );
    assert_eq!(
        parse_ok(&dead_letter("dlq")).errors.on_failure,
        FailureAction::DeadLetter {
            topic: "dlq".to_string()
        }
    );
}

#[test]
fn librdkafka_properties_are_checked_one_by_one_at_their_line() {
    let text = format!(
        "{MINIMAL}[kafka.consumer]\n\"no.such.property\" = 1\n\"enable.partition.eof\" = \"maybe\"\n\"session.timeout.ms\" = 6000\n[kafka.producer]\n\"linger.ms\" = \"abc\"\n\"acks\" = \"all\"\n\"compression.type\" = \"zip\"\n\"delivery.timeout.ms\" = -5\n"
    );
    assert_eq!(
        problems(&text),
        [
            "pipeline.toml:13: `kafka.consumer.\"no.such.property\"` is not a librdkafka property (librdkafka 2.12.1 lists its properties in its CONFIGURATION.md)",
            "pipeline.toml:14: `kafka.consumer.\"enable.partition.eof\"` is refused by librdkafka: Expected bool value for \"enable.partition.eof\": true or false",
            "pipeline.toml:17: `kafka.producer.\"linger.ms\"` is refused by librdkafka: Invalid value for configuration property \"linger.ms\"; allowed: 0 .. 900000 (float)",
            "pipeline.toml:19: `kafka.producer.\"compression.type\"` is refused by librdkafka: Invalid value \"zip\" for configuration property \"compression.type\"; allowed: none, gzip, snappy, lz4, zstd (enum value)",
            "pipeline.toml:20: `kafka.producer.\"delivery.timeout.ms\"` is refused by librdkafka: Configuration property \"delivery.timeout.ms\" value -5 is outside allowed range 0..2147483647",
        ]
    );
}

#[test]
fn librdkafka_problems_in_common_and_alongside_owned_keys() {
    let text = MINIMAL.replace(
        "\"bootstrap.servers\" = \"broker:9092\"\n",
        "\"bootstrap.servers\" = \"broker:9092\"\n\"security.protocol\" = \"tls\"\n\"group.id\" = \"g\"\n\"debug\" = \"all,foo\"\n\"linger.ms\" = 1000000\n",
    );
    assert_eq!(
        problems(&text),
        [
            "pipeline.toml:3: `kafka.common.\"security.protocol\"` is refused by librdkafka: Invalid value \"tls\" for configuration property \"security.protocol\"; allowed: plaintext, ssl, sasl_plaintext, sasl_ssl (enum value)",
            "pipeline.toml:4: `kafka.common.\"group.id\"` is managed by txform: set `source.group_id` instead",
            "pipeline.toml:5: `kafka.common.\"debug\"` is refused by librdkafka: Invalid value \"foo\" for configuration property \"debug\"; allowed: generic, broker, topic, metadata, feature, queue, msg, protocol, cgrp, security, fetch, interceptor, plugin, consumer, admin, eos, mock, assignor, conf, telemetry, all (CSV flags)",
            "pipeline.toml:6: `kafka.common.\"linger.ms\"` is refused by librdkafka: Configuration property \"linger.ms\" value 1e+06 is outside allowed range 0..900000",
        ]
    );
}

#[test]
fn refused_secret_values_are_never_shown() {
    let text = MINIMAL.replace(
        "\"bootstrap.servers\" = \"broker:9092\"\n",
        "\"bootstrap.servers\" = \"broker:9092\"\n\"sasl.jaas.config\" = \"hunter4\"\n\"ssl.key.password\" = \"hunter3\"\n\"sasl.password\" = \"hunter2\"\n",
    );
    let found = problems(&text);
    assert_eq!(
        found,
        [
            "pipeline.toml:3: `kafka.common.\"sasl.jaas.config\"` has a value librdkafka refuses (not shown: the key holds a secret): Java JAAS configuration is not supported, see https://github.com/confluentinc/librdkafka/wiki/Using-SASL-with-librdkafka for more information.",
        ]
    );
    assert!(!found.concat().contains("hunter"));
}

#[test]
fn configured_topics_carry_their_key_and_line() {
    let text = r#"[kafka.common]
"bootstrap.servers" = "broker:9092"
[source]
topics = [
  "in-a",
  "in-b",
]
group_id = "group"
[sink]
topic = "out"
[transaction]
id_prefix = "prefix"
[errors]
on_failure = "dead-letter"
dead_letter_topic = "dlq"
[[transform]]
plugin = "libcopy.so"
"#;
    let pipeline = parse_ok(text);
    let topic = |key, name, line| ConfiguredTopic { key, name, line };
    assert_eq!(
        pipeline.configured_topics(),
        [
            topic("source.topics", "in-a", 5),
            topic("source.topics", "in-b", 6),
            topic("sink.topic", "out", 10),
            topic("errors.dead_letter_topic", "dlq", 15),
        ]
    );
    assert_eq!(
        parse_ok(MINIMAL).configured_topics(),
        [
            topic("source.topics", "in", 4),
            topic("sink.topic", "out", 7),
        ]
    );
}

#[test]
fn secret_looking_keys() {
    for key in [
        "sasl.password",
        "SSL.KEY.PASSWORD",
        "ssl.keystore.password",
        "ssl.key.pem",
        "sasl.jaas.config",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
    ] {
        assert!(KafkaProperties::is_secret(key), "{key}");
    }
    for key in [
        "bootstrap.servers",
        "linger.ms",
        "ssl.key.location",
        "ssl.ca.pem",
        "ssl.certificate.pem",
        "sasl.mechanisms",
    ] {
        assert!(!KafkaProperties::is_secret(key), "{key}");
    }
}

/// A file in the temporary directory holding `content`, named after the test.
fn secret_file(test: &str, content: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("txform-{test}-{}", std::process::id()));
    std::fs::write(&path, content).expect("write the secret file");
    path
}

/// The tables after `[kafka.*]` of the reference tests, ending inside the `[[transform]]`.
const REFERENCE_TABLES: &str = r#"[source]
topics = ["in"]
group_id = "g"
[sink]
topic = "out"
[transaction]
id_prefix = "p"
[[transform]]
plugin = "libcopy.so"
"#;

#[test]
fn references_in_properties_and_transform_config_are_resolved_and_secret() {
    // A name no other test uses: tests run in parallel threads of one process.
    std::env::set_var("TXFORM_TEST_REFERENCE_USER", "alice");
    let file = secret_file("references", "p4ss-from-file\n");
    let text = format!(
        r#"
[kafka.common]
"bootstrap.servers" = "k1:9092"
"sasl.username" = "${{env:TXFORM_TEST_REFERENCE_USER}}"
"sasl.password" = "${{file:{}}}"
"client.rack" = "$${{not-a-reference}}"
{REFERENCE_TABLES}config = {{ token = "Bearer ${{env:TXFORM_TEST_REFERENCE_USER}}" }}
"#,
        file.display()
    );
    let pipeline = parse_ok(&text);
    std::fs::remove_file(&file).ok();
    assert_eq!(
        pipeline.kafka.common,
        strings(&[
            ("bootstrap.servers", "k1:9092"),
            ("sasl.username", "alice"),
            ("sasl.password", "p4ss-from-file"),
            ("client.rack", "${not-a-reference}"),
        ])
    );
    assert_eq!(
        pipeline.transforms[0].config_json,
        r#"{"token":"Bearer alice"}"#
    );
    assert_eq!(pipeline.secrets.values(), ["p4ss-from-file", "alice"]);
}

#[test]
fn a_secret_valued_key_is_secret_without_a_reference() {
    let text = MINIMAL.replace(
        "\"bootstrap.servers\" = \"broker:9092\"",
        "\"bootstrap.servers\" = \"broker:9092\"\n\"sasl.password\" = \"inline\"",
    );
    assert_eq!(parse_ok(&text).secrets.values(), ["inline"]);
}

#[test]
fn a_missing_variable_or_file_is_a_problem_at_its_line() {
    let text = format!(
        r#"
[kafka.common]
"bootstrap.servers" = "k1:9092"
"sasl.password" = "${{env:TXFORM_TEST_SURELY_UNSET}}"
[kafka.producer]
"ssl.key.password" = "${{file:/nonexistent/txform/secret}}"
{REFERENCE_TABLES}config = {{ key = "${{env:TXFORM_TEST_SURELY_UNSET}}" }}
"#
    );
    assert_eq!(
        problems(&text),
        [
            "pipeline.toml:4: `kafka.common.\"sasl.password\"` refers to `${env:TXFORM_TEST_SURELY_UNSET}`, but environment variable TXFORM_TEST_SURELY_UNSET is not set",
            "pipeline.toml:6: `kafka.producer.\"ssl.key.password\"` refers to `${file:/nonexistent/txform/secret}`, but file /nonexistent/txform/secret cannot be read: No such file or directory (os error 2)",
            "pipeline.toml:14: `config.key` of transform `copy` refers to `${env:TXFORM_TEST_SURELY_UNSET}`, but environment variable TXFORM_TEST_SURELY_UNSET is not set",
        ]
    );
}

#[test]
fn a_mechanism_the_build_has_is_accepted() {
    let text = MINIMAL.replace(
        "\"bootstrap.servers\" = \"broker:9092\"",
        "\"bootstrap.servers\" = \"broker:9092\"\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"",
    );
    parse_ok(&text);
}

#[test]
fn the_readme_oidc_example_is_valid() {
    std::env::set_var("TXFORM_TEST_OIDC_SECRET", "oidc-client-secret");
    let text = MINIMAL.replace(
        "\"bootstrap.servers\" = \"broker:9092\"",
        r#""bootstrap.servers" = "broker:9092"
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "OAUTHBEARER"
"sasl.oauthbearer.method" = "oidc"
"sasl.oauthbearer.token.endpoint.url" = "https://idp.example.com/oauth2/token"
"sasl.oauthbearer.client.id" = "orders-pipeline"
"sasl.oauthbearer.client.secret" = "${env:TXFORM_TEST_OIDC_SECRET}"
"sasl.oauthbearer.scope" = "kafka""#,
    );
    assert_eq!(parse_ok(&text).secrets.values(), ["oidc-client-secret"]);
}

#[test]
fn a_mechanism_the_build_lacks_is_refused_at_its_line() {
    // Kerberos is the one SASL mechanism this build leaves out.
    let text = MINIMAL.replace(
        "\"bootstrap.servers\" = \"broker:9092\"",
        "\"bootstrap.servers\" = \"broker:9092\"\n\"sasl.mechanism\" = \"GSSAPI\"",
    );
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(
            "pipeline.toml:3: `kafka.common.\"sasl.mechanism\"` = \"GSSAPI\" needs librdkafka feature sasl_gssapi, which this build of txform lacks (builtin.features: "
        ),
        "{found:?}"
    );
}
