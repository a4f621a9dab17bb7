//! Configuration and plugin-load problems: exit code 2 before anything touches Kafka, with a short
//! message (one `txform:` line, a handful of stderr lines in all) that names the file and line and says
//! what is wrong. Checked through `txform validate` and, for some, `txform run`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use txform_plugin_api::{OutRecord, Record};
use txform_tests::{bootstrap, run_command, CommandResult, Plugin, TestEnv};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Line of `max_wiat_ms` in [`pipeline_text`].
const TYPO_LINE: usize = 16;
/// Line of `[[transform]]` in [`pipeline_text`].
const TRANSFORM_LINE: usize = 18;

/// A pipeline file with one transform using `plugin`, and optionally a misspelt key at [`TYPO_LINE`].
fn pipeline_text(plugin: &str, typo: bool) -> String {
    let batch_line = if typo {
        "max_wiat_ms = 100"
    } else {
        "max_wait_ms = 100"
    };
    let lines = [
        "[kafka.common]",
        &format!("\"bootstrap.servers\" = \"{}\"", bootstrap()),
        "",
        "[source]",
        "topics = [\"in\"]",
        "group_id = \"g\"",
        "",
        "[sink]",
        "topic = \"out\"",
        "",
        "[transaction]",
        "id_prefix = \"p\"",
        "",
        "[batch]",
        "max_records = 10",
        batch_line,
        "",
        "[[transform]]",
        "name = \"copy\"",
        &format!("plugin = \"{plugin}\""),
    ];
    assert_eq!(lines[TYPO_LINE - 1], batch_line);
    assert_eq!(lines[TRANSFORM_LINE - 1], "[[transform]]");
    lines.join("\n") + "\n"
}

fn write(env: &TestEnv, text: &str) -> PathBuf {
    let path = env.path("pipeline.toml");
    std::fs::write(&path, text).expect("write the pipeline file");
    path
}

fn txform(command: &str, config: &Path) -> CommandResult {
    run_command(&[OsStr::new(command), config.as_os_str()], TIMEOUT)
}

/// Exit code 2, exactly one `txform:` line containing every one of `expected`, and a short stderr.
fn assert_refused(result: &CommandResult, expected: &[&str]) -> String {
    let describe = || {
        format!(
            "status {:?}\nstdout:\n{}\nstderr:\n{}",
            result.status, result.stdout, result.stderr
        )
    };
    assert_eq!(result.code(), Some(2), "{}", describe());
    let messages = result.messages();
    assert_eq!(
        messages.len(),
        1,
        "exactly one `txform:` line; {}",
        describe()
    );
    for part in expected {
        assert!(
            messages[0].contains(part),
            "the message must contain {part:?}; {}",
            describe()
        );
    }
    assert!(
        result.stderr_lines().len() < 5,
        "stderr must be short ({} lines); {}",
        result.stderr_lines().len(),
        describe()
    );
    assert!(
        !result.stdout.contains("ok"),
        "nothing may be reported ok; {}",
        describe()
    );
    messages[0].to_string()
}

fn passthrough_path() -> String {
    Plugin::passthrough().path().display().to_string()
}

#[test]
fn valid_file_validates() {
    let env = TestEnv::offline("config-ok");
    let config = write(&env, &pipeline_text(&passthrough_path(), false));
    let result = txform("validate", &config);
    assert_eq!(result.code(), Some(0), "stderr:\n{}", result.stderr);
    assert!(
        result
            .stdout
            .contains("ok; chain: copy (txform-passthrough 0.1.0)"),
        "{}",
        result.stdout
    );
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let env = TestEnv::offline("config-typo");
    let config = write(&env, &pipeline_text(&passthrough_path(), true));
    let location = format!("{}:{TYPO_LINE}: ", config.display());
    for command in ["validate", "run"] {
        assert_refused(
            &txform(command, &config),
            &[&location, "unknown field `max_wiat_ms`"],
        );
    }
}

#[test]
fn missing_plugin_file() {
    let env = TestEnv::offline("config-missing");
    let plugin = env.path("libnot-there.so");
    let config = write(&env, &pipeline_text(&plugin.display().to_string(), false));
    assert_refused(
        &txform("validate", &config),
        &[
            &format!("{}:{TRANSFORM_LINE}: transform `copy`: ", config.display()),
            &format!("plugin file not found: {}", plugin.display()),
        ],
    );
}

#[test]
fn non_elf_file() {
    let env = TestEnv::offline("config-garbage");
    // Relative to the pipeline file's directory.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(env.path("garbage.so"), garbage).expect("write garbage.so");
    let config = write(&env, &pipeline_text("garbage.so", false));
    assert_refused(
        &txform("validate", &config),
        &[
            &format!("{}:{TRANSFORM_LINE}: transform `copy`: ", config.display()),
            "cannot open plugin ",
            "garbage.so: invalid ELF header",
        ],
    );
}

/// A real shared library of the system that is not a plugin: zlib (librdkafka's own dependency).
fn system_library() -> PathBuf {
    let candidates = [
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/lib/aarch64-linux-gnu/libz.so.1",
        "/usr/lib/aarch64-linux-gnu/libz.so.1",
        "/usr/lib64/libz.so.1",
        "/lib64/libz.so.1",
        "/usr/lib/libz.so.1",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no zlib shared library found at any of {candidates:?}"))
}

#[test]
fn shared_library_that_is_not_a_plugin() {
    let env = TestEnv::offline("config-notplugin");
    let copy = env.path("libnot-a-plugin.so");
    std::fs::copy(system_library(), &copy).expect("copy zlib");
    let config = write(&env, &pipeline_text(&copy.display().to_string(), false));
    assert_refused(
        &txform("validate", &config),
        &[
            &format!("{}:{TRANSFORM_LINE}: transform `copy`: ", config.display()),
            &format!(
                "{} is a shared library but not a txform plugin",
                copy.display()
            ),
        ],
    );
}

#[test]
fn plugin_with_incompatible_layout() {
    let env = TestEnv::offline("config-incompatible");
    let plugin = Plugin::incompatible_fixture().path();
    let config = write(&env, &pipeline_text(&plugin.display().to_string(), false));
    for command in ["validate", "run"] {
        let message = assert_refused(
            &txform(command, &config),
            &[
                &format!("{}:{TRANSFORM_LINE}: transform `copy`: ", config.display()),
                &format!(
                    "plugin {} was built against an incompatible txform-plugin-api: ",
                    plugin.display()
                ),
            ],
        );
        // The reason must say what differs: the fixture inserted field `abi_flags` into the root
        // module's prefix (abi_stable: "prefix-types have a different prefix", "unexpected field").
        assert!(
            message.contains("abi_flags") || message.contains("different prefix"),
            "the reason must name the layout difference (field `abi_flags` / a different prefix): {message}"
        );
    }
}

#[test]
fn plugin_built_against_an_older_api_version() {
    let env = TestEnv::offline("config-oldversion");
    let plugin = Plugin::old_version_fixture().path();
    let config = write(&env, &pipeline_text(&plugin.display().to_string(), false));
    assert_refused(
        &txform("validate", &config),
        &[
            &format!("{}:{TRANSFORM_LINE}: transform `copy`: ", config.display()),
            &format!(
                "plugin {} was built against an incompatible txform-plugin-api: ",
                plugin.display()
            ),
            "it was built against plugin-api 0.1.0, this host needs 0.2.0",
        ],
    );
}

#[test]
fn plugin_built_against_a_later_api_needing_a_missing_feature() {
    let env = TestEnv::offline("config-newer");
    let plugin = Plugin::newer_fixture().path();
    let config = write(&env, &pipeline_text(&plugin.display().to_string(), false));
    for command in ["validate", "run"] {
        let message = assert_refused(&txform(command, &config), &[]);
        // The longer root module passed abi_stable's layout check; the refusal is the host's own.
        assert_eq!(
            message,
            format!(
                "txform: {}:{TRANSFORM_LINE}: transform `copy`: plugin {} cannot run in this host: it was \
                 built against txform-plugin-api 0.2.9 and needs host features this txform lacks \
                 (windowed-stores); this host's plugin-api is {}: upgrade txform",
                config.display(),
                plugin.display(),
                txform_plugin_api::API_VERSION
            )
        );
    }
}

#[test]
fn plugin_with_only_the_abi_prefix_loads() {
    let env = TestEnv::offline("config-prefix-only");
    let plugin = Plugin::prefix_only_fixture().path();
    let config = write(&env, &pipeline_text(&plugin.display().to_string(), false));
    let result = txform("validate", &config);
    assert_eq!(result.code(), Some(0), "stderr:\n{}", result.stderr);
    assert!(
        result
            .stdout
            .contains("ok; chain: copy (txform-fixture-prefix-only 0.0.0)"),
        "{}",
        result.stdout
    );

    // It runs through the host's chain, and the root-module field it lacks reads as absent.
    let module = txform::plugin::load_plugin(&plugin).expect("the prefix-only fixture loads");
    assert!(module.config_doc().is_none());
    assert_eq!(txform_plugin_api::compat::config_doc(module), None);
    let spec = txform::config::TransformSpec {
        name: "upper".into(),
        plugin: plugin.clone(),
        config_json: "{}".into(),
        line: 1,
    };
    let mut chain = txform::plugin::Chain::load(&[spec], |line| format!("test:{line}"))
        .expect("the chain loads");
    let batch = [
        Record::new("in", 0, 7, Some(5), Some(b"k"), Some(b"ab"), &[]),
        Record::new("in", 0, 8, None, None, None, &[]),
    ];
    let out = chain.run(&batch).expect("the call succeeds");
    let mut expected = OutRecord::new("AB").with_key("k").with_timestamp(5);
    expected.input = 0;
    assert_eq!(
        out.records.as_slice(),
        [txform::plugin::Produced::Record(expected)]
    );
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(
        (out.rejected[0].input, out.rejected[0].reason.as_str()),
        (1, "no value")
    );
}

/// The standard file with `old` replaced by `new` (which must be there once).
fn pipeline_with(old: &str, new: &str) -> String {
    let text = pipeline_text(&passthrough_path(), false);
    assert_eq!(text.matches(old).count(), 1, "{old:?} in:\n{text}");
    text.replace(old, new)
}

#[test]
fn topic_names_kafka_refuses_are_named_with_their_line() {
    let env = TestEnv::offline("config-topicname");
    let config = write(
        &env,
        &pipeline_with("topic = \"out\"", "topic = \"bad out!\""),
    );
    for command in ["validate", "run"] {
        assert_refused(
            &txform(command, &config),
            &[&format!(
                "{}:9: `sink.topic` \"bad out!\" contains ' ' and '!', but a Kafka topic name may only contain ASCII letters, digits, '.', '_' and '-'",
                config.display()
            )],
        );
    }
    let long = "t".repeat(300);
    let config = write(
        &env,
        &pipeline_with("topics = [\"in\"]", &format!("topics = [\"{long}\"]")),
    );
    assert_refused(
        &txform("validate", &config),
        &[&format!(
            "{}:5: `source.topics` \"{}…\" is 300 characters long, but a Kafka topic name has at most 249 characters",
            config.display(),
            "t".repeat(40)
        )],
    );
}

#[test]
fn dead_letter_topic_that_is_the_sink_is_refused() {
    let env = TestEnv::offline("config-dlqsink");
    let text = pipeline_text(&passthrough_path(), false)
        + "\n[errors]\non_failure = \"dead-letter\"\ndead_letter_topic = \"out\"\n";
    let line = text.lines().count();
    let config = write(&env, &text);
    assert_refused(
        &txform("validate", &config),
        &[&format!(
            "{}:{line}: `errors.dead_letter_topic` \"out\" is also `sink.topic`: dead-lettered records would mix with the output; use a topic of its own",
            config.display()
        )],
    );
}

#[test]
fn unknown_librdkafka_property_is_named_once_with_its_line() {
    let env = TestEnv::offline("config-property");
    let config = write(
        &env,
        &pipeline_with("\"\n\n[source]", "\"\n\"no.such.property\" = 1\n[source]"),
    );
    for command in ["validate", "run"] {
        let message = assert_refused(
            &txform(command, &config),
            &[&format!(
                "{}:3: `kafka.common.\"no.such.property\"` is not a librdkafka property (librdkafka ",
                config.display()
            )],
        );
        assert_eq!(
            message.matches("no.such.property").count(),
            1,
            "the key is named once: {message}"
        );
    }
}

#[test]
fn invalid_alias_value_is_named_under_the_key_as_written() {
    let env = TestEnv::offline("config-alias");
    let text = pipeline_text(&passthrough_path(), false)
        + "\n[kafka.producer]\n\"linger.ms\" = \"soon\"\n";
    let line = text.lines().count();
    let config = write(&env, &text);
    for command in ["validate", "run"] {
        let message = assert_refused(
            &txform(command, &config),
            &[&format!(
                "{}:{line}: `kafka.producer.\"linger.ms\"` is refused by librdkafka: Invalid value for configuration property \"linger.ms\"; allowed: 0 .. 900000 (float)",
                config.display()
            )],
        );
        assert!(
            !message.contains("queue.buffering.max.ms"),
            "librdkafka's name for the alias must not replace the user's: {message}"
        );
    }
}

#[test]
fn refused_secret_value_is_not_echoed() {
    let env = TestEnv::offline("config-secret");
    let config = write(
        &env,
        &pipeline_with(
            "\"\n\n[source]",
            "\"\n\"sasl.jaas.config\" = \"org.example.Login required password=hunter2;\"\n[source]",
        ),
    );
    let result = txform("validate", &config);
    assert_refused(
        &result,
        &[&format!(
            "{}:3: `kafka.common.\"sasl.jaas.config\"` has a value librdkafka refuses (not shown: the key holds a secret): Java JAAS configuration is not supported",
            config.display()
        )],
    );
    assert!(
        !result.stderr.contains("hunter2") && !result.stdout.contains("hunter2"),
        "the secret must not be shown:\n{}",
        result.stderr
    );
}

/// A plugin that refuses its `[transform.config]` when the host creates its instance (here the fault
/// plugin, `copies = 0`): exit 2 before anything touches Kafka, naming the transform, the plugin and
/// the plugin's own reason.
#[test]
fn configuration_the_plugin_refuses_stops_start_up() {
    let env = TestEnv::offline("config-plugin-refuses");
    let fault = Plugin::fault().path().display().to_string();
    let text = pipeline_text(&fault, false) + "\n[transform.config]\ncopies = 0\n";
    let config = write(&env, &text);
    let expected = format!(
        "txform: {}:{TRANSFORM_LINE}: transform `copy` (txform-fault 0.1.0) refused its \
         configuration: copies = 0 would drop every record: use at least 1",
        config.display()
    );
    for command in ["validate", "run"] {
        let message = assert_refused(&txform(command, &config), &[]);
        assert_eq!(message, expected, "txform {command}");
    }
}
