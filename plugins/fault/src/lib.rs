//! Fault injection for tests: copies every record through like the passthrough plugin, but fails on
//! chosen records or on random batches. It demonstrates (and lets the integration tests exercise) the
//! three ways a transform can fail: returning an error (the host aborts the transaction and retries), a
//! panic (caught at the ABI boundary; the host also re-creates the instance) and per-record rejections
//! ([`Output::reject`], handled by the host's error policy). It can also misbehave in ways the host must
//! survive: route chosen records to any topic name (`routes`, e.g. one Kafka refuses), emit every
//! record several times (`copies`), panic when an instance is dropped (`panic_in_drop`) and take
//! long over every call (`delay_ms`), or hold its calls while a file names its process (`pause_file`,
//! so a test knows a transaction is open when it acts).
//!
//! ```text
//! batch ─▶ batch_probability draw ──hit──▶ fail the whole batch (error | panic)
//!            │ miss
//!            ▼
//!          each record ─▶ matches value_contains / key_equals / offsets? ──yes──▶ error | panic | reject
//!            │ no (or `times` used up)
//!            ▼
//!          copy (key, value, headers, timestamp; input partition unless keep_partition = false;
//!                topic from routes, else topic), emitted `copies` times
//! ```
//!
//! Every fault message names the record, e.g.
//! `fault injected at topic/partition/offset in-0/3/42 (value contains "poison")` or
//! `fault injected for batch of 8 records starting at topic/partition/offset in-0/3/40 (batch_probability 0.5)`.
//!
//! # Configuration
//! The `[transform.config]` table in `pipeline.toml`. A record matches if any of the conditions
//! (`value_contains`, `key_equals`, `offsets`, `batch_probability`) matches; `action` is required with
//! them. At least one condition or one of `routes`, `copies`, `panic_in_drop` and `delay_ms` must be
//! set:
//!
//! ```toml
//! [transform.config]
//! action = "error"                                  # "error" | "panic" | "reject" (rejects matching records only) | "out_of_range" (emits them for an input past the batch)
//! value_contains = "poison"                         # substring of the value (decoded as lossy UTF-8)
//! key_equals = "k-13"                               # the whole key, as UTF-8
//! offsets = [{ partition = 0, offset = 42 }, { partition = 2, offset = 7 }]
//! batch_probability = 0.1                           # fail whole batches at random ("error" and "panic" only)
//! seed = 42                                         # seed of that deterministic draw (default 0)
//! times = 2                                         # fire at most twice per process, then copy records through
//! keep_partition = true                             # default true: produce to the input's partition number
//! topic = "out"                                     # default: the pipeline's sink topic
//! routes = [{ partition = 1, offset = 7, topic = "bad out!" }]  # these records go to this topic (any name)
//! copies = 1                                        # emit every copied record this many times (default 1)
//! panic_in_drop = false                             # panic when the instance is dropped (default false)
//! delay_ms = 30000                                  # sleep this long in every call, after a line on stderr
//! pause_file = "/tmp/pause"                         # while it holds this process's id, hold calls (<= 30 s)
//! ```
//!
//! # Process-wide state
//! The `times` counter and the random draw live in process-wide state shared by every instance with the
//! same configuration, so they survive the host re-creating the instance after a panic: `times = 2` with
//! `action = "panic"` panics twice and then lets the retried batch through. Instances configured
//! differently (in this process) have independent counters and independent draws.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;
use txform_plugin_api::{export_transform, OutRecord, Output, Record, Transform, TransformError};

/// `[transform.config]` of the fault plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What to do when a condition fires; required with a condition.
    pub action: Option<Action>,
    /// Matches records whose value (decoded as lossy UTF-8) contains this non-empty string.
    pub value_contains: Option<String>,
    /// Matches records whose key is exactly this string.
    pub key_equals: Option<String>,
    /// Matches the records at these source positions (any topic).
    pub offsets: Option<Vec<Position>>,
    /// Probability, in `0.0..=1.0`, of failing each (non-empty) batch as a whole, independently of the
    /// record conditions. Needs `action = "error"` or `"panic"`.
    pub batch_probability: Option<f64>,
    /// Seed of the deterministic pseudo-random draw behind `batch_probability` (default 0).
    pub seed: Option<u64>,
    /// Fire at most this many times per process (a failed batch or a rejected record counts once), then
    /// copy records through.
    pub times: Option<u64>,
    /// Produce each record to the partition number it was read from (default true).
    #[serde(default = "default_keep_partition")]
    pub keep_partition: bool,
    /// Output topic; the pipeline's `sink.topic` when unset.
    pub topic: Option<String>,
    /// Output topics of chosen records, overriding `topic`. Any name is taken as given, even one
    /// Kafka refuses, so tests can see how the host treats it.
    pub routes: Option<Vec<Route>>,
    /// Emit every copied record this many times (default 1).
    pub copies: Option<u32>,
    /// Panic when an instance is dropped (not while the thread already panics).
    #[serde(default)]
    pub panic_in_drop: bool,
    /// Sleep this long at the start of every call (a slow transform, keeping a transaction open),
    /// after writing `fault: sleeping <N> ms in a call` to stderr so tests know the call began.
    pub delay_ms: Option<u64>,
    /// While this file exists and holds this process's id (decimal), every call waits at its start
    /// (re-checking every 10 ms, for at most [`PAUSE_LIMIT`]) after writing `fault: paused in a
    /// call (pid <pid>)` to stderr: the host calls transforms inside the open transaction, so a test
    /// that sees the line knows one is open. Other processes sharing the configuration go on.
    pub pause_file: Option<std::path::PathBuf>,
}

/// The longest a call waits for `pause_file` to release it, so a file left behind cannot hang a
/// process.
pub const PAUSE_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How often a paused call looks whether `pause_file` still holds it.
const PAUSE_CHECK: std::time::Duration = std::time::Duration::from_millis(10);

fn default_keep_partition() -> bool {
    true
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Return an error from the transform call: the host aborts the transaction and retries.
    Error,
    /// Panic inside the transform call (the host re-creates the instance before retrying).
    Panic,
    /// Reject the matching records with [`Output::reject`]; the rest of the batch goes through.
    Reject,
    /// Emit the matching records' copies attributed to an input index past the batch's end (a buggy
    /// plugin): the host fails the call.
    #[serde(rename = "out_of_range")]
    OutOfRange,
}

/// An entry of `routes`: the record at this source position goes to `topic`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub partition: i32,
    pub offset: i64,
    pub topic: String,
}

/// A source position listed in `offsets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

pub struct Fault {
    /// `Reject` when no condition is set (nothing fires then).
    action: Action,
    value_contains: Option<String>,
    key_equals: Option<String>,
    offsets: HashSet<Position>,
    batch_probability: Option<f64>,
    times: Option<u64>,
    keep_partition: bool,
    topic: Option<String>,
    routes: BTreeMap<Position, String>,
    copies: u32,
    panic_in_drop: bool,
    delay: Option<std::time::Duration>,
    pause_file: Option<std::path::PathBuf>,
    shared: Arc<Shared>,
}

/// The state shared by every instance with the same configuration, for the life of the process.
#[derive(Debug)]
struct Shared {
    /// How many times a fault fired.
    fired: AtomicU64,
    /// The splitmix64 state of the batch draw.
    rng: AtomicU64,
}

/// [`Shared`] state by configuration (its `Debug` form).
static SHARED: Mutex<BTreeMap<String, Arc<Shared>>> = Mutex::new(BTreeMap::new());

fn shared_state(config: &Config) -> Arc<Shared> {
    let mut states = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    let state = states.entry(format!("{config:?}")).or_insert_with(|| {
        Arc::new(Shared {
            fired: AtomicU64::new(0),
            rng: AtomicU64::new(config.seed.unwrap_or(0)),
        })
    });
    Arc::clone(state)
}

impl Transform for Fault {
    type Config = Config;

    fn new(config: Config) -> Result<Self, TransformError> {
        validate(&config)?;
        let shared = shared_state(&config);
        let routes = config.routes.unwrap_or_default().into_iter();
        Ok(Fault {
            action: config.action.unwrap_or(Action::Reject),
            value_contains: config.value_contains,
            key_equals: config.key_equals,
            offsets: config.offsets.unwrap_or_default().into_iter().collect(),
            batch_probability: config.batch_probability,
            times: config.times,
            keep_partition: config.keep_partition,
            topic: config.topic,
            routes: routes
                .map(|r| {
                    let here = Position {
                        partition: r.partition,
                        offset: r.offset,
                    };
                    (here, r.topic)
                })
                .collect(),
            copies: config.copies.unwrap_or(1),
            panic_in_drop: config.panic_in_drop,
            delay: config.delay_ms.map(std::time::Duration::from_millis),
            pause_file: config.pause_file,
            shared,
        })
    }

    fn transform(&mut self, batch: &[Record<'_>], out: &mut Output) -> Result<(), TransformError> {
        if let Some(delay) = self.delay {
            eprintln!("fault: sleeping {} ms in a call", delay.as_millis());
            std::thread::sleep(delay);
        }
        if let Some(file) = &self.pause_file {
            pause_while_named(file);
        }
        if let (Some(probability), Some(first)) = (self.batch_probability, batch.first()) {
            // Draw for every batch, so the sequence of draws does not depend on `times`.
            if next_unit(&self.shared.rng) < probability && self.claim() {
                let message = format!(
                    "fault injected for batch of {} record{} starting at topic/partition/offset {} \
                     (batch_probability {probability})",
                    batch.len(),
                    if batch.len() == 1 { "" } else { "s" },
                    position(first),
                );
                return self.fail(message);
            }
        }
        for (index, record) in batch.iter().enumerate() {
            if let Some(condition) = self.matching(record) {
                if self.claim() {
                    let message = format!(
                        "fault injected at topic/partition/offset {} ({condition})",
                        position(record)
                    );
                    match self.action {
                        Action::Reject => {
                            out.reject(index, message);
                            continue;
                        }
                        Action::OutOfRange => {
                            out.emit(batch.len(), OutRecord::from_input(record));
                            continue;
                        }
                        Action::Error | Action::Panic => {}
                    }
                    return self.fail(message);
                }
            }
            let mut copy = OutRecord::from_input(record);
            if self.keep_partition {
                copy = copy.with_partition(record.partition());
            }
            if let Some(topic) = self.routes.get(&at(record)).or(self.topic.as_ref()) {
                copy = copy.with_topic(topic.clone());
            }
            for _ in 1..self.copies {
                out.emit(index, copy.clone());
            }
            out.emit(index, copy);
        }
        Ok(())
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        if self.panic_in_drop && !std::thread::panicking() {
            panic!("fault injected: panic_in_drop");
        }
    }
}

impl Fault {
    /// The first condition `record` matches, described.
    fn matching(&self, record: &Record<'_>) -> Option<String> {
        if let (Some(needle), Some(value)) = (&self.value_contains, record.value()) {
            if String::from_utf8_lossy(value).contains(needle.as_str()) {
                return Some(format!("value contains {needle:?}"));
            }
        }
        if let Some(key) = &self.key_equals {
            if record.key() == Some(key.as_bytes()) {
                return Some(format!("key equals {key:?}"));
            }
        }
        if self.offsets.contains(&at(record)) {
            return Some("listed in offsets".to_string());
        }
        None
    }

    /// Takes one firing from the `times` budget; false when it is used up.
    fn claim(&self) -> bool {
        match self.times {
            None => true,
            Some(times) => self
                .shared
                .fired
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |fired| {
                    (fired < times).then_some(fired + 1)
                })
                .is_ok(),
        }
    }

    /// Fails the call as configured (`Reject` and `OutOfRange` never get here).
    fn fail(&self, message: String) -> Result<(), TransformError> {
        match self.action {
            Action::Panic => panic!("{message}"),
            Action::Error | Action::Reject | Action::OutOfRange => Err(message.into()),
        }
    }
}

/// Holds the call while `file` names this process (see [`Config::pause_file`]); says so once on
/// stderr.
fn pause_while_named(file: &std::path::Path) {
    let me = std::process::id().to_string();
    let named = || std::fs::read_to_string(file).is_ok_and(|pid| pid.trim() == me);
    if !named() {
        return;
    }
    eprintln!("fault: paused in a call (pid {me})");
    let deadline = std::time::Instant::now() + PAUSE_LIMIT;
    while named() && std::time::Instant::now() < deadline {
        std::thread::sleep(PAUSE_CHECK);
    }
}

fn validate(config: &Config) -> Result<(), TransformError> {
    let conditions = config.value_contains.is_some()
        || config.key_equals.is_some()
        || config.offsets.is_some()
        || config.batch_probability.is_some();
    let misbehaviours = config.routes.is_some()
        || config.copies.is_some()
        || config.panic_in_drop
        || config.delay_ms.is_some()
        || config.pause_file.is_some();
    match (conditions, config.action) {
        (true, None) => {
            return Err(
                "action is required with value_contains, key_equals, offsets or \
                        batch_probability"
                    .into(),
            );
        }
        (false, Some(_)) => {
            return Err(
                "action has no condition to act on: set value_contains, key_equals, \
                        offsets or batch_probability"
                    .into(),
            );
        }
        (false, None) if !misbehaviours => {
            return Err(
                "no fault: set at least one of value_contains, key_equals, offsets, \
                        batch_probability, routes, copies, panic_in_drop, delay_ms or pause_file"
                    .into(),
            );
        }
        _ => {}
    }
    if config.routes.as_ref().is_some_and(Vec::is_empty) {
        return Err("routes is empty: list at least one { partition, offset, topic }".into());
    }
    if config.copies == Some(0) {
        return Err("copies = 0 would drop every record: use at least 1".into());
    }
    if config.value_contains.as_deref() == Some("") {
        return Err("value_contains is empty, which would match every record: \
                    use batch_probability = 1.0 to fail every batch"
            .into());
    }
    if let Some(offsets) = &config.offsets {
        if offsets.is_empty() {
            return Err("offsets is empty: list at least one { partition, offset }".into());
        }
        if let Some((i, p)) = offsets
            .iter()
            .enumerate()
            .find(|(_, p)| p.partition < 0 || p.offset < 0)
        {
            return Err(format!(
                "offsets[{i}]: partition {} offset {} is not a record position (both must be >= 0)",
                p.partition, p.offset
            )
            .into());
        }
    }
    match config.batch_probability {
        Some(p) if !(0.0..=1.0).contains(&p) => {
            return Err(format!("batch_probability must be between 0.0 and 1.0, got {p}").into());
        }
        Some(_) if matches!(config.action, Some(Action::Reject | Action::OutOfRange)) => {
            return Err(
                "batch_probability fails whole batches, so it needs action = \"error\" or \
                        \"panic\""
                    .into(),
            );
        }
        None if config.seed.is_some() => {
            return Err("seed is only used with batch_probability".into());
        }
        _ => {}
    }
    if config.times == Some(0) {
        return Err("times = 0 would never fire: remove the fault transform instead".into());
    }
    if config.topic.as_deref() == Some("") {
        return Err("topic is empty: remove it to use the pipeline's sink topic".into());
    }
    Ok(())
}

fn at(record: &Record<'_>) -> Position {
    Position {
        partition: record.partition(),
        offset: record.offset(),
    }
}

fn position(record: &Record<'_>) -> String {
    format!(
        "{}/{}/{}",
        record.topic(),
        record.partition(),
        record.offset()
    )
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The next output of the splitmix64 generator whose state is `state` (lock-free: one `fetch_add`).
fn next_u64(state: &AtomicU64) -> u64 {
    let mut z = state
        .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
        .wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw in `[0, 1)`: the top 53 bits of [`next_u64`].
fn next_unit(state: &AtomicU64) -> f64 {
    (next_u64(state) >> 11) as f64 / (1u64 << 53) as f64
}

export_transform!(Fault);

#[cfg(test)]
mod tests {
    //! Instances with equal configurations share their `times` counter and draw, and tests run in
    //! parallel: every test that relies on them uses a configuration of its own (e.g. its own `topic`).

    use super::*;
    use serde_json::{json, Value};
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use txform_plugin_api::{serde_json, Header, Rejection};

    fn fault(config: Value) -> Fault {
        Fault::new(serde_json::from_value(config).unwrap()).unwrap()
    }

    fn config_error(config: Value) -> String {
        match Fault::new(serde_json::from_value(config).unwrap()) {
            Ok(_) => panic!("config accepted"),
            Err(e) => e.to_string(),
        }
    }

    /// A batch on topic `in-0`, partition 3, from offset 40, with the given keys and values.
    fn batch<'a>(records: &[(&'a str, &'a str)]) -> Vec<Record<'a>> {
        records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                Record::new(
                    "in-0",
                    3,
                    40 + i as i64,
                    None,
                    Some(k.as_bytes()),
                    Some(v.as_bytes()),
                    &[],
                )
            })
            .collect()
    }

    fn values(out: &Output) -> Vec<(u32, String)> {
        out.records()
            .iter()
            .map(|r| {
                let value = r.value.as_ref().map(|v| v.to_vec()).into_option().unwrap();
                (r.input, String::from_utf8(value).unwrap())
            })
            .collect()
    }

    fn run(f: &mut Fault, records: &[Record<'_>]) -> Result<Output, String> {
        let mut out = Output::new();
        f.transform(records, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// The message of the panic of one transform call.
    fn panic_message(f: &mut Fault, records: &[Record<'_>]) -> String {
        let payload = catch_unwind(AssertUnwindSafe(|| {
            f.transform(records, &mut Output::new())
        }))
        .expect_err("no panic");
        match payload.downcast::<String>() {
            Ok(message) => *message,
            Err(_) => panic!("panic payload is not a String"),
        }
    }

    const ABC: [(&str, &str); 3] = [("k1", "a"), ("k2", "b poison c"), ("k3", "c")];

    #[test]
    fn copies_records_keeping_partition_when_nothing_matches() {
        let headers = [Header::new("h", Some(b"v"))];
        let rec = Record::new(
            "in-0",
            5,
            9,
            Some(123),
            Some(b"k"),
            Some(b"clean"),
            &headers,
        );
        let mut out = Output::new();
        fault(json!({ "action": "error", "value_contains": "poison" }))
            .transform(&[rec], &mut out)
            .unwrap();
        let expected = OutRecord::new(&b"clean"[..])
            .with_key(&b"k"[..])
            .with_timestamp(123)
            .with_header("h", Some(b"v".to_vec()))
            .with_partition(5);
        assert_eq!(out.records(), [expected]);
        assert_eq!(out.rejections(), [] as [Rejection; 0]);
    }

    #[test]
    fn keep_partition_false_and_topic() {
        let mut out = Output::new();
        fault(json!({ "action": "error", "key_equals": "x", "keep_partition": false, "topic": "out" }))
            .transform(&batch(&[("k", "v")]), &mut out)
            .unwrap();
        assert_eq!(
            out.records(),
            [OutRecord::new(&b"v"[..])
                .with_key(&b"k"[..])
                .with_topic("out")]
        );
    }

    #[test]
    fn routes_send_chosen_records_to_any_topic_name() {
        let mut f = fault(json!({
            "routes": [{ "partition": 3, "offset": 41, "topic": "bad\0topic" }],
            "topic": "out", "keep_partition": false,
        }));
        let out = run(&mut f, &batch(&ABC)).unwrap();
        let topics: Vec<Option<String>> = out
            .records()
            .iter()
            .map(|r| r.topic.as_ref().map(|t| t.to_string()).into_option())
            .collect();
        assert_eq!(
            topics,
            [
                Some("out".into()),
                Some("bad\0topic".into()),
                Some("out".into())
            ]
        );
    }

    #[test]
    fn copies_emits_every_record_that_many_times() {
        let mut f = fault(json!({ "copies": 2, "keep_partition": false }));
        let out = run(&mut f, &batch(&ABC[..2])).unwrap();
        assert_eq!(
            values(&out),
            [
                (0, "a".to_string()),
                (0, "a".to_string()),
                (1, "b poison c".to_string()),
                (1, "b poison c".to_string())
            ]
        );
    }

    #[test]
    fn out_of_range_attributes_matching_records_past_the_batch() {
        let mut f =
            fault(json!({ "action": "out_of_range", "key_equals": "k2", "keep_partition": false }));
        let out = run(&mut f, &batch(&ABC)).unwrap();
        assert_eq!(
            values(&out),
            [
                (0, "a".to_string()),
                (3, "b poison c".to_string()),
                (2, "c".to_string())
            ]
        );
    }

    #[test]
    fn delay_ms_sleeps_in_every_call_then_copies() {
        let mut f = fault(json!({ "delay_ms": 50, "keep_partition": false }));
        for _ in 0..2 {
            let started = std::time::Instant::now();
            let out = run(&mut f, &batch(&ABC[..1])).unwrap();
            assert!(started.elapsed() >= std::time::Duration::from_millis(50));
            assert_eq!(values(&out), [(0, "a".to_string())]);
        }
    }

    #[test]
    fn pause_file_holds_calls_of_the_process_it_names_until_removed() {
        let dir = std::env::temp_dir().join(format!("txform-fault-pause-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pause");
        let mut f = fault(json!({ "pause_file": file, "keep_partition": false }));
        let quick = |f: &mut Fault| {
            let started = std::time::Instant::now();
            assert_eq!(
                values(&run(f, &batch(&ABC[..1])).unwrap()),
                [(0, "a".to_string())]
            );
            started.elapsed()
        };
        // No file, or one naming another process: the call goes straight through.
        assert!(quick(&mut f) < std::time::Duration::from_secs(5));
        std::fs::write(&file, "1").unwrap();
        assert!(quick(&mut f) < std::time::Duration::from_secs(5));
        std::fs::write(&file, format!("{}\n", std::process::id())).unwrap();
        let remover = {
            let file = file.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(100));
                std::fs::remove_file(file).unwrap();
            })
        };
        let held = quick(&mut f);
        remover.join().unwrap();
        assert!(
            held >= std::time::Duration::from_millis(100),
            "held {held:?}"
        );
        assert!(held < PAUSE_LIMIT, "held {held:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn panic_in_drop_panics_when_dropped() {
        let f = fault(json!({ "panic_in_drop": true }));
        let payload = catch_unwind(AssertUnwindSafe(|| drop(f))).expect_err("no panic");
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"fault injected: panic_in_drop")
        );
        drop(fault(json!({ "copies": 1 })));
    }

    #[test]
    fn error_names_the_record_and_the_condition() {
        let mut f = fault(json!({ "action": "error", "value_contains": "poison" }));
        assert_eq!(
            run(&mut f, &batch(&ABC)).unwrap_err(),
            "fault injected at topic/partition/offset in-0/3/41 (value contains \"poison\")"
        );
        // Every call fails again (no `times`).
        assert!(run(&mut f, &batch(&ABC)).is_err());
        assert_eq!(
            values(&run(&mut f, &batch(&[("k", "fine")])).unwrap()),
            [(0, "fine".into())]
        );
    }

    #[test]
    fn value_is_matched_as_lossy_utf8() {
        let mut f = fault(json!({ "action": "error", "value_contains": "poison" }));
        let value = b"\xff\xfepoison\x00";
        let rec = Record::new("in-0", 0, 1, None, None, Some(value), &[]);
        assert_eq!(
            run(&mut f, &[rec]).unwrap_err(),
            "fault injected at topic/partition/offset in-0/0/1 (value contains \"poison\")"
        );
        let tombstone = Record::new("in-0", 0, 2, None, None, None, &[]);
        assert_eq!(run(&mut f, &[tombstone]).unwrap().records().len(), 1);
    }

    #[test]
    fn key_equals_matches_the_whole_key() {
        let mut f = fault(json!({ "action": "error", "key_equals": "k3" }));
        assert_eq!(
            run(&mut f, &batch(&ABC)).unwrap_err(),
            "fault injected at topic/partition/offset in-0/3/42 (key equals \"k3\")"
        );
        assert!(run(&mut f, &batch(&[("k33", "v"), ("k", "v")])).is_ok());
        let no_key = Record::new("in-0", 0, 0, None, None, Some(b"k3"), &[]);
        assert!(run(&mut f, &[no_key]).is_ok());
    }

    #[test]
    fn offsets_match_partition_and_offset() {
        let mut f = fault(json!({ "action": "error", "offsets": [
            { "partition": 3, "offset": 42 }, { "partition": 0, "offset": 41 },
        ] }));
        assert_eq!(
            run(&mut f, &batch(&ABC)).unwrap_err(),
            "fault injected at topic/partition/offset in-0/3/42 (listed in offsets)"
        );
        assert!(run(&mut f, &batch(&ABC[..2])).is_ok());
    }

    #[test]
    fn any_condition_matches_and_the_first_is_named() {
        let mut f = fault(json!({
            "action": "error", "value_contains": "zzz", "key_equals": "k2",
            "offsets": [{ "partition": 3, "offset": 41 }],
        }));
        assert_eq!(
            run(&mut f, &batch(&ABC)).unwrap_err(),
            "fault injected at topic/partition/offset in-0/3/41 (key equals \"k2\")"
        );
        assert_eq!(
            run(&mut f, &batch(&[("a", "a"), ("b", "zzz")])).unwrap_err(),
            "fault injected at topic/partition/offset in-0/3/41 (value contains \"zzz\")"
        );
    }

    #[test]
    fn panic_names_the_record() {
        let mut f = fault(json!({ "action": "panic", "value_contains": "poison" }));
        assert_eq!(
            panic_message(&mut f, &batch(&ABC)),
            "fault injected at topic/partition/offset in-0/3/41 (value contains \"poison\")"
        );
    }

    #[test]
    fn reject_rejects_matching_records_only() {
        let mut f =
            fault(json!({ "action": "reject", "value_contains": "poison", "key_equals": "k3" }));
        let out = run(
            &mut f,
            &batch(&[("k1", "a"), ("k2", "poison"), ("k3", "c"), ("k4", "d")]),
        )
        .unwrap();
        assert_eq!(values(&out), [(0, "a".to_string()), (3, "d".to_string())]);
        assert_eq!(
            out.rejections(),
            [
                Rejection {
                    input: 1,
                    reason: "fault injected at topic/partition/offset in-0/3/41 (value contains \"poison\")"
                        .into()
                },
                Rejection {
                    input: 2,
                    reason: "fault injected at topic/partition/offset in-0/3/42 (key equals \"k3\")".into()
                },
            ]
        );
    }

    #[test]
    fn times_limits_errors_then_passes_through() {
        let mut f = fault(
            json!({ "action": "error", "value_contains": "poison", "times": 2, "topic": "times-error" }),
        );
        assert!(run(&mut f, &batch(&ABC)).is_err());
        assert!(run(&mut f, &batch(&ABC)).is_err());
        let out = run(&mut f, &batch(&ABC)).unwrap();
        assert_eq!(out.records().len(), 3);
    }

    #[test]
    fn times_survives_re_creation_after_a_panic() {
        let config = json!({ "action": "panic", "offsets": [{ "partition": 3, "offset": 40 }], "times": 2, "topic": "times-panic" });
        for _ in 0..2 {
            let mut f = fault(config.clone());
            assert_eq!(
                panic_message(&mut f, &batch(&ABC)),
                "fault injected at topic/partition/offset in-0/3/40 (listed in offsets)"
            );
        }
        let mut f = fault(config.clone());
        assert_eq!(run(&mut f, &batch(&ABC)).unwrap().records().len(), 3);
        // A differently configured instance has its own budget.
        let mut other = fault(
            json!({ "action": "panic", "offsets": [{ "partition": 3, "offset": 40 }], "times": 2, "topic": "times-panic-2" }),
        );
        panic_message(&mut other, &batch(&ABC));
    }

    #[test]
    fn times_counts_each_rejected_record() {
        let mut f = fault(
            json!({ "action": "reject", "value_contains": "x", "times": 3, "topic": "times-reject" }),
        );
        let rows = [("k", "x"), ("k", "x"), ("k", "y")];
        let out = run(&mut f, &batch(&rows)).unwrap();
        assert_eq!(
            out.rejections().iter().map(|r| r.input).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(values(&out), [(2, "y".to_string())]);
        let out = run(&mut f, &batch(&rows)).unwrap();
        assert_eq!(
            out.rejections().iter().map(|r| r.input).collect::<Vec<_>>(),
            [0]
        );
        assert_eq!(values(&out), [(1, "x".to_string()), (2, "y".to_string())]);
        assert_eq!(run(&mut f, &batch(&rows)).unwrap().records().len(), 3);
    }

    #[test]
    fn batch_probability_one_fails_every_batch_and_zero_none() {
        let mut always =
            fault(json!({ "action": "error", "batch_probability": 1.0, "topic": "p1" }));
        for _ in 0..20 {
            assert_eq!(
                run(&mut always, &batch(&ABC)).unwrap_err(),
                "fault injected for batch of 3 records starting at topic/partition/offset in-0/3/40 \
                 (batch_probability 1)"
            );
        }
        assert_eq!(
            run(&mut always, &batch(&ABC[..1])).unwrap_err(),
            "fault injected for batch of 1 record starting at topic/partition/offset in-0/3/40 \
             (batch_probability 1)"
        );
        assert!(run(&mut always, &[]).unwrap().records().is_empty());
        let mut never =
            fault(json!({ "action": "error", "batch_probability": 0.0, "topic": "p0" }));
        for _ in 0..1000 {
            assert_eq!(run(&mut never, &batch(&ABC)).unwrap().records().len(), 3);
        }
    }

    #[test]
    fn batch_probability_panics_with_the_batch_message() {
        let mut f =
            fault(json!({ "action": "panic", "batch_probability": 1.0, "topic": "p-panic" }));
        assert_eq!(
            panic_message(&mut f, &batch(&ABC)),
            "fault injected for batch of 3 records starting at topic/partition/offset in-0/3/40 \
             (batch_probability 1)"
        );
    }

    /// Which of `n` batches fail under `config`, with a fresh instance per batch after each failure.
    fn failures(config: &Value, n: usize) -> Vec<bool> {
        let mut f = fault(config.clone());
        (0..n)
            .map(|_| match run(&mut f, &batch(&ABC)) {
                Ok(_) => false,
                Err(_) => {
                    f = fault(config.clone());
                    true
                }
            })
            .collect()
    }

    #[test]
    fn batch_probability_is_deterministic_per_seed() {
        let config = |seed: u64, topic: &str| json!({ "action": "error", "batch_probability": 0.3, "seed": seed, "topic": topic });
        let a = failures(&config(7, "seed-a"), 200);
        let rng = AtomicU64::new(7);
        let expected: Vec<bool> = (0..200).map(|_| next_unit(&rng) < 0.3).collect();
        assert_eq!(a, expected);
        assert_eq!(failures(&config(7, "seed-b"), 200), a);
        assert_ne!(failures(&config(8, "seed-c"), 200), a);
        let count = a.iter().filter(|&&failed| failed).count();
        assert!((40..=80).contains(&count), "{count} failures of 200");
    }

    #[test]
    fn batch_probability_with_times_fails_a_bounded_number_of_batches() {
        let config = json!({ "action": "error", "batch_probability": 0.9, "seed": 1, "times": 3, "topic": "p-times" });
        let failed = failures(&config, 100);
        assert_eq!(failed.iter().filter(|&&f| f).count(), 3);
        assert!(!failed[10..].contains(&true));
    }

    #[test]
    fn splitmix64_reference_values() {
        let state = AtomicU64::new(0);
        assert_eq!(next_u64(&state), 0xE220_A839_7B1D_CDAF);
        assert_eq!(next_u64(&state), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(next_u64(&state), 0x06C4_5D18_8009_454F);
        let state = AtomicU64::new(u64::MAX);
        assert!((0..10_000).all(|_| (0.0..1.0).contains(&next_unit(&state))));
    }

    #[test]
    fn documented_toml_config_is_valid() {
        let block: String = include_str!("lib.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("//!"))
            .map(|line| line.strip_prefix(' ').unwrap_or(line))
            .skip_while(|line| *line != "```toml")
            .skip(1)
            .take_while(|line| *line != "```")
            .map(|line| format!("{line}\n"))
            .collect();
        let document: toml::Table = block.parse().unwrap();
        let config = serde_json::to_value(&document["transform"]["config"]).unwrap();
        let config: Config = serde_json::from_value(config).unwrap();
        assert_eq!(config.action, Some(Action::Error));
        assert_eq!(config.routes.as_ref().map(Vec::len), Some(1));
        assert_eq!((config.copies, config.panic_in_drop), (Some(1), false));
        assert_eq!(config.offsets.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            (config.batch_probability, config.seed, config.times),
            (Some(0.1), Some(42), Some(2))
        );
        Fault::new(config).unwrap();
    }

    #[test]
    fn config_deserialization_errors() {
        let err = |json: Value| {
            serde_json::from_value::<Config>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(err(json!({ "action": "crash", "value_contains": "x" }))
            .starts_with("unknown variant `crash`, expected one of `error`, `panic`, `reject`"));
        assert!(err(json!({ "action": "error", "value_contain": "x" }))
            .starts_with("unknown field `value_contain`"));
        assert!(
            err(json!({ "action": "error", "offsets": [{ "partition": 0 }] }))
                .starts_with("missing field `offset`")
        );
        assert!(
            err(json!({ "action": "error", "batch_probability": 0.5, "seed": -1 }))
                .starts_with("invalid value: integer `-1`, expected u64")
        );
    }

    #[test]
    fn config_validation_messages() {
        let cases = [
            (
                json!({ "action": "error" }),
                "action has no condition to act on: set value_contains, key_equals, offsets or batch_probability",
            ),
            (
                json!({}),
                "no fault: set at least one of value_contains, key_equals, offsets, batch_probability, routes, copies, panic_in_drop, delay_ms or pause_file",
            ),
            (
                json!({ "value_contains": "x" }),
                "action is required with value_contains, key_equals, offsets or batch_probability",
            ),
            (
                json!({ "routes": [] }),
                "routes is empty: list at least one { partition, offset, topic }",
            ),
            (
                json!({ "copies": 0 }),
                "copies = 0 would drop every record: use at least 1",
            ),
            (
                json!({ "action": "error", "value_contains": "" }),
                "value_contains is empty, which would match every record: use batch_probability = 1.0 to fail every batch",
            ),
            (
                json!({ "action": "error", "offsets": [] }),
                "offsets is empty: list at least one { partition, offset }",
            ),
            (
                json!({ "action": "error", "offsets": [{ "partition": 0, "offset": 1 }, { "partition": -1, "offset": 1 }] }),
                "offsets[1]: partition -1 offset 1 is not a record position (both must be >= 0)",
            ),
            (
                json!({ "action": "error", "batch_probability": 1.5 }),
                "batch_probability must be between 0.0 and 1.0, got 1.5",
            ),
            (
                json!({ "action": "panic", "batch_probability": -0.1 }),
                "batch_probability must be between 0.0 and 1.0, got -0.1",
            ),
            (
                json!({ "action": "reject", "batch_probability": 0.5 }),
                "batch_probability fails whole batches, so it needs action = \"error\" or \"panic\"",
            ),
            (
                json!({ "action": "error", "key_equals": "k", "seed": 3 }),
                "seed is only used with batch_probability",
            ),
            (
                json!({ "action": "error", "key_equals": "k", "times": 0 }),
                "times = 0 would never fire: remove the fault transform instead",
            ),
            (
                json!({ "action": "error", "key_equals": "k", "topic": "" }),
                "topic is empty: remove it to use the pipeline's sink topic",
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config_error(config.clone()), expected, "config {config}");
        }
        let mut nan: Config = serde_json::from_value(json!({ "action": "error" })).unwrap();
        nan.action = Some(Action::Error);
        nan.batch_probability = Some(f64::NAN);
        match Fault::new(nan) {
            Ok(_) => panic!("NaN accepted"),
            Err(e) => assert_eq!(
                e.to_string(),
                "batch_probability must be between 0.0 and 1.0, got NaN"
            ),
        }
    }
}
