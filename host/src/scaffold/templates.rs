//! The text of the generated crate, per template.

/// What the generated transform does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// One output per input: appends a suffix to each value.
    Map,
    /// Keeps the records whose value contains a string; rejects those without a value.
    Filter,
    /// Several outputs per input: splits each value on a separator.
    FlatMap,
    /// Chooses each record's output topic from its key.
    Router,
}

pub fn cargo_toml(name: &str, dependency: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# A cdylib is what txform loads; `cargo build --release` writes target/release/lib{lib}.so.
crate-type = ["cdylib"]

[dependencies]
# Pinned: txform loads plugins of the same plugin-api line (see `txform inspect`).
txform-plugin-api = {dependency}
serde = {{ version = "1", features = ["derive"] }}

# A crate of its own, not a member of any surrounding workspace.
[workspace]
"#,
        lib = name.replace('-', "_")
    )
}

/// The sample input: three records, one without a value.
pub const RECORDS: &str = r#"{"key": "a", "value": "x,y"}
{"key": "b", "value": "keep me", "headers": [{"key": "trace", "value": "t-1"}]}
{"key": "c", "value": null}
"#;

/// What `txform test --input sample/records.jsonl` prints for [`RECORDS`].
pub fn expected(template: Template) -> String {
    let lines: &[&str] = match template {
        Template::Map => &[
            r#"{"output":{"input":0,"key":"a","value":"x,y!","headers":[]}}"#,
            r#"{"output":{"input":1,"key":"b","value":"keep me!","headers":[{"key":"trace","value":"t-1"}]}}"#,
            r#"{"output":{"input":2,"key":"c","value":null,"headers":[]}}"#,
        ],
        Template::Filter => &[
            r#"{"output":{"input":1,"key":"b","value":"keep me","headers":[{"key":"trace","value":"t-1"}]}}"#,
            r#"{"rejected":{"input":2,"transform":"sample","reason":"a record without a value"}}"#,
        ],
        Template::FlatMap => &[
            r#"{"output":{"input":0,"key":"a","value":"x","headers":[]}}"#,
            r#"{"output":{"input":0,"key":"a","value":"y","headers":[]}}"#,
            r#"{"output":{"input":1,"key":"b","value":"keep me","headers":[{"key":"trace","value":"t-1"}]}}"#,
        ],
        Template::Router => &[
            r#"{"output":{"input":0,"topic":"routed-a","key":"a","value":"x,y","headers":[]}}"#,
            r#"{"output":{"input":1,"topic":"routed-other","key":"b","value":"keep me","headers":[{"key":"trace","value":"t-1"}]}}"#,
            r#"{"output":{"input":2,"topic":"routed-other","key":"c","value":null,"headers":[]}}"#,
        ],
    };
    lines.join("\n") + "\n"
}

pub fn pipeline(lib_name: &str) -> String {
    format!(
        r#"# A sample pipeline: copy `input` to `output` through this plugin, exactly once.
# Check it with `txform validate sample/pipeline.toml`; try the plugin offline with
# `txform test sample/pipeline.toml --input sample/records.jsonl --expect sample/expected.jsonl`.
[kafka.common]
"bootstrap.servers" = "127.0.0.1:9092"

[source]
topics = ["input"]
group_id = "{lib_name}-sample"

[sink]
topic = "output"

[transaction]
id_prefix = "{lib_name}"

[[transform]]
name = "sample"
plugin = "../target/release/lib{lib_name}.so"
"#
    )
}

const HEAD: &str = r#"//! A txform transform plugin. Build it with `cargo build --release`, check it with
//! `txform inspect target/release/<lib>.so`, and run it offline with `txform test`.

use serde::Deserialize;
use txform_plugin_api::{export_transform, OutRecord, Output, Record, Transform, TransformError};
"#;

pub fn lib_rs(template: Template) -> String {
    let (config, body, doc, test) = match template {
        Template::Map => (
            r#"    /// Appended to every value.
    pub suffix: String,"#,
            r#"        for (index, record) in batch.iter().enumerate() {
            // One output per input; `from_input` copies key, value, headers and timestamp.
            let value = record.value().map(|v| [v, self.config.suffix.as_bytes()].concat());
            let mut output = OutRecord::from_input(record);
            output.value = value.map(Into::into).into();
            out.emit(index, output);
        }"#,
            "suffix  string  default \"!\"  appended to every value",
            r#"    let out = driver.run(&[TestRecord::value("x")]).unwrap();
    assert_eq!(value_of(&out.records()[0]), Some(&b"x!"[..]));"#,
        ),
        Template::Filter => (
            r#"    /// Records whose value contains this are kept.
    pub contains: String,"#,
            r#"        for (index, record) in batch.iter().enumerate() {
            let Some(value) = record.value() else {
                // A rejection refuses this record only; the error policy decides its fate.
                out.reject(index, "a record without a value");
                continue;
            };
            if String::from_utf8_lossy(value).contains(&self.config.contains) {
                // Passed on unchanged: txform produces the fetched record itself, nothing copied.
                out.forward(index);
            }
        }"#,
            "contains  string  default \"keep\"  records whose value contains it are kept",
            r#"    let out = driver
        .run(&[TestRecord::value("drop"), TestRecord::value("keep"), TestRecord::tombstone()])
        .unwrap();
    assert_eq!(out.records().len(), 1);
    assert_eq!(out.records()[0].input, 1);
    assert_eq!(out.rejections()[0].input, 2);"#,
        ),
        Template::FlatMap => (
            r#"    /// Each value is split on this; every part becomes an output.
    pub separator: String,"#,
            r#"        for (index, record) in batch.iter().enumerate() {
            let Some(value) = record.value() else {
                continue; // no value: no output
            };
            // Several outputs of one input all carry its index.
            for part in String::from_utf8_lossy(value).split(self.config.separator.as_str()) {
                out.emit(index, OutRecord::from_input(record).with_value(part));
            }
        }"#,
            "separator  string  default \",\"  each value is split on it",
            r#"    let out = driver.run(&[TestRecord::value("x,y")]).unwrap();
    assert_eq!(out.records().len(), 2);
    assert_eq!(value_of(&out.records()[1]), Some(&b"y"[..]));"#,
        ),
        Template::Router => (
            r#"    /// Output topics are this prefix followed by `a` (key "a") or `other`.
    pub topic_prefix: String,"#,
            r#"        for (index, record) in batch.iter().enumerate() {
            let which = if record.key() == Some(b"a") { "a" } else { "other" };
            let topic = format!("{}{which}", self.config.topic_prefix);
            // Forwarded unchanged (nothing copied) to the chosen topic.
            out.forward_to(index, txform_plugin_api::Forward::to_topic(topic));
        }"#,
            "topic_prefix  string  default \"routed-\"  output topics are the prefix followed by a or other",
            r#"    let out = driver.run(&[TestRecord::value("x").with_key("a")]).unwrap();
    assert_eq!(out.records()[0].topic.as_ref().map(|t| t.as_str()).into_option(), Some("routed-a"));"#,
        ),
    };
    let default = match template {
        Template::Map => r#"suffix: "!".into()"#,
        Template::Filter => r#"contains: "keep".into()"#,
        Template::FlatMap => r#"separator: ",".into()"#,
        Template::Router => r#"topic_prefix: "routed-".into()"#,
    };
    format!(
        r#"{HEAD}
/// The `[transform.config]` table of this plugin in pipeline.toml. Unknown keys are refused at
/// start-up, with their line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {{
{config}
}}

impl Default for Config {{
    fn default() -> Self {{
        Config {{ {default} }}
    }}
}}

pub struct Plugin {{
    config: Config,
}}

impl Transform for Plugin {{
    type Config = Config;

    /// Called once per instance (and again after a panic); an error stops txform at start-up.
    fn new(config: Config) -> Result<Self, TransformError> {{
        Ok(Plugin {{ config }})
    }}

    /// Called once per batch, inside the Kafka transaction. Returning an error (or panicking)
    /// aborts the transaction: nothing of the batch becomes visible, and the error policy applies.
    fn transform(&mut self, batch: &[Record<'_>], out: &mut Output) -> Result<(), TransformError> {{
{body}
        Ok(())
    }}

    /// Shown by `txform inspect`.
    fn config_doc() -> String {{
        {doc:?}.to_string()
    }}
}}

export_transform!(Plugin);

#[cfg(test)]
mod tests {{
    use super::*;
    use txform_plugin_api::{{TestDriver, TestRecord}};

    #[allow(dead_code)]
    fn value_of(record: &OutRecord) -> Option<&[u8]> {{
        record.value.as_ref().map(|v| v.as_slice()).into_option()
    }}

    #[test]
    fn transforms_a_batch() {{
        // The same guard as in txform: errors, panics and rejections behave as there.
        let mut driver = TestDriver::<Plugin>::new("{{}}").unwrap();
{test}
    }}
}}
"#
    )
}
