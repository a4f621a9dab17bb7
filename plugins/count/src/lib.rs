//! Emits the running count per key: for each input record with a key, one output with the same key
//! whose value is the number of records with that key seen so far in its source partition, as
//! decimal text (`"1"`, `"2"`, ...). The counts live in a state store, so they commit with the
//! outputs: a replayed batch never counts twice, and a restarted or rebalanced instance goes on
//! from the committed counts. Records without a key are dropped (nothing to count them under), as
//! Kafka Streams' `groupByKey().count()` does.
//!
//! Counts are stored as 8-byte big-endian integers.

use serde::Deserialize;
use txform_plugin_api::{
    export_transform, OutRecord, Output, Record, Transform, TransformError, STATE_STORES,
};

/// `[transform.config]` of the count plugin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name of the state store (part of the changelog topic's name).
    pub store: String,
    /// Produce each count to the partition number its input was read from.
    pub keep_partition: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: "counts".to_string(),
            keep_partition: false,
        }
    }
}

pub struct Count {
    config: Config,
}

impl Transform for Count {
    type Config = Config;
    const REQUIRES: &'static [&'static str] = &[STATE_STORES];

    fn new(config: Config) -> Result<Self, TransformError> {
        if config.store.is_empty() {
            return Err("`store` must not be empty".into());
        }
        Ok(Count { config })
    }

    fn stores(&self) -> Vec<String> {
        vec![self.config.store.clone()]
    }

    fn config_doc() -> String {
        "store           string  default \"counts\"  name of the state store (part of its changelog topic's name)\n\
         keep_partition  bool    default false     produce each count to the partition number its input was read from"
            .to_string()
    }

    fn transform(&mut self, batch: &[Record<'_>], out: &mut Output) -> Result<(), TransformError> {
        let store = self.config.store.as_str();
        for (index, record) in batch.iter().enumerate() {
            let Some(key) = record.key() else { continue };
            let count = match out.state_get(store, index, key)? {
                None => 1,
                Some(stored) => {
                    decode(&stored).ok_or_else(|| {
                        format!(
                            "the stored count of key {:?} is not an 8-byte integer ({} bytes)",
                            String::from_utf8_lossy(key),
                            stored.len()
                        )
                    })? + 1
                }
            };
            out.state_put(store, index, key, &count.to_be_bytes())?;
            let mut output = OutRecord::new(count.to_string()).with_key(key);
            if let Some(timestamp) = record.timestamp() {
                output = output.with_timestamp(timestamp);
            }
            if self.config.keep_partition {
                output = output.with_partition(record.partition());
            }
            out.emit(index, output);
        }
        Ok(())
    }
}

fn decode(stored: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(stored.try_into().ok()?))
}

export_transform!(Count);

#[cfg(test)]
mod tests {
    use super::*;
    use txform_plugin_api::{TestDriver, TestRecord};

    fn outputs(out: &Output) -> Vec<(String, String)> {
        out.records()
            .iter()
            .map(|r| {
                let text =
                    |b: &Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).to_string();
                (
                    text(&r.key.as_ref().map(|k| k.as_slice()).into_option()),
                    text(&r.value.as_ref().map(|v| v.as_slice()).into_option()),
                )
            })
            .collect()
    }

    fn rec(key: &str, partition: i32) -> TestRecord {
        TestRecord::value("x").with_key(key).at("in", partition, 0)
    }

    #[test]
    fn counts_per_key_and_partition_across_batches() {
        let mut driver = TestDriver::<Count>::new("{}").unwrap();
        let out = driver
            .run(&[
                rec("a", 0),
                rec("b", 0),
                rec("a", 0),
                rec("a", 1),
                TestRecord::value("no key"),
            ])
            .unwrap();
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, c)| (k.to_string(), c.to_string()))
                .collect()
        };
        assert_eq!(
            outputs(&out),
            pairs(&[("a", "1"), ("b", "1"), ("a", "2"), ("a", "1")])
        );
        let out = driver.run(&[rec("a", 0), rec("b", 0)]).unwrap();
        assert_eq!(outputs(&out), pairs(&[("a", "3"), ("b", "2")]));
        assert_eq!(
            driver.state().get("counts", 0, b"a"),
            Some(&3u64.to_be_bytes()[..])
        );
        assert_eq!(
            driver.state().get("counts", 1, b"a"),
            Some(&1u64.to_be_bytes()[..])
        );
    }

    #[test]
    fn store_name_and_partition_come_from_config() {
        let mut driver =
            TestDriver::<Count>::new(r#"{"store": "n", "keep_partition": true}"#).unwrap();
        let out = driver.run(&[rec("a", 4).with_timestamp(7)]).unwrap();
        assert_eq!(out.records()[0].partition.into_option(), Some(4));
        assert_eq!(out.records()[0].timestamp.into_option(), Some(7));
        assert_eq!(
            driver.state().entries("n", 4),
            [(&b"a"[..], &1u64.to_be_bytes()[..])]
        );
        let err = TestDriver::<Count>::new(r#"{"store": ""}"#).err().unwrap();
        assert_eq!(err.message.as_str(), "`store` must not be empty");
    }

    #[test]
    fn requires_state_stores() {
        assert_eq!(<Count as Transform>::REQUIRES, [STATE_STORES]);
    }
}
