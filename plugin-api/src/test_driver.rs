//! Unit-testing a transform without building a cdylib or running a host.
//!
//! [`TestDriver`] creates the transform from JSON configuration and calls it through the same guard
//! that [`crate::export_transform!`] puts around a plugin: a configuration error, a returned error and
//! a panic come back as the [`CallError`] the host would see, rejections come back as the host would
//! collect them, and after a panic the instance is re-created from its configuration, as the host does.
//!
//! ```
//! use txform_plugin_api::{Output, OutRecord, Record, TestDriver, TestRecord, Transform, TransformError};
//!
//! struct Upper;
//! impl Transform for Upper {
//!     type Config = serde_json::Value;
//!     fn new(_: Self::Config) -> Result<Self, TransformError> { Ok(Upper) }
//!     fn transform(&mut self, batch: &[Record<'_>], out: &mut Output) -> Result<(), TransformError> {
//!         for (i, rec) in batch.iter().enumerate() {
//!             match rec.value() {
//!                 Some(v) => out.emit(i, OutRecord::from_input(rec).with_value(v.to_ascii_uppercase())),
//!                 None => out.reject(i, "no value"),
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let mut driver = TestDriver::<Upper>::new("{}").unwrap();
//! let out = driver.run(&[TestRecord::value("abc"), TestRecord::tombstone()]).unwrap();
//! assert_eq!(out.records()[0].value.as_ref().map(|v| v.as_slice()).into_option(), Some(&b"ABC"[..]));
//! assert_eq!(out.rejections()[0].input, 1);
//! ```

use crate::abi::CallError;
use crate::guard::{create, Guarded};
use crate::output::Output;
use crate::record::{Header, Record};
use crate::transform::Transform;

/// An owned input record for tests; [`TestDriver::run`] hands views of it to the transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Default for TestRecord {
    fn default() -> Self {
        TestRecord {
            topic: "input".to_string(),
            partition: 0,
            offset: 0,
            timestamp: None,
            key: None,
            value: None,
            headers: Vec::new(),
        }
    }
}

impl TestRecord {
    /// A record of topic `input`, partition 0, offset 0 with only a value.
    pub fn value(value: impl Into<Vec<u8>>) -> Self {
        TestRecord {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// A record without a value.
    pub fn tombstone() -> Self {
        Self::default()
    }

    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_header(mut self, key: impl Into<String>, value: Option<Vec<u8>>) -> Self {
        self.headers.push((key.into(), value));
        self
    }

    pub fn at(mut self, topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        self.topic = topic.into();
        self.partition = partition;
        self.offset = offset;
        self
    }

    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }
}

/// Calls `f` with borrowed views of `records`, as a host would hand them to a transform.
pub fn with_views<R>(records: &[TestRecord], f: impl FnOnce(&[Record<'_>]) -> R) -> R {
    let headers: Vec<Vec<Header<'_>>> = records
        .iter()
        .map(|r| {
            r.headers
                .iter()
                .map(|(k, v)| Header::new(k, v.as_deref()))
                .collect()
        })
        .collect();
    let views: Vec<Record<'_>> = records
        .iter()
        .zip(&headers)
        .map(|(r, hs)| {
            Record::new(
                &r.topic,
                r.partition,
                r.offset,
                r.timestamp,
                r.key.as_deref(),
                r.value.as_deref(),
                hs,
            )
        })
        .collect();
    f(&views)
}

/// Runs batches through one guarded transform instance, as the host would.
pub struct TestDriver<T: Transform> {
    config_json: String,
    instance: Guarded<T>,
}

impl<T: Transform> TestDriver<T> {
    /// Creates the transform from `config_json` (the `[transform.config]` table as JSON), through
    /// the same parsing and guard as the host.
    pub fn new(config_json: &str) -> Result<Self, CallError> {
        Ok(TestDriver {
            config_json: config_json.to_string(),
            instance: create::<T>(config_json)?,
        })
    }

    /// Runs one batch. A panicked call re-creates the instance before returning its error.
    pub fn run(&mut self, batch: &[TestRecord]) -> Result<Output, CallError> {
        with_views(batch, |views| self.run_views(views))
    }

    /// Runs one batch of views the test built itself.
    pub fn run_views(&mut self, batch: &[Record<'_>]) -> Result<Output, CallError> {
        let mut out = Output::new();
        let result = self.instance.call(batch, out.as_host());
        match result {
            Ok(()) => Ok(out),
            Err(error) => {
                if error.panicked {
                    // As the host does: the panicked instance is leaked, never dropped.
                    let fresh = create::<T>(&self.config_json)?;
                    std::mem::forget(std::mem::replace(&mut self.instance, fresh));
                }
                Err(error)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{OutRecord, TransformError};
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct UpperConfig {
        #[serde(default)]
        panic_on: Option<String>,
    }

    /// Upper-cases values, rejects tombstones, panics on a configured value, counts its calls.
    pub(crate) struct Upper {
        config: UpperConfig,
        calls: usize,
    }

    impl Transform for Upper {
        type Config = UpperConfig;
        fn new(config: UpperConfig) -> Result<Self, TransformError> {
            Ok(Upper { config, calls: 0 })
        }
        fn transform(
            &mut self,
            batch: &[Record<'_>],
            out: &mut Output,
        ) -> Result<(), TransformError> {
            self.calls += 1;
            for (i, rec) in batch.iter().enumerate() {
                let Some(value) = rec.value() else {
                    out.reject(i, "tombstone");
                    continue;
                };
                if self.config.panic_on.as_deref().map(str::as_bytes) == Some(value) {
                    panic!("asked to panic after {} calls", self.calls);
                }
                out.emit(
                    i,
                    OutRecord::from_input(rec).with_value(value.to_ascii_uppercase()),
                );
            }
            Ok(())
        }
    }

    #[test]
    fn outputs_and_rejections_come_back_indexed() {
        let mut driver = TestDriver::<Upper>::new("{}").unwrap();
        let input = TestRecord::value("ab").with_key("k").at("t", 3, 42);
        let out = driver.run(&[TestRecord::tombstone(), input]).unwrap();
        let mut expected = OutRecord::new("AB").with_key("k");
        expected.input = 1;
        assert_eq!(out.records(), [expected]);
        assert_eq!(out.rejections().len(), 1);
        assert_eq!(out.rejections()[0].input, 0);
        assert_eq!(out.rejections()[0].reason.as_str(), "tombstone");
    }

    #[test]
    fn bad_config_is_the_hosts_error() {
        let err = TestDriver::<Upper>::new(r#"{"panic_onn": "x"}"#)
            .err()
            .unwrap();
        assert!(!err.panicked);
        assert!(
            err.message
                .starts_with("invalid configuration: unknown field `panic_onn`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_panic_is_an_error_and_the_instance_is_recreated() {
        let mut driver = TestDriver::<Upper>::new(r#"{"panic_on": "boom"}"#).unwrap();
        driver.run(&[TestRecord::value("a")]).unwrap();
        let err = driver
            .run(&[TestRecord::value("a"), TestRecord::value("boom")])
            .unwrap_err();
        assert!(err.panicked);
        assert!(
            err.message.starts_with("asked to panic after 2 calls (at "),
            "{}",
            err.message
        );
        // A fresh instance: its call count restarted, and the failed call emitted nothing.
        let err = driver.run(&[TestRecord::value("boom")]).unwrap_err();
        assert!(
            err.message.starts_with("asked to panic after 1 calls"),
            "{}",
            err.message
        );
    }
}
