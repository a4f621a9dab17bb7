//! Helpers shared by the integration tests: the broker, topics, producing inputs, reading outputs,
//! running `txform`.
//!
//! Everything talks to the real Kafka broker named by `TXFORM_BOOTSTRAP` (default `127.0.0.1:9092`,
//! started by `scripts/kafka.sh start`); there is no mock. Each test starts with [`TestEnv::new`], which
//! checks the broker, picks names no other test (or earlier run) uses and makes a scratch directory for
//! pipeline files and logs:
//!
//! ```text
//! let env = TestEnv::new("happy");
//! let input = env.create_topic("in", 3);
//! let output = env.create_topic("out", 3);
//! let produced = produce(&input, &standard_inputs(100, 3));
//! let pipeline = env.pipeline(&[&input], &output).transform("copy", Plugin::passthrough(), passthrough_config());
//! let mut txform = env.spawn(&pipeline, "0");
//! let seen = wait_for_committed(&output, 100, Duration::from_secs(60));
//! txform.terminate();
//! assert_eq!(txform.wait_exit(Duration::from_secs(30)).code(), Some(0));
//! ```
//!
//! For crash and fencing tests, [`pause_in_open_transaction`] freezes an instance while it has an open
//! transaction with records in the output, so that a `kill -9` or a second instance always meets an
//! open transaction.
//!
//! Failures are made diagnosable: a [`Txform`] dropped while the test panics prints the tail of its log,
//! and the [`TestEnv`] keeps its scratch directory and prints its path.

pub mod assertions;
pub mod broker;
pub mod dead_letter;
pub mod logs;
pub mod names;
pub mod pipeline;
pub mod process;
pub mod read;
pub mod records;
pub mod scrape;
pub mod secure;
pub mod topics;

pub use assertions::{
    assert_exactly_once_by_id, assert_output, assert_output_without_aborts,
    assert_same_by_partition, assert_same_content, by_partition, content_of, ids_of,
};
pub use broker::{bootstrap, ensure_broker};
pub use logs::{committed_totals, parse_committed, Committed};
pub use names::unique_name;
pub use pipeline::{passthrough_config, table, Guarantee, PipelineConfig, Plugin};
pub use process::{
    assert_fresh, describe_status, run_command, target_dir, txform_bin, workspace_dir,
    CommandResult, Txform,
};
pub use read::{read_topic, wait_for_committed, Isolation};
pub use records::{
    big_value, produce, standard_inputs, standard_inputs_with_big, InputProducer, InputSpec,
    Record, TEST_ID_HEADER,
};
pub use topics::{
    committed_offsets, create_topic, end_offsets, last_stable_offsets, partition_count,
    wait_for_group_at_end, Topic,
};

use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// Set (to anything but `0`) to keep every test's scratch directory, not only failed tests' ones.
pub const KEEP_ENV: &str = "TXFORM_TEST_KEEP";

/// One test's context: its unique name base and a scratch directory for pipeline files and logs.
///
/// When dropped during a panic (or with `TXFORM_TEST_KEEP=1`), the scratch directory is kept and its
/// path printed, so the pipeline files and full logs of a failed test can be inspected. After a passed
/// test, its topics are deleted.
pub struct TestEnv {
    base: String,
    dir: Option<tempfile::TempDir>,
    topics: RefCell<Vec<String>>,
}

impl TestEnv {
    /// Checks the broker and picks a unique name base from `label` (which appears in every topic,
    /// group and transactional id of the test, to find them in the broker's logs).
    pub fn new(label: &str) -> TestEnv {
        ensure_broker();
        TestEnv::offline(label)
    }

    /// Like [`TestEnv::new`] for tests that never reach the broker (configuration checks).
    pub fn offline(label: &str) -> TestEnv {
        let base = unique_name(label);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{base}-"))
            .tempdir()
            .expect("create a scratch directory");
        TestEnv {
            base,
            dir: Some(dir),
            topics: RefCell::new(Vec::new()),
        }
    }

    /// The unique base of every name of this test.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `<base>-<suffix>`: a name unique to this test.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.base)
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("scratch directory").path()
    }

    /// A path inside the scratch directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir().join(file)
    }

    /// Creates topic `<base>-<suffix>` with `partitions` partitions and waits until it is usable.
    pub fn create_topic(&self, suffix: &str, partitions: i32) -> Topic {
        self.create_topic_with(suffix, partitions, &[])
    }

    /// Like [`TestEnv::create_topic`], with topic-level configs such as `("max.message.bytes", "1000")`.
    pub fn create_topic_with(
        &self,
        suffix: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Topic {
        let topic = create_topic(&self.name(suffix), partitions, configs);
        self.topics.borrow_mut().push(topic.name.clone());
        topic
    }

    /// A pipeline reading `inputs` into `output`, with this test's group and transactional-id prefix
    /// and the suite's defaults (see [`PipelineConfig::new`]); add transforms before writing it.
    pub fn pipeline(&self, inputs: &[&Topic], output: &Topic) -> PipelineConfig {
        let mut pipeline = PipelineConfig::new(
            inputs.iter().map(|t| t.name.clone()).collect(),
            output.name.clone(),
            self.name("group"),
            self.name("txn"),
        );
        pipeline.state_dir = Some(self.path("state"));
        pipeline
    }

    /// Deletes topic `name` (one txform created, such as a changelog) with this test's topics.
    pub fn delete_later(&self, name: &str) {
        self.topics.borrow_mut().push(name.to_string());
    }

    /// Writes `pipeline` as `<file>` in the scratch directory and returns its path.
    pub fn write_pipeline(&self, pipeline: &PipelineConfig, file: &str) -> PathBuf {
        let path = self.path(file);
        std::fs::write(&path, pipeline.to_toml()).expect("write the pipeline file");
        path
    }

    /// Writes `pipeline` and starts `txform run <file> --instance-id <instance_id>`, logging (stdout and
    /// stderr) to `txform-<instance_id>-<n>.log` in the scratch directory.
    pub fn spawn(&self, pipeline: &PipelineConfig, instance_id: &str) -> Txform {
        let config = self.write_pipeline(pipeline, "pipeline.toml");
        self.spawn_file(&config, instance_id)
    }

    /// Starts `txform run <config> --instance-id <instance_id>` on an existing pipeline file.
    pub fn spawn_file(&self, config: &Path, instance_id: &str) -> Txform {
        let mut n = 0;
        let log = loop {
            let candidate = self.path(&format!("txform-{instance_id}-{n}.log"));
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        Txform::spawn(
            &format!("txform[{instance_id}#{n}]"),
            &[
                "run".as_ref(),
                config.as_os_str(),
                "--instance-id".as_ref(),
                instance_id.as_ref(),
            ],
            &log,
        )
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let keep = std::env::var_os(KEEP_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        if std::thread::panicking() || keep {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                let why = if keep { KEEP_ENV } else { "test failed" };
                eprintln!(
                    "[{}] {why}: pipeline files and logs kept in {}",
                    self.base,
                    kept.display()
                );
            }
        }
        if !std::thread::panicking() {
            // The test passed: its topics are of no further use.
            for topic in self.topics.borrow().iter() {
                topics::delete_topic_quietly(topic);
            }
        }
    }
}

/// Freezes `txform` (SIGSTOP) at a moment when it has an open transaction with records already
/// written to `output`: the output's last stable offset is behind its end in some partition, and stays
/// so while the process is frozen (a commit being completed would catch up within milliseconds).
/// Tries again (resuming the process for a moment) until `timeout`. Returns the last stable offsets
/// and the end offsets at that moment.
///
/// This makes crash and fencing tests deterministic: whatever happens next to the frozen process
/// (`kill -9`, a second instance fencing it), its transaction is open and holds records that must end
/// up aborted.
pub fn pause_in_open_transaction(
    txform: &mut Txform,
    output: &Topic,
    timeout: std::time::Duration,
) -> (Vec<i64>, Vec<i64>) {
    let what = format!("an open transaction with records in {}", output.name);
    pause_when(txform, timeout, &what, || {
        let (lso, end) = (last_stable_offsets(output), end_offsets(output));
        lso.iter()
            .zip(&end)
            .any(|(l, e)| l < e)
            .then_some((lso, end))
    })
}

/// Freezes `txform` (SIGSTOP) at a moment when `state` finds what a test waits for (`Some`), and
/// finds the same 500 ms later (a frozen process changes nothing, so the state is not one about to
/// end). Tries again (resuming the process for a moment) until `timeout`; `what` names the state
/// in the failure message.
pub fn pause_when<T: PartialEq>(
    txform: &mut Txform,
    timeout: std::time::Duration,
    what: &str,
    mut state: impl FnMut() -> Option<T>,
) -> T {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + timeout;
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        txform.pause();
        if let Some(first) = state() {
            std::thread::sleep(Duration::from_millis(500));
            if state().as_ref() == Some(&first) {
                return first;
            }
        }
        txform.resume();
        assert!(
            Instant::now() < deadline,
            "{what} not caught in {attempt} attempts over {timeout:?}"
        );
        // Vary the phase at which the next attempt freezes the process.
        std::thread::sleep(Duration::from_millis(5 + (attempt * 17) % 60));
    }
}
