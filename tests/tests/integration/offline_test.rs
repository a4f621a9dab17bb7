//! `txform test`: a chain run offline on JSONL records through the host's chain code, outputs,
//! rejections and errors printed in the same format, `--expect` with a diff and exit code 1, and
//! standard input. No broker.

use std::ffi::OsStr;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use txform_tests::process::txform_bin;
use txform_tests::{bootstrap, run_command, CommandResult, Plugin, TestEnv};

const TIMEOUT: Duration = Duration::from_secs(30);

const INPUT: &str = concat!(
    "{\"key\": \"k1\", \"value\": \"a\", \"timestamp\": 5, \"partition\": 1, \"offset\": 10}\n",
    "{\"value\": \"poison\", \"offset\": 11}\n",
    "\n",
    "{\"value\": {\"base64\": \"/wA=\"}, \"headers\": [{\"key\": \"h\", \"value\": \"v\"}], \"offset\": 12}\n",
);

fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn test_command(args: &[&OsStr]) -> CommandResult {
    let mut all = vec![OsStr::new("test")];
    all.extend_from_slice(args);
    run_command(&all, TIMEOUT)
}

/// A pipeline of two stages: fault rejects "poison", then passthrough routes to topic `routed`.
fn pipeline(env: &TestEnv) -> std::path::PathBuf {
    let text = format!(
        "[kafka.common]\n\"bootstrap.servers\" = \"{}\"\n[source]\ntopics = [\"in\"]\ngroup_id = \"g\"\n\
         [sink]\ntopic = \"out\"\n[transaction]\nid_prefix = \"p\"\n\
         [[transform]]\nname = \"gate\"\nplugin = \"{}\"\n[transform.config]\naction = \"reject\"\n\
         value_contains = \"poison\"\nkeep_partition = false\n\
         [[transform]]\nname = \"route\"\nplugin = \"{}\"\n[transform.config]\ntopic = \"routed\"\n",
        bootstrap(),
        Plugin::fault().path().display(),
        Plugin::passthrough().path().display()
    );
    let path = env.path("pipeline.toml");
    std::fs::write(&path, text).expect("write the pipeline");
    path
}

fn expected_chain_lines() -> Vec<Value> {
    vec![
        json!({"output": {"input": 0, "topic": "routed", "timestamp": 5, "key": "k1", "value": "a", "headers": []}}),
        json!({"output": {"input": 2, "topic": "routed", "key": null, "value": {"base64": "/wA="}, "headers": [{"key": "h", "value": "v"}]}}),
        json!({"rejected": {"input": 1, "transform": "gate", "reason": "fault injected at topic/partition/offset input/0/11 (value contains \"poison\")"}}),
    ]
}

#[test]
fn a_pipeline_chain_maps_outputs_and_rejections_to_their_inputs() {
    let env = TestEnv::offline("offline-chain");
    let config = pipeline(&env);
    let input = env.path("in.jsonl");
    std::fs::write(&input, INPUT).expect("write the input");
    let result = test_command(&[config.as_os_str(), OsStr::new("--input"), input.as_os_str()]);
    assert_eq!(result.code(), Some(0), "{}", result.stderr);
    assert_eq!(lines(&result.stdout), expected_chain_lines());
}

#[test]
fn expect_reports_a_diff_and_exits_1() {
    let env = TestEnv::offline("offline-expect");
    let config = pipeline(&env);
    let input = env.path("in.jsonl");
    std::fs::write(&input, INPUT).expect("write the input");
    let expect = env.path("expected.jsonl");
    let mut expected = expected_chain_lines();
    let text: Vec<String> = expected.iter().map(Value::to_string).collect();
    std::fs::write(&expect, text.join("\n")).expect("write the expectation");
    let args = [
        config.as_os_str(),
        OsStr::new("--input"),
        input.as_os_str(),
        OsStr::new("--expect"),
        expect.as_os_str(),
    ];
    let result = test_command(&args);
    assert_eq!(result.code(), Some(0), "{}", result.stderr);
    assert_eq!(result.stdout, "ok: 3 lines as expected\n");

    expected[0]["output"]["value"] = json!("b");
    expected.pop();
    let text: Vec<String> = expected.iter().map(Value::to_string).collect();
    std::fs::write(&expect, text.join("\n")).expect("write the expectation");
    let result = test_command(&args);
    assert_eq!(result.code(), Some(1), "{}", result.stderr);
    // The `+` lines are txform's own output, fields in the order it writes them.
    let plus_1 = r#"{"output":{"input":0,"topic":"routed","timestamp":5,"key":"k1","value":"a","headers":[]}}"#;
    let plus_3 = r#"{"rejected":{"input":1,"transform":"gate","reason":"fault injected at topic/partition/offset input/0/11 (value contains \"poison\")"}}"#;
    assert_eq!(
        result.stdout,
        format!(
            "line 1:\n- {}\n+ {plus_1}\nline 3: unexpected\n+ {plus_3}\n",
            expected[0]
        )
    );
    assert_eq!(
        result.messages(),
        [format!("txform: the output differs from {}", expect.display()).as_str()]
    );
}

#[test]
fn a_failing_call_is_one_error_line_from_stdin() {
    let plugin = Plugin::fault().path();
    let mut child = Command::new(txform_bin())
        .args([OsStr::new("test"), plugin.as_os_str()])
        .args(["--input", "-", "--config"])
        .arg(r#"{"action": "panic", "value_contains": "poison"}"#)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start txform test");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(INPUT.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("txform test ends");
    assert_eq!(output.status.code(), Some(0));
    let lines = lines(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let error = &lines[0]["error"];
    assert_eq!(error["transform"], json!("txform_fault"));
    assert_eq!(error["panicked"], json!(true));
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "fault injected at topic/partition/offset input/0/11 (value contains \"poison\") (at "
        ),
        "{message}"
    );
}

#[test]
fn a_bad_input_line_is_named() {
    let env = TestEnv::offline("offline-badline");
    let input = env.path("in.jsonl");
    std::fs::write(&input, "{\"value\": \"a\"}\n{\"value\": 7}\n").expect("write the input");
    let plugin = Plugin::passthrough().path();
    let result = test_command(&[plugin.as_os_str(), OsStr::new("--input"), input.as_os_str()]);
    assert_eq!(result.code(), Some(2));
    assert_eq!(
        result.messages(),
        [format!(
            "txform: {}:2: key `value`: expected a string, {{\"base64\": \"...\"}} or null",
            input.display()
        )
        .as_str()]
    );
}

#[test]
fn a_stateful_plugin_counts_within_the_run() {
    let env = TestEnv::offline("offline-count");
    let input = env.path("in.jsonl");
    std::fs::write(
        &input,
        "{\"key\": \"a\", \"value\": \"x\"}\n{\"key\": \"a\", \"value\": \"x\", \"partition\": 1}\n\
         {\"key\": \"a\", \"value\": \"x\"}\n{\"key\": \"b\", \"value\": \"x\"}\n",
    )
    .expect("write the input");
    let plugin = Plugin::count().path();
    let result = test_command(&[plugin.as_os_str(), OsStr::new("--input"), input.as_os_str()]);
    assert_eq!(result.code(), Some(0), "{}", result.stderr);
    let counts: Vec<(Value, Value)> = lines(&result.stdout)
        .iter()
        .map(|l| (l["output"]["key"].clone(), l["output"]["value"].clone()))
        .collect();
    // Partitioned like the source: key `a` of partition 1 is counted on its own.
    assert_eq!(
        counts,
        [("a", "1"), ("a", "1"), ("a", "2"), ("b", "1")].map(|(k, v)| (json!(k), json!(v)))
    );
}
