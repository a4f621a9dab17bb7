//! A configured topic that does not exist is a configuration problem: `txform run` exits with code 2
//! at start-up, naming the key, its line and the topic, instead of retrying produce errors for ever.
//! Also the host's topic look-ups themselves (`txform::kafka`), against the real broker.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use txform::config;
use txform::kafka::{check_topics, KnownTopics, TopicProblem, TopicsError};
use txform_tests::broker::client_config;
use txform_tests::dead_letter::{write_pipeline_with_policy, ErrorPolicy};
use txform_tests::{
    passthrough_config, run_command, CommandResult, PipelineConfig, Plugin, TestEnv, Topic,
};

/// Hang guard for a start-up that must fail: without the check, txform retries for ever.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A topic of this test that is never created.
fn absent(env: &TestEnv, suffix: &str) -> Topic {
    Topic {
        name: env.name(suffix),
        partitions: 1,
    }
}

/// The 1-based line of `text` that is exactly `line`.
fn line_of(text: &str, line: &str) -> usize {
    text.lines()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("no line {line:?} in:\n{text}"))
        + 1
}

fn run(config: &Path) -> CommandResult {
    run_command(&[OsStr::new("run"), config.as_os_str()], STARTUP_TIMEOUT)
}

/// Exit code 2 with exactly the one `txform:` line `expected`.
fn assert_startup_refused(result: &CommandResult, expected: &str) {
    assert_eq!(
        (result.code(), result.messages().as_slice()),
        (Some(2), [expected].as_slice()),
        "stderr:\n{}",
        result.stderr
    );
}

fn copy_pipeline(env: &TestEnv, input: &Topic, output: &Topic) -> PipelineConfig {
    env.pipeline(&[input], output)
        .transform("copy", Plugin::passthrough(), passthrough_config())
}

#[test]
fn missing_sink_topic_stops_start_up() {
    let env = TestEnv::new("missing-sink");
    let input = env.create_topic("in", 1);
    let output = absent(&env, "out");
    let config = env.write_pipeline(&copy_pipeline(&env, &input, &output), "pipeline.toml");
    let text = std::fs::read_to_string(&config).expect("read the pipeline file");
    let line = line_of(&text, &format!("topic = \"{}\"", output.name));
    let started = Instant::now();
    let result = run(&config);
    eprintln!("missing sink topic: exit after {:?}", started.elapsed());
    assert_startup_refused(
        &result,
        &format!(
            "txform: cannot start: {}:{line}: `sink.topic` \"{}\" does not exist on the cluster (auto-creation is not used: create it first)",
            config.display(),
            output.name
        ),
    );
}

#[test]
fn missing_dead_letter_topic_stops_start_up() {
    let env = TestEnv::new("missing-dlq");
    let input = env.create_topic("in", 1);
    let output = env.create_topic("out", 1);
    let dlq = absent(&env, "dlq");
    let pipeline = copy_pipeline(&env, &input, &output);
    let config = write_pipeline_with_policy(&env, &pipeline, &ErrorPolicy::dead_letter(&dlq));
    let text = std::fs::read_to_string(&config).expect("read the pipeline file");
    let line = line_of(&text, &format!("dead_letter_topic = \"{}\"", dlq.name));
    let started = Instant::now();
    let result = run(&config);
    eprintln!(
        "missing dead-letter topic: exit after {:?}",
        started.elapsed()
    );
    assert_startup_refused(
        &result,
        &format!(
            "txform: cannot start: {}:{line}: `errors.dead_letter_topic` \"{}\" does not exist on the cluster (auto-creation is not used: create it first)",
            config.display(),
            dlq.name
        ),
    );
}

#[test]
fn missing_source_topic_stops_start_up() {
    let env = TestEnv::new("missing-source");
    let input = absent(&env, "in");
    let output = env.create_topic("out", 1);
    let config = env.write_pipeline(&copy_pipeline(&env, &input, &output), "pipeline.toml");
    let text = std::fs::read_to_string(&config).expect("read the pipeline file");
    let line = line_of(&text, &format!("topics = [\"{}\"]", input.name));
    let result = run(&config);
    assert_startup_refused(
        &result,
        &format!(
            "txform: cannot start: {}:{line}: `source.topics` \"{}\" does not exist on the cluster (auto-creation is not used: create it first)",
            config.display(),
            input.name
        ),
    );
}

fn metadata_consumer(bootstrap: &str) -> BaseConsumer {
    let mut config = client_config();
    config.set("bootstrap.servers", bootstrap);
    config.create().expect("create a metadata consumer")
}

/// `txform::config` reads the file the harness wrote, so the host's own lines are used.
fn host_pipeline(config: &Path) -> config::Pipeline {
    config::load(config).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn check_topics_reports_every_missing_topic_and_passes_once_they_exist() {
    let env = TestEnv::new("check-topics");
    let input = env.create_topic("in", 1);
    let output = absent(&env, "out");
    let dlq = absent(&env, "dlq");
    let pipeline = copy_pipeline(&env, &input, &output);
    let config = write_pipeline_with_policy(&env, &pipeline, &ErrorPolicy::dead_letter(&dlq));
    let host = host_pipeline(&config);
    let consumer = metadata_consumer(&txform_tests::bootstrap());
    let lines: Vec<String> = host
        .configured_topics()
        .iter()
        .filter(|t| t.key != "source.topics")
        .map(|t| {
            format!(
                "{}:{}: `{}` \"{}\" does not exist on the cluster (auto-creation is not used: create it first)",
                config.display(),
                t.line,
                t.key,
                t.name
            )
        })
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        check_topics(&host, consumer.client(), Duration::from_secs(20)),
        Err(TopicsError::Refused(lines))
    );
    env.create_topic("out", 1);
    env.create_topic("dlq", 1);
    assert_eq!(
        check_topics(&host, consumer.client(), Duration::from_secs(20)),
        Ok(())
    );
}

#[test]
fn check_topics_gives_up_on_an_unreachable_cluster_by_its_deadline() {
    let env = TestEnv::offline("check-unreachable");
    let (input, output) = (absent(&env, "in"), absent(&env, "out"));
    let config = env.write_pipeline(&copy_pipeline(&env, &input, &output), "pipeline.toml");
    let host = host_pipeline(&config);
    // Nothing listens on port 1.
    let consumer = metadata_consumer("127.0.0.1:1");
    let deadline = Duration::from_secs(3);
    let started = Instant::now();
    let result = check_topics(&host, consumer.client(), deadline);
    let took = started.elapsed();
    eprintln!("unreachable cluster: check_topics returned after {took:?}");
    match result {
        Err(TopicsError::Unreachable { topic, .. }) => assert_eq!(topic, input.name),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(
        took >= deadline && took < deadline + Duration::from_secs(1),
        "check_topics must return at its deadline ({deadline:?}), took {took:?}"
    );
}

#[test]
fn known_topics_asks_once_and_rechecks_a_missing_topic_later() {
    let env = TestEnv::new("known-topics");
    let existing = env.create_topic("there", 1);
    let later = env.name("later");
    let consumer = metadata_consumer(&txform_tests::bootstrap());
    let recheck = Duration::from_secs(6);
    let mut known = KnownTopics::with_intervals(Duration::from_secs(5), recheck);
    assert_eq!(known.check(consumer.client(), &existing.name), Ok(()));
    assert_eq!(
        known.check(consumer.client(), &later),
        Err(TopicProblem::Missing(later.clone()))
    );
    // The answer was cached before this instant.
    let asked = Instant::now();
    assert_eq!(
        known.check(consumer.client(), "bad out!"),
        Err(TopicProblem::InvalidName {
            name: "bad out!".into(),
            reason: config::topic_name_problem("bad out!").expect("an invalid name"),
        })
    );
    env.create_topic("later", 1);
    let created = asked.elapsed();
    assert!(
        created < recheck,
        "creating the topic took {created:?}, longer than the recheck interval"
    );
    // Within the recheck interval the cached answer stands, although the topic now exists: the
    // cluster was not asked again.
    assert_eq!(
        known.check(consumer.client(), &later),
        Err(TopicProblem::Missing(later.clone()))
    );
    std::thread::sleep(recheck.saturating_sub(asked.elapsed()));
    assert_eq!(known.check(consumer.client(), &later), Ok(()));
    assert_eq!(
        TopicProblem::Missing("x".into()).to_string(),
        "\"x\" does not exist on the cluster (auto-creation is not used: create it first)"
    );
}
