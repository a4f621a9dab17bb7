//! Drops a record whose key was seen within `retention_ms` of its timestamp, in the same source
//! partition: the first record of a key goes through (copied unchanged), a repeat within the
//! retention is dropped, one after it goes through again. The key's last-seen timestamp (the latest
//! of every record of the key, dropped ones included) lives in a state store, so it commits with the
//! outputs: a replayed batch or a restarted instance never lets a duplicate through, nor drops a
//! first occurrence. Records without a key pass through.
//!
//! Timestamps are stored as 8-byte big-endian integers (milliseconds). Entries are never deleted:
//! the store holds one entry per distinct key.

use serde::Deserialize;
use txform_plugin_api::{
    export_transform, OutRecord, Output, Record, Transform, TransformError, STATE_STORES,
};

/// `[transform.config]` of the dedup plugin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How long after a key's last sighting a record of it counts as a duplicate, in milliseconds.
    pub retention_ms: i64,
    /// Name of the state store (part of the changelog topic's name).
    #[serde(default = "default_store")]
    pub store: String,
}

fn default_store() -> String {
    "seen".to_string()
}

pub struct Dedup {
    config: Config,
}

impl Transform for Dedup {
    type Config = Config;
    const REQUIRES: &'static [&'static str] = &[STATE_STORES];

    fn new(config: Config) -> Result<Self, TransformError> {
        if config.retention_ms <= 0 {
            return Err(format!(
                "`retention_ms` must be positive, not {}",
                config.retention_ms
            )
            .into());
        }
        if config.store.is_empty() {
            return Err("`store` must not be empty".into());
        }
        Ok(Dedup { config })
    }

    fn stores(&self) -> Vec<String> {
        vec![self.config.store.clone()]
    }

    fn config_doc() -> String {
        "retention_ms  integer  required        a record whose key was seen less than this long before (or after) its timestamp is dropped\n\
         store         string   default \"seen\"  name of the state store (part of its changelog topic's name)"
            .to_string()
    }

    fn transform(&mut self, batch: &[Record<'_>], out: &mut Output) -> Result<(), TransformError> {
        let store = self.config.store.as_str();
        for (index, record) in batch.iter().enumerate() {
            let Some(key) = record.key() else {
                out.emit(index, OutRecord::from_input(record));
                continue;
            };
            let timestamp = record.timestamp().ok_or_else(|| {
                format!(
                    "record {}/{}/{} has no timestamp to de-duplicate by",
                    record.topic(),
                    record.partition(),
                    record.offset()
                )
            })?;
            let last = match out.state_get(store, index, key)? {
                None => None,
                Some(stored) => Some(decode(&stored).ok_or_else(|| {
                    format!(
                        "the stored timestamp of key {:?} is not an 8-byte integer ({} bytes)",
                        String::from_utf8_lossy(key),
                        stored.len()
                    )
                })?),
            };
            let duplicate = last.is_some_and(|last| {
                timestamp.abs_diff(last) < self.config.retention_ms.unsigned_abs()
            });
            let latest = last.map_or(timestamp, |last| last.max(timestamp));
            out.state_put(store, index, key, &latest.to_be_bytes())?;
            if !duplicate {
                out.emit(index, OutRecord::from_input(record));
            }
        }
        Ok(())
    }
}

fn decode(stored: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(stored.try_into().ok()?))
}

export_transform!(Dedup);

#[cfg(test)]
mod tests {
    use super::*;
    use txform_plugin_api::{TestDriver, TestRecord};

    fn rec(key: &str, timestamp: i64, value: &str) -> TestRecord {
        TestRecord::value(value)
            .with_key(key)
            .with_timestamp(timestamp)
    }

    fn values(out: &Output) -> Vec<String> {
        out.records()
            .iter()
            .map(|r| {
                String::from_utf8_lossy(r.value.as_ref().map(|v| v.as_slice()).unwrap_or_default())
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn repeats_within_the_retention_are_dropped() {
        let mut driver = TestDriver::<Dedup>::new(r#"{"retention_ms": 100}"#).unwrap();
        let out = driver
            .run(&[
                rec("a", 1000, "a1"),
                rec("b", 1000, "b1"),
                rec("a", 1050, "a2"),
            ])
            .unwrap();
        assert_eq!(values(&out), ["a1", "b1"]);
        // Across batches and a restart: last seen 1050, so 1149 is a repeat, 1249 (100 after 1149) is not.
        driver.restart().unwrap();
        let out = driver
            .run(&[
                rec("a", 1149, "a3"),
                rec("a", 1249, "a4"),
                TestRecord::value("nokey"),
            ])
            .unwrap();
        assert_eq!(values(&out), ["a4", "nokey"]);
        assert_eq!(
            driver.state().get("seen", 0, b"a"),
            Some(&1249i64.to_be_bytes()[..])
        );
    }

    #[test]
    fn partitions_are_separate_and_out_of_order_counts() {
        let mut driver =
            TestDriver::<Dedup>::new(r#"{"retention_ms": 100, "store": "s"}"#).unwrap();
        let out = driver
            .run(&[
                rec("a", 1000, "p0"),
                rec("a", 1000, "p1").at("in", 1, 0),
                rec("a", 950, "early"),
            ])
            .unwrap();
        assert_eq!(values(&out), ["p0", "p1"]);
        assert_eq!(
            driver.state().get("s", 0, b"a"),
            Some(&1000i64.to_be_bytes()[..])
        );
    }

    #[test]
    fn bad_configuration_and_records_are_named() {
        let err = TestDriver::<Dedup>::new(r#"{"retention_ms": 0}"#)
            .err()
            .unwrap();
        assert_eq!(
            err.message.as_str(),
            "`retention_ms` must be positive, not 0"
        );
        let err = TestDriver::<Dedup>::new("{}").err().unwrap();
        assert!(
            err.message.contains("missing field `retention_ms`"),
            "{}",
            err.message
        );
        let mut driver = TestDriver::<Dedup>::new(r#"{"retention_ms": 5}"#).unwrap();
        let err = driver
            .run(&[TestRecord::value("v").with_key("k").at("in", 2, 9)])
            .unwrap_err();
        assert_eq!(
            err.message.as_str(),
            "record in/2/9 has no timestamp to de-duplicate by"
        );
    }
}
