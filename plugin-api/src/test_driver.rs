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

use std::collections::BTreeMap;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::RString;

use crate::abi::{CallError, Host_TO, TransformObj};
use crate::guard::{create, Guarded};
use crate::output::Output;
use crate::record::{Header, Record};
use crate::state::{StateBackend, StatefulHost};
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

fn stores_of<T: Transform>(instance: &Guarded<T>) -> Vec<String> {
    TransformObj::stores(instance)
        .into_iter()
        .map(RString::into_string)
        .collect()
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
///
/// State stores behave as in the host: a call reads the state as of the last successful call plus
/// its own writes; a failed (or panicked) call's writes vanish; stores are partitioned by the
/// source partition of the input a call names. [`TestDriver::state`] inspects them.
pub struct TestDriver<T: Transform> {
    config_json: String,
    instance: Guarded<T>,
    /// The stores the instance declared.
    stores: Vec<String>,
    state: TestState,
}

/// The committed contents of a [`TestDriver`]'s state stores.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TestState {
    /// (store, source partition, key) → value.
    entries: BTreeMap<(String, i32, Vec<u8>), Vec<u8>>,
}

impl TestState {
    /// The committed value of `key` in `store`, partition `partition`.
    pub fn get(&self, store: &str, partition: i32, key: &[u8]) -> Option<&[u8]> {
        self.entries
            .get(&(store.to_string(), partition, key.to_vec()))
            .map(Vec::as_slice)
    }

    /// Every committed (key, value) of `store` in `partition`, in key order.
    pub fn entries(&self, store: &str, partition: i32) -> Vec<(&[u8], &[u8])> {
        self.entries
            .iter()
            .filter(|((s, p, _), _)| s == store && *p == partition)
            .map(|((_, _, k), v)| (k.as_slice(), v.as_slice()))
            .collect()
    }
}

/// The state of one test call: changes go to `pending` (a deletion is `None`), applied to `state`
/// only when the call succeeds.
struct TestCallState<'a> {
    /// Source partition of every input of the call.
    partitions: &'a [i32],
    stores: &'a [String],
    state: &'a TestState,
    pending: BTreeMap<(String, i32, Vec<u8>), Option<Vec<u8>>>,
}

impl TestCallState<'_> {
    /// The pending-map key of `key` in `store` for the input at `input`, or the host's refusal.
    fn slot(&self, store: &str, input: u32, key: &[u8]) -> Result<(String, i32, Vec<u8>), String> {
        if !self.stores.iter().any(|s| s == store) {
            return Err(format!(
                "not declared by the transform's stores() ({:?})",
                self.stores
            ));
        }
        let partition = self.partitions.get(input as usize).ok_or_else(|| {
            format!(
                "input {input} is not in the batch of {}",
                self.partitions.len()
            )
        })?;
        Ok((store.to_string(), *partition, key.to_vec()))
    }
}

impl StateBackend for TestCallState<'_> {
    fn get(&mut self, store: &str, input: u32, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let slot = self.slot(store, input, key)?;
        Ok(match self.pending.get(&slot) {
            Some(pending) => pending.clone(),
            None => self.state.entries.get(&slot).cloned(),
        })
    }

    fn put(
        &mut self,
        store: &str,
        input: u32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), String> {
        let slot = self.slot(store, input, key)?;
        self.pending.insert(slot, value.map(<[u8]>::to_vec));
        Ok(())
    }
}

impl<T: Transform> TestDriver<T> {
    /// Creates the transform from `config_json` (the `[transform.config]` table as JSON), through
    /// the same parsing and guard as the host.
    pub fn new(config_json: &str) -> Result<Self, CallError> {
        let instance = create::<T>(config_json)?;
        Ok(TestDriver {
            config_json: config_json.to_string(),
            stores: stores_of(&instance),
            instance,
            state: TestState::default(),
        })
    }

    /// The committed state of the instance's stores.
    pub fn state(&self) -> &TestState {
        &self.state
    }

    /// Replaces the instance with a fresh one from the same configuration, keeping the committed
    /// state: what a restarted host does after restoring the stores from their changelogs.
    pub fn restart(&mut self) -> Result<(), CallError> {
        self.instance = create::<T>(&self.config_json)?;
        Ok(())
    }

    /// Runs one batch. A panicked call re-creates the instance before returning its error.
    pub fn run(&mut self, batch: &[TestRecord]) -> Result<Output, CallError> {
        with_views(batch, |views| self.run_views(views))
    }

    /// Runs one batch of views the test built itself.
    pub fn run_views(&mut self, batch: &[Record<'_>]) -> Result<Output, CallError> {
        let mut out = Output::new();
        let partitions: Vec<i32> = batch.iter().map(Record::partition).collect();
        let mut call = TestCallState {
            partitions: &partitions,
            stores: &self.stores,
            state: &self.state,
            pending: BTreeMap::new(),
        };
        let mut host = StatefulHost {
            out: &mut out,
            state: &mut call,
        };
        let result = self
            .instance
            .call(batch, Host_TO::from_ptr(&mut host, TD_Opaque));
        let pending = std::mem::take(&mut call.pending);
        match result {
            Ok(()) => {
                for (slot, value) in pending {
                    match value {
                        Some(value) => self.state.entries.insert(slot, value),
                        None => self.state.entries.remove(&slot),
                    };
                }
                Ok(out)
            }
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

    /// Counts values per key in store `n`; fails the call on value "fail" after its puts.
    struct Tally;

    impl Transform for Tally {
        type Config = serde_json::Value;
        const REQUIRES: &'static [&'static str] = &[crate::STATE_STORES];
        fn new(_: serde_json::Value) -> Result<Self, TransformError> {
            Ok(Tally)
        }
        fn stores(&self) -> Vec<String> {
            vec!["n".to_string()]
        }
        fn transform(
            &mut self,
            batch: &[Record<'_>],
            out: &mut Output,
        ) -> Result<(), TransformError> {
            for (i, rec) in batch.iter().enumerate() {
                let key = rec.key().unwrap_or_default();
                let n = match out.state_get("n", i, key)? {
                    Some(v) => String::from_utf8(v)?.parse::<u64>()? + 1,
                    None => 1,
                };
                out.state_put("n", i, key, n.to_string().as_bytes())?;
                if rec.value() == Some(b"fail") {
                    return Err("asked to fail".into());
                }
                if rec.value() == Some(b"forget") {
                    out.state_delete("n", i, key)?;
                }
                out.emit(i, OutRecord::new(n.to_string()));
            }
            Ok(())
        }
    }

    fn values(out: &Output) -> Vec<&[u8]> {
        out.records()
            .iter()
            .map(|r| r.value.as_ref().map(|v| v.as_slice()).unwrap_or_default())
            .collect()
    }

    #[test]
    fn state_reads_see_own_writes_and_is_partitioned_by_source() {
        let mut driver = TestDriver::<Tally>::new("{}").unwrap();
        let a0 = TestRecord::value("x").with_key("a");
        let a1 = TestRecord::value("x").with_key("a").at("input", 1, 0);
        let out = driver.run(&[a0.clone(), a0.clone(), a1.clone()]).unwrap();
        assert_eq!(values(&out), [&b"1"[..], b"2", b"1"]);
        assert_eq!(driver.state().get("n", 0, b"a"), Some(&b"2"[..]));
        assert_eq!(driver.state().entries("n", 1), [(&b"a"[..], &b"1"[..])]);
        // A restarted instance sees the committed state.
        driver.restart().unwrap();
        let out = driver.run(&[a0]).unwrap();
        assert_eq!(values(&out), [&b"3"[..]]);
    }

    #[test]
    fn a_failed_calls_writes_vanish() {
        let mut driver = TestDriver::<Tally>::new("{}").unwrap();
        let a = TestRecord::value("x").with_key("a");
        driver.run(std::slice::from_ref(&a)).unwrap();
        let err = driver
            .run(&[a.clone(), TestRecord::value("fail").with_key("a")])
            .unwrap_err();
        assert_eq!(err.message.as_str(), "asked to fail");
        assert_eq!(driver.state().entries("n", 0), [(&b"a"[..], &b"1"[..])]);
        let out = driver
            .run(&[a.clone(), TestRecord::value("forget").with_key("a")])
            .unwrap();
        assert_eq!(values(&out), [&b"2"[..], b"3"]);
        assert_eq!(driver.state().get("n", 0, b"a"), None);
    }

    #[test]
    fn undeclared_stores_and_outside_calls_are_refused() {
        let mut out = Output::new();
        assert_eq!(
            out.state_get("n", 0, b"k").unwrap_err().to_string(),
            "state stores can only be used during a transform call"
        );
        let error = crate::StateError::Host {
            store: "m".into(),
            message: "not declared".into(),
        };
        assert_eq!(error.to_string(), "state store `m`: not declared");
    }
}
