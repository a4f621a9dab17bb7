//! Copies every input record to the output unchanged (key, value, headers, timestamp): the workhorse of
//! the exactly-once tests. With `keep_partition = true` each output goes to the input's partition number,
//! so per-partition order can be checked end to end.

use serde::Deserialize;
use txform_plugin_api::{export_transform, OutRecord, Output, Record, Transform, TransformError};

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
            let mut copy = OutRecord::from_input(record);
            if self.config.keep_partition {
                copy = copy.with_partition(record.partition());
            }
            if let Some(topic) = &self.config.topic {
                copy = copy.with_topic(topic.clone());
            }
            out.emit(index, copy);
        }
        Ok(())
    }
}

export_transform!(Passthrough);
