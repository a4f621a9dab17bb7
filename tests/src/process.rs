//! Running the `txform` binary: a handle for long-running `txform run` processes and a one-shot runner
//! for commands that end by themselves (`txform validate`, start-up failures).

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// Environment variable overriding the `txform` binary's path.
pub const BIN_ENV: &str = "TXFORM_BIN";
/// Environment variable overriding the directory of the plugin libraries.
pub const PLUGIN_DIR_ENV: &str = "TXFORM_PLUGIN_DIR";
/// `RUST_LOG` for spawned `txform run` processes, unless `TXFORM_TEST_RUST_LOG` says otherwise: debug
/// for txform itself gives one "committed N in, M out" line per transaction, which the tests rely on.
const DEFAULT_RUST_LOG: &str = "info,txform=debug";
/// How often log files and exit statuses are polled.
const POLL: Duration = Duration::from_millis(50);
/// Lines of log printed when a test fails.
const TAIL_LINES: usize = 80;

/// The workspace root (the parent of this crate).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The directory holding the built binary and plugins: `$TXFORM_PLUGIN_DIR`, else the directory of
/// this test executable's profile (`target/<profile>`, the parent of `deps/`), else
/// `<workspace>/target/debug`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(PLUGIN_DIR_ENV) {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(deps) = exe.parent() {
            if deps.file_name() == Some(OsStr::new("deps")) {
                if let Some(profile) = deps.parent() {
                    if profile.join("txform").is_file() {
                        return profile.to_path_buf();
                    }
                }
            }
        }
    }
    workspace_dir().join("target").join("debug")
}

/// The `txform` binary: `$TXFORM_BIN`, else `txform` in [`target_dir`]. Panics if it is missing or
/// older than the sources of the host or the plugin API.
pub fn txform_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = std::env::var_os(BIN_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir().join("txform"));
        assert!(
            bin.is_file(),
            "txform binary not found at {}; build the workspace first (`cargo build --workspace`, which \
             scripts/test.sh runs) or set {BIN_ENV}",
            bin.display()
        );
        assert_fresh(&bin, &["host", "plugin-api"]);
        bin
    })
    .clone()
}

/// Panics when a source file (`.rs` or `Cargo.toml`) under one of the workspace directories `dirs`
/// is newer than `built`: the tests would exercise old code and could pass against it.
pub fn assert_fresh(built: &Path, dirs: &[&str]) {
    let root = workspace_dir();
    let newest = dirs
        .iter()
        .filter_map(|dir| newest_source(&root.join(dir)))
        .max_by_key(|(time, _)| *time);
    if let Some(problem) = stale_problem(built, newest) {
        panic!("{problem}");
    }
}

/// Why `built` is stale, given the newest of its sources; `None` if it is not.
fn stale_problem(built: &Path, newest: Option<(SystemTime, PathBuf)>) -> Option<String> {
    let built_at = match built.metadata().and_then(|m| m.modified()) {
        Ok(time) => time,
        Err(e) => {
            return Some(format!(
                "cannot read the modification time of {}: {e}",
                built.display()
            ))
        }
    };
    let (time, path) = newest?;
    (time > built_at).then(|| {
        format!(
            "{} is newer than {}: the tests would run old code; run `cargo build --workspace` first",
            path.display(),
            built.display()
        )
    })
}

/// The newest `.rs` or `Cargo.toml` file under `dir` (skipping `target` directories).
fn newest_source(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let candidate = if path.is_dir() {
            if path.file_name() == Some(OsStr::new("target")) {
                None
            } else {
                newest_source(&path)
            }
        } else if path.extension() == Some(OsStr::new("rs"))
            || path.file_name() == Some(OsStr::new("Cargo.toml"))
        {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (t, path))
        } else {
            None
        };
        if let Some(c) = candidate {
            if newest.as_ref().is_none_or(|n| c.0 > n.0) {
                newest = Some(c);
            }
        }
    }
    newest
}

/// Makes the child die with the test: if the thread that spawned it exits (test over, or the test
/// process killed), the kernel sends SIGKILL. `Drop` kills it first in the normal case.
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `code N` or `signal N`, for messages.
pub fn describe_status(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => format!("{status:?}"),
    }
}

/// A running `txform` process, its stdout and stderr going to one log file.
///
/// Dropping the handle kills the process (SIGKILL) if it still runs; if the test is panicking, the
/// tail of the log is printed first.
pub struct Txform {
    label: String,
    child: Child,
    log_path: PathBuf,
    started: Instant,
    exit: Option<ExitStatus>,
}

impl Txform {
    /// Starts `txform <args>`, logging to `log_path`.
    pub fn spawn(label: &str, args: &[&OsStr], log_path: &Path) -> Txform {
        Txform::spawn_with_env(label, args, log_path, &[])
    }

    /// Like [`Txform::spawn`], with extra environment variables (which win over `RUST_LOG`'s).
    pub fn spawn_with_env(
        label: &str,
        args: &[&OsStr],
        log_path: &Path,
        env: &[(&str, &str)],
    ) -> Txform {
        let log =
            File::create(log_path).unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
        let log_err = log.try_clone().expect("clone the log file handle");
        let rust_log =
            std::env::var("TXFORM_TEST_RUST_LOG").unwrap_or_else(|_| DEFAULT_RUST_LOG.to_string());
        let mut command = Command::new(txform_bin());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .env("RUST_LOG", rust_log)
            .env("RUST_LOG_STYLE", "never")
            .envs(env.iter().copied());
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", txform_bin().display()));
        Txform {
            label: label.to_string(),
            child,
            log_path: log_path.to_path_buf(),
            started: Instant::now(),
            exit: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When the process was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The log lines containing `pattern`.
    pub fn log_lines(&self, pattern: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(pattern))
            .map(str::to_string)
            .collect()
    }

    /// The last `n` lines of the log.
    pub fn tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The exit status if the process has ended (reaping it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("{}: wait: {e}", self.label));
        }
        self.exit
    }

    /// Waits until the log has a line containing `pattern` and returns the first such line. Panics
    /// (with the log's tail) after `timeout`, or as soon as the process has exited without logging it.
    pub fn wait_for_log(&mut self, pattern: &str, timeout: Duration) -> String {
        self.wait_for_log_count(pattern, 1, timeout).remove(0)
    }

    /// Waits until the log has at least `count` lines containing `pattern`; returns them all.
    pub fn wait_for_log_count(
        &mut self,
        pattern: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.try_exit();
            let lines = self.log_lines(pattern);
            if lines.len() >= count {
                return lines;
            }
            if let Some(status) = exited {
                panic!(
                    "{} ended ({}) after logging {} of {count} lines containing {pattern:?}; log tail:\n{}",
                    self.label,
                    describe_status(&status),
                    lines.len(),
                    self.tail(TAIL_LINES)
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: {} of {count} lines containing {pattern:?} after {timeout:?}; log tail:\n{}",
                    self.label,
                    lines.len(),
                    self.tail(TAIL_LINES)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for the process to end; panics (with the log's tail) after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} still running after {timeout:?}; log tail:\n{}",
                    self.label,
                    self.tail(TAIL_LINES)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for the process to end and asserts its exit code.
    pub fn expect_exit_code(&mut self, code: i32, timeout: Duration) {
        let status = self.wait_exit(timeout);
        assert_eq!(
            status.code(),
            Some(code),
            "{} ended with {}, expected exit code {code}; log tail:\n{}",
            self.label,
            describe_status(&status),
            self.tail(TAIL_LINES)
        );
    }

    /// Sends SIGTERM (a clean stop request). Does not wait.
    pub fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends SIGINT. Does not wait.
    pub fn interrupt(&mut self) {
        self.signal(libc::SIGINT);
    }

    /// Freezes the process (SIGSTOP): whatever it was doing, a transaction included, stays as it is.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill9(&mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(10))
    }

    fn signal(&mut self, signal: libc::c_int) {
        if self.try_exit().is_some() {
            panic!(
                "{}: cannot send signal {signal}: the process already ended; log tail:\n{}",
                self.label,
                self.tail(TAIL_LINES)
            );
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on our own child, which has not been reaped (try_exit above).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "{}: kill({pid}, {signal}): {}",
            self.label,
            std::io::Error::last_os_error()
        );
    }

    /// The lines txform printed as errors: `txform: <message>`.
    pub fn error_messages(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.starts_with("txform: "))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Txform {
    fn drop(&mut self) {
        let running = self.try_exit_quietly().is_none();
        if running {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- {} (pid {}, {}; log {}) last {TAIL_LINES} lines -----\n{}\n----- end of {} -----",
                self.label,
                self.child.id(),
                if running { "killed by the test harness" } else { "had ended" },
                self.log_path.display(),
                self.tail(TAIL_LINES),
                self.label
            );
        }
    }
}

impl Txform {
    fn try_exit_quietly(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }
}

/// What a command that ends by itself did.
#[derive(Debug, Clone)]
pub struct CommandResult {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CommandResult {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The `txform: ` lines of stderr: what txform itself says when it stops on an error.
    pub fn messages(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("txform: "))
            .collect()
    }

    /// Non-empty stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Runs `txform <args>` to completion with the default log level (what a user sees), capturing stdout
/// and stderr separately. Panics if it is still running after `timeout` (the process is killed).
pub fn run_command(args: &[&OsStr], timeout: Duration) -> CommandResult {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let out_path = scratch.path().join("stdout");
    let err_path = scratch.path().join("stderr");
    let mut command = Command::new(txform_bin());
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create stdout file"))
        .stderr(File::create(&err_path).expect("create stderr file"))
        .env_remove("RUST_LOG")
        .env("RUST_LOG_STYLE", "never");
    die_with_parent(&mut command);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", txform_bin().display()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for txform") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "txform {:?} still running after {timeout:?}; stderr:\n{}",
                args,
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(POLL);
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    CommandResult {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_newer_than_the_build_is_a_failure_naming_the_fix() {
        let dir = tempfile::tempdir().expect("scratch directory");
        let built = dir.path().join("txform");
        std::fs::write(&built, b"").expect("write");
        let built_at = built.metadata().and_then(|m| m.modified()).expect("mtime");
        let source = dir.path().join("lib.rs");
        let later = built_at + Duration::from_secs(1);
        let problem = stale_problem(&built, Some((later, source.clone())))
            .expect("a newer source is a problem");
        assert_eq!(
            problem,
            format!(
                "{} is newer than {}: the tests would run old code; run `cargo build --workspace` first",
                source.display(),
                built.display()
            )
        );
        let earlier = built_at - Duration::from_secs(1);
        assert_eq!(stale_problem(&built, Some((earlier, source))), None);
        assert_eq!(stale_problem(&built, None), None);
    }

    #[test]
    fn the_newest_source_is_found_in_subdirectories_but_not_in_target() {
        let dir = tempfile::tempdir().expect("scratch directory");
        let src = dir.path().join("src");
        let target = dir.path().join("target");
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::create_dir_all(&target).expect("mkdir");
        let old = src.join("old.rs");
        let new = src.join("new.rs");
        let ignored = target.join("newest.rs");
        let now = SystemTime::now();
        for (path, age) in [(&old, 30), (&new, 20), (&ignored, 10)] {
            let file = File::create(path).expect("create");
            file.set_modified(now - Duration::from_secs(age))
                .expect("set mtime");
        }
        let file = File::create(dir.path().join("notes.txt")).expect("create");
        file.set_modified(now).expect("set mtime");
        assert_eq!(newest_source(dir.path()).map(|(_, p)| p), Some(new));
    }
}
