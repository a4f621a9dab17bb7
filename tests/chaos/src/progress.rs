//! Copy progress as the instances report it: a thread tails every instance log and stamps each
//! "committed ..." debug line (one per committed transaction) with the moment it appeared.
//!
//! txform's own log timestamps have one-second resolution, too coarse for recovery times, so lines are
//! stamped when read; the watcher polls every 20 ms, which bounds the error. Stamping happens on a
//! thread of its own so that blocking fault actions (a broker restart takes seconds) do not delay it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the log files are read.
const POLL: Duration = Duration::from_millis(20);

/// One committed transaction's chunk of one input partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    pub at: Instant,
    /// One past the last committed offset.
    pub next: i64,
}

/// What the logs said so far.
#[derive(Debug, Default)]
pub struct Progress {
    /// Commits of each input partition, in the order they were seen.
    pub commits: BTreeMap<i32, Vec<Commit>>,
    /// Per log file: the last line with totals (`stopping: totals: ...` or else the last `stats:`).
    pub last_totals: BTreeMap<PathBuf, String>,
    /// Lines the process printed as errors (`txform: ...`), per log file.
    pub errors: BTreeMap<PathBuf, Vec<String>>,
    pub transactions: u64,
    /// Plugin panics the host caught (one `panicked; re-created its instance` line each).
    pub panics: u64,
}

impl Progress {
    /// One past the highest committed offset of `partition` (0 before any commit).
    pub fn next_offset(&self, partition: i32) -> i64 {
        self.commits
            .get(&partition)
            .and_then(|c| c.iter().map(|c| c.next).max())
            .unwrap_or(0)
    }

    /// Records whose offsets are committed, over all partitions (input offsets start at 0).
    pub fn committed_records(&self, partitions: i32) -> i64 {
        (0..partitions).map(|p| self.next_offset(p)).sum()
    }

    /// The first commit of `partition` seen after `t`.
    pub fn first_commit_after(&self, partition: i32, t: Instant) -> Option<Instant> {
        self.commits
            .get(&partition)?
            .iter()
            .map(|c| c.at)
            .filter(|at| *at > t)
            .min()
    }

    /// Sum of `aborts=` over every process's last totals line.
    pub fn aborts(&self) -> u64 {
        self.last_totals
            .values()
            .filter_map(|line| field(line, "aborts="))
            .sum()
    }

    fn read_line(&mut self, file: &Path, line: &str, topic: &str, at: Instant) {
        if let Some(spans) = parse_commit(line, topic) {
            self.transactions += 1;
            for (partition, next) in spans {
                self.commits
                    .entry(partition)
                    .or_default()
                    .push(Commit { at, next });
            }
        } else if line.contains("stopping: totals:") {
            self.last_totals
                .insert(file.to_path_buf(), line.to_string());
        } else if line.contains("stats: ") {
            let stopped = self
                .last_totals
                .get(file)
                .is_some_and(|l| l.contains("stopping: totals:"));
            if !stopped {
                self.last_totals
                    .insert(file.to_path_buf(), line.to_string());
            }
        } else if line.contains("panicked; re-created its instance") {
            self.panics += 1;
        } else if line.starts_with("txform: ") {
            self.errors
                .entry(file.to_path_buf())
                .or_default()
                .push(line.to_string());
        }
    }
}

/// The number after `name` (e.g. `aborts=`) in `line`.
pub fn field(line: &str, name: &str) -> Option<u64> {
    let rest = &line[line.find(name)? + name.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The partitions of `topic` a "committed ..." line covers, each with one past its last offset.
///
/// The line ends with the batch's spans, `<topic>/<partition> offsets <first>..=<last>, ...`; only
/// those are relied upon, not the wording before them, so a reworded message still parses.
pub fn parse_commit(line: &str, topic: &str) -> Option<Vec<(i32, i64)>> {
    let start = line.find(" committed ")?;
    let tokens: Vec<&str> = line[start..].split_whitespace().collect();
    let mut spans = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if *token != "offsets" || i == 0 {
            continue;
        }
        let Some((name, partition)) = tokens[i - 1].rsplit_once('/') else {
            continue;
        };
        let Some(range) = tokens.get(i + 1) else {
            continue;
        };
        let range = range.trim_end_matches(',');
        let (Some(last), Ok(partition)) = (
            range
                .split_once("..=")
                .and_then(|(_, l)| l.parse::<i64>().ok()),
            partition.parse::<i32>(),
        ) else {
            continue;
        };
        if name == topic {
            spans.push((partition, last + 1));
        }
    }
    (!spans.is_empty()).then_some(spans)
}

/// The thread tailing the `txform-*.log` files of a directory.
pub struct Watcher {
    pub progress: Arc<Mutex<Progress>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    pub fn start(dir: &Path, topic: &str) -> Watcher {
        let progress = Arc::new(Mutex::new(Progress::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (progress, stop) = (Arc::clone(&progress), Arc::clone(&stop));
            let (dir, topic) = (dir.to_path_buf(), topic.to_string());
            std::thread::spawn(move || tail(&dir, &topic, &progress, &stop))
        };
        Watcher {
            progress,
            stop,
            thread: Some(thread),
        }
    }

    /// Runs `f` on the progress so far.
    pub fn with<R>(&self, f: impl FnOnce(&Progress) -> R) -> R {
        f(&self.progress.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads the logs to their end one last time and stops the thread.
    pub fn finish(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.finish();
    }
}

/// An open log file and the incomplete last line read from it.
struct Tailed {
    file: File,
    partial: Vec<u8>,
}

fn tail(dir: &Path, topic: &str, progress: &Mutex<Progress>, stop: &AtomicBool) {
    let mut files: BTreeMap<PathBuf, Tailed> = BTreeMap::new();
    loop {
        // Read once more after the stop request, so nothing written before it is missed.
        let last_round = stop.load(Ordering::SeqCst);
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("txform-")
                    && name.ends_with(".log")
                    && !files.contains_key(&path)
                {
                    if let Ok(file) = File::open(&path) {
                        files.insert(
                            path,
                            Tailed {
                                file,
                                partial: Vec::new(),
                            },
                        );
                    }
                }
            }
        }
        for (path, tailed) in files.iter_mut() {
            let mut fresh = Vec::new();
            // A file handle keeps its position: what is appended later is read at the next round.
            if tailed.file.read_to_end(&mut fresh).is_err() || fresh.is_empty() {
                continue;
            }
            let at = Instant::now();
            tailed.partial.extend_from_slice(&fresh);
            let Some(end) = tailed.partial.iter().rposition(|b| *b == b'\n') else {
                continue;
            };
            let complete: Vec<u8> = tailed.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&complete);
            let mut progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
            for line in text.lines() {
                progress.read_line(path, line, topic, at);
            }
        }
        if last_round {
            return;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_lines_are_parsed_whatever_the_wording() {
        let old = "[2026-01-01T00:00:00Z DEBUG txform::pipeline::runner] committed 200 in in 12.3ms: in/0 offsets 0..=99, in/3 offsets 10..=109";
        assert_eq!(parse_commit(old, "in"), Some(vec![(0, 100), (3, 110)]));
        let new = "[2026-01-01T00:00:00Z DEBUG txform::pipeline::runner] committed 200 in, 200 out in 12.3ms: in/5 offsets 7..=7";
        assert_eq!(parse_commit(new, "in"), Some(vec![(5, 8)]));
        assert_eq!(parse_commit(new, "other"), None);
        assert_eq!(parse_commit("transactions initialised in 1s", "in"), None);
    }

    #[test]
    fn aborts_come_from_the_last_totals_line_of_each_file() {
        let mut p = Progress::default();
        let now = Instant::now();
        let a = Path::new("a.log");
        let b = Path::new("b.log");
        p.read_line(
            a,
            "x stats: records in=5 (1/s) out=5 (1/s) transactions=2 aborts=3 retries=3",
            "in",
            now,
        );
        p.read_line(
            a,
            "x stats: records in=9 (1/s) out=9 (1/s) transactions=4 aborts=4 retries=4",
            "in",
            now,
        );
        p.read_line(
            b,
            "x stopping: totals: records in=9 out=9 transactions=4 aborts=7 retries=7",
            "in",
            now,
        );
        p.read_line(
            b,
            "x stats: records in=9 (1/s) out=9 (1/s) transactions=4 aborts=1 retries=1",
            "in",
            now,
        );
        assert_eq!(p.aborts(), 11);
        assert_eq!(field("aborts=12 retries=3", "aborts="), Some(12));
    }
}
