//! The harness's own Kafka broker, driven through `scripts/kafka.sh`.
//!
//! It is not the shared broker on port 9092: killing that one would break every other test running
//! at the time. The harness broker has its own state directory and port, is reset at the start of
//! each run (a clean state: no topics, groups or transactional ids of an earlier run) and is stopped
//! when the [`Broker`] is dropped, on success, error or panic alike.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// `kafka.sh` writes this marker into a fully assembled `lib/`.
const MARKER: &str = ".txform-assembled";
/// Bounds on the script's commands (it has its own, shorter, time-outs inside).
const START_TIMEOUT: Duration = Duration::from_secs(150);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A broker managed by `scripts/kafka.sh` with `TXFORM_KAFKA_DIR` and `TXFORM_KAFKA_PORT`.
pub struct Broker {
    script: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Where the script's own output goes (it is chatty; the console gets one line per action).
    ops_log: PathBuf,
    /// Whether a broker may be running, so `Drop` knows it has to stop it.
    armed: bool,
}

impl Broker {
    /// Prepares the state directory: the broker jars are copied from the shared broker's directory
    /// when it has them (a few hundred milliseconds instead of a Maven run).
    pub fn new(workspace: &Path, dir: &Path, port: u16, ops_log: &Path) -> Result<Broker> {
        let script = workspace.join("scripts").join("kafka.sh");
        if !script.is_file() {
            bail!("{} not found", script.display());
        }
        let lib = dir.join("lib");
        let shared = workspace.join(".kafka").join("lib");
        if !lib.join(MARKER).is_file() && shared.join(MARKER).is_file() {
            copy_dir(&shared, &lib).with_context(|| {
                format!(
                    "copy the broker jars from {} to {}",
                    shared.display(),
                    lib.display()
                )
            })?;
        }
        Ok(Broker {
            script,
            dir: dir.to_path_buf(),
            port,
            ops_log: ops_log.to_path_buf(),
            armed: false,
        })
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops any broker left in the state directory and deletes its data.
    pub fn reset(&mut self) -> Result<()> {
        self.armed = true;
        self.run("reset", STOP_TIMEOUT)
    }

    /// Starts the broker (formatting fresh storage after a reset) and waits until it serves.
    pub fn start(&mut self) -> Result<()> {
        self.armed = true;
        self.run("start", START_TIMEOUT)
    }

    /// SIGKILLs the broker: a hard crash, open transactions and unflushed state included.
    pub fn kill(&mut self) -> Result<()> {
        self.run("kill", STOP_TIMEOUT)
    }

    /// Stops the broker cleanly.
    pub fn stop(&mut self) -> Result<()> {
        let result = self.run("stop", STOP_TIMEOUT);
        if result.is_ok() {
            self.armed = false;
        }
        result
    }

    /// The last `n` lines of the broker's log, for failure reports.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("kafka.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn run(&self, command: &str, timeout: Duration) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.ops_log)
            .with_context(|| format!("open {}", self.ops_log.display()))?;
        let log_err = log.try_clone().context("clone the broker log handle")?;
        let mut child = Command::new(&self.script)
            .arg(command)
            .env("TXFORM_KAFKA_DIR", &self.dir)
            .env("TXFORM_KAFKA_PORT", self.port.to_string())
            .env("TXFORM_KAFKA_START_TIMEOUT", "120")
            .env_remove("TXFORM_KAFKA_EXTRA_CONFIG")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("run {} {command}", self.script.display()))?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().context("wait for kafka.sh")? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "kafka.sh {command} still running after {timeout:?}; broker log tail:\n{}",
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            bail!(
                "kafka.sh {command} failed ({status}); see {}; broker log tail:\n{}",
                self.ops_log.display(),
                self.log_tail(30)
            );
        }
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.armed {
            if let Err(error) = self.stop() {
                eprintln!("txform-chaos: stopping the harness broker: {error:#}");
            }
        }
    }
}

/// Copies the files of `from` into a fresh `to` (via a temporary directory, so an interrupted copy
/// never looks complete).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("remove {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("list {}", from.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let mut source = File::open(entry.path())?;
            let mut target = File::create(tmp.join(entry.file_name()))?;
            std::io::copy(&mut source, &mut target)
                .with_context(|| format!("copy {}", entry.path().display()))?;
        }
    }
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("remove {}", to.display()))?;
    }
    std::fs::rename(&tmp, to)
        .with_context(|| format!("rename {} to {}", tmp.display(), to.display()))
}
