//! Secured clusters (`scripts/kafka-secure.sh`): SASL_SSL with SCRAM and mutual TLS, as principals
//! that hold exactly the ACLs a pipeline needs (or one fewer), credentials kept out of the file, and
//! no secret in anything txform writes.

use std::time::Duration;

use toml::{Table, Value};
use txform_tests::secure::{self, SecureEnv, APP_PASSWORD, CLIENT_KEY_PASSWORD};
use txform_tests::{
    assert_same_by_partition, by_partition, committed_offsets, passthrough_config, produce,
    read_topic, standard_inputs, wait_for_committed, Isolation, PipelineConfig, Plugin, Record,
    Topic, Txform,
};

use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

const N: u64 = 2000;
const PARTITIONS: i32 = 2;

/// Creates an input with `records` records over `partitions` partitions and an output, and starts
/// a copy between them with `security` in `[kafka.common]`.
fn copy(
    env: &mut SecureEnv,
    partitions: i32,
    records: u64,
    security: Table,
) -> (Topic, Topic, Vec<Record>, PipelineConfig, Txform) {
    let (input, output, produced, pipeline) = copy_pipeline(env, partitions, records, security);
    let txform = env.env.spawn(&pipeline, "0");
    (input, output, produced, pipeline, txform)
}

/// [`copy`] without starting it.
fn copy_pipeline(
    env: &mut SecureEnv,
    partitions: i32,
    records: u64,
    security: Table,
) -> (Topic, Topic, Vec<Record>, PipelineConfig) {
    let input = env.create_topic("in", partitions);
    let output = env.create_topic("out", partitions);
    let produced = produce(&input, &standard_inputs(records, partitions));
    let mut pipeline = env.pipeline(&input, &output).transform(
        "copy",
        Plugin::passthrough(),
        passthrough_config(),
    );
    pipeline.common.extend(security);
    (input, output, produced, pipeline)
}

/// Copies [`N`] records as the env's principal with `security` as `[kafka.common]` and checks the
/// output and the group's offsets exactly.
fn copies_exactly_once(mut env: SecureEnv, security: Table) {
    let (input, output, produced, pipeline, mut txform) = copy(&mut env, PARTITIONS, N, security);
    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);

    let committed = read_topic(&output, Isolation::ReadCommitted);
    assert_same_by_partition(&produced, &committed, PARTITIONS);
    let ends: Vec<Option<i64>> = by_partition(&produced, PARTITIONS)
        .iter()
        .map(|p| Some(p.len() as i64))
        .collect();
    assert_eq!(committed_offsets(&pipeline.group_id, &input), ends);
}

#[test]
fn scram_sha_512_least_privilege_copies_exactly_once() {
    let env = SecureEnv::new("sec-scram", "app");
    copies_exactly_once(env, secure::scram("app", APP_PASSWORD));
}

#[test]
fn sasl_plain_least_privilege_copies_exactly_once() {
    let env = SecureEnv::new("sec-plain", "app");
    let mut security = secure::scram("app", APP_PASSWORD);
    security.insert("sasl.mechanism".into(), Value::String("PLAIN".into()));
    copies_exactly_once(env, security);
}

#[test]
fn mutual_tls_least_privilege_copies_exactly_once() {
    let env = SecureEnv::new("sec-mtls", "mtls-app");
    copies_exactly_once(env, secure::mutual_tls());
}

/// How long a refused connection may take to stop the instance: librdkafka reports the refusal on
/// its first connection attempt; the rest is start-up and the stop. A hang guard with room for a
/// loaded machine, far below "for ever".
const REFUSED_WITHIN: Duration = Duration::from_secs(30);

/// Runs a pipeline with `security` that the broker (or the client) must refuse; returns the exit
/// code and the error lines, after checking nothing was committed.
fn refused(label: &str, security: Table) -> (Option<i32>, Vec<String>) {
    let mut env = SecureEnv::new(label, "app");
    let (input, output, _, pipeline, mut txform) = copy(&mut env, 1, 10, security);
    let status = txform.wait_exit(REFUSED_WITHIN);
    assert!(read_topic(&output, Isolation::ReadUncommitted).is_empty());
    assert_eq!(committed_offsets(&pipeline.group_id, &input), [None]);
    (status.code(), txform.error_messages())
}

/// Asserts exit code 3 and exactly one error line, which holds every one of `parts`.
fn assert_one_line(label: &str, security: Table, parts: &[&str]) {
    let (code, errors) = refused(label, security);
    assert_eq!(code, Some(3), "{errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    for part in parts {
        assert!(errors[0].contains(part), "{part:?} missing from {errors:?}");
    }
}

const BAD_CREDENTIALS: &str = "txform: fatal Kafka error, stopping: Kafka refused this client's credentials: sasl_ssl://127.0.0.1:9392/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512";

#[test]
fn a_wrong_password_stops_with_one_line() {
    let security = secure::scram("app", "not-the-password-5a");
    assert_one_line("sec-badpw", security, &[BAD_CREDENTIALS]);
}

#[test]
fn an_unknown_user_stops_with_one_line() {
    let security = secure::scram("nobody", APP_PASSWORD);
    assert_one_line("sec-nouser", security, &[BAD_CREDENTIALS]);
}

#[test]
fn an_untrusted_server_certificate_stops_with_one_line() {
    let mut security = secure::scram("app", APP_PASSWORD);
    security.insert(
        "ssl.ca.location".into(),
        Value::String(secure::tls_file("other-ca.pem")),
    );
    assert_one_line(
        "sec-untrusted",
        security,
        &[
            "txform: fatal Kafka error, stopping: TLS with the broker failed: ",
            "certificate verify failed",
            "check ssl.ca.location",
        ],
    );
}

#[test]
fn a_wrong_host_name_stops_with_one_line() {
    // The broker's certificate names 127.0.0.1 only.
    let mut security = secure::scram("app", APP_PASSWORD);
    security.insert(
        "bootstrap.servers".into(),
        Value::String("localhost:9392".into()),
    );
    assert_one_line(
        "sec-wronghost",
        security,
        &[
            "txform: fatal Kafka error, stopping: TLS with the broker failed: ",
            "certificate verify failed",
            "localhost",
        ],
    );
}

/// Runs 10 records through a pipeline as `principal` (which lacks one ACL), with a dead-letter
/// topic and the record at offset 3 rejected; returns the exit code and the error lines after
/// checking that nothing was committed: no output, no dead letter, no group offset.
fn missing_one_acl(principal: &str) -> (Option<i32>, Vec<String>) {
    let mut env = SecureEnv::new(&format!("sec-{principal}"), principal);
    let input = env.create_topic("in", 1);
    let output = env.create_topic("out", 1);
    let dead_letters = env.create_topic("dlq", 1);
    produce(&input, &standard_inputs(10, 1));
    let reject_offset_3 = txform_tests::table(&[
        ("action", "reject".into()),
        (
            "offsets",
            Value::Array(vec![Value::Table(txform_tests::table(&[
                ("partition", 0.into()),
                ("offset", 3.into()),
            ]))]),
        ),
    ]);
    let mut pipeline = env.pipeline(&input, &output).retries(0, 10, 10).transform(
        "guard",
        Plugin::fault(),
        reject_offset_3,
    );
    pipeline
        .common
        .extend(secure::scram(principal, APP_PASSWORD));
    let config = txform_tests::dead_letter::write_pipeline_with_policy(
        &env.env,
        &pipeline,
        &txform_tests::dead_letter::ErrorPolicy::dead_letter(&dead_letters),
    );
    let mut txform = env.env.spawn_file(&config, "0");
    let status = txform.wait_exit(EXIT_TIMEOUT);
    for topic in [&output, &dead_letters] {
        let committed = read_topic(topic, Isolation::ReadCommitted);
        assert!(committed.is_empty(), "{}: {committed:?}", topic.name);
    }
    assert_eq!(committed_offsets(&pipeline.group_id, &input), [None]);
    (status.code(), txform.error_messages())
}

/// `missing_one_acl`'s single error line, which must hold every one of `parts`.
fn assert_missing(principal: &str, code: i32, parts: &[&str]) {
    let (exit, errors) = missing_one_acl(principal);
    assert_eq!(exit, Some(code), "{errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    for part in parts {
        assert!(errors[0].contains(part), "{part:?} missing from {errors:?}");
    }
}

#[test]
fn missing_transactional_id_write() {
    assert_missing(
        "no-txn",
        3,
        &[
            "txform: fatal Kafka error, stopping: init_transactions: ",
            "Broker: Transactional Id authorization failed (not authorised: the principal needs Write and Describe on the TransactionalId)",
        ],
    );
}

#[test]
fn missing_group_read() {
    assert_missing(
        "no-group",
        2,
        &[
            "txform: cannot start: consumer group \"sec-no-group-group-",
            "(`source.group_id`) cannot be used: the cluster refuses it to this client (",
            "Group authorization failed",
            "grant its principal Read on the group",
        ],
    );
}

#[test]
fn missing_sink_write() {
    assert_missing(
        "no-sink",
        2,
        &[
            "txform: cannot start: ",
            "`sink.topic` \"sec-no-sink-out-",
            "cannot be used: the cluster refuses to describe it to this client (TopicAuthorizationFailed (Broker: Topic authorization failed)); grant its principal access to the topic (ACL: Write on the topic)",
        ],
    );
}

#[test]
fn missing_dead_letter_write() {
    assert_missing(
        "no-dlq",
        2,
        &[
            "txform: cannot start: ",
            "`errors.dead_letter_topic` \"sec-no-dlq-dlq-",
            "cannot be used: the cluster refuses to describe it to this client (TopicAuthorizationFailed (Broker: Topic authorization failed)); grant its principal access to the topic (ACL: Write on the topic)",
        ],
    );
}

/// The credentials come from an environment variable (user) and a file (password); with every
/// log on (`RUST_LOG=trace`, librdkafka `debug = "all"`) and a record rejected by a plugin whose
/// message repeats the password, no output of the run holds a secret: not `validate`, not a log
/// line, not the dead-letter headers.
#[test]
fn secrets_from_env_and_file_never_leak() {
    let mut env = SecureEnv::new("sec-leak", "app");
    let input = env.create_topic("in", 1);
    let output = env.create_topic("out", 1);
    let dead_letters = env.create_topic("dlq", 1);
    let mut inputs = standard_inputs(200, 1);
    inputs[7] = inputs[7]
        .clone()
        .with_value(format!("poison {APP_PASSWORD}"));
    produce(&input, &inputs);

    let password_file = env.env.path("kafka-password");
    std::fs::write(&password_file, format!("{APP_PASSWORD}\n")).expect("write the password file");
    let password = format!("${{file:{}}}", password_file.display());
    let mut security = secure::scram("${env:TXFORM_SECURED_TEST_USER}", &password);
    security.insert("debug".into(), Value::String("all".into()));
    let reject_poison = txform_tests::table(&[
        ("action", "reject".into()),
        ("value_contains", password.into()),
    ]);
    let mut pipeline = env.pipeline(&input, &output).retries(0, 10, 10).transform(
        "guard",
        Plugin::fault(),
        reject_poison,
    );
    pipeline.common.extend(security);
    let config = txform_tests::dead_letter::write_pipeline_with_policy(
        &env.env,
        &pipeline,
        &txform_tests::dead_letter::ErrorPolicy::dead_letter(&dead_letters),
    );
    let text = std::fs::read_to_string(&config).expect("read the pipeline file");
    assert!(!text.contains(APP_PASSWORD), "the file holds no secret");

    let user = [("TXFORM_SECURED_TEST_USER", "app"), ("RUST_LOG", "trace")];
    let validate = env.env.path("validate.log");
    let mut validated = Txform::spawn_with_env(
        "validate",
        &["validate".as_ref(), config.as_os_str()],
        &validate,
        &user,
    );
    validated.expect_exit_code(0, EXIT_TIMEOUT);

    let log = env.env.path("run.log");
    let mut txform =
        Txform::spawn_with_env("run", &["run".as_ref(), config.as_os_str()], &log, &user);
    wait_for_committed(&output, 199, PROCESS_TIMEOUT);
    let letters = wait_for_committed(&dead_letters, 1, PROCESS_TIMEOUT);
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);

    assert_eq!(read_topic(&output, Isolation::ReadCommitted).len(), 199);
    let error = String::from_utf8_lossy(letters[0].header("txform.error").expect("txform.error"));
    assert!(error.contains("[redacted]"), "{error}");
    let outputs = [
        validated.log(),
        txform.log(),
        error.into_owned(),
        letters[0].position(),
    ];
    // Proof that the logs were on: librdkafka's SASL debug lines are there.
    assert!(
        txform.log().contains("librdkafka: SASL"),
        "no librdkafka debug lines"
    );
    for (n, output) in outputs.iter().enumerate() {
        assert!(
            !output.contains(APP_PASSWORD),
            "output {n} holds the password"
        );
        assert!(
            !output.contains(CLIENT_KEY_PASSWORD),
            "output {n} holds a key passphrase"
        );
    }
}

#[test]
fn a_missing_secret_is_a_config_error_at_its_line() {
    let env = SecureEnv::new("sec-nosecret", "app");
    let mut pipeline = env.pipeline(
        &Topic {
            name: env.name("in"),
            partitions: 1,
        },
        &Topic {
            name: env.name("out"),
            partitions: 1,
        },
    );
    pipeline = pipeline.transform("copy", Plugin::passthrough(), passthrough_config());
    pipeline
        .common
        .extend(secure::scram("app", "${env:TXFORM_SECURED_SURELY_UNSET}"));
    let config = env.env.write_pipeline(&pipeline, "pipeline.toml");
    let text = std::fs::read_to_string(&config).expect("read the pipeline file");
    let line = 1 + text
        .lines()
        .position(|l| l.starts_with("\"sasl.password\""))
        .expect("the password line");
    let result =
        txform_tests::run_command(&["validate".as_ref(), config.as_os_str()], EXIT_TIMEOUT);
    assert_eq!(result.code(), Some(2));
    assert_eq!(
        result.stderr_lines(),
        [format!(
            "txform: {}:{line}: `kafka.common.\"sasl.password\"` refers to `${{env:TXFORM_SECURED_SURELY_UNSET}}`, but environment variable TXFORM_SECURED_SURELY_UNSET is not set",
            config.display()
        )]
    );
}

/// Fencing works through authentication: `kill -9` with an open transaction, then a restart with
/// the same instance id over SASL_SSL; every record comes out exactly once and the killed
/// instance's open transaction is aborted.
#[test]
fn kill_9_and_restart_over_sasl_ssl_is_exactly_once() {
    const RECORDS: u64 = 6000;
    let mut env = SecureEnv::new("sec-kill9", "app");
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let produced = produce(&input, &standard_inputs(RECORDS, PARTITIONS));
    let mut pipeline = env
        .pipeline(&input, &output)
        .batch(100, 100)
        .producer_property("transaction.timeout.ms", 60_000)
        .transform("copy", Plugin::passthrough(), passthrough_config());
    pipeline.common.extend(secure::scram("app", APP_PASSWORD));

    let mut first = env.env.spawn(&pipeline, "0");
    wait_for_committed(&output, 300, PROCESS_TIMEOUT);
    let (lso, end) = txform_tests::pause_in_open_transaction(&mut first, &output, PROCESS_TIMEOUT);
    first.kill9();
    assert!(
        lso.iter().sum::<i64>() < RECORDS as i64,
        "the first instance had finished before the kill: the test proves nothing"
    );

    let mut second = env.env.spawn(&pipeline, "0");
    wait_for_committed(&output, RECORDS as usize, PROCESS_TIMEOUT);
    txform_tests::wait_for_group_at_end(&pipeline.group_id, &input, PROCESS_TIMEOUT);
    second.terminate();
    second.expect_exit_code(0, EXIT_TIMEOUT);

    let committed = read_topic(&output, Isolation::ReadCommitted);
    txform_tests::assert_exactly_once_by_id(0..RECORDS, &committed, "read_committed output");
    assert_same_by_partition(&produced, &committed, PARTITIONS);
    crate::fencing::assert_open_transaction_aborted(&output, &committed, &lso, &end);
}

/// A local client-credentials token endpoint (scripts/kafka/oidc-token-server.py) issuing
/// unsecured JWTs for `subject`; killed when dropped.
struct TokenEndpoint {
    child: std::process::Child,
    url: String,
    /// One line per answered request.
    log: std::path::PathBuf,
}

impl TokenEndpoint {
    fn start(env: &SecureEnv, client_id: &str, client_secret: &str, subject: &str) -> Self {
        let port_file = env.env.path("token-endpoint.port");
        let log = env.env.path("token-endpoint.log");
        let stdout = std::fs::File::create(&log).expect("create the endpoint's log");
        let script = txform_tests::workspace_dir().join("scripts/kafka/oidc-token-server.py");
        let child = std::process::Command::new("python3")
            .arg(script)
            .arg(&port_file)
            .args([client_id, client_secret, subject])
            .stdout(stdout)
            .spawn()
            .expect("start python3 (scripts/setup.sh installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                break port;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the token endpoint did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        TokenEndpoint {
            child,
            url: format!("http://127.0.0.1:{port}/token"),
            log,
        }
    }

    /// The requests answered, in order: `granted` or `refused`.
    fn answers(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.strip_prefix("token request: "))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// OAUTHBEARER with OIDC client credentials: librdkafka fetches a token for `app` from the local
/// endpoint (which checks the client id and secret) and the broker accepts it; the pipeline copies
/// exactly once as `app`, and the client secret (from the environment) is in no log line.
#[test]
fn oidc_client_credentials_least_privilege_copies_exactly_once() {
    const CLIENT_SECRET: &str = "oidc-client-secret-2b9e";
    let mut env = SecureEnv::new("sec-oidc", "app");
    let endpoint = TokenEndpoint::start(&env, "txform-test", CLIENT_SECRET, "app");
    let security = txform_tests::table(&[
        ("security.protocol", "SASL_SSL".into()),
        ("sasl.mechanism", "OAUTHBEARER".into()),
        ("sasl.oauthbearer.method", "oidc".into()),
        (
            "sasl.oauthbearer.token.endpoint.url",
            endpoint.url.clone().into(),
        ),
        ("sasl.oauthbearer.client.id", "txform-test".into()),
        (
            "sasl.oauthbearer.client.secret",
            "${env:TXFORM_SECURED_OIDC_SECRET}".into(),
        ),
        ("ssl.ca.location", secure::tls_file("ca.pem").into()),
    ]);
    let (_, output, produced, pipeline) = copy_pipeline(&mut env, PARTITIONS, N, security);
    let config = env.env.write_pipeline(&pipeline, "pipeline.toml");
    let log = env.env.path("run.log");
    let mut txform = Txform::spawn_with_env(
        "oidc",
        &["run".as_ref(), config.as_os_str()],
        &log,
        &[
            ("TXFORM_SECURED_OIDC_SECRET", CLIENT_SECRET),
            ("RUST_LOG", "debug"),
        ],
    );
    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);
    let committed = read_topic(&output, Isolation::ReadCommitted);
    assert_same_by_partition(&produced, &committed, PARTITIONS);
    assert!(
        !txform.log().contains(CLIENT_SECRET),
        "the log holds the client secret"
    );
    // Every client (consumer, producer, observer) got its token from the endpoint, none refused.
    let answers = endpoint.answers();
    assert!(
        answers.len() >= 3 && answers.iter().all(|a| a == "granted"),
        "{answers:?}"
    );
}
