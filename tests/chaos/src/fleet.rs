//! The txform instances of a run: starting, stopping and restarting them, and noticing the ones that
//! end without being asked to.
//!
//! Every process is a [`Txform`] of the integration-test harness, so it dies with the harness: the
//! handle SIGKILLs it when dropped and the kernel does when the spawning thread ends
//! (`PR_SET_PDEATHSIG`). That is also why processes are only ever started from the main thread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use txform_tests::{describe_status, Txform};

use crate::profile::Signal;

/// How long a SIGTERMed instance may take to finish its batch and exit.
const TERM_TIMEOUT: Duration = Duration::from_secs(45);
/// How long a new instance may take to join and say "txform running".
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGKILL waits for its instance to be held in a transform call. Below the fault
/// plugin's `PAUSE_LIMIT` (30 s from the call's start, which is after the wait began), so a call
/// seen held is still held when the signal arrives.
const PAUSE_WAIT: Duration = Duration::from_secs(20);
/// What the fault plugin writes to stderr when it holds a call (see its `pause_file`).
const PAUSED: &str = "fault: paused in a call";

/// Something an instance did that it should not have.
#[derive(Debug, Clone)]
pub struct Anomaly {
    pub instance: String,
    pub what: String,
    pub log: PathBuf,
    /// The instance ended without being asked to (and was restarted).
    pub ended_by_itself: bool,
}

/// The instances of one run, by instance id.
pub struct Fleet {
    config: PathBuf,
    log_dir: PathBuf,
    running: BTreeMap<String, Txform>,
    /// Processes started per instance id (a restart is a new process and a new log file).
    starts: BTreeMap<String, u32>,
    pub kills: u32,
    /// SIGKILLs that landed while their instance was held in a transform call: the host calls
    /// transforms only between `begin_transaction` and the commit, so inside an open transaction.
    pub kills_in_transaction: u32,
    pub terms: u32,
    pub anomalies: Vec<Anomaly>,
    /// While this file names a process, the pipeline's fault stage holds that process's calls (see
    /// `pipeline.rs`).
    pause_file: PathBuf,
}

impl Fleet {
    pub fn new(config: &Path, log_dir: &Path, pause_file: &Path) -> Fleet {
        Fleet {
            config: config.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            running: BTreeMap::new(),
            starts: BTreeMap::new(),
            kills: 0,
            kills_in_transaction: 0,
            terms: 0,
            anomalies: Vec::new(),
            pause_file: pause_file.to_path_buf(),
        }
    }

    /// Starts `txform run <config> --instance-id <id>`, logging to `txform-<id>-<n>.log`.
    pub fn start(&mut self, id: &str) -> Result<()> {
        if self.running.contains_key(id) {
            bail!("instance {id} is already running");
        }
        let n = self.starts.entry(id.to_string()).or_insert(0);
        let log = self.log_dir.join(format!("txform-{id}-{n}.log"));
        let label = format!("txform[{id}#{n}]");
        *n += 1;
        let args = [
            "run".as_ref(),
            self.config.as_os_str(),
            "--instance-id".as_ref(),
            id.as_ref(),
        ];
        let process = crate::catch("start txform", || Txform::spawn(&label, &args, &log))?;
        self.running.insert(id.to_string(), process);
        Ok(())
    }

    /// Stops instance `id` with `signal` and reaps it. A SIGTERMed instance must exit with code 0
    /// within [`TERM_TIMEOUT`]; otherwise it is killed and the anomaly recorded. A SIGKILL is sent
    /// while the instance is held in a transform call, so it lands inside an open transaction.
    pub fn stop(&mut self, id: &str, signal: Signal) -> Result<ExitStatus> {
        match signal {
            Signal::Kill => self.kill_inside_transaction(id),
            Signal::Term => {
                self.terms += 1;
                self.reap(id, signal, true)
            }
        }
    }

    /// Holds instance `id`'s next transform call (the pause file names its pid; the others go on),
    /// waits until it says the call is held, SIGKILLs it there and removes the file once it is
    /// reaped. An instance that is not held within [`PAUSE_WAIT`] (no records to copy) is killed
    /// anyway, and the kill is not counted as inside a transaction.
    fn kill_inside_transaction(&mut self, id: &str) -> Result<ExitStatus> {
        self.kills += 1;
        let file = self.pause_file.clone();
        let (pause, held) = match self.running.get_mut(id) {
            Some(process) => {
                let pause = Pause::hold(&file, process.pid())?;
                (Some(pause), wait_held(process))
            }
            None => (None, false),
        };
        if let Some(process) = self.running.get_mut(id) {
            send(process, libc::SIGKILL);
        }
        let status = self.reap(id, Signal::Kill, false);
        drop(pause);
        if held {
            self.kills_in_transaction += 1;
        }
        status
    }

    /// Waits for instance `id` to end after `signal` (sent here if `send_it`).
    fn reap(&mut self, id: &str, signal: Signal, send_it: bool) -> Result<ExitStatus> {
        let Some(mut process) = self.running.remove(id) else {
            bail!("instance {id} is not running");
        };
        let status = match signal {
            Signal::Kill => {
                if send_it {
                    send(&mut process, libc::SIGKILL);
                }
                wait(&mut process, Duration::from_secs(10))
            }
            Signal::Term => {
                if send_it {
                    wait_started(&mut process);
                    send(&mut process, libc::SIGTERM);
                }
                wait(&mut process, TERM_TIMEOUT)
            }
        };
        let status = match status {
            Some(status) => status,
            None => {
                self.anomaly(
                    id,
                    &process,
                    format!("still running {TERM_TIMEOUT:?} after {}", signal.name()),
                );
                send(&mut process, libc::SIGKILL);
                match wait(&mut process, Duration::from_secs(10)) {
                    Some(status) => status,
                    None => bail!("instance {id} survived SIGKILL"),
                }
            }
        };
        if signal == Signal::Term && status.code() != Some(0) {
            self.anomaly(
                id,
                &process,
                format!(
                    "ended with {} after SIGTERM, expected exit code 0",
                    describe_status(&status)
                ),
            );
        }
        Ok(status)
    }

    /// Restarts every instance that ended by itself, recording why it ended. Returns how many.
    pub fn supervise(&mut self) -> Result<usize> {
        let ended: Vec<(String, ExitStatus)> = self
            .running
            .iter_mut()
            .filter_map(|(id, p)| p.try_exit().map(|s| (id.clone(), s)))
            .collect();
        for (id, status) in &ended {
            if let Some(process) = self.running.remove(id) {
                let errors = process.error_messages().join(" | ");
                self.anomaly(
                    id,
                    &process,
                    format!("ended by itself with {}: {errors}", describe_status(status)),
                );
                if let Some(last) = self.anomalies.last_mut() {
                    last.ended_by_itself = true;
                }
            }
            self.start(id)?;
        }
        Ok(ended.len())
    }

    /// Stops every running instance with SIGTERM (in parallel: one signal each, as a second one
    /// would make txform exit at once) and reaps them. Not counted as faults.
    pub fn stop_all(&mut self) -> Result<()> {
        for process in self.running.values_mut() {
            wait_started(process);
            send(process, libc::SIGTERM);
        }
        let ids: Vec<String> = self.running.keys().cloned().collect();
        for id in ids {
            self.reap(&id, Signal::Term, false)?;
        }
        Ok(())
    }

    fn anomaly(&mut self, id: &str, process: &Txform, what: String) {
        self.anomalies.push(Anomaly {
            instance: id.to_string(),
            what,
            log: process.log_path().to_path_buf(),
            ended_by_itself: false,
        });
    }
}

/// Sends `signal` unless the process has ended. Until it is reaped (only this harness reaps it) its pid
/// cannot be reused, so this never hits another process.
fn send(process: &mut Txform, signal: libc::c_int) {
    if process.try_exit().is_some() {
        return;
    }
    if let Ok(pid) = libc::pid_t::try_from(process.pid()) {
        // SAFETY: kill(2) on our own, not yet reaped, child.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Waits (up to [`STARTUP_TIMEOUT`]) until `process` says it runs. A SIGTERM that arrives before
/// txform installed its signal handlers kills it like any program, which proves nothing about txform;
/// a fresh instance that never gets running is reported when the stop is judged.
fn wait_started(process: &mut Txform) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while Instant::now() < deadline && process.try_exit().is_none() {
        if !process.log_lines("txform running").is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to [`PAUSE_WAIT`]) until `process` writes one more [`PAUSED`] line than it had.
fn wait_held(process: &mut Txform) -> bool {
    let before = process.log_lines(PAUSED).len();
    let deadline = Instant::now() + PAUSE_WAIT;
    while Instant::now() < deadline && process.try_exit().is_none() {
        if process.log_lines(PAUSED).len() > before {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// The pause file while it names a process; removed when dropped, so an early return cannot leave
/// the instance held.
struct Pause<'a>(&'a Path);

impl<'a> Pause<'a> {
    fn hold(file: &'a Path, pid: u32) -> Result<Pause<'a>> {
        std::fs::write(file, pid.to_string())
            .with_context(|| format!("write {}", file.display()))?;
        Ok(Pause(file))
    }
}

impl Drop for Pause<'_> {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(self.0) {
            eprintln!("txform-chaos: remove {}: {error}", self.0.display());
        }
    }
}

fn wait(process: &mut Txform, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = process.try_exit() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
