//! Copies every input record to the output unchanged (key, value, headers, timestamp): the workhorse of
//! the exactly-once tests. With `keep_partition = true` each output goes to the input's partition number,
//! so per-partition order can be checked end to end.
//!
//! It forwards each input ([`Output::forward_to`]) rather than emitting a copy: the host produces the
//! fetched message itself, and the plugin copies no bytes. A host older than plugin-api 0.2.1 gets
//! the copies instead; what is produced is the same.

use serde::Deserialize;
use txform_plugin_api::{export_transform, Forward, Output, Record, Transform, TransformError};

/// `[transform.config]` of the passthrough plugin.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Produce each record to the partition number it was read from.
    pub keep_partition: bool,
    /// Output topic; the pipeline's `sink.topic` when unset.
    pub topic: Option<String>,
}

pub struct Passthrough {
    config: Config,
}

impl Transform for Passthrough {
    type Config = Config;

    fn new(config: Config) -> Result<Self, TransformError> {
        Ok(Passthrough { config })
    }

    fn config_doc() -> String {
        "keep_partition  bool    default false  produce each record to the partition number it was read from\n\
         topic           string  optional       output topic; the pipeline's sink.topic when unset"
            .to_string()
    }

    fn transform(&mut self, batch: &[Record<'_>], out: &mut Output) -> Result<(), TransformError> {
        for (index, record) in batch.iter().enumerate() {
            let to = Forward {
                topic: self.config.topic.clone(),
                partition: self.config.keep_partition.then(|| record.partition()),
            };
            out.forward_to(index, to);
        }
        Ok(())
    }
}

export_transform!(Passthrough);

#[cfg(test)]
mod tests {
    use super::*;
    use txform_plugin_api::serde_json::{self, json};
    use txform_plugin_api::{Header, OutHeader, TestDriver};

    /// Through the test driver, which shows forwards as the records the host produces.
    fn passthrough(config: serde_json::Value) -> Result<TestDriver<Passthrough>, String> {
        TestDriver::new(&config.to_string()).map_err(|e| e.message.into_string())
    }

    /// (input, topic, partition, timestamp, key, value, headers) of every output.
    type Copy = (
        u32,
        Option<String>,
        Option<i32>,
        Option<i64>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(String, Option<Vec<u8>>)>,
    );

    fn run(p: &mut TestDriver<Passthrough>) -> Vec<Copy> {
        let headers = [
            Header::new("h", Some(b"1")),
            Header::new("h", Some(b"2")),
            Header::new("null", None),
            Header::new("bin", Some(b"\x00\xff")),
        ];
        let batch = [
            Record::new("in", 2, 40, Some(1_000), Some(b"k"), Some(b"v0"), &headers),
            Record::new("in", 5, 7, None, None, None, &[]),
            Record::new(
                "other",
                0,
                0,
                Some(-1),
                Some(b""),
                Some(b"\xfe"),
                &headers[2..3],
            ),
        ];
        let out = p.run_views(&batch).unwrap();
        assert!(out.rejections().is_empty());
        out.records()
            .iter()
            .map(|r| {
                (
                    r.input,
                    r.topic.as_ref().map(|t| t.to_string()).into_option(),
                    r.partition.into_option(),
                    r.timestamp.into_option(),
                    r.key.as_ref().map(|k| k.to_vec()).into_option(),
                    r.value.as_ref().map(|v| v.to_vec()).into_option(),
                    r.headers
                        .iter()
                        .map(|h: &OutHeader| {
                            (
                                h.key.to_string(),
                                h.value.as_ref().map(|v| v.to_vec()).into_option(),
                            )
                        })
                        .collect(),
                )
            })
            .collect()
    }

    fn headers(list: &[(&str, Option<&[u8]>)]) -> Vec<(String, Option<Vec<u8>>)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
            .collect()
    }

    /// The copies without a route: what every configuration must keep of the inputs.
    fn copies(topic: Option<&str>, partitions: [Option<i32>; 3]) -> Vec<Copy> {
        let topic = topic.map(str::to_string);
        vec![
            (
                0,
                topic.clone(),
                partitions[0],
                Some(1_000),
                Some(b"k".to_vec()),
                Some(b"v0".to_vec()),
                headers(&[
                    ("h", Some(b"1")),
                    ("h", Some(b"2")),
                    ("null", None),
                    ("bin", Some(b"\x00\xff")),
                ]),
            ),
            (1, topic.clone(), partitions[1], None, None, None, vec![]),
            (
                2,
                topic,
                partitions[2],
                Some(-1),
                Some(vec![]),
                Some(b"\xfe".to_vec()),
                headers(&[("null", None)]),
            ),
        ]
    }

    #[test]
    fn copies_key_value_headers_and_timestamp_unchanged() {
        let mut p = passthrough(json!({})).unwrap();
        assert_eq!(run(&mut p), copies(None, [None, None, None]));
        // The same again: no state carried between calls.
        assert_eq!(run(&mut p), copies(None, [None, None, None]));
    }

    #[test]
    fn keep_partition_sends_each_copy_to_its_inputs_partition_number() {
        let mut p = passthrough(json!({ "keep_partition": true })).unwrap();
        assert_eq!(run(&mut p), copies(None, [Some(2), Some(5), Some(0)]));
    }

    #[test]
    fn topic_routes_every_copy_there() {
        let mut p = passthrough(json!({ "topic": "out-2", "keep_partition": false })).unwrap();
        assert_eq!(run(&mut p), copies(Some("out-2"), [None, None, None]));
        let mut both = passthrough(json!({ "topic": "out-2", "keep_partition": true })).unwrap();
        assert_eq!(
            run(&mut both),
            copies(Some("out-2"), [Some(2), Some(5), Some(0)])
        );
    }

    #[test]
    fn every_input_is_forwarded_not_copied() {
        let config = json!({ "topic": "out-2", "keep_partition": true });
        let mut p = Passthrough::new(serde_json::from_value(config).unwrap()).unwrap();
        let batch = [
            Record::new("in", 2, 40, None, None, Some(b"v0"), &[]),
            Record::new("in", 5, 41, None, None, Some(b"v1"), &[]),
        ];
        let mut out = Output::new();
        p.transform(&batch, &mut out).unwrap();
        assert!(out.records().is_empty());
        let forwards: Vec<(u32, Forward)> = out
            .forwards()
            .iter()
            .map(|f| (f.input, f.to.clone()))
            .collect();
        let to = |partition| Forward::to_topic("out-2").with_partition(partition);
        assert_eq!(forwards, [(0, to(2)), (1, to(5))]);
    }

    #[test]
    fn an_empty_batch_gives_nothing() {
        let mut p = passthrough(json!({})).unwrap();
        let out = p.run_views(&[]).unwrap();
        assert_eq!((out.records().len(), out.rejections().len()), (0, 0));
    }

    #[test]
    fn unknown_or_mistyped_options_are_refused() {
        let unknown = passthrough(json!({ "keep_partitions": true }))
            .err()
            .unwrap();
        assert!(
            unknown.starts_with(
                "invalid configuration: unknown field `keep_partitions`, expected `keep_partition` \
                 or `topic`"
            ),
            "{unknown}"
        );
        let mistyped = passthrough(json!({ "topic": 3 })).err().unwrap();
        assert!(
            mistyped
                .starts_with("invalid configuration: invalid type: integer `3`, expected a string"),
            "{mistyped}"
        );
    }
}
