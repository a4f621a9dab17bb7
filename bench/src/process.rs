//! The systems under test as child processes: spawning with logs to a file, CPU time read from
//! `/proc/<pid>/stat` while they run, and reaping with `wait4` for their whole-life resource usage.
//!
//! A child is reaped only by [`Child::terminate`] (or on drop), never by a status check, so that
//! `/proc/<pid>` stays readable until the benchmark has taken its last sample, even when the child
//! (TransactionalMessageCopier) exits on its own right after its last commit.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// Resource usage of a reaped child.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// Exit code, or 128 + signal when a signal ended it.
    pub code: i32,
    /// User + system CPU seconds over the child's whole life (`wait4`).
    pub cpu_seconds: f64,
    /// Peak resident set size, KiB: the last `VmHWM` read while the child was alive.
    ///
    /// Not `ru_maxrss`: Linux carries the parent's high-water mark into a child across
    /// vfork + exec (exec_mmap keeps the larger of the old and new mm's), so a small child of a
    /// benchmark process holding 130 MB would report 130 MB.
    pub peak_rss_kib: Option<u64>,
}

/// A running system under test.
pub struct Child {
    name: String,
    pid: libc::pid_t,
    log: PathBuf,
    spawned_at: Instant,
    /// Latest VmHWM sample (monotonic while the process lives).
    hwm_kib: std::cell::Cell<Option<u64>>,
    exit: Option<Exit>,
}

impl Child {
    /// Spawns `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Child> {
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("reopen {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let spawned_at = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("start {name}: {command:?}"))?;
        let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;
        // `std::process::Child` is dropped without waiting: this struct reaps the pid itself.
        drop(child);
        Ok(Child {
            name: name.to_string(),
            pid,
            log: log.to_path_buf(),
            spawned_at,
            hwm_kib: std::cell::Cell::new(None),
            exit: None,
        })
    }

    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    pub fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// True once the child has exited, without reaping it (`waitid` with `WNOWAIT`). Also takes a
    /// peak-RSS sample while it is alive, so callers that wait on this keep the sample fresh.
    pub fn has_exited(&self) -> bool {
        if self.exit.is_some() {
            return true;
        }
        if let Some(hwm) = vm_hwm_kib(self.pid) {
            self.hwm_kib.set(Some(hwm));
        }
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid siginfo_t; WNOWAIT leaves the child waitable.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is set by waitid when a child changed state (0 otherwise, from zeroing).
        rc == 0 && unsafe { info.si_pid() } == self.pid
    }

    /// Asks the child to stop (SIGTERM), waits up to `grace`, then kills it; reaps it either way.
    pub fn terminate(&mut self, grace: Duration) -> anyhow::Result<Exit> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        if !self.has_exited() {
            signal(self.pid, libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while !self.has_exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !self.has_exited() {
                log::warn!(
                    "{} (pid {}) still running {grace:?} after SIGTERM; killing it",
                    self.name,
                    self.pid
                );
                signal(self.pid, libc::SIGKILL);
            }
        }
        let (code, cpu_seconds) = reap(self.pid).with_context(|| format!("reap {}", self.name))?;
        let exit = Exit {
            code,
            cpu_seconds,
            peak_rss_kib: self.hwm_kib.get(),
        };
        self.exit = Some(exit);
        Ok(exit)
    }

    /// The last `lines` lines of the child's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Child {
    /// Never leave a system running behind the benchmark (an error path skipped `terminate`).
    fn drop(&mut self) {
        if self.exit.is_none() {
            signal(self.pid, libc::SIGKILL);
            let _ = reap(self.pid);
        }
    }
}

fn signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child, so it cannot
    // have been reused.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Waits for `pid`; returns its exit code and user + system CPU seconds.
fn reap(pid: libc::pid_t) -> anyhow::Result<(i32, f64)> {
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid out-parameters.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            bail!("wait4({pid}): {error}");
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((code, seconds(usage.ru_utime) + seconds(usage.ru_stime)))
}

/// User + system CPU seconds the process `pid` (all its threads, live and exited) has used so far,
/// from `/proc/<pid>/stat`. Also works on an exited child that is not reaped yet.
pub fn cpu_seconds(pid: libc::pid_t) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // The command name (field 2) may contain spaces and parentheses: fields are counted after the
    // last ')'. utime and stime are fields 14 and 15, i.e. the 12th and 13th after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("unexpected {path}: {stat}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("field {} of {path}: {stat}", index + 3))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(total as f64 / clock_ticks_per_second())
}

/// CPU seconds used so far, read together at one moment: by the system under test, by the broker
/// and by the whole machine (each `None` when it could not be read).
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuSample {
    pub system: Option<f64>,
    pub broker: Option<f64>,
    pub machine: Option<f64>,
}

impl CpuSample {
    /// Samples the processes `system` and `broker` (when known) and the machine.
    pub fn take(system: Option<libc::pid_t>, broker: Option<libc::pid_t>) -> CpuSample {
        let of = |pid: Option<libc::pid_t>| pid.and_then(|pid| cpu_seconds(pid).ok());
        CpuSample {
            system: of(system),
            broker: of(broker),
            machine: machine_busy_seconds().ok(),
        }
    }
}

/// CPU seconds the whole machine has been busy since boot, summed over its cores: every state of
/// the first line of `/proc/stat` but idle and iowait (steal included: a core another guest took
/// was not free for this benchmark).
pub fn machine_busy_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let line = stat.lines().next().unwrap_or_default();
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| {
            t.parse()
                .with_context(|| format!("unexpected /proc/stat: {line}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let [user, nice, system, _idle, _iowait, irq, softirq, rest @ ..] = ticks.as_slice() else {
        bail!("unexpected /proc/stat: {line}");
    };
    let steal = rest.first().copied().unwrap_or(0);
    let busy = user + nice + system + irq + softirq + steal;
    Ok(busy as f64 / clock_ticks_per_second())
}

/// Peak resident set size of the live process `pid` so far (`VmHWM` of `/proc/<pid>/status`), KiB.
/// `None` once it has exited (a zombie has no memory map left).
pub fn vm_hwm_kib(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_busy_time_grows_while_this_process_works() {
        let before = machine_busy_seconds().expect("machine busy time");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = machine_busy_seconds().expect("machine busy time");
        // This thread alone kept one core busy for 0.3 s; ticks are 10 ms.
        assert!(after - before >= 0.2, "{before} -> {after}");
    }

    #[test]
    fn reads_own_cpu_time() {
        let pid = libc::pid_t::try_from(std::process::id()).expect("pid");
        let before = cpu_seconds(pid).expect("cpu of self");
        let mut x = 0u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        let after = cpu_seconds(pid).expect("cpu of self");
        assert!(after >= before, "{before} -> {after}");
    }

    #[test]
    fn child_usage_and_early_exit_are_seen() {
        let dir = std::env::temp_dir().join(format!("txform-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut command = Command::new("sh");
        command.args(["-c", "echo hello; sleep 0.2; exit 3"]);
        let mut child = Child::spawn("sh", command, &dir.join("sh.log")).expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !child.has_exited() {
            assert!(Instant::now() < deadline, "sh did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Not reaped yet: /proc still answers.
        cpu_seconds(child.pid()).expect("cpu of an exited, unreaped child");
        let exit = child.terminate(Duration::from_secs(1)).expect("reap");
        assert_eq!(exit.code, 3);
        assert!(exit.peak_rss_kib.is_some_and(|kib| kib > 0));
        assert_eq!(child.log_tail(1), "hello");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
